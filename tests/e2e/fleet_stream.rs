//! The fleet with the filter asking the rate limit service itself (`global_rate_limit`):
//! two replicas of `examples/fleet/envoy-global-rate-limit.yaml` in `"header_mode":
//! "stream"` without `allow_on_headers_stop_iteration` (the Istio WasmPlugin and Envoy
//! Gateway form), 2 workers each, one tools/ratelimit-service on a real Redis, one
//! recording upstream (fleet.rs has the pieces, shared with the ratelimit-filter path).

use crate::fleet::{
    application_key, deliver, notification, notification_in, replica, replica_config, Fleet, LIMIT, SENDERS, SHORT, SIG, UPPER_SUBSCRIPTION,
};
use crate::harness::{post_json, send, Response, Upstream};
use std::io::Read;
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

const EXAMPLE: &str = "envoy-global-rate-limit.yaml";

/// webhook-guard's own 429 for the fleet's limit, with `Retry-After`.
fn is_fleet_429(r: &Response) -> bool {
    r.status == 429
        && r.header("content-type") == Some("application/problem+json")
        && r.json()["type"] == "urn:webhook-guard:problem:rate_limited"
        && r.json()["detail"].as_str().is_some_and(|d| d.starts_with("fleet rate limit for application"))
        && r.header("retry-after").is_some()
}

/// How many notifications about `app` the upstream took (by the CloudEvent's subject: a
/// streamed head carries no header derived from the body).
fn taken(upstream: &Upstream, app: &str) -> usize {
    upstream.taken().iter().filter(|r| r.json()["subject"].as_str().is_some_and(|s| s.to_ascii_lowercase() == application_key(app))).count()
}

/// Counter `outcome` of `global_rate_limit_total`, summed over both replicas.
fn outcome(fleet: &Fleet, outcome: &str) -> u64 {
    (0..2).map(|i| fleet.stat(i, &format!("outcome=.={outcome};.;global_rate_limit_total"))).sum()
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
    let fleet = Fleet::start_with(EXAMPLE);
    // Twice the limit, alternating between the replicas: exactly the limit passes.
    let answers: Vec<Response> = (0..2 * LIMIT as u32).map(|n| deliver(&fleet.replicas[n as usize % 2], &notification("app-a", n))).collect();
    let ok = answers.iter().filter(|r| r.status == 200).count();
    let refused: Vec<&Response> = answers.iter().filter(|r| is_fleet_429(r)).collect();
    assert_eq!(ok, LIMIT, "{answers:#?}");
    assert_eq!(refused.len(), LIMIT, "every other answer is the fleet's 429: {answers:#?}");
    assert_eq!(taken(&fleet.upstream, "app-a"), LIMIT);
    // A refused notification's streamed head went ahead, its body never: the upstream got
    // no complete request for it.
    assert_eq!(fleet.upstream.requests().len(), LIMIT);
    for r in &refused {
        let retry_after: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry_after), "{r:?}");
        assert!(r.header("x-ratelimit-limit").is_some_and(|v| v.starts_with(&format!("{LIMIT}, {LIMIT};w=60"))), "{r:?}");
        assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
        assert!(r.header("x-ratelimit-reset").is_some_and(|v| v.parse::<u64>().is_ok()), "{r:?}");
    }
    // At once through both replicas: within the engine's slack (fleet.rs, SENDERS).
    let wave = 4 * LIMIT;
    let answers = fleet.deliver_all((0..wave as u32).map(|n| notification("app-w", n)).collect());
    let ok = answers.iter().filter(|r| r.status == 200).count();
    assert!((LIMIT..=LIMIT + SENDERS).contains(&ok), "{ok} of {wave} passed a limit of {LIMIT} with {SENDERS} senders: {answers:#?}");
    assert!(answers.iter().all(|r| r.status == 200 || is_fleet_429(r)), "{answers:#?}");
    assert_eq!(taken(&fleet.upstream, "app-w"), ok);
    for replica in &fleet.replicas {
        assert!(is_fleet_429(&deliver(replica, &notification("app-w", 99))), "the counter is spent fleet-wide");
    }
    assert_eq!(outcome(&fleet, "limited"), (LIMIT + wave - ok + 2) as u64);
    // Another application is unaffected, on either replica.
    for (i, replica) in fleet.replicas.iter().enumerate() {
        assert_eq!(deliver(replica, &notification("app-b", i as u32)).status, 200);
    }
    assert_eq!(taken(&fleet.upstream, "app-b"), 2);
}

#[test]
fn only_forwarded_notifications_use_quota_and_descriptors_cannot_be_spoofed() {
    let fleet = Fleet::start_with(EXAMPLE);
    let [one, two] = &fleet.replicas;
    for n in 0..2 * LIMIT as u32 {
        let forged = post_json(one.port, "/api/resource?sig=wrong", notification("app-c", n).as_bytes());
        forged.assert_problem(403, "forbidden");
        let invalid = notification("app-c", n).replace(r#""eventTime":""#, r#""eventTime":"not "#);
        deliver(two, &invalid).assert_problem(400, "invalid");
    }
    // One event, then copies of it: answered as duplicates by the replica that delivered
    // it, without asking the service.
    assert_eq!(deliver(one, &notification("app-c", 100)).status, 200);
    for _ in 0..2 * LIMIT {
        let copy = deliver(one, &notification("app-c", 100));
        assert_eq!((copy.status, copy.header("x-webhook-duplicate")), (200, Some("true")));
    }
    for n in 101..100 + LIMIT as u32 {
        assert_eq!(deliver(two, &notification("app-c", n)).status, 200);
    }
    assert!(is_fleet_429(&deliver(one, &notification("app-c", 200))));
    assert_eq!(taken(&fleet.upstream, "app-c"), LIMIT);

    // The descriptors come from the validated body: headers claiming another application
    // change nothing.
    let spoof = |app: &str, claimed: &str, n: u32| {
        let headers = [("content-type", "application/json"), ("x-webhook-endpoint", "azure"), ("x-webhook-application", claimed), ("x-webhook-subscription", "other")];
        send(two.port, "POST", &format!("/api/resource?sig={SIG}"), &headers, notification(app, n).as_bytes())
    };
    assert_eq!(spoof("app-d", &application_key("app-c"), 0).status, 200);
    assert!(is_fleet_429(&spoof("app-c", &application_key("app-d"), 300)));
    assert_eq!(taken(&fleet.upstream, "app-d"), 1);

    // A subscription id in capitals is counted under its lowercase form (its limit, one
    // per minute, is written so), across replicas.
    assert_eq!(deliver(one, &notification_in(UPPER_SUBSCRIPTION, "app-u", 0)).status, 200);
    assert!(is_fleet_429(&deliver(two, &notification_in(UPPER_SUBSCRIPTION, "app-u", 1))));
}

#[test]
fn after_a_fleet_429_the_retry_is_forwarded_not_held_in_flight() {
    let fleet = Fleet::start_with(EXAMPLE);
    let one = &fleet.replicas[0];
    let refused = (0..50).map(|n| notification(SHORT, n)).find(|body| is_fleet_429(&deliver(one, body))).expect("the 2 s window refused nothing");
    let deadline = Instant::now() + Duration::from_secs(30);
    let retry = loop {
        thread::sleep(Duration::from_millis(200));
        let retry = deliver(one, &refused);
        assert!(retry.status == 200 || is_fleet_429(&retry), "{retry:?}");
        if retry.status == 200 || Instant::now() > deadline {
            break retry;
        }
    };
    assert_eq!(retry.status, 200);
    assert!(retry.header("x-webhook-duplicate").is_none(), "the retry reached the upstream");
    assert_eq!(fleet.stat(0, "reason=.=in_flight;.;status=.=429;.;rejected_total"), 0);
}

#[test]
fn a_failed_service_lets_notifications_through_and_counts_them() {
    let mut fleet = Fleet::start_with(EXAMPLE);
    let answers: Vec<Response> = (0..=LIMIT as u32).map(|n| deliver(&fleet.replicas[n as usize % 2], &notification("app-e", n))).collect();
    assert!(is_fleet_429(&answers[LIMIT]), "the limit is reached: {answers:#?}");
    // Redis gone: the service answers UNAVAILABLE; the notification goes on (on_error
    // forward), counted, each replica's local limit still applying.
    fleet.redis.process.stop();
    let answers = fleet.deliver_all((10..14).map(|n| notification("app-e", n)).collect());
    assert!(answers.iter().all(|r| r.status == 200), "{answers:#?}");
    // The service gone too: the same.
    fleet.service.process.stop();
    let answers = fleet.deliver_all((20..24).map(|n| notification("app-e", n)).collect());
    assert!(answers.iter().all(|r| r.status == 200), "{answers:#?}");
    assert_eq!(taken(&fleet.upstream, "app-e"), LIMIT + 8);
    assert_eq!(outcome(&fleet, "failed_open"), 8);
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
        // The secret never appears in what the sender is told.
        assert!(!String::from_utf8_lossy(&answer.body).contains(SIG));
    }
}
