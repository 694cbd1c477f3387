//! Rate limiting across Envoy workers: one bucket in shared data for every worker's VM.

use crate::harness::{post_json, Envoy, Options, Upstream};
use crate::{azure_plugin, target, SECRET};
use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

fn notification(app: &str, n: usize) -> String {
    format!(
        r#"{{"eventType": "PUT", "provisioningState": "Succeeded", "eventTime": "2024-03-01T10:00:00.{n:07}Z",
  "applicationId": "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Solutions/applications/{app}",
  "applicationDefinitionId": "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Solutions/applicationDefinitions/d"}}"#
    )
}

struct Outcome {
    status: u16,
    retry_after: Option<String>,
}

/// `clients` threads send unique notifications as fast as they can for `duration`.
fn hammer(port: u16, clients: usize, duration: Duration, app: impl Fn(usize) -> String + Sync) -> (Vec<Outcome>, Duration) {
    let start = Instant::now();
    let outcomes = thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let app = &app;
                s.spawn(move || {
                    let mut out = Vec::new();
                    let mut i = 0;
                    while start.elapsed() < duration {
                        let n = c * 100_000 + i;
                        let res = post_json(port, &target(&format!("sig={SECRET}")), notification(&app(n), n).as_bytes());
                        out.push(Outcome { status: res.status, retry_after: res.header("retry-after").map(str::to_string) });
                        i += 1;
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    (outcomes, start.elapsed())
}

fn assert_shed_correctly(outcomes: &[Outcome]) {
    for o in outcomes {
        match o.status {
            200 => {}
            429 => {
                let secs: u64 = o.retry_after.as_deref().unwrap_or("").parse().expect("numeric Retry-After");
                assert!(secs >= 1);
            }
            other => panic!("unexpected status {other}"),
        }
    }
}

#[test]
fn global_bucket_is_shared_by_every_worker() {
    let (per_second, burst) = (20.0, 40.0);
    let upstream = Upstream::start();
    let plugin = azure_plugin(r#", "rate_limit": {"per_second": 20, "burst": 40, "key": "global"}"#);
    let mut opts = Options::new(&plugin, upstream.port);
    opts.concurrency = 2;
    let envoy = Envoy::start_with(opts);

    let (outcomes, elapsed) = hammer(envoy.port, 16, Duration::from_secs(3), |_| "app".to_string());
    assert_shed_correctly(&outcomes);
    let accepted = outcomes.iter().filter(|o| o.status == 200).count();
    let limited = outcomes.len() - accepted;
    let bound = burst + per_second * elapsed.as_secs_f64();
    let received = upstream.requests();
    println!("sent {} in {:.2}s: upstream {} (bound {bound:.1}), 429 {limited}", outcomes.len(), elapsed.as_secs_f64(), received.len());
    assert!(outcomes.len() as f64 > 3.0 * bound, "the burst must be far above the limit");
    assert!(received.len() as f64 <= bound * 1.01, "{} forwarded, bound {bound:.1}", received.len());
    assert!(received.len() as f64 >= bound * 0.9, "{} forwarded, expected at least 90% of {bound:.1}", received.len());
    assert_eq!(received.len(), accepted, "every 200 is one upstream request, every 429 none");
    let ids: HashSet<_> = received.iter().map(|r| r.header("x-webhook-event-id").unwrap().to_string()).collect();
    assert_eq!(ids.len(), received.len(), "nothing was forwarded twice");
}

#[test]
fn application_buckets_are_independent() {
    let upstream = Upstream::start();
    let plugin = azure_plugin(r#", "rate_limit": {"per_second": 1, "burst": 5, "key": "application"}"#);
    let mut opts = Options::new(&plugin, upstream.port);
    opts.concurrency = 2;
    let envoy = Envoy::start_with(opts);
    let (outcomes, elapsed) = hammer(envoy.port, 4, Duration::from_secs(1), |n| format!("app-{}", n % 2));
    assert_shed_correctly(&outcomes);
    let per_app = |app: &str| upstream.requests().iter().filter(|r| r.json()["data"]["applicationName"] == app).count();
    let bound = 5.0 + elapsed.as_secs_f64();
    for app in ["app-0", "app-1"] {
        let n = per_app(app) as f64;
        assert!(n >= 5.0 && n <= bound * 1.01, "{app}: {n} forwarded, bound {bound:.1}");
    }
}
