//! `shopify`: Shopify's HTTPS webhook subscriptions. A delivery carries
//! `X-Shopify-Hmac-Sha256` (on newer events deliveries `shopify-hmac-sha256`), the base64
//! HMAC-SHA256 of the raw body keyed with the app's client secret, and no timestamp; its
//! `X-Shopify-Webhook-Id` is the same on every retry of one delivery. See
//! docs/profiles/shopify.md.
//!
//! The head is checked cheaply (a signature header present, the base64 of 32 bytes); the
//! signature once the body is complete. The event id derives from `X-Shopify-Webhook-Id`
//! (else the event id, else the body), so duplicate suppression (on by default, a day at
//! least: Shopify retries for 4 hours and may deliver up to a day late) answers a replay.

pub mod signature;

use crate::event::{name_based_id_of, usable_type, Event, RateKeys};
use crate::media::Media;
use crate::problem::{Reason, Rejection};
use crate::profile::{json_document, Profile, Registration, Section, SignatureHeaders, SignedHeaders};
use crate::signing::{Key, Signed};
use crate::timestamp;

pub const REGISTRATION: Registration = Registration { name: "shopify", keys: &["keep_signature"], configure };

/// The headers read from the head, by index: each in the webhooks spelling, then the
/// events spelling where Shopify has one.
const SIGNED: [&str; 9] = [
    "x-shopify-hmac-sha256",
    "shopify-hmac-sha256",
    "x-shopify-webhook-id",
    "x-shopify-event-id",
    "shopify-event-id",
    "x-shopify-topic",
    "shopify-topic",
    "x-shopify-triggered-at",
    "shopify-triggered-at",
];
const HMAC: [usize; 2] = [0, 1];
/// The signature headers, removed before forwarding unless kept.
const SIGNATURES: &[&str] = SIGNED.split_at(HMAC.len()).0;
const WEBHOOK_ID: usize = 2;
const EVENT_ID: [usize; 2] = [3, 4];
const TOPIC: [usize; 2] = [5, 6];
const TRIGGERED_AT: [usize; 2] = [7, 8];
/// Shopify retries a failed delivery 8 times over 4 hours, and a delivery may arrive up to
/// a day late (shopify.dev, best practices): the duplicate mark lasts a day at least.
const REPLAY_WINDOW: u64 = 86_400;
/// The prefix of the event `type`; the rest is the topic (`orders/create`).
pub const KIND_PREFIX: &str = "webhookguard.shopify.";
/// The event `type` of a delivery without a usable topic.
const DEFAULT_KIND: &str = "webhookguard.shopify.webhook";
/// Longest id used as the duplicate key (Shopify's are UUIDs).
const MAX_ID_LEN: usize = 255;

struct Shopify(Signed<Key>);

fn configure(section: &Section) -> Result<Box<dyn Profile>, String> {
    Ok(Box::new(Shopify(Signed::configure(section, None, signature::decode_key)?)))
}

/// The first of the headers at `spellings` that is present and not blank.
fn first(headers: &SignedHeaders, spellings: [usize; 2]) -> Option<&str> {
    spellings.iter().find_map(|i| headers.text(*i).map(str::trim_ascii).filter(|v| !v.is_empty()))
}

/// The signatures of the head: every HMAC header given (either spelling), each the
/// base64 of 32 bytes, at least one.
fn signatures(headers: &SignedHeaders) -> Result<Vec<[u8; signature::SIGNATURE_BYTES]>, Rejection> {
    let unauthorized = |detail: String| Rejection::new(Reason::Unauthorized, detail);
    let mut signatures = Vec::new();
    for i in HMAC {
        let Some(value) = headers.text(i) else { continue };
        signatures.push(signature::parse(value).ok_or_else(|| unauthorized(format!("the {} header must be the base64 of 32 bytes", SIGNED[i])))?);
    }
    if signatures.is_empty() {
        return Err(unauthorized("the x-shopify-hmac-sha256 (or shopify-hmac-sha256) header is missing".into()));
    }
    Ok(signatures)
}

/// An id usable as the duplicate key.
fn usable_id(id: &str) -> bool {
    id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

impl Profile for Shopify {
    fn name(&self) -> &'static str {
        REGISTRATION.name
    }

    fn signed(&self) -> Option<SignatureHeaders> {
        Some(self.0.headers(&SIGNED, SIGNATURES))
    }

    fn check_signed_head(&self, headers: &SignedHeaders, _now_secs: u64) -> Result<(), Rejection> {
        signatures(headers).map(|_| ())
    }

    fn verify_signature(&self, headers: &SignedHeaders, body: &[u8], _now_secs: u64) -> Result<(), Rejection> {
        let signatures = signatures(headers)?;
        // Shopify's library refuses an empty body before any HMAC: never a delivery.
        if body.is_empty() {
            return Err(Rejection::new(Reason::Invalid, "the body is empty"));
        }
        if signature::verify(&self.0.keys, body, &signatures) {
            Ok(())
        } else {
            Err(Rejection::new(Reason::Forbidden, "the x-shopify-hmac-sha256 signature does not match the body under any configured secret"))
        }
    }

    fn validate(&self, _media: Media, body: &[u8], headers: &SignedHeaders) -> Result<Event, Rejection> {
        let (text, data) = json_document(body)?;
        // One delivery (a subscription's copy of an event) keeps its webhook id on every
        // retry; events deliveries carry only the event id; without either, the body,
        // which a retry repeats.
        let webhook_id = headers.text(WEBHOOK_ID).map(str::trim_ascii).filter(|id| !id.is_empty() && usable_id(id));
        let event_id = first(headers, EVENT_ID).filter(|id| usable_id(id));
        let topic = first(headers, TOPIC).filter(|t| usable_type(t));
        let id = match (webhook_id, event_id) {
            (Some(id), _) => name_based_id_of(&["shopify\n", id]),
            (None, Some(id)) => name_based_id_of(&["shopify\nevent\n", id, "\n", topic.unwrap_or_default()]),
            (None, None) => name_based_id_of(&["shopify\nbody\n", topic.unwrap_or_default(), "\n", text]),
        };
        let kind = match topic {
            Some(t) => format!("{KIND_PREFIX}{t}"),
            None => DEFAULT_KIND.to_string(),
        };
        let time = first(headers, TRIGGERED_AT).and_then(|t| timestamp::parse(t).ok()).map(|t| t.utc);
        Ok(Event { id, kind, subject: None, time, keys: RateKeys::default(), data: data.into(), nonconforming: Vec::new() })
    }

    fn replay_window(&self) -> Option<u64> {
        // No timestamp bounds a replay: the window covers Shopify's redelivery horizon.
        Some(REPLAY_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::event::name_based_id;

    const SECRET: &str = "hush";
    const BODY: &[u8] = br##"{"id":820982911946154508,"email":"jon@example.com","name":"#9999"}"##;
    const WEBHOOK: &str = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043";

    fn profile(extra: &str) -> Result<Box<dyn Profile>, String> {
        let json = format!(r#"{{"endpoints":[{{"name":"sh","path":"/sh","profile":"shopify","secret":{{"values":["{SECRET}"]}}{extra}}}]}}"#);
        Config::parse(json.as_bytes(), |_| None).map(|mut c| c.endpoints.remove(0).profile)
    }

    /// Headers by name (the others absent).
    fn headers(given: &[(&str, &str)]) -> SignedHeaders {
        SignedHeaders(SIGNED.iter().map(|name| given.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_bytes().to_vec())).collect())
    }

    fn hmac(body: &[u8]) -> String {
        signature::sign(&signature::decode_key(SECRET.as_bytes()).unwrap(), body)
    }

    #[test]
    fn a_signed_delivery_is_verified_and_normalised() {
        let p = profile("").unwrap();
        let sig = hmac(BODY);
        let h = headers(&[
            ("x-shopify-hmac-sha256", &sig),
            ("x-shopify-webhook-id", WEBHOOK),
            ("x-shopify-topic", "orders/create"),
            ("x-shopify-triggered-at", "2024-05-01T10:00:00.123456789Z"),
        ]);
        p.check_signed_head(&h, 0).unwrap();
        p.verify_signature(&h, BODY, 0).unwrap();
        let event = p.validate(Media::Json, BODY, &h).unwrap();
        assert_eq!(event.kind, "webhookguard.shopify.orders/create");
        assert_eq!(event.id, name_based_id(&format!("shopify\n{WEBHOOK}")));
        assert_eq!(event.time.as_deref(), Some("2024-05-01T10:00:00.123456789Z"));
        assert_eq!(event.data.get().as_bytes(), BODY);
        assert_eq!(p.removed_headers(), ["x-shopify-hmac-sha256", "shopify-hmac-sha256"]);
        assert_eq!(p.replay_window(), Some(86_400));
        // The events spelling, keyed on its event id and topic.
        let h = headers(&[("shopify-hmac-sha256", &sig), ("shopify-event-id", "e-1"), ("shopify-topic", "orders/create")]);
        p.verify_signature(&h, BODY, 0).unwrap();
        assert_eq!(p.validate(Media::Json, BODY, &h).unwrap().id, name_based_id("shopify\nevent\ne-1\norders/create"));
    }

    #[test]
    fn missing_or_malformed_signatures_are_401_a_wrong_one_403_an_empty_body_400() {
        let p = profile("").unwrap();
        let sig = hmac(BODY);
        for h in [
            headers(&[]),
            headers(&[("x-shopify-webhook-id", WEBHOOK)]),
            headers(&[("x-shopify-hmac-sha256", "")]),
            headers(&[("x-shopify-hmac-sha256", "AAAA")]),
            headers(&[("x-shopify-hmac-sha256", &sig), ("shopify-hmac-sha256", "x")]),
        ] {
            assert_eq!(p.check_signed_head(&h, 0).unwrap_err().status(), 401, "{h:?}");
        }
        let h = headers(&[("x-shopify-hmac-sha256", &sig)]);
        let mut changed = BODY.to_vec();
        changed[3] ^= 1;
        let wrong = p.verify_signature(&h, &changed, 0).unwrap_err();
        assert_eq!((wrong.status(), wrong.reason), (403, Reason::Forbidden));
        assert!(!wrong.detail.contains(&sig));
        assert_eq!(p.verify_signature(&h, b"", 0).unwrap_err().status(), 400);
        assert_eq!(p.validate(Media::Json, b"not json", &h).unwrap_err().status(), 400);
        // Either spelling may carry the valid signature.
        p.verify_signature(&headers(&[("x-shopify-hmac-sha256", &hmac(b"other")), ("shopify-hmac-sha256", &sig)]), BODY, 0).unwrap();
    }

    #[test]
    fn without_ids_the_body_and_topic_key_the_duplicate_mark() {
        let p = profile("").unwrap();
        let h = headers(&[("x-shopify-hmac-sha256", &hmac(BODY)), ("x-shopify-topic", "a b")]);
        let event = p.validate(Media::Json, BODY, &h).unwrap();
        assert_eq!(event.kind, DEFAULT_KIND);
        assert_eq!(event.id, name_based_id(&format!("shopify\nbody\n\n{}", std::str::from_utf8(BODY).unwrap())));
        assert_eq!(event.time, None);
    }

    #[test]
    fn configuration_is_checked() {
        assert!(profile(r#","keep_signature":true"#).unwrap().removed_headers().is_empty());
        let err = profile(r#","dedupe_seconds":3600"#).unwrap_err();
        assert!(err.starts_with("endpoints[0].dedupe_seconds: must be at least 86400"), "{err}");
        let err = profile(r#","tolerance_seconds":60"#).unwrap_err();
        assert!(err.starts_with("endpoints[0].tolerance_seconds: only applies to the"), "{err}");
        let c = Config::parse(
            format!(r#"{{"endpoints":[{{"name":"sh","path":"/sh","profile":"shopify","secret":{{"values":["{SECRET}"]}}}}]}}"#).as_bytes(),
            |_| None,
        )
        .unwrap();
        assert_eq!(c.endpoints[0].dedupe_seconds, Some(86_400), "duplicate suppression on by default");
        assert!(!format!("{:?}", c.endpoints[0].profile).contains(SECRET));
    }
}
