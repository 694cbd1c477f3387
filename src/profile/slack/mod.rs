//! `slack`: requests a Slack app receives: the Events API (JSON), slash commands (a form)
//! and interactivity (a form whose `payload` field is JSON). Every request carries
//! `X-Slack-Request-Timestamp` (Unix seconds) and `X-Slack-Signature: v0=<hex>`
//! (HMAC-SHA256 of `v0:{timestamp}:{raw body}` with the app's signing secret). See
//! docs/profiles/slack.md.
//!
//! The head is checked cheaply (both headers present and well formed, the timestamp
//! within tolerance of the host clock, both directions); the signature once the body is
//! complete. The Events API's `url_verification` challenge is answered by the filter, after
//! the signature. Slack retries a failed event with a fresh timestamp and signature but
//! the same `event_id`, so the event id derives from `event_id` (else from the signature,
//! which a replay repeats byte for byte).

pub mod signature;

use crate::event::{name_based_id, push_string, usable_type, Event, RateKeys};
use crate::form;
use crate::media::Media;
use crate::metrics::{Counter, ProfileCounter};
use crate::problem::{Reason, Rejection};
use crate::profile::{LocalAnswer, Profile, Registration, Section, SignatureHeaders, SignedHeaders};
use crate::signing::{self, Key, Signed};
use crate::timestamp;
use serde::Deserialize;
use serde_json::value::RawValue;

pub const REGISTRATION: Registration = Registration { name: "slack", keys: &["tolerance_seconds", "keep_signature"], configure };

/// The headers read from the head, by index.
const SIGNED: [&str; 2] = ["x-slack-request-timestamp", "x-slack-signature"];
const TIMESTAMP: usize = 0;
const SIGNATURE: usize = 1;
/// Slack's five minutes, both directions.
const DEFAULT_TOLERANCE: u64 = 300;
pub const KIND_PREFIX: &str = "webhookguard.slack.";
const HANDSHAKE: &str = "webhookguard.slack.url_verification";
/// Longest `challenge` echoed.
const MAX_CHALLENGE_LEN: usize = 256;

/// `handshakes_total{event_type="url_verification"}`: a challenge the filter answered, its verdict.
const HANDSHAKE_ANSWERED: ProfileCounter = ProfileCounter { family: "handshakes_total", labels: &[("event_type", "url_verification")], verdict: true };

struct Slack(Signed<Key>);

fn configure(section: &Section) -> Result<Box<dyn Profile>, String> {
    Ok(Box::new(Slack(Signed::configure(section, Some(DEFAULT_TOLERANCE), Key::raw)?)))
}

impl Slack {
    /// Both headers present and well formed, the timestamp within tolerance: the timestamp
    /// text (it is signed as sent) and the signature.
    fn checked<'a>(&self, headers: &'a SignedHeaders, now_secs: u64) -> Result<(&'a str, [u8; signature::SIGNATURE_BYTES]), Rejection> {
        let unauthorized = |detail: String| Rejection::new(Reason::Unauthorized, detail);
        let timestamp = headers.required(TIMESTAMP, &SIGNED)?;
        signing::fresh("the x-slack-request-timestamp header", timestamp, now_secs, self.0.tolerance).map_err(unauthorized)?;
        let signature = signature::parse(headers.required(SIGNATURE, &SIGNED)?).map_err(|rule| unauthorized(format!("the x-slack-signature header {rule}")))?;
        Ok((timestamp, signature))
    }
}

impl Profile for Slack {
    fn name(&self) -> &'static str {
        REGISTRATION.name
    }

    fn accepts(&self, media: Media) -> bool {
        matches!(media, Media::Json | Media::Form)
    }

    fn signed(&self) -> Option<SignatureHeaders> {
        Some(self.0.headers(&SIGNED, &SIGNED[SIGNATURE..]))
    }

    fn check_signed_head(&self, headers: &SignedHeaders, now_secs: u64) -> Result<(), Rejection> {
        self.checked(headers, now_secs).map(|_| ())
    }

    fn verify_signature(&self, headers: &SignedHeaders, body: &[u8], now_secs: u64) -> Result<(), Rejection> {
        let (timestamp, sent) = self.checked(headers, now_secs)?;
        if signature::verify(&self.0.keys, timestamp, body, &sent) {
            Ok(())
        } else {
            Err(Rejection::new(Reason::Forbidden, "the x-slack-signature does not match the timestamp and body under any configured secret"))
        }
    }

    fn validate(&self, media: Media, body: &[u8], headers: &SignedHeaders) -> Result<Event, Rejection> {
        let invalid = |detail: String| Rejection::new(Reason::Invalid, detail);
        let (data, fallback) = match media {
            Media::Form => form_data(body).map_err(invalid)?,
            _ => {
                let text = std::str::from_utf8(body).map_err(|_| invalid("the body is not UTF-8 JSON".into()))?;
                (serde_json::from_str(text).map_err(|_| invalid("the body is not JSON".into()))?, "message")
            }
        };
        let payload: Payload = serde_json::from_str(data.get()).unwrap_or_default();
        let text = |member: Option<&RawValue>| member.and_then(|v| serde_json::from_str::<String>(v.get()).ok()).filter(|t| usable_type(t));
        let inner = payload.event.and_then(|e| serde_json::from_str::<Payload>(e.get()).ok()).unwrap_or_default();
        let kind = match (text(payload.kind), text(inner.kind)) {
            (Some(outer), Some(event)) if outer == "event_callback" => format!("{KIND_PREFIX}event.{event}"),
            (Some(kind), _) => format!("{KIND_PREFIX}{kind}"),
            (None, _) => format!("{KIND_PREFIX}{fallback}"),
        };
        if kind == HANDSHAKE && !challenge(payload.challenge).is_some_and(|c| !c.is_empty() && c.len() <= MAX_CHALLENGE_LEN) {
            return Err(invalid(format!("a url_verification needs a challenge of 1 to {MAX_CHALLENGE_LEN} characters")));
        }
        // A retry of an event keeps its event_id; any other request is keyed on its
        // signature, which a replay repeats byte for byte.
        let key = match text(payload.event_id) {
            Some(event_id) => format!("slack\nevent\n{event_id}"),
            None => format!("slack\nsignature\n{}", headers.text(SIGNATURE).map(str::trim).unwrap_or_default().to_ascii_lowercase()),
        };
        let time = payload.event_time.and_then(|t| serde_json::from_str::<i64>(t.get()).ok()).and_then(timestamp::rfc3339_from_unix);
        Ok(Event { id: name_based_id(&key), kind, subject: None, time, keys: RateKeys::default(), data: data.into(), nonconforming: Vec::new() })
    }

    fn local_answer(&self, event: &Event) -> Option<LocalAnswer> {
        // Slack sends the challenge when the Request URL is set and expects it back; the
        // request is authenticated by now, so an echo proves the route and the secret.
        if event.kind != HANDSHAKE {
            return None;
        }
        let payload: Payload = serde_json::from_str(event.data.get()).ok()?;
        let mut body = String::from(r#"{"challenge":"#);
        push_string(&mut body, &challenge(payload.challenge)?).ok()?;
        body.push('}');
        Some(LocalAnswer {
            status: 200,
            headers: vec![("content-type", "application/json".into()), ("x-webhook-answered-by", "webhook-guard".into())],
            body: body.into_bytes(),
            counter: Counter::Profile(HANDSHAKE_ANSWERED),
        })
    }

    fn replay_window(&self) -> Option<u64> {
        // A request is accepted while the clock is within the tolerance on either side of
        // its timestamp; this also covers Slack's retries (at once, after 1 and 5 minutes).
        Some(2 * self.0.tolerance)
    }

    fn counters(&self) -> Vec<Counter> {
        vec![Counter::Profile(HANDSHAKE_ANSWERED)]
    }
}

/// The event data of a form: an interactivity request's `payload` JSON, else (a slash
/// command) the fields as a JSON object of strings; and the type when the data has none.
fn form_data(body: &[u8]) -> Result<(Box<RawValue>, &'static str), String> {
    let fields = form::fields(body)?;
    if let Some(payload) = form::only(&fields, "payload")? {
        let data = serde_json::from_str(payload).map_err(|_| "form field payload is not JSON".to_string())?;
        return Ok((data, "interaction"));
    }
    // A JSON object of string members, in the order sent, written directly (no
    // `serde_json::Value`, which would add its whole machinery to the module).
    let mut object = String::from("{");
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            object.push(',');
        }
        push_string(&mut object, name).map_err(unwritable)?;
        object.push(':');
        push_string(&mut object, value).map_err(unwritable)?;
    }
    object.push('}');
    let data = RawValue::from_string(object).map_err(unwritable)?;
    Ok((data, "slash_command"))
}

fn unwritable<E>(_: E) -> String {
    "the form cannot be written as JSON".to_string()
}

/// The members of a Slack body that the event uses, each of any JSON type (one of an
/// unexpected type is only not used).
#[derive(Deserialize, Default)]
struct Payload<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    event_id: Option<&'a RawValue>,
    #[serde(borrow)]
    event_time: Option<&'a RawValue>,
    #[serde(borrow)]
    challenge: Option<&'a RawValue>,
}

/// The `challenge` of a `url_verification`, when it is a string.
fn challenge(member: Option<&RawValue>) -> Option<String> {
    member.and_then(|v| serde_json::from_str(v.get()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const NOW: u64 = 1_531_420_618;
    const EVENT: &[u8] =
        br#"{"token":"x","team_id":"T1","type":"event_callback","event":{"type":"app_mention","text":"hi"},"event_id":"Ev08MFMKH6","event_time":1531420618}"#;

    fn profile(extra: &str) -> Result<Box<dyn Profile>, String> {
        let json = format!(r#"{{"endpoints":[{{"name":"sl","path":"/sl","profile":"slack","secret":{{"values":["{SECRET}","next"]}}{extra}}}]}}"#);
        Config::parse(json.as_bytes(), |_| None).map(|mut c| c.endpoints.remove(0).profile)
    }

    fn signed(timestamp: &str, body: &[u8]) -> SignedHeaders {
        let signature = signature::sign(&Key::new(SECRET.as_bytes().to_vec()), timestamp, body);
        SignedHeaders(vec![Some(timestamp.as_bytes().to_vec()), Some(signature.into_bytes())])
    }

    #[test]
    fn an_event_is_verified_and_normalised_and_its_retries_share_its_id() {
        let p = profile("").unwrap();
        let h = signed("1531420618", EVENT);
        p.check_signed_head(&h, NOW).unwrap();
        p.verify_signature(&h, EVENT, NOW).unwrap();
        let event = p.validate(Media::Json, EVENT, &h).unwrap();
        assert_eq!(event.kind, "webhookguard.slack.event.app_mention");
        assert_eq!(event.time.as_deref(), Some("2018-07-12T18:36:58Z"));
        assert_eq!(event.id, name_based_id("slack\nevent\nEv08MFMKH6"));
        assert_eq!(event.data.get().as_bytes(), EVENT);
        let retry = p.validate(Media::Json, EVENT, &signed("1531420678", EVENT)).unwrap();
        assert_eq!(retry.id, event.id, "a retry is signed again, with the same event_id");
        assert_eq!(p.removed_headers(), ["x-slack-signature"]);
        assert_eq!(p.replay_window(), Some(600));
        assert_eq!(p.local_answer(&event), None);
    }

    #[test]
    fn the_documented_slash_command_is_a_form_keyed_on_its_signature() {
        let p = profile("").unwrap();
        let body = signature::tests::BODY;
        let h = signed("1531420618", body);
        assert_eq!(h.text(SIGNATURE), Some("v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"));
        p.verify_signature(&h, body, NOW + 300).unwrap();
        let event = p.validate(Media::Form, body, &h).unwrap();
        assert_eq!(event.kind, "webhookguard.slack.slash_command");
        let data: serde_json::Value = serde_json::from_str(event.data.get()).unwrap();
        assert_eq!((data["command"].as_str(), data["text"].as_str()), (Some("/webhook-collect"), Some("")));
        assert_eq!(event.id, name_based_id("slack\nsignature\nv0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"));
        let interaction = b"payload=%7B%22type%22%3A%22block_actions%22%2C%22trigger_id%22%3A%221.2%22%7D";
        let event = p.validate(Media::Form, interaction, &signed("1531420618", interaction)).unwrap();
        assert_eq!((event.kind.as_str(), event.data.get()), ("webhookguard.slack.block_actions", r#"{"type":"block_actions","trigger_id":"1.2"}"#));
        assert_eq!(p.validate(Media::Form, b"payload=%7B", &h).unwrap_err().detail, "form field payload is not JSON");
    }

    #[test]
    fn the_url_verification_challenge_is_echoed() {
        let p = profile("").unwrap();
        let body = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
        let event = p.validate(Media::Json, body, &signed("1531420618", body)).unwrap();
        let answer = p.local_answer(&event).unwrap();
        assert_eq!((answer.status, answer.counter), (200, Counter::Profile(HANDSHAKE_ANSWERED)));
        assert_eq!(answer.body, br#"{"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#);
        for bad in [&br#"{"type":"url_verification"}"#[..], br#"{"type":"url_verification","challenge":""}"#, br#"{"type":"url_verification","challenge":7}"#] {
            assert_eq!(p.validate(Media::Json, bad, &signed("1", bad)).unwrap_err().status(), 400, "{bad:?}");
        }
    }

    #[test]
    fn the_timestamp_is_checked_both_ways_against_the_tolerance() {
        let p = profile(r#","tolerance_seconds":60"#).unwrap();
        for (now, ok) in [(NOW, true), (NOW + 60, true), (NOW - 60, true), (NOW + 61, false), (NOW - 61, false)] {
            let result = p.check_signed_head(&signed("1531420618", EVENT), now);
            assert_eq!(result.is_ok(), ok, "{now}");
            assert!(result.is_ok() || result.unwrap_err().status() == 401);
        }
    }

    #[test]
    fn missing_or_malformed_headers_are_401_and_a_wrong_signature_403() {
        let p = profile("").unwrap();
        let good = signed("1531420618", EVENT);
        let sig = good.text(SIGNATURE).unwrap().to_string();
        let headers = |ts: &str, sig: &str| SignedHeaders([ts, sig].iter().map(|v| (!v.is_empty()).then(|| v.as_bytes().to_vec())).collect());
        for h in [
            headers("", &sig),
            headers("1531420618", ""),
            headers("01531420618", &sig),
            headers("1531420618.5", &sig),
            headers("1531420618", &sig[1..]),
            headers("1531420618", "v1=00"),
        ] {
            let r = p.check_signed_head(&h, NOW).unwrap_err();
            assert_eq!((r.status(), r.reason), (401, Reason::Unauthorized), "{h:?}");
        }
        let wrong = p.verify_signature(&headers("1531420619", &sig), EVENT, NOW).unwrap_err();
        assert_eq!((wrong.status(), wrong.reason), (403, Reason::Forbidden));
        assert!(!wrong.detail.contains(&sig[3..]));
        let next = signature::sign(&Key::new(b"next".to_vec()), "1531420618", EVENT);
        p.verify_signature(&headers("1531420618", &next), EVENT, NOW).unwrap();
    }

    #[test]
    fn configuration_is_checked() {
        assert!(profile(r#","keep_signature":true"#).unwrap().removed_headers().is_empty());
        assert_eq!(profile(r#","tolerance_seconds":3601"#).unwrap_err(), "endpoints[0].tolerance_seconds: must be between 1 and 3600");
        let err = profile(r#","dedupe_seconds":599"#).unwrap_err();
        assert!(err.starts_with("endpoints[0].dedupe_seconds: must be at least 600"), "{err}");
        let err = profile(r#","ping":"answer""#).unwrap_err();
        assert!(err.starts_with("endpoints[0].ping: only applies to the github profile"), "{err}");
        let json = r#"{"endpoints":[{"name":"a","path":"/a","profile":"md5_envelope","secret":{"values":["s"]},"tolerance_seconds":300}]}"#;
        let err = Config::parse(json.as_bytes(), |_| None).unwrap_err();
        assert!(err.starts_with("endpoints[0].tolerance_seconds: only applies to the standard_webhooks, slack and stripe profiles"), "{err}");
        assert!(!format!("{:?}", profile("").unwrap()).contains("8f7422"));
    }
}
