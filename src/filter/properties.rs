//! Properties of the whole flow over the mock host: with default settings, an
//! authenticated Azure notification that is a strict JSON object with its four
//! identifying fields usable is forwarded, and its sender is never told a 4xx Azure would
//! drop it on; and whatever the upstream answers, and whenever (after the body, or on a
//! streamed head before it), the sender is told success only after a 2xx, and otherwise a
//! status its profile's sender retries.

use super::mock::{feed, guard, DOC};
use super::Guard;
use crate::config::Config;
use crate::metrics::Counter;
use crate::profile::azure_managed_app::notification as azure;
use crate::timestamp::days_in_month;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::rc::Rc;
use webhook_guard_drift::{drifting_doc, Drifting};

/// Default settings but for the head mode, which is drawn.
const CONFIG: &str = r#"{"header_mode":"MODE","endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["k"]}},
    {"name":"v","path":"/v","profile":"md5_envelope","secret":{"values":["k"]}}]}"#;
/// A signed vendor envelope (md5 of `{"type":"x"}`).
const ENVELOPE: &str = r#"{"payload":{"type":"x"},"md5":"e499d5de3e233dced7b2bc5c021f5e3c"}"#;

/// Whether the sender of `path`'s profile sends the event again after `status`.
fn retried(path: &str, status: u16) -> bool {
    if path == "/v" {
        status != 200
    } else {
        status == 404 || status == 429 || status >= 500
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: Some(Box::new(FileFailurePersistence::Off)), ..ProptestConfig::default() })]

    #[test]
    fn a_usable_notification_is_forwarded_and_never_dropped(doc in drifting_doc(days_in_month), mode in prop::sample::select(vec!["hold", "stream"])) {
        let Drifting { body, identifying } = doc;
        let config = Rc::new(Config::parse(CONFIG.replace("MODE", mode).as_bytes(), |_| None).unwrap());
        let length = body.len().to_string();
        let (mock, _) = guard("POST", "/a?sig=k", &[("content-type", "application/json"), ("content-length", &length)]);
        let mut g = Guard::new(Rc::clone(&mock), config);
        g.on_request_headers(false);
        feed(&mock, &mut g, body.as_bytes());
        if mock.sent.borrow().is_none() {
            *mock.status.borrow_mut() = Some(200);
            g.on_response_headers();
        }
        let status = mock.sent_status().or(*mock.status.borrow()).unwrap_or(0);
        prop_assert!(!(400..500).contains(&status) || status == 404 || status == 429, "answered {} for {}", status, body);
        prop_assert!(mock.counts.borrow().contains(&(0, Counter::Forwarded)), "not forwarded: {}", body);
        // What went upstream is the CloudEvent of the identifying fields' event.
        let event: serde_json::Value = serde_json::from_slice(&mock.body.borrow()).unwrap();
        let id = azure::validate(identifying.as_bytes()).unwrap().id;
        prop_assert_eq!(event["id"].as_str(), Some(id.as_str()));
    }

    #[test]
    fn the_sender_hears_success_only_after_a_2xx_else_a_status_it_retries(
        status in prop_oneof![0u16..1000, prop::sample::select(vec![200u16, 204, 301, 302, 303, 304, 307, 308, 404, 429, 503])],
        path in prop::sample::select(vec!["/a", "/v"]),
        mode in prop::sample::select(vec!["hold", "stream"]),
        early in any::<bool>(),
    ) {
        let config = Rc::new(Config::parse(CONFIG.replace("MODE", mode).as_bytes(), |_| None).unwrap());
        let (mock, _) = guard("POST", &format!("{path}?sig=k"), &[("content-type", "application/json")]);
        let mut g = Guard::new(Rc::clone(&mock), config);
        g.on_request_headers(false);
        // Only a streamed head can be answered before its body.
        let early = early && mode == "stream";
        if !early {
            let body = if path == "/a" { DOC } else { ENVELOPE };
            feed(&mock, &mut g, body.as_bytes());
            prop_assert!(mock.sent.borrow().is_none(), "refused before the upstream answered");
        }
        *mock.status.borrow_mut() = Some(status);
        g.on_response_headers();
        let told = mock.sent_status().or(*mock.status.borrow()).unwrap_or(0);
        if (200..300).contains(&told) {
            prop_assert!((200..300).contains(&status) && !early, "{} told {} for upstream {} (early: {})", path, told, status, early);
            prop_assert!(path == "/a" || told == 200, "a vendor counts only 200");
        } else {
            prop_assert!(retried(path, told), "{} told {} for upstream {}: the sender drops the event", path, told, status);
        }
    }
}
