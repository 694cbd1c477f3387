//! The github profile through the real Envoy, in both deployment forms. Deliveries are
//! signed here with RustCrypto's HMAC, as GitHub does, independently of the filter's code.

use crate::harness::Response;
use crate::signed::{self, assert_nothing_delivered, hex, Form, Sender, Setup, FORMS, SPOOFED};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// GitHub's documented example secret, a second one for rotation (from the environment),
/// and one the endpoint does not have.
const SECRET: &str = "It's a Secret to Everybody";
const NEXT_SECRET: &str = "next-github-secret-2";
const OTHER_SECRET: &str = "not this endpoint's";
const BODY: &str = r#"{"action":"opened","issue":{"number":7,"title":"Bug"},"repository":{"full_name":"octo-org/hello-world"},"sender":{"login":"octocat"}}"#;
const PING: &str = r#"{"zen":"Design for failure.","hook_id":42,"hook":{"type":"Repository","events":["issues"]}}"#;
const PATH: &str = "/hooks/github";
const HEADER: &str = "x-hub-signature-256";

fn start(form: Form, extra: &str, access_log: Option<&str>) -> Setup {
    let endpoint = format!(
        r#"{{"name": "gh", "path": "{PATH}", "profile": "github",
  "secret": {{"values": ["{SECRET}"], "env_optional": ["GH_NEXT_SECRET"]}}{extra}}}"#
    );
    signed::start(form, &endpoint, &[("GH_NEXT_SECRET", NEXT_SECRET)], access_log)
}

/// `sha256=<hex>` of `body` under `secret`.
fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// A delivery as GitHub makes it: its headers and body.
#[derive(Clone)]
struct Delivery {
    guid: String,
    event: String,
    content_type: &'static str,
    signature: String,
    body: Vec<u8>,
}

impl Sender for Delivery {
    const ENDPOINT: &'static str = "gh";
    const SECRETS: [&'static str; 3] = [SECRET, NEXT_SECRET, OTHER_SECRET];

    fn start(form: Form, extra: &str, access_log: Option<&str>) -> Setup {
        start(form, extra, access_log)
    }

    /// GitHub signs no time: a redelivery (`skew`) is the same delivery sent again.
    fn delivery(id: &str, secret: &str, _skew: i64) -> Delivery {
        Delivery::new(&format!("guid-{id}"), "issues", secret, BODY)
    }

    fn send(&self, s: &Setup) -> Response {
        self.send_with(s, &[])
    }

    fn signature(&self) -> String {
        self.signature["sha256=".len()..].to_string()
    }
}

impl Delivery {
    fn new(guid: &str, event: &str, secret: &str, body: &str) -> Delivery {
        let signature = sign(secret, body.as_bytes());
        Delivery { guid: guid.into(), event: event.into(), content_type: "application/json", signature, body: body.into() }
    }

    /// GitHub's `application/x-www-form-urlencoded` content type: `payload=<JSON>`.
    fn form(guid: &str, secret: &str) -> Delivery {
        let body: String = BODY.bytes().map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") }).collect();
        let mut delivery = Delivery::new(guid, "issues", secret, &format!("payload={body}"));
        delivery.content_type = "application/x-www-form-urlencoded";
        delivery
    }

    fn send_with(&self, s: &Setup, extra: &[(&str, &str)]) -> Response {
        let legacy = format!("sha1={}", "0".repeat(40));
        let headers = [
            ("content-type", self.content_type),
            ("user-agent", "GitHub-Hookshot/044aadd"),
            ("x-github-delivery", self.guid.as_str()),
            ("x-github-event", self.event.as_str()),
            ("x-github-hook-id", "42"),
            (HEADER, self.signature.as_str()),
            ("x-hub-signature", legacy.as_str()),
        ];
        signed::post(s, PATH, &headers, extra, &self.body)
    }
}

#[test]
fn a_valid_delivery_is_forwarded_as_a_cloudevent_without_its_signatures() {
    for form in FORMS {
        let s = start(form, "", None);
        let delivery = Delivery::new("72d3162e-cc78-11e3-81ab-4c9367dc0958", "issues", SECRET, BODY);
        let answer = delivery.send_with(&s, &SPOOFED);
        assert_eq!(answer.status, 200, "{form:?}: {answer:?}");
        let seen = s.upstream.only();
        assert_eq!((seen.header(HEADER), seen.header("x-hub-signature")), (None, None), "{form:?}");
        assert_eq!(seen.header("x-github-delivery"), Some(delivery.guid.as_str()));
        assert_eq!(seen.header("x-github-event"), Some("issues"));
        assert_eq!(seen.header("x-webhook-profile"), Some("github"));
        assert_eq!((seen.header("x-webhook-verified"), seen.header("ce-type")), (None, None), "{form:?}: spoofed gateway headers");
        assert_eq!(seen.header("content-type"), Some("application/cloudevents+json"));
        let event = seen.json();
        assert_eq!(event["type"], "webhookguard.github.issues.opened");
        assert_eq!(event["subject"], "octo-org/hello-world");
        assert_eq!(event["source"], "/webhook-guard/gh");
        assert_eq!(event["data"], serde_json::from_str::<serde_json::Value>(BODY).unwrap());
        match form {
            Form::Hold => assert_eq!(seen.header("x-webhook-event-id"), event["id"].as_str()),
            Form::Stream => assert_eq!(seen.header("x-webhook-event-id"), None),
        }
        assert_eq!(s.envoy.counter("forwarded_total", &[("endpoint", "gh")]), 1);
    }
}

#[test]
fn json_and_form_deliveries_are_forwarded_byte_for_byte_or_as_the_same_event() {
    for form in FORMS {
        let s = start(form, r#", "forward": "original""#, None);
        let json = Delivery::new("guid-json", "issues", SECRET, BODY);
        let posted = Delivery::form("guid-form", SECRET);
        for delivery in [&json, &posted] {
            assert_eq!(delivery.send(&s).status, 200, "{form:?}");
        }
        let seen = s.upstream.requests();
        assert_eq!((seen[0].body.as_slice(), seen[1].body.as_slice()), (json.body.as_slice(), posted.body.as_slice()));
        assert_eq!(seen[1].header("content-type"), Some("application/x-www-form-urlencoded"));
        assert!(seen.iter().all(|r| r.header(HEADER).is_none()));
    }
    let s = start(Form::Hold, "", None);
    assert_eq!(Delivery::form("guid-form", SECRET).send(&s).status, 200);
    assert_eq!(s.upstream.only().json()["data"], serde_json::from_str::<serde_json::Value>(BODY).unwrap(), "the form's payload is the event's data");
}

#[test]
fn keep_signature_lets_the_backend_verify_again() {
    let s = start(Form::Hold, r#", "keep_signature": true, "forward": "original""#, None);
    let delivery = Delivery::new("guid-keep", "issues", SECRET, BODY);
    assert_eq!(delivery.send(&s).status, 200);
    assert_eq!(s.upstream.only().header(HEADER), Some(delivery.signature.as_str()));
}

#[test]
fn forged_and_incomplete_deliveries_are_refused() {
    for form in FORMS {
        let s = start(form, "", None);
        let good = Delivery::new("guid-refused", "issues", SECRET, BODY);
        let changed = |edit: fn(&mut Delivery)| {
            let mut d = good.clone();
            edit(&mut d);
            d
        };
        let cases: Vec<(&str, Delivery, u16, &str)> = vec![
            ("wrong secret", Delivery::new("guid-refused", "issues", OTHER_SECRET, BODY), 403, "forbidden"),
            ("wrong signature", changed(|d| d.signature = sign(SECRET, b"{}")), 403, "forbidden"),
            ("body changed by one byte", changed(|d| d.body[12] ^= 1), 403, "forbidden"),
            (
                "signature header changed after signing",
                changed(|d| d.signature.replace_range(7..8, if d.signature.as_bytes()[7] == b'0' { "1" } else { "0" })),
                403,
                "forbidden",
            ),
            ("no x-hub-signature-256", changed(|d| d.signature.clear()), 401, "unauthorized"),
            ("no x-github-delivery", changed(|d| d.guid.clear()), 401, "unauthorized"),
            ("no x-github-event", changed(|d| d.event.clear()), 401, "unauthorized"),
            ("sha1 only", changed(|d| d.signature = format!("sha1={}", "a".repeat(40))), 401, "unauthorized"),
        ];
        for (what, delivery, status, slug) in cases {
            let problem = delivery.send(&s).assert_problem(status, slug);
            assert!(!problem.to_string().contains(&good.signature[7..]), "{what}: {problem}");
            assert_nothing_delivered(&s, form, HEADER, &good.signature[7..]);
        }
        assert_eq!(good.send(&s).status, 200, "{form:?}: the genuine delivery still goes through");
        assert_eq!(s.upstream.requests().len(), 1);
        let rejected = |reason| s.envoy.counter("rejected_total", &[("endpoint", "gh"), ("reason", reason)]);
        assert_eq!((rejected("forbidden"), rejected("unauthorized")), (4, 4), "{form:?}");
    }
}

#[test]
fn the_ping_is_forwarded_or_answered_by_configuration() {
    for form in FORMS {
        let s = start(form, "", None);
        assert_eq!(Delivery::new("guid-ping", "ping", SECRET, PING).send(&s).status, 200, "{form:?}");
        assert_eq!(s.upstream.only().json()["type"], "webhookguard.github.ping");

        let s = start(form, r#", "ping": "answer""#, None);
        let answer = Delivery::new("guid-ping", "ping", SECRET, PING).send(&s);
        assert_eq!((answer.status, answer.header("x-webhook-answered-by")), (200, Some("webhook-guard")), "{form:?}");
        assert!(s.upstream.requests().is_empty(), "{form:?}: answered by the filter");
        assert_eq!(s.envoy.counter("pings_answered_total", &[("endpoint", "gh")]), 1);
        // Only an authenticated ping is answered.
        assert_eq!(Delivery::new("guid-ping", "ping", OTHER_SECRET, PING).send(&s).status, 403, "{form:?}");
    }
}

signed::shared_tests!(Delivery, "%REQ(:PATH)% %REQ(X-HUB-SIGNATURE-256)% %REQ(X-GITHUB-DELIVERY)% %RESPONSE_CODE%\n");
