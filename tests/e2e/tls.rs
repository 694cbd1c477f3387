//! examples/envoy-production.yaml as shipped, at the edge: HTTPS with a certificate from
//! files (file-based SDS) that is reloaded when it rotates, and plain HTTP refused.

use crate::command::run;
use crate::harness::{self, Envoy, Options, Upstream};
use crate::CATALOG_SAMPLE;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const HOST: &str = "webhooks.example.com";

/// A certificate for `HOST` signed by the test CA in `dir`; returns its serial number.
fn issue(dir: &Path, name: &str) -> String {
    let path = |ext: &str| dir.join(format!("{name}.{ext}"));
    std::fs::write(path("ext"), format!("subjectAltName=DNS:{HOST}\n")).unwrap();
    run(Command::new("openssl")
        .args(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", &format!("/CN={HOST}"), "-keyout"])
        .arg(path("key"))
        .arg("-out")
        .arg(path("csr")));
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-set_serial"])
        .arg(format!("0x{}", name.bytes().map(|b| format!("{b:02x}")).collect::<String>()))
        .arg("-in")
        .arg(path("csr"))
        .arg("-CA")
        .arg(dir.join("ca.crt"))
        .arg("-CAkey")
        .arg(dir.join("ca.key"))
        .arg("-extfile")
        .arg(path("ext"))
        .arg("-out")
        .arg(path("crt")));
    String::from_utf8(run(Command::new("openssl").args(["x509", "-noout", "-serial", "-in"]).arg(path("crt")))).unwrap()
}

/// Puts certificate `name` in place the way a Kubernetes Secret volume does: the files
/// are links through `..data`, which is swapped for a new directory in one rename.
fn install(dir: &Path, name: &str) {
    let tls = dir.join("tls");
    let version = tls.join(format!("..{name}"));
    std::fs::create_dir_all(&version).unwrap();
    std::fs::copy(dir.join(format!("{name}.crt")), version.join("tls.crt")).unwrap();
    std::fs::copy(dir.join(format!("{name}.key")), version.join("tls.key")).unwrap();
    let staged = tls.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{name}"), &staged).unwrap();
    std::fs::rename(&staged, tls.join("..data")).unwrap();
    for file in ["tls.crt", "tls.key"] {
        if !tls.join(file).exists() {
            std::os::unix::fs::symlink(format!("..data/{file}"), tls.join(file)).unwrap();
        }
    }
}

/// The shipped production config and SDS file, pointed at `dir`, the test's module and
/// upstream, on ports Envoy picks.
fn production(dir: &Path, upstream: &Upstream) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tls = dir.join("tls").display().to_string();
    let sds = std::fs::read_to_string(root.join("examples/tls/sds.yaml")).unwrap().replace("/etc/envoy/tls", &tls);
    std::fs::write(dir.join("sds.yaml"), sds).unwrap();
    let text = std::fs::read_to_string(root.join("examples/envoy-production.yaml")).unwrap();
    let replacements = [
        ("/etc/envoy/webhook_guard.wasm".to_string(), harness::wasm_path().display().to_string()),
        ("/etc/envoy/sds.yaml".to_string(), dir.join("sds.yaml").display().to_string()),
        ("address: 0.0.0.0, port_value: 8443".to_string(), "address: 127.0.0.1, port_value: 0".to_string()),
        ("port_value: 9901".to_string(), "port_value: 0".to_string()),
        ("type: STRICT_DNS".to_string(), "type: STATIC".to_string()),
        ("address: backend.internal, port_value: 8080".to_string(), format!("address: 127.0.0.1, port_value: {}", upstream.port)),
    ];
    replacements.iter().fold(text, |text, (from, to)| {
        assert!(text.contains(from.as_str()), "examples/envoy-production.yaml no longer has `{from}`");
        text.replace(from.as_str(), to)
    })
}

/// POSTs the Azure sample over HTTPS, trusting only the test CA; returns the status.
fn post_https(dir: &Path, port: u16) -> String {
    let out = run(Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(dir.join("ca.crt"))
        .args(["--resolve", &format!("{HOST}:{port}:127.0.0.1"), "-H", "content-type: application/json", "--data-binary"])
        .arg(format!("@{}", Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/requests/azure-service-catalog.json").display()))
        .arg(format!("https://{HOST}:{port}/api/resource?sig=azure-secret")));
    String::from_utf8(out).unwrap()
}

/// The serial number of the certificate Envoy serves now.
fn served_serial(port: u16) -> String {
    let script = format!("openssl s_client -connect 127.0.0.1:{port} -servername {HOST} </dev/null 2>/dev/null | openssl x509 -noout -serial");
    String::from_utf8(Command::new("sh").args(["-c", &script]).output().unwrap().stdout).unwrap()
}

fn ca(dir: &Path) {
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=webhook-guard test CA",
            "-keyout",
        ])
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(dir.join("ca.crt")));
}

#[test]
fn the_production_config_serves_https_reloads_its_certificate_and_refuses_plain_http() {
    let dir = harness::scratch_dir();
    ca(&dir);
    let first = issue(&dir, "first");
    install(&dir, "first");
    let upstream = Upstream::start();
    let mut opts = Options::new("", upstream.port);
    // One secret outside a rotation: the optional second one is set, but empty.
    opts.env = [("AZURE_SIG", "azure-secret"), ("AZURE_SIG_NEXT", ""), ("STORE_SIG", "store-secret")].map(|(k, v)| (k.to_string(), v.to_string())).to_vec();
    let envoy = Envoy::launch_bootstrap(&production(&dir, &upstream), &opts).unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"));

    assert_eq!(served_serial(envoy.port), first);
    assert_eq!(post_https(&dir, envoy.port), "200");
    let seen = upstream.only();
    assert_eq!(seen.path, "/api/resource");
    assert_eq!(seen.json()["data"]["eventType"], "PUT");
    assert_eq!(serde_json::from_str::<serde_json::Value>(CATALOG_SAMPLE).unwrap(), seen.json()["data"]["original"]);

    // Plain HTTP on the TLS port gets no HTTP answer, and nothing reaches the upstream.
    let plain = b"POST /api/resource?sig=azure-secret HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
    assert!(harness::try_raw(envoy.port, plain).is_none(), "plain HTTP was answered");
    assert_eq!(upstream.requests().len(), 1);

    // Rotation: the new certificate is served without a restart.
    let second = issue(&dir, "second");
    assert_ne!(first, second);
    install(&dir, "second");
    let deadline = Instant::now() + Duration::from_secs(30);
    while served_serial(envoy.port) != second {
        assert!(Instant::now() < deadline, "Envoy still serves {first} after the rotation:\n{}", envoy.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(post_https(&dir, envoy.port), "200");
    assert_eq!(upstream.requests().len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
