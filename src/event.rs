//! The normalised event every profile produces, and its CloudEvents 1.0 rendering.
//!
//! Event ids are name-based UUIDs (version 3, RFC 9562 §5.3: MD5 over a namespace and a
//! name), so any backend can recompute them and every retry of a notification carries the
//! same id.

use md5::{Digest, Md5};

use crate::nonconforming::{self, Finding};
use serde_json::value::RawValue;

/// Namespace of every webhook-guard event id (a fixed, random UUID).
pub const ID_NAMESPACE: [u8; 16] = [0x6f, 0x1c, 0x0e, 0x5a, 0x3b, 0x7d, 0x4e, 0x21, 0x9a, 0x52, 0xc4, 0x8d, 0x17, 0xe3, 0x0b, 0x96];

/// A validated notification, ready to forward.
#[derive(Debug, Clone)]
pub struct Event {
    /// Deterministic UUID (see [`name_based_id`]).
    pub id: String,
    /// CloudEvents `type`, a stable documented name.
    pub kind: String,
    /// CloudEvents `subject`: the resource the event is about, when there is one.
    pub subject: Option<String>,
    /// CloudEvents `time`, RFC 3339, when the notification carries one.
    pub time: Option<String>,
    /// Values a rate limit may be keyed on.
    pub keys: RateKeys,
    /// The CloudEvent's `data` member, already serialised.
    pub data: Json,
    /// Where the notification departs from the sender's documented table (empty when it
    /// conforms); the id does not depend on it.
    pub nonconforming: Vec<Finding>,
}

/// The text of one valid JSON value: read by serde_json, or written by [`Object`].
#[derive(Debug, Clone)]
pub struct Json(String);

impl Json {
    pub fn get(&self) -> &str {
        &self.0
    }
}

impl From<Box<RawValue>> for Json {
    fn from(raw: Box<RawValue>) -> Self {
        Json(Box::<str>::from(raw).into_string())
    }
}

/// A JSON object written member by member into one buffer: byte for byte what
/// serde_json's compact serialiser writes for a struct of these fields in this order,
/// without its escaping of every key and value byte by byte.
pub struct Object(String);

impl Object {
    /// An empty object; `capacity` bytes are reserved for its text.
    pub fn with_capacity(capacity: usize) -> Object {
        let mut out = String::with_capacity(capacity);
        out.push('{');
        Object(out)
    }

    /// Starts member `name`, written as it is: the members' names are plain literals.
    fn key(&mut self, name: &str) {
        self.0.push_str(if self.0.len() > 1 { ",\"" } else { "\"" });
        self.0.push_str(name);
        self.0.push_str("\":");
    }

    /// Member `name`: a string.
    pub fn string(&mut self, name: &str, value: &str) -> Result<(), serde_json::Error> {
        self.key(name);
        push_string(&mut self.0, value)
    }

    /// Member `name`: a JSON value as it is.
    pub fn json(&mut self, name: &str, value: &Json) {
        self.key(name);
        self.0.push_str(value.get());
    }

    /// Member `name`: a JSON value as serde_json read it.
    pub fn raw(&mut self, name: &str, value: &RawValue) {
        self.key(name);
        self.0.push_str(value.get());
    }

    /// Member `name`: an array of these values.
    pub fn array(&mut self, name: &str, values: &[Json]) {
        self.key(name);
        self.0.push('[');
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            self.0.push_str(value.get());
        }
        self.0.push(']');
    }

    pub fn end(mut self) -> Json {
        self.0.push('}');
        Json(self.0)
    }
}

/// Identifiers of the sender-side resource, used as rate-limit keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateKeys {
    pub application: Option<String>,
    pub subscription: Option<String>,
}

/// Longest sender event type carried into the event `type` (a header value too).
const MAX_TYPE_LEN: usize = 128;

/// Whether a sender's own event type (a body's `type`, a topic header) can go into the
/// event `type` and its header as is: 1-128 of `A-Z a-z 0-9 . _ - : /`.
pub fn usable_type(t: &str) -> bool {
    !t.is_empty() && t.len() <= MAX_TYPE_LEN && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/'))
}

/// UUID version 3 of `name` in the webhook-guard namespace, lowercase hyphenated.
pub fn name_based_id(name: &str) -> String {
    name_based_id_of(&[name])
}

/// [`name_based_id`] of the name made of `parts`, hashed one after the other rather
/// than first copied into one string.
pub fn name_based_id_of(parts: &[&str]) -> String {
    let mut hasher = Md5::new();
    hasher.update(ID_NAMESPACE);
    for part in parts {
        hasher.update(part.as_bytes());
    }
    let mut b: [u8; 16] = hasher.finalize().into();
    b[6] = (b[6] & 0x0f) | 0x30; // version 3
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    let mut out = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        push_hex(&mut out, *byte);
    }
    out
}

fn push_hex(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0f)]));
}

impl Event {
    /// The event as a structured-mode CloudEvent (`application/cloudevents+json`): written
    /// directly into one buffer of the right size, byte for byte what serde_json would
    /// write for these members in this order.
    pub fn to_cloudevent(&self, source: &str) -> Result<Vec<u8>, serde_json::Error> {
        self.to_cloudevent_with(source, None)
    }

    /// [`Event::to_cloudevent`] with the extension attribute `verified` (a boolean) when
    /// the endpoint confirms notifications with Azure Resource Manager.
    pub fn to_cloudevent_with(&self, source: &str, verified: Option<bool>) -> Result<Vec<u8>, serde_json::Error> {
        let data = self.data.get();
        let optional = |s: &Option<String>| s.as_deref().map_or(0, str::len);
        // 128 covers the member names and quotes; only escapes can need more.
        let values = source.len() + self.id.len() + self.kind.len() + data.len();
        let flags = nonconforming::flags(&self.nonconforming);
        let optionals = optional(&self.subject) + optional(&self.time) + optional(&flags);
        let mut out = String::with_capacity(128 + values + optionals);
        out.push_str("{\"specversion\":\"1.0\",\"id\":");
        push_string(&mut out, &self.id)?;
        out.push_str(",\"source\":");
        push_string(&mut out, source)?;
        out.push_str(",\"type\":");
        push_string(&mut out, &self.kind)?;
        if let Some(subject) = &self.subject {
            out.push_str(",\"subject\":");
            push_string(&mut out, subject)?;
        }
        if let Some(time) = &self.time {
            out.push_str(",\"time\":");
            push_string(&mut out, time)?;
        }
        if let Some(flags) = &flags {
            // The CloudEvents extension attribute: the same rules as the header.
            out.push_str(",\"nonconforming\":");
            push_string(&mut out, flags)?;
        }
        if let Some(verified) = verified {
            out.push_str(",\"verified\":");
            out.push_str(if verified { "true" } else { "false" });
        }
        out.push_str(",\"datacontenttype\":\"application/json\",\"data\":");
        out.push_str(data);
        out.push('}');
        Ok(out.into_bytes())
    }
}

/// `s` as a JSON string: copied when nothing in it needs an escape (the usual case),
/// else written by serde_json.
pub(crate) fn push_string(out: &mut String, s: &str) -> Result<(), serde_json::Error> {
    if needs_escape(s.as_bytes()) {
        out.push_str(&serde_json::to_string(s)?);
        return Ok(());
    }
    out.push('"');
    out.push_str(s);
    out.push('"');
    Ok(())
}

/// Whether `s` holds a control character, `"` or `\`: eight bytes per step (wasm has
/// 64-bit integers but no vectors unless built for SIMD), a third of the instructions of
/// a byte-by-byte test on the ids, types and subjects of every CloudEvent.
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // A byte below `n` (n <= 0x80) sets its high bit in `(x - n * ONES) & !x`; only the
    // presence of such a byte is exact, which is all that is asked.
    let below = |x: u64, n: u8| x.wrapping_sub(u64::from(n) * ONES) & !x & HIGH;
    let zero = |x: u64| below(x, 1);
    let chunks = s.chunks_exact(8);
    let tail = chunks.remainder();
    let found = chunks.fold(0, |found, chunk| {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word);
        found | below(x, 0x20) | zero(x ^ (u64::from(b'"') * ONES)) | zero(x ^ (u64::from(b'\\') * ONES))
    });
    found != 0 || tail.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_bounded_type_is_carried() {
        assert!(usable_type("Microsoft.Storage.BlobCreated") && usable_type("invoice.paid") && usable_type(&"a".repeat(128)));
        for t in ["", "a b", "a\r\nx: y", "ü", &"a".repeat(129)] {
            assert!(!usable_type(t), "{t:?}");
        }
    }

    #[test]
    fn id_is_a_version_3_uuid_and_deterministic() {
        let a = name_based_id("x");
        assert_eq!(a, name_based_id("x"));
        assert_ne!(a, name_based_id("y"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "3");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn id_matches_the_rfc_9562_algorithm() {
        // Recomputed independently: md5(namespace || "hello"), version and variant bits set.
        let mut h = Md5::new();
        h.update(ID_NAMESPACE);
        h.update(b"hello");
        let d: [u8; 16] = h.finalize().into();
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        let id = name_based_id("hello").replace('-', "");
        assert_eq!(&id[..12], &hex[..12]);
        assert_eq!(&id[13..16], &hex[13..16]);
        assert_eq!(&id[17..], &hex[17..]);
        // And pinned: a changed namespace byte changes every documented id.
        // (Python: uuid.uuid3(uuid.UUID("6f1c0e5a-3b7d-4e21-9a52-c48d17e30b96"), "hello")).
        assert_eq!(name_based_id("hello"), "f38b66eb-e18b-3718-a009-2d8251dedec7");
        assert_eq!(name_based_id_of(&["he", "", "llo"]), name_based_id("hello"));
    }

    #[test]
    fn needs_escape_finds_every_byte_that_needs_one_at_every_place() {
        let plain = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        for len in [1, 7, 8, 9, 16, 17] {
            for at in 0..len {
                for b in 0..=u8::MAX {
                    // The rest: bytes next to the tested ones in value (0x21, 0x7f, 0xff).
                    let mut s = [0x21, 0x5d, 0x7f, 0xff, 0x20, 0x23, 0x5b, 0x80].repeat(3);
                    s.truncate(len);
                    s[at] = b;
                    assert_eq!(needs_escape(&s), plain(b), "{b:#x} at {at} of {len}");
                }
            }
        }
        assert!(!needs_escape(b""));
    }

    #[test]
    fn object_is_byte_for_byte_what_serde_json_writes() {
        #[derive(serde::Serialize)]
        struct Reference<'a> {
            plain: &'a str,
            odd: &'a str,
            nested: &'a RawValue,
            list: Vec<&'a RawValue>,
            empty: Vec<&'a RawValue>,
            raw: &'a RawValue,
        }
        let odd = "q\"b\\s\u{1}\t\n\u{1f}\u{7f}é😀/";
        let raw = RawValue::from_string(r#"{"a": [1, "\u00e9"]}"#.into()).unwrap();
        let mut inner = Object::with_capacity(0);
        inner.string("k", odd).unwrap();
        let inner = inner.end();
        let mut out = Object::with_capacity(0);
        out.string("plain", "v").unwrap();
        out.string("odd", odd).unwrap();
        out.json("nested", &inner);
        out.array("list", &[inner.clone(), Object::with_capacity(0).end()]);
        out.array("empty", &[]);
        out.raw("raw", &raw);
        let nested = RawValue::from_string(inner.get().into()).unwrap();
        let empty = RawValue::from_string("{}".into()).unwrap();
        let want = serde_json::to_string(&Reference { plain: "v", odd, nested: &nested, list: vec![&nested, &empty], empty: vec![], raw: &raw }).unwrap();
        assert_eq!(out.end().get(), want);
    }

    #[test]
    fn cloudevent_has_every_required_attribute() {
        let ev = Event {
            id: "i".into(),
            kind: "t".into(),
            subject: Some("s".into()),
            time: None,
            keys: RateKeys::default(),
            data: RawValue::from_string(r#"{"a":1}"#.into()).unwrap().into(),
            nonconforming: Vec::new(),
        };
        let v: serde_json::Value = serde_json::from_slice(&ev.to_cloudevent("/src").unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"specversion":"1.0","id":"i","source":"/src","type":"t",
                "subject":"s","datacontenttype":"application/json","data":{"a":1}})
        );
    }

    #[test]
    fn cloudevent_carries_the_verified_attribute_when_asked() {
        let ev = Event {
            id: "i".into(),
            kind: "t".into(),
            subject: None,
            time: None,
            keys: RateKeys::default(),
            data: RawValue::from_string("{}".into()).unwrap().into(),
            nonconforming: Vec::new(),
        };
        for verified in [true, false] {
            let v: serde_json::Value = serde_json::from_slice(&ev.to_cloudevent_with("/s", Some(verified)).unwrap()).unwrap();
            assert_eq!(v["verified"], verified);
        }
        assert_eq!(ev.to_cloudevent_with("/s", None).unwrap(), ev.to_cloudevent("/s").unwrap());
    }

    #[test]
    fn cloudevent_is_byte_for_byte_what_serde_json_writes() {
        #[derive(serde::Serialize)]
        struct Reference<'a> {
            specversion: &'static str,
            id: &'a str,
            source: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            subject: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            time: Option<&'a str>,
            datacontenttype: &'static str,
            data: &'a RawValue,
        }
        let odd = "q\"b\\s\u{1}\u{8}\t\n\u{c}\r\u{1f}\u{7f}é😀/";
        let cases = [(Some(odd), Some("2019-08-14T19:20:08Z")), (None, None), (None, Some(odd))];
        for (subject, time) in cases {
            for source in ["/webhook-guard/azure", odd, ""] {
                let ev = Event {
                    id: "6f1c0e5a-3b7d-3e21-9a52-c48d17e30b96".into(),
                    kind: format!("webhookguard.{odd}"),
                    subject: subject.map(String::from),
                    time: time.map(String::from),
                    keys: RateKeys::default(),
                    data: RawValue::from_string(r#"{"a": [1, "\u00e9"]}"#.into()).unwrap().into(),
                    nonconforming: Vec::new(),
                };
                let want = serde_json::to_vec(&Reference {
                    specversion: "1.0",
                    id: &ev.id,
                    source,
                    kind: &ev.kind,
                    subject,
                    time,
                    datacontenttype: "application/json",
                    data: &RawValue::from_string(ev.data.get().into()).unwrap(),
                })
                .unwrap();
                assert_eq!(ev.to_cloudevent(source).unwrap(), want);
            }
        }
    }
}
