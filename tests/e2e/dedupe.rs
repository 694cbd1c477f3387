//! Duplicate suppression: recorded only after the upstream took the event.

use crate::harness::{eventually, post_json, Behaviour, Envoy, Options, Upstream};
use crate::{azure_plugin, target, CATALOG_SAMPLE, MARKETPLACE_SAMPLE, SECRET};
use std::io::Write;
use std::net::{Shutdown, TcpStream};
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
    assert!(eventually(|| upstream.requests().len() == 1), "the first copy never reached the upstream");
    let copy = post_json(envoy.port, &signed(), CATALOG_SAMPLE.as_bytes());
    copy.assert_problem(429, "in_flight");
    assert_eq!(copy.header("retry-after"), Some("1"));
    assert_eq!(first.join().unwrap().status, 200);
    assert_eq!(upstream.requests().len(), 1);
}

#[test]
fn a_sender_that_hangs_up_before_the_answer_can_retry_at_once() {
    let (upstream, envoy) = setup();
    upstream.set(Behaviour::Delay(Duration::from_secs(5)));
    // The sender gives up while the upstream is slow: the stream ends without an answer.
    let mut conn = TcpStream::connect(("127.0.0.1", envoy.port)).unwrap();
    let head = format!("POST {} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", signed(), CATALOG_SAMPLE.len());
    conn.write_all(&[head.as_bytes(), CATALOG_SAMPLE.as_bytes()].concat()).unwrap();
    assert!(eventually(|| upstream.requests().len() == 1), "the event never reached the upstream");
    conn.shutdown(Shutdown::Both).unwrap();
    drop(conn);
    upstream.set(Behaviour::Status(200));
    // Until Envoy has ended the stream a copy is in flight (429 in_flight, retried); then
    // the retry is forwarded, not held off for the in-flight window.
    let mut statuses = Vec::new();
    let forwarded = eventually(|| {
        let retry = post_json(envoy.port, &signed(), CATALOG_SAMPLE.as_bytes());
        if retry.status == 429 {
            retry.assert_problem(429, "in_flight");
        }
        statuses.push(retry.status);
        retry.status == 200 && retry.header("x-webhook-duplicate").is_none()
    });
    statuses.dedup();
    assert!(forwarded, "the retry never reached the upstream, answered {statuses:?}");
    assert_eq!(upstream.requests().len(), 2);
    // Now delivered: a further copy is a duplicate.
    let copy = post_json(envoy.port, &signed(), CATALOG_SAMPLE.as_bytes());
    assert_eq!((copy.status, copy.header("x-webhook-duplicate")), (200, Some("true")));
    assert_eq!(upstream.requests().len(), 2);
}
