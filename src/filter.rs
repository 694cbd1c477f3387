//! The per-request flow: which checks run at which stage of an Envoy HTTP stream, and
//! what is sent where. It talks to Envoy only through [`HttpHost`], so the whole flow is
//! unit-tested natively against a recording mock; `host.rs` implements the trait with
//! proxy-wasm calls.

use crate::config::{Config, Endpoint, Forward, Upstream4xx};
use crate::media::Media;
use crate::problem::{Reason, Rejection};
use crate::{check, query};
use proxy_wasm::types::Action;
use std::rc::Rc;

/// What the flow needs from the proxy for one HTTP stream.
pub trait HttpHost {
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
    /// Answers the sender directly; the upstream is not called (or its answer dropped).
    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]);
    /// Writes one log line for a refused request.
    fn log_rejection(&self, endpoint: &str, rejection: &Rejection);
}

/// Headers a client may not set: the filter owns them on the upstream request.
const GATEWAY_PREFIXES: [&str; 2] = ["x-webhook-", "ce-"];

enum Stage {
    /// Not a guarded path: everything passes untouched.
    PassThrough,
    /// Head accepted; buffering the body.
    Body { endpoint: usize, media: Media, size: usize },
    /// Sent upstream; the answer is checked.
    Forwarded { endpoint: usize },
    /// Answered locally; nothing more to do.
    Done,
}

pub struct Guard<H> {
    host: H,
    config: Rc<Config>,
    stage: Stage,
}

impl<H: HttpHost> Guard<H> {
    pub fn new(host: H, config: Rc<Config>) -> Self {
        Guard { host, config, stage: Stage::PassThrough }
    }

    pub fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        let headers = self.host.request_headers();
        let find = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice());
        let raw_path = find(":path").unwrap_or_default();
        let bare_path = raw_path.split(|b| *b == b'?').next().unwrap_or_default();
        let config = Rc::clone(&self.config);
        let Some(index) = config.endpoints.iter().position(|e| e.path.as_bytes() == bare_path) else {
            return Action::Continue;
        };
        let Some(endpoint) = config.endpoints.get(index) else {
            return Action::Continue;
        };
        let Ok(path) = std::str::from_utf8(raw_path) else {
            return self.reject(endpoint, &Rejection::new(Reason::Invalid, "the request target is not UTF-8"));
        };
        let text = |name: &str| find(name).map(String::from_utf8_lossy);
        let (method, content_type, content_length) = (text(":method"), text("content-type"), text("content-length"));
        let head = check::Head {
            method: method.as_deref().unwrap_or(""),
            query: query::split(path).1,
            content_type: content_type.as_deref(),
            content_length: content_length.as_deref(),
        };
        let media = match check::head(endpoint, &head) {
            Ok(media) => media,
            Err(rejection) => return self.reject(endpoint, &rejection),
        };
        if end_of_stream {
            return self.reject(endpoint, &Rejection::new(Reason::Invalid, "the body is empty"));
        }
        self.host.set_request_header(":path", Some(&query::without_param(path, &endpoint.secret.param)));
        for (name, _) in &headers {
            if GATEWAY_PREFIXES.iter().any(|p| name.starts_with(p)) {
                self.host.set_request_header(name, None);
            }
        }
        if endpoint.forward == Forward::CloudEvent {
            // The body will be replaced; its length is set again once it is known.
            self.host.set_request_header("content-length", None);
        }
        self.stage = Stage::Body { endpoint: index, media, size: 0 };
        // Held (allow_on_headers_stop_iteration): nothing reaches the upstream until the
        // body has been validated.
        Action::Pause
    }

    pub fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Stage::Body { endpoint: index, media, size } = &mut self.stage else {
            return Action::Continue;
        };
        // Envoy reports the cumulative size of the buffered body.
        *size = body_size;
        let (index, media) = (*index, *media);
        let config = Rc::clone(&self.config);
        let Some(endpoint) = config.endpoints.get(index) else {
            return Action::Continue;
        };
        if body_size > endpoint.max_body_bytes {
            let detail = format!("the body is larger than {} bytes", endpoint.max_body_bytes);
            return self.reject(endpoint, &Rejection::new(Reason::TooLarge, detail));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.finish_body(index, endpoint, media, body_size)
    }

    /// Trailers end the stream without an end-of-stream body callback.
    pub fn on_request_trailers(&mut self) -> Action {
        let Stage::Body { endpoint: index, media, size } = self.stage else {
            return Action::Continue;
        };
        let config = Rc::clone(&self.config);
        match config.endpoints.get(index) {
            Some(endpoint) => self.finish_body(index, endpoint, media, size),
            None => Action::Continue,
        }
    }

    fn finish_body(&mut self, index: usize, endpoint: &Endpoint, media: Media, size: usize) -> Action {
        let body = self.host.request_body(size).unwrap_or_default();
        let event = match check::body(endpoint, media, &body) {
            Ok(event) => event,
            Err(rejection) => return self.reject(endpoint, &rejection),
        };
        if endpoint.forward == Forward::CloudEvent {
            let source = format!("/webhook-guard/{}", endpoint.name);
            let Ok(cloudevent) = event.to_cloudevent(&source) else {
                let rejection = Rejection::new(Reason::Invalid, "the notification cannot be normalised");
                return self.reject(endpoint, &rejection);
            };
            self.host.set_request_body(size, &cloudevent);
            self.host.set_request_header("content-type", Some("application/cloudevents+json"));
            self.host.set_request_header("content-length", Some(&cloudevent.len().to_string()));
        }
        self.host.set_request_header("x-webhook-event-id", Some(&event.id));
        self.host.set_request_header("x-webhook-event-type", Some(&event.kind));
        self.host.set_request_header("x-webhook-profile", Some(endpoint.profile.name()));
        self.host.set_request_header("x-webhook-endpoint", Some(&endpoint.name));
        self.stage = Stage::Forwarded { endpoint: index };
        Action::Continue
    }

    pub fn on_response_headers(&mut self) -> Action {
        let Stage::Forwarded { endpoint: index } = self.stage else {
            return Action::Continue;
        };
        let config = Rc::clone(&self.config);
        let Some(endpoint) = config.endpoints.get(index) else {
            return Action::Continue;
        };
        let status = self.host.response_status().unwrap_or(0);
        let is_final_4xx = (400..500).contains(&status) && status != 429;
        if is_final_4xx && endpoint.upstream_4xx == Upstream4xx::Retry {
            let detail = format!("the upstream answered {status}; retry later");
            return self.reject(endpoint, &Rejection::new(Reason::UpstreamRejected, detail));
        }
        Action::Continue
    }

    fn reject(&mut self, endpoint: &Endpoint, rejection: &Rejection) -> Action {
        self.host.log_rejection(&endpoint.name, rejection);
        let headers = rejection.headers();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.host.send_response(rejection.status(), &headers, &rejection.body());
        self.stage = Stage::Done;
        // Envoy must not continue the stream after a local reply.
        Action::Pause
    }
}
