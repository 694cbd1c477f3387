//! No way around the guard: every spelling a loose backend routes to the guarded handler
//! is guarded, with Envoy's path normalisation on (as in `envoy.yaml`) and off (paths as
//! sent); the secret never stays in `:path`, whatever the outcome.

use crate::harness::{post_json, send, Envoy, Options, Upstream};
use crate::{azure_plugin, CATALOG_SAMPLE, OLD_SECRET, SECRET};

/// Spellings of `/api/resource` that ASP.NET Core, Express, Spring, Rails, Django, Flask,
/// Go or Laravel route (or redirect) to its handler.
const VARIANTS: [&str; 24] = [
    "/api/resource",
    "/api/resource/",
    "/API/resource",
    "/api/Resource",
    "/API/RESOURCE/",
    "/api/resource;x=1",
    "/api;v=1/resource",
    "/api/resource;sig=s3cret-Value",
    "/api/resource/.",
    "/api/resource.json",
    "/api/resource.xml",
    "/api/resource%20",
    "/api/resource.",
    "/api//resource",
    "//api/resource",
    "/api/./resource",
    "/api/x/../resource",
    "/api/x/..;/resource",
    "/api/x/%2e%2e/resource",
    "/api/%72esource",
    "/api/resourc%65",
    "/api/re%C5%BFource",
    "/api/resource.json/",
    "/api/resource%20.json",
];

/// Paths with no single reading, of which a lenient one is `/api/resource`: refused
/// before authentication. (`/api/resource%zz` is not: every reading keeps `%zz` in the
/// last segment, so none is guarded; after a format suffix's dot one reading is.) The
/// last two are `/api` canonically, but `..` removes a `;` segment: Go's reading of the
/// first, and Tomcat's of the second (it cuts the raw `;` of `api;`, then decodes `%3Bx`
/// to a segment of its own).
const AMBIGUOUS: [&str; 9] = [
    "/api%2Fresource",
    "/api%5Cresource",
    "/api/%2572esource",
    "/api/resource%00",
    "/api/resource%FF",
    "/api/resource.%zz",
    "/api\\resource",
    "/api/resource/;x=1/..",
    "/api;/resource/%3Bx/..",
];

/// Neighbours of the guarded path that stay unguarded.
const UNGUARDED: [&str; 4] = ["/api/resources", "/api/resource-status", "/api/resource/x", "/api/resources.json"];

/// (query, status when the path is guarded): no secret, a near miss, the secret.
fn credentials() -> [(String, u16); 3] {
    [("a=1".to_string(), 401), ("a=1&sig=s3cret-Valuf".to_string(), 403), (format!("a=1&sig={SECRET}"), 200)]
}

fn suite(normalize_path: bool) {
    let upstream = Upstream::start();
    let mut opts = Options::new(&azure_plugin(""), upstream.port);
    opts.normalize_path = normalize_path;
    let envoy = Envoy::start_with(opts);
    let overrides = [("x-http-method-override", "DELETE"), ("x-http-method", "PUT"), ("x-method-override", "GET")];
    let override_header = [("content-type", "application/json"), overrides[0], overrides[1], overrides[2]];
    for path in VARIANTS {
        for (query, status) in credentials() {
            let before = upstream.requests().len();
            let res = send(envoy.port, "POST", &format!("{path}?{query}"), &override_header, CATALOG_SAMPLE.as_bytes());
            assert_eq!(res.status, status, "{path}?{query}: {res:?}");
            let seen = &upstream.requests()[before..];
            if status == 200 {
                assert_eq!(seen.len(), 1, "{path}?{query}");
                assert_eq!(seen[0].path, "/api/resource?a=1", "{path}?{query}");
                for (name, _) in overrides {
                    assert_eq!(seen[0].header(name), None, "{name} on {path}?{query}");
                }
                assert!(!format!("{:?}", seen[0].headers).contains(SECRET));
            } else {
                assert!(seen.is_empty(), "{path}?{query} reached the upstream: {seen:?}");
            }
        }
    }
    for path in AMBIGUOUS {
        for (query, status) in credentials() {
            let before = upstream.requests().len();
            let res = post_json(envoy.port, &format!("{path}?{query}"), CATALOG_SAMPLE.as_bytes());
            if normalize_path && (path.contains('\\') || path.ends_with("/..")) {
                // Envoy's normalisation reads a raw '\' as '/' and resolves `..` (a `;x`
                // is a segment to it) before any filter: the path is then `/api/resource`,
                // `/api/resource/` or `/api;/resource/`, guarded as usual.
                assert_eq!(res.status, status, "{path}?{query}: {res:?}");
                let seen: Vec<String> = upstream.requests()[before..].iter().map(|r| r.path.clone()).collect();
                assert_eq!(seen, if status == 200 { vec!["/api/resource?a=1".to_string()] } else { vec![] }, "{path}?{query}");
                continue;
            }
            if normalize_path && path.contains("%00") {
                // Envoy's normalisation refuses an encoded NUL itself, before any filter.
                assert_eq!((res.status, res.header("server")), (400, Some("envoy")), "{path}: {res:?}");
            } else {
                res.assert_problem(400, "ambiguous_path");
            }
            assert_eq!(upstream.requests().len(), before, "{path}?{query} reached the upstream");
        }
    }
    for path in UNGUARDED {
        let before = upstream.requests().len();
        let res = post_json(envoy.port, &format!("{path}?a=1"), b"{}");
        assert_eq!(res.status, 200, "{path}: {res:?}");
        let seen = &upstream.requests()[before..];
        assert_eq!(seen.len(), 1, "{path}");
        assert_eq!((seen[0].path.as_str(), seen[0].body.as_slice()), (format!("{path}?a=1").as_str(), b"{}".as_slice()), "passed through untouched");
    }
    assert!(!envoy.log().contains(SECRET), "the secret leaked into Envoy's log");
}

#[test]
fn every_spelling_is_guarded_with_envoy_path_normalisation() {
    suite(true);
}

#[test]
fn every_spelling_is_guarded_without_path_normalisation() {
    suite(false);
}

/// Istio's default text access log format (pilot/pkg/model/telemetry_logging.go).
const ISTIO_ACCESS_LOG: &str = concat!(
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% ",
    "%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% ",
    "%DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" ",
    "\"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% ",
    "%DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
);

/// Method, target, headers, body, and the status the sender should get.
type Step<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Vec<u8>, u16);

#[test]
fn no_secret_reaches_an_istio_access_log_whatever_the_outcome() {
    let upstream = Upstream::start();
    let shadow = format!(r#"{{"name": "shadow", "path": "/shadow", "profile": "azure_managed_app", "mode": "shadow", "secret": {{"values": ["{SECRET}"]}}}}"#);
    let plugin = azure_plugin(r#", "rate_limit": {"per_second": 0.001, "burst": 3}"#)
        .replacen('{', r#"{"unguarded": "reject", "#, 1)
        .replace("}]}", &format!("}}, {shadow}]}}"));
    let mut opts = Options::new(&plugin, upstream.port);
    opts.access_log = Some(ISTIO_ACCESS_LOG.to_string());
    let envoy = Envoy::start_with(opts);
    let near_miss = "s3cret-Valuf";
    let old = "previous%2Fsecret+1";
    let json = ("content-type", "application/json");
    let ok = format!("sig={SECRET}");
    let spoofed = format!("/api/resource?{ok}");
    let script: Vec<Step> = vec![
        ("POST", "/api/resource".into(), vec![json], CATALOG_SAMPLE.into(), 401),
        ("POST", format!("/api/resource?sig={near_miss}"), vec![json], CATALOG_SAMPLE.into(), 403),
        ("POST", format!("/API/resource/?x=1&sig={near_miss}"), vec![json], CATALOG_SAMPLE.into(), 403),
        ("GET", format!("/api/resource?{ok}"), vec![json], vec![], 405),
        ("POST", format!("/api/resource?{ok}"), vec![("content-type", "text/plain")], CATALOG_SAMPLE.into(), 415),
        ("POST", format!("/api/resource?{ok}"), vec![json], vec![b' '; 5000], 413),
        ("POST", format!("/api/resource?{ok}&SIG={SECRET}"), vec![json], CATALOG_SAMPLE.into(), 400),
        ("POST", format!("/api/resource?{ok}"), vec![json], b"{}".to_vec(), 400),
        ("POST", format!("/api%2Fresource?{ok}"), vec![json], CATALOG_SAMPLE.into(), 400),
        ("POST", format!("/api/resource?sig={old}"), vec![json, ("x-envoy-original-path", &spoofed)], CATALOG_SAMPLE.into(), 200),
        ("POST", format!("/api/resource;sig={SECRET}?{ok}"), vec![json], CATALOG_SAMPLE.into(), 200),
        ("POST", format!("/shadow?sig={near_miss}"), vec![json], CATALOG_SAMPLE.into(), 200),
        ("POST", format!("/shadow?{ok}"), vec![json], CATALOG_SAMPLE.into(), 200),
        ("POST", format!("/shadow;sig={near_miss}?a=1"), vec![json], CATALOG_SAMPLE.into(), 200),
        ("POST", format!("/Shadow;v=1;SIG={SECRET}/?{ok}"), vec![json], CATALOG_SAMPLE.into(), 200),
        ("POST", format!("/api/resources?{ok}"), vec![json], CATALOG_SAMPLE.into(), 404),
        ("POST", format!("/api;sig={SECRET}/resources;sig={near_miss}?a=1"), vec![json], CATALOG_SAMPLE.into(), 404),
        ("POST", format!("/api/resource?{ok}"), vec![json], CATALOG_SAMPLE.into(), 429),
    ];
    let mut statuses = vec![];
    for (method, target, headers, body, status) in &script {
        let res = send(envoy.port, method, target, headers, body);
        if *status == 404 {
            res.assert_problem(404, "not_found");
        }
        statuses.push(res.status);
    }
    let want: Vec<u16> = script.iter().map(|s| s.4).collect();
    assert_eq!(statuses, want);
    let log = envoy.access_log(script.len());
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), script.len(), "{log}");
    for (line, (method, _, _, _, status)) in lines.iter().zip(&script) {
        assert!(line.contains(&format!("\"{method} /")) && line.contains(&format!("\" {status} ")), "{line}");
    }
    for secret in [SECRET, near_miss, old, OLD_SECRET] {
        assert!(!log.contains(secret), "{secret} is in the access log:\n{log}");
        assert!(!envoy.log().contains(secret), "{secret} is in Envoy's log");
    }
    for seen in upstream.requests() {
        assert!(!format!("{seen:?}").contains(SECRET) && !seen.path.contains("sig="), "the upstream saw a secret: {seen:?}");
    }
    let shadowed: Vec<String> = upstream.requests().into_iter().map(|r| r.path).filter(|p| p.to_lowercase().starts_with("/shadow")).collect();
    assert_eq!(shadowed, ["/shadow", "/shadow", "/shadow?a=1", "/Shadow;v=1/"], "shadow keeps the sent path without the secret");
    assert_eq!(envoy.counters().get("unguarded_rejected_total"), Some(&2));
}

/// The secret under spellings a backend reads as its parameter (or as a second copy of
/// it), and under other keys: each leaves `:path` whether the request is accepted or
/// refused, so neither the access log, Envoy's log nor the upstream sees it.
fn laundered_secrets_never_survive(header_mode: &str, stop_iteration: bool) {
    let upstream = Upstream::start();
    let plugin = azure_plugin("").replacen(r#""header_mode": "hold""#, &format!(r#""unguarded": "reject", "header_mode": "{header_mode}""#), 1);
    let mut opts = Options::new(&plugin, upstream.port);
    opts.access_log = Some(ISTIO_ACCESS_LOG.to_string());
    opts.stop_iteration = stop_iteration;
    let envoy = Envoy::start_with(opts);
    let s = SECRET;
    let old = "previous%2Fsecret%2B1";
    // (query, status, the path the upstream gets when accepted). Each spelling: as the
    // parameter alone (it does not authenticate: 401), next to a valid `sig` (a second copy
    // under some reading: 400), and under another key next to a valid `sig` (accepted).
    let script: Vec<(String, u16, &str)> = vec![
        (format!("b=1;sig={s}"), 401, ""),
        (format!("sig={s}&b=1;sig={s}"), 400, ""),
        (format!("sig={s}&b=1;x={s}"), 200, "/api/resource?b=1"),
        (format!("sig%3D{s}&a=1"), 401, ""),
        (format!("sig={s}&sig%3D{s}"), 400, ""),
        (format!("sig={s}&x%3D{s}&a=1"), 200, "/api/resource?a=1"),
        (format!("sig[]={s}"), 401, ""),
        (format!("sig={s}&sig[]={s}"), 400, ""),
        (format!("sig={s}&x[]={s}"), 200, "/api/resource"),
        (format!("%20sig={s}"), 401, ""),
        (format!("sig={s}&%20sig={s}"), 400, ""),
        (format!("sig={s}&%20x={s}"), 200, "/api/resource"),
        (format!("sig%00={s}"), 401, ""),
        (format!("sig={s}&sig%00={s}"), 400, ""),
        (format!("sig={s}&x%00={s}"), 200, "/api/resource"),
        (format!("sig={s}&x={old}&y={s}"), 200, "/api/resource"),
        (format!("x={s}&a=1"), 401, ""),
        (format!("sig=wrong&x={old}"), 403, ""),
        (format!("a=1;x={s}"), 401, ""),
    ];
    let json = [("content-type", "application/json")];
    for (query, status, forwarded) in &script {
        let before = upstream.requests().len();
        let res = send(envoy.port, "POST", &format!("/api/resource?{query}"), &json, CATALOG_SAMPLE.as_bytes());
        assert_eq!(res.status, *status, "{header_mode} {query}: {res:?}");
        if *status == 400 {
            res.assert_problem(400, "ambiguous_secret");
        }
        let seen: Vec<String> = upstream.requests()[before..].iter().map(|r| r.path.clone()).collect();
        let want: Vec<&str> = if *status == 200 { vec![forwarded] } else { vec![] };
        assert_eq!(seen, want, "{header_mode} {query}");
    }
    // A sender's URL with a wrong path, on a listener for webhooks only.
    let res = send(envoy.port, "POST", &format!("/api/resources?a=1;x={s}"), &json, CATALOG_SAMPLE.as_bytes());
    res.assert_problem(404, "not_found");
    let log = envoy.access_log(script.len() + 1);
    assert_eq!(log.lines().count(), script.len() + 1, "{log}");
    for secret in [SECRET, OLD_SECRET, old] {
        assert!(!log.contains(secret), "{header_mode}: {secret} is in the access log:\n{log}");
        assert!(!envoy.log().contains(secret), "{header_mode}: {secret} is in Envoy's log");
    }
    for seen in upstream.heads() {
        let seen = format!("{seen:?}");
        assert!(!seen.contains(SECRET) && !seen.contains(old), "the upstream saw a secret: {seen}");
    }
}

#[test]
fn laundered_secrets_never_survive_a_held_head() {
    laundered_secrets_never_survive("hold", true);
}

#[test]
fn laundered_secrets_never_survive_a_streamed_head() {
    laundered_secrets_never_survive("stream", false);
}
