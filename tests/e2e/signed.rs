//! What the signed senders' end-to-end tests share: the two deployment forms, an Envoy
//! with one signed endpoint, and the assertions every signed profile must pass (nothing of
//! a refused delivery reaches the backend, a forwarded one is cleaned, a replay is
//! delivered once while a retry after a 5xx goes through, no secret or signature leaks).

use crate::harness::{Behaviour, Envoy, Options, Recorded, Response, Upstream};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Form {
    /// `"header_mode": "hold"` with allow_on_headers_stop_iteration.
    Hold,
    /// `"header_mode": "stream"` without it (Istio's WasmPlugin, Envoy Gateway).
    Stream,
}

pub const FORMS: [Form; 2] = [Form::Hold, Form::Stream];

/// Gateway headers a client may try to forge; the filter removes every one.
pub const SPOOFED: [(&str, &str); 3] = [("x-webhook-verified", "true"), ("x-webhook-event-id", "forged"), ("ce-type", "forged")];

pub struct Setup {
    pub upstream: Upstream,
    pub envoy: Envoy,
}

/// Envoy in `form` guarding the one `endpoint` (a JSON object), with `env` for its secrets.
pub fn start(form: Form, endpoint: &str, env: &[(&str, &str)], access_log: Option<&str>) -> Setup {
    let mode = if form == Form::Hold { "hold" } else { "stream" };
    let plugin = format!(r#"{{"header_mode": "{mode}", "endpoints": [{endpoint}]}}"#);
    let upstream = Upstream::start();
    let mut opts = Options::new(&plugin, upstream.port);
    opts.stop_iteration = form == Form::Hold;
    opts.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    opts.access_log = access_log.map(String::from);
    let envoy = Envoy::start_with(opts);
    Setup { upstream, envoy }
}

pub fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

/// In `hold` nothing reached the upstream; in `stream` at most the cleaned head did (its
/// request reset before any body): never a complete request, never the `signature_header`
/// nor its value `signature`.
pub fn assert_nothing_delivered(s: &Setup, form: Form, signature_header: &str, signature: &str) {
    assert!(s.upstream.requests().is_empty(), "{form:?}: a request reached the upstream: {:?}", s.upstream.requests());
    let heads = s.upstream.heads();
    if form == Form::Hold {
        assert!(heads.is_empty(), "hold: a head reached the upstream: {heads:?}");
    }
    for head in heads {
        assert!(head.header(signature_header).is_none() && !format!("{head:?}").contains(signature), "{head:?}");
    }
}

/// The one request the upstream took: a CloudEvent of `profile` at `path`, without the
/// `removed` signature header nor any [`SPOOFED`] header, `x-webhook-event-id` only where
/// the head waited for the body. Returns it and its event.
pub fn assert_cloudevent_forwarded(s: &Setup, form: Form, path: &str, profile: &str, removed: &[&str]) -> (Recorded, serde_json::Value) {
    let seen = s.upstream.only();
    assert_eq!(seen.path, path);
    for name in removed {
        assert_eq!(seen.header(name), None, "{form:?}: {name}");
    }
    assert_eq!(seen.header("x-webhook-profile"), Some(profile));
    assert_eq!(seen.header("x-webhook-verified"), None, "{form:?}: a spoofed gateway header");
    assert_eq!(seen.header("ce-type"), None);
    assert_eq!(seen.header("content-type"), Some("application/cloudevents+json"));
    let event = seen.json();
    assert_eq!(event["specversion"], "1.0");
    match form {
        // Headers derived from the body need the held head.
        Form::Hold => assert_eq!(seen.header("x-webhook-event-id"), event["id"].as_str()),
        Form::Stream => assert_eq!(seen.header("x-webhook-event-id"), None),
    }
    (seen, event)
}

/// A delivery whose upstream answered 503 is retried by its sender (`retry`: the same
/// message, signed again) and delivered; replays of either attempt, byte for byte, are
/// then answered 200 + `x-webhook-duplicate` and never reach the backend again.
pub fn assert_retry_delivered_and_replays_not(s: &Setup, form: Form, endpoint: &str, first: impl Fn() -> Response, retry: impl Fn() -> Response) {
    s.upstream.set(Behaviour::Status(503));
    assert_eq!(first().status, 503, "{form:?}: the sender sees the failure and retries");
    s.upstream.set(Behaviour::Status(200));
    let delivered = retry();
    assert_eq!(delivered.status, 200, "{form:?}: {delivered:?}");
    assert!(delivered.header("x-webhook-duplicate").is_none());
    assert_eq!(s.upstream.taken().len(), 1);
    for answer in [retry(), first()] {
        assert_eq!((answer.status, answer.header("x-webhook-duplicate")), (200, Some("true")), "{form:?}: {answer:?}");
    }
    assert_eq!(s.upstream.taken().len(), 1, "{form:?}: delivered once");
    assert_eq!(s.envoy.counter("duplicates_total", &[("endpoint", endpoint)]), 2);
}

/// None of `leaks` (secrets, signatures) in the access `log`, Envoy's log or any head the
/// upstream saw.
pub fn assert_no_leaks(s: &Setup, form: Form, log: &str, leaks: &[&str]) {
    for leak in leaks {
        assert!(!log.contains(leak), "{form:?}: {log}");
        for seen in s.upstream.heads() {
            assert!(!format!("{seen:?}").contains(leak), "{form:?}: {seen:?}");
        }
        assert!(!s.envoy.log().contains(leak), "{form:?}: Envoy's log");
    }
}
