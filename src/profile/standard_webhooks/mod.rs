//! `standard_webhooks`: senders following Standard Webhooks 1.0 (Svix and the services
//! built on it, among others). A delivery carries `webhook-id` (the message id, the same
//! on every retry), `webhook-timestamp` (Unix seconds) and `webhook-signature`
//! (space-separated `v1,<base64 HMAC-SHA256>` under `whsec_` secrets and
//! `v1a,<base64 ed25519>` under `whpk_` public keys, over `{id}.{timestamp}.{raw body}`).
//! See docs/profiles/standard_webhooks.md.
//!
//! The head is checked cheaply (the three headers present and well formed, the timestamp
//! within tolerance of the host clock, both directions); the signature once the body is
//! complete. The event id derives from `webhook-id`, so duplicate suppression (on by
//! default, at least twice the tolerance) answers a replay of a delivered message.

pub mod signature;

use crate::event::{name_based_id_of, usable_type, Event, RateKeys};
use crate::media::Media;
use crate::problem::{Reason, Rejection};
use crate::profile::{json_document, Profile, Registration, Section, SignatureHeaders, SignedHeaders};
use crate::signing::{self, Signed};
use crate::timestamp;
use serde::Deserialize;
use signature::Key;

pub const REGISTRATION: Registration = Registration { name: "standard_webhooks", keys: &["tolerance_seconds", "keep_signature"], configure };

/// The headers read from the head, by index in [`SIGNED`].
const SIGNED: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];
const ID: usize = 0;
const TIMESTAMP: usize = 1;
const SIGNATURE: usize = 2;
/// The reference libraries' tolerance, both directions.
const DEFAULT_TOLERANCE: u64 = 300;
/// The prefix of the event `type`; the rest is the body's `type`.
pub const KIND_PREFIX: &str = "webhookguard.standard_webhooks.";
/// The event `type` of a body without a usable `type`.
const DEFAULT_KIND: &str = "webhookguard.standard_webhooks.message";

struct StandardWebhooks(Signed<Key>);

fn configure(section: &Section) -> Result<Box<dyn Profile>, String> {
    Ok(Box::new(StandardWebhooks(Signed::configure(section, Some(DEFAULT_TOLERANCE), Key::decode)?)))
}

/// The checked headers of a delivery.
struct Delivery<'a> {
    id: &'a str,
    timestamp: &'a str,
    signatures: signature::Signatures,
}

impl StandardWebhooks {
    /// The three headers present and well formed, the timestamp within tolerance.
    fn delivery<'a>(&self, headers: &'a SignedHeaders, now_secs: u64) -> Result<Delivery<'a>, Rejection> {
        let unauthorized = |detail: String| Rejection::new(Reason::Unauthorized, detail);
        let id = headers.required(ID, &SIGNED)?;
        if id.len() > signature::MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(unauthorized(format!("the webhook-id header must be 1-{} visible ASCII characters", signature::MAX_ID_LEN)));
        }
        let timestamp = headers.required(TIMESTAMP, &SIGNED)?;
        signing::fresh("the webhook-timestamp header", timestamp, now_secs, self.0.tolerance).map_err(unauthorized)?;
        let signatures =
            signature::parse(headers.required(SIGNATURE, &SIGNED)?).map_err(|rule| unauthorized(format!("the webhook-signature header {rule}")))?;
        // Refused on the head, before the body (in `stream` before the backend sees the
        // head), when no entry could match: e.g. only v1a entries under whsec_ secrets.
        if !signature::checkable(&signatures, &self.0.keys) {
            return Err(unauthorized("the webhook-signature header holds no v1 signature for a whsec_ secret nor v1a for a whpk_ key".into()));
        }
        Ok(Delivery { id, timestamp, signatures })
    }
}

impl Profile for StandardWebhooks {
    fn name(&self) -> &'static str {
        REGISTRATION.name
    }

    fn signed(&self) -> Option<SignatureHeaders> {
        Some(self.0.headers(&SIGNED, &SIGNED[SIGNATURE..]))
    }

    fn check_signed_head(&self, headers: &SignedHeaders, now_secs: u64) -> Result<(), Rejection> {
        self.delivery(headers, now_secs).map(|_| ())
    }

    fn verify_signature(&self, headers: &SignedHeaders, body: &[u8], now_secs: u64) -> Result<(), Rejection> {
        let delivery = self.delivery(headers, now_secs)?;
        if signature::verify(&self.0.keys, delivery.id, delivery.timestamp, body, &delivery.signatures) {
            Ok(())
        } else {
            Err(Rejection::new(Reason::Forbidden, "the webhook-signature does not match the body and headers under any configured key"))
        }
    }

    fn validate(&self, _media: Media, body: &[u8], headers: &SignedHeaders) -> Result<Event, Rejection> {
        let (text, data) = json_document(body)?;
        let payload: Payload = serde_json::from_str(text).unwrap_or_default();
        let id = headers.text(ID).map(str::trim).unwrap_or_default();
        let kind = match payload.kind.filter(|t| usable_type(t)) {
            Some(t) => format!("{KIND_PREFIX}{t}"),
            None => DEFAULT_KIND.to_string(),
        };
        let time = payload.timestamp.and_then(|t| timestamp::parse(&t).ok()).map(|t| t.utc);
        Ok(Event {
            id: name_based_id_of(&["standard_webhooks\n", id]),
            kind,
            subject: None,
            time,
            keys: RateKeys::default(),
            data: data.into(),
            nonconforming: Vec::new(),
        })
    }

    fn replay_window(&self) -> Option<u64> {
        // A delivery is accepted while the clock is within the tolerance on either side
        // of its timestamp.
        Some(2 * self.0.tolerance)
    }
}

/// The members of the spec's recommended payload that the event uses.
#[derive(Deserialize, Default)]
struct Payload {
    #[serde(rename = "type")]
    kind: Option<String>,
    timestamp: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::event::name_based_id;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const NOW: u64 = 1_649_367_553;

    fn profile(extra: &str) -> Result<Box<dyn Profile>, String> {
        let json = format!(r#"{{"endpoints":[{{"name":"sw","path":"/sw","profile":"standard_webhooks","secret":{{"values":["{SECRET}"]}}{extra}}}]}}"#);
        Config::parse(json.as_bytes(), |_| None).map(|mut c| c.endpoints.remove(0).profile)
    }

    fn headers(id: &str, timestamp: &str, signature: &str) -> SignedHeaders {
        SignedHeaders([id, timestamp, signature].iter().map(|v| (!v.is_empty()).then(|| v.as_bytes().to_vec())).collect())
    }

    const BODY: &[u8] = br#"{"type":"invoice.paid","timestamp":"2022-04-07T21:39:13Z","data":{"n":1}}"#;

    fn signed(timestamp: &str) -> SignedHeaders {
        let key = Key::decode(SECRET.as_bytes()).unwrap();
        headers("msg_1", timestamp, &signature::sign(&key, "msg_1", timestamp, BODY))
    }

    #[test]
    fn a_signed_delivery_is_verified_and_normalised() {
        let p = profile("").unwrap();
        let h = signed("1649367553");
        p.check_signed_head(&h, NOW).unwrap();
        p.verify_signature(&h, BODY, NOW).unwrap();
        let event = p.validate(Media::Json, BODY, &h).unwrap();
        assert_eq!(event.kind, "webhookguard.standard_webhooks.invoice.paid");
        assert_eq!(event.time.as_deref(), Some("2022-04-07T21:39:13Z"));
        assert_eq!(event.id, name_based_id("standard_webhooks\nmsg_1"));
        assert_eq!(event.data.get().as_bytes(), BODY);
        assert_eq!(p.removed_headers(), ["webhook-signature"]);
        assert_eq!(p.replay_window(), Some(600));
    }

    /// The public key of signature.rs's test vector (made with Python's `cryptography`).
    const PUBLIC: &str = "whpk_3QPC+MuKnO2mTuDIBDslqPHSXD064SfMyyIePN719uo=";

    #[test]
    fn a_v1a_delivery_is_verified_under_a_whpk_key() {
        let json = format!(r#"{{"endpoints":[{{"name":"sw","path":"/sw","profile":"standard_webhooks","secret":{{"values":["{SECRET}","{PUBLIC}"]}}}}]}}"#);
        let p = Config::parse(json.as_bytes(), |_| None).unwrap().endpoints.remove(0).profile;
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let v1a = "v1a,q4aZHa0apStovPyo71O3UW4K2IQ7gt2BiB1Y/vA5UGcCH5s00DkoIBlG/6p4M1I6oF/zaF3401pJnrV0SWpEAg==";
        let h = headers("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", "1649367553", v1a);
        p.check_signed_head(&h, NOW).unwrap();
        p.verify_signature(&h, body, NOW).unwrap();
        let forged = p.verify_signature(&h, &body[1..], NOW).unwrap_err();
        assert_eq!((forged.status(), forged.reason), (403, Reason::Forbidden));
        // Under the whsec_ key alone, the same delivery is refused on the head.
        assert_eq!(profile("").unwrap().check_signed_head(&h, NOW).unwrap_err().status(), 401);
        let v1 = signature::sign(&Key::decode(SECRET.as_bytes()).unwrap(), "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", "1649367553", body);
        let json = format!(r#"{{"endpoints":[{{"name":"sw","path":"/sw","profile":"standard_webhooks","secret":{{"values":["{PUBLIC}"]}}}}]}}"#);
        let public_only = Config::parse(json.as_bytes(), |_| None).unwrap().endpoints.remove(0).profile;
        let h = headers("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", "1649367553", &v1);
        assert_eq!(public_only.check_signed_head(&h, NOW).unwrap_err().status(), 401, "v1 under whpk_ keys only");
        let both = headers("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", "1649367553", &format!("{v1} {v1a}"));
        public_only.verify_signature(&both, body, NOW).unwrap();
    }

    #[test]
    fn the_timestamp_is_checked_both_ways_against_the_tolerance() {
        let p = profile(r#","tolerance_seconds":60"#).unwrap();
        for (now, ok) in [(NOW, true), (NOW + 60, true), (NOW - 60, true), (NOW + 61, false), (NOW - 61, false)] {
            let result = p.check_signed_head(&signed("1649367553"), now);
            assert_eq!(result.is_ok(), ok, "{now}");
            if let Err(r) = result {
                assert_eq!(r.status(), 401);
            }
        }
    }

    #[test]
    fn missing_or_malformed_headers_are_401_and_a_wrong_signature_403() {
        let p = profile("").unwrap();
        let good = signed("1649367553");
        let sig = good.text(SIGNATURE).unwrap().to_string();
        for h in [
            headers("", "1649367553", &sig),
            headers("msg_1", "", &sig),
            headers("msg_1", "1649367553", ""),
            headers("msg 1", "1649367553", &sig),
            headers("msg_1", "01649367553", &sig),
            headers("msg_1", "1649367553.0", &sig),
            headers("msg_1", "1649367553", "v1,AAAA"),
        ] {
            assert_eq!(p.check_signed_head(&h, NOW).unwrap_err().status(), 401, "{h:?}");
        }
        let wrong = profile("").unwrap().verify_signature(&headers("msg_2", "1649367553", &sig), BODY, NOW).unwrap_err();
        assert_eq!((wrong.status(), wrong.reason), (403, Reason::Forbidden));
        assert!(!wrong.detail.contains(&sig[3..]));
    }

    #[test]
    fn the_webhook_id_is_at_most_its_length() {
        let p = profile("").unwrap();
        let key = Key::decode(SECRET.as_bytes()).unwrap();
        let longest = "m".repeat(signature::MAX_ID_LEN);
        let h = headers(&longest, "1649367553", &signature::sign(&key, &longest, "1649367553", BODY));
        p.verify_signature(&h, BODY, NOW).unwrap();
        let over = format!("{longest}m");
        let h = headers(&over, "1649367553", &signature::sign(&key, &over, "1649367553", BODY));
        assert_eq!(p.check_signed_head(&h, NOW).unwrap_err().status(), 401);
        assert_eq!(p.verify_signature(&h, BODY, NOW).unwrap_err().status(), 401);
    }

    #[test]
    fn configuration_is_checked() {
        assert!(profile(r#","keep_signature":true"#).unwrap().removed_headers().is_empty());
        let err = profile(r#","tolerance_seconds":0"#).unwrap_err();
        assert_eq!(err, "endpoints[0].tolerance_seconds: must be between 1 and 3600");
        let err = profile(r#","tolerance_seconds":"x""#).unwrap_err();
        assert!(err.starts_with("endpoints[0].tolerance_seconds: invalid type"), "{err}");
        let err = profile(r#","dedupe_seconds":599"#).unwrap_err();
        assert!(err.starts_with("endpoints[0].dedupe_seconds: must be at least 600"), "{err}");
        let json = r#"{"endpoints":[{"name":"sw","path":"/sw","profile":"standard_webhooks","secret":{"values":["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD","whpk_AAAA"]}}]}"#;
        let err = Config::parse(json.as_bytes(), |_| None).unwrap_err();
        assert_eq!(err, "endpoints[0].secret: secret 2 of 2 must be whpk_ followed by the base64 of a 32-byte ed25519 public key");
        let json = r#"{"endpoints":[{"name":"sw","path":"/sw","profile":"standard_webhooks","secret":{"values":["whsk_JbJsqNhrG9ewnhvR+YcVJvv0OnOVxqNdbtixVsy9rXE="]}}]}"#;
        let err = Config::parse(json.as_bytes(), |_| None).unwrap_err();
        assert!(err.starts_with("endpoints[0].secret: secret 1 of 1 is a whsk_ ed25519 signing key; give the sender's whpk_ public key"), "{err}");
        assert!(!err.contains("JbJs"));
        let json = format!(r#"{{"endpoints":[{{"name":"sw","path":"/sw","profile":"standard_webhooks","secret":{{"values":["{SECRET}","{PUBLIC}"]}}}}]}}"#);
        assert!(Config::parse(json.as_bytes(), |_| None).is_ok(), "whsec_ and whpk_ keys mix");
        let json = r#"{"endpoints":[{"name":"sw","path":"/sw","profile":"standard_webhooks","secret":{"values":["s3cret"]}}]}"#;
        let err = Config::parse(json.as_bytes(), |_| None).unwrap_err();
        assert!(err.contains("must be whsec_ or whpk_ followed by base64") || err.contains("24 to 64"), "{err}");
        assert!(!err.contains("s3cret"));
        let err = profile(r#","answer_ping":true"#).unwrap_err();
        assert!(err.starts_with("endpoints[0].answer_ping: only applies to the md5_envelope profile"), "{err}");
        let c = Config::parse(
            format!(r#"{{"endpoints":[{{"name":"sw","path":"/sw","profile":"standard_webhooks","secret":{{"values":["{SECRET}"]}}}}]}}"#).as_bytes(),
            |_| None,
        )
        .unwrap();
        assert_eq!(c.endpoints[0].dedupe_seconds, Some(600), "duplicate suppression on by default");
    }

    #[test]
    fn a_body_that_is_not_json_is_400_and_an_odd_type_is_not_carried() {
        let p = profile("").unwrap();
        let h = signed("1649367553");
        assert_eq!(p.validate(Media::Json, b"not json", &h).unwrap_err().status(), 400);
        let event = p.validate(Media::Json, br#"{"type":"a b\r\nx: y"}"#, &h).unwrap();
        assert_eq!(event.kind, DEFAULT_KIND);
        let event = p.validate(Media::Json, b"[1,2]", &h).unwrap();
        assert_eq!((event.kind.as_str(), event.time), (DEFAULT_KIND, None));
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        assert!(!format!("{:?}", profile("").unwrap()).contains("C2FV"));
    }
}
