//! The counters each endpoint exports, and their Envoy stat names.
//!
//! Every name is fixed when the plugin is configured (defined once per VM; Envoy sums
//! them across workers), so the set of stats stays bounded whatever senders send.

use crate::{arm, azure};
use crate::conformance::{Rule, RULES};
use crate::config::{Endpoint, Profile};
use crate::problem::Reason;
use crate::upstream::Mapped;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Every request to the endpoint's path.
    Received,
    /// Sent on to the upstream (in shadow mode: every request).
    Forwarded,
    /// Refused (in shadow mode: would have been refused), by reason.
    Rejected(Reason),
    /// The shared rate-limit bucket stayed contended after every CAS retry.
    RateLimitContended,
    /// The upstream answered 5xx, or Envoy could not reach it (503/504 local replies).
    UpstreamFailure,
    /// An upstream status the sender would not retry (or could lose the event on),
    /// answered 502 instead, by why (also counted in `rejected.upstream_rejected`).
    UpstreamMapped(Mapped),
    /// A ping answered by the filter (`answer_ping`).
    PingAnswered,
    /// A copy of a delivered event, answered 200 without forwarding (`dedupe_seconds`).
    Duplicate,
    /// A forwarded Azure notification, by its index in [`azure::PAIRS`].
    AzureEvent(usize),
    /// Forwarded by the filter, then refused 429 by Envoy's global rate limit filter placed
    /// after it: never reached the upstream.
    GlobalRateLimited,
    /// Forwarded by the filter, then answered by the global rate limit filter because its
    /// service failed (`failure_mode_deny: true`): never reached the upstream.
    GlobalRateLimitError,
    /// An Azure notification breaking a documented-table rule, whatever was done with it.
    Nonconforming(Rule),
    /// An outcome of the ARM check (`arm_check`).
    Arm(arm::Outcome),
}

/// Counters of the listener as a whole, not of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerCounter {
    /// Requests no endpoint guards, refused with 404 (`"unguarded": "reject"`).
    UnguardedRejected,
}

impl ListenerCounter {
    pub const ALL: [ListenerCounter; 1] = [ListenerCounter::UnguardedRejected];

    /// The stat name: `webhook_guard.<counter>`, one level above the endpoints' counters.
    pub fn name(self) -> &'static str {
        match self {
            ListenerCounter::UnguardedRejected => "webhook_guard.unguarded_rejected",
        }
    }
}

const REASONS: [Reason; 16] = [
    Reason::Unauthorized,
    Reason::Forbidden,
    Reason::AmbiguousSecret,
    Reason::Method,
    Reason::TooLarge,
    Reason::MediaType,
    Reason::Invalid,
    Reason::Digest,
    Reason::RateLimited,
    Reason::InFlight,
    Reason::UpstreamRejected,
    Reason::NotHeld,
    Reason::AmbiguousPath,
    Reason::Held,
    Reason::Nonconforming,
    Reason::Internal,
];

impl Counter {
    /// Every counter an endpoint of `profile` exports.
    pub fn all(profile: Profile) -> Vec<Counter> {
        let mut all = vec![
            Counter::Received,
            Counter::Forwarded,
            Counter::Duplicate,
            Counter::RateLimitContended,
            Counter::UpstreamFailure,
            Counter::GlobalRateLimited,
            Counter::GlobalRateLimitError,
        ];
        all.extend(REASONS.iter().map(|r| Counter::Rejected(*r)));
        all.extend(Mapped::ALL.map(Counter::UpstreamMapped));
        match profile {
            Profile::AzureManagedApp => {
                all.extend((0..azure::PAIRS.len()).map(Counter::AzureEvent));
                all.extend(RULES.iter().map(|r| Counter::Nonconforming(*r)));
            }
            Profile::Md5Envelope => all.push(Counter::PingAnswered),
        }
        all
    }

    /// Every counter `endpoint` exports: [`Counter::all`], plus the ARM check's when it has one.
    pub fn of(endpoint: &Endpoint) -> Vec<Counter> {
        let mut all = Counter::all(endpoint.profile);
        if endpoint.arm_check.is_some() {
            all.push(Counter::Rejected(Reason::Unverified));
            all.extend(arm::Outcome::ALL.map(Counter::Arm));
        }
        all
    }

    /// The stat name: `webhook_guard.<endpoint>.<counter>`.
    pub fn name(self, endpoint: &Endpoint) -> String {
        let suffix = match self {
            Counter::Received => "received".to_string(),
            Counter::Forwarded => "forwarded".to_string(),
            Counter::Rejected(reason) => format!("rejected.{}", reason.slug()),
            Counter::RateLimitContended => "rate_limit_contended".to_string(),
            Counter::UpstreamFailure => "upstream_failure".to_string(),
            Counter::UpstreamMapped(why) => format!("upstream_mapped.{}", why.slug()),
            Counter::PingAnswered => "ping_answered".to_string(),
            Counter::Duplicate => "duplicate".to_string(),
            Counter::GlobalRateLimited => "global_rate_limited".to_string(),
            Counter::GlobalRateLimitError => "global_rate_limit_error".to_string(),
            Counter::AzureEvent(i) => match azure::PAIRS.get(i) {
                Some((event_type, state)) => format!("event.{}.{}", event_type.to_ascii_lowercase(), state.to_ascii_lowercase()),
                None => "event.unknown".to_string(),
            },
            Counter::Nonconforming(rule) => format!("nonconforming.{}", rule.slug()),
            Counter::Arm(outcome) => format!("arm.{}", outcome.slug()),
        };
        format!("webhook_guard.{}.{suffix}", endpoint.name)
    }

    /// The counter of a response Envoy's global rate limit filter (`envoy.filters.http.ratelimit`)
    /// produced, by its `response.code_details`; `None` for any other response.
    pub fn global_limit(code_details: &str) -> Option<Counter> {
        match code_details {
            "request_rate_limited" => Some(Counter::GlobalRateLimited),
            "rate_limiter_error" => Some(Counter::GlobalRateLimitError),
            _ => None,
        }
    }

    /// The per-pair counter of an Azure event `type`, e.g. `...managedapp.put.succeeded`.
    pub fn azure_event(kind: &str) -> Option<Counter> {
        azure::pair_of(kind).map(Counter::AzureEvent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_dotted_and_stable() {
        let json = r#"{"endpoints":[{"name":"azure","path":"/a","profile":"azure_managed_app","secret":{"values":["k"]}}]}"#;
        let config = Config::parse(json.as_bytes(), |_| None).unwrap();
        let endpoint = &config.endpoints[0];
        let names: Vec<String> = Counter::all(endpoint.profile).iter().map(|c| c.name(endpoint)).collect();
        assert_eq!(names.iter().collect::<HashSet<_>>().len(), names.len());
        for want in ["webhook_guard.azure.received", "webhook_guard.azure.rejected.forbidden", "webhook_guard.azure.event.patch.succeeded", "webhook_guard.azure.upstream_failure", "webhook_guard.azure.nonconforming.pair_undocumented", "webhook_guard.azure.rejected.held", "webhook_guard.azure.upstream_mapped.redirect"] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
        assert!(names.iter().all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')));
    }

    #[test]
    fn azure_event_counters_follow_the_type() {
        assert_eq!(Counter::azure_event("webhookguard.azure.managedapp.put.succeeded"), Some(Counter::AzureEvent(1)));
        assert_eq!(Counter::azure_event("webhookguard.azure.managedapp.delete.failed"), Some(Counter::AzureEvent(6)));
        assert_eq!(Counter::azure_event("webhookguard.vendor.ping"), None);
    }
}
