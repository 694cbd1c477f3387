//! The JSON envelope `{"payload": {...}, "md5": "<hex>"}`, and the JSON payload rules the
//! form envelope shares.
//!
//! Members are read as raw JSON and typed one by one, rather than into a
//! `serde_json::Value` tree: the checks need two members, and a `Value` (with its map,
//! its serialiser and float formatting) would roughly double the parser code in the module.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Number;

use super::compact::compact;
use super::{build_event, check_type, invalid, verify_md5, Rejected};
use crate::event::Event;
use crate::strict_json;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(borrow, default)]
    md5: Option<&'a RawValue>,
}

/// The payload members the checks read; `Some` even for a JSON `null`.
#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(rename = "type", borrow, default, deserialize_with = "present")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    epoch_timestamp: Option<&'a RawValue>,
}

/// A member that is there, whatever its value (`Option` alone reads `null` as absent).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// A JSON string's decoded text; `None` for any other value.
fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str(raw.get()).ok()
}

pub(super) fn parse(body: &[u8]) -> Result<Event, Rejected> {
    let text = std::str::from_utf8(body).map_err(|_| invalid("body is not valid UTF-8"))?;
    strict_json::check(text).map_err(|e| invalid(describe("body", &e)))?;
    // A derived struct would also accept `[payload, md5]`: insist on an object.
    if !text.trim_start().starts_with('{') {
        return Err(invalid("body must be a JSON object with members payload and md5"));
    }
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|_| invalid("body must be a JSON object with members payload and md5"))?;
    let payload = envelope.payload.ok_or_else(|| invalid("payload is missing (or null)"))?;
    let md5 = match envelope.md5 {
        None => None,
        Some(raw) => Some(string(raw).ok_or_else(|| Rejected::Digest("md5 must be a string of 32 hexadecimal digits".into()))?),
    };
    let json = compact(payload.get());
    let md5 = verify_md5(md5.as_deref(), payload.get().as_bytes(), json.as_deref())?;
    finish(&md5, json)
}

/// Steps 3 and on for a payload given as JSON text (JSON and form envelopes), as compact
/// JSON: it must be an object with a valid `type` and an integer `epoch_timestamp` when
/// present. The text has passed [`strict_json::check`], so it is one well-formed value.
pub(super) fn finish(md5: &str, json: Option<String>) -> Result<Event, Rejected> {
    let payload = json.and_then(|json| RawValue::from_string(json).ok());
    let Some(payload) = payload else {
        return Err(invalid("payload is not valid JSON"));
    };
    let payload = &*payload;
    // A derived struct would also accept an array: insist on an object.
    let fields = match payload.get().starts_with('{') {
        true => serde_json::from_str::<Payload<'_>>(payload.get()).ok(),
        false => None,
    };
    let Some(fields) = fields else {
        return Err(invalid("payload must be a JSON object"));
    };
    // The CloudEvent nests the payload two levels down: keep it readable by any backend.
    if strict_json::too_deep(payload.get(), MAX_PAYLOAD_DEPTH) {
        return Err(invalid(format!("payload nests deeper than {MAX_PAYLOAD_DEPTH} levels")));
    }
    let kind = match fields.kind {
        None => return Err(invalid("payload.type is missing")),
        Some(raw) => string(raw).ok_or_else(|| invalid("payload.type must be a string"))?,
    };
    check_type(&kind)?;
    let epoch = match fields.epoch_timestamp {
        None => None,
        Some(raw) => match serde_json::from_str::<Number>(raw.get()) {
            Ok(n) if n.is_i64() => n.as_i64(),
            Ok(n) if n.is_u64() => return Err(invalid("payload.epoch_timestamp is out of range")),
            _ => return Err(invalid("payload.epoch_timestamp must be an integer number of Unix seconds")),
        },
    };
    build_event(&kind, md5, epoch, payload)
}

/// Deepest payload accepted, as for Azure bodies.
const MAX_PAYLOAD_DEPTH: usize = 64;

/// A `detail` for a JSON error in `what` (`body` or `payload`): serde_json's syntax
/// messages are short fixed texts with a position, and never quote the input.
pub(super) fn describe(what: &str, e: &serde_json::Error) -> String {
    if e.is_eof() {
        format!("{what} is truncated JSON")
    } else if e.is_data() {
        // Only `Strict` raises data errors here: "duplicate key ..." with a position.
        format!("{what} has a {e}")
    } else {
        format!("{what} is not valid JSON: {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_ping_data, md5_hex, refusal_detail};
    use super::*;
    use serde_json::Value;

    fn envelope(payload: &str, md5: &str) -> String {
        format!(r#"{{"payload": {payload}, "md5": "{md5}"}}"#)
    }

    fn signed(payload: &str) -> String {
        envelope(payload, &md5_hex(payload.as_bytes()))
    }

    fn invalid_detail(body: &str) -> String {
        refusal_detail(parse, body, false)
    }

    fn digest_detail(body: &str) -> String {
        refusal_detail(parse, body, true)
    }

    const PING: &str = r#"{ "type": "ping", "epoch_timestamp": 1466526410 }"#;

    #[test]
    fn deep_payloads_are_invalid() {
        let nested = |depth: usize| {
            let inner = depth - 1;
            format!(r#"{{"type":"ping","a":{}{}}}"#, "[".repeat(inner), "]".repeat(inner))
        };
        let ev = parse(signed(&nested(64)).as_bytes()).unwrap();
        serde_json::from_slice::<Value>(&ev.to_cloudevent("/x").unwrap()).unwrap();
        assert_eq!(invalid_detail(&signed(&nested(65))), "payload nests deeper than 64 levels");
        invalid_detail(&signed(&nested(126)));
    }

    #[test]
    fn spec_ping_is_accepted() {
        let md5 = md5_hex(PING.as_bytes());
        let ev = parse(signed(PING).as_bytes()).unwrap();
        assert_eq!(ev.kind, "webhookguard.vendor.ping");
        assert_eq!(ev.id, crate::event::name_based_id(&format!("md5_envelope\nping\n{md5}")));
        assert_eq!(ev.subject, None);
        assert_eq!(ev.time, crate::timestamp::rfc3339_from_unix(1_466_526_410));
        assert!(ev.time.is_some());
        assert_eq!(ev.keys, crate::event::RateKeys::default());
    }

    #[test]
    fn exact_data_output() {
        assert_ping_data(&parse(signed(PING).as_bytes()).unwrap(), PING);
    }

    #[test]
    fn purchase_is_accepted() {
        let p = r#"{"type":"App.Purchase","app_id":42,"sku":{"id":"gold","qty":3},"tags":["a","b"]}"#;
        let ev = parse(signed(p).as_bytes()).unwrap();
        assert_eq!(ev.kind, "webhookguard.vendor.app.purchase");
        assert_eq!(ev.time, None);
        let data: Value = serde_json::from_str(ev.data.get()).unwrap();
        assert_eq!(data["payloadType"], "App.Purchase");
        assert_eq!(data["payload"]["sku"]["qty"], 3);
        assert!(data.get("epochTimestamp").is_none());
    }

    #[test]
    fn uppercase_md5_is_accepted_and_lowercased() {
        let md5 = md5_hex(PING.as_bytes());
        let ev = parse(envelope(PING, &md5.to_ascii_uppercase()).as_bytes()).unwrap();
        let lower = parse(signed(PING).as_bytes()).unwrap();
        assert_eq!(ev.id, lower.id);
        let data: Value = serde_json::from_str(ev.data.get()).unwrap();
        assert_eq!(data["md5"], md5.as_str());
    }

    #[test]
    fn wrong_md5_is_a_digest_rejection_without_the_expected_value() {
        let body = envelope(PING, &md5_hex(b"something else"));
        let d = digest_detail(&body);
        assert_eq!(d, "md5 does not match the payload");
        assert!(!d.contains(&md5_hex(PING.as_bytes())));
    }

    #[test]
    fn missing_or_malformed_md5_is_a_digest_rejection() {
        assert_eq!(digest_detail(&format!(r#"{{"payload":{PING}}}"#)), "md5 is missing");
        assert_eq!(digest_detail(&format!(r#"{{"payload":{PING},"md5":null}}"#)), "md5 is missing");
        digest_detail(&envelope(PING, "abc"));
        digest_detail(&envelope(PING, &"z".repeat(32)));
        digest_detail(&format!(r#"{{"payload":{PING},"md5":12}}"#));
    }

    #[test]
    fn digest_covers_the_payload_as_sent_or_as_compact_json() {
        let p = "{\n  \"type\" :\"ping\",\t\"epoch_timestamp\":  1466526410 ,\"x\":\"\\u00e9\"\n}";
        let compact = r#"{"type":"ping","epoch_timestamp":1466526410,"x":"é"}"#;
        for basis in [p, compact] {
            let ev = parse(envelope(p, &md5_hex(basis.as_bytes())).as_bytes()).unwrap();
            assert!(ev.data.get().ends_with(&format!(r#""payload":{compact}}}"#)), "{}", ev.data.get());
        }
        // Another re-serialisation (serde_json's Value sorts the keys) is no basis.
        let sorted = serde_json::to_string(&serde_json::from_str::<Value>(p).unwrap()).unwrap();
        assert_ne!(sorted, compact);
        digest_detail(&envelope(p, &md5_hex(sorted.as_bytes())));
        // Whitespace around the value is not covered.
        let body = format!("{{\"md5\":\"{}\",\"payload\":  \n{p}\n  }}", md5_hex(p.as_bytes()));
        parse(body.as_bytes()).unwrap();
    }

    #[test]
    fn escaped_names_and_strings_are_read_decoded() {
        let p = r#"{"\u0074ype":"p\u0069ng","epoch_\u0074imestamp":1466526410}"#;
        let md5 = md5_hex(p.as_bytes()).replacen('0', r"\u0030", 1);
        assert!(md5.contains(r"\u0030"), "{md5}");
        let ev = parse(envelope(p, &md5).as_bytes()).unwrap();
        assert_eq!(ev.kind, "webhookguard.vendor.ping");
        assert_eq!(ev.time, crate::timestamp::rfc3339_from_unix(1_466_526_410));
        let data: Value = serde_json::from_str(ev.data.get()).unwrap();
        assert_eq!(data["md5"], md5_hex(p.as_bytes()));
    }

    #[test]
    fn extra_top_level_members_are_allowed() {
        let body = format!(r#"{{"id":7,"payload":{PING},"note":{{"a":[1]}},"md5":"{}"}}"#, md5_hex(PING.as_bytes()));
        parse(body.as_bytes()).unwrap();
    }

    #[test]
    fn payload_must_be_an_object() {
        for p in [r#""ping""#, "[1,2]", "42", "true"] {
            assert_eq!(invalid_detail(&signed(p)), "payload must be a JSON object");
        }
        assert!(invalid_detail(&format!(r#"{{"payload":null,"md5":"{}"}}"#, md5_hex(b"null"))).starts_with("payload is missing"));
        assert!(invalid_detail(r#"{"md5":"00000000000000000000000000000000"}"#).starts_with("payload is missing"));
    }

    #[test]
    fn type_must_be_a_valid_string() {
        assert_eq!(invalid_detail(&signed(r#"{"epoch_timestamp":1}"#)), "payload.type is missing");
        for p in [r#"{"type":1}"#, r#"{"type":null}"#, r#"{"type":{"a":"b"}}"#] {
            assert_eq!(invalid_detail(&signed(p)), "payload.type must be a string");
        }
        for p in [r#"{"type":""}"#, r#"{"type":"a b"}"#, &format!(r#"{{"type":"{}"}}"#, "x".repeat(65))] {
            assert!(invalid_detail(&signed(p)).starts_with("payload.type"));
        }
    }

    #[test]
    fn epoch_timestamp_must_be_an_integer() {
        for p in [
            r#"{"type":"ping","epoch_timestamp":1466526410.0}"#,
            r#"{"type":"ping","epoch_timestamp":1.4e9}"#,
            r#"{"type":"ping","epoch_timestamp":"1466526410"}"#,
            r#"{"type":"ping","epoch_timestamp":null}"#,
            r#"{"type":"ping","epoch_timestamp":18446744073709551615}"#,
            r#"{"type":"ping","epoch_timestamp":-99999999999999}"#,
        ] {
            assert!(invalid_detail(&signed(p)).starts_with("payload.epoch_timestamp"), "{p}");
        }
        let ev = parse(signed(r#"{"type":"ping","epoch_timestamp":0}"#).as_bytes()).unwrap();
        assert_eq!(ev.time, crate::timestamp::rfc3339_from_unix(0));
    }

    #[test]
    fn duplicate_keys_are_invalid_at_any_depth() {
        let d = invalid_detail(&format!(r#"{{"payload":{PING},"payload":{PING},"md5":"x"}}"#));
        assert!(d.contains("duplicate key \"payload\""), "{d}");
        let p = r#"{"type":"ping","type":"purchase"}"#;
        assert!(invalid_detail(&signed(p)).contains("duplicate key \"type\""));
        let p = r#"{"type":"ping","a":[{"b":1,"b":2}]}"#;
        assert!(invalid_detail(&signed(p)).contains("duplicate key \"b\""));
        let d = invalid_detail(&format!(r#"{{"x":1,"x":2,"payload":{PING},"md5":"{}"}}"#, md5_hex(PING.as_bytes())));
        assert!(d.contains("duplicate key"));
        // Escaped keys are compared decoded.
        let p = r#"{"type":"ping","\u0074ype":"x"}"#;
        assert!(invalid_detail(&signed(p)).contains("duplicate key"));
    }

    #[test]
    fn malformed_bodies_are_invalid_with_short_details() {
        let long = format!(r#"{{"payload":{{"type":"{}"#, "x".repeat(500));
        for body in [
            "",
            "{",
            "not json",
            r#"{"payload":{"type":"ping"}"#,
            r#"{"payload":{"type":"ping"}} trailing"#,
            r#"[{"type":"ping"},"00000000000000000000000000000000"]"#,
            "\"just a string\"",
            &long,
            &"[".repeat(10_000),
        ] {
            invalid_detail(body);
        }
        assert!(matches!(parse(b"{\"payload\":\"\xff\"}"), Err(Rejected::Invalid(_))));
    }
}
