//! Authentication, method and pass-through rules (the foundation).

use crate::harness::{post_json, raw, send, Envoy, Upstream};
use crate::{azure_plugin, target, CATALOG_SAMPLE, OLD_SECRET, SECRET};

fn setup() -> (Upstream, Envoy) {
    let upstream = Upstream::start();
    let envoy = Envoy::start(&azure_plugin(""), &upstream);
    (upstream, envoy)
}

#[test]
fn missing_or_empty_secret_is_401() {
    let (upstream, envoy) = setup();
    for query in ["", "other=1", "sig=", "sig"] {
        let problem = post_json(envoy.port, &target(query), CATALOG_SAMPLE.as_bytes()).assert_problem(401, "unauthorized");
        assert!(problem["detail"].as_str().unwrap().contains("'sig'"), "{problem}");
    }
    post_json(envoy.port, "/api/resource", CATALOG_SAMPLE.as_bytes()).assert_problem(401, "unauthorized");
    upstream.assert_untouched();
}

#[test]
fn wrong_secret_is_403_and_never_echoed() {
    let (upstream, envoy) = setup();
    for wrong in ["nope", "s3cret-Valu", "s3cret-Value2", "S3CRET-VALUE"] {
        let res = post_json(envoy.port, &target(&format!("sig={wrong}")), CATALOG_SAMPLE.as_bytes());
        res.assert_problem(403, "forbidden");
        assert!(!String::from_utf8_lossy(&res.body).contains(wrong));
    }
    upstream.assert_untouched();
    assert!(!envoy.log().contains(SECRET), "the secret leaked into Envoy's log");
}

#[test]
fn repeated_secret_is_400_even_when_both_copies_are_right() {
    let (upstream, envoy) = setup();
    for query in [format!("sig={SECRET}&sig={SECRET}"), format!("sig={SECRET}&s%69g=x"), format!("sig=&sig={SECRET}")] {
        let res = post_json(envoy.port, &target(&query), CATALOG_SAMPLE.as_bytes());
        res.assert_problem(400, "ambiguous_secret");
        assert!(!String::from_utf8_lossy(&res.body).contains(SECRET));
    }
    upstream.assert_untouched();
}

#[test]
fn every_configured_secret_is_accepted_after_percent_decoding() {
    let (upstream, envoy) = setup();
    let encoded_old = "previous%2Fsecret%2B1";
    for query in [format!("sig={SECRET}"), format!("sig={encoded_old}"), format!("sig={}", SECRET.replace('V', "%56"))] {
        let res = post_json(envoy.port, &target(&query), CATALOG_SAMPLE.as_bytes());
        assert_eq!(res.status, 200, "{query}: {res:?}");
    }
    assert_eq!(upstream.requests().len(), 3);
    // `+` is literal in the query (RFC 3986): a `+` in the URL matches a `+` in the secret.
    let res = post_json(envoy.port, &target(&format!("sig={}", OLD_SECRET.replace('/', "%2F"))), CATALOG_SAMPLE.as_bytes());
    assert_eq!(res.status, 200);
}

#[test]
fn secret_is_removed_from_the_forwarded_path_and_other_parameters_keep_their_order() {
    let (upstream, envoy) = setup();
    let res = post_json(envoy.port, &format!("/api/resource?b=2&sig={SECRET}&a=%20x&b=1"), CATALOG_SAMPLE.as_bytes());
    assert_eq!(res.status, 200, "{res:?}");
    let seen = upstream.only();
    assert_eq!(seen.path, "/api/resource?b=2&a=%20x&b=1");
    let everything = format!("{:?}{}", seen.headers, String::from_utf8_lossy(&seen.body));
    assert!(!everything.contains(SECRET), "the secret reached the upstream: {everything}");
    let res = post_json(envoy.port, &target(&format!("sig={SECRET}")), CATALOG_SAMPLE.as_bytes());
    assert_eq!(res.status, 200);
    assert_eq!(upstream.requests()[1].path, "/api/resource");
    assert!(!envoy.log().contains(SECRET), "the secret leaked into Envoy's log");
}

#[test]
fn only_post_is_allowed_on_azure_endpoints() {
    let (upstream, envoy) = setup();
    for method in ["GET", "PUT", "PATCH", "DELETE"] {
        let res = send(envoy.port, method, &target(&format!("sig={SECRET}")), &[("content-type", "application/json")], CATALOG_SAMPLE.as_bytes());
        res.assert_problem(405, "method_not_allowed");
        assert_eq!(res.header("allow"), Some("POST"));
    }
    // Authentication comes first: without the secret the method is not even discussed.
    let res = send(envoy.port, "GET", "/api/resource", &[], b"");
    res.assert_problem(401, "unauthorized");
    upstream.assert_untouched();
}

#[test]
fn other_paths_pass_through_byte_for_byte() {
    let (upstream, envoy) = setup();
    let body = b"\x00not json at all\xff";
    let res = send(envoy.port, "PATCH", "/api/resource/other?sig=x&z=%2F", &[("x-webhook-event-id", "client"), ("content-type", "text/plain")], body);
    assert_eq!(res.status, 200, "{res:?}");
    let seen = upstream.only();
    assert_eq!(seen.method, "PATCH");
    assert_eq!(seen.path, "/api/resource/other?sig=x&z=%2F");
    assert_eq!(seen.body, body);
    assert_eq!(seen.header("x-webhook-event-id"), Some("client"));
    assert_eq!(seen.header("content-type"), Some("text/plain"));
    assert_eq!(seen.header("content-length"), Some(body.len().to_string().as_str()));
}

#[test]
fn non_utf8_header_values_do_not_break_the_filter() {
    let (upstream, envoy) = setup();
    let mut req =
        format!("POST {} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\nx-odd: ", target(&format!("sig={SECRET}"))).into_bytes();
    req.extend_from_slice(b"\xff\xfe\r\n");
    req.extend_from_slice(format!("content-length: {}\r\n\r\n{CATALOG_SAMPLE}", CATALOG_SAMPLE.len()).as_bytes());
    assert_eq!(raw(envoy.port, &req).status, 200);
    // The VM is still alive for the next request.
    assert_eq!(post_json(envoy.port, &target(&format!("sig={SECRET}")), CATALOG_SAMPLE.as_bytes()).status, 200);
    assert_eq!(upstream.requests().len(), 2);
}
