//! Every plugin configuration shipped in `envoy.yaml` and `examples/` parses with the
//! filter's own parser, so the examples cannot drift from the code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use webhook_guard::config::{Config, HeaderMode};
use webhook_guard::profile::azure_managed_app::arm::config::TokenSource;

/// YAML keys under which the files carry the plugin configuration as an indented JSON
/// object: Envoy (`value: |`), Istio (`pluginConfig:`) and Envoy Gateway (`config:`).
const MARKERS: [&str; 3] = ["value: |", "pluginConfig:", "config:"];

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.ends_with("fleet/ratelimit-service") {
            // The rate limit service's own configuration: tools/ratelimit-service's tests.
            continue;
        }
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// The JSON blocks that follow a marker line, indented deeper than it.
fn plugin_configs(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !MARKERS.iter().any(|m| line.trim_end().ends_with(m)) {
            continue;
        }
        let block: Vec<&str> = lines[i + 1..].iter().take_while(|l| l.trim().is_empty() || indent(l) > indent(line)).copied().collect();
        let json = block.join("\n");
        if json.trim_start().starts_with('{') && json.contains("\"endpoints\"") {
            found.push(json);
        }
    }
    found
}

/// Whether a file installs the filter (and so must carry its configuration); the others
/// are the Secrets, patches, routes and certificate files around it.
fn installs_the_filter(text: &str) -> bool {
    ["kind: WasmPlugin", "kind: EnvoyExtensionPolicy", "envoy.extensions.filters.http.wasm.v3.Wasm"].iter().any(|k| text.contains(k))
}

#[test]
fn every_shipped_plugin_configuration_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("envoy.yaml")];
    yaml_files(&root.join("examples"), &mut files);
    let mut total = 0;
    for file in files.iter().filter(|f| installs_the_filter(&std::fs::read_to_string(f).unwrap())) {
        let text = std::fs::read_to_string(file).unwrap();
        let configs = plugin_configs(&text);
        assert!(!configs.is_empty(), "{} holds no plugin configuration", file.display());
        for json in configs {
            let names = RefCell::new(Vec::new());
            let config = Config::parse(json.as_bytes(), |name| {
                names.borrow_mut().push(name.to_string());
                Some(format!("value-of-{name}"))
            })
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!(!config.endpoints.is_empty());
            // Each variable the plugin reads must be handed to the VM by the same file
            // (host_env_keys, vmConfig.env, env.hostKeys): a name only in the JSON is unset.
            let wiring = text.replace(&json, "");
            for name in names.into_inner() {
                assert!(wiring.contains(&name), "{}: {name} is read by the plugin but not passed to the VM", file.display());
            }
            // Hold without allow_on_headers_stop_iteration would stall every request.
            if config.header_mode == HeaderMode::Hold {
                assert!(sets_stop_iteration(&text), "{}: header_mode hold without the flag", file.display());
            }
            total += 1;
        }
    }
    assert!(total >= 6, "expected the configs of envoy.yaml and the five examples that install the filter, found {total}");
}

/// Whether `text` really sets `allow_on_headers_stop_iteration` (not just names it in a
/// comment): a YAML or JSON key set to true, or an EnvoyPatchPolicy operation whose `path`
/// is the flag and whose `value` is true.
fn sets_stop_iteration(text: &str) -> bool {
    const FLAG: &str = "allow_on_headers_stop_iteration";
    let lines: Vec<&str> = text.lines().map(|l| l.split(" #").next().unwrap()).filter(|l| !l.trim_start().starts_with('#')).collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    lines.iter().enumerate().any(|(i, line)| {
        let key = line.trim().trim_end_matches(',').replace('"', "");
        if key == format!("{FLAG}: true") {
            return true;
        }
        // The patch's siblings (same indentation, same operation) must hold `value: true`.
        key == format!("path: {FLAG}") && text.contains("kind: EnvoyPatchPolicy") && {
            let siblings = |l: &&&str| indent(l) == indent(line);
            let before = lines[..i].iter().rev().take_while(siblings);
            let after = lines[i + 1..].iter().take_while(siblings);
            before.chain(after).any(|l| l.trim() == "value: true")
        }
    })
}

#[test]
fn only_a_real_setting_counts_as_the_stop_iteration_flag() {
    // A comment naming the flag (the fleet Envoy Gateway example once had only that).
    assert!(!sets_stop_iteration("# head (\"header_mode\": \"hold\" + allow_on_headers_stop_iteration). EnvoyExtensionPolicy\nkind: EnvoyExtensionPolicy\n"));
    assert!(!sets_stop_iteration("a:\n  allow_on_headers_stop_iteration: false # allow_on_headers_stop_iteration: true\n"));
    assert!(sets_stop_iteration("config:\n  allow_on_headers_stop_iteration: true\n"));
    assert!(sets_stop_iteration("  \"allow_on_headers_stop_iteration\": true,\n"));
    let patch = "kind: EnvoyPatchPolicy\n  operation:\n    op: add\n    path: allow_on_headers_stop_iteration\n    value: true\n";
    assert!(sets_stop_iteration(patch));
    assert!(!sets_stop_iteration(&patch.replace("value: true", "value: false")));
}

#[test]
fn the_extractor_finds_blocks_and_ignores_other_config_keys() {
    let text = "a:\n  config:\n    name: x\n  value: |\n    {\"endpoints\": []}\n  next: 1\n";
    assert_eq!(plugin_configs(text), vec!["    {\"endpoints\": []}".to_string()]);
}

/// The YAML of the cluster `name` in `text`: from its `- name:` line to the next one.
fn cluster<'a>(text: &'a str, name: &str) -> &'a str {
    let start = text.find(&format!("  - name: {name}\n")).unwrap_or_else(|| panic!("no cluster {name}"));
    let rest = &text[start + 1..];
    rest.find("  - name: ").map_or(rest, |end| &rest[..end])
}

#[test]
fn the_arm_check_example_wires_each_token_source_to_its_cluster() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/arm-check/envoy.yaml")).unwrap();
    let configs = plugin_configs(&text);
    let config = Config::parse(configs[0].as_bytes(), |name| Some(format!("value-of-{name}"))).unwrap();
    let checks: Vec<_> = config.endpoints.iter().filter_map(|e| e.profile.arm_check()).collect();
    assert!(checks.iter().any(|c| matches!(c.source, TokenSource::ClientCredentials { .. })));
    assert!(checks.iter().any(|c| matches!(c.source, TokenSource::ManagedIdentity { .. })));
    for check in checks {
        // ARM and Entra ID over TLS with SNI and a checked certificate; IMDS is plain HTTP.
        for (name, host) in [(&check.arm_cluster, &check.arm_authority), (&check.token_cluster, &check.token_authority)] {
            let yaml = cluster(&text, name);
            assert!(yaml.contains(&format!("address: {host}, port_value:")), "{name} does not go to {host}");
            let tls = [format!("sni: {host}"), format!("matcher: {{ exact: {host} }}"), "trusted_ca:".to_string()];
            let wants_tls = !host.starts_with("169.254.");
            assert_eq!(tls.iter().all(|t| yaml.contains(t.as_str())), wants_tls, "{name}: TLS to {host}");
        }
    }
}
