//! The form envelope (`application/x-www-form-urlencoded`): fields `payload` and `md5`.
//!
//! Decoding is strict (`crate::form`). `payload` and `md5` must each appear exactly once;
//! other fields are ignored. The decoded `payload` must be the text of a JSON object, and
//! the md5 covers that decoded text exactly (surrounding whitespace included).

use super::compact::compact;
use super::json::{describe, finish};
use super::{invalid, verify_md5, Rejected};
use crate::event::Event;

pub(super) fn parse(body: &[u8]) -> Result<Event, Rejected> {
    let fields = crate::form::fields(body).map_err(invalid)?;
    let payload = crate::form::only(&fields, "payload").map_err(invalid)?;
    let md5 = crate::form::only(&fields, "md5").map_err(invalid)?;
    let payload = payload.ok_or_else(|| invalid("form field payload is missing"))?;
    let json = compact(payload);
    let md5 = verify_md5(md5, payload.as_bytes(), json.as_deref())?;

    // One strict value, nothing after it: `compact` alone would keep a second one.
    crate::strict_json::check(payload).map_err(|e| invalid(describe("payload", &e)))?;
    finish(&md5, json)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_ping_data, md5_hex, refusal_detail};
    use super::*;
    use serde_json::Value;

    /// Percent-encodes everything but unreserved characters; spaces as `+`.
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    fn signed(payload: &str) -> String {
        format!("payload={}&md5={}", enc(payload), md5_hex(payload.as_bytes()))
    }

    fn invalid_detail(body: &str) -> String {
        refusal_detail(parse, body, false)
    }

    fn digest_detail(body: &str) -> String {
        refusal_detail(parse, body, true)
    }

    const PING: &str = r#"{"type": "ping", "epoch_timestamp": 1466526410}"#;

    #[test]
    fn spec_ping_is_accepted() {
        let md5 = md5_hex(PING.as_bytes());
        let ev = parse(signed(PING).as_bytes()).unwrap();
        assert_eq!(ev.kind, "webhookguard.vendor.ping");
        assert_eq!(ev.id, crate::event::name_based_id(&format!("md5_envelope\nping\n{md5}")));
        assert_eq!(ev.time, crate::timestamp::rfc3339_from_unix(1_466_526_410));
        assert!(ev.time.is_some());
        assert_eq!(ev.subject, None);
    }

    #[test]
    fn exact_data_output() {
        assert_ping_data(&parse(signed(PING).as_bytes()).unwrap(), PING);
    }

    #[test]
    fn purchase_is_accepted_in_any_field_order_with_extra_fields() {
        let p = r#"{"type":"subscription.cancelled","plan":{"id":"p1"}}"#;
        let body = format!("&x=1&&md5={}&payload={}&note=a+b%20c&flag", md5_hex(p.as_bytes()), enc(p));
        let ev = parse(body.as_bytes()).unwrap();
        assert_eq!(ev.kind, "webhookguard.vendor.subscription.cancelled");
        let data: Value = serde_json::from_str(ev.data.get()).unwrap();
        assert_eq!(data["payload"]["plan"]["id"], "p1");
        assert!(data.get("epochTimestamp").is_none());
    }

    #[test]
    fn uppercase_md5_is_accepted_and_lowercased() {
        let md5 = md5_hex(PING.as_bytes());
        let body = format!("payload={}&md5={}", enc(PING), md5.to_ascii_uppercase());
        let ev = parse(body.as_bytes()).unwrap();
        let data: Value = serde_json::from_str(ev.data.get()).unwrap();
        assert_eq!(data["md5"], md5.as_str());
    }

    #[test]
    fn wrong_missing_or_malformed_md5_is_a_digest_rejection() {
        let body = format!("payload={}&md5={}", enc(PING), md5_hex(b"x"));
        assert_eq!(digest_detail(&body), "md5 does not match the payload");
        assert_eq!(digest_detail(&format!("payload={}", enc(PING))), "md5 is missing");
        digest_detail(&format!("payload={}&md5=", enc(PING)));
        digest_detail(&format!("payload={}&md5", enc(PING)));
        digest_detail(&format!("payload={}&md5=zz", enc(PING)));
    }

    #[test]
    fn digest_covers_the_decoded_payload_with_its_whitespace() {
        let p = " {\n \"type\" : \"ping\" ,\"epoch_timestamp\":1466526410 }\n";
        let ev = parse(signed(p).as_bytes()).unwrap();
        // data carries the payload as compact JSON.
        assert!(ev.data.get().ends_with(r#""payload":{"type":"ping","epoch_timestamp":1466526410}}"#));
        digest_detail(&format!("payload={}&md5={}", enc(p), md5_hex(p.trim().as_bytes())));
        // The digest is over the decoded text, not the encoded one.
        let encoded = enc(p);
        digest_detail(&format!("payload={encoded}&md5={}", md5_hex(encoded.as_bytes())));
        // `+` and `%20` both decode to a space.
        let with_plus = "payload=%7B%22type%22:+%22ping%22%7D";
        let p = r#"{"type": "ping"}"#;
        parse(format!("{with_plus}&md5={}", md5_hex(p.as_bytes())).as_bytes()).unwrap();
    }

    #[test]
    fn payload_must_be_a_json_object() {
        for p in ["ping", "\"ping\"", "[1]", "", "{", r#"{"type":"ping"} x"#] {
            let d = invalid_detail(&signed(p));
            assert!(d.starts_with("payload"), "{p}: {d}");
        }
        assert_eq!(invalid_detail(&format!("md5={}", md5_hex(b""))), "form field payload is missing");
        assert!(invalid_detail(&signed(r#"{"type":"ping","type":"x"}"#)).contains("duplicate key"));
    }

    #[test]
    fn type_and_epoch_rules() {
        assert_eq!(invalid_detail(&signed("{}")), "payload.type is missing");
        assert_eq!(invalid_detail(&signed(r#"{"type":7}"#)), "payload.type must be a string");
        assert!(invalid_detail(&signed(r#"{"type":"a b"}"#)).starts_with("payload.type"));
        for e in ["1.5", "\"1466526410\"", "true", "[1]"] {
            let p = format!(r#"{{"type":"ping","epoch_timestamp":{e}}}"#);
            assert!(invalid_detail(&signed(&p)).starts_with("payload.epoch_timestamp"), "{e}");
        }
    }

    #[test]
    fn repeated_fields_are_invalid() {
        let body = format!("{}&payload={}", signed(PING), enc(PING));
        assert_eq!(invalid_detail(&body), "form field payload appears more than once");
        let body = format!("{}&md5={}", signed(PING), md5_hex(PING.as_bytes()));
        assert_eq!(invalid_detail(&body), "form field md5 appears more than once");
        // Also when spelled differently on the wire.
        let body = format!("{}&%70ayload=x", signed(PING));
        assert!(invalid_detail(&body).contains("more than once"));
    }

    #[test]
    fn bad_percent_encoding_and_bad_utf8_are_invalid() {
        for bad in ["%zz", "%4", "%", "%4g", "%%41"] {
            let d = invalid_detail(&format!("{}&x={bad}", signed(PING)));
            assert!(d.contains("'%'"), "{bad}: {d}");
            let d = invalid_detail(&format!("payload={bad}&md5={}", md5_hex(b"")));
            assert!(d.contains("payload"), "{bad}: {d}");
        }
        let d = invalid_detail(&format!("{}&a%zz=1", signed(PING)));
        assert!(d.starts_with("form field name"), "{d}");
        for bad in ["%FF", "%C3", "%ED%A0%80"] {
            let d = invalid_detail(&format!("payload={bad}&md5={}", md5_hex(b"")));
            assert!(d.contains("UTF-8"), "{bad}: {d}");
        }
        assert!(matches!(parse(b"payload=\xff&md5=x"), Err(Rejected::Invalid(_))));
        // Percent-encoded UTF-8 is fine.
        let p = r#"{"type":"ping","name":"é"}"#;
        parse(signed(p).as_bytes()).unwrap();
    }
}
