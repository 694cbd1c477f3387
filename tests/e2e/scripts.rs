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
    let (ok, out) = output(Command::new(root().join("examples/run.sh")).env("CONFIG", dir.join("envoy.yaml")).env("ENVOY", crate::harness::envoy_path()));
    assert!(!ok, "{out}");
    assert!(out.contains("invalid configuration: endpoints[0].profile: unknown profile 'azure'"), "{out}");
    assert!(!out.contains("ready on") && !out.contains("curl"), "the banner was printed:\n{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stand-in rustup for tools/toolchain.sh: toolchains are directories (or links) under
/// `$RUSTUP_HOME/toolchains` holding their rustc version in `version`; `toolchain list`
/// lists them, `toolchain install` is recorded in `installs` and creates one.
const FAKE_RUSTUP: &str = r#"#!/usr/bin/env bash
host=x86_64-unknown-linux-gnu
case "$1" in
  run) [ -e "$RUSTUP_HOME/toolchains/$2-$host" ] || { echo "toolchain '$2' is not installed" >&2; exit 1; }
       [ "$4" = -vV ] && echo "host: $host" || echo "rustc $(cat "$RUSTUP_HOME/toolchains/$2-$host/version") (0000000 2026-01-01)" ;;
  toolchain) [ "$2" = list ] && { ls "$RUSTUP_HOME/toolchains"; exit 0; }
       echo "$*" >> "$RUSTUP_HOME/installs"
       mkdir "$RUSTUP_HOME/toolchains/$3-$host" && echo "$3" > "$RUSTUP_HOME/toolchains/$3-$host/version" ;;
esac
"#;

/// The pinned Rust is the one used, never a `stable` that moved on under its name.
#[test]
fn the_toolchain_script_uses_the_pinned_rust_and_never_a_newer_stable() {
    let pinned = std::fs::read_to_string(root().join("rust-toolchain.toml")).unwrap();
    let pinned = pinned.lines().find_map(|l| l.strip_prefix("channel = \"")).unwrap().trim_end_matches('"').to_string();
    let host = "x86_64-unknown-linux-gnu";
    // (stable's version, whether the pinned name is a link to stable) -> linked, installed.
    for (stable, stale_link, installs) in [(pinned.as_str(), false, false), ("9.99.0", true, true), ("9.99.0", false, true)] {
        let dir = crate::harness::scratch_dir();
        let (bin, home) = (dir.join("bin"), dir.join("rustup"));
        let toolchains = home.join("toolchains");
        std::fs::create_dir_all(toolchains.join(format!("stable-{host}"))).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(toolchains.join(format!("stable-{host}/version")), stable).unwrap();
        std::fs::write(bin.join("rustup"), FAKE_RUSTUP).unwrap();
        std::fs::set_permissions(bin.join("rustup"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let link = toolchains.join(format!("{pinned}-{host}"));
        if stale_link {
            std::os::unix::fs::symlink(format!("stable-{host}"), &link).unwrap();
        }
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let run = || output(Command::new(root().join("tools/toolchain.sh")).env("PATH", &path).env("RUSTUP_HOME", &home));
        let (ok, out) = run();
        assert!(ok, "stable {stable}: {out}");
        let version = std::fs::read_to_string(link.join("version")).unwrap();
        assert_eq!(version.trim(), pinned, "stable {stable}: the pinned name runs another Rust: {out}");
        let installed = std::fs::read_to_string(home.join("installs")).unwrap_or_default();
        let install = format!("toolchain install {pinned} --profile minimal -c clippy -t wasm32-wasip1\n");
        assert_eq!(installed, if installs { install } else { String::new() }, "stable {stable}: {out}");
        assert_eq!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), !installs);
        // Once in place, a second run changes nothing.
        assert!(run().0);
        assert_eq!(std::fs::read_to_string(home.join("installs")).unwrap_or_default().lines().count(), usize::from(installs));
    }
}
