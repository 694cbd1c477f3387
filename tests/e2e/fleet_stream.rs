//! The fleet with the filter asking the rate limit service itself (`global_rate_limit`):
//! two replicas of `examples/fleet/envoy-global-rate-limit.yaml` in `"header_mode":
//! "stream"` without `allow_on_headers_stop_iteration` (the Istio WasmPlugin and Envoy
//! Gateway form), 2 workers each, one tools/ratelimit-service on a real Redis, one
//! recording upstream. The scenarios shared with the ratelimit-filter path are fleet.rs's.

use crate::fleet::{
    self, application_key, deliver, notification, replica, replica_config, taken, FleetLimit, RateLimitService, Redis, LIMIT, SIG, SUBSCRIPTION,
};
use crate::harness::{Response, Upstream};
use std::io::Read;
use std::net::TcpListener;
use std::thread;

const EXAMPLE: &str = "envoy-global-rate-limit.yaml";

const GLOBAL_RATE_LIMIT: FleetLimit = FleetLimit { example: EXAMPLE, refused: is_fleet_429, failed_open: "outcome=.=failed_open;.;global_rate_limit_total" };

/// webhook-guard's own 429 for the fleet's limit.
fn is_fleet_429(r: &Response) -> bool {
    r.status == 429
        && r.header("content-type") == Some("application/problem+json")
        && r.json()["type"] == "urn:webhook-guard:problem:rate_limited"
        && r.json()["detail"].as_str().is_some_and(|d| d.starts_with("fleet rate limit for application"))
}

#[test]
fn the_example_needs_no_flag_no_filter_and_no_route_patch() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fleet/envoy-global-rate-limit.yaml")).unwrap();
    let settings: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    let settings = settings.join("\n");
    for absent in ["allow_on_headers_stop_iteration", "envoy.filters.http.ratelimit", "rate_limits:", "\"hold\""] {
        assert!(!settings.contains(absent), "{absent}");
    }
    assert!(settings.contains(r#""header_mode": "stream""#) && settings.contains(r#""global_rate_limit""#));
}

#[test]
fn the_application_limit_holds_across_streamed_replicas() {
    fleet::the_application_limit_holds(&GLOBAL_RATE_LIMIT);
}

#[test]
fn only_forwarded_notifications_use_quota_and_descriptors_cannot_be_spoofed() {
    fleet::only_forwarded_notifications_use_quota(&GLOBAL_RATE_LIMIT);
}

#[test]
fn after_a_fleet_429_the_retry_is_forwarded_not_held_in_flight() {
    fleet::after_a_429_the_retry_is_forwarded(&GLOBAL_RATE_LIMIT);
}

#[test]
fn a_failed_service_lets_notifications_through_and_counts_them() {
    fleet::a_failed_service_fails_open(&GLOBAL_RATE_LIMIT);
}

/// A port that accepts connections and reads them but never answers: a service past any
/// timeout.
fn silent_service() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut sink = [0u8; 1024];
                while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    port
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_slow_or_unreachable_service_forwards_by_default_or_holds_with_503() {
    let upstream = Upstream::start();
    // Past the 500 ms timeout: forwarded, counted.
    let slow = replica(&replica_config(EXAMPLE, upstream.port, silent_service()), &upstream);
    assert_eq!(deliver(&slow, &notification("app-s", 0)).status, 200);
    assert_eq!(taken(&upstream, "app-s"), 1);
    assert_eq!(slow.counter("global_rate_limit_total", &[("outcome", "failed_open")]), 1);
    // A cluster Envoy does not have: the same, never a trap.
    let config = replica_config(EXAMPLE, upstream.port, closed_port()).replace(r#""cluster": "ratelimit""#, r#""cluster": "no-such-cluster""#);
    let misnamed = replica(&config, &upstream);
    for n in 0..2 {
        assert_eq!(deliver(&misnamed, &notification("app-m", n)).status, 200);
    }
    assert_eq!(misnamed.counter("global_rate_limit_total", &[("outcome", "failed_open")]), 2);
    // "on_error": "hold": 503 with Retry-After (both senders retry it), nothing upstream,
    // for a slow service and for an unreachable one.
    for service in [silent_service(), closed_port()] {
        let config = replica_config(EXAMPLE, upstream.port, service).replace(r#""on_error": "forward""#, r#""on_error": "hold""#);
        let held = replica(&config, &upstream);
        let answer = deliver(&held, &notification("app-h", 0));
        answer.assert_problem(503, "rate_limit_unavailable");
        assert_eq!(answer.header("retry-after"), Some("5"));
        assert_eq!(taken(&upstream, "app-h"), 0);
        assert_eq!(held.counter("global_rate_limit_total", &[("outcome", "error")]), 1);
        assert!(!String::from_utf8_lossy(&answer.body).contains(SIG));
    }
}

/// The same setting with the head held (`"header_mode": "hold"` and the flag): the limit
/// holds across replicas, and the forwarded request carries the descriptor headers too.
#[test]
fn with_a_held_head_the_limit_holds_the_same() {
    let redis = Redis::start();
    let service = RateLimitService::start(&redis);
    let upstream = Upstream::start();
    let config = replica_config(EXAMPLE, upstream.port, service.port)
        .replace(r#""header_mode": "stream""#, r#""header_mode": "hold""#)
        .replace("failure_policy: FAIL_RELOAD", "allow_on_headers_stop_iteration: true\n                failure_policy: FAIL_RELOAD");
    let replicas = [replica(&config, &upstream), replica(&config, &upstream)];
    let answers: Vec<Response> = (0..2 * LIMIT as u32).map(|n| deliver(&replicas[n as usize % 2], &notification("app-k", n))).collect();
    assert_eq!(answers.iter().filter(|r| r.status == 200).count(), LIMIT, "{answers:#?}");
    assert!(answers.iter().all(|r| r.status == 200 || is_fleet_429(r)), "{answers:#?}");
    assert_eq!(taken(&upstream, "app-k"), LIMIT);
    let seen = upstream.taken();
    assert_eq!(seen[0].header("x-webhook-application"), Some(application_key("app-k").as_str()));
    assert_eq!(seen[0].header("x-webhook-subscription"), Some(SUBSCRIPTION));
}
