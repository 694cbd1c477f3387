//! Unit tests from Azure's documented sample events, compact as Event Grid sends them.

use super::*;
use crate::config::Config;
use crate::event::name_based_id;
use crate::upstream::Mapped;

pub const BLOB_CREATED: &str = include_str!("samples/blob_created.json");
pub const VALIDATION: &str = include_str!("samples/subscription_validation.json");
pub const CLOUDEVENT: &str = include_str!("samples/cloudevent_blob_created.json");

fn profile(extra: &str) -> Result<Box<dyn Profile>, String> {
    let json = format!(r#"{{"endpoints":[{{"name":"eg","path":"/eg","profile":"azure_event_grid","secret":{{"values":["k"]}}{extra}}}]}}"#);
    Config::parse(json.as_bytes(), |_| None).map(|mut c| c.endpoints.remove(0).profile)
}

/// The request's headers as the filter captures them: each name the profile asks for, in
/// its order (an empty value is an absent header).
fn headers(event_type: &str, origin: &str) -> SignedHeaders {
    let request = [("aeg-event-type", event_type), ("webhook-request-origin", origin)];
    let named = |name: &&str| request.iter().find(|(n, v)| n == name && !v.is_empty()).map(|(_, v)| v.as_bytes().to_vec());
    SignedHeaders(profile("").unwrap().signed_headers().iter().map(named).collect())
}

fn notification() -> SignedHeaders {
    headers("Notification", "")
}

#[test]
fn the_documented_blob_created_event_is_one_event_with_its_type_subject_and_time() {
    let p = profile("").unwrap();
    let event = p.validate(Media::Json, BLOB_CREATED.as_bytes(), &notification()).unwrap();
    assert_eq!(event.kind, "webhookguard.azure_event_grid.Microsoft.Storage.BlobCreated");
    assert_eq!(event.subject.as_deref(), Some("/blobServices/default/containers/oc2d2817345i200097container/blobs/oc2d2817345i20002296blob"));
    assert_eq!(event.time.as_deref(), Some("2017-06-26T18:41:00.9584103Z"));
    let topic = "/subscriptions/{subscription-id}/resourceGroups/Storage/providers/Microsoft.Storage/storageAccounts/xstoretestaccount";
    assert_eq!(
        event.id,
        name_based_id(&format!(
            r#"azure_event_grid
[["{topic}","831e1650-001e-001b-66ab-eeb76e069631"]]"#
        ))
    );
    assert_eq!(event.data.get(), BLOB_CREATED.trim_end(), "data is the body as sent");
    assert!(event.nonconforming.is_empty());
    assert!(p.local_answer(&event).is_none());
}

#[test]
fn the_documented_cloudevent_alone_or_in_a_batch_is_read() {
    let p = profile("").unwrap();
    let event = p.validate(Media::Json, CLOUDEVENT.as_bytes(), &headers("", "")).unwrap();
    assert_eq!(event.kind, "webhookguard.azure_event_grid.Microsoft.Storage.BlobCreated");
    assert_eq!(event.time.as_deref(), Some("2019-11-18T15:13:39.4589254Z"));
    assert!(event.nonconforming.is_empty());
    let second = CLOUDEVENT.replace("9aeb0fdf-c01e-0131-0922-9eb54906e209", "9aeb0fdf-c01e-0131-0922-9eb54906e20a");
    let batch = format!("[{},{}]", CLOUDEVENT.trim(), second.trim());
    let batched = p.validate(Media::Json, batch.as_bytes(), &headers("", "")).unwrap();
    assert_eq!((batched.kind.as_str(), batched.subject, batched.time), (BATCH_KIND, None, None));
    assert_ne!(batched.id, event.id);
    // The same batch again is the same delivery; one event of it alone is another.
    assert_eq!(p.validate(Media::Json, batch.as_bytes(), &headers("", "")).unwrap().id, batched.id);
}

#[test]
fn the_duplicate_key_is_the_json_serde_writes() {
    let keys = [["/t\"q".to_string(), "a\nb".to_string()], [String::new(), "{\"x\":1}".to_string()]];
    assert_eq!(key_json(&keys).unwrap(), serde_json::to_string(&keys).unwrap());
    assert_eq!(key_json(&[]).unwrap(), "[]");
}

#[test]
fn the_same_id_from_another_topic_is_another_event() {
    let p = profile("").unwrap();
    let other = BLOB_CREATED.replace("xstoretestaccount", "otheraccount");
    let a = p.validate(Media::Json, BLOB_CREATED.as_bytes(), &notification()).unwrap();
    let b = p.validate(Media::Json, other.as_bytes(), &notification()).unwrap();
    assert_ne!(a.id, b.id);
}

#[test]
fn the_documented_validation_event_is_answered_with_its_code() {
    let p = profile("").unwrap();
    let event = p.validate(Media::Json, VALIDATION.as_bytes(), &headers("SubscriptionValidation", "")).unwrap();
    let answer = p.local_answer(&event).unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, br#"{"validationResponse":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}"#);
    assert_eq!(answer.headers, [("content-type", "application/json".to_string())]);
    assert_eq!(answer.counter, Counter::Profile(VALIDATION_ANSWERED));
    // The header and the event come together or not at all.
    for (event_type, body) in [("Notification", VALIDATION), ("", VALIDATION), ("SubscriptionValidation", BLOB_CREATED)] {
        let refused = p.validate(Media::Json, body.as_bytes(), &headers(event_type, "")).unwrap_err();
        assert_eq!(refused.status(), 400, "{event_type}");
    }
    let no_code = VALIDATION.replace("512d38b6-c7b8-40c8-89fe-f46f9e9622b6", "");
    assert_eq!(p.validate(Media::Json, no_code.as_bytes(), &headers("SubscriptionValidation", "")).unwrap_err().status(), 400);
}

#[test]
fn a_batch_with_one_bad_event_is_forwarded_flagged_not_refused() {
    let p = profile("").unwrap();
    let batch = format!(r#"[{},{{"topic":"/t","eventType":"X"}}]"#, &BLOB_CREATED.trim()[1..BLOB_CREATED.trim().len() - 1]);
    let event = p.validate(Media::Json, batch.as_bytes(), &notification()).unwrap();
    assert_eq!(event.kind, BATCH_KIND);
    assert_eq!(event.nonconforming.iter().map(|f| f.rule).collect::<Vec<_>>(), ["id_missing"]);
    // Only a body where nothing could be an event is 400.
    for body in ["", "[]", "[1]", "not json", "\u{0}"] {
        assert_eq!(p.validate(Media::Json, body.as_bytes(), &notification()).unwrap_err().status(), 400, "{body:?}");
    }
    assert_eq!(p.validate(Media::Json, b"[\xff]", &notification()).unwrap_err().status(), 400);
}

#[test]
fn an_odd_type_is_not_carried_into_the_event_type() {
    let p = profile("").unwrap();
    let odd = BLOB_CREATED.replace("Microsoft.Storage.BlobCreated", r"a b\r\nx: y");
    assert_eq!(p.validate(Media::Json, odd.as_bytes(), &notification()).unwrap().kind, EVENT_KIND);
}

#[test]
fn the_abuse_protection_options_is_answered_only_with_a_usable_origin() {
    let p = profile("").unwrap();
    let answer = p.head_answer("OPTIONS", &headers("", "eventgrid.azure.net")).unwrap();
    assert_eq!((answer.status, answer.body.len()), (200, 0));
    let expected = [("webhook-allowed-origin", "eventgrid.azure.net"), ("webhook-allowed-rate", "*"), ("allow", "POST")];
    assert_eq!(answer.headers, expected.map(|(k, v)| (k, v.to_string())));
    assert_eq!(answer.counter, Counter::Profile(OPTIONS_ANSWERED));
    let rated = profile(r#","allowed_rate":120"#).unwrap().head_answer("OPTIONS", &headers("", "eventgrid.azure.net")).unwrap();
    assert_eq!(rated.headers[1], ("webhook-allowed-rate", "120".to_string()));
    for (method, origin) in [("POST", "eventgrid.azure.net"), ("OPTIONS", ""), ("OPTIONS", "a b"), ("OPTIONS", "x\r\ny: z"), ("OPTIONS", &"a".repeat(254))] {
        assert!(p.head_answer(method, &headers("", origin)).is_none(), "{method} {origin:?}");
    }
}

#[test]
fn configuration_is_checked() {
    for (extra, error) in [
        (r#","allowed_rate":0"#, "endpoints[0].allowed_rate: must be at least 1"),
        (r#","max_body_bytes":65536"#, "endpoints[0].max_body_bytes: must be at least 1114112"),
        (r#","allowed_rate":"x""#, "endpoints[0].allowed_rate: invalid type"),
        (r#","arm_check":{}"#, "endpoints[0].arm_check: only applies to the azure_managed_app profile"),
    ] {
        let err = profile(extra).unwrap_err();
        assert!(err.starts_with(error), "{extra}: {err}");
    }
    let json = r#"{"endpoints":[{"name":"eg","path":"/eg","profile":"azure_event_grid","secret":{"values":["k"]}}]}"#;
    let endpoint = Config::parse(json.as_bytes(), |_| None).unwrap().endpoints.remove(0);
    assert_eq!(endpoint.max_body_bytes, 1_114_112, "not the 64 KiB default: Event Grid drops a 413");
    assert_eq!(endpoint.dedupe_seconds, None);
    let p = profile("").unwrap();
    assert!(p.allows("POST") && !p.allows("OPTIONS") && !p.allows("GET"));
    assert_eq!(p.replay_window(), None);
}

#[test]
fn only_200_to_204_is_success_and_the_dropped_statuses_become_502() {
    let p = profile("").unwrap();
    for (status, told) in [
        (200, Told::Delivered(200)),
        (204, Told::Delivered(204)),
        (206, Told::Delivered(200)),
        (299, Told::Delivered(200)),
        (400, Told::Mapped(Mapped::ClientError)),
        (401, Told::Mapped(Mapped::ClientError)),
        (403, Told::Mapped(Mapped::ClientError)),
        (413, Told::Mapped(Mapped::ClientError)),
        (404, Told::Mapped(Mapped::ClientError)),
        (301, Told::Mapped(Mapped::Redirect)),
        (429, Told::Passed),
        (503, Told::Passed),
        (100, Told::Mapped(Mapped::Other)),
    ] {
        assert_eq!(p.told(status, Upstream4xx::Retry), told, "{status}");
    }
    assert_eq!(p.told(404, Upstream4xx::Pass), Told::Passed);
}

#[test]
fn every_rule_has_its_counter() {
    let counters = profile("").unwrap().counters();
    assert!(RULES.iter().all(|r| counters.contains(&Counter::Nonconforming(r))));
}
