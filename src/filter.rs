//! The per-request flow: a short driver over the stages of an Envoy HTTP stream. Each
//! stage's rules live in their own module: [`head`] (route, authenticate, clean the head),
//! [`body`] (validate the buffered body, suppress duplicates), [`global_limit`] (the
//! fleet's rate limit service, asynchronous), [`verify`] (the ARM check, asynchronous),
//! [`forward`] (what the upstream gets) and [`answer`] (the upstream's answer, and every
//! local reply); [`limit`] holds the rate limits the head and the body apply. The flow
//! talks to Envoy only through [`HttpHost`], so every stage is unit-tested natively
//! against a recording mock (`mock`); `host.rs` implements the trait with proxy-wasm
//! calls.

mod answer;
mod body;
mod forward;
mod global_limit;
mod head;
mod headers;
#[cfg(test)]
mod hygiene;
mod limit;
#[cfg(test)]
pub(crate) mod mock;
#[cfg(test)]
mod properties;
mod verify;

pub use answer::log_line;
pub use head::HOLD_TIMEOUT_SECS;
pub use headers::Headers;

use crate::config::{Config, Endpoint, HeaderMode};
use crate::media::Media;
use crate::metrics::{Counter, Histogram, ListenerCounter};
use crate::outbound::{GrpcOutbound, Outbound};
use crate::profile::SignedHeaders;
use proxy_wasm::types::Action;
use std::rc::Rc;

/// What the flow needs from the proxy for one HTTP stream; the shared store holds
/// state common to every worker, and outbound calls serve the verify and global limit
/// stages.
pub trait HttpHost: Outbound + GrpcOutbound {
    /// The host clock, nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> u64;
    /// All request headers, read in one call. Values are bytes: HTTP/1 allows non-UTF-8
    /// header values, and the SDK's string accessors trap on them.
    fn request_headers(&self) -> Headers;
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
    /// Records `millis` in `histogram` of the endpoint at `endpoint`.
    fn record(&self, endpoint: usize, histogram: Histogram, millis: u64);
    /// Adds one to a counter of the listener as a whole.
    fn count_listener(&self, counter: ListenerCounter);
    /// Writes a log line.
    fn log(&self, level: log::Level, line: &str);
    /// Lets a request held by the verify stage continue.
    fn resume_request(&self);
}

/// Shadow mode's report to the upstream: `accept` or the rejection's reason.
pub const VERDICT_HEADER: &str = "x-webhook-shadow-verdict";

enum Stage {
    /// Not a guarded path, or settled: nothing more to do.
    Idle,
    /// Head accepted; buffering the body.
    Body { media: Media, size: usize },
    /// Body accepted; held while the fleet's rate limit service answers.
    Limiting(Box<global_limit::Asking>),
    /// Body accepted; held while Azure Resource Manager confirms the notification.
    Verifying(Box<verify::Confirming>),
    /// Sent upstream; its answer is checked.
    Forwarded,
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
    /// A signed sender's headers, taken from the head before it was cleaned.
    signed: SignedHeaders,
}

impl<H: HttpHost> Guard<H> {
    pub fn new(host: H, config: Rc<Config>) -> Self {
        Guard { host, config, matched: None, stage: Stage::Idle, in_flight: None, head_sent: false, signed: SignedHeaders::default() }
    }

    /// The head: routing, authentication, the global limit, the cleaned head ([`head`]).
    pub fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        self.head(end_of_stream)
    }

    /// Whether the head is held until the body's verdict: Envoy must then call the body
    /// callback, which it never does without `allow_on_headers_stop_iteration`.
    pub fn holds_head(&self) -> bool {
        self.config.header_mode == HeaderMode::Hold && matches!(self.stage, Stage::Body { .. })
    }

    /// The root's safety net: a held head whose body never came ([`head`]).
    pub fn on_body_missing(&mut self) {
        if let (Stage::Body { .. }, Some(index)) = (&self.stage, self.matched) {
            self.body_missing(index);
        }
    }

    /// A part of the body ([`body`]).
    pub fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !matches!(self.stage, Stage::Body { .. }) {
            return Action::Continue;
        }
        self.on_endpoint(Action::Continue, |guard, _, endpoint| guard.body(endpoint, body_size, end_of_stream))
    }

    /// Trailers end the stream without an end-of-stream body callback.
    pub fn on_request_trailers(&mut self) -> Action {
        if !matches!(self.stage, Stage::Body { .. }) {
            return Action::Continue;
        }
        self.on_endpoint(Action::Continue, |guard, _, endpoint| guard.finish_body(endpoint))
    }

    /// The answer to a call of the verify stage: a token or ARM's answer ([`verify`]).
    pub fn on_call_response(&mut self, call: u32, body_size: usize) {
        if matches!(self.stage, Stage::Verifying(_)) {
            self.on_endpoint((), |guard, _, endpoint| guard.verify_answer(endpoint, call, body_size));
        }
    }

    /// The answer of the fleet's rate limit service ([`global_limit`]).
    pub fn on_grpc_response(&mut self, call: u32, status: u32, size: usize) {
        if matches!(self.stage, Stage::Limiting(_)) {
            self.on_endpoint((), |guard, _, endpoint| guard.global_answer(endpoint, call, status, size));
        }
    }

    /// A token fetch ended or the root ticked: a check waiting for another's token fetch
    /// goes on ([`verify`]).
    pub fn on_token_ready(&mut self) {
        if matches!(self.stage, Stage::Verifying(_)) {
            self.on_endpoint((), |guard, _, endpoint| guard.verify_recheck(endpoint));
        }
    }

    /// The upstream's answer ([`answer`]).
    pub fn on_response_headers(&mut self) -> Action {
        self.on_endpoint(Action::Continue, |guard, index, endpoint| guard.upstream_answer(index, endpoint))
    }

    /// The stream ended; an event still in flight got no upstream answer.
    pub fn on_done(&mut self) {
        self.end_flight(false);
    }

    /// Runs `stage` on the endpoint guarding this request (its index and config); `idle`
    /// when none does.
    fn on_endpoint<T>(&mut self, idle: T, stage: impl FnOnce(&mut Self, usize, &Endpoint) -> T) -> T {
        let config = Rc::clone(&self.config);
        match self.matched.and_then(|i| Some((i, config.endpoints.get(i)?))) {
            Some((index, endpoint)) => stage(self, index, endpoint),
            None => idle,
        }
    }
}
