//! The shopify profile through the real Envoy, in both deployment forms. Deliveries are
//! signed here with RustCrypto's HMAC, as Shopify does, independently of the filter's code.

use crate::harness::{send, Response};
use crate::signed::{self, Form, Sender, Setup, FORMS, SPOOFED};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The app's client secret, and the next one during a rotation (from the environment).
const SECRET: &str = "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";
const NEXT_SECRET: &str = "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";
const OTHER_SECRET: &str = "shpss_not_this_apps_secret";
const PATH: &str = "/hooks/shopify";
const BODY: &str = r##"{"id":820982911946154508,"email":"jon@example.com","name":"#9999","created_at":"2024-05-01T10:00:00-04:00","total_price":"12.00"}"##;

fn start(form: Form, extra: &str, access_log: Option<&str>) -> Setup {
    let endpoint = format!(
        r#"{{"name": "shop", "path": "{PATH}", "profile": "shopify", "secret": {{"values": ["{SECRET}"], "env_optional": ["SHOPIFY_NEXT_SECRET"]}}{extra}}}"#
    );
    signed::start(form, &endpoint, &[("SHOPIFY_NEXT_SECRET", NEXT_SECRET)], access_log)
}

/// The base64 HMAC-SHA256 of `body`, keyed with the secret's text.
fn hmac(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// A delivery as Shopify makes it: `headers` besides the content type, and the body.
#[derive(Clone)]
struct Delivery {
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Delivery {
    /// A webhooks delivery, `X-Shopify-*` headers.
    fn new(webhook_id: &str, secret: &str) -> Delivery {
        let headers = vec![
            ("x-shopify-hmac-sha256", hmac(secret, BODY.as_bytes())),
            ("x-shopify-topic", "orders/create".into()),
            ("x-shopify-shop-domain", "example.myshopify.com".into()),
            ("x-shopify-webhook-id", webhook_id.into()),
            ("x-shopify-event-id", "98880550-7158-44d4-b7cd-2c97c8a091b5".into()),
            ("x-shopify-triggered-at", "2024-05-01T14:00:00.123456789Z".into()),
            ("x-shopify-api-version", "2024-04".into()),
        ];
        Delivery { headers, body: BODY.into() }
    }

    fn set(&mut self, name: &'static str, value: &str) {
        self.headers.retain(|(n, _)| *n != name);
        if !value.is_empty() {
            self.headers.push((name, value.into()));
        }
    }

    fn send_with(&self, s: &Setup, extra: &[(&str, &str)]) -> Response {
        let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        headers.extend(self.headers.iter().map(|(n, v)| (*n, v.as_str())));
        signed::post(s, PATH, &headers, extra, &self.body)
    }
}

impl Sender for Delivery {
    const ENDPOINT: &'static str = "shop";
    const SECRETS: [&'static str; 3] = [SECRET, NEXT_SECRET, OTHER_SECRET];

    fn start(form: Form, extra: &str, access_log: Option<&str>) -> Setup {
        start(form, extra, access_log)
    }

    /// Shopify signs no time: a retry is the same webhook id and body, a new attempt.
    fn delivery(id: &str, secret: &str, skew: i64) -> Delivery {
        let mut delivery = Delivery::new(id, secret);
        delivery.set("x-shopify-triggered-at", &format!("2024-05-01T14:00:{skew:02}Z"));
        delivery
    }

    fn send(&self, s: &Setup) -> Response {
        self.send_with(s, &[])
    }

    fn signature(&self) -> String {
        self.headers.iter().find(|(n, _)| *n == "x-shopify-hmac-sha256").map(|(_, v)| v.clone()).unwrap_or_default()
    }
}

#[test]
fn a_valid_delivery_is_forwarded_as_a_cloudevent_without_its_signature() {
    for form in FORMS {
        let s = start(form, "", None);
        let delivery = Delivery::new("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", SECRET);
        let answer = delivery.send_with(&s, &SPOOFED);
        assert_eq!(answer.status, 200, "{form:?}: {answer:?}");
        let (seen, event) = signed::assert_cloudevent_forwarded(&s, form, PATH, "shopify", &["x-shopify-hmac-sha256", "shopify-hmac-sha256"]);
        assert_eq!(seen.header("x-shopify-webhook-id"), Some("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"));
        assert_eq!(event["type"], "webhookguard.shopify.orders/create");
        assert_eq!(event["source"], "/webhook-guard/shop");
        assert_eq!(event["time"], "2024-05-01T14:00:00.123456789Z");
        assert_eq!(event["data"], serde_json::from_str::<serde_json::Value>(BODY).unwrap());
        assert_eq!(s.envoy.counter("forwarded_total", &[("endpoint", "shop")]), 1);
    }
}

#[test]
fn the_events_spelling_forwarded_original_and_keep_signature() {
    for form in FORMS {
        let s = start(form, r#", "forward": "original""#, None);
        // Newer events deliveries: lowercase `shopify-*` names, an event id, no webhook id.
        let sig = hmac(SECRET, BODY.as_bytes());
        let headers =
            [("content-type", "application/json"), ("shopify-hmac-sha256", sig.as_str()), ("shopify-topic", "orders/create"), ("shopify-event-id", "e-1")];
        assert_eq!(send(s.envoy.port, "POST", PATH, &headers, BODY.as_bytes()).status, 200, "{form:?}");
        let seen = s.upstream.only();
        assert_eq!(seen.body, BODY.as_bytes());
        assert_eq!(seen.header("shopify-hmac-sha256"), None);
        assert_eq!(seen.header("shopify-event-id"), Some("e-1"));
    }
    let s = start(Form::Hold, r#", "forward": "original", "keep_signature": true"#, None);
    let delivery = Delivery::new("keep", SECRET);
    assert_eq!(delivery.send(&s).status, 200);
    assert_eq!(s.upstream.only().header("x-shopify-hmac-sha256"), Some(delivery.signature().as_str()));
}

#[test]
fn forged_incomplete_and_empty_deliveries_are_refused() {
    for form in FORMS {
        let s = start(form, "", None);
        let good = Delivery::new("refused", SECRET);
        let with = |change: fn(&mut Delivery)| {
            let mut d = good.clone();
            change(&mut d);
            d
        };
        let cases: Vec<(&str, Delivery, u16, &str)> = vec![
            ("wrong secret", Delivery::new("refused", OTHER_SECRET), 403, "forbidden"),
            ("wrong signature", with(|d| d.set("x-shopify-hmac-sha256", "R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=")), 403, "forbidden"),
            ("body changed by one byte", with(|d| d.body[10] ^= 1), 403, "forbidden"),
            (
                "signature header changed after signing",
                with(|d| {
                    let sig = d.signature();
                    let first = if sig.starts_with('A') { "B" } else { "A" };
                    let flipped = format!("{first}{}", &sig[1..]);
                    d.set("x-shopify-hmac-sha256", &flipped);
                }),
                403,
                "forbidden",
            ),
            ("the signature of another body", with(|d| d.set("x-shopify-hmac-sha256", &hmac(SECRET, b"{}"))), 403, "forbidden"),
            ("no signature header", with(|d| d.set("x-shopify-hmac-sha256", "")), 401, "unauthorized"),
            ("a signature that is not base64 of 32 bytes", with(|d| d.set("x-shopify-hmac-sha256", "sha256=abc")), 401, "unauthorized"),
            ("empty body", with(|d| d.body.clear()), 400, "invalid"),
        ];
        for (what, delivery, status, slug) in cases {
            let problem = delivery.send(&s).assert_problem(status, slug);
            assert!(!problem.to_string().contains(&good.signature()), "{what}: {problem}");
            signed::assert_nothing_delivered(&s, form, "x-shopify-hmac-sha256", &good.signature());
        }
        assert_eq!(good.send(&s).status, 200, "{form:?}");
        assert_eq!(s.upstream.requests().len(), 1);
        let rejected = |reason| s.envoy.counter("rejected_total", &[("endpoint", "shop"), ("reason", reason)]);
        assert_eq!((rejected("forbidden"), rejected("unauthorized"), rejected("invalid")), (5, 2, 1), "{form:?}");
    }
}

#[test]
fn another_subscriptions_copy_of_a_delivered_event_is_delivered_too() {
    for form in FORMS {
        let s = start(form, "", None);
        assert_eq!(Delivery::new("first-subscription", SECRET).send(&s).status, 200, "{form:?}");
        // The same event id and body, its own webhook id.
        assert_eq!(Delivery::new("second-subscription", SECRET).send(&s).status, 200, "{form:?}");
        assert_eq!(s.upstream.requests().len(), 2);
    }
}

signed::shared_tests!(Delivery, "%REQ(:PATH)% %REQ(X-SHOPIFY-HMAC-SHA256)% %REQ(X-SHOPIFY-WEBHOOK-ID)% %RESPONSE_CODE%\n");
