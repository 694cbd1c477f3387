//! The counters and histograms each endpoint exports, and their Envoy stat names, which
//! spell in the Prometheus labels ([`series`]).
//!
//! Every name is fixed when the plugin is configured (defined once per VM; Envoy sums
//! them across workers), so the set of stats stays bounded whatever senders send.

use crate::config::Endpoint;
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
    /// answered 502 instead, by why (also counted in `rejected_total{reason="upstream_rejected"}`).
    UpstreamMapped(Mapped),
    /// A copy of a delivered event, answered 200 without forwarding (`dedupe_seconds`).
    Duplicate,
    /// Refused 429 by the fleet's limit: by Envoy's global rate limit filter placed after
    /// the filter, or by the filter's own `global_rate_limit`. Never reached the upstream.
    GlobalRateLimited,
    /// Answered because the rate limit service failed: by the global rate limit filter
    /// (`failure_mode_deny: true`) or by `global_rate_limit.on_error: hold`. Never reached
    /// the upstream.
    GlobalRateLimitError,
    /// The rate limit service of `global_rate_limit` failed and the notification was
    /// forwarded (`on_error: forward`).
    GlobalRateLimitFailedOpen,
    /// A notification breaking a rule of its sender's documented table (the rule's slug),
    /// whatever was done with it.
    Nonconforming(&'static str),
    /// A counter of the endpoint's profile.
    Profile(ProfileCounter),
}

/// A counter a profile adds to the pipeline's: its family and its own labels, e.g.
/// `events_total{event_type="patch",state="succeeded"}`.
#[derive(Debug, Clone, Copy, Eq)]
pub struct ProfileCounter {
    pub family: &'static str,
    pub labels: &'static [(&'static str, &'static str)],
    /// Whether counting it is the filter's verdict on the request (a ping it answered).
    pub verdict: bool,
}

/// Equal as derived, in the order that is cheap where a counted request looks its counter
/// up among the endpoint's: the same constant is mostly the same address (no byte read),
/// and two of one family differ in their last label's value, whose length mostly differs.
impl PartialEq for ProfileCounter {
    fn eq(&self, other: &Self) -> bool {
        let same_labels = std::ptr::eq(self.labels, other.labels)
            || (self.labels.len() == other.labels.len() && self.labels.iter().rev().zip(other.labels.iter().rev()).all(|(a, b)| a.1 == b.1 && a.0 == b.0));
        self.verdict == other.verdict && same_labels && self.family == other.family
    }
}

/// Counters of the listener as a whole, not of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerCounter {
    /// Requests no endpoint guards, refused with 404 (`"unguarded": "reject"`).
    UnguardedRejected,
}

impl ListenerCounter {
    pub const ALL: [ListenerCounter; 1] = [ListenerCounter::UnguardedRejected];

    /// The stat name: a family without labels (the listener is not an endpoint).
    pub fn name(self) -> String {
        match self {
            ListenerCounter::UnguardedRejected => series("unguarded_rejected_total", &[]),
        }
    }
}

/// The stat name of one series of `webhook_guard_<family>`: each label spelled as
/// `<name>=.=<value>;.;` before the family, e.g.
/// `webhook_guard.endpoint=.=azure;.;reason=.=invalid;.;rejected_total`. That is the
/// encoding Istio's `extraStatTags` extracts, and `stats_config.stats_tags` regexes of the
/// same form do it on any Envoy (examples/observability/stats-tags.yaml): removing every
/// label leaves `webhook_guard.<family>`, so `/stats/prometheus` shows
/// `webhook_guard_<family>{<name>="<value>",...}`. Values are endpoint names and slugs,
/// which never hold `;`.
pub fn series(family: &str, labels: &[(&str, String)]) -> String {
    let labels: String = labels.iter().map(|(name, value)| format!("{name}=.={value};.;")).collect();
    format!("webhook_guard.{labels}{family}")
}

/// The labels of every series of `endpoint`.
fn endpoint_labels(endpoint: &Endpoint) -> Vec<(&'static str, String)> {
    vec![("endpoint", endpoint.name.clone()), ("profile", endpoint.profile.name().to_string())]
}

/// Durations an endpoint records, in milliseconds (Envoy histograms hold integers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Histogram {
    /// From the request's head to the filter's verdict: forwarded or answered.
    Held,
    /// From the ARM check's start (the body passed every other check) to its outcome.
    ArmCheck,
}

impl Histogram {
    /// Every histogram `endpoint` records.
    pub fn of(endpoint: &Endpoint) -> Vec<Histogram> {
        let mut all = vec![Histogram::Held];
        if endpoint.profile.arm_check().is_some() {
            all.push(Histogram::ArmCheck);
        }
        all
    }

    pub fn name(self, endpoint: &Endpoint) -> String {
        let family = match self {
            Histogram::Held => "held_milliseconds",
            Histogram::ArmCheck => "arm_check_milliseconds",
        };
        series(family, &endpoint_labels(endpoint))
    }
}

/// Every label a series can carry: the tags the Envoy configuration must extract.
pub const LABELS: [&str; 8] = ["endpoint", "profile", "reason", "status", "outcome", "rule", "event_type", "state"];

/// Reasons no endpoint counter stands for: a 404 has no endpoint (a listener counter),
/// and an unverified notification only exists with a profile's confirmation step, which
/// lists it among its own counters.
const NOT_PER_ENDPOINT: [Reason; 2] = [Reason::NotFound, Reason::Unverified];

impl Counter {
    /// Every counter `endpoint` exports: the pipeline's, then its profile's.
    pub fn of(endpoint: &Endpoint) -> Vec<Counter> {
        let mut all = vec![
            Counter::Received,
            Counter::Forwarded,
            Counter::Duplicate,
            Counter::RateLimitContended,
            Counter::UpstreamFailure,
            Counter::GlobalRateLimited,
            Counter::GlobalRateLimitError,
        ];
        if endpoint.global_rate_limit.is_some() {
            all.push(Counter::GlobalRateLimitFailedOpen);
        }
        all.extend(Reason::ALL.iter().filter(|r| !NOT_PER_ENDPOINT.contains(r)).map(|r| Counter::Rejected(*r)));
        all.extend(Mapped::ALL.map(Counter::UpstreamMapped));
        all.extend(endpoint.profile.counters());
        all
    }

    /// The stat name: the counter's family and labels ([`series`]), with the endpoint's
    /// name and profile as labels of every series.
    pub fn name(self, endpoint: &Endpoint) -> String {
        let (family, labels) = self.family();
        let mut all = endpoint_labels(endpoint);
        all.extend(labels);
        series(family, &all)
    }

    /// The Prometheus family (without `webhook_guard_`) and the labels telling the
    /// counter apart from the family's others.
    fn family(self) -> (&'static str, Vec<(&'static str, String)>) {
        let label = |name: &'static str, value: &str| vec![(name, value.to_string())];
        match self {
            Counter::Received => ("requests_total", vec![]),
            Counter::Forwarded => ("forwarded_total", vec![]),
            Counter::Rejected(reason) => ("rejected_total", vec![("reason", reason.slug().to_string()), ("status", reason.status().to_string())]),
            Counter::RateLimitContended => ("rate_limit_contended_total", vec![]),
            Counter::UpstreamFailure => ("upstream_failures_total", vec![]),
            Counter::UpstreamMapped(why) => ("upstream_mapped_total", label("reason", why.slug())),
            Counter::Duplicate => ("duplicates_total", vec![]),
            Counter::GlobalRateLimited => ("global_rate_limit_total", label("outcome", "limited")),
            Counter::GlobalRateLimitError => ("global_rate_limit_total", label("outcome", "error")),
            Counter::GlobalRateLimitFailedOpen => ("global_rate_limit_total", label("outcome", "failed_open")),
            Counter::Nonconforming(rule) => ("nonconforming_total", label("rule", rule)),
            Counter::Profile(own) => (own.family, own.labels.iter().map(|(name, value)| (*name, value.to_string())).collect()),
        }
    }

    /// Whether the counter is a verdict of the filter on a request (forwarded or answered):
    /// the first one counted ends the request's [`Histogram::Held`] time.
    pub fn is_verdict(self) -> bool {
        match self {
            Counter::Forwarded | Counter::Rejected(_) | Counter::Duplicate => true,
            Counter::Profile(own) => own.verdict,
            _ => false,
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::collections::HashSet;

    fn endpoint(profile: &str) -> Config {
        let json = format!(
            r#"{{"endpoints":[{{"name":"azure","path":"/a","profile":"{profile}","secret":{{"values":["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}}}}]}}"#
        );
        Config::parse(json.as_bytes(), |_| None).unwrap()
    }

    #[test]
    fn profile_counters_are_equal_by_content_wherever_they_are() {
        // Leaked copies: equal contents at other addresses.
        let text = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
        let counter = |family: &str, labels: &[(&str, &str)], verdict: bool| ProfileCounter {
            family: text(family),
            labels: Box::leak(labels.iter().map(|(n, v)| (text(n), text(v))).collect::<Vec<_>>().into_boxed_slice()),
            verdict,
        };
        let base = counter("events_total", &[("event_type", "put"), ("state", "failed")], false);
        assert_eq!(base, counter("events_total", &[("event_type", "put"), ("state", "failed")], false));
        assert_eq!(base, base);
        for other in [
            counter("events_totals", &[("event_type", "put"), ("state", "failed")], false),
            counter("events_total", &[("event_type", "put"), ("state", "failed")], true),
            counter("events_total", &[("event_type", "put"), ("state", "failing")], false),
            counter("events_total", &[("event_type", "pat"), ("state", "failed")], false),
            counter("events_total", &[("event_typo", "put"), ("state", "failed")], false),
            counter("events_total", &[("event_type", "put"), ("stata", "failed")], false),
            counter("events_total", &[("event_type", "put")], false),
            counter("events_total", &[("state", "failed")], false),
            counter("events_total", &[], false),
        ] {
            assert_ne!(base, other);
            assert_ne!(other, base);
        }
    }

    #[test]
    fn names_are_unique_and_carry_their_labels() {
        let config = endpoint("azure_managed_app");
        let endpoint = &config.endpoints[0];
        let names: Vec<String> = Counter::of(endpoint).iter().map(|c| c.name(endpoint)).collect();
        assert_eq!(names.iter().collect::<HashSet<_>>().len(), names.len());
        let head = "webhook_guard.endpoint=.=azure;.;profile=.=azure_managed_app;.;";
        for want in [
            "requests_total",
            "rejected_total.reason=.=forbidden;.;status=.=403;.;",
            "events_total.event_type=.=patch;.;state=.=succeeded;.;",
            "upstream_failures_total",
            "nonconforming_total.rule=.=pair_undocumented;.;",
            "rejected_total.reason=.=held;.;status=.=503;.;",
            "upstream_mapped_total.reason=.=redirect;.;",
        ] {
            // The family comes last, after its own labels.
            let want = match want.split_once('.') {
                Some((family, labels)) => format!("{head}{labels}{family}"),
                None => format!("{head}{want}"),
            };
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert_eq!(ListenerCounter::UnguardedRejected.name(), "webhook_guard.unguarded_rejected_total");
        assert_eq!(Histogram::of(endpoint), [Histogram::Held]);
        assert_eq!(Histogram::Held.name(endpoint), format!("{head}held_milliseconds"));
    }

    #[test]
    fn every_label_of_every_profile_is_one_the_envoy_configuration_extracts() {
        for registration in crate::profile::REGISTRY {
            let config = endpoint(registration.name);
            let endpoint = &config.endpoints[0];
            for name in Counter::of(endpoint).iter().map(|c| c.name(endpoint)) {
                let mut labels = name.split(";.;").filter_map(|part| part.rsplit_once("=.=")).map(|(l, _)| l.rsplit('.').next().unwrap_or(l));
                assert!(labels.all(|l| LABELS.contains(&l)), "{name}");
                assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._=;-".contains(&b)), "{name}");
            }
        }
    }

    #[test]
    fn removing_the_labels_leaves_the_family() {
        let name = series("rejected_total", &[("endpoint", "a-1".to_string()), ("reason", "invalid".to_string())]);
        assert_eq!(name, "webhook_guard.endpoint=.=a-1;.;reason=.=invalid;.;rejected_total");
        let stripped = LABELS.iter().fold(name, |n, l| match n.split_once(&format!("{l}=.=")) {
            Some((before, after)) => format!("{before}{}", after.split_once(";.;").map_or("", |(_, rest)| rest)),
            None => n,
        });
        assert_eq!(stripped, "webhook_guard.rejected_total");
    }

    #[test]
    fn every_reason_but_the_listeners_and_the_confirmations_is_counted() {
        let config = endpoint("md5_envelope");
        let counters = Counter::of(&config.endpoints[0]);
        for reason in Reason::ALL {
            assert_eq!(counters.contains(&Counter::Rejected(*reason)), !NOT_PER_ENDPOINT.contains(reason), "{reason:?}");
        }
    }
}
