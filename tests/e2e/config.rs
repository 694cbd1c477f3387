//! Envoy refuses a bad plugin configuration, and the log names the field.

use crate::harness::{Envoy, Options, Upstream};
use crate::SECRET;

fn refused(opts: Options) -> String {
    match Envoy::launch(&opts) {
        Ok(_) => panic!("Envoy accepted an invalid configuration: {}", opts.plugin),
        Err(log) => log,
    }
}

#[test]
fn envoy_refuses_a_bad_configuration_naming_the_field() {
    let upstream = Upstream::start();
    let cases = [
        (r#"{"endpoints":[{"name":"a","path":"/a","profile":"nope","secret":{"values":["TOPSECRET"]}}]}"#, "endpoints[0].profile"),
        (
            r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["TOPSECRET"]},"max_body_bytes":0}]}"#,
            "endpoints[0].max_body_bytes",
        ),
        (
            r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["TOPSECRET"]},"colour":"red"}]}"#,
            "unknown field `colour`",
        ),
        (r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"env":["WG_UNSET_VARIABLE"]}}]}"#, "endpoints[0].secret.env"),
    ];
    for (plugin, field) in cases {
        let log = refused(Options::new(plugin, upstream.port));
        let line = log.lines().find(|l| l.contains("invalid configuration")).unwrap_or_else(|| panic!("no configuration error in:\n{log}"));
        assert!(line.contains(field), "{line}");
        assert!(!log.contains("TOPSECRET"), "the secret leaked into the log");
    }
}

#[test]
fn secrets_can_come_from_the_environment() {
    let upstream = Upstream::start();
    let plugin = r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"env":["WEBHOOK_SIG"]}}]}"#;
    let mut opts = Options::new(plugin, upstream.port);
    opts.env = vec![("WEBHOOK_SIG".into(), "from-env".into())];
    let envoy = Envoy::start_with(opts);
    let body = crate::CATALOG_SAMPLE.as_bytes();
    assert_eq!(crate::harness::post_json(envoy.port, "/a?sig=from-env", body).status, 200);
    crate::harness::post_json(envoy.port, &format!("/a?sig={SECRET}"), body).assert_problem(403, "forbidden");
    assert_eq!(upstream.requests().len(), 1);
}

/// Each `patch.value` of an Istio EnvoyFilter, with its `applyTo`, dedented to column 0.
fn envoyfilter_patches(envoyfilter: &str) -> Vec<(String, Vec<String>)> {
    let lines: Vec<&str> = envoyfilter.lines().collect();
    let mut patches = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(kind) = line.strip_prefix("  - applyTo: ") else { continue };
        let start = i + lines[i..].iter().position(|l| l.trim_end() == "      value:").expect("no patch value") + 1;
        let value = lines[start..].iter().take_while(|l| l.starts_with("        ")).map(|l| l[8..].to_string()).collect();
        patches.push((kind.trim().to_string(), value));
    }
    patches
}

/// A bootstrap Envoy can validate, made of `envoy_yaml` with what an Istio EnvoyFilter
/// patches in: its HTTP filters (in patch order) in place of those before the router, and
/// its VIRTUAL_HOST merge added to the virtual host.
pub fn with_envoyfilter(envoy_yaml: &str, envoyfilter: &str) -> String {
    let indented = |value: &[String], first: &str, rest: &str| -> String {
        value.iter().enumerate().map(|(i, l)| format!("{}{l}\n", if i == 0 { first } else { rest })).collect()
    };
    let (mut filters, mut virtual_host) = (String::new(), String::new());
    for (kind, value) in envoyfilter_patches(envoyfilter) {
        match kind.as_str() {
            "HTTP_FILTER" => filters += &indented(&value, "          - ", "            "),
            "VIRTUAL_HOST" => virtual_host += &indented(&value, "              ", "              "),
            other => panic!("no splice for an EnvoyFilter patch on {other}"),
        }
    }
    let from = envoy_yaml.find("          http_filters:\n").unwrap() + "          http_filters:\n".len();
    let to = envoy_yaml.find("          - name: envoy.filters.http.router").unwrap();
    let text = format!("{}{filters}{}", &envoy_yaml[..from], &envoy_yaml[to..]);
    let domains = "              domains: [\"*\"]\n";
    let at = text.find(domains).unwrap() + domains.len();
    // Istio's name for the rate limit service is the bootstrap's `ratelimit` cluster.
    format!("{}{virtual_host}{}", &text[..at], &text[at..]).replace("outbound|8081||ratelimit.ratelimit.svc.cluster.local", "ratelimit")
}

/// `envoy --mode validate` (the Envoy in `ENVOY`) on `text`, with the module and the
/// secrets the shipped files name; panics with Envoy's log when it refuses. `file` names
/// the source in that message.
pub fn assert_envoy_accepts(file: &str, text: &str) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let wasm = std::env::var("WEBHOOK_GUARD_WASM").unwrap_or_else(|_| root.join("webhook_guard.wasm").display().to_string());
    let envoy = std::env::var("ENVOY").unwrap_or_else(|_| root.join(".tools/envoy/envoy/_bin/envoy").display().to_string());
    let sds = root.join("examples/tls/sds.yaml").display().to_string();
    let text = text
        .replace("filename: webhook_guard.wasm", &format!("filename: {wasm}"))
        .replace("/etc/envoy/webhook_guard.wasm", &wasm)
        .replace("/var/local/wasm/webhook_guard.wasm", &wasm)
        .replace("/etc/envoy/sds.yaml", &sds);
    let copy = std::env::temp_dir().join(format!("webhook-guard-validate-{}-{}", std::process::id(), file.replace('/', "_")));
    std::fs::write(&copy, text).unwrap();
    let out = std::process::Command::new(&envoy)
        .args(["--mode", "validate", "-c"])
        .arg(&copy)
        .envs([("AZURE_SIG", "a"), ("AZURE_SIG_NEXT", ""), ("STORE_SIG", "c"), ("WEBHOOK_SIG", "d"), ("WEBHOOK_SIG_NEXT", ""), ("ARM_CLIENT_SECRET", "e")])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&copy);
    let log = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && log.contains("OK"), "{file} was refused by {envoy}:\n{log}");
}

/// `envoy --mode validate` loads the module and configures the plugin, so real Envoy
/// vouches for the shipped bootstrap files (the Istio EnvoyFilters, which must also pass
/// on the older Envoys Istio ships: smoke::istio_envoyfilters_are_accepted).
#[test]
fn shipped_envoy_configs_are_accepted_by_envoy() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in crate::harness::SHIPPED_BOOTSTRAPS {
        assert_envoy_accepts(file, &std::fs::read_to_string(root.join(file)).unwrap());
    }
}
