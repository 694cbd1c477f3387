//! A real Envoy with the built module, a recording upstream, and a raw HTTP/1.1 client.
//!
//! Envoy binds port 0 and reports its ports through the admin API, so tests never race
//! for ports. Missing Envoy or module is a failure with instructions, never a skip.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub fn required_file(var: &str, default: &str) -> PathBuf {
    let path = std::env::var(var).map(PathBuf::from).unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join(default));
    assert!(path.is_file(), "{} not found (set {var} or run `make e2e`, which builds the module and installs Envoy)", path.display());
    path
}

pub fn wasm_path() -> PathBuf {
    required_file("WEBHOOK_GUARD_WASM", "webhook_guard.wasm")
}

pub fn envoy_path() -> PathBuf {
    required_file("ENVOY", ".tools/envoy/envoy/_bin/envoy")
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("webhook-guard-e2e-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// How to run Envoy for one test.
pub struct Options {
    pub plugin: String,
    pub upstream_port: u16,
    pub concurrency: u32,
    pub route_timeout_ms: u64,
    pub env: Vec<(String, String)>,
    /// More entries for the bootstrap's `clusters:` list (YAML, indented as `backend`).
    pub clusters: String,
    /// The Wasm filter's `allow_on_headers_stop_iteration` (Istio's `WasmPlugin` and
    /// Envoy Gateway leave it unset, i.e. false).
    pub stop_iteration: bool,
    /// Envoy's path normalisation (`normalize_path`, `merge_slashes`), as in `envoy.yaml`;
    /// off, paths reach the filter as sent (Istio's default mesh setting is close to it).
    pub normalize_path: bool,
    /// An access log with this format, read back with [`Envoy::access_log`].
    pub access_log: Option<String>,
}

impl Options {
    pub fn new(plugin: &str, upstream_port: u16) -> Self {
        Options {
            plugin: plugin.to_string(),
            upstream_port,
            concurrency: 1,
            route_timeout_ms: 5000,
            env: vec![],
            stop_iteration: true,
            normalize_path: true,
            access_log: None,
            clusters: String::new(),
        }
    }
}

/// The two deployment forms of a guarded endpoint, which every sender's tests run in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Form {
    /// `"header_mode": "hold"` with allow_on_headers_stop_iteration.
    Hold,
    /// `"header_mode": "stream"` without it (Istio's WasmPlugin, Envoy Gateway).
    Stream,
}

pub const FORMS: [Form; 2] = [Form::Hold, Form::Stream];

/// The shipped Envoy bootstrap files (relative to the repository): Envoy must accept each,
/// and each must extract the metrics' labels.
pub const SHIPPED_BOOTSTRAPS: [&str; 5] = [
    "envoy.yaml",
    "examples/envoy-production.yaml",
    "examples/fleet/envoy.yaml",
    "examples/fleet/envoy-global-rate-limit.yaml",
    "examples/arm-check/envoy.yaml",
];

impl Form {
    /// The plugin's `header_mode`.
    pub fn header_mode(self) -> &'static str {
        match self {
            Form::Hold => "hold",
            Form::Stream => "stream",
        }
    }
}

/// A recording upstream behind an Envoy running one plugin configuration.
pub struct Setup {
    pub upstream: Upstream,
    pub envoy: Envoy,
}

impl Setup {
    /// Envoy in `form` with `plugin` (whose `header_mode` must be the form's), the
    /// environment `env` and an access log of `access_log`'s format.
    pub fn start(form: Form, plugin: &str, env: &[(&str, &str)], access_log: Option<&str>) -> Setup {
        let upstream = Upstream::start();
        let mut opts = Options::new(plugin, upstream.port);
        opts.stop_iteration = form == Form::Hold;
        opts.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        opts.access_log = access_log.map(String::from);
        let envoy = Envoy::start_with(opts);
        Setup { upstream, envoy }
    }
}

pub struct Envoy {
    child: Child,
    pub port: u16,
    pub admin: u16,
    dir: PathBuf,
}

impl Envoy {
    pub fn start(plugin: &str, upstream: &Upstream) -> Envoy {
        Self::start_with(Options::new(plugin, upstream.port))
    }

    pub fn start_with(opts: Options) -> Envoy {
        match Self::launch(&opts) {
            Ok(envoy) => envoy,
            Err(log) => panic!("Envoy did not start:\n{log}"),
        }
    }

    /// Starts Envoy and waits until it is ready; on failure returns Envoy's log.
    pub fn launch(opts: &Options) -> Result<Envoy, String> {
        let dir = scratch_dir();
        let yaml = bootstrap(opts, &wasm_path(), &dir);
        Self::launch_in(dir, &yaml, opts)
    }

    /// Starts Envoy with a bootstrap of the test's own (`opts` gives only the concurrency
    /// and environment). Its first listener and its admin must bind port 0.
    pub fn launch_bootstrap(yaml: &str, opts: &Options) -> Result<Envoy, String> {
        Self::launch_in(scratch_dir(), yaml, opts)
    }

    fn launch_in(dir: PathBuf, yaml: &str, opts: &Options) -> Result<Envoy, String> {
        let config = dir.join("envoy.yaml");
        std::fs::write(&config, yaml).unwrap();
        let log = std::fs::File::create(dir.join("envoy.log")).unwrap();
        let child = Command::new(envoy_path())
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", &opts.concurrency.to_string()])
            .arg("--admin-address-path")
            .arg(dir.join("admin"))
            .args(["--disable-hot-restart", "--log-level", "info", "--component-log-level", "wasm:debug", "--file-flush-interval-msec", "100"])
            .envs(opts.env.iter().cloned())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut envoy = Envoy { child, port: 0, admin: 0, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = envoy.child.try_wait() {
                return Err(envoy.log());
            }
            if let Some(port) = envoy.ready_port() {
                envoy.port = port;
                return Ok(envoy);
            }
            thread::sleep(Duration::from_millis(50));
        }
        Err(format!("timed out waiting for Envoy\n{}", envoy.log()))
    }

    fn ready_port(&mut self) -> Option<u16> {
        let addr = std::fs::read_to_string(self.dir.join("admin")).ok()?;
        self.admin = addr.trim().rsplit(':').next()?.parse().ok()?;
        let ready = get(self.admin, "/ready");
        if ready.status != 200 {
            return None;
        }
        let listeners: serde_json::Value = serde_json::from_slice(&get(self.admin, "/listeners?format=json").body).ok()?;
        let port = listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"].as_u64()?;
        u16::try_from(port).ok()
    }

    /// Everything Envoy has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// The access log once it holds `lines` lines (Envoy writes it in the background).
    pub fn access_log(&self, lines: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
            if text.lines().count() >= lines || Instant::now() > deadline {
                return text;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Envoy {
    /// webhook-guard's counters from the admin `/stats` page, each keyed as Prometheus
    /// shows it: `rejected_total{endpoint="azure",profile="azure_managed_app",reason=...}`
    /// (family without `webhook_guard_`, labels in the plugin's order).
    pub fn counters(&self) -> std::collections::BTreeMap<String, u64> {
        let text = String::from_utf8(get(self.admin, "/stats?filter=wasmcustom&type=Counters").body).unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("wasmcustom.webhook_guard.")?.split_once(": "))
            .map(|(name, v)| (series_key(name), v.trim().parse().unwrap()))
            .collect()
    }

    /// The sum of the counters of `family` whose labels include all of `labels`, e.g.
    /// `counter("rejected_total", &[("endpoint", "azure"), ("reason", "invalid")])`.
    pub fn counter(&self, family: &str, labels: &[(&str, &str)]) -> u64 {
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let matches = |key: &str| {
            let (name, rest) = key.split_once('{').unwrap_or((key, "}"));
            let have: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
            name == family && wanted.iter().all(|w| have.contains(&w.as_str()))
        };
        self.counters().into_iter().filter(|(key, _)| matches(key)).map(|(_, v)| v).sum()
    }
}

/// `endpoint=.=azure;.;reason=.=invalid;.;rejected_total` as
/// `rejected_total{endpoint="azure",reason="invalid"}`.
fn series_key(name: &str) -> String {
    let mut parts: Vec<&str> = name.split(";.;").collect();
    let family = parts.pop().unwrap_or_default();
    let labels: Vec<String> = parts.iter().filter_map(|p| p.split_once("=.=")).map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    if labels.is_empty() {
        family.to_string()
    } else {
        format!("{family}{{{}}}", labels.join(","))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn bootstrap(opts: &Options, wasm: &Path, dir: &Path) -> String {
    let plugin: String = opts.plugin.lines().map(|l| format!("                    {l}\n")).collect();
    let access_log = match &opts.access_log {
        // A JSON string is a YAML double-quoted scalar.
        Some(format) => format!(
            "access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: {}\n              log_format: {{ text_format_source: {{ inline_string: {} }} }}",
            dir.join("access.log").display(),
            serde_json::to_string(format).unwrap()
        ),
        None => String::new(),
    };
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
{stats_config}
static_resources:
  listeners:
  - name: webhooks
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: webhooks
          normalize_path: {normalize}
          merge_slashes: {normalize}
          {access_log}
          route_config:
            virtual_hosts:
            - name: backend
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: backend, timeout: {timeout}s }}
          http_filters:
          - name: webhook_guard
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: webhook_guard
                root_id: webhook_guard
                vm_config:
                  vm_id: webhook_guard
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: "{wasm}" }} }}
                  environment_variables: {{ host_env_keys: [{env_keys}] }}
                allow_on_headers_stop_iteration: {stop_iteration}
                failure_policy: FAIL_RELOAD
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: |
{plugin}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }}
{clusters}"#,
        timeout = opts.route_timeout_ms as f64 / 1000.0,
        wasm = wasm.display(),
        env_keys = opts.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", "),
        upstream = opts.upstream_port,
        clusters = opts.clusters,
        stop_iteration = opts.stop_iteration,
        normalize = opts.normalize_path,
        stats_config = stats_config(),
    )
}

/// The `stats_config` block every shipped bootstrap carries (examples/observability/).
pub fn stats_config() -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/observability/stats-tags.yaml")).unwrap();
    let from = text.find("# webhook-guard's Prometheus labels").unwrap();
    text[from..].to_string()
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// What the upstream does with each request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour {
    /// Answer with this status.
    Status(u16),
    /// Wait, then answer 200.
    Delay(Duration),
    /// Read the request, then close the connection without answering.
    Close,
    /// Answer the statuses in turn: the n-th request the upstream receives (counting from
    /// 0, in arrival order) gets `statuses[n % len]`.
    Cycle(&'static [u16]),
    /// Answer this status as soon as the head is read, without waiting for the body, then
    /// close the connection.
    OnHead(u16),
}

/// An in-process HTTP/1.1 upstream that records every request it receives.
pub struct Upstream {
    pub port: u16,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// Every request head received, whether or not its body followed.
    heads: Arc<Mutex<Vec<Recorded>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    connections: Arc<AtomicUsize>,
    /// (index in `requests`, status) of every answer written in full.
    answers: Arc<Mutex<Vec<(usize, u16)>>>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(Behaviour::Status(200)));
        let connections = Arc::new(AtomicUsize::new(0));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let (reqs, hds, beh, conns, ans) = (Arc::clone(&requests), Arc::clone(&heads), Arc::clone(&behaviour), Arc::clone(&connections), Arc::clone(&answers));
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                conns.fetch_add(1, Ordering::SeqCst);
                let (reqs, hds, beh, ans) = (Arc::clone(&reqs), Arc::clone(&hds), Arc::clone(&beh), Arc::clone(&ans));
                thread::spawn(move || serve(conn, &reqs, &hds, &beh, &ans));
            }
        });
        Upstream { port, requests, heads, behaviour, connections, answers }
    }

    /// Every request head received so far, complete requests or not (bodies left out).
    pub fn heads(&self) -> Vec<Recorded> {
        self.heads.lock().unwrap().clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// The single request received so far.
    pub fn only(&self) -> Recorded {
        let all = self.requests();
        assert_eq!(all.len(), 1, "expected exactly one upstream request, got {all:#?}");
        all.into_iter().next().unwrap()
    }

    /// Every request the upstream answered in full, with the status it answered, in
    /// arrival order (requests it dropped or could not answer are left out).
    pub fn answered(&self) -> Vec<(Recorded, u16)> {
        let requests = self.requests();
        let mut answers = self.answers.lock().unwrap().clone();
        answers.sort_unstable();
        answers.into_iter().map(|(i, status)| (requests[i].clone(), status)).collect()
    }

    /// The requests the upstream took: answered with a 2xx written in full.
    pub fn taken(&self) -> Vec<Recorded> {
        self.answered().into_iter().filter(|(_, s)| (200..300).contains(s)).map(|(r, _)| r).collect()
    }

    /// Asserts that no request, not even a connection, reached the upstream.
    pub fn assert_untouched(&self) {
        let all = self.requests();
        assert!(all.is_empty(), "the upstream must not see this request, but got {all:#?}");
        assert_eq!(self.connections(), 0, "a connection was opened to the upstream");
    }
}

fn serve(conn: TcpStream, requests: &Mutex<Vec<Recorded>>, heads: &Mutex<Vec<Recorded>>, behaviour: &Mutex<Behaviour>, answers: &Mutex<Vec<(usize, u16)>>) {
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    loop {
        let Some(head) = read_head_of(&mut reader, heads) else { return };
        if let Behaviour::OnHead(status) = *behaviour.lock().unwrap() {
            let answer = format!("HTTP/1.1 {status} X\r\nlocation: /elsewhere\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
            let _ = writer.write_all(answer.as_bytes());
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
        let Some(request) = read_body_of(&mut reader, head) else { return };
        let index = {
            let mut all = requests.lock().unwrap();
            all.push(request);
            all.len() - 1
        };
        let current = *behaviour.lock().unwrap();
        let status = match current {
            Behaviour::Status(s) => s,
            Behaviour::Cycle(statuses) => statuses[index % statuses.len()],
            Behaviour::Delay(d) => {
                thread::sleep(d);
                200
            }
            Behaviour::OnHead(_) | Behaviour::Close => {
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
        };
        // 204 and 304 must not carry a body.
        let body = if matches!(status, 204 | 304) { String::new() } else { format!("{{\"upstream\":{status}}}") };
        // One write: Envoy may answer the sender (and close this connection) as soon as it
        // has the head, and a body written after it would then count as not answered.
        let location = if (300..400).contains(&status) { "location: /api/resource/\r\n" } else { "" };
        let answer = format!("HTTP/1.1 {status} X\r\n{location}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
        answers.lock().unwrap().push((index, status));
    }
}

fn read_head(reader: &mut impl BufRead) -> Option<(String, Vec<(String, String)>)> {
    // Lines are read as bytes: header values may legally hold non-UTF-8 octets.
    let line_of = |reader: &mut dyn BufRead| {
        let mut buf = Vec::new();
        reader.read_until(b'\n', &mut buf).ok().filter(|n| *n > 0)?;
        Some(String::from_utf8_lossy(&buf).into_owned())
    };
    let first = line_of(reader)?;
    let mut headers = Vec::new();
    loop {
        let line = line_of(reader)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Some((first.trim_end().to_string(), headers))
}

fn read_body(reader: &mut impl BufRead, headers: &[(String, String)]) -> Option<Vec<u8>> {
    let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                return Some(body);
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    if let Some(len) = find("content-length") {
        body.resize(len.parse().ok()?, 0);
        reader.read_exact(&mut body).ok()?;
    }
    Some(body)
}

/// A request's head, recorded in `heads`.
fn read_head_of(reader: &mut impl BufRead, heads: &Mutex<Vec<Recorded>>) -> Option<Recorded> {
    let (line, headers) = read_head(reader)?;
    let mut parts = line.split(' ');
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let request = Recorded { method, path, headers, body: vec![] };
    heads.lock().unwrap().push(request.clone());
    Some(request)
}

/// The rest of the request whose head is `request`.
fn read_body_of(reader: &mut impl BufRead, mut request: Recorded) -> Option<Recorded> {
    request.body = read_body(reader, &request.headers)?;
    Some(request)
}

/// An answer as the sender saw it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts a problem+json answer with this status and problem type suffix.
    pub fn assert_problem(&self, status: u16, slug: &str) -> serde_json::Value {
        assert_eq!(self.status, status, "{self:?} body: {}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.header("content-type"), Some("application/problem+json"));
        let problem = self.json();
        assert_eq!(problem["type"], format!("urn:webhook-guard:problem:{slug}"));
        assert_eq!(problem["status"], status);
        assert!(problem["title"].is_string() && problem["detail"].is_string(), "{problem}");
        problem
    }
}

/// Sends raw bytes, then reads one response (the request asks Envoy to close).
pub fn raw(port: u16, request: &[u8]) -> Response {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    conn.write_all(request).unwrap();
    read_response(conn)
}

fn read_response(conn: TcpStream) -> Response {
    try_read_response(conn).expect("no HTTP response")
}

fn try_read_response(conn: TcpStream) -> Option<Response> {
    let mut reader = BufReader::new(conn);
    let (line, headers) = read_head(&mut reader)?;
    let status = line.split(' ').nth(1)?.parse().ok()?;
    let body = read_body(&mut reader, &headers).unwrap_or_default();
    Some(Response { status, headers, body })
}

/// A request with a `content-length` body.
/// Waits (up to 10 s) until `done` holds: the upstream records on its own threads, and
/// Envoy ends a stream on its own time.
pub fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    true
}

pub fn send(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut req = format!("{method} {target} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    raw(port, &bytes)
}

/// A JSON POST.
pub fn post_json(port: u16, target: &str, body: &[u8]) -> Response {
    send(port, "POST", target, &[("content-type", "application/json")], body)
}

/// A request whose body is sent in chunks, with a pause between them.
pub fn send_chunked(port: u16, target: &str, content_type: &str, chunks: &[&[u8]]) -> Response {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!("POST {target} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n");
    conn.write_all(head.as_bytes()).unwrap();
    for chunk in chunks {
        conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).unwrap();
        conn.write_all(chunk).unwrap();
        conn.write_all(b"\r\n").unwrap();
        conn.flush().unwrap();
        thread::sleep(Duration::from_millis(20));
    }
    // Envoy may already have answered (and closed) when a chunk broke a limit.
    let _ = conn.write_all(b"0\r\n\r\n");
    read_response(conn)
}

/// A GET that tolerates a server that is not (or no longer) there: status 0.
pub fn get(port: u16, target: &str) -> Response {
    let req = format!("GET {target} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    let answer = TcpStream::connect(("127.0.0.1", port)).ok().and_then(|mut conn| {
        conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        conn.write_all(req.as_bytes()).ok()?;
        try_read_response(conn)
    });
    answer.unwrap_or(Response { status: 0, headers: vec![], body: vec![] })
}

/// Sends raw bytes and reads one response; `None` when the connection ends without one.
/// Write errors are ignored: Envoy may answer (and close) before the whole request is sent.
pub fn try_raw(port: u16, request: &[u8]) -> Option<Response> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = conn.write_all(request);
    try_read_response(conn)
}

/// A request with a `content-length` body sent `piece` bytes at a time, pausing `pause`
/// between pieces: a slow (or slowloris-like) sender.
pub fn send_paced(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8], piece: usize, pause: Duration) -> Response {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    conn.write_all(head.as_bytes()).unwrap();
    for part in body.chunks(piece.max(1)) {
        thread::sleep(pause);
        // Envoy may already have answered (and closed) when a piece broke a limit.
        if conn.write_all(part).and_then(|_| conn.flush()).is_err() {
            break;
        }
    }
    read_response(conn)
}
