//! A delivery's body, in either output schema Event Grid writes: its own (always a JSON
//! array of events) or CloudEvents 1.0 structured mode (one object, or an array with
//! `application/cloudevents-batch+json`). Each element is read for what the event needs
//! (its id, type, source, subject and time); `data` is never parsed.
//!
//! Only a body in which nothing could be an event is refused (Event Grid drops a 400).
//! An element that departs from the schema is a finding: the delivery is forwarded whole,
//! flagged, so the events beside it are not lost with it.

use crate::nonconforming::Finding;
use crate::strict_json;
use serde_json::value::RawValue;

/// `eventType` of the subscription validation handshake.
pub const VALIDATION_EVENT: &str = "Microsoft.EventGrid.SubscriptionValidationEvent";

/// The rules a delivery's elements may break (`nonconforming_total{rule}`).
pub const RULES: [&str; 6] = ["not_strict", "event_malformed", "id_missing", "type_missing", "specversion_unsupported", "unbatched"];

/// What the event is made of, from a body that could hold events.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Per element, its duplicate key: `[source or topic, id]`, or for an element without
    /// a string id `["", its JSON text]`.
    pub keys: Vec<[String; 2]>,
    /// The only element's own type, subject and time (none for a batch).
    pub single: Option<Single>,
    pub findings: Vec<Finding>,
}

/// The members of a one-event delivery that the CloudEvent carries.
#[derive(Debug, Default)]
pub struct Single {
    pub kind: Option<String>,
    pub subject: Option<String>,
    pub time: Option<String>,
    /// Whether it is an Event Grid schema event (not a CloudEvent).
    pub event_grid: bool,
    /// The `data.validationCode` of a subscription validation event alone in an array.
    pub validation_code: Option<String>,
}

/// The members read from one element, as raw JSON; anything else in it (`data` above all)
/// is skipped.
#[derive(Default)]
struct Member<'a> {
    id: Option<&'a str>,
    specversion: Option<&'a str>,
    event_type: Option<&'a str>,
    kind: Option<&'a str>,
    topic: Option<&'a str>,
    source: Option<&'a str>,
    subject: Option<&'a str>,
    event_time: Option<&'a str>,
    time: Option<&'a str>,
    data: Option<&'a str>,
}

/// No limit on nesting: serde_json has read the body, and the walk does not recurse.
const ANY_DEPTH: usize = usize::MAX;

impl<'a> Member<'a> {
    /// The members of an element's object text; `None` when one of them is given twice.
    fn of(element: &'a str) -> Option<Member<'a>> {
        let mut member = Member::default();
        let mut repeated = false;
        strict_json::walk(element, ANY_DEPTH, |key, value| {
            let slot = match key {
                "id" => &mut member.id,
                "specversion" => &mut member.specversion,
                "eventType" => &mut member.event_type,
                "type" => &mut member.kind,
                "topic" => &mut member.topic,
                "source" => &mut member.source,
                "subject" => &mut member.subject,
                "eventTime" => &mut member.event_time,
                "time" => &mut member.time,
                "data" => &mut member.data,
                _ => return,
            };
            repeated |= slot.replace(value).is_some();
        });
        (!repeated).then_some(member)
    }
}

/// A member's value when it is a JSON string.
fn text(raw: Option<&str>) -> Option<String> {
    serde_json::from_str(raw?).ok()
}

/// Reads `body`; `Err` (a 400's detail) only when nothing in it could be an event.
pub fn read(body: &str) -> Result<Delivery, &'static str> {
    let value: Box<RawValue> = serde_json::from_str(body).map_err(|_| "the body is not JSON")?;
    let whole = value.get();
    let batched = whole.starts_with('[');
    let mut elements = Vec::new();
    match whole.as_bytes().first() {
        Some(b'[') => {
            strict_json::walk(whole, ANY_DEPTH, |_, element| elements.push(element));
        }
        Some(b'{') => elements.push(whole),
        _ => return Err("the body is neither a JSON array of events nor a CloudEvent"),
    }
    // The other rules apply to objects only.
    if !elements.iter().any(|e| e.starts_with('{')) {
        return Err("the body holds no event: Event Grid sends at least one JSON object");
    }
    let mut delivery = Delivery::default();
    let mut findings = Vec::new();
    // A backend parsing strictly could not read it, but the events in it are Event Grid's.
    if strict_json::check(whole).is_err() {
        findings.push(Finding { rule: "not_strict", detail: "the body is not strict JSON (a repeated key, a number out of range or a lone surrogate)".into() });
    }
    let count = elements.len();
    for (at, element) in elements.into_iter().enumerate() {
        let is_object = element.starts_with('{');
        let member = if is_object { Member::of(element) } else { None };
        if member.is_none() {
            findings.push(finding("event_malformed", at, "is not an event object"));
        }
        let member = member.unwrap_or_default();
        let cloud = member.specversion.is_some();
        if cloud && text(member.specversion).as_deref() != Some("1.0") {
            findings.push(finding("specversion_unsupported", at, "is not a CloudEvents 1.0 event"));
        }
        if !cloud && !batched {
            findings.push(finding("unbatched", at, "is an Event Grid schema event outside an array"));
        }
        let kind = text(if cloud { member.kind } else { member.event_type });
        if kind.is_none() && is_object {
            findings.push(finding("type_missing", at, if cloud { "has no string type" } else { "has no string eventType" }));
        }
        let source = text(if cloud { member.source } else { member.topic }).unwrap_or_default();
        let key = match text(member.id) {
            Some(id) => [source, id],
            None => {
                if is_object {
                    findings.push(finding("id_missing", at, "has no string id"));
                }
                [String::new(), element.to_string()]
            }
        };
        delivery.keys.push(key);
        if count == 1 {
            let time = text(if cloud { member.time } else { member.event_time });
            let validation = batched && !cloud && kind.as_deref() == Some(VALIDATION_EVENT);
            let validation_code = member.data.filter(|_| validation).and_then(validation_code_of);
            delivery.single = Some(Single { kind, subject: text(member.subject).filter(|s| !s.is_empty()), time, event_grid: !cloud, validation_code });
        }
    }
    delivery.findings = findings;
    Ok(delivery)
}

/// The non-empty string `validationCode` of a validation event's `data`.
fn validation_code_of(data: &str) -> Option<String> {
    let mut code = None;
    if data.starts_with('{') {
        strict_json::walk(data, ANY_DEPTH, |key, value| {
            if key == "validationCode" {
                code = Some(value);
            }
        });
    }
    text(code).filter(|c| !c.is_empty())
}

fn finding(rule: &'static str, at: usize, detail: &str) -> Finding {
    Finding { rule, detail: format!("event {at} {detail}") }
}

/// The validation code of a body that is exactly one subscription validation event.
pub fn validation_code(body: &str) -> Option<String> {
    read(body).ok()?.single?.validation_code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(d: &Delivery) -> Vec<&'static str> {
        d.findings.iter().map(|f| f.rule).collect()
    }

    #[test]
    fn nothing_that_could_be_an_event_is_refused() {
        for body in ["", "not json", "null", "1", "\"x\"", "[]", "[1,2]", "[{]", "{", "[{\"id\":\"a\"},]"] {
            assert!(read(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn a_batch_with_one_bad_element_is_read_whole_and_flagged() {
        let body = r#"[{"id":"a","topic":"/t","eventType":"X.Y","subject":"s","eventTime":"2024-01-01T00:00:00Z","data":{}},
            {"topic":"/t","eventType":"X.Y"},{"id":"c","topic":"/t"},7,{"id":{"nested":1},"eventType":"X"}]"#;
        let d = read(body).unwrap();
        assert_eq!(rules(&d), ["id_missing", "type_missing", "event_malformed", "id_missing"]);
        assert_eq!(d.keys[0], ["/t".to_string(), "a".to_string()]);
        assert_eq!(d.keys[3], [String::new(), "7".to_string()]);
        assert!(d.single.is_none());
        assert_eq!(d.findings[2].detail, "event 3 is not an event object");
    }

    #[test]
    fn a_single_cloudevent_or_unbatched_object_is_one_event() {
        let d = read(r#"{"specversion":"1.0","id":"9","source":"/s","type":"T","time":"2024-01-01T00:00:00Z","subject":""}"#).unwrap();
        assert!(d.findings.is_empty());
        let single = d.single.unwrap();
        assert_eq!((single.kind.as_deref(), single.subject, single.event_grid), (Some("T"), None, false));
        // A CloudEvent's id is unique within its source, as an Event Grid event's within its topic.
        assert_eq!(d.keys, [["/s".to_string(), "9".to_string()]]);
        let d = read(r#"{"specversion":"0.3","id":"9","source":"/s","type":"T"}"#).unwrap();
        assert_eq!(rules(&d), ["specversion_unsupported"]);
        let d = read(r#"{"id":"9","topic":"/s","eventType":"T"}"#).unwrap();
        assert_eq!(rules(&d), ["unbatched"]);
        // A member read twice is no event shape: flagged, not refused.
        let d = read(r#"[{"id":"1","id":"2","eventType":"T"}]"#).unwrap();
        assert_eq!(rules(&d), ["not_strict", "event_malformed", "type_missing", "id_missing"]);
        let d = read(r#"[{"id":"1","eventType":"T","data":{"n":1e400}}]"#).unwrap();
        assert_eq!(rules(&d), ["not_strict"]);
    }

    #[test]
    fn only_one_validation_event_with_a_code_is_a_handshake() {
        let event = |t: &str, code: &str| format!(r#"{{"id":"1","eventType":"{t}","data":{{"validationCode":"{code}"}}}}"#);
        assert_eq!(validation_code(&format!("[{}]", event(VALIDATION_EVENT, "C0DE"))).as_deref(), Some("C0DE"));
        for body in [
            event(VALIDATION_EVENT, "C0DE"),
            format!("[{}]", event(VALIDATION_EVENT, "")),
            format!("[{}]", event("X", "C")),
            format!("[{0},{0}]", event(VALIDATION_EVENT, "C")),
        ] {
            assert_eq!(validation_code(&body), None, "{body}");
        }
    }
}
