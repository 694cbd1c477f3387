//! Monitoring (docs/operations/monitoring.md): a real Prometheus scrapes a real Envoy
//! running the filter through a scripted mix; the labelled families, the alert rules and
//! the Grafana dashboard are checked against what it stored. The shipped configurations
//! carry the tag extraction the labels need.

use crate::harness::{get, post_json, send, stats_config, Behaviour, Envoy, Options, Upstream};
use crate::operability::envelope;
use crate::{CATALOG_SAMPLE, SECRET};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn observability(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/observability").join(file)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `promtool` (Debian's `prometheus` package; `make test` installs it).
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool").args(args).current_dir(observability("")).output().expect("promtool is needed: Debian's prometheus package");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// A Prometheus on a free loopback port, scraping Envoy's admin every second and loading
/// the shipped alert rules; killed (and its data removed) when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    fn start(envoy_admin: u16) -> Prometheus {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("webhook-guard-prometheus-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nrule_files: [{rules:?}]\nscrape_configs:\n- job_name: envoy\n  metrics_path: /stats/prometheus\n  static_configs: [{{ targets: [\"127.0.0.1:{envoy_admin}\"] }}]\n",
            rules = observability("alerts.yaml").display().to_string()
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("prometheus is needed: Debian's prometheus package");
        let prometheus = Prometheus { child, port, dir };
        prometheus.wait_for("ready", || get(port, "/-/ready").status == 200);
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Polls `done` for up to 60 s (scrapes, rule evaluations and Envoy's histogram
    /// flushes run in the background); panics with Prometheus's log if it never holds.
    fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "Prometheus: no {what} in 60 s\n{}", self.log());
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn api(&self, path: &str) -> Value {
        let answer = get(self.port, path);
        let json: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        assert_eq!(json["status"], "success", "{path}: {}", String::from_utf8_lossy(&answer.body));
        json["data"].clone()
    }

    /// The instant vector `expr` evaluates to now: each series' labels and value.
    fn query(&self, expr: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(expr)));
        let series = data["result"].as_array().unwrap_or_else(|| panic!("{expr} is not an instant vector: {data}"));
        series
            .iter()
            .map(|s| {
                let labels = s["metric"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
                (labels, s["value"][1].as_str().unwrap().parse().unwrap())
            })
            .collect()
    }

    /// The one value of a `sum(...)` query; `None` when no series matched.
    fn value(&self, expr: &str) -> Option<f64> {
        self.query(expr).first().map(|(_, v)| *v)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Four endpoints: Azure (forwarding nonconforming notifications), Azure holding them,
/// Azure with an ARM check whose token issuer is unreachable, the md5 vendor; requests to
/// other paths are refused.
fn plugin() -> String {
    let azure = |name: &str, path: &str, extra: &str| {
        format!(
            r#"{{"name": "{name}", "path": "{path}", "profile": "azure_managed_app", "secret": {{"values": ["{SECRET}"]}}, "max_body_bytes": 4096{extra}}}"#
        )
    };
    let arm = r#", "arm_check": {"arm_cluster": "arm", "token_cluster": "login", "timeout_ms": 500, "client_credentials": {"tenant": "contoso.onmicrosoft.com", "client_id": "7d1b6a52-3c1e-4b4e-9a55-0c2f1e6b9d10", "client_secret_env": "ARM_CLIENT_SECRET"}}"#;
    format!(
        r#"{{"header_mode": "hold", "unguarded": "reject", "endpoints": [
  {}, {}, {}, {},
  {{"name": "store", "path": "/hooks/store", "profile": "md5_envelope", "secret": {{"values": ["{SECRET}"]}}, "answer_ping": true}}]}}"#,
        azure("azure", "/api/resource", ""),
        azure("limited", "/api/limited", r#", "rate_limit": {"per_second": 0.001, "burst": 1}"#),
        azure("holding", "/api/holding", r#", "on_nonconforming": "hold""#),
        azure("checked", "/api/checked", arm),
    )
}

/// `arm` and `login` clusters on a port nothing listens on: every token fetch fails.
fn dead_clusters() -> String {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    ["arm", "login"]
        .iter()
        .map(|name| {
            format!("  - name: {name}\n    type: STATIC\n    connect_timeout: 0.25s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}\n")
        })
        .collect()
}

/// The scripted mix; returns the statuses the senders got.
fn run_mix(envoy: &Envoy, upstream: &Upstream) -> Vec<u16> {
    let signed = |path: &str| format!("{path}?sig={SECRET}");
    let patch_deleted = CATALOG_SAMPLE.replace("\"PUT\"", "\"PATCH\"").replace("\"Succeeded\"", "\"Deleted\"");
    let mut statuses = vec![
        post_json(envoy.port, "/api/resource", CATALOG_SAMPLE.as_bytes()).status,
        post_json(envoy.port, &signed("/api/resource"), CATALOG_SAMPLE.as_bytes()).status,
        post_json(envoy.port, &signed("/api/resource"), b"{}").status,
        send(envoy.port, "POST", &signed("/api/resource"), &[("content-type", "text/plain")], CATALOG_SAMPLE.as_bytes()).status,
        post_json(envoy.port, &signed("/api/resource"), patch_deleted.as_bytes()).status,
        {
            upstream.set(Behaviour::Status(500));
            post_json(envoy.port, &signed("/api/resource"), CATALOG_SAMPLE.replace("\"PUT\"", "\"DELETE\"").replace("\"Succeeded\"", "\"Deleted\"").as_bytes())
                .status
        },
        {
            upstream.set(Behaviour::Status(200));
            post_json(envoy.port, &signed("/api/limited"), CATALOG_SAMPLE.as_bytes()).status
        },
        post_json(envoy.port, &signed("/api/limited"), CATALOG_SAMPLE.as_bytes()).status,
        post_json(envoy.port, &signed("/api/holding"), patch_deleted.as_bytes()).status,
        post_json(envoy.port, &signed("/api/checked"), CATALOG_SAMPLE.as_bytes()).status,
        post_json(envoy.port, &signed("/hooks/store"), envelope(r#"{"type":"ping"}"#).as_bytes()).status,
        post_json(envoy.port, &signed("/hooks/store"), envelope(r#"{"type":"ping"}"#).replace("ping\"}", "pong\"}").as_bytes()).status,
        post_json(envoy.port, "/elsewhere", b"{}").status,
    ];
    // A probe: 21 wrong secrets.
    statuses.extend((0..21).map(|_| post_json(envoy.port, "/api/resource?sig=guess", CATALOG_SAMPLE.as_bytes()).status));
    statuses
}

/// Every family and the labels each of its series carries (besides Prometheus's own
/// `job` and `instance`).
const FAMILIES: [(&str, &[&str]); 15] = [
    ("webhook_guard_requests_total", &["endpoint", "profile"]),
    ("webhook_guard_forwarded_total", &["endpoint", "profile"]),
    ("webhook_guard_rejected_total", &["endpoint", "profile", "reason", "status"]),
    ("webhook_guard_rate_limit_contended_total", &["endpoint", "profile"]),
    ("webhook_guard_upstream_failures_total", &["endpoint", "profile"]),
    ("webhook_guard_upstream_mapped_total", &["endpoint", "profile", "reason"]),
    ("webhook_guard_pings_answered_total", &["endpoint", "profile"]),
    ("webhook_guard_duplicates_total", &["endpoint", "profile"]),
    ("webhook_guard_global_rate_limit_total", &["endpoint", "profile", "outcome"]),
    ("webhook_guard_events_total", &["endpoint", "profile", "event_type", "state"]),
    ("webhook_guard_nonconforming_total", &["endpoint", "profile", "rule"]),
    ("webhook_guard_arm_check_total", &["endpoint", "profile", "outcome"]),
    ("webhook_guard_held_milliseconds_count", &["endpoint", "profile"]),
    ("webhook_guard_arm_check_milliseconds_count", &["endpoint", "profile"]),
    ("webhook_guard_unguarded_rejected_total", &[]),
];

/// What the mix must have counted: (selector, value) for `sum(selector)`.
const COUNTS: [(&str, f64); 24] = [
    (r#"webhook_guard_requests_total{endpoint="azure",profile="azure_managed_app"}"#, 27.0),
    (r#"webhook_guard_forwarded_total{endpoint="azure"}"#, 3.0),
    (r#"webhook_guard_rejected_total{endpoint="azure",reason="unauthorized",status="401"}"#, 1.0),
    (r#"webhook_guard_rejected_total{endpoint="azure",reason="forbidden",status="403"}"#, 21.0),
    (r#"webhook_guard_rejected_total{endpoint="azure",reason="invalid",status="400"}"#, 1.0),
    (r#"webhook_guard_rejected_total{endpoint="azure",reason="unsupported_media_type",status="415"}"#, 1.0),
    (r#"webhook_guard_rejected_total{endpoint="azure"}"#, 24.0),
    (r#"webhook_guard_upstream_failures_total{endpoint="azure"}"#, 1.0),
    (r#"webhook_guard_events_total{endpoint="azure",event_type="put",state="succeeded"}"#, 1.0),
    (r#"webhook_guard_events_total{endpoint="azure",event_type="delete",state="deleted"}"#, 1.0),
    (r#"webhook_guard_nonconforming_total{endpoint="azure",rule="pair_undocumented"}"#, 1.0),
    (r#"webhook_guard_requests_total{endpoint="limited"}"#, 2.0),
    (r#"webhook_guard_rejected_total{endpoint="limited",reason="rate_limited",status="429"}"#, 1.0),
    (r#"webhook_guard_rejected_total{endpoint="holding",reason="held",status="503"}"#, 1.0),
    (r#"webhook_guard_nonconforming_total{endpoint="holding",rule="pair_undocumented"}"#, 1.0),
    (r#"webhook_guard_rejected_total{endpoint="checked",reason="unverified",status="503"}"#, 1.0),
    (r#"webhook_guard_arm_check_total{endpoint="checked",outcome="token_unavailable"}"#, 1.0),
    (r#"webhook_guard_requests_total{endpoint="store",profile="md5_envelope"}"#, 2.0),
    (r#"webhook_guard_pings_answered_total{endpoint="store"}"#, 1.0),
    (r#"webhook_guard_rejected_total{endpoint="store",reason="digest_mismatch",status="400"}"#, 1.0),
    (r#"webhook_guard_unguarded_rejected_total"#, 1.0),
    (r#"webhook_guard_forwarded_total"#, 4.0),
    (r#"webhook_guard_requests_total"#, 33.0),
    (r#"webhook_guard_global_rate_limit_total"#, 0.0),
];

/// The alerts this mix sets off (their expressions return series) and those it must not.
const FIRED_BY_THE_MIX: [&str; 7] = [
    "WebhookGuardNotificationsDropped",
    "WebhookGuardNotificationsHeld",
    "WebhookGuardArmCheckFailing",
    "WebhookGuardSchemaDrift",
    "WebhookGuardAuthFailureBurst",
    "WebhookGuardRateLimited",
    "WebhookGuardUpstreamFailing",
];
const SILENT_ON_THE_MIX: [&str; 3] = ["WebhookGuardArmCheckDenied", "WebhookGuardPluginNotLoaded", "WebhookGuardVMRestarted"];

/// Every metric selector in `expr` (`name` or `name{...}`) of a webhook-guard or Envoy family.
fn selectors(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = ["webhook_guard_", "envoy_"].iter().filter_map(|p| rest.find(p)).min() {
        let tail = &rest[at..];
        let name_end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let end = if tail[name_end..].starts_with('{') { name_end + tail[name_end..].find('}').unwrap() + 1 } else { name_end };
        found.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    found
}

/// A dashboard target as Prometheus evaluates it: all endpoints, a 1-minute rate window.
fn dashboard_exprs() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(&read(&observability("grafana-dashboard.json"))).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$endpoint", ".*").replace("$__rate_interval", "1m").replace("$__range", "5m");
            exprs.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    exprs
}

/// The mix through Envoy, scraped by Prometheus; every check on what Prometheus stored.
fn scrape_a_mix() {
    let upstream = Upstream::start();
    let mut opts = Options::new(&plugin(), upstream.port);
    opts.env = vec![("ARM_CLIENT_SECRET".into(), "not-a-real-secret".into())];
    opts.clusters = dead_clusters();
    let envoy = Envoy::start_with(opts);
    let prometheus = Prometheus::start(envoy.admin);
    prometheus.wait_for("scrape of Envoy", || prometheus.value(r#"up{job="envoy"}"#) == Some(1.0));

    let statuses = run_mix(&envoy, &upstream);
    let mut want = vec![401, 200, 400, 415, 200, 500, 200, 429, 503, 503, 200, 400, 404];
    want.extend([403; 21]);
    assert_eq!(statuses, want);
    assert_eq!(upstream.requests().len(), 4, "forwarded: 3 Azure (one answered 500) and 1 limited");

    // A scrape that started after the mix: every counter final.
    let done = now_secs();
    prometheus.wait_for("scrape after the mix", || prometheus.value(r#"timestamp(up{job="envoy"})"#).is_some_and(|t| t > done + 1.0));
    for (selector, value) in COUNTS {
        assert_eq!(prometheus.value(&format!("sum({selector})")), Some(value), "{selector}");
    }

    // Every series of each family carries exactly its labels, with known values.
    let data = prometheus.api(&format!("/api/v1/series?match[]={}", encode(r#"{__name__=~"webhook_guard_.+"}"#)));
    let mut seen = BTreeSet::new();
    for series in data.as_array().unwrap() {
        let name = series["__name__"].as_str().unwrap();
        let labels: BTreeSet<&str> =
            series.as_object().unwrap().keys().map(String::as_str).filter(|k| !["__name__", "job", "instance", "le"].contains(k)).collect();
        let family =
            FAMILIES.iter().find(|(f, _)| name == *f || name.strip_suffix("_bucket").or(name.strip_suffix("_sum")).is_some_and(|n| format!("{n}_count") == *f));
        let (family, expected) = family.unwrap_or_else(|| panic!("unexpected series {series}"));
        assert_eq!(labels, expected.iter().copied().collect(), "{series}");
        seen.insert(*family);
    }
    assert_eq!(seen.len(), FAMILIES.len(), "families seen: {seen:?}");
    let endpoints: BTreeSet<String> = prometheus
        .query("group by (endpoint, profile) (webhook_guard_requests_total)")
        .into_iter()
        .map(|(l, _)| format!("{}/{}", l["endpoint"], l["profile"]))
        .collect();
    assert_eq!(
        endpoints,
        ["azure/azure_managed_app", "checked/azure_managed_app", "holding/azure_managed_app", "limited/azure_managed_app", "store/md5_envelope"]
            .map(String::from)
            .into()
    );

    // The histograms reach Prometheus at Envoy's stats flush: one held time per request,
    // one ARM check time for the checked notification.
    prometheus.wait_for("histograms", || {
        prometheus.value("sum(webhook_guard_held_milliseconds_count)") == Some(33.0)
            && prometheus.value("sum(webhook_guard_arm_check_milliseconds_count)") == Some(1.0)
    });
    let per_endpoint = prometheus.query("sum by (endpoint) (webhook_guard_held_milliseconds_count) != sum by (endpoint) (webhook_guard_requests_total)");
    assert!(per_endpoint.is_empty(), "held times per endpoint differ from requests: {per_endpoint:?}");

    // Every dashboard query, and every selector in it, returns data for the mix.
    for (title, expr) in dashboard_exprs() {
        assert!(!prometheus.query(&expr).is_empty(), "dashboard panel {title:?} shows nothing: {expr}");
        for selector in selectors(&expr) {
            assert!(!prometheus.query(&selector).is_empty(), "panel {title:?}: no series for {selector}");
        }
    }

    // The rules loaded and evaluate; each selector in them matches series; the mix sets
    // off the alerts it should and no other; the ones without `for` fire in Prometheus.
    let groups = prometheus.api("/api/v1/rules");
    let rules: Vec<Value> = groups["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap().clone()).collect();
    assert_eq!(rules.len(), FIRED_BY_THE_MIX.len() + SILENT_ON_THE_MIX.len());
    for rule in &rules {
        let (name, expr) = (rule["name"].as_str().unwrap(), rule["query"].as_str().unwrap());
        for selector in selectors(expr) {
            assert!(!prometheus.query(&selector).is_empty(), "{name}: no series for {selector}");
        }
        let result = prometheus.query(expr);
        match (FIRED_BY_THE_MIX.contains(&name), SILENT_ON_THE_MIX.contains(&name)) {
            (true, _) => assert!(!result.is_empty(), "{name} is not set off by the mix: {expr}"),
            (_, true) => assert!(result.is_empty(), "{name} fires on the mix: {result:?}"),
            _ => panic!("{name} is in neither list"),
        }
    }
    prometheus.wait_for("firing alerts", || {
        let alerts = prometheus.api("/api/v1/alerts");
        let firing: BTreeSet<&str> =
            alerts["alerts"].as_array().unwrap().iter().filter(|a| a["state"] == "firing").filter_map(|a| a["labels"]["alertname"].as_str()).collect();
        ["WebhookGuardNotificationsDropped", "WebhookGuardSchemaDrift", "WebhookGuardAuthFailureBurst"].iter().all(|a| firing.contains(a))
    });
    for rule in &rules {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
}

#[test]
fn prometheus_scrapes_labelled_families_with_exact_counts() {
    scrape_a_mix();
}

#[test]
fn alert_rules_are_valid_and_their_unit_tests_pass() {
    assert!(promtool(&["check", "rules", "alerts.yaml"]).contains("SUCCESS: 10 rules found"));
    assert!(promtool(&["test", "rules", "alerts.test.yaml"]).contains("SUCCESS"));
    // Every alert has a firing case in the unit tests and a runbook section in the docs.
    let tests = read(&observability("alerts.test.yaml"));
    let docs = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations/monitoring.md"));
    for alert in FIRED_BY_THE_MIX.iter().chain(&SILENT_ON_THE_MIX) {
        assert!(tests.contains(&format!("alertname: {alert}\n    exp_alerts:\n    - exp_labels")), "no firing unit test for {alert}");
        assert!(docs.contains(&format!("### {alert}")), "no runbook section for {alert}");
    }
}

#[test]
fn the_prometheus_rule_holds_the_rule_files_groups() {
    let rules = read(&observability("alerts.yaml"));
    let groups = &rules[rules.find("groups:").unwrap()..];
    let resource = read(&observability("prometheus-rule.yaml"));
    let spec = &resource[resource.find("spec:\n").unwrap() + "spec:\n".len()..];
    let dedented: String = spec.lines().map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l))).collect();
    assert_eq!(dedented, groups);
}

/// Every shipped bootstrap carries the stats_config block; Istio's examples ask for the
/// same tags (extraStatTags) and keep the stats (proxyStatsMatcher); Envoy Gateway's
/// EnvoyProxy merges the block into its bootstrap.
#[test]
fn every_shipped_configuration_extracts_the_labels() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let block = stats_config();
    let labels: Vec<&str> = webhook_guard::metrics::LABELS.to_vec();
    let regexes: Vec<String> = labels.iter().map(|l| format!("  - {{ tag_name: {l}, regex: '({l}=\\.=(.*?);\\.;)' }}\n")).collect();
    assert!(block.ends_with(&format!("stats_config:\n  stats_tags:\n{}", regexes.concat())), "one regex per label:\n{block}");
    for file in crate::harness::SHIPPED_BOOTSTRAPS {
        assert!(read(&root.join(file)).contains(&block), "{file} lacks examples/observability/stats-tags.yaml's block");
    }
    for file in ["examples/istio/sidecar-env-patch.yaml", "examples/istio/envoyfilter-sidecar-patch.yaml"] {
        let text = read(&root.join(file));
        assert!(text.contains(&format!("extraStatTags: [{}]", labels.join(", "))), "{file} lacks extraStatTags");
        assert!(text.contains("inclusionPrefixes: [\"wasmcustom.webhook_guard.\", \"wasm.\"]"), "{file} lacks proxyStatsMatcher");
    }
    let indented: String = block.lines().filter(|l| !l.starts_with('#')).map(|l| format!("      {l}\n")).collect();
    for file in ["examples/envoy-gateway/gateway.yaml", "examples/fleet/envoy-gateway-global-rate-limit.yaml"] {
        let text = read(&root.join(file));
        assert!(text.contains(&format!("    type: Merge\n    value: |\n{indented}")), "{file}: the EnvoyProxy lacks the stats_config merge");
    }
}
