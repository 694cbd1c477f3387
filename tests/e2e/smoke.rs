//! Every stage under each deployment form: `make test` runs this module against every
//! supported Envoy (the rest of the suite runs on the pinned one).
//!
//! The forms: `hold` with `allow_on_headers_stop_iteration` (plain Envoy, Istio
//! `EnvoyFilter`), `stream` without it (Istio `WasmPlugin`, Envoy Gateway), `stream` with
//! it, and `hold` without it (a misconfiguration: answered 503, never a hang).

use crate::config::{assert_envoy_accepts, with_envoyfilter};
use crate::harness::{eventually, post_json, send, send_paced, Behaviour, Envoy, Options, Response, Upstream};
use crate::{target, CATALOG_SAMPLE, SECRET};
use std::time::Duration;

const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

fn plugin(header_mode: &str) -> String {
    format!(
        r#"{{"header_mode": "{header_mode}", "endpoints": [
  {{"name": "azure", "path": "/api/resource", "profile": "azure_managed_app", "secret": {{"values": ["{SECRET}"]}}, "max_body_bytes": 4096}},
  {{"name": "limited", "path": "/limited", "profile": "azure_managed_app", "secret": {{"values": ["{SECRET}"]}},
    "rate_limit": {{"per_second": 0.001, "burst": 1}}}},
  {{"name": "store", "path": "/hooks/store", "profile": "md5_envelope", "secret": {{"values": ["{SECRET}"]}}, "answer_ping": true}},
  {{"name": "once", "path": "/once", "profile": "azure_managed_app", "secret": {{"values": ["{SECRET}"]}},
    "dedupe_seconds": 3600, "rate_limit": {{"per_second": 0.001, "burst": 2, "key": "application"}}}}]}}"#
    )
}

fn start(header_mode: &str, stop_iteration: bool, upstream: &Upstream) -> Envoy {
    let mut opts = Options::new(&plugin(header_mode), upstream.port);
    opts.stop_iteration = stop_iteration;
    Envoy::start_with(opts)
}

fn signed(path: &str) -> String {
    format!("{path}?sig={SECRET}")
}

/// Head refusal, body refusal, forward, upstream failure and rate limit through one Envoy.
fn every_stage(header_mode: &str, stop_iteration: bool) {
    let held = header_mode == "hold";
    let upstream = Upstream::start();
    let envoy = start(header_mode, stop_iteration, &upstream);

    // Head: refused before anything goes upstream, in every form.
    post_json(envoy.port, &target("sig=wrong"), CATALOG_SAMPLE.as_bytes()).assert_problem(403, "forbidden");
    upstream.assert_untouched();

    // Body: sent slowly, so that a streamed head reaches the upstream before the body.
    let refused = send_paced(envoy.port, "POST", &signed("/api/resource"), JSON, br#"{"eventType": "PUT"}"#, 5, Duration::from_millis(50));
    refused.assert_problem(400, "invalid");
    if held {
        upstream.assert_untouched();
    } else {
        // The upstream got the cleaned head, then the request was reset: never a body.
        assert!(eventually(|| upstream.heads().len() == 1), "no head upstream: {:?}", upstream.heads());
        let head = &upstream.heads()[0];
        assert_eq!(head.path, "/api/resource");
        assert_eq!(head.header("x-webhook-endpoint"), Some("azure"));
        assert_eq!(head.header("transfer-encoding"), Some("chunked"));
        assert!(upstream.requests().is_empty(), "a refused body reached the upstream: {:?}", upstream.requests());
    }

    // Forward: a CloudEvent; the event id is a header only when the head was held.
    assert_eq!(post_json(envoy.port, &signed("/api/resource"), CATALOG_SAMPLE.as_bytes()).status, 200);
    // Recorded before the upstream answers (`taken()` could still lag the sender's 200).
    let taken = upstream.requests();
    assert_eq!(taken.len(), 1, "{taken:#?}");
    let event = taken[0].json();
    assert_eq!(event["type"], "webhookguard.azure.managedapp.put.succeeded");
    assert_eq!(taken[0].path, "/api/resource");
    assert_eq!(taken[0].header("content-type"), Some("application/cloudevents+json"));
    assert_eq!(taken[0].header("x-webhook-endpoint"), Some("azure"));
    assert_eq!(taken[0].header("x-webhook-event-id"), if held { event["id"].as_str() } else { None });

    // Upstream failure: an upstream 5xx and a reset reach the sender as 5xx (retried).
    upstream.set(Behaviour::Status(500));
    assert_eq!(post_json(envoy.port, &signed("/api/resource"), CATALOG_SAMPLE.as_bytes()).status, 500);
    upstream.set(Behaviour::Close);
    assert_eq!(post_json(envoy.port, &signed("/api/resource"), CATALOG_SAMPLE.as_bytes()).status, 503);
    upstream.set(Behaviour::Status(200));

    // Rate limit (global, on the head): one token, then 429 with Retry-After.
    assert_eq!(post_json(envoy.port, &signed("/limited"), CATALOG_SAMPLE.as_bytes()).status, 200);
    let limited = post_json(envoy.port, &signed("/limited"), CATALOG_SAMPLE.as_bytes());
    limited.assert_problem(429, "rate_limited");
    assert!(limited.header("retry-after").is_some());
    assert_eq!(envoy.counter("forwarded_total", &[("endpoint", "azure")]), 3);
    assert_eq!(envoy.counter("rejected_total", &[("endpoint", "azure"), ("reason", "invalid")]), 1);
    assert_eq!(envoy.counter("rejected_total", &[("endpoint", "limited"), ("reason", "rate_limited")]), 1);
}

#[test]
fn smoke_hold_with_the_flag() {
    every_stage("hold", true);
}

#[test]
fn smoke_stream_without_the_flag() {
    every_stage("stream", false);
}

#[test]
fn smoke_stream_with_the_flag() {
    every_stage("stream", true);
}

#[test]
fn smoke_hold_without_the_flag_answers_503_instead_of_hanging() {
    let upstream = Upstream::start();
    let envoy = start("hold", false, &upstream);
    post_json(envoy.port, &target("sig=wrong"), CATALOG_SAMPLE.as_bytes()).assert_problem(403, "forbidden");
    let stuck = post_json(envoy.port, &signed("/api/resource"), CATALOG_SAMPLE.as_bytes());
    stuck.assert_problem(503, "head_not_held");
    assert!(stuck.header("retry-after").is_some());
    upstream.assert_untouched();
    assert_eq!(envoy.counter("rejected_total", &[("endpoint", "azure"), ("reason", "head_not_held")]), 1);
    let log = envoy.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("allow_on_headers_stop_iteration")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("[error]") && lines[0].contains("endpoint=azure"), "{}", lines[0]);
}

fn envelope(payload: &str) -> String {
    use md5::{Digest, Md5};
    let md5: String = Md5::digest(payload.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    format!(r#"{{"payload": {payload}, "md5": "{md5}"}}"#)
}

/// Answers decided on the body are local replies in `stream` too: a ping, a duplicate,
/// a per-application limit.
#[test]
fn smoke_stream_answers_from_the_body_without_the_flag() {
    let upstream = Upstream::start();
    let envoy = start("stream", false, &upstream);
    let ping = send(envoy.port, "POST", &signed("/hooks/store"), JSON, envelope(r#"{"type": "ping"}"#).as_bytes());
    assert_eq!(ping.status, 200);
    assert_eq!(ping.header("x-webhook-answered-by"), Some("webhook-guard"));
    let once = |body: &str| -> Response { post_json(envoy.port, &signed("/once"), body.as_bytes()) };
    assert_eq!(once(CATALOG_SAMPLE).status, 200);
    let copy = once(CATALOG_SAMPLE);
    assert_eq!((copy.status, copy.header("x-webhook-duplicate")), (200, Some("true")));
    // Same application, a third event: the application's two tokens are spent.
    once(&CATALOG_SAMPLE.replace("Succeeded", "Accepted")).assert_problem(429, "rate_limited");
    assert_eq!(upstream.requests().len(), 1, "answered locally, never a complete request upstream: {:#?}", upstream.requests());
}

/// Istio's EnvoyFilters patched into a bootstrap and validated by this Envoy: Istio
/// 1.28–1.31 ship Envoy 1.36–1.39, so `make test` runs this on each of them.
#[test]
fn istio_envoyfilters_are_accepted() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |file: &str| std::fs::read_to_string(root.join(file)).unwrap();
    for (file, bootstrap) in [("examples/istio/envoyfilter.yaml", "envoy.yaml"), ("examples/fleet/istio-envoyfilter.yaml", "examples/fleet/envoy.yaml")] {
        assert_envoy_accepts(file, &with_envoyfilter(&read(bootstrap), &read(file)));
    }
}
