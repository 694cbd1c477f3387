//! The artifacts of `make release` (dist/): the OCI image goes through a real registry and
//! comes back by digest holding the very module, and Envoy runs the module fetched from an
//! HTTP source pinned by its sha256, refusing it when the sha256 does not match.

use crate::command::run;
use crate::harness::{self, Envoy, Options, Upstream};
use crate::{azure_plugin, target, CATALOG_SAMPLE, SECRET};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// dist/ as `make release` wrote it (or `WEBHOOK_GUARD_DIST`).
fn dist() -> PathBuf {
    let dir = std::env::var("WEBHOOK_GUARD_DIST").map(PathBuf::from).unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("dist"));
    assert!(dir.join("oci/index.json").is_file(), "{} holds no release (run `make release`, or `make e2e`)", dir.display());
    dir
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Debian's docker-registry on a loopback port it picks itself, with its own storage.
struct Registry {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Registry {
    fn start() -> Registry {
        let dir = harness::scratch_dir();
        let config = format!(
            "version: 0.1\nlog: {{ level: info }}\nstorage: {{ filesystem: {{ rootdirectory: {} }} }}\nhttp: {{ addr: \"127.0.0.1:0\" }}\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry not found: install Debian's docker-registry package (`make e2e` does)");
        let mut registry = Registry { child, port: 0, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while registry.port == 0 {
            let log = std::fs::read_to_string(registry.dir.join("registry.log")).unwrap_or_default();
            assert!(registry.child.try_wait().unwrap().is_none(), "docker-registry exited:\n{log}");
            assert!(Instant::now() < deadline, "docker-registry did not listen:\n{log}");
            let listening = log.split("listening on 127.0.0.1:").nth(1);
            registry.port = listening.and_then(|rest| rest.split('"').next()?.parse().ok()).unwrap_or(0);
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn skopeo() -> Command {
    let mut cmd = Command::new("skopeo");
    cmd.arg("--insecure-policy");
    cmd
}

#[test]
fn the_image_pulled_back_by_digest_holds_the_module() {
    let dist = dist();
    let version = env!("CARGO_PKG_VERSION");
    let registry = Registry::start();
    let work = harness::scratch_dir();
    let repo = format!("127.0.0.1:{}/webhook-guard", registry.port);
    let digest_file = work.join("pushed-digest");
    run(skopeo()
        .args(["copy", "--quiet", "--dest-tls-verify=false", "--digestfile"])
        .arg(&digest_file)
        .arg(format!("oci:{}:{version}", dist.join("oci").display()))
        .arg(format!("docker://{repo}:{version}")));
    let digest = String::from_utf8(read(&digest_file)).unwrap();
    // The registry keeps the manifest byte for byte: the digest to pin is the release's.
    assert_eq!(digest.trim(), String::from_utf8(read(&dist.join("image-digest"))).unwrap().trim());

    let pulled = work.join("image");
    run(skopeo()
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{repo}@{}", digest.trim()))
        .arg(format!("dir:{}", pulled.display())));
    // The "compat" Wasm image Istio and Envoy Gateway read: one gzip layer holding plugin.wasm.
    let manifest: serde_json::Value = serde_json::from_slice(&read(&pulled.join("manifest.json"))).unwrap();
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(layers[0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    let layer = pulled.join(layers[0]["digest"].as_str().unwrap().trim_start_matches("sha256:"));
    let listing = run(Command::new("tar").arg("-tzf").arg(&layer));
    assert_eq!(String::from_utf8(listing).unwrap(), "plugin.wasm\n");
    let module = run(Command::new("tar").arg("-xzOf").arg(&layer).arg("plugin.wasm"));
    assert!(module == read(&dist.join("webhook_guard.wasm")), "plugin.wasm differs from dist/webhook_guard.wasm");
    let _ = std::fs::remove_dir_all(&work);
}

/// A tiny HTTP server answering every request with `body`; counts the requests.
fn serve_file(body: Vec<u8>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&fetches);
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/wasm\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
            let _ = conn.write_all(head.as_bytes()).and_then(|_| conn.write_all(&body));
        }
    });
    (port, fetches)
}

/// The harness's bootstrap with the module fetched from `http://127.0.0.1:{port}`,
/// pinned by `sha256`, through a cluster of its own.
fn remote_bootstrap(opts: &Options, port: u16, sha256: &str) -> String {
    let local = r#"code: { local: { filename: "REMOTE" } }"#;
    let remote = format!(
        r#"code: {{ remote: {{ http_uri: {{ uri: "http://127.0.0.1:{port}/webhook_guard.wasm", cluster: wasm_source, timeout: 10s }}, sha256: "{sha256}" }} }}"#
    );
    let text = harness::bootstrap(opts, Path::new("REMOTE"), &harness::scratch_dir());
    assert!(text.contains(local), "the harness's code source changed:\n{text}");
    text.replace(local, &remote)
        + &format!(
            "  - name: wasm_source\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment: {{ cluster_name: wasm_source, endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }} }} ] }} ] }}\n"
        )
}

fn remote_envoy(upstream: &Upstream, sha256: &str) -> (Result<Envoy, String>, Arc<AtomicUsize>) {
    let (port, fetches) = serve_file(read(&dist().join("webhook_guard.wasm")));
    let plugin = azure_plugin("");
    let opts = Options::new(&plugin, upstream.port);
    (Envoy::launch_bootstrap(&remote_bootstrap(&opts, port, sha256), &opts), fetches)
}

#[test]
fn envoy_runs_the_module_fetched_from_a_remote_source_by_sha256() {
    let sums = String::from_utf8(read(&dist().join("webhook_guard.wasm.sha256"))).unwrap();
    let sha256 = sums.split_whitespace().next().unwrap();
    let upstream = Upstream::start();
    let (envoy, fetches) = remote_envoy(&upstream, sha256);
    let envoy = envoy.unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"));
    assert!(fetches.load(Ordering::SeqCst) >= 1);
    let answer = harness::post_json(envoy.port, &target(&format!("sig={SECRET}")), CATALOG_SAMPLE.as_bytes());
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let seen = upstream.only();
    assert_eq!(seen.path, "/api/resource");
    assert_eq!(seen.json()["specversion"], "1.0");
    harness::post_json(envoy.port, &target("sig=wrong"), CATALOG_SAMPLE.as_bytes()).assert_problem(403, "forbidden");
}

#[test]
fn envoy_refuses_a_remote_module_whose_sha256_does_not_match() {
    let upstream = Upstream::start();
    let (envoy, fetches) = remote_envoy(&upstream, &"0".repeat(64));
    // Envoy starts, but the filter is not loaded: failing closed, it answers every request
    // on the chain 503 (which both senders retry) and nothing reaches the upstream.
    let envoy = envoy.unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"));
    assert!(fetches.load(Ordering::SeqCst) >= 1, "the module was never fetched");
    let answer = harness::post_json(envoy.port, &target(&format!("sig={SECRET}")), CATALOG_SAMPLE.as_bytes());
    assert_eq!(answer.status, 503, "{}", String::from_utf8_lossy(&answer.body));
    upstream.assert_untouched();
    let stats = String::from_utf8(harness::get(envoy.admin, "/stats?filter=remote_load_fetch").body).unwrap();
    assert!(stats.contains("wasm.remote_load_fetch_failures: 1"), "{stats}");
    assert!(stats.contains("wasm.remote_load_fetch_successes: 0"), "{stats}");
    assert!(envoy.log().contains("Plugin webhook_guard failed to load"), "{}", envoy.log());
    assert!(!envoy.log().contains("configured 1 endpoint"), "the module was configured anyway");
}
