#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Property tests of the pure API (no Envoy): every input gets a verdict without a panic;
//! every valid Azure notification is accepted and keeps its id across re-serialisations;
//! with the default `on_nonconforming`, any strict JSON object whose four identifying
//! fields are usable is forwarded, whatever else it holds;
//! every correctly signed vendor envelope is accepted and a wrong md5 is a Digest
//! rejection. Failing cases are shrunk and printed; nothing is written to disk.

use md5::{Digest, Md5};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Map, Value};
use webhook_guard::check;
use webhook_guard::config::Config;
use webhook_guard::event::{name_based_id, Event};
use webhook_guard::media::Media;
use webhook_guard::nonconforming;
use webhook_guard::profile::azure_managed_app::notification::{self as azure, PAIRS};
use webhook_guard::profile::md5_envelope::{self as vendor, Rejected};
use webhook_guard::profile::SignedHeaders;
use webhook_guard::query;
use webhook_guard::timestamp::{days_in_month, rfc3339_from_unix};

use webhook_guard_drift::{drifting_doc, name, permutation, recase, render, whitespace, Drifting};

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig { cases: n, failure_persistence: Some(Box::new(FileFailurePersistence::Off)), ..ProptestConfig::default() }
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------
// Any input: a verdict, never a panic.

const APP: &str = "subscriptions/<subId>/resourceGroups/<rgName>/providers/Microsoft.Solutions/applications/<applicationName>";
const DEF: &str = "subscriptions/<subId>/resourceGroups/<rgName>/providers/Microsoft.Solutions/applicationDefinitions/<appDefName>";

/// Valid inputs of every parser, to mutate: random bytes alone seldom get past the
/// first check.
fn samples() -> Vec<Vec<u8>> {
    let ping = r#"{ "type": "ping", "epoch_timestamp": 1466526410 }"#;
    let ping_xml = "<type>ping</type><epoch_timestamp>1466526410</epoch_timestamp>";
    let marketplace = json!({
        "eventType": "PUT", "applicationId": APP, "eventTime": "2019-08-14T19:20:08.1707163Z",
        "provisioningState": "Failed",
        "billingDetails": {"resourceUsageId": "<resourceUsageId>"},
        "plan": {"publisher": "publisherId", "product": "offer", "name": "skuName", "version": "1.0.1"},
        "error": {"code": "ErrorCode", "message": "error message",
                  "details": [{"code": "DetailedErrorCode", "message": "error message"}]}
    });
    let catalog = json!({
        "eventType": "PUT", "applicationId": APP, "eventTime": "2019-08-14T19:20:08.1707163Z",
        "provisioningState": "Succeeded", "applicationDefinitionId": DEF
    });
    [
        serde_json::to_string_pretty(&catalog).unwrap(),
        marketplace.to_string(),
        format!(r#"{{"payload": {ping}, "md5": "{}"}}"#, md5_hex(ping.as_bytes())),
        format!(
            "<notification><payload>{ping_xml}</payload><md5>{}</md5></notification>",
            md5_hex(ping_xml.as_bytes())
        ),
        format!(
            "payload=%7B%22type%22%3A%22ping%22%7D&md5={}",
            md5_hex(br#"{"type":"ping"}"#)
        ),
        r#"{"endpoints":[{"name":"azure","path":"/api/resource","profile":"azure_managed_app","secret":{"param":"sig","values":["demo-secret"],"env":["E"]},"max_body_bytes":65536,"forward":"original","upstream_4xx":"pass"}]}"#.into(),
        "a=1&sig=a%2Bb%3D&s%69g=x&b=%zz".into(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, u8),
    Delete(usize),
    Replace(usize, u8),
    Duplicate(usize, usize),
}

fn apply(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let n = data.len();
        match *edit {
            Edit::Insert(at, b) => data.insert(at % (n + 1), b),
            Edit::Delete(at) if n > 0 => {
                data.remove(at % n);
            }
            Edit::Replace(at, b) if n > 0 => data[at % n] = b,
            Edit::Duplicate(at, len) if n > 0 => {
                let start = at % n;
                let end = (start + len).min(n);
                let copy = data[start..end].to_vec();
                data.splice(end..end, copy);
            }
            _ => {}
        }
    }
    data
}

/// Random bytes, or a valid sample of any parser with a few byte edits.
fn any_input() -> impl Strategy<Value = Vec<u8>> {
    let interesting = prop_oneof![any::<u8>(), prop::sample::select(b"{}[]<>\"\\:,&=%/ 0eE.-+".to_vec())];
    let edit = prop_oneof![
        (any::<usize>(), interesting.clone()).prop_map(|(a, b)| Edit::Insert(a, b)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), interesting).prop_map(|(a, b)| Edit::Replace(a, b)),
        (any::<usize>(), 1usize..16).prop_map(|(a, l)| Edit::Duplicate(a, l)),
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        (prop::sample::select(samples()), prop::collection::vec(edit, 0..6)).prop_map(|(s, e)| apply(s, &e)),
    ]
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn every_input_gets_a_verdict(data in any_input()) {
        // A verdict with substance: an accepted event has an id and a type, a refusal
        // says why.
        match azure::validate(&data) {
            Ok(ev) => prop_assert!(ev.id.len() == 36 && !ev.kind.is_empty()),
            Err(why) => prop_assert!(!why.is_empty()),
        }
        for media in [Media::Json, Media::Xml, Media::Form] {
            match vendor::parse(media, &data) {
                Ok(ev) => prop_assert!(ev.id.len() == 36 && ev.kind.starts_with("webhookguard.vendor.")),
                Err(r) => prop_assert!(!r.detail().is_empty()),
            }
        }
        match Config::parse(&data, |_| Some("x".into())) {
            Ok(config) => prop_assert!(!config.endpoints.is_empty()),
            Err(why) => prop_assert!(!why.is_empty()),
        }
        let q = String::from_utf8_lossy(&data);
        match query::find(Some(&q), "sig") {
            // Only a value actually given under the key: never an empty one.
            query::Found::Value(v) => prop_assert!(!v.is_empty()),
            query::Found::Repeated | query::Found::Missing | query::Found::Malformed => {}
        }
        let secrets = query::Secrets { params: &["sig"], values: vec![b"a+b=".as_slice(), b"x".as_slice()] };
        let stripped = query::without_secrets(&format!("/p?{q}"), &secrets);
        prop_assert!(matches!(
            query::find(query::split(&stripped).1, "sig"),
            query::Found::Missing | query::Found::Malformed
        ));
        // No value that is a secret survives, under any key or separator.
        let rest = query::split(&stripped).1.unwrap_or("");
        for piece in rest.split(['&', ';']) {
            let value = piece.split_once('=').map_or("", |(_, v)| v);
            prop_assert!(!matches!(query::decode(value.as_bytes()).as_deref(), Some(b"x" | b"a+b=")), "{} -> {}", q, stripped);
        }
        prop_assert_eq!(query::without_secrets(&stripped, &secrets), stripped.clone(), "stripping is idempotent");
    }
}

// ---------------------------------------------------------------------------------------
// Azure: valid documents are accepted, and the id is the notification's, not the bytes'.

/// Renders and checks the CloudEvent of `ev`; returns its `data`.
fn cloudevent(ev: &Event) -> Map<String, Value> {
    let bytes = ev.to_cloudevent("/webhook-guard/x").unwrap();
    let v: Value = serde_json::from_slice(&bytes).expect("the CloudEvent parses back");
    let Value::Object(ce) = v else { panic!("CloudEvent is not an object") };
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["id"].as_str().unwrap().len(), 36);
    assert_eq!(ce["id"], ev.id.as_str());
    assert_eq!(ce["type"], ev.kind.as_str());
    assert_eq!(ce["source"], "/webhook-guard/x");
    assert_eq!(ce["datacontenttype"], "application/json");
    let Some(Value::Object(data)) = ce.get("data") else { panic!("data is not an object") };
    data.clone()
}

#[derive(Debug, Clone)]
struct AzureDoc {
    /// Top-level members in canonical spelling and order.
    fields: Vec<(String, Value)>,
    event_type: &'static str,
    state: &'static str,
    /// `/subscriptions/...`, as the event's subject.
    application: String,
    /// RFC 3339 form of eventTime.
    time: String,
}

/// An eventTime as sent, and its RFC 3339 form: any year 0001-9998 (before 1970 too), in
/// UTC or at any offset `±hh:mm` / `±hhmm` / `±hh`, converted here by calendar steps.
fn event_time() -> impl Strategy<Value = (String, String)> {
    let offset = (any::<bool>(), 0i64..24, 0i64..60, 0usize..3);
    let zone = prop_oneof![
        prop::sample::select(vec!["Z", "z", "+00:00"]).prop_map(|z| (z.to_string(), 0)),
        offset.prop_map(|(east, hh, mm, form)| {
            let sign = if east { '+' } else { '-' };
            let text = match (form, mm) {
                (0, _) => format!("{sign}{hh:02}:{mm:02}"),
                (1, _) => format!("{sign}{hh:02}{mm:02}"),
                (_, 0) => format!("{sign}{hh:02}"),
                _ => format!("{sign}{hh:02}:{mm:02}"),
            };
            (text, if east { hh * 60 + mm } else { -(hh * 60 + mm) })
        }),
    ];
    ((prop_oneof![1u32..1970, 1970u32..=9998], 1u32..=12, 1u32..=31), (0u32..24, 0u32..60, 0u32..60), "[0-9]{0,7}", prop::sample::select(vec!["T", "t"]), zone)
        .prop_map(|((y, mo, d), (h, mi, s), frac, t, (zone, east_minutes))| {
            let d = d.min(days_in_month(y, mo));
            let dot = if frac.is_empty() { "" } else { "." };
            let sent = format!("{y:04}-{mo:02}-{d:02}{t}{h:02}:{mi:02}:{s:02}{dot}{frac}{zone}");
            let (mut y, mut mo, mut d) = (y, mo, d);
            let mut minutes = i64::from(h * 60 + mi) - east_minutes;
            if minutes < 0 {
                minutes += 1440;
                (y, mo, d) = match (mo, d) {
                    (1, 1) => (y - 1, 12, 31),
                    (_, 1) => (y, mo - 1, days_in_month(y, mo - 1)),
                    _ => (y, mo, d - 1),
                };
            } else if minutes >= 1440 {
                minutes -= 1440;
                (y, mo, d) = match (mo, d == days_in_month(y, mo)) {
                    (12, true) => (y + 1, 1, 1),
                    (_, true) => (y, mo + 1, 1),
                    _ => (y, mo, d + 1),
                };
            }
            let (h, mi) = (minutes / 60, minutes % 60);
            (sent, format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{dot}{frac}Z"))
        })
}

fn azure_doc() -> impl Strategy<Value = AzureDoc> {
    let text = || "\\PC{1,20}";
    (
        0..PAIRS.len(),
        any::<bool>(),
        (name(), name(), name(), name()),
        event_time(),
        (text(), text(), text(), text(), text()),
        (text(), text(), prop::option::of(prop::collection::vec((text(), text()), 0..3))),
        prop::option::of(any::<i32>()),
    )
        .prop_map(|(pair, marketplace, (sub, rg, app, def), (sent_time, time), plan, error, extra)| {
            let (event_type, state) = PAIRS[pair];
            let ids = format!("subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Solutions");
            let mut fields = vec![
                ("eventType".to_string(), json!(event_type)),
                ("applicationId".to_string(), json!(format!("{ids}/applications/{app}"))),
                ("eventTime".to_string(), json!(sent_time)),
                ("provisioningState".to_string(), json!(state)),
            ];
            if marketplace {
                let (publisher, product, plan_name, version, usage) = plan;
                fields.push(("billingDetails".into(), json!({"resourceUsageId": usage})));
                fields.push(("plan".into(), json!({"publisher": publisher, "product": product, "name": plan_name, "version": version})));
            } else {
                fields.push(("applicationDefinitionId".into(), json!(format!("{ids}/applicationDefinitions/{def}"))));
            }
            if state == "Failed" {
                let (code, message, details) = error;
                let mut e = json!({"code": code, "message": message});
                if let Some(details) = details {
                    e["details"] = details.into_iter().map(|(c, m)| json!({"code": c, "message": m})).collect();
                }
                fields.push(("error".into(), e));
            }
            if let Some(n) = extra {
                fields.push(("futureField".into(), json!({"n": n, "list": [n, "x", null]})));
            }
            AzureDoc { fields, event_type, state, application: format!("/{ids}/applications/{app}"), time }
        })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn valid_azure_documents_are_accepted_with_a_stable_id(
        doc in azure_doc(),
        order in permutation(),
        ws in whitespace(),
        pretty in any::<bool>(),
        mask in prop::collection::vec(any::<bool>(), 1..8),
        slash in any::<bool>(),
    ) {
        let identity: Vec<usize> = (0..doc.fields.len()).collect();
        let compact = render(&doc.fields, &identity, &[""], false);
        let ev = azure::validate(compact.as_bytes())
            .unwrap_or_else(|e| panic!("refused: {e}\n{compact}"));
        let data = cloudevent(&ev);
        prop_assert_eq!(&data["eventType"], doc.event_type);
        prop_assert_eq!(&data["provisioningState"], doc.state);
        prop_assert_eq!(ev.subject.as_deref(), Some(doc.application.as_str()));
        prop_assert_eq!(ev.time.as_deref(), Some(doc.time.as_str()));
        prop_assert_eq!(&ev.id, &name_based_id(&format!(
            "azure_managed_app\n{}\n{}\n{}\n{}",
            doc.application.to_ascii_lowercase(), doc.event_type, doc.state, doc.time
        )));
        prop_assert_eq!(
            &ev.kind,
            &format!("webhookguard.azure.managedapp.{}.{}",
                doc.event_type.to_ascii_lowercase(), doc.state.to_ascii_lowercase())
        );

        // The same document, other whitespace and member order: the same id.
        let reshaped = render(&doc.fields, &order, &ws, pretty);
        let again = azure::validate(reshaped.as_bytes())
            .unwrap_or_else(|e| panic!("re-serialised document refused: {e}\n{reshaped}"));
        cloudevent(&again);
        prop_assert_eq!(&again.id, &ev.id);
        prop_assert_eq!(&again.subject, &ev.subject);

        // Spellings ARM treats as equal (case of eventType, provisioningState and ID
        // segment names; a leading '/'): the same id too.
        let mut fields = doc.fields.clone();
        for (key, value) in &mut fields {
            let Value::String(s) = value else { continue };
            match key.as_str() {
                "eventType" | "provisioningState" => *s = recase(s, &mask),
                "applicationId" | "applicationDefinitionId" => {
                    let segments: Vec<String> = s.split('/').enumerate()
                        .map(|(i, seg)| if i % 2 == 0 && i < 7 { recase(seg, &mask) } else { seg.to_string() })
                        .collect();
                    *s = format!("{}{}", if slash { "/" } else { "" }, segments.join("/"));
                }
                _ => {}
            }
        }
        let respelled = render(&fields, &order, &ws, pretty);
        let third = azure::validate(respelled.as_bytes())
            .unwrap_or_else(|e| panic!("respelled document refused: {e}\n{respelled}"));
        prop_assert_eq!(&third.id, &ev.id);
    }
}

// ---------------------------------------------------------------------------------------
// Vendor envelopes: a correct md5 is accepted, any other md5 is a Digest rejection.

#[derive(Debug, Clone)]
struct VendorCase {
    media: Media,
    kind: String,
    epoch: Option<i64>,
    /// Extra payload members (names never `type` or `epoch_timestamp`).
    extras: Vec<(String, String)>,
    ws: Vec<&'static str>,
    md5_first: bool,
}

fn vendor_case() -> impl Strategy<Value = VendorCase> {
    (
        prop::sample::select(vec![Media::Json, Media::Xml, Media::Form]),
        "[A-Za-z0-9_.-]{1,64}",
        // Unix seconds of the years 0000 to 9999, which RFC 3339 can write.
        prop::option::of(-62_167_219_200i64..=253_402_300_799),
        prop::collection::btree_map("x_[a-z0-9]{1,6}", "\\PC{0,12}", 0..4),
        prop::collection::vec(prop::sample::select(vec!["", " ", "\n", "\t", "\r\n"]), 1..4),
        any::<bool>(),
    )
        .prop_map(|(media, kind, epoch, extras, ws, md5_first)| VendorCase { media, kind, epoch, extras: extras.into_iter().collect(), ws, md5_first })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The payload text as the md5 covers it, and a body carrying it with `md5`.
fn envelope(c: &VendorCase, md5: impl Fn(&str) -> String) -> (String, String) {
    let mut pieces = c.ws.iter().cycle();
    let mut space = || *pieces.next().unwrap_or(&"");
    match c.media {
        Media::Json | Media::Form => {
            let mut members = vec![format!("\"type\":{}{}", space(), serde_json::to_string(&c.kind).unwrap())];
            if let Some(e) = c.epoch {
                members.push(format!("\"epoch_timestamp\"{}:{e}", space()));
            }
            for (k, v) in &c.extras {
                members.push(format!("{}:{}", serde_json::to_string(k).unwrap(), serde_json::to_string(v).unwrap()));
            }
            let sep = format!(",{}", space());
            let payload = format!("{{{}{}{}}}", space(), members.join(&sep), space());
            let digest = md5(&payload);
            let body = if c.media == Media::Json {
                if c.md5_first {
                    format!("{{\"md5\":\"{digest}\",{}\"payload\":{}{payload}{}}}", space(), space(), space())
                } else {
                    format!("{{{}\"payload\":{}{payload}{},\"md5\":\"{digest}\"}}", space(), space(), space())
                }
            } else if c.md5_first {
                format!("md5={digest}&payload={}", percent_encode(&payload))
            } else {
                format!("payload={}&md5={digest}", percent_encode(&payload))
            };
            (payload, body)
        }
        Media::Xml => {
            let mut payload = format!("{}<type>{}</type>", space(), c.kind);
            if let Some(e) = c.epoch {
                payload.push_str(&format!("{}<epoch_timestamp>{e}</epoch_timestamp>", space()));
            }
            for (k, v) in &c.extras {
                payload.push_str(&format!("{}<{k}>{}</{k}>", space(), xml_escape(v)));
            }
            payload.push_str(space());
            let digest = md5(&payload);
            let body = if c.md5_first {
                format!("<notification><md5>{digest}</md5><payload>{payload}</payload></notification>")
            } else {
                format!("<notification>{}<payload>{payload}</payload>{}<md5>{}{digest}{}</md5></notification>", space(), space(), space(), space())
            };
            (payload, body)
        }
    }
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn signed_vendor_envelopes_are_accepted(c in vendor_case(), upper in any::<bool>()) {
        let (payload, body) = envelope(&c, |p| {
            let h = md5_hex(p.as_bytes());
            if upper { h.to_ascii_uppercase() } else { h }
        });
        let ev = vendor::parse(c.media, body.as_bytes())
            .unwrap_or_else(|r| panic!("refused: {r:?}\n{body}"));
        let md5 = md5_hex(payload.as_bytes());
        prop_assert_eq!(&ev.id, &name_based_id(&format!("md5_envelope\n{}\n{md5}", c.kind)));
        prop_assert_eq!(&ev.kind, &format!("webhookguard.vendor.{}", c.kind.to_ascii_lowercase()));
        prop_assert_eq!(&ev.time, &c.epoch.and_then(rfc3339_from_unix));
        prop_assert!(c.epoch.is_none() || ev.time.is_some());
        let data = cloudevent(&ev);
        prop_assert_eq!(&data["md5"], md5.as_str());
        prop_assert_eq!(&data["payloadType"], c.kind.as_str());
        prop_assert_eq!(&data["payload"]["type"], c.kind.as_str());
        for (k, v) in &c.extras {
            // XML has no types: text that is an integer and round-trips exactly is one.
            let integer = v.parse::<i64>().ok().filter(|n| n.to_string() == *v);
            match integer.filter(|_| c.media == Media::Xml) {
                Some(n) => prop_assert_eq!(&data["payload"][k], n),
                None => prop_assert_eq!(&data["payload"][k], v.as_str()),
            }
        }
    }

    #[test]
    fn a_wrong_md5_is_a_digest_rejection(c in vendor_case(), at in 0usize..32, delta in 1u8..16) {
        let (_, body) = envelope(&c, |p| {
            let mut h = md5_hex(p.as_bytes()).into_bytes();
            let digit = char::from(h[at]).to_digit(16).unwrap() as u8;
            h[at] = b"0123456789abcdef"[usize::from((digit + delta) % 16)];
            String::from_utf8(h).unwrap()
        });
        match vendor::parse(c.media, body.as_bytes()) {
            Err(Rejected::Digest(d)) => prop_assert_eq!(d, "md5 does not match the payload"),
            other => panic!("expected a Digest rejection, got {other:?}\n{body}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Which paths are guarded: the guard agrees with a model of how backends route.

/// How backends route, one function per backend, each saying whether it sends a path to
/// the handler of `/api/resource` (directly or by a redirect it issues). Written from the
/// frameworks' documented behaviour, apart from `route.rs`.
mod backends {
    /// Every `%XX` decoded (`%2F` too); `None` when an escape is malformed or the result
    /// is not UTF-8 (the backend answers 400).
    pub fn decoded(p: &str) -> Option<String> {
        let b = p.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(p.get(i + 1..i + 3)?, 16).ok()?);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).ok()
    }

    /// RFC 3986 dot-segment removal and empty segments dropped.
    fn resolved<'a>(segments: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        let mut out = Vec::new();
        for s in segments {
            match s {
                "" | "." => {}
                ".." => {
                    out.pop();
                }
                s => out.push(s),
            }
        }
        out
    }

    fn is_target(segments: &[&str], eq: impl Fn(&str, &str) -> bool) -> bool {
        segments.len() == 2 && eq(segments[0], "api") && eq(segments[1], "resource")
    }

    /// .NET's OrdinalIgnoreCase: both sides upper-cased.
    fn ignore_case(a: &str, b: &str) -> bool {
        a.to_uppercase() == b.to_uppercase()
    }

    /// Express: the raw path, case-insensitive, one trailing slash optional.
    pub fn express(p: &str) -> bool {
        p.strip_suffix('/').unwrap_or(p).eq_ignore_ascii_case("/api/resource")
    }

    /// ASP.NET Core on Kestrel: decoded except `%2F`, dot segments removed, one trailing
    /// slash optional, case-insensitive.
    pub fn aspnet(p: &str) -> bool {
        let Some(d) = decoded(&p.replace("%2F", "%01").replace("%2f", "%01")) else { return false };
        let segments = resolved(d.split('/').filter(|s| *s != "."));
        is_target(&segments, ignore_case) && !d.trim_end_matches('/').contains("//")
    }

    /// Spring MVC on Tomcat with its long-standing defaults: `;` parameters cut from every
    /// segment, the rest decoded, `//` merged and dot segments removed (Tomcat), then
    /// tokens trimmed (Java's `String.trim`), trailing slash and any suffix (`resource.*`)
    /// matched (Spring).
    pub fn spring(p: &str) -> bool {
        let cut: Vec<&str> = p.split('/').map(|s| s.split(';').next().unwrap()).collect();
        let Some(d) = decoded(&cut.join("/")) else { return false };
        let mut segments: Vec<&str> = resolved(d.split('/')).into_iter().map(|s| s.trim_matches(|c| c <= ' ')).filter(|s| !s.is_empty()).collect();
        if let Some(last) = segments.last_mut() {
            *last = last.split('.').next().unwrap();
        }
        is_target(&segments, |a, b| a == b)
    }

    /// Rails: `//` squeezed, trailing slash dropped, decoded, an optional `.:format`.
    pub fn rails(p: &str) -> bool {
        let Some(d) = decoded(p) else { return false };
        let segments: Vec<&str> = d.split('/').filter(|s| !s.is_empty()).collect();
        match segments.as_slice() {
            ["api", last] => last.split_once('.').map_or(*last, |(stem, f)| if f.is_empty() || f.contains('.') { "" } else { stem }) == "resource",
            _ => false,
        }
    }

    /// Go's ServeMux: decoded, then redirected to `path.Clean` of it.
    pub fn go(p: &str) -> bool {
        decoded(p).is_some_and(|d| is_target(&resolved(d.split('/')), |a, b| a == b))
    }

    /// Django (APPEND_SLASH), Flask (strict_slashes, merge_slashes), FastAPI
    /// (redirect_slashes), Laravel: decoded, repeated and trailing slashes redirected.
    pub fn slash_tolerant(p: &str) -> bool {
        decoded(p).is_some_and(|d| is_target(&d.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>(), |a, b| a == b))
    }

    /// IIS in front of ASP.NET: trailing dots and spaces of a segment ignored.
    pub fn iis(p: &str) -> bool {
        decoded(p).is_some_and(|d| {
            let trimmed: Vec<&str> = d.split('/').map(|s| if s == "." || s == ".." { s } else { s.trim_end_matches(['.', ' ']) }).collect();
            is_target(&resolved(trimmed.iter().copied()), ignore_case)
        })
    }

    /// A backend's name, and whether it routes a path to the handler.
    pub type Backend = (&'static str, fn(&str) -> bool);

    pub const ALL: [Backend; 7] =
        [("express", express), ("aspnet", aspnet), ("spring", spring), ("rails", rails), ("go", go), ("django/flask/laravel", slash_tolerant), ("iis", iis)];

    /// Whether backends can disagree on what `p` names: malformed or encoded-twice
    /// escapes, a `\` or an encoded separator, control characters, bytes that are not UTF-8.
    pub fn ambiguous(p: &str) -> bool {
        let Some(once) = p.split('/').map(decoded).collect::<Option<Vec<_>>>() else { return true };
        let escaped = |s: &str| s.as_bytes().windows(3).any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit());
        once.iter().any(|s| s.contains(['/', '\\']) || s.chars().any(char::is_control) || escaped(s))
    }
}

/// Path pieces that backends treat specially, joined at random, alone or around a
/// spelling of the guarded path.
fn path() -> impl Strategy<Value = String> {
    let pieces = || {
        prop::sample::select(vec![
            "/", "//", "\\", "api", "API", "Api", "resource", "Resource", "RESOURCE", "re", "source", "s", ".", "..", ";x=1", ";sig=k", "%72", "%2F", "%2f",
            "%5C", "%2e", "%2E%2E", "%20", " ", ".json", ".xml", ".", "%00", "%0A", "%25", "%2572", "%ff", "%", "%zz", "-status", "\u{17f}", "\u{131}", "x",
            "%3B",
        ])
    };
    let spellings = prop::sample::select(vec!["/api/resource", "/API/Resource", "/api//resource/", "/api/x/../resource", "/api/resource;a"]);
    prop_oneof![
        prop::collection::vec(pieces(), 1..10).prop_map(|p| format!("/{}", p.concat())),
        (prop::collection::vec(pieces(), 0..3), spellings, prop::collection::vec(pieces(), 0..4)).prop_map(|(before, at, after)| format!(
            "{}{at}{}",
            before.concat(),
            after.concat()
        )),
    ]
}

#[test]
fn the_backend_model_routes_the_known_spellings() {
    use backends::*;
    for (p, routes) in [
        ("/API/resource/", express as fn(&str) -> bool),
        ("/api/%72esource", aspnet),
        ("/api/x/../Resource", aspnet),
        ("/api/resource;jsessionid=1", spring),
        ("/api/resource.json", spring),
        ("/api/resource%20", spring),
        ("/api/resource.xml", rails),
        ("/api//resource/", rails),
        ("/api/./x/../resource", go),
        ("/api/resource/", slash_tolerant),
        ("/api/resource.", iis),
    ] {
        assert!(routes(p), "{p}");
    }
    for p in ["/api/resources", "/api/resource-status", "/api/resource/x", "/api/resource%2Fx"] {
        assert!(ALL.iter().all(|(_, routes)| !routes(p)), "{p}");
    }
}

proptest! {
    #![proptest_config(cases(10_000))]

    #[test]
    fn the_guard_covers_every_backends_reading(p in path()) {
        use webhook_guard::config::Route;
        let json = r#"{"endpoints":[{"name":"a","path":"/api/resource","profile":"azure_managed_app","secret":{"values":["k"]}}]}"#;
        let config = Config::parse(json.as_bytes(), |_| None).unwrap();
        let route = config.route(p.as_bytes());
        let routed_by: Vec<&str> = backends::ALL.iter().filter(|(_, routes)| routes(&p)).map(|(name, _)| *name).collect();
        // Every spelling some backend routes to the handler is guarded (or refused as ambiguous).
        prop_assert!(routed_by.is_empty() || !matches!(route, Route::Unguarded), "{p:?} reaches {routed_by:?} unguarded");
        // Ambiguity is exactly the model's, and an ambiguous path is never let through as guarded.
        let ambiguous = backends::ambiguous(&p);
        prop_assert_eq!(ambiguous, webhook_guard::route::canonical(p.as_bytes()).is_err(), "{:?}", p);
        prop_assert!(!(ambiguous && matches!(route, Route::Guarded(..))), "{:?}", p);
    }
}

proptest! {
    #![proptest_config(cases(512))]

    /// Drives the pure validator and the endpoint's decision, as the filter applies them
    /// (`check::body`, then `nonconforming::refusal` with the default `on_nonconforming`):
    /// nothing in between can answer a 4xx but the rate limit (429).
    #[test]
    fn usable_identifying_fields_are_never_refused_by_default(doc in drifting_doc(days_in_month)) {
        let config = Config::parse(br#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["k"]}}]}"#, |_| None).unwrap();
        let endpoint = &config.endpoints[0];
        let Drifting { body, identifying } = doc;
        let event = check::body(endpoint, Media::Json, body.as_bytes(), &SignedHeaders::default(), 0)
            .unwrap_or_else(|r| panic!("refused with {}: {}\n{body}", r.status(), r.detail));
        prop_assert!(nonconforming::refusal(endpoint.profile.on_nonconforming(), &event.nonconforming).is_none());
        cloudevent(&event);
        // The id depends on the identifying fields only, flagged or not.
        let minimal = azure::validate(identifying.as_bytes()).unwrap();
        prop_assert_eq!(&event.id, &minimal.id);
        prop_assert_eq!(&event.kind, &minimal.kind);
    }
}
