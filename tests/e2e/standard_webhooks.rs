//! The standard_webhooks profile through the real Envoy, in both deployment forms: `hold`
//! (allow_on_headers_stop_iteration) and `stream` (without it). Deliveries are signed here
//! with RustCrypto's HMAC, as a sender would, independently of the filter's code.

use crate::harness::Response;
use crate::signed::{self, now, Form, Sender, Setup, FORMS, SPOOFED};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The reference libraries' test secret, and a second one for rotation (from the environment).
const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const NEXT_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_dGhpcyBpcyBub3QgdGhlIGVuZHBvaW50J3Mga2V5";
const BODY: &str = r#"{"type":"invoice.paid","timestamp":"2024-05-01T10:00:00Z","data":{"invoice":"in_1","amount":1200}}"#;
const PATH: &str = "/hooks/sw";

fn start(form: Form, extra: &str, access_log: Option<&str>) -> Setup {
    let endpoint = format!(
        r#"{{"name": "sw", "path": "{PATH}", "profile": "standard_webhooks", "secret": {{"values": ["{SECRET}"], "env_optional": ["SW_NEXT_SECRET"]}}{extra}}}"#
    );
    signed::start(form, &endpoint, &[("SW_NEXT_SECRET", NEXT_SECRET)], access_log)
}

/// `v1,<base64>` of `{id}.{timestamp}.{body}` under `secret`.
fn sign(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// A delivery as a sender makes it: its three headers and body.
#[derive(Clone)]
struct Delivery {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

impl Sender for Delivery {
    const ENDPOINT: &'static str = "sw";
    const SECRETS: [&'static str; 3] = [SECRET, NEXT_SECRET, OTHER_SECRET];

    fn start(form: Form, extra: &str, access_log: Option<&str>) -> Setup {
        start(form, extra, access_log)
    }

    fn delivery(id: &str, secret: &str, skew: i64) -> Delivery {
        Delivery::new(&format!("msg_{id}"), secret, skew)
    }

    fn send(&self, s: &Setup) -> Response {
        self.send_with(s, &[])
    }

    fn signature(&self) -> String {
        self.signature[3..].to_string()
    }
}

impl Delivery {
    fn new(id: &str, secret: &str, skew: i64) -> Delivery {
        let timestamp = (now() + skew).to_string();
        let signature = sign(secret, id, &timestamp, BODY.as_bytes());
        Delivery { id: id.into(), timestamp, signature, body: BODY.into() }
    }

    fn send_with(&self, s: &Setup, extra: &[(&str, &str)]) -> Response {
        let headers =
            [("content-type", "application/json"), ("webhook-id", &self.id), ("webhook-timestamp", &self.timestamp), ("webhook-signature", &self.signature)];
        signed::post(s, PATH, &headers, extra, &self.body)
    }
}

fn assert_nothing_delivered(s: &Setup, form: Form, signature: &str) {
    signed::assert_nothing_delivered(s, form, "webhook-signature", &signature[3..]);
}

#[test]
fn a_valid_delivery_is_forwarded_as_a_cloudevent_without_its_signature() {
    for form in FORMS {
        let s = start(form, "", None);
        let delivery = Delivery::new("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", SECRET, 0);
        let answer = delivery.send_with(&s, &SPOOFED);
        assert_eq!(answer.status, 200, "{form:?}: {answer:?}");
        let (seen, event) = signed::assert_cloudevent_forwarded(&s, form, PATH, "standard_webhooks", &["webhook-signature"]);
        assert_eq!(seen.header("webhook-id"), Some(delivery.id.as_str()));
        assert_eq!(event["type"], "webhookguard.standard_webhooks.invoice.paid");
        assert_eq!(event["source"], "/webhook-guard/sw");
        assert_eq!(event["time"], "2024-05-01T10:00:00Z");
        assert_eq!(event["data"], serde_json::from_str::<serde_json::Value>(BODY).unwrap());
        assert_eq!(s.envoy.counter("forwarded_total", &[("endpoint", "sw")]), 1);
    }
}

#[test]
fn forwarded_original_the_body_is_byte_for_byte() {
    for form in FORMS {
        let s = start(form, r#", "forward": "original""#, None);
        assert_eq!(Delivery::new("msg_original", SECRET, 0).send(&s).status, 200, "{form:?}");
        let seen = s.upstream.only();
        assert_eq!(seen.body, BODY.as_bytes());
        assert_eq!(seen.header("content-type"), Some("application/json"));
        assert_eq!(seen.header("webhook-signature"), None);
    }
}

#[test]
fn keep_signature_lets_the_backend_verify_again() {
    let s = start(Form::Hold, r#", "keep_signature": true, "forward": "original""#, None);
    let delivery = Delivery::new("msg_keep", SECRET, 0);
    assert_eq!(delivery.send(&s).status, 200);
    assert_eq!(s.upstream.only().header("webhook-signature"), Some(delivery.signature.as_str()));
}

#[test]
fn forged_stale_future_and_incomplete_deliveries_are_refused() {
    for form in FORMS {
        let s = start(form, "", None);
        let good = Delivery::new("msg_refused", SECRET, 0);
        let mut one_byte = good.clone();
        one_byte.body[40] ^= 1;
        let mut other_id = good.clone();
        other_id.id = "msg_refusee".into();
        let mut other_time = good.clone();
        other_time.timestamp = (now() - 1).to_string();
        let missing = |field: fn(&mut Delivery)| {
            let mut d = good.clone();
            field(&mut d);
            d
        };
        let cases: Vec<(&str, Delivery, u16, &str)> = vec![
            ("wrong secret", Delivery::new("msg_refused", OTHER_SECRET, 0), 403, "forbidden"),
            ("wrong signature", missing(|d| d.signature = "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=".into()), 403, "forbidden"),
            ("body changed by one byte", one_byte, 403, "forbidden"),
            ("webhook-id changed after signing", other_id, 403, "forbidden"),
            ("webhook-timestamp changed after signing", other_time, 403, "forbidden"),
            ("stale", Delivery::new("msg_refused", SECRET, -301 - 5), 401, "unauthorized"),
            ("future", Delivery::new("msg_refused", SECRET, 301 + 5), 401, "unauthorized"),
            ("no webhook-id", missing(|d| d.id.clear()), 401, "unauthorized"),
            ("no webhook-timestamp", missing(|d| d.timestamp.clear()), 401, "unauthorized"),
            ("no webhook-signature", missing(|d| d.signature.clear()), 401, "unauthorized"),
            ("v1a malformed", missing(|d| d.signature = "v1a,AAAA".into()), 401, "unauthorized"),
            ("v1a under whsec_ secrets only", missing(|d| d.signature = sign_v1a(1, &d.id, &d.timestamp, &d.body).0), 401, "unauthorized"),
        ];
        for (what, delivery, status, slug) in cases {
            let answer = delivery.send(&s);
            let problem = answer.assert_problem(status, slug);
            assert!(!problem.to_string().contains(&good.signature[3..]), "{what}: {problem}");
            assert_nothing_delivered(&s, form, &good.signature);
        }
        // The genuine delivery still goes through afterwards.
        assert_eq!(good.send(&s).status, 200, "{form:?}");
        assert_eq!(s.upstream.requests().len(), 1);
        assert_eq!(
            (
                s.envoy.counter("rejected_total", &[("endpoint", "sw"), ("reason", "forbidden")]),
                s.envoy.counter("rejected_total", &[("endpoint", "sw"), ("reason", "unauthorized")])
            ),
            (5, 7),
            "{form:?}"
        );
    }
}

#[test]
fn a_sender_rotating_its_own_secret_signs_with_both() {
    for form in FORMS {
        let s = start(form, "", None);
        let mut both = Delivery::new("msg_both", OTHER_SECRET, 0);
        both.signature = format!("{} {}", both.signature, sign(NEXT_SECRET, &both.id, &both.timestamp, &both.body));
        assert_eq!(both.send(&s).status, 200, "{form:?}");
    }
}

/// `v1a,<base64 ed25519>` of `{id}.{timestamp}.{body}` by the keypair of `seed`, and its
/// `whpk_` public key (signed with ed25519-compact's own signing, which the filter never
/// runs; the unit tests hold a vector made with Python's `cryptography`).
fn sign_v1a(seed: u8, id: &str, timestamp: &str, body: &[u8]) -> (String, String) {
    let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32]));
    let signature = pair.sk.sign([format!("{id}.{timestamp}.").as_bytes(), body].concat(), None);
    (format!("v1a,{}", STANDARD.encode(*signature)), format!("whpk_{}", STANDARD.encode(*pair.pk)))
}

#[test]
fn a_v1a_delivery_under_a_whpk_key_is_forwarded_and_a_forged_one_refused() {
    for form in FORMS {
        // Mid-migration: the endpoint holds the sender's whsec_ secret and its whpk_ key.
        let (_, public) = sign_v1a(1, "", "", b"");
        let endpoint = format!(r#"{{"name": "sw", "path": "{PATH}", "profile": "standard_webhooks", "secret": {{"values": ["{SECRET}", "{public}"]}}}}"#);
        let s = signed::start(form, &endpoint, &[], None);
        let mut forged = Delivery::new("msg_v1a_forged", SECRET, 0);
        forged.signature = sign_v1a(2, &forged.id, &forged.timestamp, &forged.body).0;
        forged.send(&s).assert_problem(403, "forbidden");
        assert_nothing_delivered(&s, form, &forged.signature);
        let mut changed = Delivery::new("msg_v1a_changed", SECRET, 0);
        changed.signature = sign_v1a(1, &changed.id, &changed.timestamp, &changed.body).0;
        changed.body[40] ^= 1;
        changed.send(&s).assert_problem(403, "forbidden");
        assert_nothing_delivered(&s, form, &changed.signature);
        let mut genuine = Delivery::new("msg_v1a", SECRET, 0);
        genuine.signature = sign_v1a(1, &genuine.id, &genuine.timestamp, &genuine.body).0;
        let answer = genuine.send_with(&s, &SPOOFED);
        assert_eq!(answer.status, 200, "{form:?}: {answer:?}");
        let (seen, event) = signed::assert_cloudevent_forwarded(&s, form, PATH, "standard_webhooks", &["webhook-signature"]);
        assert_eq!(seen.header("webhook-id"), Some("msg_v1a"));
        assert_eq!(event["data"], serde_json::from_str::<serde_json::Value>(BODY).unwrap());
        assert!(!format!("{seen:?}").contains(&genuine.signature[4..]), "{form:?}");
    }
}

signed::shared_tests!(Delivery, "%REQ(:PATH)% %REQ(WEBHOOK-SIGNATURE)% %REQ(WEBHOOK-ID)% %RESPONSE_CODE%\n");
