//! The fleet-wide rate limit the filter asks for itself (`global_rate_limit`): Envoy's
//! rate limit service protocol (`envoy.service.ratelimit.v3`, spoken by Limitador and
//! `envoyproxy/ratelimit`) over gRPC, with descriptors built from the validated event.
//! Asked while the body is held, so it works with a streamed head too (no
//! `allow_on_headers_stop_iteration`); this module has its configuration, the request
//! and the reading of the answer, and `filter/global_limit.rs` the stage that waits.

pub mod proto;

use crate::config::{pick, Object};
use crate::event::RateKeys;
use crate::profile::Profile;

/// The default timeout: the ratelimit filter's in the fleet example (`timeout: 0.5s`).
const DEFAULT_TIMEOUT_MS: u64 = 500;
/// The body is held while the service answers; past this the sender's own timeout nears.
const MAX_TIMEOUT_MS: u64 = 10_000;
const MAX_DESCRIPTORS: usize = 8;
/// gRPC service and method of `ShouldRateLimit`.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

/// An endpoint's `global_rate_limit`.
#[derive(Debug)]
pub struct GlobalRateLimit {
    /// The Envoy cluster of the rate limit service (HTTP/2).
    pub cluster: String,
    pub domain: String,
    /// Each descriptor's keys, in order.
    pub descriptors: Vec<Vec<DescriptorKey>>,
    pub timeout_ms: u64,
    pub on_error: OnError,
}

/// A descriptor entry's key; its value comes from the endpoint or the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescriptorKey {
    /// The endpoint's name (`x-webhook-endpoint` of the ratelimit-filter path).
    Endpoint,
    /// The canonical, lowercased application id.
    Application,
    /// The lowercased subscription id.
    Subscription,
}

impl DescriptorKey {
    const ALL: [(&'static str, DescriptorKey); 3] =
        [("endpoint", DescriptorKey::Endpoint), ("application", DescriptorKey::Application), ("subscription", DescriptorKey::Subscription)];

    fn name(self) -> &'static str {
        match self {
            DescriptorKey::Endpoint => "endpoint",
            DescriptorKey::Application => "application",
            DescriptorKey::Subscription => "subscription",
        }
    }
}

/// What happens to a notification when the service cannot answer (unreachable, an error,
/// past the timeout, an answer that cannot be read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Forward it, counted: an outage of the service never becomes a status a sender
    /// drops, and each replica's local `rate_limit` still applies.
    Forward,
    /// Answer 503 with `Retry-After`: both senders retry it.
    Hold,
}

/// The `global_rate_limit` block as given (read by [`Raw::read`]).
pub struct Raw {
    cluster: String,
    domain: String,
    descriptors: Option<Vec<Vec<String>>>,
    timeout_ms: Option<u64>,
    on_error: Option<String>,
}

impl Raw {
    /// The block's members, typed; errors worded as serde's derive gave them.
    pub fn read(o: &Object) -> Result<Self, String> {
        o.closed(&["cluster", "domain", "descriptors", "timeout_ms", "on_error"])?;
        let (cluster, domain, descriptors) = (o.get("cluster")?, o.get("domain")?, o.get::<Option<_>>("descriptors")?);
        let (timeout_ms, on_error) = (o.get::<Option<_>>("timeout_ms")?, o.get::<Option<_>>("on_error")?);
        Ok(Raw {
            cluster: cluster.ok_or_else(|| o.missing("cluster"))?,
            domain: domain.ok_or_else(|| o.missing("domain"))?,
            descriptors: descriptors.flatten(),
            timeout_ms: timeout_ms.flatten(),
            on_error: on_error.flatten(),
        })
    }
}

impl GlobalRateLimit {
    /// Validates `raw` for an endpoint of `profile`; the error names the field.
    pub fn validate(raw: &Raw, profile: &dyn Profile) -> Result<Self, String> {
        let named = |v: &str| !v.is_empty() && v.len() <= 255 && v.bytes().all(|b| b.is_ascii_graphic());
        if !named(&raw.cluster) {
            return Err("global_rate_limit.cluster: must be an Envoy cluster name (1-255 printable characters)".into());
        }
        if !named(&raw.domain) {
            return Err("global_rate_limit.domain: must be 1-255 printable characters".into());
        }
        let default = if profile.has_rate_keys() { vec![vec!["endpoint", "application"], vec!["endpoint", "subscription"]] } else { vec![vec!["endpoint"]] };
        let given: Vec<Vec<&str>> = match &raw.descriptors {
            Some(d) => d.iter().map(|keys| keys.iter().map(String::as_str).collect()).collect(),
            None => default,
        };
        if given.is_empty() || given.len() > MAX_DESCRIPTORS {
            return Err(format!("global_rate_limit.descriptors: must list 1 to {MAX_DESCRIPTORS} descriptors"));
        }
        let mut descriptors = Vec::with_capacity(given.len());
        for (i, keys) in given.iter().enumerate() {
            let at = format!("global_rate_limit.descriptors[{i}]");
            let mut descriptor = Vec::with_capacity(keys.len());
            for key in keys {
                let key = pick(&at, "key", key, &DescriptorKey::ALL)?;
                if descriptor.contains(&key) {
                    return Err(format!("{at}: '{}' given twice", key.name()));
                }
                if key != DescriptorKey::Endpoint && !profile.has_rate_keys() {
                    return Err(format!("{at}: the {} profile's events carry no application or subscription", profile.name()));
                }
                descriptor.push(key);
            }
            if descriptor.is_empty() {
                return Err(format!("{at}: must name at least one key"));
            }
            descriptors.push(descriptor);
        }
        let timeout_ms = raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(format!("global_rate_limit.timeout_ms: must be between 1 and {MAX_TIMEOUT_MS}"));
        }
        let on_error = pick(
            "global_rate_limit.on_error",
            "value",
            raw.on_error.as_deref().unwrap_or("forward"),
            &[("forward", OnError::Forward), ("hold", OnError::Hold)],
        )?;
        Ok(GlobalRateLimit { cluster: raw.cluster.clone(), domain: raw.domain.clone(), descriptors, timeout_ms, on_error })
    }

    /// The `ShouldRateLimit` request for an event of `endpoint` with `keys`; `None` when
    /// no descriptor has all its values (as Envoy's ratelimit filter, a descriptor missing
    /// one is not sent), so there is nothing to ask.
    pub fn request(&self, endpoint: &str, keys: &RateKeys) -> Option<Vec<u8>> {
        let value = |key: DescriptorKey| match key {
            DescriptorKey::Endpoint => Some(endpoint),
            DescriptorKey::Application => keys.application.as_deref(),
            DescriptorKey::Subscription => keys.subscription.as_deref(),
        };
        let descriptors: Vec<Vec<(&str, &str)>> = self.descriptors.iter().filter_map(|d| d.iter().map(|k| Some((k.name(), value(*k)?))).collect()).collect();
        (!descriptors.is_empty()).then(|| proto::encode_request(&self.domain, &descriptors))
    }
}

/// The service's verdict on a notification.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Over the limit: `Retry-After` seconds and the `x-ratelimit-*` headers.
    Limited {
        retry_after: u64,
        headers: Vec<(&'static str, String)>,
    },
    /// No verdict: the failure mode decides (the cause, for the log line).
    Failed(&'static str),
}

/// The verdict of a call that ended with gRPC `status` (0: OK) and answer `body`.
pub fn verdict(status: u32, body: &[u8]) -> Verdict {
    if status != 0 {
        return Verdict::Failed("the call failed");
    }
    match proto::decode_response(body) {
        Some(r) if r.code == proto::OK => Verdict::Allow,
        Some(r) if r.code == proto::OVER_LIMIT => limited(&r.statuses),
        Some(_) => Verdict::Failed("the answer has no code"),
        None => Verdict::Failed("the answer is not a RateLimitResponse"),
    }
}

/// The refusal of an over-limit answer. The notification passes only once every spent
/// counter has reset: `Retry-After` is the longest `duration_until_reset` of the statuses
/// over the limit (their window when the service gives none, at least 1 s), and the
/// `x-ratelimit-*` headers (the form of Envoy's ratelimit filter) describe that counter.
fn limited(statuses: &[proto::DescriptorStatus]) -> Verdict {
    let over = statuses.iter().filter(|s| s.code == proto::OVER_LIMIT);
    let wait = |s: &proto::DescriptorStatus| s.reset_secs.or_else(|| s.limit.and_then(|(_, unit)| window(unit))).unwrap_or(1).max(1);
    let Some(spent) = over.max_by_key(|s| wait(s)) else {
        return Verdict::Limited { retry_after: 1, headers: vec![] };
    };
    let mut headers = Vec::new();
    if let Some((per_unit, unit)) = spent.limit {
        let window = window(unit).map_or(String::new(), |w| format!(", {per_unit};w={w}"));
        headers.push(("x-ratelimit-limit", format!("{per_unit}{window}")));
        headers.push(("x-ratelimit-remaining", spent.remaining.to_string()));
    }
    if let Some(reset) = spent.reset_secs {
        headers.push(("x-ratelimit-reset", reset.to_string()));
    }
    Verdict::Limited { retry_after: wait(spent), headers }
}

/// Seconds of a `RateLimitResponse.RateLimit.Unit` (SECOND to DAY; the rest vary).
fn window(unit: u64) -> Option<u64> {
    match unit {
        1 => Some(1),
        2 => Some(60),
        3 => Some(3600),
        4 => Some(86_400),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn endpoint(profile: &str, setting: &str) -> Result<Config, String> {
        let json = format!(
            r#"{{"endpoints":[{{"name":"azure","path":"/a","profile":"{profile}","secret":{{"values":["TOPSECRET"]}},"global_rate_limit":{setting}}}]}}"#
        );
        Config::parse(json.as_bytes(), |_| None)
    }

    fn setting(config: &Config) -> &GlobalRateLimit {
        config.endpoints[0].global_rate_limit.as_ref().unwrap()
    }

    fn azure_keys() -> RateKeys {
        RateKeys { application: Some("/subscriptions/s/applications/a".into()), subscription: Some("s".into()) }
    }

    #[test]
    fn defaults_follow_the_profile() {
        let config = endpoint("azure_managed_app", r#"{"cluster":"ratelimit","domain":"webhook-guard"}"#).unwrap();
        let global = setting(&config);
        use DescriptorKey::*;
        assert_eq!(global.descriptors, [vec![Endpoint, Application], vec![Endpoint, Subscription]]);
        assert_eq!((global.timeout_ms, global.on_error), (500, OnError::Forward));
        let config = endpoint("md5_envelope", r#"{"cluster":"ratelimit","domain":"d","on_error":"hold","timeout_ms":50}"#).unwrap();
        let global = setting(&config);
        assert_eq!(global.descriptors, [vec![Endpoint]]);
        assert_eq!((global.timeout_ms, global.on_error), (50, OnError::Hold));
        assert!(endpoint("azure_managed_app", "null").unwrap().endpoints[0].global_rate_limit.is_none());
        // The bounds themselves are accepted: 8 descriptors, 10 s.
        let eight = [r#"["endpoint"]"#; 8].join(",");
        let config = endpoint("azure_managed_app", &format!(r#"{{"cluster":"c","domain":"d","timeout_ms":10000,"descriptors":[{eight}]}}"#)).unwrap();
        assert_eq!((setting(&config).descriptors.len(), setting(&config).timeout_ms), (8, 10_000));
        let nine = [r#"["endpoint"]"#; 9].join(",");
        assert!(endpoint("azure_managed_app", &format!(r#"{{"cluster":"c","domain":"d","descriptors":[{nine}]}}"#)).unwrap_err().contains("must list 1 to 8"));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("azure_managed_app", r#"{"domain":"d"}"#, "missing field `cluster`"),
            ("azure_managed_app", r#"{"cluster":"","domain":"d"}"#, "endpoints[0].global_rate_limit.cluster: must be"),
            ("azure_managed_app", r#"{"cluster":"c","domain":"a b"}"#, "endpoints[0].global_rate_limit.domain: must be"),
            ("azure_managed_app", r#"{"cluster":"c","domain":"d","descriptors":[]}"#, "global_rate_limit.descriptors: must list 1 to 8"),
            ("azure_managed_app", r#"{"cluster":"c","domain":"d","descriptors":[[]]}"#, "global_rate_limit.descriptors[0]: must name at least one key"),
            (
                "azure_managed_app",
                r#"{"cluster":"c","domain":"d","descriptors":[["endpoint"],["ip"]]}"#,
                "global_rate_limit.descriptors[1]: unknown key 'ip' (expected endpoint, application or subscription)",
            ),
            (
                "azure_managed_app",
                r#"{"cluster":"c","domain":"d","descriptors":[["endpoint","endpoint"]]}"#,
                "global_rate_limit.descriptors[0]: 'endpoint' given twice",
            ),
            (
                "md5_envelope",
                r#"{"cluster":"c","domain":"d","descriptors":[["application"]]}"#,
                "global_rate_limit.descriptors[0]: the md5_envelope profile's events carry no application",
            ),
            ("azure_managed_app", r#"{"cluster":"c","domain":"d","timeout_ms":0}"#, "global_rate_limit.timeout_ms: must be between 1 and 10000"),
            ("azure_managed_app", r#"{"cluster":"c","domain":"d","timeout_ms":10001}"#, "global_rate_limit.timeout_ms"),
            (
                "azure_managed_app",
                r#"{"cluster":"c","domain":"d","on_error":"deny"}"#,
                "global_rate_limit.on_error: unknown value 'deny' (expected forward or hold)",
            ),
            ("azure_managed_app", r#"{"cluster":"c","domain":"d","failure_mode_deny":true}"#, "unknown field `failure_mode_deny`"),
        ];
        for (profile, json, want) in cases {
            let err = endpoint(profile, json).unwrap_err();
            assert!(err.contains(want), "{json}\n  gave: {err}\n  want: {want}");
            assert!(!err.contains("TOPSECRET"));
        }
    }

    #[test]
    fn the_request_carries_the_event_keys_and_no_secret() {
        let config = endpoint("azure_managed_app", r#"{"cluster":"ratelimit","domain":"webhook-guard"}"#).unwrap();
        let request = setting(&config).request("azure", &azure_keys()).unwrap();
        let want = proto::encode_request(
            "webhook-guard",
            &[vec![("endpoint", "azure"), ("application", "/subscriptions/s/applications/a")], vec![("endpoint", "azure"), ("subscription", "s")]],
        );
        assert_eq!(request, want);
        assert!(!String::from_utf8_lossy(&request).contains("TOPSECRET"));
        // A descriptor missing a value is not sent; none left, nothing is asked.
        let keys = RateKeys { application: None, subscription: Some("s".into()) };
        assert_eq!(
            setting(&config).request("azure", &keys).unwrap(),
            proto::encode_request("webhook-guard", &[vec![("endpoint", "azure"), ("subscription", "s")]])
        );
        let config = endpoint("azure_managed_app", r#"{"cluster":"c","domain":"d","descriptors":[["application"]]}"#).unwrap();
        assert_eq!(setting(&config).request("azure", &RateKeys::default()), None);
    }

    /// A descriptor status: (code, (requests_per_unit, unit), limit_remaining, seconds until reset).
    type Status = (u8, Option<(u8, u8)>, u8, Option<u8>);

    /// A `RateLimitResponse` with `code` and `statuses`.
    fn answer(code: u8, statuses: &[Status]) -> Vec<u8> {
        let mut out = vec![0x08, code];
        for (code, limit, remaining, reset) in statuses {
            let mut status = vec![0x08, *code];
            if let Some((per_unit, unit)) = limit {
                status.extend_from_slice(&[0x12, 4, 0x08, *per_unit, 0x10, *unit]);
            }
            status.extend_from_slice(&[0x18, *remaining]);
            if let Some(reset) = reset {
                status.extend_from_slice(&[0x22, 2, 0x08, *reset]);
            }
            out.extend_from_slice(&[0x12, status.len() as u8]);
            out.extend_from_slice(&status);
        }
        out
    }

    #[test]
    fn over_the_limit_waits_for_the_longest_spent_counter() {
        let body = answer(2, &[(1, Some((100, 2)), 7, Some(50)), (2, Some((5, 2)), 0, Some(41)), (2, Some((1, 1)), 0, None)]);
        let headers = vec![("x-ratelimit-limit", "5, 5;w=60".to_string()), ("x-ratelimit-remaining", "0".into()), ("x-ratelimit-reset", "41".into())];
        assert_eq!(verdict(0, &body), Verdict::Limited { retry_after: 41, headers });
        // No reset given: the window; no window known: 1 s; a reset of 0 is still 1 s.
        assert_eq!(
            verdict(0, &answer(2, &[(2, Some((3, 3)), 0, None)])),
            Verdict::Limited { retry_after: 3600, headers: vec![("x-ratelimit-limit", "3, 3;w=3600".into()), ("x-ratelimit-remaining", "0".into())] }
        );
        assert_eq!(
            verdict(0, &answer(2, &[(2, Some((3, 5)), 0, Some(0))])),
            Verdict::Limited {
                retry_after: 1,
                headers: vec![("x-ratelimit-limit", "3".into()), ("x-ratelimit-remaining", "0".into()), ("x-ratelimit-reset", "0".into())]
            }
        );
        assert_eq!(verdict(0, &answer(2, &[])), Verdict::Limited { retry_after: 1, headers: vec![] });
        // Every unit with a fixed length.
        for (unit, seconds) in [(1, 1), (2, 60), (3, 3600), (4, 86_400)] {
            let Verdict::Limited { retry_after, headers } = verdict(0, &answer(2, &[(2, Some((1, unit)), 0, None)])) else { panic!("limited") };
            assert_eq!(retry_after, seconds, "unit {unit}");
            assert_eq!(headers[0], ("x-ratelimit-limit", format!("1, 1;w={seconds}")));
        }
    }

    #[test]
    fn only_ok_allows_and_anything_unreadable_fails() {
        assert_eq!(verdict(0, &answer(1, &[(1, None, 3, None)])), Verdict::Allow);
        assert_eq!(verdict(14, &answer(1, &[])), Verdict::Failed("the call failed"));
        assert_eq!(verdict(0, &answer(0, &[])), Verdict::Failed("the answer has no code"));
        assert_eq!(verdict(0, b"\x12\x09"), Verdict::Failed("the answer is not a RateLimitResponse"));
    }
}
