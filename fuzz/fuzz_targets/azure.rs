//! `azure::validate`: never panics; an accepted notification renders a CloudEvent that
//! parses back with every required attribute, and its id is the documented name-based
//! UUID, the same on every call and for any re-serialisation of the same document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use webhook_guard::azure::{validate, PAIRS};
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
    let Some(data) = check_cloudevent(&ev) else {
        return;
    };

    // The facts in data are canonical and the id, type, subject and time derive from them.
    let event_type = text(&data, "eventType");
    let state = text(&data, "provisioningState");
    assert!(PAIRS.contains(&(event_type, state)), "({event_type}, {state}) is not a valid pair");
    let application = text(&data, "applicationId");
    assert!(application.starts_with("/subscriptions/"), "{application}");
    let time = text(&data, "eventTime");
    assert_eq!(webhook_guard::timestamp::parse_utc(time).as_deref(), Ok(time), "time is not canonical");
    assert_eq!(ev.subject.as_deref(), Some(application));
    assert_eq!(ev.time.as_deref(), Some(time));
    assert_eq!(ev.keys.application.as_deref(), Some(application.to_ascii_lowercase().as_str()));
    assert_eq!(
        ev.kind,
        format!(
            "webhookguard.azure.managedapp.{}.{}",
            event_type.to_ascii_lowercase(),
            state.to_ascii_lowercase()
        )
    );
    assert_eq!(
        ev.id,
        name_based_id(&format!(
            "azure_managed_app\n{}\n{event_type}\n{state}\n{time}",
            application.to_ascii_lowercase()
        ))
    );
    match text(&data, "flavour") {
        "service_catalog" => assert!(data.contains_key("applicationDefinitionId") && !data.contains_key("plan")),
        "marketplace" => assert!(data.contains_key("plan") && data.contains_key("billing")),
        other => panic!("unknown flavour {other}"),
    }
    assert_eq!(data.contains_key("error"), state == "Failed");
    assert!(data.contains_key("original"));

    // Determinism: the same bytes, the same event.
    let again = validate(input).expect("accepted once, refused the second time");
    assert_eq!(again.id, ev.id);
    assert_eq!(again.data.get(), ev.data.get());

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
