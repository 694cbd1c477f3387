//! Duplicate suppression: recorded only after the upstream took the event.

use crate::harness::{post_json, Behaviour, Envoy, Options, Upstream};
use crate::{azure_plugin, target, CATALOG_SAMPLE, MARKETPLACE_SAMPLE, SECRET};
use std::thread;
use std::time::Duration;

fn signed() -> String {
    target(&format!("sig={SECRET}"))
}

fn setup() -> (Upstream, Envoy) {
    let upstream = Upstream::start();
    let mut opts = Options::new(&azure_plugin(r#", "dedupe_seconds": 3600"#), upstream.port);
    opts.concurrency = 2;
    let envoy = Envoy::start_with(opts);
    (upstream, envoy)
}

#[test]
fn a_delivered_event_is_answered_200_without_forwarding() {
    let (upstream, envoy) = setup();
    let first = post_json(envoy.port, &signed(), CATALOG_SAMPLE.as_bytes());
    assert_eq!(first.status, 200);
    assert!(first.header("x-webhook-duplicate").is_none());
    for _ in 0..3 {
        let copy = post_json(envoy.port, &signed(), CATALOG_SAMPLE.as_bytes());
        assert_eq!(copy.status, 200);
        assert_eq!(copy.header("x-webhook-duplicate"), Some("true"));
        assert_eq!(copy.header("x-webhook-event-id"), upstream.only().header("x-webhook-event-id"));
    }
    // A different event is still forwarded.
    assert_eq!(post_json(envoy.port, &signed(), MARKETPLACE_SAMPLE.as_bytes()).status, 200);
    assert_eq!(upstream.requests().len(), 2);
    assert_eq!(envoy.counter("duplicates_total", &[("endpoint", "azure")]), 3);
}

#[test]
fn a_failed_delivery_is_not_recorded_so_the_retry_is_forwarded() {
    let (upstream, envoy) = setup();
    for (behaviour, want) in [(Behaviour::Status(500), 500), (Behaviour::Close, 503), (Behaviour::Status(409), 502)] {
        upstream.set(behaviour);
        assert_eq!(post_json(envoy.port, &signed(), CATALOG_SAMPLE.as_bytes()).status, want);
    }
    upstream.set(Behaviour::Status(200));
    let retry = post_json(envoy.port, &signed(), CATALOG_SAMPLE.as_bytes());
    assert_eq!(retry.status, 200);
    assert!(retry.header("x-webhook-duplicate").is_none(), "the retry reached the upstream");
    assert_eq!(upstream.requests().len(), 4);
    assert_eq!(post_json(envoy.port, &signed(), CATALOG_SAMPLE.as_bytes()).header("x-webhook-duplicate"), Some("true"));
    assert_eq!(upstream.requests().len(), 4);
}

#[test]
fn a_copy_in_flight_gets_429_never_a_second_forward() {
    let (upstream, envoy) = setup();
    upstream.set(Behaviour::Delay(Duration::from_millis(1500)));
    let port = envoy.port;
    let first = thread::spawn(move || post_json(port, &signed(), CATALOG_SAMPLE.as_bytes()));
    thread::sleep(Duration::from_millis(400));
    let copy = post_json(envoy.port, &signed(), CATALOG_SAMPLE.as_bytes());
    copy.assert_problem(429, "in_flight");
    assert_eq!(copy.header("retry-after"), Some("1"));
    assert_eq!(first.join().unwrap().status, 200);
    assert_eq!(upstream.requests().len(), 1);
}
