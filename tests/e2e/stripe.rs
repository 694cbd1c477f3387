//! The stripe profile through the real Envoy, in both deployment forms. Deliveries are
//! signed here with RustCrypto's HMAC, as Stripe does, independently of the filter's code.

use crate::harness::Response;
use crate::signed::{self, hex, now, Form, Sender, Setup, FORMS, SPOOFED};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The endpoint's signing secret, and the next one during a roll (from the environment).
const SECRET: &str = "whsec_pQ3sB7nVx2LkR9tYw4ZcE1uH6jM8aF0d";
const NEXT_SECRET: &str = "whsec_Nx5oW2rT8yKq1vB4mZ7cL3hG9dS6fJ0a";
const OTHER_SECRET: &str = "whsec_not_this_endpoints_secret";
const PATH: &str = "/hooks/stripe";

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","object":"event","api_version":"2024-06-20","created":1714557600,"type":"invoice.paid","livemode":false,"data":{{"object":{{"id":"in_1","object":"invoice","amount_paid":1200}}}}}}"#).into_bytes()
}

fn start(form: Form, extra: &str, access_log: Option<&str>) -> Setup {
    let endpoint = format!(
        r#"{{"name": "stripe", "path": "{PATH}", "profile": "stripe", "secret": {{"values": ["{SECRET}"], "env_optional": ["STRIPE_NEXT_SECRET"]}}{extra}}}"#
    );
    signed::start(form, &endpoint, &[("STRIPE_NEXT_SECRET", NEXT_SECRET)], access_log)
}

/// The hex HMAC-SHA256 of `{t}.{body}`, keyed with the `whsec_` text itself.
fn v1(secret: &str, t: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// A delivery as Stripe makes it.
#[derive(Clone)]
struct Delivery {
    header: String,
    body: Vec<u8>,
}

impl Sender for Delivery {
    const ENDPOINT: &'static str = "stripe";
    const SECRETS: [&'static str; 3] = [SECRET, NEXT_SECRET, OTHER_SECRET];

    fn start(form: Form, extra: &str, access_log: Option<&str>) -> Setup {
        start(form, extra, access_log)
    }

    fn delivery(id: &str, secret: &str, skew: i64) -> Delivery {
        Delivery::new(&format!("evt_{id}"), secret, skew)
    }

    fn send(&self, s: &Setup) -> Response {
        self.send_with(s, &[])
    }

    /// The first `v1` signature.
    fn signature(&self) -> String {
        self.header[self.header.find("v1=").unwrap() + 3..][..64].to_string()
    }
}

impl Delivery {
    fn new(id: &str, secret: &str, skew: i64) -> Delivery {
        let t = (now() + skew).to_string();
        let body = body(id);
        Delivery { header: format!("t={t},v1={}", v1(secret, &t, &body)), body }
    }

    fn send_with(&self, s: &Setup, extra: &[(&str, &str)]) -> Response {
        signed::post(s, PATH, &[("content-type", "application/json; charset=utf-8"), ("stripe-signature", &self.header)], extra, &self.body)
    }
}

#[test]
fn a_valid_delivery_is_forwarded_as_a_cloudevent_without_its_signature() {
    for form in FORMS {
        let s = start(form, "", None);
        let delivery = Delivery::new("evt_1PBcdeF2eZvKYlo2C0ffee01", SECRET, 0);
        let answer = delivery.send_with(&s, &SPOOFED);
        assert_eq!(answer.status, 200, "{form:?}: {answer:?}");
        let (_, event) = signed::assert_cloudevent_forwarded(&s, form, PATH, "stripe", &["stripe-signature"]);
        assert_eq!(event["type"], "webhookguard.stripe.invoice.paid");
        assert_eq!(event["source"], "/webhook-guard/stripe");
        assert_eq!(event["time"], "2024-05-01T10:00:00Z");
        assert_eq!(event["data"], serde_json::from_slice::<serde_json::Value>(&delivery.body).unwrap());
        assert_eq!(s.envoy.counter("forwarded_total", &[("endpoint", "stripe")]), 1);
    }
}

#[test]
fn forwarded_original_the_body_is_byte_for_byte_and_keep_signature_keeps_it() {
    for form in FORMS {
        let s = start(form, r#", "forward": "original""#, None);
        assert_eq!(Delivery::new("evt_original", SECRET, 0).send(&s).status, 200, "{form:?}");
        let seen = s.upstream.only();
        assert_eq!(seen.body, body("evt_original"));
        assert_eq!(seen.header("content-type"), Some("application/json; charset=utf-8"));
        assert_eq!(seen.header("stripe-signature"), None);
    }
    let s = start(Form::Hold, r#", "forward": "original", "keep_signature": true"#, None);
    let delivery = Delivery::new("evt_keep", SECRET, 0);
    assert_eq!(delivery.send(&s).status, 200);
    assert_eq!(s.upstream.only().header("stripe-signature"), Some(delivery.header.as_str()));
}

#[test]
fn forged_stale_future_and_incomplete_deliveries_are_refused() {
    for form in FORMS {
        let s = start(form, "", None);
        let good = Delivery::new("evt_refused", SECRET, 0);
        let t = good.header[2..good.header.find(',').unwrap()].to_string();
        let with = |header: String| Delivery { header, body: good.body.clone() };
        let mut one_byte = good.clone();
        one_byte.body[12] ^= 1;
        let cases: Vec<(&str, Delivery, u16, &str)> = vec![
            ("wrong secret", Delivery::new("evt_refused", OTHER_SECRET, 0), 403, "forbidden"),
            ("wrong signature", with(format!("t={t},v1={}", "ab".repeat(32))), 403, "forbidden"),
            ("body changed by one byte", one_byte, 403, "forbidden"),
            ("t changed after signing", with(format!("t={},v1={}", t.parse::<i64>().unwrap() - 1, good.signature())), 403, "forbidden"),
            ("stale", Delivery::new("evt_refused", SECRET, -301 - 5), 401, "unauthorized"),
            ("future", Delivery::new("evt_refused", SECRET, 301 + 5), 401, "unauthorized"),
            ("no stripe-signature", with(String::new()), 401, "unauthorized"),
            ("no t", with(format!("v1={}", good.signature())), 401, "unauthorized"),
            ("no v1", with(format!("t={t},v0={}", good.signature())), 401, "unauthorized"),
        ];
        for (what, delivery, status, slug) in cases {
            let problem = delivery.send(&s).assert_problem(status, slug);
            assert!(!problem.to_string().contains(&good.signature()), "{what}: {problem}");
            signed::assert_nothing_delivered(&s, form, "stripe-signature", &good.signature());
        }
        // The genuine delivery still goes through afterwards.
        assert_eq!(good.send(&s).status, 200, "{form:?}");
        assert_eq!(s.upstream.requests().len(), 1);
        let rejected = |reason| s.envoy.counter("rejected_total", &[("endpoint", "stripe"), ("reason", reason)]);
        assert_eq!((rejected("forbidden"), rejected("unauthorized")), (4, 5), "{form:?}");
    }
}

#[test]
fn while_stripe_rolls_a_secret_it_signs_with_both() {
    for form in FORMS {
        let s = start(form, "", None);
        let mut both = Delivery::new("evt_both", OTHER_SECRET, 0);
        let t = both.header[2..both.header.find(',').unwrap()].to_string();
        both.header = format!("{},v1={}", both.header, v1(NEXT_SECRET, &t, &both.body));
        assert_eq!(both.send(&s).status, 200, "{form:?}");
    }
}

signed::shared_tests!(Delivery, "%REQ(:PATH)% %REQ(STRIPE-SIGNATURE)% %RESPONSE_CODE%\n");
