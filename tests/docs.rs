#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The docs cannot drift from the code (README.md, SECURITY.md and docs/): every plugin
//! configuration block parses with the filter's own parser; every key the parser accepts
//! is documented and every documented key is accepted; every metric family the filter
//! defines is in the metrics page; every `make` target, relative link (with its anchor)
//! and repository path they name exists; `src/lib.rs`'s module map lists every module.
//! Envoy configurations are not written into the docs: they live in `examples/`, where
//! the end-to-end tests validate each with Envoy (`envoy --mode validate`), and the docs
//! link to them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use webhook_guard::config::{Config, COMMON_KEYS};
use webhook_guard::metrics::{Counter, Histogram, ListenerCounter};
use webhook_guard::profile::REGISTRY;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every documentation page, as a path from the repository's root.
fn pages() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path.strip_prefix(root()).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = vec!["README.md".to_string(), "SECURITY.md".to_string()];
    walk(&root().join("docs"), &mut out);
    out.sort();
    out
}

/// A page split into its fenced blocks (info string, body) and its prose (the rest, with
/// each block's lines left empty so that line numbers still match).
struct Page {
    blocks: Vec<(String, String)>,
    prose: String,
}

fn parse(text: &str) -> Page {
    let (mut blocks, mut prose) = (Vec::new(), String::new());
    let mut open: Option<(String, String, String)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match &mut open {
            None if trimmed.starts_with("```") => {
                let indent = line[..line.len() - trimmed.len()].to_string();
                open = Some((trimmed[3..].trim().to_string(), String::new(), indent));
            }
            None => prose.push_str(line),
            Some((info, body, indent)) => {
                if trimmed.starts_with("```") {
                    blocks.push((std::mem::take(info), std::mem::take(body)));
                    open = None;
                } else {
                    body.push_str(line.strip_prefix(indent.as_str()).unwrap_or(line));
                    body.push('\n');
                }
            }
        }
        prose.push('\n');
    }
    assert!(open.is_none(), "a fenced block is not closed");
    Page { blocks, prose }
}

/// The code spans of some prose.
fn spans(prose: &str) -> Vec<String> {
    prose.split('`').skip(1).step_by(2).filter(|s| !s.contains('\n')).map(str::to_string).collect()
}

/// The targets of the prose's links, `[text](target)`.
fn links(prose: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = prose;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            let target = &rest[..end];
            if !target.contains(char::is_whitespace) {
                out.push(target.to_string());
            }
        }
    }
    out
}

/// GitHub's anchor of a heading: lowercased, punctuation but `-` and `_` dropped, spaces
/// as `-`.
fn anchor(heading: &str) -> String {
    heading.trim().to_lowercase().chars().filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' ')).map(|c| if c == ' ' { '-' } else { c }).collect()
}

fn anchors(path: &str) -> BTreeSet<String> {
    parse(&read(path)).prose.lines().filter_map(|l| l.trim_start_matches('#').strip_prefix(' ').filter(|_| l.starts_with('#'))).map(anchor).collect()
}

// ---------------------------------------------------------------------------------------
// Configuration

/// A value for any environment variable a documented configuration names: usable as a
/// query secret, a `whsec_` signing secret (24 bytes) and a client secret.
fn env(_: &str) -> Option<String> {
    Some("whsec_YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh".to_string())
}

/// An Azure endpoint with `members` added, as a whole configuration.
fn azure_with(members: &str) -> String {
    format!(r#"{{"endpoints": [{{"name": "a", "path": "/a", "profile": "azure_managed_app", "secret": {{"values": ["k"]}}, {members}}}]}}"#)
}

/// The configuration a documented JSON block is part of, or None when it is no
/// configuration (a CloudEvent, a problem body).
fn as_configuration(block: &str) -> Option<String> {
    let text = block.trim();
    if text.starts_with('"') {
        // A member of an endpoint: `"rate_limit": {...}`, `"arm_check": {...}`.
        return Some(azure_with(text));
    }
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    if value.get("endpoints").is_some() {
        Some(text.to_string())
    } else if value.get("profile").is_some() {
        Some(format!(r#"{{"endpoints": [{text}]}}"#))
    } else {
        None
    }
}

#[test]
fn every_configuration_block_parses_with_the_filters_parser() {
    let mut parsed = 0;
    for path in pages() {
        for (info, body) in parse(&read(&path)).blocks {
            if info != "json" {
                continue;
            }
            if let Some(config) = as_configuration(&body) {
                let config = config.replace("<secret>", "s3cret");
                if let Err(e) = Config::parse(config.as_bytes(), env) {
                    panic!("{path}: a configuration block is refused: {e}\n{body}");
                }
                parsed += 1;
            }
        }
    }
    // The reference, the two ARM check forms, rate limits and a signed sender at least.
    assert!(parsed >= 5, "only {parsed} configuration blocks found");
}

/// The keys an object of the configuration accepts, as the parser says when given an
/// unknown one ("unknown field `x`, expected one of `a`, `b`").
fn accepted(config_with: impl Fn(&str) -> String) -> BTreeSet<String> {
    let probe = config_with(r#""zz_unknown": 1"#);
    let error = Config::parse(probe.as_bytes(), env).err().unwrap_or_else(|| panic!("an unknown key was accepted: {probe}"));
    let (_, list) = error.split_once("expected one of ").or_else(|| error.split_once("expected ")).unwrap_or_else(|| panic!("{error}"));
    let list = list.split(" at line").next().unwrap();
    let keys: BTreeSet<String> = spans(&format!("{list}`")).into_iter().filter(|k| !k.starts_with(',') && !k.trim().is_empty() && !k.contains(' ')).collect();
    assert!(!keys.is_empty(), "no keys in: {error}");
    keys
}

/// The first cell of each row of the tables of `section` (a heading's text, or the whole
/// page with ""), whose header's first cell is `key`: the documented keys, a row naming
/// several (`a`, `b`) giving each.
fn documented(path: &str, section: &str) -> BTreeSet<String> {
    let prose = parse(&read(path)).prose;
    let mut out = BTreeSet::new();
    let mut inside = section.is_empty();
    let mut in_table = false;
    for line in prose.lines() {
        if let Some(heading) = line.strip_prefix("## ").or_else(|| line.strip_prefix("# ")) {
            inside = section.is_empty() || heading.trim() == section;
        }
        if !inside {
            continue;
        }
        if line.starts_with("| key |") {
            in_table = true;
        } else if !line.starts_with('|') {
            in_table = false;
        } else if in_table && !line.starts_with("|---") {
            let cell = line.split('|').nth(1).unwrap();
            out.extend(spans(cell));
        }
    }
    out
}

/// The table row documenting `key` (its first cell holds it) on `path`.
fn row<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with('|') && l.split('|').nth(1).is_some_and(|cell| spans(cell).iter().any(|s| s == key)))
}

#[test]
fn every_key_the_parser_accepts_is_documented_and_every_documented_key_is_accepted() {
    const PAGE: &str = "docs/configuration.md";
    let reference = documented(PAGE, "Configuration reference");
    let under = |prefix: &str| -> BTreeSet<String> {
        reference.iter().filter_map(|k| k.strip_prefix(prefix)).filter(|k| !k.contains('.')).map(str::to_string).collect()
    };
    let top: BTreeSet<String> = reference.iter().filter(|k| !k.contains('.') && !k.contains('[')).cloned().collect();
    // `endpoints[].secret.param` documents `secret` too.
    let endpoint: BTreeSet<String> =
        reference.iter().filter_map(|k| k.strip_prefix("endpoints[].")).map(|k| k.split('.').next().unwrap().to_string()).collect();
    let secret = under("endpoints[].secret.");

    // The top level and the secret object: serde lists what it accepts.
    assert_eq!(
        accepted(|m| format!(r#"{{"endpoints": [{{"name": "a", "path": "/a", "profile": "md5_envelope", "secret": {{"values": ["k"]}}}}], {m}}}"#)),
        top,
        "{PAGE}: top-level keys"
    );
    assert_eq!(
        accepted(|m| format!(r#"{{"endpoints": [{{"name": "a", "path": "/a", "profile": "md5_envelope", "secret": {{"values": ["k"], {m}}}}}]}}"#)),
        secret,
        "{PAGE}: secret keys"
    );
    assert_eq!(
        accepted(|m| azure_with(&format!(r#""rate_limit": {{"per_second": 1, "burst": 1, {m}}}"#))),
        documented(PAGE, "Rate limiting"),
        "{PAGE}: rate_limit keys"
    );
    let arm = r#""arm_cluster": "a", "token_cluster": "t", "managed_identity": {}"#;
    assert_eq!(accepted(|m| azure_with(&format!(r#""arm_check": {{{arm}, {m}}}"#))), documented("docs/arm-check.md", ""), "docs/arm-check.md: arm_check keys");
    // The token sources' own keys are named in their rows.
    let arm_page = parse(&read("docs/arm-check.md")).prose;
    for (source, config) in [
        ("client_credentials", r#""client_credentials": {"tenant": "t", "client_id": "c", "client_secret_env": "S", M}"#),
        ("managed_identity", r#""managed_identity": {M}"#),
    ] {
        let keys = accepted(|m| azure_with(&format!(r#""arm_check": {{"arm_cluster": "a", "token_cluster": "t", {}}}"#, config.replace('M', m))));
        let row = row(&arm_page, source).unwrap_or_else(|| panic!("docs/arm-check.md: no row for {source}"));
        for key in keys {
            assert!(spans(row).contains(&key), "docs/arm-check.md: {source}'s key {key} is not named in its row");
        }
    }

    // An endpoint's keys: the common ones in the reference; a profile's own there or on
    // its page; and nothing documented that no parser reads.
    for key in COMMON_KEYS {
        assert!(endpoint.contains(key), "{PAGE}: endpoints[].{key} is not documented");
    }
    for registration in REGISTRY {
        let own = format!("docs/profiles/{}.md", registration.name);
        let on_page = if root().join(&own).exists() { documented(&own, "") } else { BTreeSet::new() };
        for key in registration.keys {
            assert!(endpoint.contains(*key) || on_page.contains(*key), "{}'s key {key} is documented neither in {PAGE} nor in {own}", registration.name);
        }
    }
    for key in &endpoint {
        assert!(
            COMMON_KEYS.contains(&key.as_str()) || REGISTRY.iter().any(|r| r.keys.contains(&key.as_str())),
            "{PAGE}: endpoints[].{key} is no key of the parser"
        );
    }
}

#[test]
fn every_registered_profile_has_its_senders_row_its_page_and_its_configuration_value() {
    let readme = read("README.md");
    let configuration = read("docs/configuration.md");
    let values = row(&configuration, "endpoints[].profile").map(spans).unwrap_or_default();
    for registration in REGISTRY {
        let name = registration.name;
        let page = format!("docs/profiles/{name}.md");
        assert!(row(&readme, name).is_some_and(|r| r.contains(&format!("({page})"))), "README.md: no senders row for {name} linking {page}");
        assert!(root().join(&page).exists(), "{page} is missing");
        assert!(values.iter().any(|v| v == name), "docs/configuration.md: endpoints[].profile does not name {name}");
    }
}

// ---------------------------------------------------------------------------------------
// Metrics

#[test]
fn every_metric_family_is_in_the_metrics_page() {
    const PAGE: &str = "docs/operations/monitoring.md";
    let endpoints: Vec<String> = REGISTRY
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let extra = if r.name == "azure_managed_app" { r#", "arm_check": {"arm_cluster": "a", "token_cluster": "t", "managed_identity": {}}"# } else { "" };
            format!(r#"{{"name": "e{i}", "path": "/e{i}", "profile": "{}", "secret": {{"env": ["S"]}}{extra}}}"#, r.name)
        })
        .collect();
    let config = Config::parse(format!(r#"{{"endpoints": [{}]}}"#, endpoints.join(",")).as_bytes(), env).unwrap();
    let mut names: Vec<String> = ListenerCounter::ALL.iter().map(|c| c.name()).collect();
    for endpoint in &config.endpoints {
        names.extend(Counter::of(endpoint).into_iter().map(|c| c.name(endpoint)));
        names.extend(Histogram::of(endpoint).into_iter().map(|h| h.name(endpoint)));
    }
    let families: BTreeSet<String> = names
        .iter()
        .map(|name| {
            // `webhook_guard.<label>=.=<value>;.;...<family>`: the family follows the last label.
            let family = name.rsplit(";.;").next().unwrap();
            family.strip_prefix("webhook_guard.").unwrap_or(family).to_string()
        })
        .collect();
    assert!(families.len() >= 10, "{families:?}");
    let page = read(PAGE);
    for family in families {
        assert!(page.contains(&format!("`webhook_guard_{family}`")), "{PAGE}: the family webhook_guard_{family} is not documented");
    }
}

// ---------------------------------------------------------------------------------------
// Names: make targets, links, paths, modules

fn make_targets() -> BTreeSet<String> {
    read("Makefile")
        .lines()
        .filter(|l| !l.starts_with(['\t', '#', ' ', '.']))
        .filter_map(|l| l.split_once(':').filter(|(_, rest)| !rest.starts_with('=')).map(|(names, _)| names.to_string()))
        .flat_map(|names| names.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|name| !name.contains(['$', '%', '/']))
        .collect()
}

#[test]
fn every_make_target_the_docs_name_exists() {
    let targets = make_targets();
    assert!(targets.contains("run") && targets.contains("test"), "{targets:?}");
    let mut named = 0;
    for path in pages() {
        let page = parse(&read(&path));
        let code: Vec<String> = spans(&page.prose).into_iter().chain(page.blocks.into_iter().map(|(_, body)| body)).collect();
        for text in code {
            for words in text.split(['\n', ';', '&', '|', '(', ')']).map(|c| c.split_whitespace().collect::<Vec<_>>()) {
                // `make x`, `VAR=value make x y`; a flag or a variable after `make` ends it.
                let Some(at) = words.iter().position(|w| *w == "make") else { continue };
                for word in words[at + 1..].iter().take_while(|w| w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')) {
                    assert!(targets.contains(*word), "{path}: `make {word}` is no target of the Makefile");
                    named += 1;
                }
            }
        }
    }
    assert!(named >= 10, "only {named} make targets named");
}

#[test]
fn every_relative_link_resolves_with_its_anchor() {
    let mut checked = 0;
    for path in pages() {
        let dir = Path::new(&path).parent().unwrap().to_path_buf();
        for target in links(&parse(&read(&path)).prose) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = target.split_once('#').map_or((target.as_str(), None), |(f, a)| (f, Some(a)));
            let resolved: PathBuf = if file.is_empty() { PathBuf::from(&path) } else { normalise(&dir.join(file)) };
            assert!(root().join(&resolved).exists(), "{path}: the link {target} leads nowhere ({})", resolved.display());
            if let Some(fragment) = fragment {
                let page = resolved.to_string_lossy().into_owned();
                assert!(page.ends_with(".md"), "{path}: {target}: an anchor into a file that is not a page");
                assert!(anchors(&page).contains(fragment), "{path}: {target}: {page} has no heading #{fragment}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} links");
}

/// `a/b/../c` as `a/c`.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => assert!(out.pop(), "{} leaves the repository", path.display()),
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Whether a code span names a file of the repository: a path under one of its
/// directories, or one of its top-level files. Generated places (`dist/`, `target/`,
/// `.tools/`, `bench-results/`) and patterns (`<name>`, `*`, `{a,b}`) are not files.
fn repository_path(span: &str) -> Option<&str> {
    const DIRS: [&str; 9] = ["src/", "tests/", "docs/", "examples/", "tools/", "benches/", "fuzz/", ".cargo/", ".ci/"];
    const FILES: [&str; 7] = ["envoy.yaml", "Makefile", "Cargo.toml", "rust-toolchain.toml", "rustfmt.toml", "README.md", "SECURITY.md"];
    let span = span.trim();
    let path = span.split_whitespace().next()?;
    let named = DIRS.iter().any(|d| path.starts_with(d)) || FILES.contains(&path);
    (named && path == span && !path.contains(['<', '>', '*', '{', '$', '…'])).then_some(path)
}

#[test]
fn every_repository_path_the_docs_name_exists() {
    let mut checked = 0;
    for path in pages() {
        let page = parse(&read(&path));
        // Code spans, and the first word of each line of a plain block (a source tree).
        let trees = page.blocks.iter().filter(|(info, _)| info.is_empty()).flat_map(|(_, body)| body.lines().filter_map(|l| l.split_whitespace().next()));
        for span in spans(&page.prose).into_iter().chain(trees.map(str::to_string)) {
            if let Some(file) = repository_path(&span) {
                let file = file.trim_end_matches(['.', ',', ':']);
                assert!(root().join(file).exists(), "{path}: `{file}` does not exist");
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "only {checked} paths");
}

#[test]
fn the_module_map_lists_every_module() {
    let lib = read("src/lib.rs");
    let map: String = lib.lines().filter(|l| l.starts_with("//!")).collect::<Vec<_>>().join("\n");
    let modules: Vec<&str> = lib.lines().filter_map(|l| l.trim_start_matches("pub ").strip_prefix("mod ")).map(|m| m.trim_end_matches(';')).collect();
    assert!(modules.len() >= 20, "{modules:?}");
    for module in modules {
        assert!(map.contains(&format!("- [`{module}`]:")) || map.contains(&format!("- `{module}`:")), "src/lib.rs: the module map lacks {module}");
    }
}

#[test]
fn the_docs_hold_no_envoy_configuration_of_their_own() {
    let mut yaml = 0;
    for path in pages() {
        for (info, body) in parse(&read(&path)).blocks {
            if info == "yaml" {
                yaml += 1;
                assert!(
                    !body.contains("static_resources") && !body.contains("typed_config"),
                    "{path}: an Envoy configuration belongs in examples/, where Envoy validates it"
                );
            }
        }
    }
    assert!(yaml >= 1, "the metrics page's Istio block was not found");
}
