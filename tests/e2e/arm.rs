//! The ARM check (`arm_check`): a stand-in token issuer and Azure Resource Manager
//! (tests/e2e/azure_stub.py) behind Envoy clusters, Envoy with 2 workers.

use crate::harness::{get, post_json, send, Envoy, Options, Upstream};
use crate::SECRET;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const CLIENT_SECRET: &str = "cs~Sup3r.Secret-Value_8Q";
const TENANT: &str = "contoso.onmicrosoft.com";
const CLIENT_ID: &str = "7d1b6a52-3c1e-4b4e-9a55-0c2f1e6b9d10";
const APP: &str = "/subscriptions/1f3c8f2e-5a8b-4a47-9c1e-2b7d7e0c4a11/resourceGroups/contoso-apps/providers/Microsoft.Solutions/applications/contoso-crm-01";

/// A notification as Azure sends it (real traffic: leading `/`, GUID subscription).
fn notification(event_type: &str, state: &str) -> String {
    let error = if state == "Failed" { r#","error":{"code":"DeploymentFailed","message":"At least one resource deployment operation failed."}"# } else { "" };
    format!(
        r#"{{"eventType":"{event_type}","provisioningState":"{state}","applicationId":"{APP}","eventTime":"2024-03-11T09:41:27.4456732Z",
"applicationDefinitionId":"/subscriptions/1f3c8f2e-5a8b-4a47-9c1e-2b7d7e0c4a11/resourceGroups/contoso-defs/providers/Microsoft.Solutions/applicationDefinitions/contoso-crm"{error}}}"#
    )
}

/// The stand-in Azure (token issuers and ARM), killed when dropped.
struct Azure {
    child: Child,
    port: u16,
}

impl Azure {
    fn start() -> Azure {
        Azure::start_as("{}")
    }

    /// The stand-in with the `/_control` behaviour `json` from its first request on.
    fn start_as(json: &str) -> Azure {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/azure_stub.py");
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(python).arg(script).arg(json).stdout(Stdio::piped()).spawn().expect("python3 is needed for the stand-in Azure");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("stand-in Azure did not start: {line:?}"));
        Azure { child, port }
    }

    /// Replaces the stand-in's behaviour (and forgets recorded requests).
    fn control(&self, json: &str) {
        let answer = send(self.port, "POST", "/_control", &[("content-type", "application/json")], json.as_bytes());
        assert_eq!(answer.status, 200);
    }

    fn requests(&self) -> Vec<Value> {
        serde_json::from_slice::<Value>(&get(self.port, "/_requests").body).unwrap().as_array().unwrap().clone()
    }

    fn token_requests(&self) -> Vec<Value> {
        self.requests().into_iter().filter(|r| r["path"].as_str().unwrap().contains("/oauth2/")).collect()
    }

    fn arm_requests(&self) -> Vec<Value> {
        self.requests().into_iter().filter(|r| r["path"].as_str().unwrap().starts_with("/subscriptions/")).collect()
    }
}

impl Drop for Azure {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Envoy clusters `arm` and `login` (plain HTTP to the stand-in; `login_port` may differ).
fn clusters(arm_port: u16, login_port: u16) -> String {
    cluster("arm", arm_port) + &cluster("login", login_port)
}

/// One cluster of the bootstrap's list, to 127.0.0.1:`port`.
fn cluster(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}\n"
    )
}

fn client_credentials(extra: &str) -> String {
    format!(
        r#"{{"arm_cluster": "arm", "token_cluster": "login", "timeout_ms": 1000{extra}, "client_credentials": {{"tenant": "{TENANT}", "client_id": "{CLIENT_ID}", "client_secret_env": "ARM_CLIENT_SECRET"}}}}"#
    )
}

/// The guarded endpoint `/api/resource` with `arm_check`, and `/api/plain` without.
fn plugin(arm_check: &str, extra: &str) -> String {
    format!(
        r#"{{"header_mode": "hold", "endpoints": [
  {{"name": "azure", "path": "/api/resource", "profile": "azure_managed_app", "secret": {{"values": ["{SECRET}"]}}{extra}, "arm_check": {arm_check}}},
  {{"name": "plain", "path": "/api/plain", "profile": "azure_managed_app", "secret": {{"values": ["{SECRET}"]}}}}]}}"#
    )
}

struct Setup {
    azure: Azure,
    upstream: Upstream,
    envoy: Envoy,
}

fn setup_with(arm_check: &str, extra: &str, login_port: Option<u16>) -> Setup {
    start(&plugin(arm_check, extra), login_port, true)
}

/// Envoy with `plugin`; `stop_iteration`: the Wasm filter's allow_on_headers_stop_iteration.
fn start(plugin: &str, login_port: Option<u16>, stop_iteration: bool) -> Setup {
    start_on(Azure::start(), plugin, login_port, stop_iteration)
}

fn start_on(azure: Azure, plugin: &str, login_port: Option<u16>, stop_iteration: bool) -> Setup {
    let upstream = Upstream::start();
    let mut opts = Options::new(plugin, upstream.port);
    opts.concurrency = 2;
    opts.stop_iteration = stop_iteration;
    opts.env = vec![("ARM_CLIENT_SECRET".into(), CLIENT_SECRET.into())];
    opts.clusters = clusters(azure.port, login_port.unwrap_or(azure.port));
    let envoy = Envoy::start_with(opts);
    Setup { azure, upstream, envoy }
}

fn setup(extra: &str) -> Setup {
    setup_with(&client_credentials(""), extra, None)
}

fn signed(path: &str) -> String {
    format!("{path}?sig={SECRET}")
}

fn notify(s: &Setup, event_type: &str, state: &str) -> crate::harness::Response {
    post_json(s.envoy.port, &signed("/api/resource"), notification(event_type, state).as_bytes())
}

fn arm_counter(s: &Setup, name: &str) -> u64 {
    s.envoy.counter("arm_check_total", &[("endpoint", "azure"), ("outcome", name)])
}

/// Nothing secret anywhere: not in Envoy's log, the answers, or what the upstream saw.
fn assert_no_leak(s: &Setup, answers: &[&crate::harness::Response]) {
    let tokens: Vec<String> = (1..=20).map(|n| format!("tok-{n}")).collect();
    let log = s.envoy.log();
    let upstream: Vec<String> = s.upstream.requests().iter().map(|r| format!("{r:?}{}", String::from_utf8_lossy(&r.body))).collect();
    let bodies: Vec<String> = answers.iter().map(|a| format!("{a:?}{}", String::from_utf8_lossy(&a.body))).collect();
    for text in std::iter::once(&log).chain(&upstream).chain(&bodies) {
        assert!(!text.contains(CLIENT_SECRET), "the client secret leaked: {text}");
        assert!(!text.contains(SECRET), "the sig leaked: {text}");
        // Match whole tokens: `tok-1` must not match inside `tok-10`.
        for token in &tokens {
            let leaked = text.match_indices(token.as_str()).any(|(i, _)| !text[i + token.len()..].starts_with(|c: char| c.is_ascii_digit()));
            assert!(!leaked, "token {token} leaked: {text}");
        }
    }
}

#[test]
fn a_confirmed_notification_is_forwarded_marked_verified_after_the_exact_arm_request() {
    let s = setup("");
    let answer = notify(&s, "PUT", "Succeeded");
    assert_eq!(answer.status, 200, "{answer:?}");
    let forwarded = s.upstream.only();
    assert_eq!(forwarded.header("x-webhook-verified"), Some("true"));
    assert_eq!(forwarded.json()["verified"], true);
    let token = &s.azure.token_requests()[0];
    assert_eq!(token["method"], "POST");
    assert_eq!(token["path"], format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(token["headers"]["host"], "login.microsoftonline.com");
    assert_eq!(token["headers"]["content-type"], "application/x-www-form-urlencoded");
    let form = token["body"].as_str().unwrap();
    assert_eq!(
        form,
        format!(
            "grant_type=client_credentials&client_id={CLIENT_ID}&client_secret=cs~Sup3r.Secret-Value_8Q&scope=https%3A%2F%2Fmanagement.azure.com%2F.default"
        )
    );
    let arm = s.azure.arm_requests();
    assert_eq!(arm.len(), 1);
    assert_eq!(arm[0]["method"], "GET");
    assert_eq!(arm[0]["path"], format!("{APP}?api-version=2021-07-01"));
    assert_eq!(arm[0]["headers"]["host"], "management.azure.com");
    let issued: Vec<String> = (1..=s.azure.token_requests().len()).map(|n| format!("Bearer tok-{n}")).collect();
    assert!(issued.iter().any(|t| arm[0]["headers"]["authorization"] == t.as_str()), "{arm:?}");
    assert_eq!(arm_counter(&s, "verified"), 1);
    // A later notification reuses the shared token: one more ARM call, no token call.
    let before = s.azure.token_requests().len();
    assert_eq!(notify(&s, "PATCH", "Succeeded").status, 200);
    assert_eq!((s.azure.token_requests().len(), s.azure.arm_requests().len()), (before, 2));
    assert_no_leak(&s, &[&answer]);
}

#[test]
fn lagging_arm_is_held_with_503_then_forwarded_on_the_retry() {
    let s = setup(r#", "dedupe_seconds": 3600"#);
    s.azure.control(r#"{"arm": [{"status": 200, "state": "Accepted"}, {"status": 200, "state": "Succeeded"}]}"#);
    let held = notify(&s, "PUT", "Succeeded");
    let problem = held.assert_problem(503, "unverified");
    assert_eq!(held.header("retry-after"), Some("30"));
    assert!(!problem["detail"].as_str().unwrap().contains("Accepted"), "the cause stays in the log");
    s.upstream.assert_untouched();
    assert!(s.envoy.log().contains("outcome=not_yet held status=503"), "{}", s.envoy.log());
    // Azure's retry: the in-flight mark was cleared, ARM has caught up.
    let retry = notify(&s, "PUT", "Succeeded");
    assert_eq!(retry.status, 200, "{retry:?}");
    assert_eq!(s.upstream.only().header("x-webhook-verified"), Some("true"));
    assert_eq!((arm_counter(&s, "not_yet"), arm_counter(&s, "verified")), (1, 1));
    assert_eq!(s.envoy.counter("rejected_total", &[("endpoint", "azure"), ("reason", "unverified")]), 1);
    // A copy of the delivered event needs no ARM call.
    assert_eq!(notify(&s, "PUT", "Succeeded").header("x-webhook-duplicate"), Some("true"));
    assert_eq!(s.azure.arm_requests().len(), 2);
}

/// The fleet's limit (`global_rate_limit`, tools/ratelimit-service on a real Redis with
/// fleet.rs's limits: 5 per application) is asked before ARM, with a streamed head: a
/// notification over it costs no ARM call and reaches no upstream.
#[test]
fn a_notification_over_the_fleet_limit_costs_no_arm_call() {
    use crate::fleet::{RateLimitService, Redis, LIMIT};
    let redis = Redis::start();
    let service = RateLimitService::start(&redis);
    let global = r#", "global_rate_limit": {"cluster": "ratelimit", "domain": "webhook-guard"}"#;
    let streamed = plugin(&client_credentials(""), global).replacen(r#""header_mode": "hold""#, r#""header_mode": "stream""#, 1);
    let azure = Azure::start();
    let upstream = Upstream::start();
    let mut opts = Options::new(&streamed, upstream.port);
    opts.concurrency = 2;
    opts.env = vec![("ARM_CLIENT_SECRET".into(), CLIENT_SECRET.into())];
    let h2 = "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: { http2_protocol_options: {} }\n";
    opts.clusters = format!("{}{}{h2}", clusters(azure.port, azure.port), cluster("ratelimit", service.port));
    let envoy = Envoy::start_with(opts);
    let at = |n: usize| notification("PUT", "Succeeded").replace("09:41:27", &format!("09:41:{n:02}"));
    for n in 0..LIMIT {
        let answer = post_json(envoy.port, &signed("/api/resource"), at(n).as_bytes());
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    assert_eq!(azure.arm_requests().len(), LIMIT);
    let refused = post_json(envoy.port, &signed("/api/resource"), at(LIMIT).as_bytes());
    refused.assert_problem(429, "rate_limited");
    assert!(refused.header("retry-after").is_some());
    assert_eq!(azure.arm_requests().len(), LIMIT, "no ARM call for the refused notification");
    assert_eq!(upstream.requests().len(), LIMIT, "nor an upstream request");
    assert_eq!(envoy.counter("global_rate_limit_total", &[("endpoint", "azure"), ("outcome", "limited")]), 1);
}

/// `"header_mode": "stream"` without allow_on_headers_stop_iteration (Istio's WasmPlugin,
/// Envoy Gateway): the head goes on at once, the body waits for the check.
#[test]
fn with_a_streamed_head_the_body_waits_for_the_check() {
    let streamed = plugin(&client_credentials(""), "").replacen(r#""header_mode": "hold""#, r#""header_mode": "stream""#, 1);
    let s = start(&streamed, None, false);
    s.azure.control(r#"{"arm": [{"status": 200, "state": "Accepted"}, {"status": 200, "state": "Succeeded"}]}"#);
    notify(&s, "PUT", "Succeeded").assert_problem(503, "unverified");
    // The upstream request (its head may have gone) was reset: never a body.
    assert!(s.upstream.requests().is_empty(), "an unconfirmed body reached the upstream: {:?}", s.upstream.requests());
    let retry = notify(&s, "PUT", "Succeeded");
    assert_eq!(retry.status, 200, "{retry:?}");
    // No header can follow a head that has gone: the CloudEvent carries the mark.
    let forwarded = s.upstream.only();
    assert_eq!(forwarded.json()["verified"], true);
    assert_eq!(forwarded.header("x-webhook-verified"), None);
    assert_eq!((arm_counter(&s, "not_yet"), arm_counter(&s, "verified")), (1, 1));
    assert_no_leak(&s, &[&retry]);
}

#[test]
fn a_404_holds_put_succeeded_and_confirms_delete_deleted() {
    let s = setup("");
    s.azure.control(r#"{"arm": [{"status": 404}]}"#);
    notify(&s, "PUT", "Succeeded").assert_problem(503, "unverified");
    s.upstream.assert_untouched();
    assert_eq!(arm_counter(&s, "inconsistent"), 1);
    let deleted = notify(&s, "DELETE", "Deleted");
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let forwarded = s.upstream.only();
    assert_eq!(forwarded.header("x-webhook-event-type"), Some("webhookguard.azure.managedapp.delete.deleted"));
    assert_eq!(forwarded.header("x-webhook-verified"), Some("true"));
}

#[test]
fn managed_identity_tokens_come_from_the_metadata_endpoint() {
    let check = r#"{"arm_cluster": "arm", "token_cluster": "login", "timeout_ms": 1000, "managed_identity": {}}"#;
    let s = setup_with(check, "", None);
    s.azure.control(r#"{"token": {"status": 200, "expires_in": 3600}}"#);
    let answer = notify(&s, "PUT", "Accepted");
    assert_eq!(answer.status, 200, "{answer:?}");
    let token = &s.azure.token_requests()[0];
    assert_eq!(token["method"], "GET");
    assert_eq!(token["path"], "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F");
    assert_eq!((&token["headers"]["metadata"], &token["headers"]["host"]), (&Value::from("true"), &Value::from("169.254.169.254")));
    assert!(s.azure.arm_requests()[0]["headers"]["authorization"].as_str().unwrap().starts_with("Bearer tok-"));
    assert_eq!(s.upstream.only().header("x-webhook-verified"), Some("true"));
    assert_no_leak(&s, &[&answer]);
}

/// Tokens living 6 s are due at 3 s: the roots' ticks refresh them while notifications
/// keep coming. Checked by counting, never by timing: every fetch is one refresh for both
/// workers together (a second fetch for the same refresh would replace a token before any
/// notification could use it), so each issued token serves notifications, in turn.
#[test]
fn short_lived_tokens_are_refreshed_ahead_once_for_both_workers() {
    const TOKENS: usize = 4;
    let azure = Azure::start_as(r#"{"token": {"status": 200, "expires_in": 6}}"#);
    let s = start_on(azure, &plugin(&client_credentials(""), ""), None, true);
    let used = |s: &Setup| -> Vec<String> {
        let mut used: Vec<String> = s.azure.arm_requests().iter().map(|r| r["headers"]["authorization"].as_str().unwrap().to_string()).collect();
        used.dedup();
        used
    };
    let last = format!("Bearer tok-{TOKENS}");
    // A bound on the attempts (about 30 s), not an assertion on time.
    for _ in 0..300 {
        if used(&s).contains(&last) {
            break;
        }
        let answer = notify(&s, "PUT", "Succeeded");
        assert_eq!(answer.status, 200, "{answer:?}");
        thread::sleep(Duration::from_millis(100));
    }
    // Notifications after each refresh carry its new token at ARM, one token per refresh.
    let used = used(&s);
    let want: Vec<String> = (1..=TOKENS).map(|n| format!("Bearer tok-{n}")).collect();
    assert_eq!(used.get(..TOKENS), Some(&want[..]), "each issued token serves notifications, in turn: {used:?}");
    // Each request to the issuer is one fetch counted by one worker (Envoy sums both
    // workers' counters); read between refreshes, when no fetch is on its way.
    let mut counts = (0, usize::MAX);
    for _ in 0..50 {
        let before = arm_counter(&s, "token_fetched");
        let requests = s.azure.token_requests().len();
        if before == arm_counter(&s, "token_fetched") {
            counts = (before as usize, requests);
            if counts.0 == counts.1 {
                break;
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(counts.0, counts.1, "token_fetched over both workers against the issuer's requests");
    assert_eq!(arm_counter(&s, "token_failed"), 0);
    assert_no_leak(&s, &[]);
}

/// Right after a start no token is cached and the first fetch is in flight (the issuer
/// answers in 1 s): every notification then waits for that one fetch, on either worker,
/// instead of being refused while the issuer is healthy.
#[test]
fn notifications_right_after_start_wait_for_the_token_being_fetched() {
    let azure = Azure::start_as(r#"{"token": {"status": 200, "expires_in": 3600, "delay": 1}}"#);
    let check = client_credentials("").replace(r#""timeout_ms": 1000"#, r#""timeout_ms": 5000"#);
    let s = start_on(azure, &plugin(&check, ""), None, true);
    let answers: Vec<_> = thread::scope(|scope| {
        let sends: Vec<_> = (0..4)
            .map(|i| {
                let event = notification("PUT", "Succeeded").replace("09:41:27", &format!("09:41:2{i}"));
                scope.spawn(move || post_json(s.envoy.port, &signed("/api/resource"), event.as_bytes()))
            })
            .collect();
        sends.into_iter().map(|send| send.join().unwrap()).collect()
    });
    for answer in &answers {
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let forwarded = s.upstream.requests();
    assert_eq!(forwarded.len(), 4);
    assert!(forwarded.iter().all(|r| r.header("x-webhook-verified") == Some("true")), "{forwarded:?}");
    assert_eq!(s.azure.token_requests().len(), 1, "one fetch for all four and both workers");
    assert!(s.azure.arm_requests().iter().all(|r| r["headers"]["authorization"] == "Bearer tok-1"));
    assert_eq!(arm_counter(&s, "verified"), 4);
    assert_eq!(arm_counter(&s, "token_unavailable"), 0);
}

#[test]
fn an_issuer_that_is_down_holds_notifications_or_forwards_them_unverified() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s = setup_with(&client_credentials(""), "", Some(closed));
    let held = notify(&s, "PUT", "Succeeded");
    held.assert_problem(503, "unverified");
    s.upstream.assert_untouched();
    assert!(s.azure.arm_requests().is_empty());
    assert!(arm_counter(&s, "token_unavailable") >= 1);
    assert!(s.envoy.log().contains(&format!("event=PUT/Succeeded application='{APP}' outcome=token_unavailable held status=503")), "{}", s.envoy.log());

    let s = setup_with(&client_credentials(r#", "on_error": "forward""#), "", Some(closed));
    let answer = notify(&s, "PUT", "Succeeded");
    assert_eq!(answer.status, 200, "{answer:?}");
    let forwarded = s.upstream.only();
    assert_eq!(forwarded.header("x-webhook-verified"), Some("false"));
    assert_eq!(forwarded.json()["verified"], false);
    assert_eq!(arm_counter(&s, "forwarded_unverified"), 1);
}

#[test]
fn an_issuer_refusing_our_credentials_is_logged_without_the_secret() {
    let s = setup("");
    s.azure.control(r#"{"token": {"status": 401}}"#);
    let held = notify(&s, "PUT", "Succeeded");
    held.assert_problem(503, "unverified");
    assert!(s.envoy.log().contains("the token issuer refused the request (401)"), "{}", s.envoy.log());
    // The root's tick may have tried first; either way the back-off spares the issuer.
    assert!((1..=2).contains(&arm_counter(&s, "token_failed")));
    assert!(s.azure.arm_requests().is_empty());
    assert_no_leak(&s, &[&held]);
}

#[test]
fn arm_slower_than_the_timeout_holds_the_notification() {
    let s = setup("");
    s.azure.control(r#"{"arm": [{"status": 200, "state": "Succeeded", "delay": 3}]}"#);
    notify(&s, "PUT", "Succeeded").assert_problem(503, "unverified");
    s.upstream.assert_untouched();
    assert_eq!(arm_counter(&s, "unavailable"), 1);
}

#[test]
fn arm_errors_hold_and_name_their_cause() {
    let s = setup("");
    for (status, counter, retry_after) in
        [(401, "token_rejected", "30"), (403, "denied", "30"), (429, "throttled", "120"), (500, "unavailable", "30"), (503, "unavailable", "30")]
    {
        s.azure.control(&format!(r#"{{"arm": [{{"status": {status}, "retry_after": 120}}]}}"#));
        let held = notify(&s, "PUT", "Succeeded");
        held.assert_problem(503, "unverified");
        assert_eq!(held.header("retry-after"), Some(retry_after), "ARM {status}");
        assert!(s.envoy.log().contains(&format!("outcome={counter} held")), "ARM {status}");
    }
    s.upstream.assert_untouched();
    let counts = ["token_rejected", "denied", "throttled", "unavailable"].map(|c| arm_counter(&s, c));
    assert_eq!(counts, [1, 1, 1, 2]);
    let log = s.envoy.log();
    let cause = "outcome=denied held status=503 retry_after=30 detail=ARM refused our identity (403)";
    assert!(log.lines().any(|l| l.contains("[error]") && l.contains(cause)), "{log}");
    assert!(log.contains("outcome=token_rejected held status=503 retry_after=30 detail=ARM refused the"), "a 401 is the token, not a permission: {log}");
    assert_no_leak(&s, &[]);
}

#[test]
fn forbidden_arm_with_on_error_forward_forwards_unverified() {
    let s = setup_with(&client_credentials(r#", "on_error": "forward""#), "", None);
    s.azure.control(r#"{"arm": [{"status": 403}]}"#);
    assert_eq!(notify(&s, "PUT", "Succeeded").status, 200);
    assert_eq!(s.upstream.only().header("x-webhook-verified"), Some("false"));
    assert_eq!((arm_counter(&s, "denied"), arm_counter(&s, "forwarded_unverified")), (1, 1));
    assert!(s.envoy.log().lines().any(|l| l.contains("[error]") && l.contains("outcome=denied forwarded verified=false")), "{}", s.envoy.log());
}

/// Reports (does not assert) what the check adds per notification in this setup: local
/// stand-ins, so the filter's and Envoy's share of it, not Azure's network time. Measured
/// on answers the filter gives itself (a 403 without the check, a 503 after it), because
/// the recording upstream's own answers cost tens of milliseconds more than that.
#[test]
fn reports_the_added_latency() {
    let s = setup("");
    s.azure.control(r#"{"arm": [{"status": 200, "state": "Accepted"}]}"#);
    let time = |target: &str, want: u16| {
        let mut all: Vec<f64> = (0..40)
            .map(|_| {
                let started = Instant::now();
                let answer = post_json(s.envoy.port, target, notification("PUT", "Succeeded").as_bytes());
                assert_eq!(answer.status, want);
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        all.sort_by(f64::total_cmp);
        (all[all.len() / 2], all[all.len() * 9 / 10])
    };
    time(&signed("/api/resource"), 503); // warm-up; the first fetches the token
    let (without, with) = (time("/api/resource?sig=wrong", 403), time(&signed("/api/resource"), 503));
    eprintln!(
        "latency (ms): refused before the check median {:.2} p90 {:.2}; held after the ARM check median {:.2} p90 {:.2}",
        without.0, without.1, with.0, with.1
    );
    assert_eq!(s.azure.arm_requests().len(), 80);
    s.upstream.assert_untouched();
}

/// The two header modes: `hold` (the head held, allow_on_headers_stop_iteration) and
/// `stream` (the head goes on, the body waits for the check).
const MODES: [&str; 2] = ["hold", "stream"];

/// Envoy in header mode `mode` over `azure`, delivered events suppressed as duplicates;
/// `timeout_ms` 5000, so a loaded machine does not turn an outcome into `unavailable`.
fn in_mode(mode: &str, azure: Azure) -> Setup {
    let check = client_credentials("").replace(r#""timeout_ms": 1000"#, r#""timeout_ms": 5000"#);
    let plugin = plugin(&check, r#", "dedupe_seconds": 3600"#).replacen(r#""header_mode": "hold""#, &format!(r#""header_mode": "{mode}""#), 1);
    start_on(azure, &plugin, None, mode == "hold")
}

/// Waits (bounded) for the roots' first token fetch, made at their first tick.
fn first_token(s: &Setup) {
    for _ in 0..50 {
        if !s.azure.token_requests().is_empty() {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("no token fetched at start");
}

/// Envoy's log lines with `needle`, once there are `want` (Envoy flushes its log file
/// every 100 ms; bounded wait), else as many as there are.
fn log_lines(s: &Setup, needle: &str, want: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for _ in 0..30 {
        lines = s.envoy.log().lines().filter(|l| l.contains(needle)).map(str::to_string).collect();
        if lines.len() >= want {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    lines
}

fn bearers(s: &Setup) -> Vec<String> {
    s.azure.arm_requests().iter().map(|r| r["headers"]["authorization"].as_str().unwrap().to_string()).collect()
}

/// ARM refuses the token the roots fetched at start (as after a revocation or a key
/// rollover). A token younger than the 5 s back-off is kept (its notifications held 503);
/// then the first notification to be refused drops it for both workers, fetches one new
/// token and is forwarded verified with it, within its deadline. Azure's retries of the
/// held notification are sent until it is delivered; later ones, on either worker, use
/// the new token without another fetch.
#[test]
fn a_token_arm_refuses_is_replaced_once_for_both_workers() {
    for mode in MODES {
        let s = in_mode(mode, Azure::start_as(r#"{"arm_reject": ["tok-1"]}"#));
        first_token(&s);
        let mut held = 0;
        // A bound on Azure's retries (about 20 s), not an assertion on time.
        for _ in 0..40 {
            let answer = notify(&s, "PUT", "Succeeded");
            if answer.status == 200 {
                break;
            }
            answer.assert_problem(503, "unverified");
            held += 1;
            thread::sleep(Duration::from_millis(500));
        }
        let forwarded = s.upstream.only();
        assert_eq!(forwarded.json()["verified"], true, "{mode}");
        assert_eq!(forwarded.header("x-webhook-verified"), if mode == "hold" { Some("true") } else { None });
        let mut want = vec!["Bearer tok-1".to_string(); held + 1];
        want.push("Bearer tok-2".into());
        assert_eq!(bearers(&s), want, "{mode}: tok-1 refused on each try, then tok-2 in the same check");
        // Later notifications, over both workers' connections, use the new token.
        for second in 0..6 {
            let event = notification("PATCH", "Succeeded").replace("09:41:27", &format!("09:42:0{second}"));
            let answer = post_json(s.envoy.port, &signed("/api/resource"), event.as_bytes());
            assert_eq!(answer.status, 200, "{mode}: {answer:?}");
        }
        assert_eq!(s.azure.token_requests().len(), 2, "{mode}: one new token for both workers");
        assert!(bearers(&s)[held + 2..].iter().all(|b| b == "Bearer tok-2"), "{mode}: {:?}", bearers(&s));
        assert_eq!(s.upstream.requests().len(), 7);
        let counts = ["token_rejected", "verified", "token_fetched", "denied"].map(|c| arm_counter(&s, c));
        assert_eq!(counts, [held as u64, 7, 2, 0], "{mode}");
        // The replacing check's line says what happened, naming the notification.
        let named = format!("event=PUT/Succeeded application='{APP}'");
        let replaced = log_lines(&s, "ARM had refused the first token (401)", 1);
        eprintln!("{mode}: {held} notifications held before the token was replaced");
        assert!(
            replaced.len() == 1 && replaced[0].contains("[warning]") && replaced[0].contains(&format!("{named} outcome=verified forwarded verified=true")),
            "{mode}: {replaced:?}"
        );
        let refused = log_lines(&s, "outcome=token_rejected", held);
        assert_eq!(refused.len(), held, "{mode}");
        assert!(refused.iter().all(|l| l.contains(&named) && l.contains("fetched less than 5 s ago") && l.contains("audience")), "{mode}: {refused:?}");
        assert_no_leak(&s, &[]);
    }
}

/// ARM refuses every token (an identity in the wrong tenant). Over a fixed window of
/// notifications, the issuer gets at most one request per 5 s back-off, every
/// notification is held 503, and each token dropped gives one error line, the other
/// notifications a warning: one error per back-off, not one per request.
#[test]
fn arm_refusing_every_token_costs_one_token_request_and_one_error_per_back_off() {
    for mode in MODES {
        let s = in_mode(mode, Azure::start_as(r#"{"arm_reject": "*"}"#));
        first_token(&s);
        let started = Instant::now();
        let mut sent = 0;
        while started.elapsed() < Duration::from_secs(12) {
            let event = notification("PUT", "Succeeded").replace("09:41:27", &format!("09:{:02}:{:02}", 10 + sent / 60, sent % 60));
            post_json(s.envoy.port, &signed("/api/resource"), event.as_bytes()).assert_problem(503, "unverified");
            sent += 1;
            thread::sleep(Duration::from_millis(200));
        }
        let window = started.elapsed().as_secs();
        // (In stream mode heads went on and were reset: never a body.)
        assert!(s.upstream.requests().is_empty(), "{mode}");
        // The roots' first fetch came before the window; each later one replaced a token.
        let replaced = s.azure.token_requests().len() - 1;
        assert!((1..=window as usize / 5 + 1).contains(&replaced), "{mode}: {replaced} token requests in {window} s");
        assert_eq!(arm_counter(&s, "token_rejected"), sent as u64, "{mode}");
        assert_eq!(arm_counter(&s, "token_fetched"), replaced as u64 + 1, "{mode}");
        let errors = log_lines(&s, "[error]", replaced);
        eprintln!("{mode}: {sent} notifications in {window} s: {replaced} tokens replaced (issuer requests after the first), {} error lines", errors.len());
        assert_eq!(errors.len(), replaced, "{mode}: {errors:?}");
        assert!(
            errors.iter().all(|l| l.contains("outcome=token_rejected held status=503") && l.contains("ARM refused the new token too (401)")),
            "{mode}: {errors:?}"
        );
        let lines = log_lines(&s, "outcome=token_rejected", sent);
        assert_eq!(lines.len(), sent, "{mode}: one line per notification");
        assert!(lines.iter().all(|l| l.contains(&format!("application='{APP}'")) && l.contains("event=PUT/Succeeded")), "{mode}");
        assert_no_leak(&s, &[]);
    }
}

/// The lines of notifications held for want of a token name the notification, whether the
/// issuer just failed (the request's own fetch) or backs off after a failed fetch.
#[test]
fn token_outcomes_name_the_application_and_the_pair() {
    for mode in MODES {
        let s = in_mode(mode, Azure::start_as(r#"{"token": {"status": 503}}"#));
        first_token(&s);
        for second in 0..4 {
            let event = notification("DELETE", "Deleting").replace("09:41:27", &format!("09:43:0{second}"));
            post_json(s.envoy.port, &signed("/api/resource"), event.as_bytes()).assert_problem(503, "unverified");
        }
        let lines = log_lines(&s, "outcome=token_unavailable", 4);
        assert_eq!(lines.len(), 4, "{mode}");
        let named = format!("endpoint=azure event=DELETE/Deleting application='{APP}' outcome=token_unavailable held status=503");
        let causes = ["the token issuer failed (503)", "no valid token: the last token fetch failed moments ago"];
        assert!(lines.iter().all(|l| l.contains(&named) && causes.iter().any(|c| l.contains(c))), "{mode}: {lines:?}");
        assert!(s.azure.arm_requests().is_empty());
    }
}
