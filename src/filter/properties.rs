//! Property of the whole flow over the mock host: with default settings, an authenticated
//! Azure notification that is a strict JSON object with its four identifying fields
//! usable is forwarded, and its sender is never told a 4xx Azure would drop it on.

#[path = "../../tests/support/drift.rs"]
mod drift;

use super::mock::{feed, guard};
use super::Guard;
use crate::profile::azure_managed_app::notification as azure;
use crate::config::Config;
use crate::metrics::Counter;
use crate::timestamp::days_in_month;
use drift::{drifting_doc, Drifting};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::rc::Rc;

/// Default settings but for the head mode, which is drawn.
const CONFIG: &str = r#"{"header_mode":"MODE","endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["k"]}}]}"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: Some(Box::new(FileFailurePersistence::Off)), ..ProptestConfig::default() })]

    #[test]
    fn a_usable_notification_is_forwarded_and_never_dropped(doc in drifting_doc(), mode in prop::sample::select(vec!["hold", "stream"])) {
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
}
