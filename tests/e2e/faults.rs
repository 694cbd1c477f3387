//! Upstream faults under concurrent load: whatever goes wrong behind the filter, a sender
//! is told "delivered" only for an event the upstream took (answered 2xx), and every other
//! answer is one the sender retries, so no event is lost.
//!
//! Each case runs 8 client threads x 10 unique events (half Azure, half vendor) against one
//! Envoy with two workers. Azure retries 404, 429 and 5xx; the vendor retries anything but 200.

use crate::harness::{try_raw, Behaviour, Envoy, Options, Upstream};
use crate::{CATALOG_SAMPLE, SECRET};
use md5::{Digest, Md5};
use std::collections::{HashMap, HashSet};
use std::thread;
use std::time::{Duration, Instant};

const THREADS: usize = 8;
const PER_THREAD: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sender {
    Azure,
    Vendor,
}

impl Sender {
    /// Whether the sender sends this event again after this answer.
    fn retries(self, status: u16) -> bool {
        match self {
            Sender::Azure => status == 404 || status == 429 || status >= 500,
            Sender::Vendor => status != 200,
        }
    }
}

/// One request as the sender saw it.
#[derive(Debug)]
struct Sent {
    sender: Sender,
    /// The event id the filter derives for this notification (computed here independently).
    id: String,
    /// 0 when the connection ended without an answer.
    status: u16,
    problem_type: Option<String>,
}

fn plugin(extra: &str) -> String {
    format!(
        r#"{{"header_mode": "hold", "endpoints": [
  {{"name": "azure", "path": "/api/resource", "profile": "azure_managed_app", "secret": {{"values": ["{SECRET}"]}}{extra}}},
  {{"name": "store", "path": "/hooks/store", "profile": "md5_envelope", "secret": {{"values": ["{SECRET}"]}}{extra}}}]}}"#
    )
}

fn start(extra: &str, upstream_port: u16, route_timeout_ms: u64) -> Envoy {
    let mut opts = Options::new(&plugin(extra), upstream_port);
    opts.concurrency = 2;
    opts.route_timeout_ms = route_timeout_ms;
    Envoy::start_with(opts)
}

/// The documented event id: UUID v3 of `name` in webhook-guard's namespace.
fn event_id(name: &str) -> String {
    const NAMESPACE: [u8; 16] = [0x6f, 0x1c, 0x0e, 0x5a, 0x3b, 0x7d, 0x4e, 0x21, 0x9a, 0x52, 0xc4, 0x8d, 0x17, 0xe3, 0x0b, 0x96];
    let mut b: [u8; 16] = Md5::new().chain_update(NAMESPACE).chain_update(name.as_bytes()).finalize().into();
    b[6] = (b[6] & 0x0f) | 0x30;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

const TIME: &str = "2024-03-01T10:00:00.1234567Z";

/// A unique notification for client `t`, request `i`: (sender, target, content type, body, event id).
fn notification(t: usize, i: usize) -> (Sender, String, &'static str, String, String) {
    if t.is_multiple_of(2) {
        let app = format!("/subscriptions/sub-{t}/resourceGroups/rg/providers/Microsoft.Solutions/applications/app-{t}-{i}");
        let body = format!(
            r#"{{"eventType": "PUT", "provisioningState": "Succeeded", "applicationId": "{app}", "eventTime": "{TIME}",
  "applicationDefinitionId": "/subscriptions/sub-{t}/resourceGroups/rg/providers/Microsoft.Solutions/applicationDefinitions/d"}}"#
        );
        let id = event_id(&format!("azure_managed_app\n{}\nPUT\nSucceeded\n{TIME}", app.to_ascii_lowercase()));
        (Sender::Azure, format!("/api/resource?sig={SECRET}"), "application/json", body, id)
    } else {
        let payload = format!(r#"{{"type": "purchase", "order_id": "o-{t}-{i}", "epoch_timestamp": 1700000000}}"#);
        let md5 = md5_hex(payload.as_bytes());
        let body = format!(r#"{{"payload": {payload}, "md5": "{md5}"}}"#);
        (Sender::Vendor, format!("/hooks/store?sig={SECRET}"), "application/json", body, event_id(&format!("md5_envelope\npurchase\n{md5}")))
    }
}

/// THREADS clients each send PER_THREAD unique events at once.
fn load(port: u16) -> Vec<Sent> {
    thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    (0..PER_THREAD)
                        .map(|i| {
                            let (sender, target, content_type, body, id) = notification(t, i);
                            let method = if sender == Sender::Vendor && i % 2 == 1 { "PUT" } else { "POST" };
                            let request = format!(
                                "{method} {target} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            let res = try_raw(port, request.as_bytes());
                            let status = res.as_ref().map_or(0, |r| r.status);
                            let problem_type = res
                                .filter(|r| r.header("content-type") == Some("application/problem+json"))
                                .map(|r| r.json()["type"].as_str().unwrap_or_default().to_string());
                            Sent { sender, id, status, problem_type }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// The ids of the events the upstream took (answered 2xx), checking each was sent once.
fn taken(upstream: &Upstream) -> HashSet<String> {
    let ids: Vec<String> = upstream.taken().iter().map(|r| r.header("x-webhook-event-id").unwrap().to_string()).collect();
    let set: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(set.len(), ids.len(), "an event was delivered to the upstream twice");
    set
}

/// The invariants every fault case shares: every event got an answer, no 2xx for an
/// event the upstream did not take, and `retryable` holds for every other answer.
fn assert_safe(sent: &[Sent], taken: &HashSet<String>, retryable: impl Fn(&Sent) -> bool) {
    assert_eq!(sent.len(), THREADS * PER_THREAD);
    let ids: HashSet<&str> = sent.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids.len(), sent.len(), "events must be unique");
    let false_deliveries: Vec<&Sent> = sent.iter().filter(|s| (200..300).contains(&s.status) && !taken.contains(&s.id)).collect();
    assert_eq!(false_deliveries.len(), 0, "2xx for events the upstream did not take: {false_deliveries:#?}");
    let lost: Vec<&Sent> = sent.iter().filter(|s| !(200..300).contains(&s.status) && !retryable(s)).collect();
    assert!(lost.is_empty(), "answers the sender will not retry: {lost:#?}");
}

fn assert_vm_alive(envoy: &Envoy, sent: &[Sent]) {
    let mut counts: Vec<(u16, usize)> = statuses(sent).into_iter().collect();
    counts.sort_unstable();
    eprintln!("statuses the senders saw: {counts:?}");
    let log = envoy.log();
    for sign in ["panicked", "RuntimeError", "VM failed", "wasm trap"] {
        assert!(!log.contains(sign), "Envoy's log shows a dead VM ({sign}):\n{log}");
    }
}

fn statuses(sent: &[Sent]) -> HashMap<u16, usize> {
    let mut counts = HashMap::new();
    for s in sent {
        *counts.entry(s.status).or_default() += 1;
    }
    counts
}

#[test]
fn event_id_derivation_matches_the_fixture() {
    let app = "/subscriptions/<subId>/resourceGroups/<rgName>/providers/Microsoft.Solutions/applications/<applicationName>";
    let id = event_id(&format!("azure_managed_app\n{}\nPUT\nSucceeded\n2019-08-14T19:20:08.1707163Z", app.to_ascii_lowercase()));
    assert_eq!(id, include_str!("ids/catalog_sample.txt").trim());
    assert!(CATALOG_SAMPLE.contains("2019-08-14T19:20:08.1707163Z"));
}

#[test]
fn upstream_refusing_connections_is_503_for_every_event() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let envoy = start("", port, 5000);
    let sent = load(envoy.port);
    assert_safe(&sent, &HashSet::new(), |s| s.sender.retries(s.status));
    assert_eq!(statuses(&sent), HashMap::from([(503, THREADS * PER_THREAD)]));
    assert_vm_alive(&envoy, &sent);
}

#[test]
fn upstream_closing_mid_request_is_503_for_every_event() {
    let upstream = Upstream::start();
    upstream.set(Behaviour::Close);
    let envoy = start("", upstream.port, 5000);
    let sent = load(envoy.port);
    assert_safe(&sent, &taken(&upstream), |s| s.sender.retries(s.status));
    assert_eq!(statuses(&sent), HashMap::from([(503, THREADS * PER_THREAD)]));
    assert_eq!(upstream.requests().len(), THREADS * PER_THREAD, "every event was forwarded once");
    assert_vm_alive(&envoy, &sent);
}

#[test]
fn upstream_slower_than_the_route_timeout_is_504_for_every_event() {
    let upstream = Upstream::start();
    upstream.set(Behaviour::Delay(Duration::from_millis(1200)));
    let envoy = start("", upstream.port, 250);
    let started = Instant::now();
    let sent = load(envoy.port);
    // The upstream may still answer 200 after Envoy gave up: it then took an event whose
    // sender got 504 and will resend it (a duplicate with the same id, never a loss).
    assert_safe(&sent, &HashSet::new(), |s| s.sender.retries(s.status));
    assert_eq!(statuses(&sent), HashMap::from([(504, THREADS * PER_THREAD)]));
    assert!(started.elapsed() < Duration::from_secs(15), "the route timeout did not cut the waits short");
    assert_vm_alive(&envoy, &sent);
}

#[test]
fn upstream_5xx_passes_through_and_is_retried() {
    let upstream = Upstream::start();
    upstream.set(Behaviour::Cycle(&[500, 502, 503, 504]));
    let envoy = start("", upstream.port, 5000);
    let sent = load(envoy.port);
    assert_safe(&sent, &taken(&upstream), |s| s.sender.retries(s.status));
    let answered: HashMap<String, u16> = upstream.answered().into_iter().map(|(r, st)| (r.header("x-webhook-event-id").unwrap().to_string(), st)).collect();
    for s in &sent {
        assert_eq!(Some(&s.status), answered.get(&s.id), "the sender must see the upstream's 5xx: {s:?}");
    }
    assert_vm_alive(&envoy, &sent);
}

#[test]
fn upstream_4xx_becomes_502_under_the_default_retry_setting() {
    let upstream = Upstream::start();
    upstream.set(Behaviour::Cycle(&[400, 404, 409, 422, 429]));
    let envoy = start(r#", "upstream_4xx": "retry""#, upstream.port, 5000);
    let sent = load(envoy.port);
    assert_safe(&sent, &taken(&upstream), |s| s.sender.retries(s.status));
    let answered: HashMap<String, u16> = upstream.answered().into_iter().map(|(r, st)| (r.header("x-webhook-event-id").unwrap().to_string(), st)).collect();
    assert_eq!(answered.len(), sent.len());
    for s in &sent {
        // 429 already tells both senders to retry; every other 4xx is turned into 502.
        match answered[&s.id] {
            429 => assert_eq!(s.status, 429, "{s:?}"),
            _ => {
                assert_eq!(s.status, 502, "{s:?}");
                assert_eq!(s.problem_type.as_deref(), Some("urn:webhook-guard:problem:upstream_rejected"));
            }
        }
    }
    assert_vm_alive(&envoy, &sent);
}

#[test]
fn upstream_4xx_passes_through_unchanged_when_the_operator_chose_pass() {
    let upstream = Upstream::start();
    upstream.set(Behaviour::Cycle(&[409, 404, 400, 429]));
    let envoy = start(r#", "upstream_4xx": "pass""#, upstream.port, 5000);
    let sent = load(envoy.port);
    let answered: HashMap<String, u16> = upstream.answered().into_iter().map(|(r, st)| (r.header("x-webhook-event-id").unwrap().to_string(), st)).collect();
    // "pass" is the operator's explicit choice to let the backend speak for itself: Azure
    // will not retry a 400 or 409 (that event is dropped by the sender, as the backend
    // asked), so the check here is that the status is exactly the upstream's, never a 2xx.
    assert_safe(&sent, &taken(&upstream), |s| s.status == answered[&s.id]);
    for s in &sent {
        assert_eq!(Some(&s.status), answered.get(&s.id), "{s:?}");
        assert!(s.problem_type.is_none(), "the upstream's own answer is passed, not a problem: {s:?}");
    }
    let retried = sent.iter().filter(|s| s.sender.retries(s.status)).count();
    let azure_final = sent.iter().filter(|s| s.sender == Sender::Azure && matches!(s.status, 400 | 409)).count();
    assert_eq!(retried + azure_final, sent.len(), "only Azure's 400/409 are final");
    assert_vm_alive(&envoy, &sent);
}

#[test]
fn alternating_upstream_every_2xx_is_an_event_the_upstream_took() {
    let upstream = Upstream::start();
    upstream.set(Behaviour::Cycle(&[200, 500, 204, 503, 201]));
    let envoy = start("", upstream.port, 5000);
    let sent = load(envoy.port);
    let took = taken(&upstream);
    assert_safe(&sent, &took, |s| s.sender.retries(s.status));
    let delivered: HashSet<String> = sent.iter().filter(|s| (200..300).contains(&s.status)).map(|s| s.id.clone()).collect();
    assert_eq!(delivered, took, "the events the senders were told are delivered must be exactly those the upstream took");
    assert!(!took.is_empty() && took.len() < sent.len(), "the cycle must mix successes and failures");
    // The vendor counts only 200 as delivered: the filter turns 201/204 into 200.
    for s in sent.iter().filter(|s| s.sender == Sender::Vendor && took.contains(&s.id)) {
        assert_eq!(s.status, 200, "{s:?}");
    }
    // Azure sees the upstream's status as is.
    let answered: HashMap<String, u16> = upstream.answered().into_iter().map(|(r, st)| (r.header("x-webhook-event-id").unwrap().to_string(), st)).collect();
    for s in sent.iter().filter(|s| s.sender == Sender::Azure) {
        assert_eq!(Some(&s.status), answered.get(&s.id), "{s:?}");
    }
    assert_eq!(upstream.requests().len(), sent.len(), "each event was forwarded exactly once");
    assert_vm_alive(&envoy, &sent);
}
