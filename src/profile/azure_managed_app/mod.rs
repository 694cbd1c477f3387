//! `azure_managed_app`: Azure managed application notifications, authenticated by a
//! query secret (format: docs/profiles/azure_managed_app.md).
//! - [`notification`]: validation into the normalised event;
//! - [`resource_id`]: the resource ids it names;
//! - [`conformance`]: the rules of Azure's documented table;
//! - [`arm`]: the optional confirmation of each notification with Resource Manager.

pub mod arm;
pub mod conformance;
pub mod notification;
pub mod resource_id;

use crate::config::pick;
use crate::event::Event;
use crate::media::Media;
use crate::metrics::{Counter, ProfileCounter};
use crate::nonconforming::OnNonconforming;
use crate::problem::{Reason, Rejection};
use crate::profile::{Profile, Registration, Section, SignedHeaders};
use arm::config::{ArmCheck, RawArmCheck};
use conformance::RULES;
use notification::PAIRS;

pub const REGISTRATION: Registration = Registration { name: "azure_managed_app", keys: &["on_nonconforming", "arm_check"], configure };

/// `events_total{event_type, state}`: the labels must be literals to be `'static`.
macro_rules! event {
    ($event_type:literal, $state:literal) => {
        ProfileCounter { family: "events_total", labels: &[("event_type", $event_type), ("state", $state)], verdict: false }
    };
}

/// The counter of each documented pair, by its index in [`PAIRS`].
const EVENT_COUNTERS: [ProfileCounter; PAIRS.len()] = [
    event!("put", "accepted"),
    event!("put", "succeeded"),
    event!("put", "failed"),
    event!("patch", "succeeded"),
    event!("delete", "deleting"),
    event!("delete", "deleted"),
    event!("delete", "failed"),
];

struct AzureManagedApp {
    on_nonconforming: OnNonconforming,
    arm_check: Option<ArmCheck>,
}

/// Whether `s` has more than `max` characters. A character is at least one byte: they
/// are counted only when the bytes could be too many (an ID or a name rarely can).
fn longer_than(s: &str, max: usize) -> bool {
    max < s.len() && s.chars().count() > max
}

fn configure(section: &Section) -> Result<Box<dyn Profile>, String> {
    let on_nonconforming = section.get::<String>("on_nonconforming")?;
    let arm_check = section.object("arm_check", "struct RawArmCheck", RawArmCheck::read)?;
    let choices = [("forward", OnNonconforming::Forward), ("hold", OnNonconforming::Hold), ("reject", OnNonconforming::Reject)];
    let on_nonconforming = pick("on_nonconforming", "value", on_nonconforming.as_deref().unwrap_or("forward"), &choices)?;
    let arm_check = arm_check.map(|a| ArmCheck::validate(a, section.name, section.env)).transpose()?;
    Ok(Box::new(AzureManagedApp { on_nonconforming, arm_check }))
}

impl Profile for AzureManagedApp {
    fn name(&self) -> &'static str {
        REGISTRATION.name
    }

    fn allow(&self) -> &'static str {
        "POST"
    }

    fn validate(&self, _media: Media, body: &[u8], _headers: &SignedHeaders) -> Result<Event, Rejection> {
        notification::validate(body).map_err(|detail| Rejection::new(Reason::Invalid, detail))
    }

    // The upstream's answer: the default table. Azure retries 404, 429, 5xx and
    // unreachable and drops any other answer, so every other 4xx, a 3xx or a final 1xx
    // becomes 502 (`upstream_4xx: retry`).

    fn on_nonconforming(&self) -> OnNonconforming {
        self.on_nonconforming
    }

    fn has_rate_keys(&self) -> bool {
        true
    }

    fn arm_check(&self) -> Option<&ArmCheck> {
        self.arm_check.as_ref()
    }

    fn counters(&self) -> Vec<Counter> {
        let mut all: Vec<Counter> = EVENT_COUNTERS.map(Counter::Profile).to_vec();
        all.extend(RULES.iter().map(|r| Counter::Nonconforming(r.slug())));
        if self.arm_check.is_some() {
            all.push(Counter::Rejected(Reason::Unverified));
            all.extend(arm::Outcome::ALL.map(arm::Outcome::counter));
        }
        all
    }

    fn event_counter(&self, event: &Event) -> Option<Counter> {
        notification::pair_of(&event.kind).and_then(|i| EVENT_COUNTERS.get(i)).map(|c| Counter::Profile(*c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longer_than_counts_characters_not_bytes() {
        assert!(!longer_than("abc", 3));
        assert!(longer_than("abcd", 3));
        assert!(!longer_than("ééé", 3), "six bytes, three characters");
        assert!(longer_than("éééé", 3));
        assert!(!longer_than("", 0));
    }

    #[test]
    fn event_counters_follow_the_documented_pairs() {
        for ((event_type, state), counter) in PAIRS.iter().zip(EVENT_COUNTERS) {
            assert_eq!(counter.labels, [("event_type", event_type.to_ascii_lowercase().as_str()), ("state", state.to_ascii_lowercase().as_str())]);
        }
        let profile = AzureManagedApp { on_nonconforming: OnNonconforming::Forward, arm_check: None };
        assert!(profile.allows("POST") && !profile.allows("PUT"));
    }
}
