//! `stripe`: Stripe's webhook endpoints (event destinations of type webhook). A delivery
//! carries `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=...]`, the HMAC-SHA256 of
//! `{t}.{raw body}` keyed with the endpoint's `whsec_` signing secret (one `v1` per
//! active secret while Stripe rolls it), and a JSON event whose `id` (`evt_...`) is the
//! same on every retry. See docs/profiles/stripe.md.
//!
//! The head is checked cheaply (the header present and well formed, `t` within tolerance
//! of the host clock, both directions); the signature once the body is complete. The
//! event id derives from the body's `id`, so duplicate suppression (on by default, at
//! least twice the tolerance) answers a replay of a delivered event.

pub mod signature;

use crate::event::{name_based_id_of, usable_type, Event, RateKeys};
use crate::media::Media;
use crate::problem::{Reason, Rejection};
use crate::profile::{json_document, Profile, Registration, Section, SignatureHeaders, SignedHeaders};
use crate::signing::{self, Key, Signed};
use crate::timestamp;
use serde::Deserialize;

pub const REGISTRATION: Registration = Registration { name: "stripe", keys: &["tolerance_seconds", "keep_signature"], configure };

/// The headers read from the head, by index.
const SIGNED: [&str; 1] = ["stripe-signature"];
const SIGNATURE: usize = 0;
/// Stripe's libraries' default tolerance (`DEFAULT_TOLERANCE`, 300 s).
const DEFAULT_TOLERANCE: u64 = 300;
/// The prefix of the event `type`; the rest is the body's `type` (`invoice.paid`).
pub const KIND_PREFIX: &str = "webhookguard.stripe.";
/// The event `type` of a body without a usable `type`.
const DEFAULT_KIND: &str = "webhookguard.stripe.event";
/// Longest event `id` used as the duplicate key (Stripe's are `evt_` + 24 characters).
const MAX_ID_LEN: usize = 255;

struct Stripe(Signed<Key>);

fn configure(section: &Section) -> Result<Box<dyn Profile>, String> {
    Ok(Box::new(Stripe(Signed::configure(section, Some(DEFAULT_TOLERANCE), signature::decode_key)?)))
}

impl Stripe {
    /// The header present and well formed, its `t` within tolerance.
    fn header<'a>(&self, headers: &'a SignedHeaders, now_secs: u64) -> Result<signature::Header<'a>, Rejection> {
        let unauthorized = |detail: String| Rejection::new(Reason::Unauthorized, detail);
        let header = signature::parse(headers.required(SIGNATURE, &SIGNED)?).map_err(|rule| unauthorized(format!("the stripe-signature header {rule}")))?;
        signing::fresh("the stripe-signature timestamp t", header.timestamp, now_secs, self.0.tolerance).map_err(unauthorized)?;
        Ok(header)
    }
}

impl Profile for Stripe {
    fn name(&self) -> &'static str {
        REGISTRATION.name
    }

    fn signed(&self) -> Option<SignatureHeaders> {
        Some(self.0.headers(&SIGNED, &SIGNED))
    }

    fn check_signed_head(&self, headers: &SignedHeaders, now_secs: u64) -> Result<(), Rejection> {
        self.header(headers, now_secs).map(|_| ())
    }

    fn verify_signature(&self, headers: &SignedHeaders, body: &[u8], now_secs: u64) -> Result<(), Rejection> {
        let header = self.header(headers, now_secs)?;
        if signature::verify(&self.0.keys, header.timestamp, body, &header.signatures) {
            Ok(())
        } else {
            Err(Rejection::new(Reason::Forbidden, "no v1 signature of the stripe-signature header matches the body under any configured secret"))
        }
    }

    fn validate(&self, _media: Media, body: &[u8], _headers: &SignedHeaders) -> Result<Event, Rejection> {
        let (text, data) = json_document(body)?;
        let payload: Payload = serde_json::from_str(text).unwrap_or_default();
        // The event's id is the same on every retry; a body without one (never seen from
        // Stripe) is keyed on its bytes, which a retry repeats too.
        let id = match payload.id.filter(|id| !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())) {
            Some(id) => name_based_id_of(&["stripe\n", &id]),
            None => name_based_id_of(&["stripe\nbody\n", text]),
        };
        let kind = match payload.kind.filter(|t| usable_type(t)) {
            Some(t) => format!("{KIND_PREFIX}{t}"),
            None => DEFAULT_KIND.to_string(),
        };
        let time = payload.created.and_then(timestamp::rfc3339_from_unix);
        Ok(Event { id, kind, subject: None, time, keys: RateKeys::default(), data: data.into(), nonconforming: Vec::new() })
    }

    fn replay_window(&self) -> Option<u64> {
        // A delivery is accepted while the clock is within the tolerance on either side
        // of its `t`.
        Some(2 * self.0.tolerance)
    }
}

/// The members of a Stripe event that the CloudEvent uses.
#[derive(Deserialize, Default)]
struct Payload {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    created: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::event::name_based_id;

    const SECRET: &str = "whsec_test_secret";
    const NOW: u64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event","type":"invoice.paid","created":1700000000}"#;

    fn profile(extra: &str) -> Result<Box<dyn Profile>, String> {
        let json = format!(r#"{{"endpoints":[{{"name":"st","path":"/st","profile":"stripe","secret":{{"values":["{SECRET}"]}}{extra}}}]}}"#);
        Config::parse(json.as_bytes(), |_| None).map(|mut c| c.endpoints.remove(0).profile)
    }

    fn headers(value: &str) -> SignedHeaders {
        SignedHeaders(vec![(!value.is_empty()).then(|| value.as_bytes().to_vec())])
    }

    fn signed(timestamp: &str, body: &[u8]) -> SignedHeaders {
        headers(&signature::sign(&signature::decode_key(SECRET.as_bytes()).unwrap(), timestamp, body))
    }

    #[test]
    fn a_signed_delivery_is_verified_and_normalised() {
        let p = profile("").unwrap();
        let h = signed("1700000000", BODY);
        p.check_signed_head(&h, NOW).unwrap();
        p.verify_signature(&h, BODY, NOW).unwrap();
        let event = p.validate(Media::Json, BODY, &h).unwrap();
        assert_eq!(event.kind, "webhookguard.stripe.invoice.paid");
        assert_eq!(event.time.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(event.id, name_based_id("stripe\nevt_1"));
        assert_eq!(event.data.get().as_bytes(), BODY);
        assert_eq!(p.removed_headers(), ["stripe-signature"]);
        assert_eq!(p.replay_window(), Some(600));
    }

    #[test]
    fn the_timestamp_is_checked_both_ways_against_the_tolerance() {
        let p = profile(r#","tolerance_seconds":60"#).unwrap();
        for (now, ok) in [(NOW, true), (NOW + 60, true), (NOW - 60, true), (NOW + 61, false), (NOW - 61, false)] {
            let result = p.check_signed_head(&signed("1700000000", BODY), now);
            assert_eq!(result.is_ok(), ok, "{now}");
            if let Err(r) = result {
                assert_eq!(r.status(), 401);
            }
        }
        assert_eq!(profile("").unwrap().check_signed_head(&signed("1700000301", BODY), NOW).unwrap_err().status(), 401, "300 s by default");
    }

    #[test]
    fn missing_or_malformed_headers_are_401_and_a_wrong_signature_403() {
        let p = profile("").unwrap();
        let good = signed("1700000000", BODY);
        let sig = good.text(SIGNATURE).unwrap().to_string();
        let v1 = sig.split_once(",v1=").unwrap().1.to_string();
        for h in [
            headers(""),
            headers(&format!("v1={v1}")),
            headers("t=1700000000"),
            headers(&format!("t=01700000000,v1={v1}")),
            headers(&format!("t=1700000000.5,v1={v1}")),
        ] {
            assert_eq!(p.check_signed_head(&h, NOW).unwrap_err().status(), 401, "{h:?}");
        }
        // t changed after signing; the body changed.
        for (h, body) in [(headers(&format!("t=1700000001,v1={v1}")), BODY), (good.clone(), &br#"{"id":"evt_2"}"#[..])] {
            let wrong = p.verify_signature(&h, body, NOW).unwrap_err();
            assert_eq!((wrong.status(), wrong.reason), (403, Reason::Forbidden));
            assert!(!wrong.detail.contains(&v1));
        }
        let other = headers(&format!("t=1700000000,v1={}", "0".repeat(64)));
        assert_eq!(p.verify_signature(&other, BODY, NOW).unwrap_err().status(), 403);
    }

    #[test]
    fn configuration_is_checked() {
        assert!(profile(r#","keep_signature":true"#).unwrap().removed_headers().is_empty());
        let err = profile(r#","tolerance_seconds":0"#).unwrap_err();
        assert_eq!(err, "endpoints[0].tolerance_seconds: must be between 1 and 3600");
        let err = profile(r#","dedupe_seconds":599"#).unwrap_err();
        assert!(err.starts_with("endpoints[0].dedupe_seconds: must be at least 600"), "{err}");
        let json = r#"{"endpoints":[{"name":"st","path":"/st","profile":"stripe","secret":{"values":["whsec_a","sk_live_nope"]}}]}"#;
        let err = Config::parse(json.as_bytes(), |_| None).unwrap_err();
        assert_eq!(err, "endpoints[0].secret: secret 2 of 2 must be the endpoint's signing secret, whsec_...");
        let c = Config::parse(
            format!(r#"{{"endpoints":[{{"name":"st","path":"/st","profile":"stripe","secret":{{"values":["{SECRET}"]}}}}]}}"#).as_bytes(),
            |_| None,
        )
        .unwrap();
        assert_eq!(c.endpoints[0].dedupe_seconds, Some(600), "duplicate suppression on by default");
        // A key the signed senders share names them all.
        let json = r#"{"endpoints":[{"name":"v","path":"/v","profile":"md5_envelope","secret":{"values":["s"]},"tolerance_seconds":60}]}"#;
        let err = Config::parse(json.as_bytes(), |_| None).unwrap_err();
        assert!(err.starts_with("endpoints[0].tolerance_seconds: only applies to the standard_webhooks, slack and stripe profiles"), "{err}");
    }

    #[test]
    fn the_event_id_is_the_bodys_and_odd_bodies_are_handled() {
        let p = profile("").unwrap();
        let h = signed("1700000000", BODY);
        assert_eq!(p.validate(Media::Json, b"not json", &h).unwrap_err().status(), 400);
        // A retry is signed again with a later t: the same event id.
        assert_eq!(p.validate(Media::Json, BODY, &signed("1700000100", BODY)).unwrap().id, name_based_id("stripe\nevt_1"));
        let event = p.validate(Media::Json, br#"{"id":"evt 1","type":"a b"}"#, &h).unwrap();
        assert_eq!((event.kind.as_str(), event.id), (DEFAULT_KIND, name_based_id("stripe\nbody\n{\"id\":\"evt 1\",\"type\":\"a b\"}")));
        let event = p.validate(Media::Json, b"[1,2]", &h).unwrap();
        assert_eq!((event.kind.as_str(), event.time), (DEFAULT_KIND, None));
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        assert!(!format!("{:?}", profile("").unwrap()).contains("test_secret"));
    }
}
