//! What the signed senders' end-to-end tests share: the two deployment forms, an Envoy
//! with one signed endpoint, and the assertions every signed profile must pass (nothing of
//! a refused delivery reaches the backend, a forwarded one is cleaned, a replay is
//! delivered once while a retry after a 5xx goes through, no secret or signature leaks).

use crate::harness::{send, Behaviour, Envoy, Options, Recorded, Response, Upstream};
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

/// Lowercase hex, as the hex-signing senders write their signatures.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

/// A signed sender's delivery, as its tests make and send it.
pub trait Sender: Sized {
    /// The endpoint's name in [`Sender::start`]'s configuration.
    const ENDPOINT: &'static str;
    /// The endpoint's secret, the rotation's next one (from the environment), and a
    /// secret the endpoint does not have.
    const SECRETS: [&'static str; 3];

    /// Envoy in `form` guarding the endpoint with the first two secrets and `extra` keys.
    fn start(form: Form, extra: &str, access_log: Option<&str>) -> Setup;

    /// Message `id` signed with `secret`, `skew` seconds from now where the sender signs
    /// a time: a larger skew with the same id is the sender's retry.
    fn delivery(id: &str, secret: &str, skew: i64) -> Self;

    fn send(&self, s: &Setup) -> Response;

    /// The signature as it must never leak.
    fn signature(&self) -> String;
}

/// The tests every signed sender passes alike, for its [`Sender`] and an access-log
/// format printing its signature header.
macro_rules! shared_tests {
    ($sender:ty, $log_format:expr) => {
        #[test]
        fn rotation_accepts_either_secret() {
            crate::signed::assert_either_secret_is_accepted::<$sender>();
        }

        #[test]
        fn a_replay_is_not_delivered_twice_but_a_retry_after_a_5xx_is() {
            crate::signed::assert_a_retry_is_delivered_and_a_replay_is_not::<$sender>();
        }

        #[test]
        fn no_secret_or_signature_reaches_the_access_log_or_the_upstream() {
            crate::signed::assert_no_secret_or_signature_leaks::<$sender>($log_format);
        }
    };
}
pub(crate) use shared_tests;

/// POSTs `body` to `path` with `headers` (an empty value leaves its header out, as a
/// sender that omitted it) and then `extra`.
pub fn post(s: &Setup, path: &str, headers: &[(&str, &str)], extra: &[(&str, &str)], body: &[u8]) -> Response {
    let mut all: Vec<(&str, &str)> = headers.iter().copied().filter(|(_, v)| !v.is_empty()).collect();
    all.extend_from_slice(extra);
    send(s.envoy.port, "POST", path, &all, body)
}

/// In both forms: a delivery whose upstream answered 503 is retried by its sender (the
/// same message, signed again) and delivered; replays of either attempt, byte for byte,
/// are then answered 200 + `x-webhook-duplicate` and never reach the backend again.
pub fn assert_a_retry_is_delivered_and_a_replay_is_not<D: Sender>() {
    for form in FORMS {
        let s = D::start(form, "", None);
        let first = D::delivery("retried", D::SECRETS[0], 0);
        let retry = D::delivery("retried", D::SECRETS[0], 1);
        s.upstream.set(Behaviour::Status(503));
        assert_eq!(first.send(&s).status, 503, "{form:?}: the sender sees the failure and retries");
        s.upstream.set(Behaviour::Status(200));
        let delivered = retry.send(&s);
        assert_eq!(delivered.status, 200, "{form:?}: {delivered:?}");
        assert!(delivered.header("x-webhook-duplicate").is_none());
        // Counted as received (recorded before the upstream answers, so never lagging
        // the sender's answer): the 503'd attempt and the retry.
        assert_eq!(s.upstream.requests().len(), 2);
        for replay in [&retry, &first] {
            let answer = replay.send(&s);
            assert_eq!((answer.status, answer.header("x-webhook-duplicate")), (200, Some("true")), "{form:?}: {answer:?}");
        }
        assert_eq!(s.upstream.requests().len(), 2, "{form:?}: no replay reached the upstream");
        assert_eq!(s.envoy.counter("duplicates_total", &[("endpoint", D::ENDPOINT)]), 2);
    }
}

/// In both forms: either configured secret is accepted, another refused 403.
pub fn assert_either_secret_is_accepted<D: Sender>() {
    for form in FORMS {
        let s = D::start(form, "", None);
        assert_eq!(D::delivery("old", D::SECRETS[0], 0).send(&s).status, 200, "{form:?}");
        assert_eq!(D::delivery("new", D::SECRETS[1], 0).send(&s).status, 200, "{form:?}");
        D::delivery("other", D::SECRETS[2], 0).send(&s).assert_problem(403, "forbidden");
        assert_eq!(s.upstream.requests().len(), 2);
    }
}

/// In both forms, with an access log in `format` (which prints the signature header): no
/// secret and no signature, of a delivered or a forged delivery, in that log, Envoy's
/// log or any head the upstream saw.
pub fn assert_no_secret_or_signature_leaks<D: Sender>(format: &str) {
    for form in FORMS {
        let s = D::start(form, "", Some(format));
        let good = D::delivery("logged", D::SECRETS[0], 0);
        let forged = D::delivery("forged", D::SECRETS[2], 0);
        assert_eq!(good.send(&s).status, 200);
        assert_eq!(forged.send(&s).status, 403);
        let log = s.envoy.access_log(2);
        assert_eq!(log.lines().count(), 2, "{log}");
        // A secret's prefix (`whsec_`) is public; what follows it is not.
        let secret = |i: usize| D::SECRETS[i].split_once('_').map_or(D::SECRETS[i], |(_, rest)| rest);
        for leak in [good.signature().as_str(), &forged.signature(), secret(0), secret(1)] {
            assert!(!log.contains(leak), "{form:?}: {log}");
            for seen in s.upstream.heads() {
                assert!(!format!("{seen:?}").contains(leak), "{form:?}: {seen:?}");
            }
            assert!(!s.envoy.log().contains(leak), "{form:?}: Envoy's log");
        }
    }
}
