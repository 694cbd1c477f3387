//! A fleet: two Envoy replicas running `examples/fleet/envoy.yaml` (webhook-guard, then
//! Envoy's global rate limit filter), one rate limit service (tools/ratelimit-service:
//! Kuadrant's limitador over a real Redis) and one recording upstream. The fleet with
//! the filter asking the service itself is tested in fleet_stream.rs, on the same pieces.

use crate::harness::{eventually, get, post_json, required_file, send, wasm_path, Envoy, Options, Response, Upstream};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub(super) const SIG: &str = "fleet-secret";
/// The per-application limit the tests configure (60 s window).
pub(super) const LIMIT: usize = 5;
/// The application whose limit has a 2 s window, for the retry test.
pub(super) const SHORT: &str = "app-short";
/// A subscription Azure spells in capitals; its limit (one per minute) is written in the
/// lowercase form webhook-guard puts in `x-webhook-subscription`.
pub(super) const UPPER_SUBSCRIPTION: &str = "9E1C6F2A-4B7D-4C8E-A1F3-2D5B8C7E6A90";
/// Concurrent senders in the wave test: limitador's Redis storage reads the counters and
/// then increments them, so each request in flight can slip past a spent counter once.
pub(super) const SENDERS: usize = 4;

/// Test limits in limitador's format, over the descriptors `examples/fleet/envoy.yaml`
/// sends: [0] endpoint + application, [1] endpoint + subscription.
fn limits() -> String {
    let short = application_key(SHORT);
    format!(
        r#"- namespace: webhook-guard
  name: per-application
  max_value: {LIMIT}
  seconds: 60
  conditions: ["descriptors[0].endpoint == 'azure'", "descriptors[0].application != '{short}'"]
  variables: ["descriptors[0].application"]
- namespace: webhook-guard
  name: short-window
  max_value: 1
  seconds: 2
  conditions: ["descriptors[0].application == '{short}'"]
  variables: ["descriptors[0].application"]
- namespace: webhook-guard
  name: per-subscription
  max_value: 1000
  seconds: 60
  conditions: ["descriptors[1].endpoint == 'azure'"]
  variables: ["descriptors[1].subscription"]
- namespace: webhook-guard
  name: upper-subscription
  max_value: 1
  seconds: 60
  conditions: ["descriptors[1].subscription == '{upper}'"]
  variables: ["descriptors[1].subscription"]
"#,
        upper = UPPER_SUBSCRIPTION.to_ascii_lowercase()
    )
}

pub(super) const SUBSCRIPTION: &str = "0b88dfdb-55b3-4fb0-b474-5b6dcbe6b2ef";

/// The canonical, lowercased application id webhook-guard puts in `x-webhook-application`.
pub(super) fn application_key(app: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourcegroups/rg-fleet/providers/microsoft.solutions/applications/{app}")
}

/// The `n`-th distinct notification about `app` (distinct event times, so distinct ids).
pub(super) fn notification(app: &str, n: u32) -> String {
    notification_in(SUBSCRIPTION, app, n)
}

pub(super) fn notification_in(subscription: &str, app: &str, n: u32) -> String {
    format!(
        r#"{{"eventType":"PUT","applicationId":"subscriptions/{subscription}/resourceGroups/rg-fleet/providers/Microsoft.Solutions/applications/{app}","eventTime":"2024-05-01T10:{:02}:{:02}.1707163Z","provisioningState":"Succeeded","applicationDefinitionId":"subscriptions/{subscription}/resourceGroups/rg-fleet/providers/Microsoft.Solutions/applicationDefinitions/def"}}"#,
        n / 60,
        n % 60
    )
}

pub(super) fn deliver(envoy: &Envoy, body: &str) -> Response {
    post_json(envoy.port, &format!("/api/resource?sig={SIG}"), body.as_bytes())
}

/// A refusal by Envoy's global rate limit (not webhook-guard's own problem+json 429).
fn is_global_429(r: &Response) -> bool {
    r.status == 429 && r.header("x-envoy-ratelimited") == Some("true")
}

/// How many notifications about `app` `upstream` took, by the CloudEvent's subject.
pub(super) fn taken(upstream: &Upstream, app: &str) -> usize {
    // The upstream records an answer just after writing it, so the sender may see it
    // first: let the record catch up with every request read.
    eventually(|| upstream.answered().len() == upstream.requests().len());
    upstream.taken().iter().filter(|r| r.json()["subject"].as_str().is_some_and(|s| s.to_ascii_lowercase() == application_key(app))).count()
}

/// One way the fleet's limit is asked: the example every replica runs, its refusal, and
/// the stat counting a notification let through because the service failed.
pub(super) struct FleetLimit {
    pub(super) example: &'static str,
    pub(super) refused: fn(&Response) -> bool,
    pub(super) failed_open: &'static str,
}

/// Envoy's ratelimit filter after webhook-guard, head held.
const RATELIMIT_FILTER: FleetLimit = FleetLimit { example: "envoy.yaml", refused: is_global_429, failed_open: "ratelimit.failure_mode_allowed" };

/// A server process of a test, stopped when dropped.
pub(super) struct Process(Child);

impl Process {
    pub(super) fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Debian's redis-server on a free loopback port, with nothing persisted.
pub(super) struct Redis {
    pub(super) process: Process,
    port: u16,
}

impl Redis {
    pub(super) fn start() -> Redis {
        let server = which("redis-server").expect("redis-server not found: install Debian's redis-server (`make e2e` does)");
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = Command::new(&server)
                .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut redis = Redis { process: Process(child), port };
            if redis.ready() {
                return redis;
            }
        }
        panic!("redis-server did not start");
    }

    fn ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.0.try_wait() {
                return false; // e.g. the port was taken meanwhile
            }
            if let Ok(mut conn) = TcpStream::connect(("127.0.0.1", self.port)) {
                let mut pong = [0; 7];
                if conn.write_all(b"PING\r\n").is_ok() && conn.read_exact(&mut pong).is_ok() && &pong == b"+PONG\r\n" {
                    return true;
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin", "/usr/bin"].map(PathBuf::from));
    dirs.map(|d| d.join(name)).find(|p| p.is_file())
}

/// tools/ratelimit-service, listening on a port it picks and reports.
pub(super) struct RateLimitService {
    pub(super) process: Process,
    pub(super) port: u16,
    _dir: TempDir,
}

impl RateLimitService {
    pub(super) fn start(redis: &Redis) -> RateLimitService {
        let binary = required_file("RATELIMIT_SERVICE", "tools/ratelimit-service/target/debug/ratelimit-service");
        let dir = TempDir::new("ratelimit");
        let file = dir.0.join("limits.yaml");
        std::fs::write(&file, limits()).unwrap();
        let mut child = Command::new(binary).arg(&file).arg(redis.url()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().rsplit(':').next().and_then(|p| p.parse().ok());
        let port = port.unwrap_or_else(|| panic!("the rate limit service did not start: {line:?}"));
        RateLimitService { process: Process(child), port, _dir: dir }
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("webhook-guard-{name}-{}-{:?}", std::process::id(), thread::current().id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `examples/fleet/<example>` as shipped, pointed at the test's module, upstream and
/// rate limit service, on ports Envoy picks.
pub(super) fn replica_config(example: &str, upstream: u16, service: u16) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet").join(example);
    let mut text = std::fs::read_to_string(path).unwrap();
    let swaps = [
        ("{ address: 127.0.0.1, port_value: 9901 }".to_string(), "{ address: 127.0.0.1, port_value: 0 }".to_string()),
        ("{ address: 0.0.0.0, port_value: 10000 }".to_string(), "{ address: 127.0.0.1, port_value: 0 }".to_string()),
        ("/etc/envoy/webhook_guard.wasm".to_string(), wasm_path().display().to_string()),
        ("{ address: backend.internal, port_value: 8080 }".to_string(), format!("{{ address: 127.0.0.1, port_value: {upstream} }}")),
        ("{ address: ratelimit.internal, port_value: 8081 }".to_string(), format!("{{ address: 127.0.0.1, port_value: {service} }}")),
    ];
    for (from, to) in swaps {
        assert!(text.contains(&from), "examples/fleet/{example} no longer holds {from}");
        text = text.replace(&from, &to);
    }
    text
}

pub(super) struct Fleet {
    pub(super) upstream: Upstream,
    pub(super) replicas: [Envoy; 2],
    pub(super) service: RateLimitService,
    pub(super) redis: Redis,
}

/// A replica of `config` (2 workers) with the example's secrets set.
pub(super) fn replica(config: &str, upstream: &Upstream) -> Envoy {
    let mut opts = Options::new("", upstream.port);
    opts.concurrency = 2;
    opts.env = ["AZURE_SIG", "AZURE_SIG_NEXT", "STORE_SIG"].iter().map(|k| (k.to_string(), SIG.to_string())).collect();
    Envoy::launch_bootstrap(config, &opts).unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"))
}

impl Fleet {
    /// Two replicas of `examples/fleet/<example>`.
    pub(super) fn start_with(example: &str) -> Fleet {
        let redis = Redis::start();
        let service = RateLimitService::start(&redis);
        let upstream = Upstream::start();
        let config = replica_config(example, upstream.port, service.port);
        let replicas = [replica(&config, &upstream), replica(&config, &upstream)];
        Fleet { upstream, replicas, service, redis }
    }

    /// Sends `bodies` through both replicas at once: `SENDERS` threads (half on each
    /// replica), each sending its share one after the other, so at most `SENDERS`
    /// requests are in flight.
    pub(super) fn deliver_all(&self, bodies: Vec<String>) -> Vec<Response> {
        let handles: Vec<_> = (0..SENDERS)
            .map(|sender| {
                let port = self.replicas[sender % 2].port;
                let share: Vec<String> = bodies.iter().skip(sender).step_by(SENDERS).cloned().collect();
                thread::spawn(move || share.iter().map(|body| post_json(port, &format!("/api/resource?sig={SIG}"), body.as_bytes())).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    }

    /// How many notifications about `app` the upstream took (by the CloudEvent's subject:
    /// a streamed head carries no header derived from the body).
    pub(super) fn taken(&self, app: &str) -> usize {
        taken(&self.upstream, app)
    }

    pub(super) fn stat(&self, replica: usize, name: &str) -> u64 {
        let text = String::from_utf8(get(self.replicas[replica].admin, &format!("/stats?filter={name}")).body).unwrap();
        text.lines().filter_map(|l| l.split_once(": ")).filter(|(k, _)| k.ends_with(name)).map(|(_, v)| v.trim().parse::<u64>().unwrap()).sum()
    }
}

/// Twice the limit, alternating between the replicas, then a concurrent wave: the
/// per-application limit holds fleet-wide (within the engine's slack), each refusal
/// carries `Retry-After` and `x-ratelimit-*` and is counted, other applications pass.
pub(super) fn the_application_limit_holds(path: &FleetLimit) -> Fleet {
    let fleet = Fleet::start_with(path.example);
    let refused_by = path.refused;
    let answers: Vec<Response> = (0..2 * LIMIT as u32).map(|n| deliver(&fleet.replicas[n as usize % 2], &notification("app-a", n))).collect();
    let ok = answers.iter().filter(|r| r.status == 200).count();
    let refused: Vec<&Response> = answers.iter().filter(|r| refused_by(r)).collect();
    assert_eq!(ok, LIMIT, "{answers:#?}");
    assert_eq!(refused.len(), LIMIT, "every other answer is the fleet's 429: {answers:#?}");
    assert_eq!(fleet.taken("app-a"), LIMIT);
    // No complete request for a refused notification reached the upstream (streamed, its
    // head went ahead, never its body).
    assert_eq!(fleet.upstream.requests().len(), LIMIT);
    // At once through both: limitador's Redis storage reads the counters, then increments
    // them (not one atomic step), so requests checked concurrently may each pass: the
    // slack is at most the number of requests in flight for the counter (SENDERS).
    let wave = 4 * LIMIT;
    let answers = fleet.deliver_all((0..wave as u32).map(|n| notification("app-w", n)).collect());
    let ok = answers.iter().filter(|r| r.status == 200).count();
    assert!((LIMIT..=LIMIT + SENDERS).contains(&ok), "{ok} of {wave} passed a limit of {LIMIT} with {SENDERS} senders: {answers:#?}");
    assert!(answers.iter().all(|r| r.status == 200 || refused_by(r)), "{answers:#?}");
    assert_eq!(fleet.taken("app-w"), ok);
    for replica in &fleet.replicas {
        assert!(refused_by(&deliver(replica, &notification("app-w", 99))), "the counter is spent fleet-wide");
    }
    for r in refused {
        let retry_after: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=60).contains(&retry_after), "{r:?}");
        assert!(r.header("x-ratelimit-limit").is_some_and(|v| v.starts_with(&format!("{LIMIT}, {LIMIT};w=60"))), "{r:?}");
        assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
        assert!(r.header("x-ratelimit-reset").is_some_and(|v| v.parse::<u64>().is_ok()), "{r:?}");
    }
    // Every refusal is counted, on the replica that answered it.
    let refused_counted: u64 = (0..2).map(|i| fleet.stat(i, "outcome=.=limited;.;global_rate_limit_total")).sum();
    assert_eq!(refused_counted, (LIMIT + wave - ok + 2) as u64);
    // Another application is unaffected, on either replica.
    for (i, replica) in fleet.replicas.iter().enumerate() {
        assert_eq!(deliver(replica, &notification("app-b", i as u32)).status, 200);
    }
    assert_eq!(fleet.taken("app-b"), 2);
    fleet
}

#[test]
fn the_application_limit_holds_across_replicas() {
    let fleet = the_application_limit_holds(&RATELIMIT_FILTER);
    // The ratelimit filter saw webhook-guard's headers: the count is per application.
    let seen = fleet.upstream.taken();
    assert_eq!(seen[0].header("x-webhook-subscription"), Some(SUBSCRIPTION));
    assert_eq!(seen[0].header("x-webhook-endpoint"), Some("azure"));
}

/// Forged, invalid and duplicate requests draw no quota; descriptor headers a client
/// sends change nothing; a subscription in capitals is counted in lowercase.
pub(super) fn only_forwarded_notifications_use_quota(path: &FleetLimit) -> Fleet {
    let fleet = Fleet::start_with(path.example);
    let refused_by = path.refused;
    let [one, two] = &fleet.replicas;
    // Refused by webhook-guard: a wrong secret, an invalid document. None reach the limit.
    for n in 0..2 * LIMIT as u32 {
        let forged = post_json(one.port, "/api/resource?sig=wrong", notification("app-c", n).as_bytes());
        forged.assert_problem(403, "forbidden");
        // Not a date-time: malformed (a PUT/Deleted pair would be forwarded as nonconforming).
        let invalid = notification("app-c", n).replace(r#""eventTime":""#, r#""eventTime":"not "#);
        deliver(two, &invalid).assert_problem(400, "invalid");
    }
    // One event, then copies of it: the copies are answered as duplicates by the replica
    // that delivered it, without asking the rate limit service.
    assert_eq!(deliver(one, &notification("app-c", 100)).status, 200);
    for _ in 0..2 * LIMIT {
        let copy = deliver(one, &notification("app-c", 100));
        assert_eq!((copy.status, copy.header("x-webhook-duplicate")), (200, Some("true")));
    }
    // So the whole quota is still there: LIMIT - 1 more events pass, the next is refused.
    for n in 101..100 + LIMIT as u32 {
        assert_eq!(deliver(two, &notification("app-c", n)).status, 200);
    }
    assert!(refused_by(&deliver(one, &notification("app-c", 200))));
    assert_eq!(fleet.taken("app-c"), LIMIT);

    // A client's own descriptor headers count for nothing: claiming to be app-c does not
    // spend app-c's quota for app-d, and claiming to be app-d does not free app-c.
    let spoof = |app: &str, claimed: &str, n: u32| {
        let headers =
            [("content-type", "application/json"), ("x-webhook-endpoint", "azure"), ("x-webhook-application", claimed), ("x-webhook-subscription", "other")];
        send(two.port, "POST", &format!("/api/resource?sig={SIG}"), &headers, notification(app, n).as_bytes())
    };
    assert_eq!(spoof("app-d", &application_key("app-c"), 0).status, 200);
    assert!(refused_by(&spoof("app-c", &application_key("app-d"), 300)));
    assert_eq!(fleet.taken("app-d"), 1);

    // A subscription id in capitals is counted under its lowercase form: the limit written
    // for that form (one per minute) refuses the second event, on the other replica.
    assert_eq!(deliver(one, &notification_in(UPPER_SUBSCRIPTION, "app-u", 0)).status, 200);
    assert!(refused_by(&deliver(two, &notification_in(UPPER_SUBSCRIPTION, "app-u", 1))));
    fleet
}

#[test]
fn only_forwarded_notifications_use_quota_and_descriptors_cannot_be_spoofed() {
    let fleet = only_forwarded_notifications_use_quota(&RATELIMIT_FILTER);
    // webhook-guard replaced the client's headers with the trusted ones.
    let d = fleet.upstream.taken().into_iter().find(|r| r.header("x-webhook-application") == Some(application_key("app-d").as_str()));
    assert_eq!(d.expect("app-d delivered").header("x-webhook-subscription"), Some(SUBSCRIPTION));
    let lower = UPPER_SUBSCRIPTION.to_ascii_lowercase();
    let u = fleet.upstream.taken().into_iter().find(|r| r.header("x-webhook-application").is_some_and(|a| a.ends_with("/app-u")));
    assert_eq!(u.expect("app-u delivered").header("x-webhook-subscription"), Some(lower.as_str()));
}

/// The short window admits one event per 2 s: after a refusal the sender's retry of the
/// same event (duplicate suppression on) is never 429 in_flight, and once the window
/// allows it, it is forwarded and taken.
pub(super) fn after_a_429_the_retry_is_forwarded(path: &FleetLimit) {
    let fleet = Fleet::start_with(path.example);
    let refused_by = path.refused;
    let one = &fleet.replicas[0];
    let refused = (0..50).map(|n| notification(SHORT, n)).find(|body| refused_by(&deliver(one, body))).expect("the 2 s window refused nothing");
    let deadline = Instant::now() + Duration::from_secs(30);
    let retry = loop {
        thread::sleep(Duration::from_millis(200));
        let retry = deliver(one, &refused);
        assert!(retry.status == 200 || refused_by(&retry), "{retry:?}");
        if retry.status == 200 || Instant::now() > deadline {
            break retry;
        }
    };
    assert_eq!(retry.status, 200);
    assert!(retry.header("x-webhook-duplicate").is_none(), "the retry reached the upstream");
    assert!(fleet.stat(0, "outcome=.=limited;.;global_rate_limit_total") >= 1);
    assert_eq!(fleet.stat(0, "reason=.=in_flight;.;status=.=429;.;rejected_total"), 0);
}

#[test]
fn after_a_global_429_the_retry_is_forwarded_not_held_in_flight() {
    after_a_429_the_retry_is_forwarded(&RATELIMIT_FILTER);
}

/// Redis stopped, then the service: every notification goes through (fail open, never a
/// status a sender drops), each replica's local limit still applying, each counted.
pub(super) fn a_failed_service_fails_open(path: &FleetLimit) {
    let mut fleet = Fleet::start_with(path.example);
    let answers: Vec<Response> = (0..=LIMIT as u32).map(|n| deliver(&fleet.replicas[n as usize % 2], &notification("app-e", n))).collect();
    assert!((path.refused)(&answers[LIMIT]), "the limit is reached: {answers:#?}");
    fleet.redis.process.stop();
    let answers = fleet.deliver_all((10..14).map(|n| notification("app-e", n)).collect());
    assert!(answers.iter().all(|r| r.status == 200), "{answers:#?}");
    fleet.service.process.stop();
    let answers = fleet.deliver_all((20..24).map(|n| notification("app-e", n)).collect());
    assert!(answers.iter().all(|r| r.status == 200), "{answers:#?}");
    assert_eq!(fleet.taken("app-e"), LIMIT + 8);
    let allowed: u64 = (0..2).map(|i| fleet.stat(i, path.failed_open)).sum();
    assert_eq!(allowed, 8, "each counted as a rate limit service failure");
}

#[test]
fn a_failed_rate_limit_service_fails_open_never_a_dropped_4xx() {
    a_failed_service_fails_open(&RATELIMIT_FILTER);
}
