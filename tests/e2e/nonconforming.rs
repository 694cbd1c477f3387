//! The corpus of real-shaped Azure notifications (tests/corpus/azure/) played through one
//! Envoy with an endpoint for each `on_nonconforming` setting: what the sender got, what
//! the upstream received (flag header, CloudEvent attribute, type, normalised time, id),
//! the per-rule counters and the one `warn` line per nonconforming notification.

use crate::harness::{post_json, Envoy, Upstream};
use crate::SECRET;
use std::collections::BTreeMap;
use webhook_guard::event::name_based_id;

const SETTINGS: [&str; 3] = ["forward", "hold", "reject"];

/// (corpus file, rules broken, event type after the prefix, eventTime in UTC).
const CORPUS: [(&str, &str, &str, &str); 31] = [
    ("marketplace-put-succeeded-no-billing", "", "put.succeeded", "2024-05-13T08:41:12.6130785Z"),
    ("marketplace-delete-deleting-no-billing", "", "delete.deleting", "2024-05-20T17:02:55.0034561Z"),
    ("marketplace-put-accepted-billing-promotion", "", "put.accepted", "2024-05-13T08:39:01.1Z"),
    ("marketplace-put-failed-billing", "", "put.failed", "2024-05-13T08:45:10.613078Z"),
    ("catalog-put-succeeded-no-slash-0-digits", "", "put.succeeded", "2024-05-13T08:41:12Z"),
    ("catalog-patch-succeeded-3-digits", "", "patch.succeeded", "2024-06-01T12:00:00.123Z"),
    ("catalog-delete-deleted-2-digits-trailing-slash", "", "delete.deleted", "2024-06-02T09:15:30.45Z"),
    ("catalog-delete-failed-5-digits-offset-plus", "", "delete.failed", "2024-06-02T09:15:30.12345Z"),
    ("catalog-put-succeeded-4-digits-offset-minus", "", "put.succeeded", "2025-01-01T02:30:00.1234Z"),
    ("pair-put-deleting", "pair_undocumented", "put.deleting", "2024-05-13T08:41:12.6130785Z"),
    ("pair-put-deleted", "pair_undocumented", "put.deleted", "2024-05-13T08:41:13.6130785Z"),
    ("pair-patch-accepted", "pair_undocumented", "patch.accepted", "2024-05-13T08:41:14.6130785Z"),
    ("pair-patch-failed", "pair_undocumented", "patch.failed", "2024-05-13T08:41:15.6130785Z"),
    ("pair-patch-deleting", "pair_undocumented", "patch.deleting", "2024-05-13T08:41:16.6130785Z"),
    ("pair-patch-deleted", "pair_undocumented", "patch.deleted", "2024-05-13T08:41:17.6130785Z"),
    ("pair-delete-accepted", "pair_undocumented", "delete.accepted", "2024-05-13T08:41:18.6130785Z"),
    ("pair-delete-succeeded", "pair_undocumented", "delete.succeeded", "2024-05-13T08:41:19.6130785Z"),
    ("state-put-running", "state_undocumented", "put.running", "2024-05-13T08:40:00.0000001Z"),
    ("state-patch-updating", "state_undocumented", "patch.updating", "2024-05-13T08:40:01.0000001Z"),
    ("state-delete-canceled", "state_undocumented", "delete.canceled", "2024-05-13T08:40:02.0000001Z"),
    ("failed-without-error", "error_missing", "put.failed", "2024-05-13T08:45:10.6130785Z"),
    ("error-of-another-shape", "error_shape", "delete.failed", "2024-05-13T08:45:11.6130785Z"),
    ("error-on-succeeded", "error_unexpected", "put.succeeded", "2024-05-13T08:45:12.6130785Z"),
    ("time-without-offset-7-digits", "time_no_offset", "put.succeeded", "2024-05-13T08:41:12.6130785Z"),
    ("flavour-neither", "flavour_unknown", "put.succeeded", "2024-05-13T08:41:12.6130785Z"),
    ("flavour-both", "flavour_unknown", "put.succeeded", "2024-05-13T08:41:13.6130785Z"),
    ("flavour-billing-without-plan", "flavour_unknown", "put.succeeded", "2024-05-13T08:41:14.6130785Z"),
    ("type-post-succeeded", "type_undocumented", "post.succeeded", "2024-05-13T08:47:00.6130785Z"),
    ("plan-without-version", "plan_shape", "put.succeeded", "2024-05-13T08:47:01.6130785Z"),
    ("billing-usage-id-null", "billing_shape", "put.succeeded", "2024-05-13T08:47:02.6130785Z"),
    ("definition-template-spec", "definition_shape", "put.succeeded", "2024-05-13T08:47:03.6130785Z"),
];

fn corpus(name: &str) -> String {
    let path = format!("{}/tests/corpus/azure/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn plugin() -> String {
    let endpoints: Vec<String> = SETTINGS
        .iter()
        .map(|s| {
            format!(
                r#"{{"name": "azure-{s}", "path": "/{s}", "profile": "azure_managed_app", "secret": {{"values": ["{SECRET}"]}}, "on_nonconforming": "{s}"}}"#
            )
        })
        .collect();
    // Body-derived headers (x-webhook-nonconforming) need the held head.
    format!(r#"{{"header_mode": "hold", "endpoints": [{}]}}"#, endpoints.join(",\n"))
}

#[test]
fn corpus_is_played_through_every_setting() {
    let upstream = Upstream::start();
    let envoy = Envoy::start(&plugin(), &upstream);
    let mut ids = BTreeMap::new();
    for setting in SETTINGS {
        for (name, rules, kind, time) in CORPUS {
            let before = upstream.requests().len();
            let body = corpus(name);
            let res = post_json(envoy.port, &format!("/{setting}?sig={SECRET}"), body.as_bytes());
            let flagged = !rules.is_empty();
            let seen = upstream.requests();
            match (setting, flagged) {
                ("hold", true) => {
                    let problem = res.assert_problem(503, "held");
                    assert_eq!(res.header("retry-after"), Some("600"), "{name}");
                    assert!(problem["detail"].as_str().unwrap().contains(rules), "{name}: {problem}");
                    assert_eq!(seen.len(), before, "{name}: a held notification must not reach the upstream");
                }
                ("reject", true) => {
                    let problem = res.assert_problem(400, "nonconforming");
                    assert!(problem["detail"].as_str().unwrap().starts_with(&format!("{rules}: ")), "{name}: {problem}");
                    assert_eq!(seen.len(), before, "{name}");
                }
                _ => {
                    assert_eq!(res.status, 200, "{setting} {name}: {res:?}");
                    assert_eq!(seen.len(), before + 1, "{name}");
                    let got = seen.last().unwrap();
                    assert_eq!(got.header("x-webhook-nonconforming"), flagged.then_some(rules), "{name}");
                    assert_eq!(got.header("x-webhook-event-type"), Some(format!("webhookguard.azure.managedapp.{kind}").as_str()));
                    let event = got.json();
                    assert_eq!(event["nonconforming"].as_str(), flagged.then_some(rules), "{name}");
                    assert_eq!(event["time"], time, "{name}");
                    let data = &event["data"];
                    assert_eq!(data["eventTime"], time);
                    assert_eq!(data["original"], serde_json::from_str::<serde_json::Value>(&body).unwrap());
                    // The documented id derivation, from the canonical facts forwarded.
                    let app = data["applicationId"].as_str().unwrap();
                    assert!(app.starts_with("/subscriptions/") && app.contains("/providers/Microsoft.Solutions/applications/") && !app.ends_with('/'), "{app}");
                    let id_name = format!(
                        "azure_managed_app\n{}\n{}\n{}\n{time}",
                        app.to_ascii_lowercase(),
                        data["eventType"].as_str().unwrap(),
                        data["provisioningState"].as_str().unwrap()
                    );
                    assert_eq!(event["id"], name_based_id(&id_name), "{name}");
                    // The same notification gets the same id at every endpoint, flagged or not.
                    let id = got.header("x-webhook-event-id").unwrap().to_string();
                    assert_eq!(ids.entry(name).or_insert_with(|| id.clone()), &id, "{name}");
                    if name == "marketplace-put-succeeded-no-billing" {
                        assert_eq!(data["flavour"], "marketplace");
                        assert!(data.get("billing").is_none());
                        assert_eq!(data["plan"]["name"], "standard");
                    }
                }
            }
        }
    }

    // One counter per rule and setting, exactly; the held and refused ones as rejections.
    let flagged = CORPUS.iter().filter(|c| !c.1.is_empty()).count() as u64;
    let conforming = CORPUS.len() as u64 - flagged;
    for setting in SETTINGS {
        let endpoint = format!("azure-{setting}");
        let counter =
            |family: &str, label: Option<(&str, &str)>| envoy.counter(family, &[("endpoint", endpoint.as_str())].into_iter().chain(label).collect::<Vec<_>>());
        for rule in [
            "pair_undocumented",
            "state_undocumented",
            "error_missing",
            "error_shape",
            "error_unexpected",
            "time_no_offset",
            "flavour_unknown",
            "plan_shape",
            "billing_shape",
            "definition_shape",
            "type_undocumented",
        ] {
            let want = CORPUS.iter().filter(|c| c.1 == rule).count() as u64;
            assert_eq!(counter("nonconforming_total", Some(("rule", rule))), want, "{setting} {rule}");
        }
        let (forwarded, held, refused) = match setting {
            "forward" => (flagged + conforming, 0, 0),
            "hold" => (conforming, flagged, 0),
            _ => (conforming, 0, flagged),
        };
        assert_eq!(counter("forwarded_total", None), forwarded, "{setting}");
        assert_eq!(counter("rejected_total", Some(("reason", "held"))), held, "{setting}");
        assert_eq!(counter("rejected_total", Some(("reason", "nonconforming"))), refused, "{setting}");
    }

    // One warn line per nonconforming notification and setting, naming action, id and rules.
    let log = envoy.log();
    for setting in SETTINGS {
        for (name, rules, _, _) in CORPUS.iter().filter(|c| !c.1.is_empty()) {
            let line = format!("webhook-guard: nonconforming endpoint=azure-{setting} action={setting} event_id={} rules={rules} detail=", ids[name]);
            let found: Vec<&str> = log.lines().filter(|l| l.contains(&line)).collect();
            assert_eq!(found.len(), 1, "{name}: {line}\n{log}");
            assert!(found[0].contains("[warning]"), "{}", found[0]);
        }
    }
    assert_eq!(log.matches("webhook-guard: nonconforming").count() as u64, 3 * flagged);
    assert!(!log.contains(SECRET));
}
