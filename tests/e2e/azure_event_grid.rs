//! The azure_event_grid profile through the real Envoy, in both deployment forms: `hold`
//! (allow_on_headers_stop_iteration) and `stream` (without it). Bodies are Azure's
//! documented sample events, compact and in a one-element array as Event Grid delivers
//! them by default.

use crate::harness::{send, Behaviour, Form, Response, Setup, FORMS};

const SECRET: &str = "eg-S3cret_value";
const NEXT_SECRET: &str = "eg-next-secret";
const PATH: &str = "/hooks/eg";
const BLOB_CREATED: &str = include_str!("../../src/profile/azure_event_grid/samples/blob_created.json");
const VALIDATION: &str = include_str!("../../src/profile/azure_event_grid/samples/subscription_validation.json");
const CLOUDEVENT: &str = include_str!("../../src/profile/azure_event_grid/samples/cloudevent_blob_created.json");
const EVENT_GRID_JSON: &str = "application/json";

fn start(form: Form, extra: &str, access_log: Option<&str>) -> Setup {
    let plugin = format!(
        r#"{{"header_mode": "{}", "endpoints": [{{"name": "eg", "path": "{PATH}", "profile": "azure_event_grid",
  "secret": {{"param": "code", "values": ["{SECRET}"], "env_optional": ["EG_NEXT_SECRET"]}}{extra}}}]}}"#,
        form.header_mode()
    );
    Setup::start(form, &plugin, &[("EG_NEXT_SECRET", NEXT_SECRET)], access_log)
}

fn with_secret(secret: &str) -> String {
    format!("{PATH}?code={secret}")
}

/// A POST as Event Grid makes it: `aeg-event-type` and the body's content type.
fn deliver(s: &Setup, target: &str, event_type: &str, content_type: &str, body: &str, extra: &[(&str, &str)]) -> Response {
    let mut headers = vec![("content-type", content_type), ("aeg-event-type", event_type), ("aeg-delivery-count", "0")];
    headers.extend_from_slice(extra);
    send(s.envoy.port, "POST", target, &headers, body.as_bytes())
}

fn notify(s: &Setup, body: &str) -> Response {
    deliver(s, &with_secret(SECRET), "Notification", EVENT_GRID_JSON, body, &[])
}

fn options(s: &Setup, target: &str, origin: Option<&str>) -> Response {
    let headers: Vec<(&str, &str)> = origin.map(|o| ("webhook-request-origin", o)).into_iter().collect();
    send(s.envoy.port, "OPTIONS", target, &headers, b"")
}

/// In `hold` nothing reached the upstream; in `stream` a head authenticated by its secret
/// may have (the body is then refused and the upstream request reset): never a body.
fn assert_nothing_delivered(s: &Setup, form: Form) {
    assert!(s.upstream.requests().is_empty(), "{form:?}: {:?}", s.upstream.requests());
    if form == Form::Hold {
        assert!(s.upstream.heads().is_empty(), "{form:?}: {:?}", s.upstream.heads());
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn a_delivery_is_forwarded_as_a_cloudevent_without_the_secret_or_spoofed_headers() {
    for form in FORMS {
        let s = start(form, "", None);
        let spoofed = [("x-webhook-verified", "true"), ("x-webhook-event-id", "forged"), ("ce-type", "forged")];
        let answer = deliver(&s, &with_secret(SECRET), "Notification", EVENT_GRID_JSON, BLOB_CREATED, &spoofed);
        assert_eq!(answer.status, 200, "{form:?}: {answer:?}");
        let seen = s.upstream.only();
        assert_eq!(seen.path, PATH, "{form:?}: the secret leaves the path");
        assert_eq!(seen.header("x-webhook-profile"), Some("azure_event_grid"));
        assert_eq!(seen.header("x-webhook-verified"), None, "{form:?}");
        assert_eq!(seen.header("ce-type"), None);
        assert_eq!(seen.header("aeg-event-type"), Some("Notification"), "Event Grid's own headers go on");
        assert_eq!(seen.header("content-type"), Some("application/cloudevents+json"));
        let event = seen.json();
        assert_eq!(event["type"], "webhookguard.azure_event_grid.Microsoft.Storage.BlobCreated");
        assert_eq!(event["source"], "/webhook-guard/eg");
        assert_eq!(event["subject"], "/blobServices/default/containers/oc2d2817345i200097container/blobs/oc2d2817345i20002296blob");
        assert_eq!(event["time"], "2017-06-26T18:41:00.9584103Z");
        assert_eq!(event["data"], json(BLOB_CREATED), "the delivery as sent");
        match form {
            Form::Hold => assert_eq!(seen.header("x-webhook-event-id"), event["id"].as_str()),
            Form::Stream => assert_eq!(seen.header("x-webhook-event-id"), None),
        }
        assert_eq!(s.envoy.counter("forwarded_total", &[("endpoint", "eg")]), 1);
    }
}

#[test]
fn batches_and_cloudevents_are_forwarded_as_sent() {
    let second = BLOB_CREATED.replace("831e1650-001e-001b-66ab-eeb76e069631", "831e1650-001e-001b-66ab-eeb76e069632");
    let batch = format!("[{},{}]", &BLOB_CREATED.trim()[1..BLOB_CREATED.trim().len() - 1], &second.trim()[1..second.trim().len() - 1]);
    let cloud_batch = format!("[{}]", CLOUDEVENT.trim());
    for form in FORMS {
        let s = start(form, r#", "forward": "original""#, None);
        for (content_type, body) in [
            (EVENT_GRID_JSON, batch.as_str()),
            ("application/cloudevents+json; charset=utf-8", CLOUDEVENT),
            ("application/cloudevents-batch+json; charset=utf-8", cloud_batch.as_str()),
        ] {
            let answer = deliver(&s, &with_secret(SECRET), "Notification", content_type, body, &[]);
            assert_eq!(answer.status, 200, "{form:?} {content_type}: {answer:?}");
            let seen = s.upstream.requests().pop().unwrap();
            assert_eq!((seen.body.as_slice(), seen.header("content-type")), (body.as_bytes(), Some(content_type)), "{form:?}");
        }
        assert_eq!(s.upstream.requests().len(), 3);
    }
}

#[test]
fn an_event_over_the_common_64_kib_default_is_delivered() {
    let large = BLOB_CREATED.replace(r#""api":"PutBlockList""#, &format!(r#""api":"{}""#, "x".repeat(300 * 1024)));
    let s = start(Form::Hold, "", None);
    assert_eq!(notify(&s, &large).status, 200);
    assert_eq!(s.upstream.only().json()["data"], json(&large));
}

#[test]
fn a_batch_with_one_bad_event_is_forwarded_flagged() {
    let batch = format!(r#"[{},{{"topic":"/t","eventType":"X"}}]"#, &BLOB_CREATED.trim()[1..BLOB_CREATED.trim().len() - 1]);
    let s = start(Form::Hold, "", None);
    assert_eq!(notify(&s, &batch).status, 200);
    let seen = s.upstream.only();
    assert_eq!(seen.header("x-webhook-nonconforming"), Some("id_missing"));
    assert_eq!(seen.json()["type"], "webhookguard.azure_event_grid.batch");
    assert_eq!(s.envoy.counter("nonconforming_total", &[("endpoint", "eg"), ("rule", "id_missing")]), 1);
    // Nothing in it could be an event: refused.
    notify(&s, "[]").assert_problem(400, "invalid");
}

#[test]
fn the_validation_handshake_is_answered_only_when_authenticated() {
    for form in FORMS {
        let s = start(form, "", None);
        let answer = deliver(&s, &with_secret(SECRET), "SubscriptionValidation", EVENT_GRID_JSON, VALIDATION, &[]);
        assert_eq!(answer.status, 200, "{form:?}: {answer:?}");
        assert_eq!(answer.json(), serde_json::json!({"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}));
        // Stream: the head went on before the body was known to be the handshake.
        assert!(s.upstream.requests().is_empty(), "{form:?}: the handshake is not forwarded");
        assert_eq!(s.envoy.counter("handshakes_total", &[("endpoint", "eg"), ("event_type", "subscription_validation")]), 1);
        for (target, status, slug) in [(with_secret("wrong"), 403, "forbidden"), (PATH.to_string(), 401, "unauthorized")] {
            let refused = deliver(&s, &target, "SubscriptionValidation", EVENT_GRID_JSON, VALIDATION, &[]);
            let problem = refused.assert_problem(status, slug);
            assert!(!problem.to_string().contains("512d38b6"), "{problem}");
            assert_nothing_delivered(&s, form);
        }
    }
}

#[test]
fn the_abuse_protection_options_is_answered_only_when_authenticated() {
    for form in FORMS {
        let s = start(form, r#", "allowed_rate": 600"#, None);
        let answer = options(&s, &with_secret(SECRET), Some("eventgrid.azure.net"));
        assert_eq!(answer.status, 200, "{form:?}: {answer:?}");
        assert_eq!(answer.header("webhook-allowed-origin"), Some("eventgrid.azure.net"));
        assert_eq!(answer.header("webhook-allowed-rate"), Some("600"));
        assert_eq!(answer.header("allow"), Some("POST"));
        assert_eq!(s.envoy.counter("handshakes_total", &[("endpoint", "eg"), ("event_type", "abuse_protection")]), 1);
        options(&s, &with_secret("wrong"), Some("eventgrid.azure.net")).assert_problem(403, "forbidden");
        options(&s, PATH, Some("eventgrid.azure.net")).assert_problem(401, "unauthorized");
        let refused = options(&s, &with_secret(SECRET), None);
        refused.assert_problem(405, "method_not_allowed");
        assert_eq!(refused.header("allow"), Some("POST"));
        s.upstream.assert_untouched();
    }
}

#[test]
fn a_wrong_or_missing_secret_is_refused_and_either_rotated_secret_accepted() {
    for form in FORMS {
        let s = start(form, "", None);
        for (target, status, slug) in
            [(with_secret("wrong"), 403, "forbidden"), (PATH.to_string(), 401, "unauthorized"), (format!("{PATH}?sig={SECRET}"), 401, "unauthorized")]
        {
            deliver(&s, &target, "Notification", EVENT_GRID_JSON, BLOB_CREATED, &[]).assert_problem(status, slug);
            assert_nothing_delivered(&s, form);
        }
        assert_eq!(notify(&s, BLOB_CREATED).status, 200, "{form:?}");
        assert_eq!(deliver(&s, &with_secret(NEXT_SECRET), "Notification", EVENT_GRID_JSON, BLOB_CREATED, &[]).status, 200);
        assert_eq!(s.upstream.requests().len(), 2);
    }
}

#[test]
fn a_duplicate_is_not_delivered_twice_but_a_retry_after_a_5xx_is() {
    for form in FORMS {
        let s = start(form, r#", "dedupe_seconds": 86400"#, None);
        s.upstream.set(Behaviour::Status(503));
        assert_eq!(notify(&s, BLOB_CREATED).status, 503, "{form:?}: Event Grid retries it");
        s.upstream.set(Behaviour::Status(200));
        let delivered = notify(&s, BLOB_CREATED);
        assert_eq!((delivered.status, delivered.header("x-webhook-duplicate")), (200, None), "{form:?}: {delivered:?}");
        let again = notify(&s, BLOB_CREATED);
        assert_eq!((again.status, again.header("x-webhook-duplicate")), (200, Some("true")), "{form:?}: {again:?}");
        assert_eq!(s.upstream.taken().len(), 1, "{form:?}: delivered once");
        assert_eq!(s.envoy.counter("duplicates_total", &[("endpoint", "eg")]), 1);
    }
}

#[test]
fn upstream_answers_event_grid_would_drop_become_502() {
    for form in FORMS {
        let s = start(form, "", None);
        for (upstream, told) in [(400, 502), (401, 502), (403, 502), (413, 502), (404, 502), (302, 502), (206, 200), (204, 204), (429, 429)] {
            s.upstream.set(Behaviour::Status(upstream));
            let answer = notify(&s, BLOB_CREATED);
            assert_eq!(answer.status, told, "{form:?}: upstream {upstream}: {answer:?}");
            if told == 502 {
                answer.assert_problem(502, "upstream_rejected");
            }
        }
    }
}

#[test]
fn no_secret_reaches_the_access_log_or_the_upstream() {
    let format = "%REQ(:PATH)% %RESPONSE_CODE%\n";
    for form in FORMS {
        let s = start(form, "", Some(format));
        assert_eq!(notify(&s, BLOB_CREATED).status, 200);
        assert_eq!(options(&s, &with_secret(NEXT_SECRET), Some("eventgrid.azure.net")).status, 200);
        assert_eq!(deliver(&s, &with_secret("wrong-one"), "Notification", EVENT_GRID_JSON, BLOB_CREATED, &[]).status, 403);
        let log = s.envoy.access_log(3);
        for leak in [SECRET, NEXT_SECRET, "wrong-one"] {
            assert!(!log.contains(leak), "{form:?}: {log}");
            assert!(!s.envoy.log().contains(leak), "{form:?}: Envoy's log");
            for seen in s.upstream.heads() {
                assert!(!format!("{seen:?}").contains(leak), "{form:?}: {seen:?}");
            }
        }
        assert!(log.contains(PATH), "{log}");
    }
}
