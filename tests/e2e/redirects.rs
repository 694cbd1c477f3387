//! An upstream redirect never loses a notification: whatever 3xx the backend answers
//! (a framework redirecting to the slashed or unslashed path), after the body or on a
//! streamed head before it, the sender is told 502 `upstream_rejected` (both senders
//! retry it), never the 3xx and its `Location`, and the counters say why. Both deployment
//! forms: `hold` with `allow_on_headers_stop_iteration`, `stream` without it.

use crate::harness::{send, send_paced, Behaviour, Envoy, Options, Response, Upstream};
use crate::{CATALOG_SAMPLE, SECRET};
use std::time::Duration;

const REDIRECTS: [u16; 6] = [301, 302, 303, 307, 308, 304];
/// A signed vendor envelope: the md5 is that of the payload `{"type":"x"}`.
const ENVELOPE: &str = r#"{"payload":{"type":"x"},"md5":"e499d5de3e233dced7b2bc5c021f5e3c"}"#;
const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

/// The deployment forms: header mode and `allow_on_headers_stop_iteration`.
const FORMS: [(&str, bool); 2] = [("hold", true), ("stream", false)];

fn start(header_mode: &str, stop_iteration: bool, upstream: &Upstream) -> Envoy {
    let plugin = format!(
        r#"{{"header_mode": "{header_mode}", "endpoints": [
  {{"name": "azure", "path": "/api/resource", "profile": "azure_managed_app", "secret": {{"values": ["{SECRET}"]}}}},
  {{"name": "store", "path": "/hooks/store", "profile": "md5_envelope", "secret": {{"values": ["{SECRET}"]}}}}]}}"#
    );
    let mut opts = Options::new(&plugin, upstream.port);
    opts.stop_iteration = stop_iteration;
    Envoy::start_with(opts)
}

/// The two senders: (endpoint name, signed target, body).
fn senders() -> [(&'static str, String, &'static str); 2] {
    [("azure", format!("/api/resource?sig={SECRET}"), CATALOG_SAMPLE), ("store", format!("/hooks/store?sig={SECRET}"), ENVELOPE)]
}

fn assert_retried(res: &Response, what: &str) {
    assert_eq!(res.status, 502, "{what}: {res:?}");
    res.assert_problem(502, "upstream_rejected");
    assert_eq!(res.header("location"), None, "{what}: the redirect's Location is not passed on");
}

#[test]
fn every_redirect_after_the_body_is_502_for_both_senders_in_both_forms() {
    for (mode, flag) in FORMS {
        let upstream = Upstream::start();
        let envoy = start(mode, flag, &upstream);
        for status in REDIRECTS {
            upstream.set(Behaviour::Status(status));
            for (name, target, body) in senders() {
                let before = upstream.requests().len();
                let res = send(envoy.port, "POST", &target, JSON, body.as_bytes());
                assert_retried(&res, &format!("{mode} {name} upstream {status}"));
                let seen = &upstream.requests()[before..];
                assert_eq!(seen.len(), 1, "{mode} {name} {status}: the upstream got the event once");
                assert!(!seen[0].path.contains(SECRET));
            }
        }
        let counters = envoy.counters();
        for name in ["azure", "store"] {
            for (counter, want) in [("upstream_mapped.redirect", 6), ("rejected.upstream_rejected", 6), ("forwarded", 6), ("upstream_mapped.early_success", 0)] {
                assert_eq!(counters.get(&format!("webhook_guard.{name}.{counter}")), Some(&want), "{mode} {name}.{counter}");
            }
        }
    }
}

#[test]
fn an_early_answer_on_the_head_is_502_whatever_its_status() {
    for (mode, flag) in FORMS {
        let upstream = Upstream::start();
        let envoy = start(mode, flag, &upstream);
        // 3xx; and in `stream` a 2xx, which cannot mean "taken": the body was not delivered.
        let statuses: &[u16] = if mode == "stream" { &[301, 307, 308, 200] } else { &[301, 307, 308] };
        for &status in statuses {
            upstream.set(Behaviour::OnHead(status));
            let before = upstream.heads().len();
            // The body follows slowly: a streamed head reaches the upstream first.
            let res = send_paced(envoy.port, "POST", &format!("/api/resource?sig={SECRET}"), JSON, CATALOG_SAMPLE.as_bytes(), 64, Duration::from_millis(50));
            assert_retried(&res, &format!("{mode} upstream {status} on the head"));
            let heads = &upstream.heads()[before..];
            assert_eq!(heads.len(), 1, "{mode} {status}: the upstream saw the head");
            assert_eq!(heads[0].path, "/api/resource");
        }
        let counters = envoy.counters();
        let early = u64::from(mode == "stream");
        assert_eq!(counters.get("webhook_guard.azure.upstream_mapped.redirect"), Some(&3), "{mode}");
        assert_eq!(counters.get("webhook_guard.azure.upstream_mapped.early_success"), Some(&early), "{mode}");
    }
}
