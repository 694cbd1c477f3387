//! The scripts behind `make samples` and `make run`, as a new user meets them.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn samples_say_envoy_is_not_reachable_and_fail() {
    // A port nothing listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (ok, out) = output(Command::new(root().join("examples/send-samples.sh")).env("BASE", format!("http://127.0.0.1:{port}")));
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("Envoy is not reachable at http://127.0.0.1:{port}")), "{out}");
    assert_eq!(out.lines().count(), 1, "it went on after the first failure:\n{out}");
}

#[test]
fn run_prints_only_the_error_when_envoy_refuses_the_configuration() {
    let dir = crate::harness::scratch_dir();
    let text = std::fs::read_to_string(root().join("envoy.yaml")).unwrap();
    let bad = text.replacen(r#""profile": "azure_managed_app""#, r#""profile": "azure""#, 1);
    assert_ne!(bad, text);
    std::fs::write(dir.join("envoy.yaml"), bad).unwrap();
    let (ok, out) = output(
        Command::new(root().join("examples/run.sh"))
            .env("CONFIG", dir.join("envoy.yaml"))
            .env("ENVOY", crate::harness::envoy_path()),
    );
    assert!(!ok, "{out}");
    assert!(out.contains("invalid configuration: endpoints[0].profile: unknown profile 'azure'"), "{out}");
    assert!(!out.contains("ready on") && !out.contains("curl"), "the banner was printed:\n{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
