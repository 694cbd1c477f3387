//! Checks shared by the fuzz targets. Everything here calls only the public, pure API
//! of `webhook_guard`; the assertions are the properties a target must never break.

use md5::{Digest, Md5};
use serde_json::{Map, Value};
use webhook_guard::event::{name_based_id, Event};
use webhook_guard::media::Media;
use webhook_guard::profile::md5_envelope::{self as vendor, Rejected};
use webhook_guard::signing::to_hex;

/// The CloudEvent `source` every target renders with.
pub const SOURCE: &str = "/webhook-guard/x";

/// Whether `id` is a lowercase hyphenated version-3, RFC 9562-variant UUID.
pub fn is_uuid_v3(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
        && b[14] == b'3'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
}

fn string<'a>(obj: &'a Map<String, Value>, key: &str) -> &'a str {
    match obj.get(key) {
        Some(Value::String(s)) => s,
        other => panic!("CloudEvent member {key} is not a string: {other:?}"),
    }
}

/// Renders `ev` as a structured CloudEvent, parses it back with serde_json (default
/// recursion limit, as a backend would) and checks every required attribute.
/// Returns the `data` object.
pub fn check_cloudevent(ev: &Event) -> Map<String, Value> {
    let bytes = ev.to_cloudevent(SOURCE).expect("to_cloudevent failed on an accepted event");
    let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!("the CloudEvent does not parse back with serde_json: {e}\n{}", String::from_utf8_lossy(&bytes))
    });
    let Value::Object(ce) = v else {
        panic!("the CloudEvent is not a JSON object")
    };
    assert_eq!(string(&ce, "specversion"), "1.0");
    let id = string(&ce, "id");
    assert_eq!(id.len(), 36, "id {id:?} is not 36 characters");
    assert!(is_uuid_v3(id), "id {id:?} is not a v3 UUID");
    assert_eq!(id, ev.id);
    let kind = string(&ce, "type");
    assert!(!kind.is_empty());
    assert_eq!(kind, ev.kind);
    assert_eq!(string(&ce, "source"), SOURCE);
    assert_eq!(string(&ce, "datacontenttype"), "application/json");
    assert_eq!(ce.get("subject").and_then(Value::as_str), ev.subject.as_deref());
    assert_eq!(ce.get("time").and_then(Value::as_str), ev.time.as_deref());
    if let Some(t) = &ev.time {
        assert!(t.ends_with('Z'), "time {t:?} is not UTC");
    }
    match ce.get("data") {
        Some(Value::Object(data)) => data.clone(),
        other => panic!("CloudEvent data is not an object: {other:?}"),
    }
}

/// Lowercase hex md5 of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// `s` without JSON whitespace at either end.
fn trim_json_ws(s: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = s.iter().position(|b| !ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !ws(b)).map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// A body of syntax `media` whose md5 is computed correctly over `payload` by the
/// documented rule, and whether a `Digest` rejection of it would be a bug.
pub fn signed_envelope(media: Media, payload: &[u8]) -> (Vec<u8>, String, bool) {
    match media {
        Media::Json => {
            let md5 = md5_hex(trim_json_ws(payload));
            let mut body = b"{\"payload\":".to_vec();
            body.extend_from_slice(payload);
            body.extend_from_slice(format!(",\"md5\":\"{md5}\"}}").as_bytes());
            // Only a single JSON value is the payload member's whole text.
            let single = serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok();
            (body, md5, single)
        }
        Media::Xml => {
            let md5 = md5_hex(payload);
            let mut body = b"<notification><payload>".to_vec();
            body.extend_from_slice(payload);
            body.extend_from_slice(format!("</payload><md5>{md5}</md5></notification>").as_bytes());
            // A payload that cannot close <payload> or touch <md5> is covered exactly.
            let text = std::str::from_utf8(payload).ok();
            let exact = text.is_some_and(|t| !t.contains("payload") && !t.contains("md5"));
            (body, md5, exact)
        }
        Media::Form => {
            let md5 = md5_hex(payload);
            let mut body = b"payload=".to_vec();
            for b in payload {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    body.push(*b);
                } else {
                    body.extend_from_slice(format!("%{b:02X}").as_bytes());
                }
            }
            body.extend_from_slice(format!("&md5={md5}").as_bytes());
            (body, md5, std::str::from_utf8(payload).is_ok())
        }
    }
}

/// The whole `vendor_*` target. An input starting with a NUL byte is a payload: the rest
/// is wrapped in an envelope with a correct md5 (so the fuzzer gets past the digest); any
/// other input is the body as is.
pub fn fuzz_vendor(media: Media, data: &[u8]) {
    let (body, signed) = match data.split_first() {
        Some((0, payload)) => {
            let (body, md5, exact) = signed_envelope(media, payload);
            (body, Some((md5, exact)))
        }
        _ => (data.to_vec(), None),
    };
    let result = vendor::parse(media, &body);
    match &result {
        Ok(ev) => check_vendor_event(ev, signed.as_ref().map(|(m, _)| m.as_str())),
        Err(r) => {
            let d = r.detail();
            assert!(!d.is_empty(), "empty detail");
            assert!(d.chars().count() <= 120, "detail longer than 120 characters: {d}");
            if let Some((md5, exact)) = &signed {
                assert!(!d.contains(md5.as_str()), "detail echoes the digest: {d}");
                if *exact {
                    assert!(
                        !matches!(r, Rejected::Digest(_)),
                        "a correctly signed envelope was rejected as Digest: {d}\nbody: {:?}",
                        String::from_utf8_lossy(&body)
                    );
                }
            }
        }
    }
    // Determinism: the same bytes get the same verdict and the same event.
    let again = vendor::parse(media, &body);
    match (&result, &again) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.id, b.id);
            assert_eq!(a.data.get(), b.data.get());
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("vendor::parse is not deterministic"),
    }
}

fn check_vendor_event(ev: &Event, signed_md5: Option<&str>) {
    let data = check_cloudevent(ev);
    let payload_type = match data.get("payloadType") {
        Some(Value::String(s)) => s.as_str(),
        other => panic!("data.payloadType is not a string: {other:?}"),
    };
    let md5 = match data.get("md5") {
        Some(Value::String(s)) => s.as_str(),
        other => panic!("data.md5 is not a string: {other:?}"),
    };
    assert!(
        md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "data.md5 {md5:?} is not 32 lowercase hex digits"
    );
    if let Some(expected) = signed_md5 {
        assert_eq!(md5, expected);
    }
    assert!(
        !payload_type.is_empty()
            && payload_type.len() <= 64
            && payload_type.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')),
        "payloadType {payload_type:?} breaks the documented rule"
    );
    assert_eq!(ev.id, name_based_id(&format!("md5_envelope\n{payload_type}\n{md5}")));
    assert_eq!(ev.kind, format!("webhookguard.vendor.{}", payload_type.to_ascii_lowercase()));
    assert_eq!(ev.subject, None);
    let Some(Value::Object(payload)) = data.get("payload") else {
        panic!("data.payload is not an object")
    };
    assert_eq!(payload.get("type").and_then(Value::as_str), Some(payload_type));
    match data.get("epochTimestamp") {
        None => assert_eq!(ev.time, None),
        Some(Value::Number(n)) => {
            let secs = n.as_i64().expect("epochTimestamp is not an i64");
            let time = webhook_guard::timestamp::rfc3339_from_unix(secs);
            assert!(time.is_some());
            assert_eq!(ev.time, time);
        }
        Some(other) => panic!("data.epochTimestamp is not a number: {other:?}"),
    }
}

/// The properties of a `<prefix><64 hex digits>` signature header parser (GitHub's
/// `sha256=`, Slack's `v0=`) over any `data`: never panics; on Ok, the header is the
/// prefix and the hex of the 32 bytes returned (written back in lowercase they parse the
/// same), and `verify` accepts them exactly when they are `sign`'s genuine signature of
/// `data` (used as the signed body). Non-UTF-8 inputs are skipped.
pub fn fuzz_hex_signature(
    data: &[u8],
    prefix: &str,
    parse: fn(&str) -> Result<[u8; 32], &'static str>,
    sign: impl Fn(&[u8]) -> String,
    verify: impl Fn(&[u8], &[u8; 32]) -> bool,
) {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(signature) = parse(header) else {
        return;
    };
    assert!(header.len() == prefix.len() + 64 && header.starts_with(prefix), "{header:?}");
    assert_eq!(to_hex(&signature), header[prefix.len()..].to_ascii_lowercase());
    assert_eq!(parse(&format!("{prefix}{}", to_hex(&signature))).unwrap(), signature);
    let genuine = parse(&sign(data)).unwrap();
    assert!(verify(data, &genuine));
    assert_eq!(verify(data, &signature), signature == genuine);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_envelopes_are_accepted() {
        let ping = br#"{"type":"ping","epoch_timestamp":1466526410}"#;
        for media in [Media::Json, Media::Form] {
            let (body, _, exact) = signed_envelope(media, ping);
            assert!(exact);
            vendor::parse(media, &body).unwrap();
        }
        let (body, _, exact) =
            signed_envelope(Media::Xml, b"<type>ping</type><epoch_timestamp>1</epoch_timestamp>");
        assert!(exact);
        vendor::parse(Media::Xml, &body).unwrap();
    }
}

#[cfg(test)]
mod seeds {
    use super::*;
    use std::path::Path;

    fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())
            })
            .collect();
        out.sort();
        out
    }

    /// Every seed but the deliberately broken ones is accepted, so the targets start on
    /// the accepting path.
    #[test]
    fn valid_seeds_are_accepted() {
        for (target, media) in [("vendor_json", Media::Json), ("vendor_xml", Media::Xml), ("vendor_form", Media::Form)] {
            for (name, data) in seeds(target) {
                let body = match data.split_first() {
                    Some((0, p)) => signed_envelope(media, p).0,
                    _ => data.clone(),
                };
                let ok = vendor::parse(media, &body).is_ok();
                let broken = ["wrong", "malformed", "placeholder"].iter().any(|w| name.contains(w));
                assert_eq!(ok, !broken, "{target}/{name}: {:?}", vendor::parse(media, &body));
                fuzz_vendor(media, &data);
            }
        }
        for (name, data) in seeds("azure") {
            let ev = webhook_guard::profile::azure_managed_app::notification::validate(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
            check_cloudevent(&ev);
        }
        for (name, data) in seeds("config") {
            webhook_guard::config::Config::parse(&data, |_| Some("x".into()))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
