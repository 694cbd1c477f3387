//! The head stage: which endpoint guards the path (every spelling of it, route.rs), the
//! secret out of `:path` at once, authentication, the endpoint's global rate limit, and
//! the head cleaned of what the gateway owns. In `hold` the head then waits for the body;
//! in `stream` it goes on at once. Also the root's safety net for a held head whose body
//! never came.

use super::{answer::log_line, Guard, Headers, HttpHost, Stage, VERDICT_HEADER};
use crate::check::{self, Next};
use crate::config::{Endpoint, Forward, HeaderMode, Mode, Route, Unguarded};
use crate::metrics::{Counter, ListenerCounter};
use crate::problem::{Reason, Rejection};
use crate::profile::{Authentication, SignedHeaders};
use crate::query::{self, Secrets};
use proxy_wasm::types::Action;
use std::borrow::Cow;
use std::rc::Rc;

/// Headers a client may not set: the filter owns them on the upstream request.
const GATEWAY_PREFIXES: [&str; 2] = ["x-webhook-", "ce-"];
/// Headers that make frameworks (ASP.NET, Express, Spring, Rails, Laravel) run another
/// method's handler than the one the guard allowed.
const METHOD_OVERRIDES: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];
/// Headers outside `content-*` that describe a body: a replaced body drops them.
const DIGESTS: [&str; 2] = ["digest", "repr-digest"];
/// Printed by access logs (Istio's default format) instead of `:path` when present; Envoy
/// passes a client's own copy through.
const ORIGINAL_PATH: &str = "x-envoy-original-path";
/// Seconds a held head may wait for its body's first callback before the root's safety
/// net answers it ([`Guard::on_body_missing`]).
pub const HOLD_TIMEOUT_SECS: u64 = 5;

impl<H: HttpHost> Guard<H> {
    /// A request's head: refused here, or taken on to the body.
    pub(super) fn head(&mut self, end_of_stream: bool) -> Action {
        // One host call reads every header: a guarded request needs several, and one header
        // costs 0.9 µs against 1.7 µs for the whole map (measured in Envoy).
        let headers = self.host.request_headers();
        let find = |name: &str| headers.get(name);
        let raw_path = find(":path").unwrap_or_default();
        let bare_path = raw_path.split(|b| *b == b'?').next().unwrap_or_default();
        let config = Rc::clone(&self.config);
        let lossy = lossy_text(raw_path);
        let (index, endpoint) = match config.route(bare_path) {
            Route::Guarded(index, endpoint) => (index, endpoint),
            Route::Ambiguous(index, endpoint, why) => {
                self.take(index, endpoint, &lossy, &headers);
                return self.reject(endpoint, Rejection::new(Reason::AmbiguousPath, why.detail()));
            }
            Route::Unguarded => return self.unguarded(&lossy),
        };
        self.take(index, endpoint, &lossy, &headers);
        // Borrowed exactly when the path is UTF-8.
        let Cow::Borrowed(path) = lossy else {
            return self.reject(endpoint, Rejection::new(Reason::Invalid, "the request target is not UTF-8"));
        };
        let text = |name: &str| find(name).map(lossy_text);
        let (method, content_type, content_length) = (text(":method"), text("content-type"), text("content-length"));
        let content_encoding = text("content-encoding");
        let head = check::Head {
            method: method.as_deref().unwrap_or(""),
            query: query::split(path).1,
            content_type: content_type.as_deref(),
            content_length: content_length.as_deref(),
            content_encoding: content_encoding.as_deref(),
        };
        let profile = endpoint.profile.as_ref();
        self.signed = SignedHeaders(profile.signed_headers().iter().map(|name| find(name).map(<[u8]>::to_vec)).collect());
        // Authentication runs before the limit, so strangers cannot spend a sender's budget
        // (a signed request's limit waits for its signature, on the body).
        let signed = profile.authentication() == Authentication::Signature;
        // The clock is a host call: read only when a signature's timestamp needs it.
        let now_secs = if signed { self.host.now_nanos() / 1_000_000_000 } else { 0 };
        let checked = check::head(endpoint, &head, &self.signed, now_secs);
        let media = match checked.and_then(|next| if signed { Ok(next) } else { self.limit(endpoint, None).map(|()| next) }) {
            Ok(Next::Body(media)) => media,
            Ok(Next::Answer(answer)) => return self.local_answer(endpoint, answer),
            Err(rejection) => return self.reject(endpoint, rejection),
        };
        if end_of_stream {
            return self.reject(endpoint, Rejection::new(Reason::Invalid, "the body is empty"));
        }
        // The signature stays out of the upstream request unless the endpoint keeps it.
        for name in profile.removed_headers() {
            self.host.set_request_header(name, None);
        }
        if endpoint.mode == Mode::Shadow {
            self.host.set_request_header(VERDICT_HEADER, None);
        } else {
            let replaced = endpoint.forward == Forward::CloudEvent;
            for (name, _) in &headers {
                let owned = GATEWAY_PREFIXES.iter().any(|p| name.starts_with(p)) || METHOD_OVERRIDES.contains(&name);
                // A replaced body: nothing that describes the sent one may stay (its length
                // is set again once it is known on a held head; a streamed head's upstream
                // request is chunked).
                let describes_body = replaced && (name.starts_with("content-") || DIGESTS.contains(&name));
                if owned || describes_body {
                    self.host.set_request_header(name, None);
                }
            }
            if replaced {
                self.host.set_request_header("content-type", Some("application/cloudevents+json"));
            }
            self.host.set_request_header("x-webhook-profile", Some(endpoint.profile.name()));
            self.host.set_request_header("x-webhook-endpoint", Some(&endpoint.name));
        }
        self.stage = Stage::Body { media, size: 0 };
        match self.config.header_mode {
            // Held (allow_on_headers_stop_iteration): nothing reaches the upstream until
            // the body has been validated.
            HeaderMode::Hold => Action::Pause,
            // The checked head goes on; the body is held in on_request_body until it has
            // been validated, and a refusal then resets the upstream request.
            HeaderMode::Stream => {
                self.head_sent = true;
                Action::Continue
            }
        }
    }

    /// The head was held [`HOLD_TIMEOUT_SECS`] ago and no body callback came, so Envoy was
    /// not told to deliver it. Answers 503 (retried by both senders) instead of leaving the
    /// request hanging, whatever the endpoint's mode.
    pub(super) fn body_missing(&mut self, index: usize) {
        self.host.count(index, Counter::Rejected(Reason::NotHeld));
        let name = self.config.endpoints.get(index).map_or("", |e| e.name.as_str());
        let line = format!(
            "webhook-guard: endpoint={name}: no request body reached the filter {HOLD_TIMEOUT_SECS} s after the head was held; \
             set allow_on_headers_stop_iteration: true on the Wasm filter, or \"header_mode\": \"stream\"; answered 503"
        );
        self.host.log(log::Level::Error, &line);
        let mut rejection = Rejection::new(Reason::NotHeld, "the gateway could not hold the request; retry later");
        rejection.retry_after = Some(HOLD_TIMEOUT_SECS);
        self.answer(&rejection);
        self.stage = Stage::Idle;
    }

    /// Takes a request on `endpoint`'s path: counts it, and before any check can refuse it
    /// removes the secret from `:path` (an access log prints it, whatever the outcome):
    /// the parameter under every spelling, and any pair whose value is one of the
    /// endpoint's secrets; and a client's `x-envoy-original-path`. An enforced request goes on with exactly the
    /// configured path, so the backend sees only what the guard checked; a shadowed one
    /// keeps its own, without any secret in a query or `;` path parameter.
    fn take(&mut self, index: usize, endpoint: &Endpoint, path: &str, headers: &Headers) {
        self.matched = Some(index);
        self.host.count(index, Counter::Received);
        let values = endpoint.secret.values.iter().map(Vec::as_slice).collect();
        let target = match query::split(path) {
            _ if endpoint.mode != Mode::Enforce => query::without_secrets(path, &Secrets { params: &self.secret_params(), values }),
            (_, Some(query)) => {
                let secrets = Secrets { params: &[endpoint.secret.param.as_str()], values };
                // The configured path holds no `?` (config.rs).
                query::without_secrets_in(&endpoint.path, Some(query), &secrets)
            }
            (_, None) => endpoint.path.clone(),
        };
        if target != path {
            self.host.set_request_header(":path", Some(&target));
        }
        if headers.get(ORIGINAL_PATH).is_some() {
            self.host.set_request_header(ORIGINAL_PATH, None);
        }
    }

    /// A request no endpoint guards: untouched, or refused on a listener for webhooks only.
    fn unguarded(&mut self, path: &str) -> Action {
        if self.config.unguarded == Unguarded::Pass {
            return Action::Continue;
        }
        // A sender's URL with a wrong path still carries its secret, of any endpoint.
        let values = self.config.endpoints.iter().flat_map(|e| e.secret.values.iter().map(Vec::as_slice)).collect();
        let stripped = query::without_secrets(path, &Secrets { params: &self.secret_params(), values });
        if stripped != path {
            self.host.set_request_header(":path", Some(&stripped));
        }
        self.host.count_listener(ListenerCounter::UnguardedRejected);
        let rejection = Rejection::new(Reason::NotFound, "no webhook endpoint guards this path");
        if let Some(level) = self.config.log_level {
            self.host.log(level, &log_line("-", &rejection, false));
        }
        self.answer(&rejection);
        Action::Pause
    }

    /// Every endpoint's secret parameter: a path kept as sent loses all of them.
    fn secret_params(&self) -> Vec<&str> {
        self.config.endpoints.iter().map(|e| e.secret.param.as_str()).collect()
    }
}

/// A header value as text: borrowed when it is UTF-8 (checked a word at a time for
/// ASCII, unlike the lossy reading), else with replacement characters.
fn lossy_text(value: &[u8]) -> Cow<'_, str> {
    std::str::from_utf8(value).map_or_else(|_| String::from_utf8_lossy(value), Cow::Borrowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::filter::mock::*;

    #[test]
    fn other_paths_are_not_touched() {
        let (mock, mut g) = guard("GET", "/az/x?sig=k", &[("x-webhook-a", "1")]);
        let before = mock.headers.borrow().clone();
        assert_eq!(g.on_request_headers(false), Action::Continue);
        assert_eq!(g.on_request_body(10, true), Action::Continue);
        assert_eq!(*mock.headers.borrow(), before);
        assert!(mock.sent.borrow().is_none());
    }

    #[test]
    fn a_rejection_answers_pauses_and_logs_without_the_secret() {
        let (mock, mut g) = guard("POST", "/az?sig=wrong", &[]);
        assert_eq!(g.on_request_headers(false), Action::Pause);
        assert_eq!(mock.sent_status(), Some(403));
        assert_eq!(mock.logs.borrow().len(), 1);
        assert!(!mock.logs.borrow()[0].contains("wrong"));
        // The stream is finished: later callbacks change nothing.
        assert_eq!(g.on_request_body(5, true), Action::Continue);
    }

    #[test]
    fn accepted_head_is_held_cleaned_and_rewritten() {
        let (mock, mut g) = guard("POST", "/az?a=1&sig=k", &[("x-webhook-event-id", "x"), ("ce-id", "y"), ("content-length", "300")]);
        assert_eq!(g.on_request_headers(false), Action::Pause);
        assert_eq!(mock.header(":path").as_deref(), Some("/az?a=1"));
        assert_eq!(mock.header("x-webhook-event-id"), None);
        assert_eq!(mock.header("ce-id"), None);
        assert_eq!(mock.header("content-length"), None, "removed: the body will be replaced");
        assert!(mock.sent.borrow().is_none());
    }

    #[test]
    fn a_replaced_body_keeps_no_header_of_the_sent_one() {
        let sent = [
            ("content-md5", "x"),
            ("digest", "md5=x"),
            ("content-digest", "sha-256=:x:"),
            ("repr-digest", "sha-256=:x:"),
            ("content-language", "en"),
            ("content-encoding", "identity"),
            ("content-length", "300"),
        ];
        for (path, replaced) in [("/az?sig=k", true), ("/orig?sig=k", false)] {
            let (mock, mut g) = guard("POST", path, &sent);
            assert_eq!(g.on_request_headers(false), Action::Pause);
            assert!(mock.sent.borrow().is_none());
            for (name, value) in sent {
                assert_eq!(mock.header(name).as_deref(), if replaced { None } else { Some(value) }, "{path} {name}");
            }
        }
        let (mock, mut g) = streamed("POST", "/az?sig=k", &sent);
        assert_eq!(g.on_request_headers(false), Action::Continue);
        assert!(sent.iter().all(|(name, _)| mock.header(name).is_none()));
        assert_eq!(mock.header("content-type").as_deref(), Some("application/cloudevents+json"));
    }

    #[test]
    fn an_encoding_the_filter_cannot_read_is_415_on_the_head() {
        for (path, encoding) in [("/az?sig=k", "gzip"), ("/orig?sig=k", "br"), ("/store?sig=k", "identity, deflate")] {
            for (mock, mut g) in [guard("POST", path, &[("content-encoding", encoding)]), streamed("POST", path, &[("content-encoding", encoding)])] {
                assert_eq!(g.on_request_headers(false), Action::Pause, "{path}");
                let sent = mock.sent.borrow().clone().unwrap();
                assert_eq!(sent.0, 415, "{path}");
                assert!(String::from_utf8_lossy(&sent.1).contains(&format!("content encoding '{encoding}'")), "{path}");
            }
        }
        let (mock, mut g) = guard("POST", "/az?sig=k", &[("content-encoding", "gzip")]);
        *mock.headers.borrow_mut() =
            vec![(":method".into(), b"POST".to_vec()), (":path".into(), b"/az?sig=wrong".to_vec()), ("content-encoding".into(), b"gzip".to_vec())];
        g.on_request_headers(false);
        assert_eq!(mock.sent_status(), Some(403), "authentication first");
    }

    #[test]
    fn loose_spellings_are_guarded_and_go_upstream_on_the_configured_path() {
        let (mock, mut g) =
            guard("POST", "/AZ/;x=1?a=1&sig=k", &[("x-http-method-override", "DELETE"), ("x-method-override", "PUT"), ("x-http-method", "GET")]);
        assert_eq!(g.on_request_headers(false), Action::Pause);
        assert!(mock.sent.borrow().is_none());
        assert_eq!(mock.header(":path").as_deref(), Some("/az?a=1"));
        for name in METHOD_OVERRIDES {
            assert_eq!(mock.header(name), None, "{name}");
        }
        assert_eq!(mock.counts.borrow().first(), Some(&(0, Counter::Received)));
    }

    #[test]
    fn the_secret_leaves_the_path_whatever_the_outcome() {
        for (method, path, status) in
            [("POST", "/az/?sig=wrong", 403), ("GET", "/az?sig=k", 405), ("POST", "/az?sig=k&sig=k", 400), ("POST", "/az%2f?sig=k", 400)]
        {
            let (mock, mut g) = guard(method, path, &[(ORIGINAL_PATH, "/az?sig=k")]);
            assert_eq!(g.on_request_headers(false), Action::Pause);
            assert_eq!(mock.sent_status(), Some(status), "{path}");
            assert_eq!(mock.header(":path").as_deref(), Some("/az"), "{path}");
            assert_eq!(mock.header(ORIGINAL_PATH), None);
        }
    }

    #[test]
    fn every_laundered_spelling_of_the_secret_leaves_the_path() {
        for (query, status, want) in [
            ("sig=k&b=1;sig=k", Some(400), "/az?b=1"),
            ("b=1;sig=k", Some(401), "/az?b=1"),
            ("sig=k&b=1;x=k", None, "/az?b=1"),
            ("sig%3Dk", Some(401), "/az"),
            ("sig=k&sig%3Dk", Some(400), "/az"),
            ("sig=k&x%3Dk", None, "/az"),
            ("sig[]=k&a=1", Some(401), "/az?a=1"),
            ("sig=k&sig[]=k", Some(400), "/az"),
            ("sig=k&x[]=k", None, "/az"),
            ("%20sig=k", Some(401), "/az"),
            ("sig=k&%20sig=k", Some(400), "/az"),
            ("sig%00=k", Some(401), "/az"),
            ("sig=k&sig%00=k", Some(400), "/az"),
            ("sig=k&x%00=k", None, "/az"),
            ("x=k&sig=wrong", Some(403), "/az"),
            ("token=k&a=1", Some(401), "/az?a=1"),
        ] {
            let (mock, mut g) = guard("POST", &format!("/az?{query}"), &[]);
            g.on_request_headers(false);
            assert_eq!(mock.sent_status(), status, "{query}");
            assert_eq!(mock.header(":path").as_deref(), Some(want), "{query}");
            if status == Some(400) {
                assert!(String::from_utf8_lossy(&mock.sent.borrow().as_ref().unwrap().1).contains("ambiguous_secret"), "{query}");
            }
        }
    }

    #[test]
    fn an_ambiguous_path_that_could_be_guarded_is_400_before_authentication() {
        let (mock, mut g) = guard("POST", "/a%7A%2F", &[]);
        assert_eq!(g.on_request_headers(false), Action::Pause);
        let sent = mock.sent.borrow().clone().unwrap();
        assert_eq!(sent.0, 400);
        assert!(String::from_utf8_lossy(&sent.1).contains("ambiguous_path"));
        assert!(mock.counts.borrow().contains(&(0, Counter::Rejected(Reason::AmbiguousPath))));
        // Ambiguous, but nothing a backend could route to an endpoint: not ours.
        let (mock, mut g) = guard("POST", "/other%2F?sig=k", &[]);
        assert_eq!(g.on_request_headers(false), Action::Continue);
        assert!(mock.sent.borrow().is_none());
    }

    #[test]
    fn unguarded_paths_pass_or_get_404_on_a_webhook_listener() {
        let (mock, mut g) = guard("POST", "/azure?sig=k", &[]);
        assert_eq!(g.on_request_headers(false), Action::Continue);
        assert_eq!(mock.header(":path").as_deref(), Some("/azure?sig=k"));
        let json = CONFIG.replacen('{', r#"{"unguarded":"reject","#, 1);
        let config = Rc::new(Config::parse(json.as_bytes(), |_| None).unwrap());
        let (mock, _) = guard("POST", "/azure;sig=k/x;SIG=k?a=1&sig=k", &[]);
        let mut g = Guard::new(Rc::clone(&mock), config);
        assert_eq!(g.on_request_headers(false), Action::Pause);
        assert_eq!(mock.sent_status(), Some(404));
        assert_eq!(mock.header(":path").as_deref(), Some("/azure/x?a=1"));
        assert_eq!(*mock.listener_counts.borrow(), vec![ListenerCounter::UnguardedRejected]);
        assert!(mock.counts.borrow().is_empty());
        assert!(mock.logs.borrow()[0].contains("status=404 reason=not_found"), "{:?}", mock.logs.borrow());
    }

    #[test]
    fn shadow_keeps_the_sent_path_but_not_the_secret() {
        let json = CONFIG.replacen(r#""max_body_bytes":2000"#, r#""max_body_bytes":2000,"mode":"shadow""#, 1);
        let config = Rc::new(Config::parse(json.as_bytes(), |_| None).unwrap());
        for (path, want, verdict) in [
            ("/AZ/?b=2&sig=wrong", "/AZ/?b=2", Some("forbidden")),
            ("/az?sig=k", "/az", None),
            ("/az;sig=k?a=1&sig=k", "/az?a=1", None),
            ("/AZ;x=1;Sig=k/;s%69g=wrong", "/AZ;x=1/", Some("unauthorized")),
        ] {
            let (mock, _) = guard("POST", path, &[("x-http-method-override", "DELETE")]);
            let mut g = Guard::new(Rc::clone(&mock), Rc::clone(&config));
            g.on_request_headers(false);
            assert_eq!(mock.header(":path").as_deref(), Some(want));
            assert_eq!(mock.header("x-http-method-override").as_deref(), Some("DELETE"), "shadow forwards the head as sent");
            assert_eq!(mock.header(VERDICT_HEADER).as_deref(), verdict);
            assert!(mock.sent.borrow().is_none());
        }
    }

    #[test]
    fn held_head_waits_for_its_body_and_the_safety_net_answers_503_once() {
        let (mock, mut g) = guard("POST", "/az?sig=k", &[]);
        assert_eq!(g.on_request_headers(false), Action::Pause);
        assert!(g.holds_head());
        g.on_body_missing();
        assert_eq!(mock.sent_status(), Some(503));
        // The documented value, not the constant: a change must change the docs too.
        let headers = mock.sent_headers.borrow().clone();
        assert_eq!(headers.iter().filter(|(k, _)| k == "retry-after").collect::<Vec<_>>(), [&("retry-after".to_string(), "5".to_string())]);
        let body: serde_json::Value = serde_json::from_slice(&mock.sent.borrow().as_ref().unwrap().1).unwrap();
        assert_eq!(body["type"], "urn:webhook-guard:problem:head_not_held");
        assert!(mock.counts.borrow().contains(&(0, Counter::Rejected(Reason::NotHeld))));
        assert!(mock.logs.borrow()[0].contains("allow_on_headers_stop_iteration"), "{:?}", mock.logs.borrow());
        assert!(!g.holds_head());
        *mock.sent.borrow_mut() = None;
        g.on_body_missing();
        assert_eq!(g.on_request_body(5, true), Action::Continue);
        assert!(mock.sent.borrow().is_none(), "answered once; a late body changes nothing");
    }

    /// A profile answering `OPTIONS` carrying `x-hello` on its head.
    #[derive(Debug)]
    struct Handshake;

    const HANDSHAKE: crate::metrics::ProfileCounter = crate::metrics::ProfileCounter { family: "handshakes_total", labels: &[], verdict: true };

    impl crate::profile::Profile for Handshake {
        fn name(&self) -> &'static str {
            "handshake"
        }
        fn allow(&self) -> &'static str {
            "POST"
        }
        fn signed_headers(&self) -> &'static [&'static str] {
            &["x-hello"]
        }
        fn validate(&self, _: crate::media::Media, _: &[u8], _: &SignedHeaders) -> Result<crate::event::Event, Rejection> {
            Err(Rejection::new(Reason::Invalid, "not here"))
        }
        fn head_answer(&self, method: &str, headers: &SignedHeaders) -> Option<crate::profile::LocalAnswer> {
            let hello = headers.text(0).filter(|_| method == "OPTIONS")?;
            Some(crate::profile::LocalAnswer {
                status: 200,
                headers: vec![("x-hi", hello.to_string())],
                body: Vec::new(),
                counter: Counter::Profile(HANDSHAKE),
            })
        }
    }

    fn handshaking(mode: &str, path: &str, extra: &[(&str, &str)]) -> (Rc<crate::filter::mock::Mock>, Guard<Rc<crate::filter::mock::Mock>>) {
        let (mock, mut g) = guard("OPTIONS", path, extra);
        let mut config = Config::parse(CONFIG.replacen(r#""header_mode":"hold""#, &format!(r#""header_mode":"{mode}""#), 1).as_bytes(), |_| None).unwrap();
        config.endpoints[0].profile = Box::new(Handshake);
        g.config = Rc::new(config);
        (mock, g)
    }

    #[test]
    fn a_bodiless_handshake_is_answered_on_the_head_only_when_authenticated() {
        for mode in ["hold", "stream"] {
            let (mock, mut g) = handshaking(mode, "/az?sig=k", &[("x-hello", "origin.example")]);
            assert_eq!(g.on_request_headers(true), Action::Pause, "{mode}: not forwarded");
            assert_eq!(mock.sent_status(), Some(200));
            assert_eq!(*mock.sent_headers.borrow(), [("x-hi".to_string(), "origin.example".to_string())]);
            assert!(mock.counts.borrow().contains(&(0, Counter::Profile(HANDSHAKE))));
            assert!(!g.holds_head());
            for (path, extra, status) in [("/az?sig=wrong", &[("x-hello", "o")][..], 403), ("/az", &[("x-hello", "o")], 401), ("/az?sig=k", &[], 405)] {
                let (mock, mut g) = handshaking(mode, path, extra);
                assert_eq!(g.on_request_headers(true), Action::Pause);
                assert_eq!(mock.sent_status(), Some(status), "{mode} {path}");
                assert!(!mock.counts.borrow().contains(&(0, Counter::Profile(HANDSHAKE))));
            }
        }
        // Shadow mode answers nothing itself: the request goes on, reported accepted.
        let (mock, mut g) = handshaking("hold", "/az?sig=k", &[("x-hello", "o")]);
        let mut config = Config::parse(CONFIG.as_bytes(), |_| None).unwrap();
        config.endpoints[0].profile = Box::new(Handshake);
        config.endpoints[0].mode = Mode::Shadow;
        g.config = Rc::new(config);
        assert_eq!(g.on_request_headers(true), Action::Continue);
        assert!(mock.sent.borrow().is_none());
        assert_eq!(mock.header(VERDICT_HEADER).as_deref(), Some("accept"));
    }

    #[test]
    fn streamed_head_continues_cleaned_with_the_headers_known_at_the_head() {
        let (mock, mut g) = streamed("POST", "/az?a=1&sig=k", &[("x-webhook-event-id", "x"), ("ce-id", "y"), ("content-length", "300")]);
        assert_eq!(g.on_request_headers(false), Action::Continue);
        assert!(!g.holds_head(), "nothing for the safety net to watch");
        assert_eq!(mock.header(":path").as_deref(), Some("/az?a=1"));
        assert_eq!(mock.header("x-webhook-event-id"), None);
        assert_eq!(mock.header("ce-id"), None);
        assert_eq!(mock.header("content-length"), None, "the upstream request is chunked");
        assert_eq!(mock.header("content-type").as_deref(), Some("application/cloudevents+json"));
        assert_eq!(mock.header("x-webhook-endpoint").as_deref(), Some("azure"));
        assert_eq!(mock.header("x-webhook-profile").as_deref(), Some("azure_managed_app"));
        // Head refusals still answer before anything goes upstream.
        let (mock, mut g) = streamed("POST", "/az?sig=wrong", &[]);
        assert_eq!(g.on_request_headers(false), Action::Pause);
        assert_eq!(mock.sent_status(), Some(403));
    }
}
