//! `azure_event_grid`: Azure Event Grid's webhook event handlers, authenticated by the
//! secret in the endpoint URL's query (as Azure documents for webhooks). See
//! docs/profiles/azure_event_grid.md.
//!
//! - [`delivery`]: the body in either output schema, Event Grid's (an array) or
//!   CloudEvents 1.0 (one event or a batch), and the validation event;
//! - the two handshakes, answered by the filter and only once the secret matched: the
//!   subscription validation event (`aeg-event-type: SubscriptionValidation`) and
//!   CloudEvents' abuse-protection `OPTIONS` (`WebHook-Request-Origin`).
//!
//! Event Grid drops (or dead-letters) a delivery answered 400, 401, 403 or 413 and
//! retries anything else but 200-204: a body that could hold a genuine event never gets
//! one of those from this profile, and the upstream's answer is mapped by the same rule.

pub mod delivery;

use crate::config::Upstream4xx;
use crate::event::{name_based_id_of, push_string, usable_type, Event, RateKeys};
use crate::media::Media;
use crate::metrics::{Counter, ProfileCounter};
use crate::problem::{Reason, Rejection};
use crate::profile::{LocalAnswer, Profile, Registration, Section, SignedHeaders};
use crate::timestamp;
use crate::upstream::{self, Told};
use delivery::{Delivery, RULES};
use serde_json::value::RawValue;

pub const REGISTRATION: Registration = Registration { name: "azure_event_grid", keys: &["allowed_rate"], configure };

/// The request headers the profile reads, by index.
const HEADERS: [&str; 2] = ["aeg-event-type", "webhook-request-origin"];
const EVENT_TYPE: usize = 0;
const ORIGIN: usize = 1;
/// `aeg-event-type` of the validation handshake.
const SUBSCRIPTION_VALIDATION: &str = "SubscriptionValidation";
/// Event Grid accepts events, and arrays of them, up to 1 MB, and drops a 413: the
/// endpoint must take that much, with room for the members delivery adds.
pub const MIN_BODY_BYTES: u64 = 1024 * 1024 + 64 * 1024;
/// The event type prefix; the rest is the only event's own type.
pub const KIND_PREFIX: &str = "webhookguard.azure_event_grid.";
/// The event type of a batch, or of one event without a usable type.
const BATCH_KIND: &str = "webhookguard.azure_event_grid.batch";
const EVENT_KIND: &str = "webhookguard.azure_event_grid.event";
/// The event type of the validation handshake (answered, never forwarded).
const VALIDATION_KIND: &str = "webhookguard.azure_event_grid.Microsoft.EventGrid.SubscriptionValidationEvent";
/// Longest `WebHook-Request-Origin` echoed (a DNS name).
const MAX_ORIGIN_LEN: usize = 253;

/// `handshakes_total{event_type}`: a handshake the filter answered, its verdict.
const VALIDATION_ANSWERED: ProfileCounter = ProfileCounter { family: "handshakes_total", labels: &[("event_type", "subscription_validation")], verdict: true };
const OPTIONS_ANSWERED: ProfileCounter = ProfileCounter { family: "handshakes_total", labels: &[("event_type", "abuse_protection")], verdict: true };

struct AzureEventGrid {
    /// `WebHook-Allowed-Rate`: requests per minute, or `*` (no limit).
    allowed_rate: String,
}

fn configure(section: &Section) -> Result<Box<dyn Profile>, String> {
    let allowed_rate = match section.get::<u32>("allowed_rate")? {
        Some(0) => return Err("allowed_rate: must be at least 1 (requests per minute); leave it out for no limit".into()),
        Some(rate) => rate.to_string(),
        None => "*".into(),
    };
    Ok(Box::new(AzureEventGrid { allowed_rate }))
}

/// The duplicate keys as a JSON array of `[source, id]` pairs (what serde_json writes).
fn key_json(keys: &[[String; 2]]) -> Result<String, serde_json::Error> {
    let mut out = String::from("[");
    for (i, [source, id]) in keys.iter().enumerate() {
        out.push_str(if i == 0 { "[" } else { ",[" });
        push_string(&mut out, source)?;
        out.push(',');
        push_string(&mut out, id)?;
        out.push(']');
    }
    out.push(']');
    Ok(out)
}

/// A `WebHook-Request-Origin` that can be echoed as is: a DNS name.
fn usable_origin(origin: &str) -> bool {
    !origin.is_empty() && origin.len() <= MAX_ORIGIN_LEN && origin.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
}

impl Profile for AzureEventGrid {
    fn name(&self) -> &'static str {
        REGISTRATION.name
    }

    fn allow(&self) -> &'static str {
        "POST"
    }

    fn signed_headers(&self) -> &'static [&'static str] {
        &HEADERS
    }

    fn head_answer(&self, method: &str, headers: &SignedHeaders) -> Option<LocalAnswer> {
        // CloudEvents webhook spec 4.2: any origin the secret's holder asks for is
        // granted, echoed as sent; without one, OPTIONS is not a method of the endpoint.
        let origin = headers.text(ORIGIN).map(str::trim).filter(|o| method == "OPTIONS" && usable_origin(o))?;
        Some(LocalAnswer {
            status: 200,
            headers: vec![("webhook-allowed-origin", origin.to_string()), ("webhook-allowed-rate", self.allowed_rate.clone()), ("allow", "POST".into())],
            body: Vec::new(),
            counter: Counter::Profile(OPTIONS_ANSWERED),
        })
    }

    fn validate(&self, _media: Media, body: &[u8], headers: &SignedHeaders) -> Result<Event, Rejection> {
        let invalid = |detail: &str| Rejection::new(Reason::Invalid, detail);
        let text = std::str::from_utf8(body).map_err(|_| invalid("the body is not UTF-8 JSON"))?;
        let Delivery { keys, single, findings } = delivery::read(text).map_err(invalid)?;
        let data: Box<RawValue> = serde_json::from_str(text).map_err(|_| invalid("the body is not JSON"))?;
        let handshake = headers.text(EVENT_TYPE).map(str::trim) == Some(SUBSCRIPTION_VALIDATION);
        let validation = single.as_ref().is_some_and(|s| s.event_grid && s.kind.as_deref() == Some(delivery::VALIDATION_EVENT));
        // Event Grid sends the one with the other, always: a mismatch is no delivery.
        if handshake != validation || (validation && single.as_ref().is_some_and(|s| s.validation_code.is_none())) {
            return Err(invalid(
                "aeg-event-type: SubscriptionValidation comes with exactly one validation event carrying its validationCode, and only with it",
            ));
        }
        let (kind, subject, time) = match single {
            Some(one) => {
                let kind = one.kind.filter(|t| usable_type(t)).map_or_else(|| EVENT_KIND.to_string(), |t| format!("{KIND_PREFIX}{t}"));
                (kind, one.subject, one.time.and_then(|t| timestamp::parse(&t).ok()).map(|t| t.utc))
            }
            None => (BATCH_KIND.to_string(), None, None),
        };
        // The events' own ids, each with the topic or source it is unique within.
        let id = key_json(&keys).map_err(|_| Rejection::new(Reason::Internal, "the event id could not be derived"))?;
        Ok(Event {
            id: name_based_id_of(&["azure_event_grid\n", &id]),
            kind,
            subject,
            time,
            keys: RateKeys::default(),
            data: data.into(),
            nonconforming: findings,
        })
    }

    fn local_answer(&self, event: &Event) -> Option<LocalAnswer> {
        if event.kind != VALIDATION_KIND {
            return None;
        }
        let code = delivery::validation_code(event.data.get())?;
        let mut body = String::from(r#"{"validationResponse":"#);
        push_string(&mut body, &code).ok()?;
        body.push('}');
        Some(LocalAnswer {
            status: 200,
            headers: vec![("content-type", "application/json".into())],
            body: body.into_bytes(),
            counter: Counter::Profile(VALIDATION_ANSWERED),
        })
    }

    fn told(&self, status: u16, upstream_4xx: Upstream4xx) -> Told {
        // Success for Event Grid is 200-204 only; the upstream's other 2xx took the
        // event all the same. Everything else follows the default table: a 3xx, a final
        // 1xx and (with `upstream_4xx: retry`) a 4xx become 502, which it retries.
        match status {
            200..=204 => Told::Delivered(status),
            205..=299 => Told::Delivered(200),
            _ => upstream::not_taken(status, upstream_4xx),
        }
    }

    fn min_body_bytes(&self) -> Option<u64> {
        Some(MIN_BODY_BYTES)
    }

    fn counters(&self) -> Vec<Counter> {
        let mut all = vec![Counter::Profile(VALIDATION_ANSWERED), Counter::Profile(OPTIONS_ANSWERED)];
        all.extend(RULES.map(Counter::Nonconforming));
        all
    }
}

#[cfg(test)]
mod tests;
