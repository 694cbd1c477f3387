//! The failure policy with a VM that really traps: the module built with the `test-trap`
//! feature (`make build-trap`) aborts when a request carrying the marker header delivers
//! its body, its head held. `failure_policy: FAIL_RELOAD` must answer that request 503
//! (both senders retry it), forward nothing of it, and serve the next request from a fresh
//! VM that checks it as before.

use crate::harness::{bootstrap, eventually, get, post_json, required_file, scratch_dir, send, wasm_path, Envoy, Options, Upstream};
use crate::{azure_plugin, target, CATALOG_SAMPLE, SECRET};

/// The header that makes the test module trap (src/host.rs, `test_trap::HEADER`).
const TRAP: &str = "x-test-trap";

fn trap_envoy(upstream: &Upstream) -> Envoy {
    let wasm = required_file("WEBHOOK_GUARD_TRAP_WASM", "target/webhook_guard_trap.wasm");
    let opts = Options::new(&azure_plugin(""), upstream.port);
    match Envoy::launch_bootstrap(&bootstrap(&opts, &wasm, &scratch_dir()), &opts) {
        Ok(envoy) => envoy,
        Err(log) => panic!("Envoy did not start:\n{log}"),
    }
}

fn signed() -> String {
    target(&format!("sig={SECRET}"))
}

#[test]
fn a_trapped_vm_answers_503_forwards_nothing_and_is_replaced() {
    let upstream = Upstream::start();
    let envoy = trap_envoy(&upstream);
    let json = ("content-type", "application/json");
    // An authenticated, valid notification whose body kills the VM.
    let trapped = send(envoy.port, "POST", &signed(), &[json, (TRAP, "1")], CATALOG_SAMPLE.as_bytes());
    assert_eq!(trapped.status, 503, "{trapped:?}");
    upstream.assert_untouched();
    let log = envoy.log();
    assert!(log.contains("abort") || log.contains("unreachable") || log.contains("trap"), "no trap in Envoy's log:\n{log}");
    // The next request is served by a fresh VM (within the reload back-off Envoy may still
    // answer 503, which the sender retries): forwarded normally, once.
    let mut statuses = Vec::new();
    assert!(
        eventually(|| {
            let res = post_json(envoy.port, &signed(), CATALOG_SAMPLE.as_bytes());
            statuses.push(res.status);
            res.status != 503
        }),
        "no fresh VM: {statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    let forwarded = upstream.only();
    assert_eq!(forwarded.header(TRAP), None);
    assert_eq!(forwarded.header("content-type"), Some("application/cloudevents+json"));
    assert_eq!(forwarded.path, "/api/resource", "the fresh VM removed the secret");
    // The fresh VM still refuses strangers: the reload never fails open.
    let stranger = post_json(envoy.port, &target("sig=wrong"), CATALOG_SAMPLE.as_bytes());
    stranger.assert_problem(403, "forbidden");
    assert_eq!(upstream.requests().len(), 1);
    // Envoy counted the reload (`wasm.<vm>.vm_reload` / `_success`).
    let stats = String::from_utf8(get(envoy.admin, "/stats?filter=vm_reload").body).unwrap();
    let reloaded = stats.lines().any(|l| l.contains("vm_reload") && !l.contains("fail") && !l.ends_with(": 0"));
    assert!(reloaded, "no VM reload counted:\n{stats}");
}

#[test]
fn the_release_module_has_no_trap() {
    // The marker is compiled in only with the `test-trap` feature.
    let release = std::fs::read(wasm_path()).unwrap();
    assert!(!release.windows(TRAP.len()).any(|w| w == TRAP.as_bytes()), "the release module carries the test trap");
    let test = std::fs::read(required_file("WEBHOOK_GUARD_TRAP_WASM", "target/webhook_guard_trap.wasm")).unwrap();
    assert!(test.windows(TRAP.len()).any(|w| w == TRAP.as_bytes()));
}
