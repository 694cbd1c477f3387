//! `github`: GitHub webhooks (repository, organization and GitHub App hooks). A delivery
//! carries `X-GitHub-Delivery` (a GUID per delivery, kept by a redelivery),
//! `X-GitHub-Event` (the event name, `ping` when a hook is created) and
//! `X-Hub-Signature-256: sha256=<hex>` (HMAC-SHA256 of the raw body), with a JSON body or
//! a form whose `payload` field is the JSON. See docs/profiles/github.md.
//!
//! The head is checked cheaply (the three headers present and well formed); the signature
//! once the body is complete. GitHub signs no timestamp and never retries on its own: a
//! failed delivery is redelivered by a person or a script, with the same GUID, so the
//! event id derives from `X-GitHub-Delivery` and duplicate suppression (on by default)
//! covers GitHub's redelivery horizon.

pub mod signature;

use crate::event::{name_based_id, Event, RateKeys};
use crate::form;
use crate::media::Media;
use crate::metrics::{Counter, ProfileCounter};
use crate::problem::{Reason, Rejection};
use crate::profile::{LocalAnswer, Profile, Registration, Section, SignatureHeaders, SignedHeaders};
use crate::signing::{Key, Signed};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

pub const REGISTRATION: Registration = Registration { name: "github", keys: &["keep_signature", "ping"], configure };

/// The headers read from the head, by index.
const SIGNED: [&str; 3] = ["x-github-delivery", "x-github-event", "x-hub-signature-256"];
const DELIVERY: usize = 0;
const EVENT: usize = 1;
const SIGNATURE: usize = 2;
/// Removed before forwarding: the signature and the legacy SHA-1 one sent alongside it.
const SIGNATURES: [&str; 2] = ["x-hub-signature-256", "x-hub-signature"];
/// GitHub Enterprise Server redelivers deliveries of the past 7 days (github.com: 3).
const REDELIVERY_SECONDS: u64 = 7 * 24 * 3600;
/// The prefix of the event `type`: then the event name and the body's `action`.
pub const KIND_PREFIX: &str = "webhookguard.github.";
const PING_KIND: &str = "webhookguard.github.ping";
/// Longest delivery GUID, event name, action or repository name carried over.
const MAX_NAME_LEN: usize = 128;

/// `pings_answered_total`: a ping the filter answered itself, its verdict on the request.
const PING_ANSWERED: ProfileCounter = ProfileCounter { family: "pings_answered_total", labels: &[], verdict: true };

struct Github {
    signed: Signed<Key>,
    answer_ping: bool,
}

fn configure(section: &Section) -> Result<Box<dyn Profile>, String> {
    let answer_ping = match section.get::<String>("ping")?.as_deref() {
        None | Some("forward") => false,
        Some("answer") => true,
        Some(_) => return Err("ping: must be forward or answer".into()),
    };
    // GitHub signs no timestamp: no tolerance.
    Ok(Box::new(Github { signed: Signed::configure(section, None, Key::raw)?, answer_ping }))
}

impl Github {
    /// The three headers present and well formed: the delivery GUID, the event name and
    /// the signature.
    fn signature(headers: &SignedHeaders) -> Result<[u8; signature::SIGNATURE_BYTES], Rejection> {
        let unauthorized = |detail: String| Rejection::new(Reason::Unauthorized, detail);
        let header = |i: usize| headers.required(i, &SIGNED);
        if !header(DELIVERY)?.bytes().all(|b| b.is_ascii_graphic()) || header(DELIVERY)?.len() > MAX_NAME_LEN {
            return Err(unauthorized(format!("the x-github-delivery header must be 1-{MAX_NAME_LEN} visible ASCII characters")));
        }
        if !usable_name(header(EVENT)?) {
            return Err(unauthorized(format!("the x-github-event header must be 1-{MAX_NAME_LEN} of a-z, 0-9 and _")));
        }
        signature::parse(header(SIGNATURE)?).map_err(|rule| unauthorized(format!("the x-hub-signature-256 header {rule}")))
    }
}

impl Profile for Github {
    fn name(&self) -> &'static str {
        REGISTRATION.name
    }

    fn accepts(&self, media: Media) -> bool {
        matches!(media, Media::Json | Media::Form)
    }

    fn signed(&self) -> Option<SignatureHeaders> {
        Some(self.signed.headers(&SIGNED, &SIGNATURES))
    }

    fn check_signed_head(&self, headers: &SignedHeaders, _now_secs: u64) -> Result<(), Rejection> {
        Self::signature(headers).map(|_| ())
    }

    fn verify_signature(&self, headers: &SignedHeaders, body: &[u8], _now_secs: u64) -> Result<(), Rejection> {
        if signature::verify(&self.signed.keys, body, &Self::signature(headers)?) {
            Ok(())
        } else {
            Err(Rejection::new(Reason::Forbidden, "the x-hub-signature-256 does not match the body under any configured secret"))
        }
    }

    fn validate(&self, media: Media, body: &[u8], headers: &SignedHeaders) -> Result<Event, Rejection> {
        let invalid = |detail: String| Rejection::new(Reason::Invalid, detail);
        let text: Cow<str> = match media {
            // `payload=<JSON>`, GitHub's form content type.
            Media::Form => {
                let fields = form::fields(body).map_err(invalid)?;
                let payload = form::only(&fields, "payload").map_err(invalid)?;
                Cow::Owned(payload.ok_or_else(|| invalid("form field payload is missing".into()))?.to_string())
            }
            _ => Cow::Borrowed(std::str::from_utf8(body).map_err(|_| invalid("the body is not UTF-8 JSON".into()))?),
        };
        let data: Box<RawValue> = serde_json::from_str(&text).map_err(|_| invalid("the payload is not JSON".into()))?;
        let payload: Payload = serde_json::from_str(&text).unwrap_or_default();
        let event = headers.text(EVENT).map(str::trim).unwrap_or_default();
        let kind = match payload.action.filter(|a| usable_name(a)) {
            Some(action) => format!("{KIND_PREFIX}{event}.{action}"),
            None => format!("{KIND_PREFIX}{event}"),
        };
        let subject = payload.repository.and_then(|r| r.full_name).filter(|n| usable_repository(n));
        Ok(Event {
            id: name_based_id(&format!("github\n{}", headers.text(DELIVERY).map(str::trim).unwrap_or_default())),
            kind,
            subject,
            time: None,
            keys: RateKeys::default(),
            data: data.into(),
            nonconforming: Vec::new(),
        })
    }

    fn local_answer(&self, event: &Event) -> Option<LocalAnswer> {
        // With `ping: answer` a new hook's ping proves the route and the secret without
        // depending on the backend.
        (self.answer_ping && event.kind == PING_KIND).then(|| LocalAnswer {
            status: 200,
            headers: vec![("content-type", "application/json".into()), ("x-webhook-answered-by", "webhook-guard".into())],
            body: format!(r#"{{"status":"ok","event_id":"{}"}}"#, event.id).into_bytes(),
            counter: Counter::Profile(PING_ANSWERED),
        })
    }

    fn replay_window(&self) -> Option<u64> {
        // No timestamp bounds a replay: cover the redeliveries a person may still make.
        Some(REDELIVERY_SECONDS)
    }

    fn counters(&self) -> Vec<Counter> {
        vec![Counter::Profile(PING_ANSWERED)]
    }
}

/// The members of a GitHub payload that the event uses.
#[derive(Deserialize, Default)]
struct Payload {
    action: Option<String>,
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct Repository {
    full_name: Option<String>,
}

/// An event name or action that can go into the event type as is.
fn usable_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `owner/name` as GitHub spells repositories, safe as the event's subject.
fn usable_repository(name: &str) -> bool {
    name.len() <= 2 * MAX_NAME_LEN
        && name.split_once('/').is_some_and(|(owner, repo)| {
            [owner, repo].iter().all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const SECRET: &str = "It's a Secret to Everybody";
    const BODY: &[u8] = br#"{"action":"opened","issue":{"number":1},"repository":{"full_name":"octo-org/hello-world"}}"#;
    const GUID: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

    fn profile(extra: &str) -> Result<Box<dyn Profile>, String> {
        let json = format!(r#"{{"endpoints":[{{"name":"gh","path":"/gh","profile":"github","secret":{{"values":["{SECRET}","next"]}}{extra}}}]}}"#);
        Config::parse(json.as_bytes(), |_| None).map(|mut c| c.endpoints.remove(0).profile)
    }

    fn headers(values: [&str; 3]) -> SignedHeaders {
        SignedHeaders(values.iter().map(|v| (!v.is_empty()).then(|| v.as_bytes().to_vec())).collect())
    }

    fn signed(event: &str, body: &[u8]) -> SignedHeaders {
        headers([GUID, event, &signature::sign(&Key::new(SECRET.as_bytes().to_vec()), body)])
    }

    #[test]
    fn a_signed_delivery_is_verified_and_normalised() {
        let p = profile("").unwrap();
        let h = signed("issues", BODY);
        p.check_signed_head(&h, 0).unwrap();
        p.verify_signature(&h, BODY, 0).unwrap();
        let event = p.validate(Media::Json, BODY, &h).unwrap();
        assert_eq!(event.kind, "webhookguard.github.issues.opened");
        assert_eq!(event.subject.as_deref(), Some("octo-org/hello-world"));
        assert_eq!(event.id, name_based_id(&format!("github\n{GUID}")));
        assert_eq!(event.data.get().as_bytes(), BODY);
        assert_eq!(p.removed_headers(), ["x-hub-signature-256", "x-hub-signature"]);
        assert_eq!(p.replay_window(), Some(604_800));
        assert!(p.accepts(Media::Form) && !p.accepts(Media::Xml));
    }

    #[test]
    fn a_form_delivery_is_its_payload_field() {
        let p = profile("").unwrap();
        let form = format!("payload={}", "%7B%22zen%22%3A%22Keep+it+logically+awesome.%22%2C%22hook_id%22%3A1%7D");
        let h = signed("ping", form.as_bytes());
        p.verify_signature(&h, form.as_bytes(), 0).unwrap();
        let event = p.validate(Media::Form, form.as_bytes(), &h).unwrap();
        assert_eq!(event.data.get(), r#"{"zen":"Keep it logically awesome.","hook_id":1}"#);
        assert_eq!((event.kind.as_str(), event.subject), (PING_KIND, None));
        for (bad, detail) in [
            ("zen=1", "form field payload is missing"),
            ("payload=%7B&payload=1", "form field payload appears more than once"),
            ("payload=%7B", "the payload is not JSON"),
        ] {
            assert_eq!(p.validate(Media::Form, bad.as_bytes(), &h).unwrap_err().detail, detail);
        }
    }

    #[test]
    fn missing_or_malformed_headers_are_401_and_a_wrong_signature_403() {
        let p = profile("").unwrap();
        let sig = signature::sign(&Key::new(SECRET.as_bytes().to_vec()), BODY);
        for h in [
            ["", "issues", &sig],
            [GUID, "", &sig],
            [GUID, "issues", ""],
            ["a b", "issues", &sig],
            [GUID, "Issues", &sig],
            [GUID, "issues", &sig[1..]],
            [GUID, "issues", "sha1=757107ea0eb2509fc211221cce984b8a37570b6d"],
        ] {
            let r = p.check_signed_head(&headers(h), 0).unwrap_err();
            assert_eq!((r.status(), r.reason), (401, Reason::Unauthorized), "{h:?}");
            assert_eq!(p.verify_signature(&headers(h), BODY, 0).unwrap_err().status(), 401, "{h:?}");
        }
        let wrong = p.verify_signature(&signed("issues", b"{}"), BODY, 0).unwrap_err();
        assert_eq!((wrong.status(), wrong.reason), (403, Reason::Forbidden));
        assert!(!wrong.detail.contains(&sig[7..]));
        // The second secret verifies too (rotation).
        let next = headers([GUID, "issues", &signature::sign(&Key::new(b"next".to_vec()), BODY)]);
        p.verify_signature(&next, BODY, 0).unwrap();
    }

    #[test]
    fn the_delivery_guid_is_at_most_its_length() {
        let p = profile("").unwrap();
        let sig = signature::sign(&Key::new(SECRET.as_bytes().to_vec()), BODY);
        let longest = "d".repeat(MAX_NAME_LEN);
        p.verify_signature(&headers([&longest, "issues", &sig]), BODY, 0).unwrap();
        let over = headers([&format!("{longest}d"), "issues", &sig]);
        assert_eq!(p.check_signed_head(&over, 0).unwrap_err().status(), 401);
        assert_eq!(p.verify_signature(&over, BODY, 0).unwrap_err().status(), 401);
    }

    #[test]
    fn the_ping_is_forwarded_unless_the_endpoint_answers_it() {
        let body = br#"{"zen":"Design for failure.","hook_id":42}"#;
        let h = signed("ping", body);
        let event = profile("").unwrap().validate(Media::Json, body, &h).unwrap();
        assert_eq!(profile("").unwrap().local_answer(&event), None);
        assert_eq!(profile(r#","ping":"forward""#).unwrap().local_answer(&event), None);
        let answer = profile(r#","ping":"answer""#).unwrap().local_answer(&event).unwrap();
        assert_eq!((answer.status, answer.counter), (200, Counter::Profile(PING_ANSWERED)));
        assert!(String::from_utf8(answer.body).unwrap().contains(&event.id));
        let other = profile("").unwrap().validate(Media::Json, BODY, &signed("issues", BODY)).unwrap();
        assert_eq!(profile(r#","ping":"answer""#).unwrap().local_answer(&other), None);
    }

    #[test]
    fn odd_actions_and_repositories_are_not_carried() {
        let p = profile("").unwrap();
        for body in [&br#"{"action":"a b","repository":{"full_name":"x"}}"#[..], br#"{"action":1,"repository":{"full_name":"a/b\r\nc"}}"#, b"[1]", b"\"s\""] {
            let event = p.validate(Media::Json, body, &signed("push", body)).unwrap();
            assert_eq!((event.kind.as_str(), event.subject), ("webhookguard.github.push", None), "{body:?}");
        }
        assert_eq!(p.validate(Media::Json, b"not json", &signed("push", b"")).unwrap_err().status(), 400);
    }

    #[test]
    fn configuration_is_checked() {
        assert!(profile(r#","keep_signature":true"#).unwrap().removed_headers().is_empty());
        assert_eq!(profile(r#","ping":"drop""#).unwrap_err(), "endpoints[0].ping: must be forward or answer");
        let err = profile(r#","tolerance_seconds":300"#).unwrap_err();
        assert!(err.starts_with("endpoints[0].tolerance_seconds: only applies to the standard_webhooks"), "{err}");
        let err = profile(r#","dedupe_seconds":3600"#).unwrap_err();
        assert!(err.starts_with("endpoints[0].dedupe_seconds: must be at least 604800"), "{err}");
        let json = r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]},"keep_signature":true}]}"#;
        let err = Config::parse(json.as_bytes(), |_| None).unwrap_err();
        // A key several signed senders read names every one of them.
        assert!(
            err.starts_with("endpoints[0].keep_signature: only applies to the standard_webhooks") && err.contains("github") && err.contains(" profiles at "),
            "{err}"
        );
        assert!(!format!("{:?}", profile("").unwrap()).contains("Secret to"));
    }
}
