//! Vendor webhooks with an md5 payload digest (app-store style purchase, cancellation and
//! `ping` notifications; see docs/profiles/md5_envelope.md).
//!
//! Every notification is an envelope of two parameters, `payload` and `md5`, sent as JSON,
//! XML or a form. The vendor does not say which bytes its md5 covers, so the digest is
//! accepted when it matches any of these plausible bases (MD5 is integrity, not
//! authentication: anyone can compute it, so "any of" weakens nothing, and these routes
//! still need a secret):
//!
//! 1. **the payload exactly as it appears on the wire**:
//!
//! | syntax | envelope | the payload text |
//! |---|---|---|
//! | JSON | `{"payload": {...}, "md5": "<hex>"}` | the `payload` member's value, from its `{` to its `}` inclusive, byte for byte |
//! | XML | `<notification><payload>...</payload><md5>hex</md5></notification>` | the bytes between `<payload>` and `</payload>` (no unescaping, no line-end normalisation) |
//! | form | `payload=...&md5=...` | the percent-decoded `payload` field (`+` read as a space), a JSON object's text |
//!
//! 2. **the payload as compact JSON**, as Ruby's or JavaScript's `to_json` writes it
//!    ([`compact`]): members in the order sent, no whitespace, minimal string escapes,
//!    numbers as written. For XML, the payload converted to JSON (see `xml.rs`).
//! 3. the same with Rails' HTML-safe escapes (`\u003c`, `\u003e`, `\u0026`, `\u2028`,
//!    `\u2029`), what ActiveSupport's `to_json` writes by default.
//!
//! The md5 is 32 hexadecimal digits in either case; a digest matching none is refused.
//!
//! Checks run in three steps, and the first failure answers:
//! 1. the body is well-formed and the envelope has its shape ([`Rejected::Invalid`]);
//! 2. the md5 is present, 32 hex digits, and matches ([`Rejected::Digest`]);
//! 3. the payload is an object with a string `type` (1-64 of `[A-Za-z0-9_.-]`) and, when
//!    present, an integer `epoch_timestamp` in Unix seconds ([`Rejected::Invalid`]).
//!
//! The event: `id` = name-based UUID of `md5_envelope\n{type}\n{md5 lowercase}` (so every
//! retry of a notification has the same id), `type` = `webhookguard.vendor.{type
//! lowercased}`, `time` = `epoch_timestamp` in RFC 3339, `data` =
//! `{"payloadType", "md5", "epochTimestamp"?, "payload"}` with `payload` as compact JSON:
//! the same for one notification whether it came as JSON, XML or a form.

mod compact;
mod form;
mod json;
mod xml;

use md5::{Digest, Md5};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::Upstream4xx;
use crate::event::{name_based_id, Event, RateKeys};
use crate::media::Media;
use crate::metrics::{Counter, ProfileCounter};
use crate::problem::{Reason, Rejection};
use crate::profile::{LocalAnswer, Profile, Registration, Section, SignedHeaders};
use crate::upstream::{self, Told};

/// `pings_answered_total`: a ping the filter answered itself, its verdict on the request.
const PING_ANSWERED: ProfileCounter = ProfileCounter { family: "pings_answered_total", labels: &[], verdict: true };
pub const REGISTRATION: Registration = Registration { name: "md5_envelope", keys: &["answer_ping"], configure };

struct Md5Envelope {
    /// Answer `ping` events without calling the upstream.
    answer_ping: bool,
}

fn configure(section: &Section) -> Result<Box<dyn Profile>, String> {
    Ok(Box::new(Md5Envelope { answer_ping: section.get("answer_ping")?.unwrap_or(false) }))
}

impl Profile for Md5Envelope {
    fn name(&self) -> &'static str {
        REGISTRATION.name
    }

    fn allow(&self) -> &'static str {
        "POST, PUT"
    }

    fn accepts(&self, _media: Media) -> bool {
        true
    }

    fn validate(&self, media: Media, body: &[u8], _headers: &SignedHeaders) -> Result<Event, Rejection> {
        parse(media, body).map_err(|rejected| match rejected {
            Rejected::Invalid(detail) => Rejection::new(Reason::Invalid, detail),
            Rejected::Digest(detail) => Rejection::new(Reason::Digest, detail),
        })
    }

    fn local_answer(&self, event: &Event) -> Option<LocalAnswer> {
        // The sender disables the webhook when a ping fails: answer it here, so a console
        // test proves the route and secret without depending on the backend.
        (self.answer_ping && is_ping(event)).then(|| LocalAnswer {
            status: 200,
            headers: vec![("content-type", "application/json".into()), ("x-webhook-answered-by", "webhook-guard".into())],
            body: format!(r#"{{"status":"ok","event_id":"{}"}}"#, event.id).into_bytes(),
            counter: Counter::Profile(PING_ANSWERED),
        })
    }

    /// The vendor retries any non-200 and counts only 200 as delivered, so a 2xx becomes
    /// 200. It would retry a 3xx, but its HTTP client may follow the redirect instead: the
    /// 3xx becomes 502 as for Azure, and so does a 4xx with `upstream_4xx: retry`.
    fn told(&self, status: u16, upstream_4xx: Upstream4xx) -> Told {
        match status {
            200..=299 => Told::Delivered(200),
            _ => upstream::not_taken(status, upstream_4xx),
        }
    }

    fn counters(&self) -> Vec<Counter> {
        vec![Counter::Profile(PING_ANSWERED)]
    }
}

/// Why a notification is refused; the `String` is the `detail` of the 400 problem answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// The body or the payload breaks a rule other than the digest's.
    Invalid(String),
    /// The md5 is missing, is not 32 hex digits, or does not match the payload.
    Digest(String),
}

impl Rejected {
    /// The human-readable `detail`: names the field and the rule, never the expected digest.
    pub fn detail(&self) -> &str {
        match self {
            Rejected::Invalid(d) | Rejected::Digest(d) => d,
        }
    }
}

/// Validates a vendor notification of syntax `media` and normalises it into an [`Event`].
pub fn parse(media: Media, body: &[u8]) -> Result<Event, Rejected> {
    match media {
        Media::Json => json::parse(body),
        Media::Xml => xml::parse(body),
        Media::Form => form::parse(body),
    }
}

const KIND_PREFIX: &str = "webhookguard.vendor.";

/// True for the console's `ping` test event.
pub fn is_ping(event: &Event) -> bool {
    event.kind.strip_prefix(KIND_PREFIX) == Some("ping")
}

/// Longest `payload.type` accepted, in characters.
const MAX_TYPE_LEN: usize = 64;

fn invalid(detail: impl Into<String>) -> Rejected {
    Rejected::Invalid(detail.into())
}

/// Checks the sent md5 against the md5 of each basis: `exact` (the payload as sent), then
/// `json` (the payload as compact JSON, when it is JSON) and its Rails spelling. Returns
/// the sent md5 in lowercase.
fn verify_md5(sent: Option<&str>, exact: &[u8], json: Option<&str>) -> Result<String, Rejected> {
    let Some(sent) = sent else {
        return Err(Rejected::Digest("md5 is missing".into()));
    };
    if sent.len() != 32 || !sent.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Rejected::Digest("md5 must be 32 hexadecimal digits".into()));
    }
    let sent = sent.to_ascii_lowercase();
    let matches = |covered: &[u8]| {
        let digest: [u8; 16] = Md5::digest(covered).into();
        let mut actual = String::with_capacity(32);
        for byte in digest {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for nibble in [byte >> 4, byte & 0x0f] {
                if let Some(c) = HEX.get(usize::from(nibble)) {
                    actual.push(char::from(*c));
                }
            }
        }
        sent == actual
    };
    // Lazily: the exact text is what senders usually hash.
    let matched = matches(exact) || json.is_some_and(|json| matches(json.as_bytes()) || matches(compact::html_safe(json).as_bytes()));
    if !matched {
        return Err(Rejected::Digest("md5 does not match the payload".into()));
    }
    Ok(sent)
}

/// `payload.type`: 1 to 64 characters of `[A-Za-z0-9_.-]`.
fn check_type(kind: &str) -> Result<(), Rejected> {
    if kind.is_empty() {
        return Err(invalid("payload.type must not be empty"));
    }
    if kind.len() > MAX_TYPE_LEN {
        return Err(invalid(format!("payload.type must be at most {MAX_TYPE_LEN} characters")));
    }
    if !kind.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err(invalid("payload.type may contain only letters, digits, '_', '.' and '-'"));
    }
    Ok(())
}

/// A name or value quoted in a `detail`: at most 40 characters, control characters hidden.
fn quote(s: &str) -> String {
    crate::problem::echo(s, 40)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Data<'a> {
    payload_type: &'a str,
    md5: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch_timestamp: Option<i64>,
    payload: &'a RawValue,
}

/// The event of a notification whose type, digest and payload fields have been checked;
/// `payload` is its compact JSON.
fn build_event(payload_type: &str, md5: &str, epoch_timestamp: Option<i64>, payload: &RawValue) -> Result<Event, Rejected> {
    let time = match epoch_timestamp {
        None => None,
        Some(secs) => Some(crate::timestamp::rfc3339_from_unix(secs).ok_or_else(|| invalid("payload.epoch_timestamp is out of range"))?),
    };
    let data = serde_json::value::to_raw_value(&Data { payload_type, md5, epoch_timestamp, payload })
        .map_err(|_| invalid("payload could not be re-encoded as JSON"))?;
    Ok(Event {
        id: name_based_id(&format!("md5_envelope\n{payload_type}\n{md5}")),
        kind: format!("{KIND_PREFIX}{}", payload_type.to_ascii_lowercase()),
        subject: None,
        time,
        keys: RateKeys::default(),
        data: data.into(),
        nonconforming: Vec::new(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn the_documented_purchase_sample_keeps_its_id() {
        let sample = include_bytes!("../../../examples/requests/vendor-purchase.xml");
        let event = parse(Media::Xml, sample.trim_ascii_end()).unwrap();
        // The documented id (docs/request-flow.md, "Event ids"), as a literal: the namespace and the name are pinned.
        assert_eq!(event.id, "d6117064-58b6-3de0-b8fe-8b5637340679");
    }

    /// Lowercase hex md5, computed independently of `verify_md5`.
    pub(crate) fn md5_hex(bytes: &[u8]) -> String {
        Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Every rejection's detail is short and never echoes a digest.
    pub(crate) fn assert_short(r: &Rejected) {
        let d = r.detail();
        assert!(!d.is_empty());
        assert!(d.chars().count() <= 120, "detail too long: {d}");
    }

    /// A ping's `data` is the same whatever the envelope's syntax: the payload as compact
    /// JSON (XML integers as numbers), the md5 of the payload as sent.
    pub(crate) fn assert_ping_data(event: &Event, payload: &str) {
        let md5 = md5_hex(payload.as_bytes());
        let want = format!(r#"{{"payloadType":"ping","md5":"{md5}","epochTimestamp":1466526410,"payload":{{"type":"ping","epoch_timestamp":1466526410}}}}"#);
        assert_eq!(event.data.get(), want);
    }

    /// The detail of `parse`'s refusal of `body`, which must be a digest mismatch when
    /// `digest`, else an invalid document, and short.
    pub(crate) fn refusal_detail(parse: fn(&[u8]) -> Result<Event, Rejected>, body: &str, digest: bool) -> String {
        match parse(body.as_bytes()) {
            Err(r) if matches!(r, Rejected::Digest(_)) == digest => {
                assert_short(&r);
                r.detail().to_string()
            }
            other => panic!("expected a {} refusal of {body:.200}, got {other:?}", if digest { "digest" } else { "invalid" }),
        }
    }

    #[test]
    fn md5_rules() {
        let good = md5_hex(b"abc");
        assert_eq!(verify_md5(Some(&good), b"abc", None).unwrap(), good);
        assert_eq!(verify_md5(Some(&good.to_ascii_uppercase()), b"abc", None).unwrap(), good);
        assert_eq!(verify_md5(None, b"abc", None), Err(Rejected::Digest("md5 is missing".into())));
        assert_eq!(verify_md5(Some(&md5_hex(b"abd")), b"abc", Some("abc")), Err(Rejected::Digest("md5 does not match the payload".into())));
        // Any documented basis matches: the exact text, compact JSON, its Rails spelling.
        let json = r#"{"n":"<&>"}"#;
        let rails = r#"{"n":"\u003c\u0026\u003e"}"#;
        for basis in [&b"exact"[..], json.as_bytes(), rails.as_bytes()] {
            assert!(verify_md5(Some(&md5_hex(basis)), b"exact", Some(json)).is_ok(), "{basis:?}");
        }
        assert!(verify_md5(Some(&md5_hex(json.as_bytes())), b"exact", None).is_err());
        for bad in ["", "abc", &format!("{good}0"), &good.replace('0', "g")] {
            let r = verify_md5(Some(bad), b"abc", None).unwrap_err();
            assert!(matches!(r, Rejected::Digest(_)), "{bad}");
            assert!(!r.detail().contains(&good));
        }
    }

    #[test]
    fn a_digest_of_the_wrong_shape_is_told_so() {
        let good = md5_hex(b"abc");
        // Of the wrong length though hexadecimal, or of the right length though not.
        for bad in [&good[..31], &format!("{good}0"), &good.replace('0', "g")] {
            let shape = Rejected::Digest("md5 must be 32 hexadecimal digits".into());
            assert_eq!(verify_md5(Some(bad), b"abc", None), Err(shape), "{bad}");
        }
    }

    #[test]
    fn type_rules() {
        for ok in ["ping", "app.purchase", "SKU_purchase-2", &"a".repeat(64)] {
            assert!(check_type(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "ping\n", "é", "a/b", &"a".repeat(65)] {
            let r = check_type(bad).unwrap_err();
            assert!(matches!(&r, Rejected::Invalid(d) if d.contains("payload.type")), "{bad}");
        }
    }

    #[test]
    fn parse_dispatches_on_media() {
        let payload = r#"{"type":"ping"}"#;
        let md5 = md5_hex(payload.as_bytes());
        let json = format!(r#"{{"payload":{payload},"md5":"{md5}"}}"#);
        let ev = parse(Media::Json, json.as_bytes()).unwrap();
        assert_eq!(ev.kind, "webhookguard.vendor.ping");
        assert!(matches!(parse(Media::Xml, json.as_bytes()), Err(Rejected::Invalid(_))));
        assert!(matches!(parse(Media::Form, json.as_bytes()), Err(Rejected::Invalid(_))));
    }

    #[test]
    fn one_notification_gives_the_same_event_in_every_syntax() {
        // The sender hashes its payload's to_json and sends it in the syntax configured.
        let json = r#"{"type":"customer_purchase","epoch_timestamp":1700000000,"app_id":42,"sku":{"id":"gold","name":"Gold & <Co>"}}"#;
        let md5 = md5_hex(json.as_bytes());
        let pretty = "{\n  \"type\": \"customer_purchase\",\n  \"epoch_timestamp\": 1700000000,\n  \"app_id\": 42,\n  \"sku\": {\"id\": \"gold\", \"name\": \"Gold \\u0026 <Co>\"}\n}";
        let xml = "<type>customer_purchase</type><epoch_timestamp>1700000000</epoch_timestamp>\n<app_id>42</app_id><sku><id>gold</id><name>Gold &amp; &lt;Co&gt;</name></sku>";
        let form: String = pretty.bytes().map(|b| format!("%{b:02X}")).collect();
        let events = [
            parse(Media::Json, format!(r#"{{"payload": {pretty}, "md5": "{md5}"}}"#).as_bytes()).unwrap(),
            parse(Media::Xml, format!("<notification><payload>{xml}</payload><md5>{md5}</md5></notification>").as_bytes()).unwrap(),
            parse(Media::Form, format!("payload={form}&md5={md5}").as_bytes()).unwrap(),
        ];
        let want = format!(r#"{{"payloadType":"customer_purchase","md5":"{md5}","epochTimestamp":1700000000,"payload":{json}}}"#);
        for ev in &events {
            assert_eq!(ev.data.get(), want);
            assert_eq!((&ev.id, &ev.kind, &ev.time), (&events[0].id, &events[0].kind, &events[0].time));
        }
    }

    #[test]
    fn a_ping_is_answered_only_with_answer_ping_and_its_counter_is_declared() {
        let profile = |extra: &str| {
            let json = format!(r#"{{"endpoints":[{{"name":"store","path":"/store","profile":"md5_envelope","secret":{{"values":["k"]}}{extra}}}]}}"#);
            crate::config::Config::parse(json.as_bytes(), |_| None).map(|mut c| c.endpoints.remove(0).profile).unwrap()
        };
        let ping = parse(Media::Json, include_bytes!("../../../examples/requests/vendor-ping.json").trim_ascii_end()).unwrap();
        assert!(profile("").local_answer(&ping).is_none(), "forwarded by default");
        let answering = profile(r#","answer_ping":true"#);
        let answer = answering.local_answer(&ping).unwrap();
        assert_eq!(answer.status, 200);
        // Counters are defined at configure time: one missing from the list is never counted.
        assert_eq!(answering.counters(), [answer.counter]);
    }
}
