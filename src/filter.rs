//! The per-request flow: which checks run at which stage of an Envoy HTTP stream, and
//! what is sent where. It talks to Envoy only through [`HttpHost`], so the whole flow is
//! unit-tested natively against a recording mock; `host.rs` implements the trait with
//! proxy-wasm calls.

use crate::arm::verify::{self, Step, Verdict};
use crate::arm::{self, Outbound};
use crate::config::{Config, Contention, Endpoint, Forward, HeaderMode, Mode, Profile, RateKey, Route, Unguarded, Upstream4xx};
use crate::event::Event;
use crate::media::Media;
use crate::metrics::{Counter, ListenerCounter};
use crate::problem::{Reason, Rejection};
use crate::ratelimit::{self, Outcome};
use crate::dedupe::{self, Begin};
use crate::{check, conformance, query, vendor};
use proxy_wasm::types::Action;
use std::borrow::Cow;
use std::rc::Rc;

/// What the flow needs from the proxy for one HTTP stream; the shared store holds
/// state common to every worker, and outbound calls serve the verify stage.
pub trait HttpHost: Outbound {
    /// The host clock, nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> u64;
    /// All request headers, read in one call. Values are bytes: HTTP/1 allows non-UTF-8
    /// header values, and the SDK's string accessors trap on them.
    fn request_headers(&self) -> Vec<(String, Vec<u8>)>;
    /// Sets (`Some`) or removes (`None`) a request header.
    fn set_request_header(&self, name: &str, value: Option<&str>);
    /// The first `size` bytes of the buffered request body.
    fn request_body(&self, size: usize) -> Option<Vec<u8>>;
    /// Replaces the first `size` bytes of the buffered request body.
    fn set_request_body(&self, size: usize, body: &[u8]);
    /// The upstream's `:status`.
    fn response_status(&self) -> Option<u16>;
    /// Envoy's `response.code_details`: who produced the response (`via_upstream`, or the
    /// local reply's reason, e.g. `request_rate_limited`).
    fn response_code_details(&self) -> Option<String>;
    /// Replaces the `:status` the sender will see.
    fn set_response_status(&self, status: u16);
    /// Answers the sender directly; the upstream is not called (or its answer dropped).
    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]);
    /// Adds one to `counter` of the endpoint at `endpoint` (its index in the config).
    fn count(&self, endpoint: usize, counter: Counter);
    /// Adds one to a counter of the listener as a whole.
    fn count_listener(&self, counter: ListenerCounter);
    /// Writes a log line.
    fn log(&self, level: log::Level, line: &str);
    /// Lets a request held by the verify stage continue.
    fn resume_request(&self);
}

/// Headers a client may not set: the filter owns them on the upstream request.
const GATEWAY_PREFIXES: [&str; 2] = ["x-webhook-", "ce-"];
/// Headers that make frameworks (ASP.NET, Express, Spring, Rails, Laravel) run another
/// method's handler than the one the guard allowed.
const METHOD_OVERRIDES: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];
/// Printed by access logs (Istio's default format) instead of `:path` when present; Envoy
/// passes a client's own copy through.
const ORIGINAL_PATH: &str = "x-envoy-original-path";
/// Shadow mode's report to the upstream: `accept` or the rejection's reason.
pub const VERDICT_HEADER: &str = "x-webhook-shadow-verdict";
/// Seconds a held head may wait for its body's first callback before the root's safety
/// net answers it ([`Guard::on_body_missing`]).
pub const HOLD_TIMEOUT_SECS: u64 = 5;

enum Stage {
    /// Not a guarded path, or settled: nothing more to do.
    Idle,
    /// Head accepted; buffering the body.
    Body { media: Media, size: usize },
    /// Body accepted; held while Azure Resource Manager confirms the notification.
    Verifying(Box<Held>),
    /// Sent upstream; its answer is checked.
    Forwarded,
}

/// A request held by the verify stage: its event, body size and the check's state.
struct Held {
    event: Event,
    size: usize,
    pending: verify::Pending,
}

pub struct Guard<H> {
    host: H,
    config: Rc<Config>,
    /// Index of the endpoint guarding this request's path.
    matched: Option<usize>,
    stage: Stage,
    /// Slot key and id of an event marked in flight for duplicate suppression.
    in_flight: Option<(String, String)>,
    /// The head went upstream (`stream`): request headers can no longer be changed.
    head_sent: bool,
}

impl<H: HttpHost> Guard<H> {
    pub fn new(host: H, config: Rc<Config>) -> Self {
        Guard { host, config, matched: None, stage: Stage::Idle, in_flight: None, head_sent: false }
    }

    pub fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        // One host call reads every header: a guarded request needs several, and one header
        // costs 0.9 µs against 1.7 µs for the whole map (measured in Envoy).
        let headers = self.host.request_headers();
        let find = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice());
        let raw_path = find(":path").unwrap_or_default();
        let bare_path = raw_path.split(|b| *b == b'?').next().unwrap_or_default();
        let config = Rc::clone(&self.config);
        let lossy = String::from_utf8_lossy(raw_path);
        let (index, endpoint) = match config.route(bare_path) {
            Route::Guarded(index, endpoint) => (index, endpoint),
            Route::Ambiguous(index, endpoint, why) => {
                self.take(index, endpoint, &lossy, &headers);
                return self.reject(endpoint, Rejection::new(Reason::AmbiguousPath, why.detail()));
            }
            Route::Unguarded => return self.unguarded(&lossy),
        };
        self.take(index, endpoint, &lossy, &headers);
        let Ok(path) = std::str::from_utf8(raw_path) else {
            return self.reject(endpoint, Rejection::new(Reason::Invalid, "the request target is not UTF-8"));
        };
        let text = |name: &str| find(name).map(String::from_utf8_lossy);
        let (method, content_type, content_length) = (text(":method"), text("content-type"), text("content-length"));
        let head = check::Head {
            method: method.as_deref().unwrap_or(""),
            query: query::split(path).1,
            content_type: content_type.as_deref(),
            content_length: content_length.as_deref(),
        };
        // Authentication runs before the limit, so strangers cannot spend a sender's budget.
        let media = match check::head(endpoint, &head).and_then(|media| self.limit(endpoint, None).map(|()| media)) {
            Ok(media) => media,
            Err(rejection) => return self.reject(endpoint, rejection),
        };
        if end_of_stream {
            return self.reject(endpoint, Rejection::new(Reason::Invalid, "the body is empty"));
        }
        if endpoint.mode == Mode::Shadow {
            self.host.set_request_header(VERDICT_HEADER, None);
        } else {
            for (name, _) in &headers {
                if GATEWAY_PREFIXES.iter().any(|p| name.starts_with(p)) || METHOD_OVERRIDES.contains(&name.as_str()) {
                    self.host.set_request_header(name, None);
                }
            }
            if endpoint.forward == Forward::CloudEvent {
                // The body will be replaced; its length is set again once it is known
                // (held head) or the upstream request is chunked (streamed head).
                self.host.set_request_header("content-length", None);
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

    /// Whether the head is held until the body's verdict: Envoy must then call the body
    /// callback, which it never does without `allow_on_headers_stop_iteration`.
    pub fn holds_head(&self) -> bool {
        self.config.header_mode == HeaderMode::Hold && matches!(self.stage, Stage::Body { .. })
    }

    /// The root's safety net: the head was held [`HOLD_TIMEOUT_SECS`] ago and no body
    /// callback came, so Envoy was not told to deliver it. Answers 503 (retried by both
    /// senders) instead of leaving the request hanging, whatever the endpoint's mode.
    pub fn on_body_missing(&mut self) {
        let (Stage::Body { .. }, Some(index)) = (&self.stage, self.matched) else {
            return;
        };
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
    /// removes the secret from `:path` (an access log prints it, whatever the outcome) and
    /// a client's `x-envoy-original-path`. An enforced request goes on with exactly the
    /// configured path, so the backend sees only what the guard checked; a shadowed one
    /// keeps its own.
    fn take(&mut self, index: usize, endpoint: &Endpoint, path: &str, headers: &[(String, Vec<u8>)]) {
        self.matched = Some(index);
        self.host.count(index, Counter::Received);
        let (sent, query) = query::split(path);
        let base = if endpoint.mode == Mode::Enforce { endpoint.path.as_str() } else { sent };
        let target = match query {
            Some(query) => query::without_param(&format!("{base}?{query}"), &endpoint.secret.param),
            None => base.to_string(),
        };
        if target != path {
            self.host.set_request_header(":path", Some(&target));
        }
        if headers.iter().any(|(name, _)| name == ORIGINAL_PATH) {
            self.host.set_request_header(ORIGINAL_PATH, None);
        }
    }

    /// A request no endpoint guards: untouched, or refused on a listener for webhooks only.
    fn unguarded(&mut self, path: &str) -> Action {
        if self.config.unguarded == Unguarded::Pass {
            return Action::Continue;
        }
        // A sender's URL with a wrong path still carries its secret.
        let params = self.config.endpoints.iter().map(|e| e.secret.param.as_str());
        let stripped = params.fold(path.to_string(), |path, param| query::without_param(&path, param));
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

    pub fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Stage::Body { size, .. } = &mut self.stage else {
            return Action::Continue;
        };
        // Envoy reports the cumulative size of the buffered body.
        *size = body_size;
        let config = Rc::clone(&self.config);
        let Some(endpoint) = self.matched.and_then(|i| config.endpoints.get(i)) else {
            return Action::Continue;
        };
        if body_size > endpoint.max_body_bytes {
            let detail = format!("the body is larger than {} bytes", endpoint.max_body_bytes);
            return self.reject(endpoint, Rejection::new(Reason::TooLarge, detail));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.finish_body(endpoint)
    }

    /// Trailers end the stream without an end-of-stream body callback.
    pub fn on_request_trailers(&mut self) -> Action {
        let config = Rc::clone(&self.config);
        match (&self.stage, self.matched.and_then(|i| config.endpoints.get(i))) {
            (Stage::Body { .. }, Some(endpoint)) => self.finish_body(endpoint),
            _ => Action::Continue,
        }
    }

    fn finish_body(&mut self, endpoint: &Endpoint) -> Action {
        let Stage::Body { media, size } = self.stage else {
            return Action::Continue;
        };
        let body = self.host.request_body(size).unwrap_or_default();
        // A held or refused nonconforming event is answered before it draws a
        // per-application token or is marked in flight.
        let event = match check::body(endpoint, media, &body).and_then(|event| self.judge(endpoint, event)).and_then(|event| self.limit(endpoint, Some(&event)).map(|()| event)) {
            Ok(event) => event,
            Err(rejection) => return self.reject(endpoint, rejection),
        };
        if endpoint.mode == Mode::Shadow {
            if !self.head_sent {
                self.host.set_request_header(VERDICT_HEADER, Some("accept"));
            }
            return self.finish(Some(Counter::Forwarded), Action::Continue);
        }
        if endpoint.answer_ping && vendor::is_ping(&event) {
            // The sender disables the webhook when a ping fails: answer it here, so a
            // console test proves the route and secret without depending on the backend.
            let body = format!(r#"{{"status":"ok","event_id":"{}"}}"#, event.id);
            let headers = [("content-type", "application/json"), ("x-webhook-answered-by", "webhook-guard")];
            self.host.send_response(200, &headers, body.as_bytes());
            return self.finish(Some(Counter::PingAnswered), Action::Pause);
        }
        if let Some(seconds) = endpoint.dedupe_seconds {
            let key = dedupe::slot_key(&endpoint.name, &event.id);
            match dedupe::begin(&self.host, &key, &event.id, self.host.now_nanos(), seconds.saturating_mul(1_000_000_000)) {
                Begin::Proceed => self.in_flight = Some((key, event.id.clone())),
                Begin::Duplicate => {
                    // Provably delivered already: the upstream answered 2xx to this event.
                    let body = format!(r#"{{"status":"duplicate","event_id":"{}"}}"#, event.id);
                    let headers = [("content-type", "application/json"), ("x-webhook-duplicate", "true"), ("x-webhook-event-id", event.id.as_str())];
                    self.host.send_response(200, &headers, body.as_bytes());
                    return self.finish(Some(Counter::Duplicate), Action::Pause);
                }
                Begin::InFlight | Begin::Contended => {
                    let mut rejection = Rejection::new(Reason::InFlight, format!("event {} is being delivered; retry shortly", event.id));
                    rejection.retry_after = Some(1);
                    return self.reject(endpoint, rejection);
                }
            }
        }
        if let Some(check) = &endpoint.arm_check {
            let step = verify::start(&self.host, check, &event, self.host.now_nanos());
            return self.verify(endpoint, event, size, step);
        }
        self.forward(endpoint, &event, size, None)
    }

    /// The answer to a call of the verify stage (a token or ARM's answer).
    pub fn on_call_response(&mut self, call: u32, body_size: usize) {
        let config = Rc::clone(&self.config);
        let Some(endpoint) = self.matched.and_then(|i| config.endpoints.get(i)) else {
            return;
        };
        let (Some(check), Stage::Verifying(_)) = (&endpoint.arm_check, &self.stage) else {
            return;
        };
        let Stage::Verifying(held) = std::mem::replace(&mut self.stage, Stage::Idle) else {
            return;
        };
        let Held { event, size, pending } = *held;
        let answer = self.host.answer(body_size);
        let step = verify::resume(&self.host, check, pending, call, &answer, self.host.now_nanos());
        if self.verify(endpoint, event, size, step) == Action::Continue {
            self.host.resume_request();
        }
    }

    /// The verify stage: holds the request while the check waits, then forwards it or
    /// answers 503 (arm/verify.rs has the rules). One counter and one log line per outcome.
    fn verify(&mut self, endpoint: &Endpoint, event: Event, size: usize, step: Step) -> Action {
        let (decision, Some(check), Some(index)) = (step, &endpoint.arm_check, self.matched) else {
            return Action::Continue;
        };
        let decision = match decision {
            Step::Wait(pending) => {
                self.stage = Stage::Verifying(Box::new(Held { event, size, pending }));
                return Action::Pause;
            }
            Step::Done(decision) => decision,
        };
        self.host.count(index, Counter::Arm(decision.outcome));
        if let Some(fetched) = decision.token_fetch {
            self.host.count(index, Counter::Arm(if fetched { arm::Outcome::TokenFetched } else { arm::Outcome::TokenFailed }));
        }
        let verdict = decision.verdict(check);
        self.host.log(decision.level(), &verify::log_line(&endpoint.name, &decision, verdict));
        match verdict {
            Verdict::Forward { verified } => {
                if !verified {
                    self.host.count(index, Counter::Arm(arm::Outcome::ForwardedUnverified));
                }
                self.forward(endpoint, &event, size, Some(verified))
            }
            Verdict::Hold { retry_after } => {
                // The sender's retry must be checked again, not taken for a copy in flight.
                self.end_flight(false);
                // The sender learns no more than this; the log line has the cause.
                let mut rejection = Rejection::new(Reason::Unverified, "the notification is not confirmed by Azure Resource Manager (yet); retry later");
                rejection.retry_after = Some(retry_after);
                self.reject_at(endpoint, rejection, None)
            }
        }
    }

    /// The forward stage: the body becomes a CloudEvent (or stays), the event headers are
    /// set, and the request goes on. `verified`: the ARM check's mark, when it ran.
    fn forward(&mut self, endpoint: &Endpoint, event: &Event, size: usize, verified: Option<bool>) -> Action {
        if endpoint.forward == Forward::CloudEvent {
            let Ok(cloudevent) = event.to_cloudevent_with(&endpoint.source, verified) else {
                let rejection = Rejection::new(Reason::Invalid, "the notification cannot be normalised");
                return self.reject(endpoint, rejection);
            };
            self.host.set_request_body(size, &cloudevent);
            if !self.head_sent {
                self.host.set_request_header("content-length", Some(&cloudevent.len().to_string()));
            }
        }
        // Headers derived from the body need a held head (`hold`).
        if !self.head_sent {
            self.host.set_request_header("x-webhook-event-id", Some(&event.id));
            self.host.set_request_header("x-webhook-event-type", Some(&event.kind));
            if let Some(flags) = conformance::flags(&event.nonconforming) {
                self.host.set_request_header("x-webhook-nonconforming", Some(&flags));
            }
            // Trusted descriptors for Envoy's global rate limit filter placed after this one.
            for (name, value) in [("x-webhook-application", &event.keys.application), ("x-webhook-subscription", &event.keys.subscription)] {
                if let Some(value) = value {
                    self.host.set_request_header(name, Some(value));
                }
            }
            if let Some(verified) = verified {
                self.host.set_request_header("x-webhook-verified", Some(if verified { "true" } else { "false" }));
            }
        }
        if let Some(index) = self.matched {
            if let Some(counter) = Counter::azure_event(&event.kind) {
                self.host.count(index, counter);
            }
            self.host.count(index, Counter::Forwarded);
        }
        self.stage = Stage::Forwarded;
        Action::Continue
    }

    pub fn on_response_headers(&mut self) -> Action {
        let config = Rc::clone(&self.config);
        let Some((index, endpoint)) = self.matched.and_then(|i| Some((i, config.endpoints.get(i)?))) else {
            return Action::Continue;
        };
        // `stream` only: the upstream may answer a head whose body it has not got yet.
        let early = self.head_sent && endpoint.mode == Mode::Enforce && matches!(self.stage, Stage::Body { .. } | Stage::Verifying(_));
        if !early && !matches!(self.stage, Stage::Forwarded) {
            return Action::Continue;
        }
        let status = self.host.response_status().unwrap_or(0);
        if early {
            if !(200..300).contains(&status) {
                return Action::Continue;
            }
            let detail = format!("the upstream answered {status} before the notification was delivered; retry later");
            return self.reject(endpoint, Rejection::new(Reason::UpstreamRejected, detail));
        }
        self.stage = Stage::Idle;
        let delivered = (200..300).contains(&status);
        // Also a later filter's local reply (Envoy's global rate limit): the retry must
        // not meet an in-flight mark.
        self.end_flight(delivered);
        let global_limit = if delivered { None } else { self.host.response_code_details().and_then(|d| Counter::global_limit(&d)) };
        if let Some(counter) = global_limit {
            self.host.count(index, counter);
        } else if status >= 500 {
            self.host.count(index, Counter::UpstreamFailure);
        }
        let is_final_4xx = (400..500).contains(&status) && status != 429;
        if is_final_4xx && endpoint.upstream_4xx == Upstream4xx::Retry {
            let detail = format!("the upstream answered {status}; retry later");
            return self.reject(endpoint, Rejection::new(Reason::UpstreamRejected, detail));
        }
        if endpoint.profile == Profile::Md5Envelope && (201..300).contains(&status) {
            // Vendor senders count only 200 as delivered and would resend on 201-299.
            self.host.set_response_status(200);
        }
        Action::Continue
    }

    /// The stream ended; an event still in flight got no upstream answer.
    pub fn on_done(&mut self) {
        self.end_flight(false);
    }

    /// Records the upstream's verdict on the event in flight: delivered events become
    /// duplicates for the window; anything else frees the slot for the sender's retry.
    fn end_flight(&mut self, delivered: bool) {
        if let Some((key, id)) = self.in_flight.take() {
            dedupe::finish(&self.host, &key, &id, self.host.now_nanos(), delivered);
        }
    }

    /// Counts (per rule) and logs a nonconforming event, then applies the endpoint's
    /// `on_nonconforming`: the event to forward it, or the hold / reject answer.
    fn judge(&self, endpoint: &Endpoint, event: Event) -> Result<Event, Rejection> {
        if event.nonconforming.is_empty() {
            return Ok(event);
        }
        if let Some(index) = self.matched {
            for finding in &event.nonconforming {
                self.host.count(index, Counter::Nonconforming(finding.rule));
            }
        }
        if self.config.log_level.is_some() {
            self.host.log(log::Level::Warn, &conformance::log_line(&endpoint.name, endpoint.on_nonconforming, &event));
        }
        match conformance::refusal(endpoint.on_nonconforming, &event.nonconforming) {
            Some(rejection) => Err(rejection),
            None => Ok(event),
        }
    }

    /// Applies the endpoint's rate limit: the global bucket when `event` is `None` (the
    /// head), the application or subscription bucket of `event` otherwise.
    fn limit(&self, endpoint: &Endpoint, event: Option<&Event>) -> Result<(), Rejection> {
        let Some(rate) = endpoint.rate_limit.as_ref() else {
            return Ok(());
        };
        let value = match (rate.key, event) {
            (RateKey::Global, None) => None,
            (RateKey::Application, Some(e)) => Some(&e.keys.application),
            (RateKey::Subscription, Some(e)) => Some(&e.keys.subscription),
            _ => return Ok(()),
        };
        let slot = match value {
            None => Cow::Borrowed(rate.global_slot.as_str()),
            Some(v) => Cow::Owned(ratelimit::slot_key(&endpoint.name, v.as_deref().unwrap_or(""), ratelimit::DEFAULT_SLOTS)),
        };
        let retry_after = match ratelimit::acquire(&self.host, &slot, &rate.limit, self.host.now_nanos(), ratelimit::MAX_CAS_ATTEMPTS) {
            Outcome::Allowed => return Ok(()),
            Outcome::Contended => {
                if let Some(index) = self.matched {
                    self.host.count(index, Counter::RateLimitContended);
                }
                if rate.on_contention == Contention::Allow {
                    return Ok(());
                }
                1
            }
            Outcome::Limited { retry_after_secs } => retry_after_secs,
        };
        let subject = match event.and_then(|e| e.subject.as_deref()) {
            Some(application) => format!("application '{application}'"),
            None => format!("endpoint '{}'", endpoint.name),
        };
        let mut rejection = Rejection::new(Reason::RateLimited, format!("rate limit for {subject} exceeded; retry in {retry_after} s"));
        rejection.retry_after = Some(retry_after);
        Err(rejection)
    }

    /// Counts, logs and answers a refusal; in shadow mode reports it upstream instead.
    fn reject(&mut self, endpoint: &Endpoint, rejection: Rejection) -> Action {
        self.reject_at(endpoint, rejection, self.config.log_level)
    }

    /// [`Guard::reject`] with its log line at `level` (`None`: no line).
    fn reject_at(&mut self, endpoint: &Endpoint, rejection: Rejection, level: Option<log::Level>) -> Action {
        let shadow = endpoint.mode == Mode::Shadow;
        if let Some(index) = self.matched {
            self.host.count(index, Counter::Rejected(rejection.reason));
        }
        if let Some(level) = level {
            self.host.log(level, &log_line(&endpoint.name, &rejection, shadow));
        }
        if shadow {
            // A streamed head has gone: the verdict is only counted and logged.
            if !self.head_sent {
                self.host.set_request_header(VERDICT_HEADER, Some(rejection.reason.slug()));
            }
            return self.finish(Some(Counter::Forwarded), Action::Continue);
        }
        self.answer(&rejection);
        // Envoy must not continue the stream after a local reply.
        self.finish(None, Action::Pause)
    }

    /// Answers the sender with the rejection's problem+json.
    fn answer(&self, rejection: &Rejection) {
        let headers = rejection.headers();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.host.send_response(rejection.status(), &headers, &rejection.body());
    }

    /// Ends the filter's work on this request, counting its outcome.
    fn finish(&mut self, outcome: Option<Counter>, action: Action) -> Action {
        if let (Some(index), Some(counter)) = (self.matched, outcome) {
            self.host.count(index, counter);
        }
        self.stage = Stage::Idle;
        action
    }
}

/// The one line logged per refusal: endpoint, status, reason and detail (which names an
/// application when a per-application limit refused it). Never the secret or the query.
pub fn log_line(endpoint: &str, rejection: &Rejection, shadow: bool) -> String {
    let verb = if shadow { "shadow: would reject" } else { "rejected" };
    format!(
        "webhook-guard: {verb} endpoint={endpoint} status={} reason={} detail={}",
        rejection.status(),
        rejection.reason.slug(),
        rejection.detail
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::memory::MemoryStore;
    use crate::shared::{SharedStore, StoreError};
    use std::cell::{Cell, RefCell};

    const CONFIG: &str = r#"{"header_mode":"hold","endpoints":[
        {"name":"azure","path":"/az","profile":"azure_managed_app","secret":{"values":["k"]},"max_body_bytes":2000},
        {"name":"store","path":"/store","profile":"md5_envelope","secret":{"values":["k"]},"answer_ping":true},
        {"name":"limited","path":"/limited","profile":"azure_managed_app","secret":{"values":["k"]},"rate_limit":{"per_second":0.5,"burst":2}},
        {"name":"per-app","path":"/per-app","profile":"azure_managed_app","secret":{"values":["k"]},"rate_limit":{"per_second":1,"burst":1,"key":"application"}},
        {"name":"once","path":"/once","profile":"azure_managed_app","secret":{"values":["k"]},"dedupe_seconds":60},
        {"name":"shadow","path":"/shadow","profile":"azure_managed_app","secret":{"values":["k"]},"mode":"shadow"},
        {"name":"orig","path":"/orig","profile":"azure_managed_app","secret":{"values":["k"]},"forward":"original"},
        {"name":"hold","path":"/hold","profile":"azure_managed_app","secret":{"values":["k"]},"on_nonconforming":"hold","rate_limit":{"per_second":1,"burst":1,"key":"application"},"dedupe_seconds":60},
        {"name":"reject","path":"/reject","profile":"azure_managed_app","secret":{"values":["k"]},"on_nonconforming":"reject"},
        {"name":"checked","path":"/checked","profile":"azure_managed_app","secret":{"values":["k"]},"dedupe_seconds":60,
         "rate_limit":{"per_second":0.001,"burst":2,"key":"application"},"arm_check":{"arm_cluster":"arm","token_cluster":"imds","managed_identity":{}}}]}"#;
    const DOC: &str = r#"{"eventType":"PUT","provisioningState":"Succeeded","eventTime":"2019-08-14T19:20:08Z",
        "applicationId":"subscriptions/s/resourceGroups/r/providers/Microsoft.Solutions/applications/a",
        "applicationDefinitionId":"subscriptions/s/resourceGroups/r/providers/Microsoft.Solutions/applicationDefinitions/d"}"#;

    /// Records every host call; answers from the request it was given.
    #[derive(Default)]
    struct Mock {
        headers: RefCell<Vec<(String, Vec<u8>)>>,
        body: RefCell<Vec<u8>>,
        status: RefCell<Option<u16>>,
        code_details: RefCell<Option<String>>,
        sent: RefCell<Option<(u16, Vec<u8>)>>,
        logs: RefCell<Vec<String>>,
        counts: RefCell<Vec<(usize, Counter)>>,
        listener_counts: RefCell<Vec<ListenerCounter>>,
        store: Rc<MemoryStore>,
        now: Cell<u64>,
        sent_headers: RefCell<Vec<(String, String)>>,
        /// Dispatched calls: (cluster, `:path`).
        calls: RefCell<Vec<(String, String)>>,
        answer: RefCell<arm::Answer>,
        resumed: Cell<bool>,
    }

    impl Mock {
        fn header(&self, name: &str) -> Option<String> {
            let headers = self.headers.borrow();
            headers.iter().find(|(k, _)| k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        }
        fn sent_status(&self) -> Option<u16> {
            self.sent.borrow().as_ref().map(|s| s.0)
        }
    }

    impl SharedStore for Rc<Mock> {
        fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            self.store.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            self.store.set(key, value, cas)
        }
    }

    impl Outbound for Rc<Mock> {
        fn dispatch(&self, call: &arm::Call<'_>) -> Option<u32> {
            let path = call.headers.iter().find(|(k, _)| *k == ":path").map(|(_, v)| v.clone()).unwrap_or_default();
            let mut calls = self.calls.borrow_mut();
            calls.push((call.cluster.to_string(), path));
            u32::try_from(calls.len()).ok()
        }
        fn answer(&self, _body_size: usize) -> arm::Answer {
            self.answer.borrow().clone()
        }
    }

    impl HttpHost for Rc<Mock> {
        fn now_nanos(&self) -> u64 {
            self.now.get()
        }
        fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
            self.headers.borrow().clone()
        }
        fn set_request_header(&self, name: &str, value: Option<&str>) {
            let mut headers = self.headers.borrow_mut();
            headers.retain(|(k, _)| k != name);
            if let Some(v) = value {
                headers.push((name.to_string(), v.as_bytes().to_vec()));
            }
        }
        fn request_body(&self, size: usize) -> Option<Vec<u8>> {
            self.body.borrow().get(..size).map(<[u8]>::to_vec)
        }
        fn set_request_body(&self, _size: usize, body: &[u8]) {
            *self.body.borrow_mut() = body.to_vec();
        }
        fn response_status(&self) -> Option<u16> {
            *self.status.borrow()
        }
        fn response_code_details(&self) -> Option<String> {
            self.code_details.borrow().clone()
        }
        fn set_response_status(&self, status: u16) {
            *self.status.borrow_mut() = Some(status);
        }
        fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
            *self.sent.borrow_mut() = Some((status, body.to_vec()));
            *self.sent_headers.borrow_mut() = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        }
        fn count(&self, endpoint: usize, counter: Counter) {
            self.counts.borrow_mut().push((endpoint, counter));
        }
        fn count_listener(&self, counter: ListenerCounter) {
            self.listener_counts.borrow_mut().push(counter);
        }
        fn log(&self, _level: log::Level, line: &str) {
            self.logs.borrow_mut().push(line.to_string());
        }
        fn resume_request(&self) {
            self.resumed.set(true);
        }
    }

    fn guard(method: &str, path: &str, extra: &[(&str, &str)]) -> (Rc<Mock>, Guard<Rc<Mock>>) {
        guard_on(&Rc::new(MemoryStore::new()), 0, method, path, extra)
    }

    /// A stream whose host shares `store` (the workers' shared data) and reads `now`.
    fn guard_on(store: &Rc<MemoryStore>, now: u64, method: &str, path: &str, extra: &[(&str, &str)]) -> (Rc<Mock>, Guard<Rc<Mock>>) {
        guard_with(CONFIG, store, now, method, path, extra)
    }

    /// As [`guard_on`], with the head streamed (`"header_mode": "stream"`).
    fn streamed_on(store: &Rc<MemoryStore>, method: &str, path: &str, extra: &[(&str, &str)]) -> (Rc<Mock>, Guard<Rc<Mock>>) {
        let config = CONFIG.replacen(r#""header_mode":"hold""#, r#""header_mode":"stream""#, 1);
        guard_with(&config, store, SECOND, method, path, extra)
    }

    fn streamed(method: &str, path: &str, extra: &[(&str, &str)]) -> (Rc<Mock>, Guard<Rc<Mock>>) {
        streamed_on(&Rc::new(MemoryStore::new()), method, path, extra)
    }

    fn guard_with(config: &str, store: &Rc<MemoryStore>, now: u64, method: &str, path: &str, extra: &[(&str, &str)]) -> (Rc<Mock>, Guard<Rc<Mock>>) {
        let config = Rc::new(Config::parse(config.as_bytes(), |_| None).unwrap());
        let mock = Rc::new(Mock { store: Rc::clone(store), now: Cell::new(now), ..Mock::default() });
        let mut headers = vec![(":method".to_string(), method.as_bytes().to_vec()), (":path".to_string(), path.as_bytes().to_vec())];
        headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())));
        *mock.headers.borrow_mut() = headers;
        (Rc::clone(&mock), Guard::new(mock, config))
    }

    fn feed(mock: &Mock, guard: &mut Guard<Rc<Mock>>, body: &[u8]) -> Action {
        *mock.body.borrow_mut() = body.to_vec();
        guard.on_request_body(body.len(), true)
    }

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
    fn loose_spellings_are_guarded_and_go_upstream_on_the_configured_path() {
        let (mock, mut g) = guard("POST", "/AZ/;x=1?a=1&sig=k", &[("x-http-method-override", "DELETE"), ("x-method-override", "PUT"), ("x-http-method", "GET")]);
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
        for (method, path, status) in [("POST", "/az/?sig=wrong", 403), ("GET", "/az?sig=k", 405), ("POST", "/az?sig=k&sig=k", 400), ("POST", "/az%2f?sig=k", 400)] {
            let (mock, mut g) = guard(method, path, &[(ORIGINAL_PATH, "/az?sig=k")]);
            assert_eq!(g.on_request_headers(false), Action::Pause);
            assert_eq!(mock.sent_status(), Some(status), "{path}");
            assert_eq!(mock.header(":path").as_deref(), Some("/az"), "{path}");
            assert_eq!(mock.header(ORIGINAL_PATH), None);
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
        let (mock, _) = guard("POST", "/azure?a=1&sig=k", &[]);
        let mut g = Guard::new(Rc::clone(&mock), config);
        assert_eq!(g.on_request_headers(false), Action::Pause);
        assert_eq!(mock.sent_status(), Some(404));
        assert_eq!(mock.header(":path").as_deref(), Some("/azure?a=1"));
        assert_eq!(*mock.listener_counts.borrow(), vec![ListenerCounter::UnguardedRejected]);
        assert!(mock.counts.borrow().is_empty());
        assert!(mock.logs.borrow()[0].contains("status=404 reason=not_found"), "{:?}", mock.logs.borrow());
    }

    #[test]
    fn shadow_keeps_the_sent_path_but_not_the_secret() {
        let json = CONFIG.replacen(r#""max_body_bytes":2000"#, r#""max_body_bytes":2000,"mode":"shadow""#, 1);
        let config = Rc::new(Config::parse(json.as_bytes(), |_| None).unwrap());
        for (path, want, verdict) in [("/AZ/?b=2&sig=wrong", "/AZ/?b=2", Some("forbidden")), ("/az?sig=k", "/az", None)] {
            let (mock, _) = guard("POST", path, &[]);
            let mut g = Guard::new(Rc::clone(&mock), Rc::clone(&config));
            g.on_request_headers(false);
            assert_eq!(mock.header(":path").as_deref(), Some(want));
            assert_eq!(mock.header(VERDICT_HEADER).as_deref(), verdict);
            assert!(mock.sent.borrow().is_none());
        }
    }

    #[test]
    fn body_size_is_cumulative() {
        let (mock, mut g) = guard("POST", "/az?sig=k", &[]);
        g.on_request_headers(false);
        assert_eq!(g.on_request_body(1500, false), Action::Pause);
        assert!(mock.sent.borrow().is_none());
        assert_eq!(g.on_request_body(2001, false), Action::Pause);
        assert_eq!(mock.sent_status(), Some(413));
    }

    #[test]
    fn valid_body_becomes_a_cloudevent_with_headers() {
        let (mock, mut g) = guard("POST", "/az?sig=k", &[]);
        g.on_request_headers(false);
        assert_eq!(feed(&mock, &mut g, DOC.as_bytes()), Action::Continue);
        let event: serde_json::Value = serde_json::from_slice(&mock.body.borrow()).unwrap();
        assert_eq!(event["type"], "webhookguard.azure.managedapp.put.succeeded");
        assert_eq!(mock.header("content-type").as_deref(), Some("application/cloudevents+json"));
        assert_eq!(mock.header("content-length"), Some(mock.body.borrow().len().to_string()));
        assert_eq!(mock.header("x-webhook-event-id").as_deref(), event["id"].as_str());
        assert_eq!(mock.header("x-webhook-profile").as_deref(), Some("azure_managed_app"));
        assert_eq!(mock.header("x-webhook-endpoint").as_deref(), Some("azure"));
        // The descriptors of Envoy's global rate limit: canonical and lowercase.
        let application = "/subscriptions/s/resourcegroups/r/providers/microsoft.solutions/applications/a";
        assert_eq!(mock.header("x-webhook-application").as_deref(), Some(application));
        assert_eq!(mock.header("x-webhook-subscription").as_deref(), Some("s"));
    }

    /// `DOC` sent to the Azure endpoint with duplicate suppression on, over `store`.
    fn send_deduped(store: &Rc<MemoryStore>) -> (Rc<Mock>, Guard<Rc<Mock>>) {
        let config = CONFIG.replace(r#""max_body_bytes":2000}"#, r#""max_body_bytes":2000,"dedupe_seconds":60}"#);
        let (mock, mut g) = guard_on(store, 0, "POST", "/az?sig=k", &[]);
        g.config = Rc::new(Config::parse(config.as_bytes(), |_| None).unwrap());
        g.on_request_headers(false);
        feed(&mock, &mut g, DOC.as_bytes());
        (mock, g)
    }

    /// Forwards `DOC` (duplicate suppression on), then sees this response.
    fn forward_then(store: &Rc<MemoryStore>, status: u16, details: &str) -> Rc<Mock> {
        let (mock, mut g) = send_deduped(store);
        assert!(mock.counts.borrow().contains(&(0, Counter::Forwarded)));
        *mock.status.borrow_mut() = Some(status);
        *mock.code_details.borrow_mut() = Some(details.to_string());
        g.on_response_headers();
        mock
    }

    #[test]
    fn a_global_limit_refusal_after_forwarding_is_counted_and_frees_the_event() {
        let store = Rc::new(MemoryStore::new());
        // The stream is still open: the mark must go when the refusal passes, not later.
        let refused = forward_then(&store, 429, "request_rate_limited");
        assert!(refused.sent.borrow().is_none(), "the 429 reaches the sender as it is");
        assert!(refused.counts.borrow().contains(&(0, Counter::GlobalRateLimited)));
        // The retry is forwarded (not answered 429 in_flight), and then it is a duplicate.
        let retried = forward_then(&store, 200, "via_upstream");
        assert!(retried.sent.borrow().is_none());
        let (mock, _) = send_deduped(&store);
        assert_eq!(mock.sent_status(), Some(200));
        assert!(mock.counts.borrow().contains(&(0, Counter::Duplicate)));
    }

    #[test]
    fn a_failed_global_limit_service_is_not_an_upstream_failure() {
        let mock = forward_then(&Rc::new(MemoryStore::new()), 500, "rate_limiter_error");
        let counts = mock.counts.borrow();
        assert!(counts.contains(&(0, Counter::GlobalRateLimitError)));
        assert!(!counts.contains(&(0, Counter::UpstreamFailure)));
    }

    #[test]
    fn empty_body_and_invalid_body_are_400() {
        let (mock, mut g) = guard("POST", "/az?sig=k", &[]);
        assert_eq!(g.on_request_headers(true), Action::Pause);
        assert_eq!(mock.sent_status(), Some(400));
        let (mock, mut g) = guard("POST", "/az?sig=k", &[]);
        g.on_request_headers(false);
        assert_eq!(feed(&mock, &mut g, b"{}"), Action::Pause);
        assert_eq!(mock.sent_status(), Some(400));
    }

    #[test]
    fn trailers_finish_the_body() {
        let (mock, mut g) = guard("POST", "/az?sig=k", &[]);
        g.on_request_headers(false);
        *mock.body.borrow_mut() = DOC.as_bytes().to_vec();
        assert_eq!(g.on_request_body(DOC.len(), false), Action::Pause);
        assert_eq!(g.on_request_trailers(), Action::Continue);
        assert!(mock.header("x-webhook-event-id").is_some());
    }

    #[test]
    fn upstream_answers_are_mapped_for_the_sender() {
        for (status, sent) in [(400, Some(502)), (404, Some(502)), (429, None), (500, None), (200, None)] {
            let (mock, mut g) = guard("POST", "/az?sig=k", &[]);
            g.on_request_headers(false);
            feed(&mock, &mut g, DOC.as_bytes());
            *mock.status.borrow_mut() = Some(status);
            g.on_response_headers();
            assert_eq!(mock.sent_status(), sent, "upstream {status}");
        }
    }

    fn envelope(payload: &str) -> String {
        use md5::{Digest, Md5};
        let md5: String = Md5::digest(payload.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        format!(r#"{{"payload":{payload},"md5":"{md5}"}}"#)
    }

    #[test]
    fn vendor_ping_is_answered_and_2xx_becomes_200() {
        let (mock, mut g) = guard("PUT", "/store?sig=k", &[("content-type", "application/json")]);
        g.on_request_headers(false);
        assert_eq!(feed(&mock, &mut g, envelope(r#"{"type":"ping"}"#).as_bytes()), Action::Pause);
        assert_eq!(mock.sent_status(), Some(200));

        let (mock, mut g) = guard("POST", "/store?sig=k", &[("content-type", "application/json")]);
        g.on_request_headers(false);
        assert_eq!(feed(&mock, &mut g, envelope(r#"{"type":"purchase"}"#).as_bytes()), Action::Continue);
        *mock.status.borrow_mut() = Some(204);
        assert_eq!(g.on_response_headers(), Action::Continue);
        assert_eq!(*mock.status.borrow(), Some(200));
    }

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn global_limit_answers_429_with_retry_after_and_ignores_strangers() {
        let store = Rc::new(MemoryStore::new());
        for _ in 0..5 {
            let (mock, mut g) = guard_on(&store, SECOND, "POST", "/limited?sig=wrong", &[]);
            g.on_request_headers(false);
            assert_eq!(mock.sent_status(), Some(403), "unauthenticated requests spend no token");
        }
        for want in [None, None, Some(429)] {
            let (mock, mut g) = guard_on(&store, SECOND, "POST", "/limited?sig=k", &[]);
            assert_eq!(g.on_request_headers(false), Action::Pause);
            assert_eq!(mock.sent_status(), want);
            if want.is_some() {
                let body: serde_json::Value = serde_json::from_slice(&mock.sent.borrow().as_ref().unwrap().1).unwrap();
                assert_eq!(body["type"], "urn:webhook-guard:problem:rate_limited");
                assert!(mock.logs.borrow()[0].contains("retry in 2 s"), "{:?}", mock.logs.borrow());
            }
        }
        // At 0.5/s one token is back two seconds later.
        let (mock, mut g) = guard_on(&store, 3 * SECOND, "POST", "/limited?sig=k", &[]);
        g.on_request_headers(false);
        assert_eq!(mock.sent_status(), None);
        assert_eq!(store.key_count(), 1);
    }

    #[test]
    fn contention_denies_by_default() {
        let store = Rc::new(MemoryStore::new());
        store.conflict_next_sets(100);
        let (mock, mut g) = guard_on(&store, SECOND, "POST", "/limited?sig=k", &[]);
        g.on_request_headers(false);
        assert_eq!(mock.sent_status(), Some(429));
    }

    #[test]
    fn application_limit_applies_per_application_after_the_body() {
        let store = Rc::new(MemoryStore::new());
        let other = DOC.replace("applications/a", "applications/b");
        for (doc, want) in [(DOC, Action::Continue), (DOC, Action::Pause), (other.as_str(), Action::Continue)] {
            let (mock, mut g) = guard_on(&store, SECOND, "POST", "/per-app?sig=k", &[]);
            assert_eq!(g.on_request_headers(false), Action::Pause);
            assert_eq!(feed(&mock, &mut g, doc.as_bytes()), want);
            if want == Action::Pause {
                assert_eq!(mock.sent_status(), Some(429));
                assert!(mock.logs.borrow()[0].contains("/applications/a"), "the log names the application");
            }
        }
    }

    /// Answers the call in flight with `status` and `body`.
    fn reply(mock: &Mock, guard: &mut Guard<Rc<Mock>>, status: u16, body: &str) {
        *mock.answer.borrow_mut() = arm::Answer { status: Some(status), retry_after: None, body: body.as_bytes().to_vec() };
        let call = u32::try_from(mock.calls.borrow().len()).unwrap();
        guard.on_call_response(call, body.len());
    }

    const TOKEN: &str = r#"{"access_token":"tok","expires_in":"3600"}"#;

    fn arm_says(state: &str) -> String {
        format!(r#"{{"properties":{{"provisioningState":"{state}"}}}}"#)
    }

    #[test]
    fn verify_holds_the_request_until_arm_confirms_it() {
        let (mock, mut g) = guard_on(&Rc::new(MemoryStore::new()), SECOND, "POST", "/checked?sig=k", &[]);
        g.on_request_headers(false);
        assert_eq!(feed(&mock, &mut g, DOC.as_bytes()), Action::Pause, "held for the token");
        reply(&mock, &mut g, 200, TOKEN);
        assert_eq!(mock.header("x-webhook-event-id"), None, "nothing forwarded yet");
        assert!(!mock.resumed.get());
        reply(&mock, &mut g, 200, &arm_says("Succeeded"));
        assert!(mock.resumed.get());
        assert_eq!(mock.header("x-webhook-verified").as_deref(), Some("true"));
        let event: serde_json::Value = serde_json::from_slice(&mock.body.borrow()).unwrap();
        assert_eq!(event["verified"], true);
        let calls = mock.calls.borrow();
        assert_eq!((calls[0].0.as_str(), calls[1].0.as_str()), ("imds", "arm"));
        assert_eq!(calls[1].1, "/subscriptions/s/resourceGroups/r/providers/Microsoft.Solutions/applications/a?api-version=2021-07-01");
        assert!(mock.counts.borrow().contains(&(9, Counter::Arm(arm::Outcome::Verified))));
        assert_eq!(mock.logs.borrow().len(), 1, "one line per outcome");
    }

    #[test]
    fn lagging_arm_answers_503_and_frees_the_event_for_the_retry() {
        let store = Rc::new(MemoryStore::new());
        let (mock, mut g) = guard_on(&store, SECOND, "POST", "/checked?sig=k", &[]);
        g.on_request_headers(false);
        feed(&mock, &mut g, DOC.as_bytes());
        reply(&mock, &mut g, 200, TOKEN);
        reply(&mock, &mut g, 200, &arm_says("Accepted"));
        assert_eq!(mock.sent_status(), Some(503));
        assert!(mock.sent_headers.borrow().contains(&("retry-after".to_string(), "30".to_string())));
        assert!(!mock.resumed.get());
        let logs = mock.logs.borrow();
        assert!(logs.len() == 1 && logs[0].contains("outcome=not_yet held status=503"), "{logs:?}");
        let body = String::from_utf8(mock.sent.borrow().as_ref().unwrap().1.clone()).unwrap();
        assert!(!body.contains("Accepted"), "the cause is logged, not told: {body}");
        // The retry is checked again (the in-flight mark is gone), with the cached token.
        let (mock, mut g) = guard_on(&store, 2 * SECOND, "POST", "/checked?sig=k", &[]);
        g.on_request_headers(false);
        assert_eq!(feed(&mock, &mut g, DOC.as_bytes()), Action::Pause);
        assert_eq!(mock.calls.borrow()[0].0, "arm");
    }

    #[test]
    fn duplicates_and_rate_limited_events_cost_no_arm_call() {
        let store = Rc::new(MemoryStore::new());
        let (mock, mut g) = guard_on(&store, SECOND, "POST", "/checked?sig=k", &[]);
        g.on_request_headers(false);
        feed(&mock, &mut g, DOC.as_bytes());
        reply(&mock, &mut g, 200, TOKEN);
        reply(&mock, &mut g, 200, &arm_says("Succeeded"));
        *mock.status.borrow_mut() = Some(200);
        g.on_response_headers();
        let (mock, mut g) = guard_on(&store, 2 * SECOND, "POST", "/checked?sig=k", &[]);
        g.on_request_headers(false);
        feed(&mock, &mut g, DOC.as_bytes());
        assert_eq!(mock.sent_status(), Some(200), "a duplicate");
        assert!(mock.calls.borrow().is_empty());
        let (mock, mut g) = guard_on(&store, 3 * SECOND, "POST", "/checked?sig=k", &[]);
        g.on_request_headers(false);
        feed(&mock, &mut g, DOC.as_bytes());
        assert_eq!(mock.sent_status(), Some(429), "the application's burst of 2 is spent");
        assert!(mock.calls.borrow().is_empty());
    }

    #[test]
    fn streamed_verify_holds_the_body_and_marks_only_the_cloudevent() {
        let (mock, mut g) = streamed("POST", "/checked?sig=k", &[]);
        assert_eq!(g.on_request_headers(false), Action::Continue);
        let head = mock.headers.borrow().clone();
        assert_eq!(feed(&mock, &mut g, DOC.as_bytes()), Action::Pause, "the body waits for the check");
        reply(&mock, &mut g, 200, TOKEN);
        *mock.status.borrow_mut() = Some(200);
        assert_eq!(g.on_response_headers(), Action::Pause, "an early 2xx is no delivery");
        assert_eq!(mock.sent_status(), Some(502));
        let (mock, mut g) = streamed("POST", "/checked?sig=k", &[]);
        g.on_request_headers(false);
        feed(&mock, &mut g, DOC.as_bytes());
        reply(&mock, &mut g, 200, TOKEN);
        reply(&mock, &mut g, 200, &arm_says("Succeeded"));
        assert!(mock.resumed.get());
        assert_eq!(*mock.headers.borrow(), head, "no header can follow a head that has gone");
        let event: serde_json::Value = serde_json::from_slice(&mock.body.borrow()).unwrap();
        assert_eq!(event["verified"], true);
    }

    #[test]
    fn every_spelling_of_a_checked_path_is_verified() {
        for path in ["/checked?sig=k", "/Checked/?sig=k", "//checked;x=1?sig=k", "/a/../checked.json?sig=k", "/%63hecked?sig=k"] {
            let (mock, mut g) = guard("POST", path, &[]);
            g.on_request_headers(false);
            assert_eq!(mock.header(":path").as_deref(), Some("/checked"), "{path}");
            assert_eq!(feed(&mock, &mut g, DOC.as_bytes()), Action::Pause, "{path}");
            assert_eq!(mock.calls.borrow()[0].0, "imds", "{path}: the check runs");
        }
    }

    #[test]
    fn held_head_waits_for_its_body_and_the_safety_net_answers_503_once() {
        let (mock, mut g) = guard("POST", "/az?sig=k", &[]);
        assert_eq!(g.on_request_headers(false), Action::Pause);
        assert!(g.holds_head());
        g.on_body_missing();
        assert_eq!(mock.sent_status(), Some(503));
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

    #[test]
    fn streamed_body_is_held_checked_and_rewritten_without_touching_the_sent_head() {
        let (mock, mut g) = streamed("POST", "/az?sig=k", &[]);
        g.on_request_headers(false);
        let head = mock.headers.borrow().clone();
        assert_eq!(g.on_request_body(10, false), Action::Pause, "the body waits for its verdict");
        assert_eq!(feed(&mock, &mut g, DOC.as_bytes()), Action::Continue);
        let event: serde_json::Value = serde_json::from_slice(&mock.body.borrow()).unwrap();
        assert_eq!(event["type"], "webhookguard.azure.managedapp.put.succeeded");
        assert_eq!(*mock.headers.borrow(), head, "no header can follow a head that has gone");
        assert!(mock.counts.borrow().contains(&(0, Counter::Forwarded)));
    }

    #[test]
    fn streamed_body_refusals_and_answers_are_local_replies() {
        let store = Rc::new(MemoryStore::new());
        let other = DOC.replace("applications/a", "applications/b");
        const JSON: &[(&str, &str)] = &[("content-type", "application/json")];
        let cases = [
            ("POST", "/az?sig=k", &[][..], "{}".to_string(), 400),
            ("POST", "/az?sig=k", &[], "x".repeat(2001), 413),
            ("PUT", "/store?sig=k", JSON, envelope(r#"{"type":"ping"}"#), 200),
            ("POST", "/per-app?sig=k", &[], DOC.into(), 0),
            ("POST", "/per-app?sig=k", &[], DOC.into(), 429),
            ("POST", "/per-app?sig=k", &[], other, 0),
        ];
        for (method, path, extra, body, want) in cases {
            let (mock, mut g) = streamed_on(&store, method, path, extra);
            assert_eq!(g.on_request_headers(false), Action::Continue);
            let action = feed(&mock, &mut g, body.as_bytes());
            assert_eq!(mock.sent_status().unwrap_or(0), want, "{path} {body}");
            assert_eq!(action, if want == 0 { Action::Continue } else { Action::Pause });
        }
    }

    #[test]
    fn streamed_duplicates_are_answered_after_the_first_delivery() {
        let store = Rc::new(MemoryStore::new());
        for (upstream, want) in [(Some(200), None), (None, Some(200))] {
            let (mock, mut g) = streamed_on(&store, "POST", "/once?sig=k", &[]);
            g.on_request_headers(false);
            feed(&mock, &mut g, DOC.as_bytes());
            assert_eq!(mock.sent_status(), want);
            if let Some(status) = upstream {
                *mock.status.borrow_mut() = Some(status);
                g.on_response_headers();
            }
        }
    }

    #[test]
    fn streamed_upstream_2xx_before_the_body_is_not_success() {
        let (mock, mut g) = streamed("POST", "/az?sig=k", &[]);
        g.on_request_headers(false);
        *mock.status.borrow_mut() = Some(200);
        assert_eq!(g.on_response_headers(), Action::Pause);
        assert_eq!(mock.sent_status(), Some(502));
        let (mock, mut g) = streamed("POST", "/az?sig=k", &[]);
        g.on_request_headers(false);
        *mock.status.borrow_mut() = Some(503);
        assert_eq!(g.on_response_headers(), Action::Continue);
        assert_eq!(mock.sent_status(), None);
    }

    #[test]
    fn streamed_original_keeps_its_length_and_trailers_finish_the_body() {
        let (mock, mut g) = streamed("POST", "/orig?sig=k", &[("content-length", "300")]);
        assert_eq!(g.on_request_headers(false), Action::Continue);
        assert_eq!(mock.header("content-length").as_deref(), Some("300"), "the body is not replaced");
        *mock.body.borrow_mut() = DOC.as_bytes().to_vec();
        assert_eq!(g.on_request_body(DOC.len(), false), Action::Pause);
        assert_eq!(g.on_request_trailers(), Action::Continue);
        assert_eq!(*mock.body.borrow(), DOC.as_bytes());
        assert!(mock.counts.borrow().contains(&(6, Counter::Forwarded)));
    }

    #[test]
    fn streamed_shadow_verdicts_after_the_head_are_counted_not_sent() {
        let (mock, mut g) = streamed("POST", "/shadow?sig=k", &[]);
        assert_eq!(g.on_request_headers(false), Action::Continue);
        let head = mock.headers.borrow().clone();
        assert_eq!(feed(&mock, &mut g, b"{}"), Action::Continue);
        assert_eq!(*mock.headers.borrow(), head);
        assert!(mock.counts.borrow().contains(&(5, Counter::Rejected(Reason::Invalid))));
        assert!(mock.sent.borrow().is_none());
    }

    #[test]
    fn nonconforming_events_follow_the_endpoint_setting() {
        let running = DOC.replace("Succeeded", "Running");
        let store = Rc::new(MemoryStore::new());
        let nonconforming = |index: usize| (index, Counter::Nonconforming(conformance::Rule::StateUndocumented));
        // forward (the default): flagged in the header and the CloudEvent, counted, one warn line.
        let (mock, mut g) = guard_on(&store, SECOND, "POST", "/az?sig=k", &[]);
        g.on_request_headers(false);
        assert_eq!(feed(&mock, &mut g, running.as_bytes()), Action::Continue);
        assert_eq!(mock.header("x-webhook-nonconforming").as_deref(), Some("state_undocumented"));
        let event: serde_json::Value = serde_json::from_slice(&mock.body.borrow()).unwrap();
        assert_eq!(event["nonconforming"], "state_undocumented");
        assert!(mock.counts.borrow().contains(&nonconforming(0)));
        assert_eq!(mock.logs.borrow().len(), 1);
        assert!(mock.logs.borrow()[0].starts_with("webhook-guard: nonconforming endpoint=azure action=forward"), "{:?}", mock.logs.borrow());
        // hold: 503, before the per-application token and the in-flight mark.
        let (mock, mut g) = guard_on(&store, SECOND, "POST", "/hold?sig=k", &[]);
        g.on_request_headers(false);
        assert_eq!(feed(&mock, &mut g, running.as_bytes()), Action::Pause);
        assert_eq!(mock.sent_status(), Some(503));
        assert!(mock.counts.borrow().contains(&nonconforming(7)));
        assert!(mock.counts.borrow().contains(&(7, Counter::Rejected(Reason::Held))));
        let keys = store.key_count();
        let (mock, mut g) = guard_on(&store, SECOND, "POST", "/hold?sig=k", &[]);
        g.on_request_headers(false);
        assert_eq!(feed(&mock, &mut g, DOC.as_bytes()), Action::Continue, "the held event spent no token");
        assert!(mock.header("x-webhook-nonconforming").is_none());
        assert!(store.key_count() > keys);
        // reject: 400.
        let (mock, mut g) = guard_on(&store, SECOND, "POST", "/reject?sig=k", &[]);
        g.on_request_headers(false);
        assert_eq!(feed(&mock, &mut g, running.as_bytes()), Action::Pause);
        assert_eq!(mock.sent_status(), Some(400));
        assert!(mock.counts.borrow().contains(&(8, Counter::Rejected(Reason::Nonconforming))));
    }
}
