//! The azure_event_grid profile's `validate` over any body, as a notification and as the
//! validation handshake: never panics; on Ok the event's data is the body as sent (without
//! surrounding whitespace), its id a v3 UUID that a second call repeats, the CloudEvent of
//! a body not flagged `not_strict` parses back, one key is read per top-level element, and
//! only the handshake header with one validation event is answered by the filter. A
//! refusal is a 400 (`invalid`) with a detail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_guard::config::Config;
use webhook_guard::media::Media;
use webhook_guard::problem::Reason;
use webhook_guard::profile::azure_event_grid::delivery;
use webhook_guard::profile::{Profile, SignedHeaders};
use webhook_guard_fuzz::{is_uuid_v3, SOURCE};

const CONFIG: &str = r#"{"endpoints":[{"name":"eg","path":"/eg","profile":"azure_event_grid","secret":{"values":["k"]}}]}"#;

fuzz_target!(|body: &[u8]| {
    let profile: Box<dyn Profile> = Config::parse(CONFIG.as_bytes(), |_| None).unwrap().endpoints.remove(0).profile;
    let read = std::str::from_utf8(body).ok().map(delivery::read);
    for event_type in ["Notification", "SubscriptionValidation"] {
        let headers = SignedHeaders(vec![Some(event_type.as_bytes().to_vec()), None]);
        let event = match profile.validate(Media::Json, body, &headers) {
            Ok(event) => event,
            Err(rejection) => {
                assert_eq!(rejection.reason, Reason::Invalid);
                assert!(!rejection.detail.is_empty());
                continue;
            }
        };
        assert_eq!(event.data.get().as_bytes(), body.trim_ascii(), "the body, without surrounding whitespace");
        assert!(is_uuid_v3(&event.id), "{}", event.id);
        assert_eq!(profile.validate(Media::Json, body, &headers).unwrap().id, event.id);
        let Some(Ok(delivery)) = &read else { panic!("accepted, but delivery::read refuses it") };
        let elements: Vec<&serde_json::value::RawValue> = match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => serde_json::from_slice(body).unwrap(),
            _ => vec![serde_json::from_slice(body).unwrap()],
        };
        assert_eq!(delivery.keys.len(), elements.len());
        assert_eq!(delivery.single.is_some(), elements.len() == 1);
        // Strict JSON (flagged otherwise) makes a CloudEvent serde_json reads back.
        let cloudevent = event.to_cloudevent(SOURCE).unwrap();
        if event.nonconforming.iter().all(|f| f.rule != "not_strict") {
            let cloudevent: serde_json::Value = serde_json::from_slice(&cloudevent).unwrap();
            assert_eq!(cloudevent["id"], event.id.as_str());
        }
        let answered = profile.local_answer(&event);
        assert_eq!(answered.is_some(), event_type == "SubscriptionValidation", "{event:?}");
        if let Some(answer) = answered {
            let sent: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
            assert_eq!(sent["validationResponse"].as_str(), delivery::validation_code(event.data.get()).as_deref());
        }
    }
});
