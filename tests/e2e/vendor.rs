//! The md5_envelope profile through the real Envoy: JSON, XML and form payloads, POST and
//! PUT, digests, malformed XML, and ping in both modes.

use crate::harness::{send, Behaviour, Envoy, Upstream};
use crate::SECRET;
use md5::{Digest, Md5};

const PING: &str = r#"{"type": "ping", "epoch_timestamp": 1466526410}"#;
const PURCHASE: &str = r#"{"type":"purchase","order_id":"o-1","sku":"pro","epoch_timestamp":1700000000}"#;

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn plugin(extra: &str) -> String {
    format!(
        r#"{{"header_mode": "hold", "endpoints": [{{"name": "store", "path": "/hooks/store", "profile": "md5_envelope",
  "secret": {{"values": ["{SECRET}"]}}{extra}}}]}}"#
    )
}

fn setup(extra: &str) -> (Upstream, Envoy) {
    let upstream = Upstream::start();
    let envoy = Envoy::start(&plugin(extra), &upstream);
    (upstream, envoy)
}

fn target() -> String {
    format!("/hooks/store?sig={SECRET}")
}

fn json_envelope(payload: &str) -> String {
    format!(r#"{{"payload": {payload}, "md5": "{}"}}"#, md5_hex(payload.as_bytes()))
}

fn xml_envelope(inner: &str) -> String {
    format!("<notification><payload>{inner}</payload><md5>{}</md5></notification>", md5_hex(inner.as_bytes()))
}

fn form_envelope(payload: &str) -> String {
    let encoded: String = payload.bytes().map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") }).collect();
    format!("payload={encoded}&md5={}", md5_hex(payload.as_bytes()))
}

const XML_PING: &str = "<type>ping</type><epoch_timestamp>1466526410</epoch_timestamp>";

fn cases() -> Vec<(&'static str, String, &'static str)> {
    vec![
        ("application/json", json_envelope(PING), "json"),
        ("application/xml", xml_envelope(XML_PING), "xml"),
        ("application/x-www-form-urlencoded", form_envelope(PING), "form"),
    ]
}

#[test]
fn every_payload_type_by_post_and_put_is_verified_and_normalised() {
    let (upstream, envoy) = setup("");
    for method in ["POST", "PUT"] {
        for (ct, body, format) in cases() {
            let res = send(envoy.port, method, &target(), &[("content-type", ct)], body.as_bytes());
            assert_eq!(res.status, 200, "{method} {format}: {res:?}");
            let seen = upstream.requests().pop().unwrap();
            assert_eq!(seen.method, method);
            assert_eq!(seen.path, "/hooks/store");
            assert_eq!(seen.header("x-webhook-profile"), Some("md5_envelope"));
            assert_eq!(seen.header("x-webhook-event-type"), Some("webhookguard.vendor.ping"));
            let event = seen.json();
            assert_eq!(event["type"], "webhookguard.vendor.ping");
            assert_eq!(event["time"], "2016-06-21T16:26:50Z");
            assert_eq!(event["data"]["payloadType"], "ping");
            // Compact JSON in every syntax; XML's integer text is a number, as in JSON.
            assert_eq!(event["data"]["payload"], serde_json::json!({"type": "ping", "epoch_timestamp": 1466526410}), "{format}");
            assert_eq!(event["data"].as_object().unwrap().len(), 4, "{format}: {}", event["data"]);
            assert_eq!(event["id"], seen.header("x-webhook-event-id").unwrap());
        }
    }
    assert_eq!(upstream.requests().len(), 6);
}

#[test]
fn a_purchase_keeps_its_fields_and_a_stable_id() {
    let (upstream, envoy) = setup("");
    let body = json_envelope(PURCHASE);
    for _ in 0..2 {
        assert_eq!(send(envoy.port, "POST", &target(), &[("content-type", "application/json")], body.as_bytes()).status, 200);
    }
    let seen = upstream.requests();
    assert_eq!(seen[0].header("x-webhook-event-id"), seen[1].header("x-webhook-event-id"));
    let event = seen[0].json();
    assert_eq!(event["type"], "webhookguard.vendor.purchase");
    assert_eq!(event["data"]["payload"]["order_id"], "o-1");
    assert_eq!(event["data"]["md5"], md5_hex(PURCHASE.as_bytes()));
}

#[test]
fn digest_problems_are_400_and_never_forwarded() {
    let (upstream, envoy) = setup("");
    let tampered = json_envelope(PING).replace("1466526410", "1466526411");
    let missing = format!(r#"{{"payload": {PING}}}"#);
    // The compact to_json form is a documented basis; a pretty-printed one is not.
    let reserialised = format!(r#"{{"payload": {PING}, "md5": "{}"}}"#, md5_hex(b"{\n  \"type\": \"ping\",\n  \"epoch_timestamp\": 1466526410\n}"));
    let xml_wrong = xml_envelope(XML_PING).replace("1466526410</epoch", "1466526419</epoch");
    let form_wrong = form_envelope(PING).replace("md5=", "md5=0");
    for (ct, body) in [
        ("application/json", tampered),
        ("application/json", missing),
        ("application/json", reserialised),
        ("text/xml", xml_wrong),
        ("application/x-www-form-urlencoded", form_wrong),
    ] {
        let res = send(envoy.port, "POST", &target(), &[("content-type", ct)], body.as_bytes());
        res.assert_problem(400, "digest_mismatch");
    }
    upstream.assert_untouched();
}

#[test]
fn malformed_payloads_are_400_invalid() {
    let (upstream, envoy) = setup("");
    // The vendor's own sample closes <epoch_timestamp> with </timestamp>.
    let mismatched = "<notification><payload><type>ping</type><epoch_timestamp>1466526410</timestamp></payload><md5>x</md5></notification>";
    let laughs = r#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><notification><payload><type>&b;</type></payload><md5>x</md5></notification>"#;
    let cases = [
        ("application/xml", mismatched.to_string(), "timestamp"),
        ("application/xml", "<notification><payload><type>ping</type>".to_string(), ""),
        ("application/xml", laughs.to_string(), ""),
        ("application/json", json_envelope(r#"{"epoch_timestamp": 1}"#), "payload.type"),
        ("application/json", json_envelope(r#"{"type": "ping", "epoch_timestamp": "1"}"#), "payload.epoch_timestamp"),
        ("application/json", json_envelope(r#"[1]"#), "payload"),
        ("application/x-www-form-urlencoded", "payload=%zz&md5=00".to_string(), ""),
        ("application/x-www-form-urlencoded", format!("{}&payload=x", form_envelope(PING)), "payload"),
    ];
    for (ct, body, needle) in cases {
        let problem = send(envoy.port, "POST", &target(), &[("content-type", ct)], body.as_bytes()).assert_problem(400, "invalid");
        assert!(problem["detail"].as_str().unwrap().contains(needle), "{problem}");
    }
    upstream.assert_untouched();
}

#[test]
fn methods_media_types_and_secret_are_checked() {
    let (upstream, envoy) = setup("");
    let body = json_envelope(PING);
    let res = send(envoy.port, "GET", &target(), &[("content-type", "application/json")], body.as_bytes());
    res.assert_problem(405, "method_not_allowed");
    assert_eq!(res.header("allow"), Some("POST, PUT"));
    send(envoy.port, "POST", &target(), &[("content-type", "text/plain")], body.as_bytes()).assert_problem(415, "unsupported_media_type");
    send(envoy.port, "POST", "/hooks/store", &[("content-type", "application/json")], body.as_bytes()).assert_problem(401, "unauthorized");
    upstream.assert_untouched();
}

#[test]
fn ping_is_forwarded_by_default() {
    let (upstream, envoy) = setup("");
    let res = send(envoy.port, "POST", &target(), &[("content-type", "application/json")], json_envelope(PING).as_bytes());
    assert_eq!(res.status, 200);
    assert!(res.header("x-webhook-answered-by").is_none());
    assert_eq!(upstream.only().json()["type"], "webhookguard.vendor.ping");
}

#[test]
fn ping_is_answered_by_the_filter_when_configured() {
    let (upstream, envoy) = setup(r#", "answer_ping": true"#);
    for (ct, body, _) in cases() {
        let res = send(envoy.port, "PUT", &target(), &[("content-type", ct)], body.as_bytes());
        assert_eq!(res.status, 200, "{res:?}");
        assert_eq!(res.header("x-webhook-answered-by"), Some("webhook-guard"));
        assert_eq!(res.json()["status"], "ok");
    }
    upstream.assert_untouched();
    // A ping with a wrong digest is still refused, and real events still go upstream.
    let bad = json_envelope(PING).replace("ping\", \"epoch_timestamp\": 14", "ping\", \"epoch_timestamp\": 15");
    send(envoy.port, "POST", &target(), &[("content-type", "application/json")], bad.as_bytes()).assert_problem(400, "digest_mismatch");
    let res = send(envoy.port, "POST", &target(), &[("content-type", "application/json")], json_envelope(PURCHASE).as_bytes());
    assert_eq!(res.status, 200);
    assert_eq!(upstream.only().json()["type"], "webhookguard.vendor.purchase");
}

#[test]
fn upstream_2xx_is_reported_as_200_because_vendors_count_only_200() {
    let (upstream, envoy) = setup("");
    for (status, want) in [(201, 200), (202, 200), (204, 200), (500, 500), (400, 502)] {
        upstream.set(Behaviour::Status(status));
        let res = send(envoy.port, "POST", &target(), &[("content-type", "application/json")], json_envelope(PURCHASE).as_bytes());
        assert_eq!(res.status, want, "upstream {status}");
    }
}

#[test]
fn forward_original_keeps_the_form_body() {
    let (upstream, envoy) = setup(r#", "forward": "original""#);
    let body = form_envelope(PURCHASE);
    let res = send(envoy.port, "POST", &target(), &[("content-type", "application/x-www-form-urlencoded")], body.as_bytes());
    assert_eq!(res.status, 200);
    let seen = upstream.only();
    assert_eq!(seen.body, body.as_bytes());
    assert_eq!(seen.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(seen.header("x-webhook-event-type"), Some("webhookguard.vendor.purchase"));
}

/// One notification, hashed the way a Ruby or JavaScript sender would (`to_json`), is the
/// same CloudEvent whether it comes as JSON, XML or a form; a digest of anything else is
/// still refused.
#[test]
fn one_notification_is_one_event_in_every_syntax() {
    let (upstream, envoy) = setup("");
    let compact = r#"{"type":"customer_purchase","app_id":42,"buyer":"Ann & Bob <ab@example.com>","epoch_timestamp":1700000000}"#;
    let pretty = "{\n  \"type\": \"customer_purchase\",\n  \"app_id\": 42,\n  \"buyer\": \"Ann & Bob <ab@example.com>\",\n  \"epoch_timestamp\": 1700000000\n}";
    let xml = "\n  <type>customer_purchase</type>\n  <app_id>42</app_id>\n  <buyer>Ann &amp; Bob &lt;ab@example.com&gt;</buyer>\n  <epoch_timestamp>1700000000</epoch_timestamp>\n";
    let rails = compact.replace('&', "\\u0026").replace('<', "\\u003c").replace('>', "\\u003e");
    for basis in [compact.to_string(), rails] {
        let md5 = md5_hex(basis.as_bytes());
        let form: String = pretty.bytes().map(|b| format!("%{b:02X}")).collect();
        let bodies = [
            ("application/json", format!(r#"{{"payload": {pretty}, "md5": "{md5}"}}"#)),
            ("application/xml", format!("<notification><payload>{xml}</payload><md5>{md5}</md5></notification>")),
            ("application/x-www-form-urlencoded", format!("payload={form}&md5={md5}")),
        ];
        for (ct, body) in &bodies {
            let res = send(envoy.port, "POST", &target(), &[("content-type", ct)], body.as_bytes());
            assert_eq!(res.status, 200, "{ct}: {res:?}");
        }
        let seen = upstream.requests();
        let events: Vec<serde_json::Value> = seen[seen.len() - 3..].iter().map(|r| r.json()).collect();
        assert_eq!(events[0]["data"]["payload"], serde_json::from_str::<serde_json::Value>(compact).unwrap());
        assert_eq!(events[0]["data"]["md5"], md5);
        assert!(events.iter().all(|e| *e == events[0]), "{events:#?}");
    }
    let wrong = format!(r#"{{"payload": {pretty}, "md5": "{}"}}"#, md5_hex(pretty.replace('\n', "").as_bytes()));
    let res = send(envoy.port, "POST", &target(), &[("content-type", "application/json")], wrong.as_bytes());
    res.assert_problem(400, "digest_mismatch");
    assert_eq!(upstream.requests().len(), 6);
}
