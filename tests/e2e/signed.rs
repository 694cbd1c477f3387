//! What the signed senders' modules share: the two deployment forms, one endpoint started
//! in a form, the clock, and the checks that a refused delivery reached nothing and that
//! no secret or signature leaked.

use crate::harness::{Envoy, Options, Upstream};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Form {
    /// `"header_mode": "hold"` with allow_on_headers_stop_iteration.
    Hold,
    /// `"header_mode": "stream"` without it (Istio's WasmPlugin, Envoy Gateway).
    Stream,
}

pub const FORMS: [Form; 2] = [Form::Hold, Form::Stream];

pub struct Setup {
    pub upstream: Upstream,
    pub envoy: Envoy,
}

/// Envoy in `form` guarding one `endpoint` (its JSON object), with the variables `env`.
pub fn start(form: Form, endpoint: &str, env: &[(&str, &str)], access_log: Option<&str>) -> Setup {
    let mode = if form == Form::Hold { "hold" } else { "stream" };
    let upstream = Upstream::start();
    let mut opts = Options::new(&format!(r#"{{"header_mode": "{mode}", "endpoints": [{endpoint}]}}"#), upstream.port);
    opts.stop_iteration = form == Form::Hold;
    opts.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    opts.access_log = access_log.map(String::from);
    let envoy = Envoy::start_with(opts);
    Setup { upstream, envoy }
}

pub fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// In `hold` nothing reached the upstream; in `stream` at most the cleaned head did (its
/// request reset before any body): never a complete request, never the `header` carrying
/// a signature, never the `signature` itself.
pub fn assert_nothing_delivered(s: &Setup, form: Form, header: &str, signature: &str) {
    assert!(s.upstream.requests().is_empty(), "{form:?}: a request reached the upstream: {:?}", s.upstream.requests());
    let heads = s.upstream.heads();
    if form == Form::Hold {
        assert!(heads.is_empty(), "hold: a head reached the upstream: {heads:?}");
    }
    for head in heads {
        assert!(head.header(header).is_none() && !format!("{head:?}").contains(signature), "{head:?}");
    }
}

/// None of `leaks` (secrets, signatures) in the last `lines` of the access log, Envoy's
/// log or any head the upstream saw.
pub fn assert_no_leak(s: &Setup, form: Form, lines: usize, leaks: &[&str]) -> String {
    let log = s.envoy.access_log(lines);
    for leak in leaks {
        assert!(!log.contains(leak), "{form:?}: {log}");
        for seen in s.upstream.heads() {
            assert!(!format!("{seen:?}").contains(leak), "{form:?}: {seen:?}");
        }
        assert!(!s.envoy.log().contains(leak), "{form:?}: Envoy's log");
    }
    log
}
