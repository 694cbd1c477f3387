//! `azure::validate`: never panics; an accepted notification renders a CloudEvent that
//! parses back with every required attribute, and its id is the documented name-based
//! UUID, the same on every call and for any re-serialisation of the same document. What
//! departs from the documented table is reported by the rule it breaks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use webhook_guard::profile::azure_managed_app::conformance::{Rule, RULES};
use webhook_guard::profile::azure_managed_app::notification::{type_name, validate, KIND_PREFIX, PAIRS};
use webhook_guard::event::name_based_id;
use webhook_guard_fuzz::check_cloudevent;

fn text<'a>(data: &'a serde_json::Map<String, Value>, key: &str) -> &'a str {
    match data.get(key) {
        Some(Value::String(s)) => s,
        other => panic!("data.{key} is not a string: {other:?}"),
    }
}

fuzz_target!(|input: &[u8]| {
    let ev = match validate(input) {
        Ok(ev) => ev,
        Err(detail) => {
            assert!(!detail.is_empty());
            return;
        }
    };
    let data = check_cloudevent(&ev);

    // The facts in data are canonical and the id, type, subject and time derive from them.
    let rules: Vec<Rule> = ev.nonconforming.iter().filter_map(|f| RULES.into_iter().find(|r| r.slug() == f.rule)).collect();
    assert_eq!(rules.len(), ev.nonconforming.len(), "a finding of no rule");
    let event_type = text(&data, "eventType");
    let state = text(&data, "provisioningState");
    let undocumented = [Rule::TypeUndocumented, Rule::StateUndocumented, Rule::PairUndocumented];
    assert_eq!(
        PAIRS.contains(&(event_type, state)),
        !rules.iter().any(|r| undocumented.contains(r)),
        "({event_type}, {state}) and {rules:?} disagree"
    );
    let application = text(&data, "applicationId");
    assert!(application.starts_with("/subscriptions/"), "{application}");
    let time = text(&data, "eventTime");
    let parsed = webhook_guard::timestamp::parse(time).expect("time does not parse back");
    assert_eq!((parsed.utc.as_str(), parsed.has_offset), (time, true), "time is not canonical");
    assert_eq!(ev.subject.as_deref(), Some(application));
    assert_eq!(ev.time.as_deref(), Some(time));
    assert_eq!(ev.keys.application.as_deref(), Some(application.to_ascii_lowercase().as_str()));
    let mut kind = String::from(KIND_PREFIX);
    type_name(event_type, &mut kind);
    kind.push('.');
    type_name(state, &mut kind);
    assert_eq!(ev.kind, kind);
    assert_eq!(
        ev.id,
        name_based_id(&format!(
            "azure_managed_app\n{}\n{event_type}\n{state}\n{time}",
            application.to_ascii_lowercase()
        ))
    );
    match text(&data, "flavour") {
        "service_catalog" => assert!(!data.contains_key("plan") && !data.contains_key("billing")),
        "marketplace" => assert!(!data.contains_key("applicationDefinitionId")),
        "unknown" => assert!(rules.contains(&Rule::FlavourUnknown)),
        other => panic!("unknown flavour {other}"),
    }
    if state == "Failed" && !data.contains_key("error") {
        assert!(rules.contains(&Rule::ErrorMissing) || rules.contains(&Rule::ErrorShape), "{rules:?}");
    }
    let mut sorted = rules.clone();
    sorted.sort_by_key(|r| RULES.iter().position(|x| x == r));
    assert_eq!(sorted, rules, "findings out of the documented order");
    assert!(data.contains_key("original"));

    // Determinism: the same bytes, the same event.
    let again = validate(input).expect("accepted once, refused the second time");
    assert_eq!(again.id, ev.id);
    assert_eq!(again.data.get(), ev.data.get());
    assert_eq!(again.nonconforming, ev.nonconforming);

    // The same document with other whitespace and key order (serde_json sorts keys) is
    // the same notification.
    if let Ok(doc) = serde_json::from_slice::<Value>(input) {
        for other in [
            serde_json::to_vec_pretty(&doc).expect("re-serialise"),
            serde_json::to_vec(&doc).expect("re-serialise"),
        ] {
            match validate(&other) {
                Ok(ev2) => assert_eq!(ev2.id, ev.id, "re-serialised document got another id"),
                Err(e) => panic!(
                    "re-serialised document refused: {e}\n{}",
                    String::from_utf8_lossy(&other)
                ),
            }
        }
    }
});
