//! Vendor webhooks with an md5 payload digest (app-store style purchase, cancellation and
//! `ping` notifications; see `shared/spec/md5-signed-vendor-webhooks.md`).
//!
//! Every notification is an envelope of two parameters, `payload` and `md5`, sent as JSON,
//! XML or a form. The vendor does not say which bytes its md5 covers, so this module fixes
//! the rule, per syntax, as **the payload exactly as it appears on the wire**:
//!
//! | syntax | envelope | the md5 covers |
//! |---|---|---|
//! | JSON | `{"payload": {...}, "md5": "<hex>"}` | the text of the `payload` member's value, from its `{` to its `}` inclusive, byte for byte (whitespace inside kept, whitespace around it excluded) |
//! | XML | `<notification><payload>...</payload><md5>hex</md5></notification>` | the bytes between `<payload>` and `</payload>`, byte for byte (no unescaping, no line-end normalisation) |
//! | form | `payload=...&md5=...` | the percent-decoded value of the `payload` field (`+` read as a space), which must be a JSON object's text |
//!
//! The md5 is 32 hexadecimal digits in either case. MD5 is an integrity check, not
//! authentication: anyone can compute it, so these routes still need a secret.
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
//! `{"payloadType", "md5", "format", "epochTimestamp"?, "payload"}`.

mod form;
mod json;
mod xml;

use md5::{Digest, Md5};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::event::{name_based_id, Event, RateKeys};
use crate::media::Media;

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

/// The wire syntax a notification came in, as named in `data.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Xml,
    Form,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Xml => "xml",
            Format::Form => "form",
        }
    }
}

fn invalid(detail: impl Into<String>) -> Rejected {
    Rejected::Invalid(detail.into())
}

/// Checks the sent md5 against the md5 of `covered`; returns the sent md5 in lowercase.
fn verify_md5(sent: Option<&str>, covered: &[u8]) -> Result<String, Rejected> {
    let Some(sent) = sent else {
        return Err(Rejected::Digest("md5 is missing".into()));
    };
    if sent.len() != 32 || !sent.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Rejected::Digest("md5 must be 32 hexadecimal digits".into()));
    }
    let sent = sent.to_ascii_lowercase();
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
    if sent != actual {
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
        return Err(invalid(format!(
            "payload.type must be at most {MAX_TYPE_LEN} characters"
        )));
    }
    if !kind
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(invalid(
            "payload.type may contain only letters, digits, '_', '.' and '-'",
        ));
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
    format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch_timestamp: Option<i64>,
    payload: &'a RawValue,
}

/// The event of a notification whose type, digest and payload fields have been checked.
fn build_event(
    format: Format,
    payload_type: &str,
    md5: &str,
    epoch_timestamp: Option<i64>,
    payload: &RawValue,
) -> Result<Event, Rejected> {
    let time = match epoch_timestamp {
        None => None,
        Some(secs) => Some(
            crate::timestamp::rfc3339_from_unix(secs)
                .ok_or_else(|| invalid("payload.epoch_timestamp is out of range"))?,
        ),
    };
    let data = serde_json::value::to_raw_value(&Data {
        payload_type,
        md5,
        format: format.name(),
        epoch_timestamp,
        payload,
    })
    .map_err(|_| invalid("payload could not be re-encoded as JSON"))?;
    Ok(Event {
        id: name_based_id(&format!("md5_envelope\n{payload_type}\n{md5}")),
        kind: format!("{KIND_PREFIX}{}", payload_type.to_ascii_lowercase()),
        subject: None,
        time,
        keys: RateKeys::default(),
        data,
        nonconforming: Vec::new(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Lowercase hex md5, computed independently of `verify_md5`.
    pub(crate) fn md5_hex(bytes: &[u8]) -> String {
        Md5::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Every rejection's detail is short and never echoes a digest.
    pub(crate) fn assert_short(r: &Rejected) {
        let d = r.detail();
        assert!(!d.is_empty());
        assert!(d.chars().count() <= 120, "detail too long: {d}");
    }

    #[test]
    fn md5_rules() {
        let good = md5_hex(b"abc");
        assert_eq!(verify_md5(Some(&good), b"abc").unwrap(), good);
        assert_eq!(
            verify_md5(Some(&good.to_ascii_uppercase()), b"abc").unwrap(),
            good
        );
        assert_eq!(
            verify_md5(None, b"abc"),
            Err(Rejected::Digest("md5 is missing".into()))
        );
        assert_eq!(
            verify_md5(Some(&md5_hex(b"abd")), b"abc"),
            Err(Rejected::Digest("md5 does not match the payload".into()))
        );
        for bad in ["", "abc", &format!("{good}0"), &good.replace('0', "g")] {
            let r = verify_md5(Some(bad), b"abc").unwrap_err();
            assert!(matches!(r, Rejected::Digest(_)), "{bad}");
            assert!(!r.detail().contains(&good));
        }
    }

    #[test]
    fn type_rules() {
        for ok in ["ping", "app.purchase", "SKU_purchase-2", &"a".repeat(64)] {
            assert!(check_type(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "ping\n", "é", "a/b", &"a".repeat(65)] {
            let r = check_type(bad).unwrap_err();
            assert!(
                matches!(&r, Rejected::Invalid(d) if d.contains("payload.type")),
                "{bad}"
            );
        }
    }

    #[test]
    fn parse_dispatches_on_media() {
        let payload = r#"{"type":"ping"}"#;
        let md5 = md5_hex(payload.as_bytes());
        let json = format!(r#"{{"payload":{payload},"md5":"{md5}"}}"#);
        let ev = parse(Media::Json, json.as_bytes()).unwrap();
        assert_eq!(ev.kind, "webhookguard.vendor.ping");
        assert!(matches!(
            parse(Media::Xml, json.as_bytes()),
            Err(Rejected::Invalid(_))
        ));
        assert!(matches!(
            parse(Media::Form, json.as_bytes()),
            Err(Rejected::Invalid(_))
        ));
    }
}
