//! `Config::parse`: never panics; an accepted configuration keeps its invariants (each
//! endpoint guards its own path), and its `Debug` output never shows a secret value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_guard::config::{Config, Route, MAX_BODY_LIMIT};
use webhook_guard::route;

/// Replaces every secret by a canary of the same count that never occurs elsewhere.
fn with_canaries(config: &mut Config) {
    for e in &mut config.endpoints {
        for v in &mut e.secret.values {
            *v = b"\x00canary\x00".to_vec();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut config) = Config::parse(data, |_| Some("x".into())) else {
        return;
    };
    assert!(!config.endpoints.is_empty() && config.endpoints.len() <= 64);
    for (i, e) in config.endpoints.iter().enumerate() {
        assert!(e.path.starts_with('/'), "endpoint path {:?}", e.path);
        assert!(!e.path.contains(['?', '#']), "endpoint path {:?}", e.path);
        assert!(!e.secret.values.is_empty(), "no secret");
        assert!(e.max_body_bytes > 0, "max_body_bytes is 0");
        assert!(e.max_body_bytes as u64 <= MAX_BODY_LIMIT);
        assert!(!e.name.is_empty() && e.name.len() <= 64);
        assert!(!e.secret.param.is_empty());
        assert!(e.dedupe_seconds.is_none_or(|s| s > 0 && s <= 7 * 24 * 3600), "dedupe_seconds");
        for v in &e.secret.values {
            assert!(!v.is_empty() && v.len() <= 1024);
            assert!(!v.iter().any(u8::is_ascii_control), "secret with a control character");
            assert_eq!(v.trim_ascii(), v.as_slice(), "secret not trimmed");
        }
        // Names and canonical paths are unique, and the endpoint guards its own path.
        assert!(config.endpoints[..i].iter().all(|o| o.name != e.name && o.canonical != e.canonical));
        assert_eq!(route::canonical(e.path.as_bytes()).as_deref(), Ok(e.canonical.as_str()));
        assert!(
            matches!(config.route(e.path.as_bytes()), Route::Guarded(j, found) if j == i && std::ptr::eq(found, e)),
            "endpoint {i} does not guard its path {:?}",
            e.path
        );
    }

    // Debug never prints secrets: it is the same whatever the secret values are, and no
    // secret appears in it unless the text around the secrets already holds it (a
    // secret "x" is in "max_body_bytes" whatever Debug does).
    let shown = format!("{config:?}");
    let secrets: Vec<Vec<u8>> =
        config.endpoints.iter().flat_map(|e| e.secret.values.clone()).collect();
    with_canaries(&mut config);
    let redacted = format!("{config:?}");
    assert_eq!(shown, redacted, "Debug output depends on the secret values");
    for s in secrets {
        let s = String::from_utf8(s).expect("secret is UTF-8");
        assert!(
            !shown.contains(&s) || redacted.contains(&s),
            "Debug shows the secret {s:?}: {shown}"
        );
    }
});
