//! The answer stage: what the sender is told. The upstream's status goes through its
//! profile's table ([`crate::profile::Profile::told`], src/upstream.rs): a 2xx is the only success (a vendor's becomes
//! 200), a status the sender would not retry becomes 502, also when it answers a streamed
//! head before its body was delivered (where a 2xx is no delivery either); the answer
//! ends the event's in-flight mark. Every refusal is counted, logged and answered with
//! problem+json here, or in shadow mode reported upstream instead.

use super::{Guard, HttpHost, Stage, VERDICT_HEADER};
use crate::config::{Endpoint, Mode};
use crate::dedupe;
use crate::metrics::Counter;
use crate::problem::{Reason, Rejection};
use crate::profile::LocalAnswer;
use crate::upstream::{Mapped, Told};
use proxy_wasm::types::Action;

impl<H: HttpHost> Guard<H> {
    /// The upstream's response headers (or Envoy's own answer for it: a reset, a timeout,
    /// a later filter's local reply).
    pub(super) fn upstream_answer(&mut self, index: usize, endpoint: &Endpoint) -> Action {
        // `stream` only: the upstream may answer a head whose body it has not got yet.
        let early = self.head_sent && endpoint.mode == Mode::Enforce && matches!(self.stage, Stage::Body { .. } | Stage::Limiting(_) | Stage::Verifying(_));
        if !early && !matches!(self.stage, Stage::Forwarded) {
            return Action::Continue;
        }
        let status = self.host.response_status().unwrap_or(0);
        let told = match endpoint.profile.told(status, endpoint.upstream_4xx) {
            Told::Delivered(_) if early => Told::Mapped(Mapped::Early),
            told => told,
        };
        if !early {
            self.stage = Stage::Idle;
            let delivered = matches!(told, Told::Delivered(_));
            // Also a later filter's local reply (Envoy's global rate limit): the retry must
            // not meet an in-flight mark.
            self.end_flight(delivered);
            let global_limit = if delivered { None } else { self.host.response_code_details().and_then(|d| Counter::global_limit(&d)) };
            if let Some(counter) = global_limit {
                self.host.count(index, counter);
            } else if status >= 500 {
                self.host.count(index, Counter::UpstreamFailure);
            }
        }
        match told {
            Told::Delivered(sent) if sent != status => self.host.set_response_status(sent),
            Told::Delivered(_) | Told::Passed => {}
            Told::Mapped(why) => {
                self.host.count(index, Counter::UpstreamMapped(why));
                let detail = match why {
                    Mapped::Early => format!("the upstream answered {status} before the notification was delivered; retry later"),
                    _ => format!("the upstream answered {status}; retry later"),
                };
                return self.reject(endpoint, Rejection::new(Reason::UpstreamRejected, detail));
            }
        }
        Action::Continue
    }

    /// Records the upstream's verdict on the event in flight: delivered events become
    /// duplicates for the window; anything else frees the slot for the sender's retry.
    pub(super) fn end_flight(&mut self, delivered: bool) {
        if let Some((key, id)) = self.in_flight.take() {
            dedupe::finish(&self.host, &key, &id, self.host.now_nanos(), delivered);
        }
    }

    /// Counts, logs and answers a refusal; in shadow mode reports it upstream instead.
    pub(super) fn reject(&mut self, endpoint: &Endpoint, rejection: Rejection) -> Action {
        self.reject_at(endpoint, rejection, self.config.log_level)
    }

    /// [`Guard::reject`] with its log line at `level` (`None`: no line).
    pub(super) fn reject_at(&mut self, endpoint: &Endpoint, rejection: Rejection, level: Option<log::Level>) -> Action {
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

    /// Answers a ping or handshake ([`LocalAnswer`]); in shadow mode the request goes on,
    /// reported accepted, as any accepted request does there.
    pub(super) fn local_answer(&mut self, endpoint: &Endpoint, answer: LocalAnswer) -> Action {
        if endpoint.mode == Mode::Shadow {
            return self.shadow_accept();
        }
        let headers: Vec<(&str, &str)> = answer.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.host.send_response(answer.status, &headers, &answer.body);
        self.finish(Some(answer.counter), Action::Pause)
    }

    /// Shadow mode's verdict on an accepted request: it goes on, reported accepted (a
    /// streamed head has gone: then only counted).
    pub(super) fn shadow_accept(&mut self) -> Action {
        if !self.head_sent {
            self.host.set_request_header(VERDICT_HEADER, Some("accept"));
        }
        self.finish(Some(Counter::Forwarded), Action::Continue)
    }

    /// Answers the sender with the rejection's problem+json.
    pub(super) fn answer(&self, rejection: &Rejection) {
        let headers = rejection.headers();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.host.send_response(rejection.status(), &headers, &rejection.body());
    }

    /// Ends the filter's work on this request, counting its outcome.
    pub(super) fn finish(&mut self, outcome: Option<Counter>, action: Action) -> Action {
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
    format!("webhook-guard: {verb} endpoint={endpoint} status={} reason={} detail={}", rejection.status(), rejection.reason.slug(), rejection.detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::filter::mock::*;
    use crate::shared::memory::MemoryStore;
    use md5::Digest;
    use std::rc::Rc;

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
    fn a_stream_ended_without_an_upstream_answer_frees_the_event_for_the_retry() {
        let store = Rc::new(MemoryStore::new());
        // The sender hung up while the upstream was slow: no response headers, only the end.
        let (mock, mut g) = send_deduped(&store);
        assert!(mock.counts.borrow().contains(&(0, Counter::Forwarded)));
        let (copy, _) = send_deduped(&store);
        assert_eq!(copy.sent_status(), Some(429), "a copy meets the in-flight mark");
        g.on_done();
        let (retry, mut g) = send_deduped(&store);
        assert_eq!(retry.sent_status(), None, "the retry is forwarded, not answered 429 in_flight");
        assert!(retry.counts.borrow().contains(&(0, Counter::Forwarded)));
        *retry.status.borrow_mut() = Some(200);
        g.on_response_headers();
        g.on_done();
        let (duplicate, _) = send_deduped(&store);
        assert_eq!(duplicate.sent_status(), Some(200), "the answered retry is recorded; its end changes nothing");
        assert!(duplicate.counts.borrow().contains(&(0, Counter::Duplicate)));
    }

    #[test]
    fn envoys_own_503_and_504_count_as_upstream_failures() {
        for (status, details) in [
            (503, "upstream_reset_before_response_started{connection_termination}"),
            (503, "no_healthy_upstream"),
            (504, "upstream_response_timeout"),
            (500, "via_upstream"),
        ] {
            let store = Rc::new(MemoryStore::new());
            let mock = forward_then(&store, status, details);
            assert_eq!(mock.sent_status(), None, "{status} reaches the sender as it is");
            let failures = mock.counts.borrow().iter().filter(|c| **c == (0, Counter::UpstreamFailure)).count();
            assert_eq!(failures, 1, "{status} {details}");
            // The failure freed the event: its retry is forwarded.
            let (retry, _) = send_deduped(&store);
            assert_eq!(retry.sent_status(), None, "{status} {details}");
        }
        for status in [200, 404, 429] {
            let mock = forward_then(&Rc::new(MemoryStore::new()), status, "via_upstream");
            assert!(!mock.counts.borrow().contains(&(0, Counter::UpstreamFailure)), "{status}");
        }
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

    #[test]
    fn upstream_redirects_become_502_for_both_senders_counted_as_mapped() {
        for (path, status) in [301, 302, 303, 304, 307, 308, 100].into_iter().flat_map(|s| [("/az?sig=k", s), ("/store?sig=k", s)]) {
            let (mock, mut g) = guard("POST", path, &[("content-type", "application/json")]);
            g.on_request_headers(false);
            let body = if path.starts_with("/az") {
                DOC.to_string()
            } else {
                r#"{"payload":{"type":"x"},"md5":"MD5"}"#.replace("MD5", &format!("{:x}", md5::Md5::digest(br#"{"type":"x"}"#)))
            };
            feed(&mock, &mut g, body.as_bytes());
            *mock.status.borrow_mut() = Some(status);
            assert_eq!(g.on_response_headers(), Action::Pause, "{path} {status}");
            let sent = mock.sent.borrow().clone().unwrap();
            assert_eq!(sent.0, 502, "{path} {status}");
            assert!(String::from_utf8_lossy(&sent.1).contains(&format!("the upstream answered {status}")));
            let why = if status < 200 { Mapped::Other } else { Mapped::Redirect };
            let index = usize::from(path.starts_with("/store"));
            assert!(mock.counts.borrow().contains(&(index, Counter::UpstreamMapped(why))), "{path} {status}");
            assert!(mock.counts.borrow().contains(&(index, Counter::Rejected(Reason::UpstreamRejected))));
        }
    }

    #[test]
    fn a_reset_upstream_is_envoys_503_and_is_retried_as_it_is() {
        let (mock, mut g) = guard("POST", "/az?sig=k", &[]);
        g.on_request_headers(false);
        feed(&mock, &mut g, DOC.as_bytes());
        *mock.status.borrow_mut() = Some(503);
        *mock.code_details.borrow_mut() = Some("upstream_reset_before_response_started{connection_termination}".into());
        assert_eq!(g.on_response_headers(), Action::Continue);
        assert_eq!(mock.sent_status(), None);
        assert!(mock.counts.borrow().contains(&(0, Counter::UpstreamFailure)));
    }

    #[test]
    fn streamed_upstream_redirect_before_the_body_is_retried() {
        for status in [301, 307, 308, 304] {
            let (mock, mut g) = streamed("POST", "/az?sig=k", &[]);
            g.on_request_headers(false);
            *mock.status.borrow_mut() = Some(status);
            assert_eq!(g.on_response_headers(), Action::Pause, "{status}");
            assert_eq!(mock.sent_status(), Some(502), "{status}");
            assert!(mock.counts.borrow().contains(&(0, Counter::UpstreamMapped(Mapped::Redirect))));
        }
    }

    #[test]
    fn streamed_upstream_2xx_before_the_body_is_not_success() {
        let (mock, mut g) = streamed("POST", "/az?sig=k", &[]);
        g.on_request_headers(false);
        *mock.status.borrow_mut() = Some(200);
        assert_eq!(g.on_response_headers(), Action::Pause);
        assert_eq!(mock.sent_status(), Some(502));
        assert!(mock.counts.borrow().contains(&(0, Counter::UpstreamMapped(Mapped::Early))));
        for status in [503, 429] {
            let (mock, mut g) = streamed("POST", "/az?sig=k", &[]);
            g.on_request_headers(false);
            *mock.status.borrow_mut() = Some(status);
            assert_eq!(g.on_response_headers(), Action::Continue);
            assert_eq!(mock.sent_status(), None, "{status} is retried as it is");
        }
    }

    #[test]
    fn streamed_upstream_final_4xx_before_the_body_is_retried() {
        for status in [400, 404, 422] {
            let (mock, mut g) = streamed("POST", "/az?sig=k", &[]);
            g.on_request_headers(false);
            *mock.status.borrow_mut() = Some(status);
            assert_eq!(g.on_response_headers(), Action::Pause, "{status}");
            let sent = mock.sent.borrow().clone().unwrap();
            assert_eq!(sent.0, 502, "{status}");
            assert!(String::from_utf8_lossy(&sent.1).contains("upstream_rejected"));
            assert!(mock.counts.borrow().contains(&(0, Counter::Rejected(Reason::UpstreamRejected))));
        }
        // `upstream_4xx: pass`: the upstream's 4xx goes to the sender as it is.
        let config = CONFIG.replacen(r#""header_mode":"hold""#, r#""header_mode":"stream""#, 1).replacen(
            r#""max_body_bytes":2000"#,
            r#""max_body_bytes":2000,"upstream_4xx":"pass""#,
            1,
        );
        let (mock, _) = streamed("POST", "/az?sig=k", &[]);
        let mut g = Guard::new(Rc::clone(&mock), Rc::new(Config::parse(config.as_bytes(), |_| None).unwrap()));
        g.on_request_headers(false);
        *mock.status.borrow_mut() = Some(400);
        assert_eq!(g.on_response_headers(), Action::Continue);
        assert_eq!(mock.sent_status(), None);
    }

    #[test]
    fn the_detail_says_whether_the_upstream_answered_before_the_body() {
        let (mock, mut g) = streamed("POST", "/az?sig=k", &[]);
        g.on_request_headers(false);
        *mock.status.borrow_mut() = Some(202);
        g.on_response_headers();
        let body: serde_json::Value = serde_json::from_slice(&mock.sent.borrow().as_ref().unwrap().1).unwrap();
        assert_eq!(body["detail"], "the upstream answered 202 before the notification was delivered; retry later");
        let (mock, mut g) = guard("POST", "/az?sig=k", &[]);
        g.on_request_headers(false);
        feed(&mock, &mut g, DOC.as_bytes());
        *mock.status.borrow_mut() = Some(404);
        g.on_response_headers();
        let body: serde_json::Value = serde_json::from_slice(&mock.sent.borrow().as_ref().unwrap().1).unwrap();
        assert_eq!(body["detail"], "the upstream answered 404; retry later");
    }
}
