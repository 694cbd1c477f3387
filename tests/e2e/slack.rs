//! The slack profile through the real Envoy, in both deployment forms. Requests are signed
//! here with RustCrypto's HMAC, as Slack does, independently of the filter's code.

use crate::harness::{Behaviour, Response};
use crate::signed::{self, assert_nothing_delivered, hex, now, Form, Sender, Setup, FORMS};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Slack's documented example signing secret, a second one for rotation (from the
/// environment), and one the endpoint does not have.
const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const NEXT_SECRET: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const OTHER_SECRET: &str = "ffffffffffffffffffffffffffffffff";
const EVENT: &str = r#"{"token":"x","team_id":"T0001","api_app_id":"A0001","type":"event_callback","event":{"type":"app_mention","user":"U1","text":"<@U0LAN0Z89> hi","channel":"C1"},"event_id":"Ev0PV52K21","event_time":1714557600}"#;
/// Slack's documented slash command body.
const COMMAND: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const CHALLENGE: &str = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P";
const PATH: &str = "/hooks/slack";
const HEADER: &str = "x-slack-signature";

fn start(form: Form, extra: &str, access_log: Option<&str>) -> Setup {
    let endpoint = format!(
        r#"{{"name": "slack", "path": "{PATH}", "profile": "slack",
  "secret": {{"values": ["{SECRET}"], "env_optional": ["SLACK_NEXT_SECRET"]}}{extra}}}"#
    );
    signed::start(form, &endpoint, &[("SLACK_NEXT_SECRET", NEXT_SECRET)], access_log)
}

/// `v0=<hex>` of `v0:{timestamp}:{body}` under `secret`.
fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex(&mac.finalize().into_bytes()))
}

/// A request as Slack makes it: its headers and body.
#[derive(Clone)]
struct Request {
    timestamp: String,
    signature: String,
    content_type: &'static str,
    body: Vec<u8>,
    /// `X-Slack-Retry-Num`, on Slack's retries.
    retry: Option<u32>,
}

impl Sender for Request {
    const ENDPOINT: &'static str = "slack";
    const SECRETS: [&'static str; 3] = [SECRET, NEXT_SECRET, OTHER_SECRET];

    fn start(form: Form, extra: &str, access_log: Option<&str>) -> Setup {
        start(form, extra, access_log)
    }

    /// An event whose `event_id` is `id`; a later `skew` is Slack's retry.
    fn delivery(id: &str, secret: &str, skew: i64) -> Request {
        Request::new(&EVENT.replace("Ev0PV52K21", &format!("Ev{id}")), secret, skew)
    }

    fn send(&self, s: &Setup) -> Response {
        self.send_with(s, &[])
    }

    fn signature(&self) -> String {
        self.signature["v0=".len()..].to_string()
    }
}

impl Request {
    fn new(body: &str, secret: &str, skew: i64) -> Request {
        let timestamp = (now() + skew).to_string();
        let signature = sign(secret, &timestamp, body.as_bytes());
        let content_type = if body.starts_with('{') { "application/json" } else { "application/x-www-form-urlencoded" };
        Request { timestamp, signature, content_type, body: body.into(), retry: None }
    }

    /// Slack's `n`th retry of this request: signed again with a later timestamp.
    fn retry(&self, n: u32) -> Request {
        let mut again = Request::new(std::str::from_utf8(&self.body).unwrap(), SECRET, i64::from(n));
        again.retry = Some(n);
        again
    }

    fn send_with(&self, s: &Setup, extra: &[(&str, &str)]) -> Response {
        let retry = self.retry.map(|n| n.to_string()).unwrap_or_default();
        let headers = [
            ("content-type", self.content_type),
            ("user-agent", "Slackbot 1.0 (+https://api.slack.com/robots)"),
            ("x-slack-request-timestamp", self.timestamp.as_str()),
            (HEADER, self.signature.as_str()),
            ("x-slack-retry-num", retry.as_str()),
            ("x-slack-retry-reason", if retry.is_empty() { "" } else { "http_error" }),
        ];
        signed::post(s, PATH, &headers, extra, &self.body)
    }
}

#[test]
fn a_valid_event_is_forwarded_as_a_cloudevent_without_its_signature() {
    for form in FORMS {
        let s = start(form, "", None);
        let request = Request::new(EVENT, SECRET, 0);
        let answer = request.send_with(&s, &[("x-webhook-verified", "true"), ("x-webhook-event-type", "forged"), ("ce-id", "forged")]);
        assert_eq!(answer.status, 200, "{form:?}: {answer:?}");
        let seen = s.upstream.only();
        assert_eq!(seen.header(HEADER), None, "{form:?}");
        assert_eq!(seen.header("x-slack-request-timestamp"), Some(request.timestamp.as_str()));
        assert_eq!(seen.header("x-webhook-profile"), Some("slack"));
        assert_eq!((seen.header("x-webhook-verified"), seen.header("ce-id")), (None, None), "{form:?}: spoofed gateway headers");
        let event = seen.json();
        assert_eq!(event["type"], "webhookguard.slack.event.app_mention");
        assert_eq!(event["time"], "2024-05-01T10:00:00Z");
        assert_eq!(event["source"], "/webhook-guard/slack");
        assert_eq!(event["data"], serde_json::from_str::<serde_json::Value>(EVENT).unwrap());
        let derived = (seen.header("x-webhook-event-id"), seen.header("x-webhook-event-type"));
        match form {
            Form::Hold => assert_eq!(derived, (event["id"].as_str(), Some("webhookguard.slack.event.app_mention"))),
            Form::Stream => assert_eq!(derived, (None, None)),
        }
    }
}

#[test]
fn json_and_form_requests_are_forwarded_byte_for_byte_or_as_events() {
    for form in FORMS {
        let s = start(form, r#", "forward": "original""#, None);
        for body in [EVENT, COMMAND] {
            assert_eq!(Request::new(body, SECRET, 0).send(&s).status, 200, "{form:?}");
        }
        let seen = s.upstream.requests();
        assert_eq!((seen[0].body.as_slice(), seen[1].body.as_slice()), (EVENT.as_bytes(), COMMAND.as_bytes()));
        assert_eq!(seen[1].header("content-type"), Some("application/x-www-form-urlencoded"));
        assert!(seen.iter().all(|r| r.header(HEADER).is_none()));
    }
    let s = start(Form::Hold, "", None);
    assert_eq!(Request::new(COMMAND, SECRET, 0).send(&s).status, 200);
    let event = s.upstream.only().json();
    assert_eq!(event["type"], "webhookguard.slack.slash_command");
    assert_eq!((event["data"]["command"].as_str(), event["data"]["team_domain"].as_str()), (Some("/webhook-collect"), Some("testteamnow")));
}

#[test]
fn forged_stale_future_and_incomplete_requests_are_refused() {
    for form in FORMS {
        let s = start(form, "", None);
        let good = Request::new(EVENT, SECRET, 0);
        let changed = |edit: fn(&mut Request)| {
            let mut r = good.clone();
            edit(&mut r);
            r
        };
        let cases: Vec<(&str, Request, u16, &str)> = vec![
            ("wrong secret", Request::new(EVENT, OTHER_SECRET, 0), 403, "forbidden"),
            ("wrong signature", changed(|r| r.signature = sign(SECRET, &r.timestamp, b"{}")), 403, "forbidden"),
            ("body changed by one byte", changed(|r| r.body[30] ^= 1), 403, "forbidden"),
            ("timestamp changed after signing", changed(|r| r.timestamp = (r.timestamp.parse::<i64>().unwrap() - 1).to_string()), 403, "forbidden"),
            ("stale", Request::new(EVENT, SECRET, -301 - 5), 401, "unauthorized"),
            ("future", Request::new(EVENT, SECRET, 301 + 5), 401, "unauthorized"),
            ("no timestamp", changed(|r| r.timestamp.clear()), 401, "unauthorized"),
            ("no signature", changed(|r| r.signature.clear()), 401, "unauthorized"),
            ("not v0", changed(|r| r.signature.replace_range(..2, "v1")), 401, "unauthorized"),
        ];
        for (what, request, status, slug) in cases {
            let problem = request.send(&s).assert_problem(status, slug);
            assert!(!problem.to_string().contains(&good.signature[3..]), "{what}: {problem}");
            assert_nothing_delivered(&s, form, HEADER, &good.signature[3..]);
        }
        assert_eq!(good.send(&s).status, 200, "{form:?}: the genuine request still goes through");
        let rejected = |reason| s.envoy.counter("rejected_total", &[("endpoint", "slack"), ("reason", reason)]);
        assert_eq!((rejected("forbidden"), rejected("unauthorized")), (4, 5), "{form:?}");
    }
}

#[test]
fn the_tolerance_is_configurable() {
    let s = start(Form::Hold, r#", "tolerance_seconds": 60, "dedupe_seconds": 600"#, None);
    Request::new(EVENT, SECRET, -120).send(&s).assert_problem(401, "unauthorized");
    Request::new(EVENT, SECRET, 120).send(&s).assert_problem(401, "unauthorized");
    assert_eq!(Request::new(EVENT, SECRET, -30).send(&s).status, 200);
    assert_eq!(s.upstream.requests().len(), 1);
}

#[test]
fn slacks_retries_and_a_replayed_slash_command_are_delivered_once() {
    for form in FORMS {
        let s = start(form, "", None);
        s.upstream.set(Behaviour::Status(503));
        let first = Request::new(EVENT, SECRET, 0);
        assert_eq!(first.send(&s).status, 503, "{form:?}: Slack sees the failure and retries");
        s.upstream.set(Behaviour::Status(200));
        let retry = first.retry(1);
        let delivered = retry.send(&s);
        assert_eq!((delivered.status, delivered.header("x-webhook-duplicate")), (200, None), "{form:?}: {delivered:?}");
        assert_eq!(s.upstream.requests()[1].header("x-slack-retry-num"), Some("1"), "the retry headers are forwarded");
        // A captured request replayed byte for byte, and Slack's own later retry of the
        // delivered event (signed again, the same event_id).
        for again in [&retry, &first, &first.retry(2)] {
            let answer = again.send(&s);
            assert_eq!((answer.status, answer.header("x-webhook-duplicate")), (200, Some("true")), "{form:?}: {answer:?}");
        }
        // A slash command has no event_id: its replay is known by its signature.
        let command = Request::new(COMMAND, SECRET, 0);
        assert_eq!(command.send(&s).header("x-webhook-duplicate"), None);
        assert_eq!(command.send(&s).header("x-webhook-duplicate"), Some("true"));
        assert_eq!(s.upstream.taken().len(), 2, "{form:?}: each delivered once");
        assert_eq!(s.envoy.counter("duplicates_total", &[("endpoint", "slack")]), 4);
    }
}

#[test]
fn the_url_verification_is_answered_only_once_verified() {
    let body = format!(r#"{{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"{CHALLENGE}","type":"url_verification"}}"#);
    for form in FORMS {
        let s = start(form, "", None);
        let answer = Request::new(&body, SECRET, 0).send(&s);
        assert_eq!(answer.status, 200, "{form:?}: {answer:?}");
        assert_eq!(answer.json(), serde_json::json!({ "challenge": CHALLENGE }));
        assert!(s.upstream.requests().is_empty(), "{form:?}: answered by the filter");
        assert_eq!(s.envoy.counter("handshakes_total", &[("endpoint", "slack"), ("event_type", "url_verification")]), 1);
        let forged = Request::new(&body, OTHER_SECRET, 0).send(&s);
        forged.assert_problem(403, "forbidden");
        assert!(!String::from_utf8_lossy(&forged.body).contains(CHALLENGE), "{form:?}: no echo before the signature");
        assert!(s.upstream.requests().is_empty());
    }
}

signed::shared_tests!(Request, "%REQ(:PATH)% %REQ(X-SLACK-SIGNATURE)% %REQ(X-SLACK-REQUEST-TIMESTAMP)% %RESPONSE_CODE%\n");
