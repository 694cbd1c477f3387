//! The global limit stage (only with `global_rate_limit`): after validation and duplicate
//! suppression, before the ARM check, the body is held while the fleet's rate limit
//! service answers. Under the limit: on to the ARM check or the forward stage. Over it:
//! 429 with `Retry-After`, the in-flight mark cleared so that the retry is checked again.
//! No answer: the endpoint's `on_error` (forward, counted; or 503). The request and the
//! reading of the answer are in src/global_limit/; this stage holds, counts and logs.

use super::{Guard, HttpHost, Stage};
use crate::config::Endpoint;
use crate::event::Event;
use crate::global_limit::{self, GlobalRateLimit, OnError, Verdict};
use crate::metrics::Counter;
use crate::outbound::GrpcCall;
use crate::problem::{Reason, Rejection};
use proxy_wasm::types::Action;

/// A request held while the rate limit service answers: its event, body size and call.
pub(super) struct Asking {
    event: Event,
    size: usize,
    call: u32,
}

/// `Retry-After` of the 503 when the service fails and the endpoint holds.
const HOLD_RETRY_AFTER: u64 = 5;

impl<H: HttpHost> Guard<H> {
    /// Asks the service about `event`, which passed every local check; without the
    /// setting, or with nothing to ask, goes straight on.
    pub(super) fn limit_globally(&mut self, endpoint: &Endpoint, event: Event, size: usize) -> Action {
        let Some(global) = endpoint.global_rate_limit.as_ref() else {
            return self.confirm(endpoint, event, size);
        };
        let Some(message) = global.request(&endpoint.name, &event.keys) else {
            return self.confirm(endpoint, event, size);
        };
        let call = GrpcCall {
            cluster: &global.cluster,
            service: global_limit::SERVICE,
            method: global_limit::METHOD,
            message: &message,
            timeout_ms: global.timeout_ms,
        };
        match self.host.dispatch_grpc(&call) {
            Some(call) => {
                self.stage = Stage::Limiting(Box::new(Asking { event, size, call }));
                Action::Pause
            }
            None => self.global_failed(endpoint, global, event, size, "the call could not be sent"),
        }
    }

    /// The service's answer to call `call` (gRPC `status`, 0 for OK; a `size`-byte
    /// message); a request it lets go is resumed.
    pub(super) fn global_answer(&mut self, endpoint: &Endpoint, call: u32, status: u32, size: usize) {
        let (Some(global), Stage::Limiting(asking)) = (endpoint.global_rate_limit.as_ref(), &self.stage) else {
            return;
        };
        if asking.call != call {
            return;
        }
        let Stage::Limiting(asking) = std::mem::replace(&mut self.stage, Stage::Idle) else {
            return;
        };
        let Asking { event, size: body_size, .. } = *asking;
        let body = if status == 0 { self.host.grpc_answer(size) } else { Vec::new() };
        let action = match global_limit::verdict(status, &body) {
            Verdict::Allow => self.confirm(endpoint, event, body_size),
            Verdict::Limited { retry_after, headers } => self.globally_limited(endpoint, &event, retry_after, headers),
            Verdict::Failed(why) if status != 0 => self.global_failed(endpoint, global, event, body_size, &format!("{why} (gRPC status {status})")),
            Verdict::Failed(why) => self.global_failed(endpoint, global, event, body_size, why),
        };
        if action == Action::Continue {
            self.host.resume_request();
        }
    }

    /// Over the fleet's limit: 429, which both senders retry; the retry is not an event
    /// in flight.
    fn globally_limited(&mut self, endpoint: &Endpoint, event: &Event, retry_after: u64, headers: Vec<(&'static str, String)>) -> Action {
        self.end_flight(false);
        if let Some(index) = self.matched {
            self.host.count(index, Counter::GlobalRateLimited);
        }
        let subject = event.subject.as_deref().map_or_else(|| format!("endpoint '{}'", endpoint.name), |a| format!("application '{a}'"));
        let mut rejection = Rejection::new(Reason::RateLimited, format!("fleet rate limit for {subject} exceeded; retry in {retry_after} s"));
        rejection.retry_after = Some(retry_after);
        rejection.extra = headers;
        self.reject(endpoint, rejection)
    }

    /// No verdict from the service: forwarded (counted, one warning) or held with 503.
    fn global_failed(&mut self, endpoint: &Endpoint, global: &GlobalRateLimit, event: Event, size: usize, why: &str) -> Action {
        let index = self.matched;
        match global.on_error {
            OnError::Forward => {
                if let Some(index) = index {
                    self.host.count(index, Counter::GlobalRateLimitFailedOpen);
                }
                if self.config.log_level.is_some() {
                    let line = format!("webhook-guard: global rate limit unavailable endpoint={} cluster={}: {why}; forwarded", endpoint.name, global.cluster);
                    self.host.log(log::Level::Warn, &line);
                }
                self.confirm(endpoint, event, size)
            }
            OnError::Hold => {
                self.end_flight(false);
                if let Some(index) = index {
                    self.host.count(index, Counter::GlobalRateLimitError);
                }
                let mut rejection = Rejection::new(Reason::RateLimitUnavailable, format!("the fleet rate limit could not be checked ({why}); retry later"));
                rejection.retry_after = Some(HOLD_RETRY_AFTER);
                self.reject(endpoint, rejection)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::filter::mock::*;
    use crate::global_limit::proto;
    use crate::shared::memory::MemoryStore;
    use std::rc::Rc;

    /// An endpoint asking the service, in `header_mode`, with `setting`'s extra members,
    /// duplicate suppression on, and the ARM check when `arm`.
    fn config(header_mode: &str, setting: &str, arm: bool) -> String {
        let arm = if arm { r#","arm_check":{"arm_cluster":"arm","token_cluster":"imds","managed_identity":{}}"# } else { "" };
        format!(
            r#"{{"header_mode":"{header_mode}","endpoints":[{{"name":"fleet","path":"/fleet","profile":"azure_managed_app","secret":{{"values":["TOPSECRET"]}},"dedupe_seconds":60,
               "global_rate_limit":{{"cluster":"ratelimit","domain":"webhook-guard"{setting}}}{arm}}}]}}"#
        )
    }

    fn sent(config: &str, store: &Rc<MemoryStore>, doc: &str) -> (Rc<Mock>, Guard<Rc<Mock>>, Action) {
        let (mock, _) = guard_on(store, SECOND, "POST", "/fleet?sig=TOPSECRET", &[]);
        let guard = Guard::new(Rc::clone(&mock), Rc::new(Config::parse(config.as_bytes(), |_| None).unwrap()));
        let mut guard = guard;
        guard.on_request_headers(false);
        let action = feed(&mock, &mut guard, doc.as_bytes());
        (mock, guard, action)
    }

    /// The service answers the last call with `code` (and a status spent for 41 s).
    fn answer(mock: &Mock, guard: &mut Guard<Rc<Mock>>, code: u8) {
        let body = vec![0x08, code, 0x12, 0x0e, 0x08, code, 0x12, 0x04, 0x08, 0x05, 0x10, 0x02, 0x18, 0x00, 0x22, 0x02, 0x08, 41];
        *mock.grpc_body.borrow_mut() = body;
        let call = u32::try_from(mock.grpc_calls.borrow().len()).unwrap();
        guard.on_grpc_response(call, 0, mock.grpc_body.borrow().len());
    }

    fn counted(mock: &Mock, counter: Counter) -> usize {
        mock.counts.borrow().iter().filter(|(_, c)| *c == counter).count()
    }

    #[test]
    fn streamed_the_body_waits_for_the_service_and_goes_on_when_allowed() {
        for mode in ["stream", "hold"] {
            let (mock, mut g, action) = sent(&config(mode, "", false), &Rc::new(MemoryStore::new()), DOC);
            assert_eq!(action, Action::Pause, "{mode}: held for the service");
            let calls = mock.grpc_calls.borrow().clone();
            assert_eq!(calls.len(), 1);
            let call = &calls[0];
            assert_eq!(
                (call.cluster.as_str(), call.service.as_str(), call.method.as_str(), call.timeout_ms),
                ("ratelimit", global_limit::SERVICE, "ShouldRateLimit", 500)
            );
            let message = &call.message;
            let application = "/subscriptions/s/resourcegroups/r/providers/microsoft.solutions/applications/a";
            let want = proto::encode_request(
                "webhook-guard",
                &[vec![("endpoint", "fleet"), ("application", application)], vec![("endpoint", "fleet"), ("subscription", "s")]],
            );
            assert_eq!(*message, want);
            assert!(!String::from_utf8_lossy(message).contains("TOPSECRET"));
            assert!(!mock.resumed.get() && mock.header("x-webhook-event-id").is_none(), "{mode}: nothing forwarded yet");
            answer(&mock, &mut g, 1);
            assert!(mock.resumed.get(), "{mode}");
            assert_eq!(mock.sent_status(), None);
            assert_eq!(counted(&mock, Counter::Forwarded), 1);
        }
    }

    #[test]
    fn over_the_limit_is_429_with_retry_after_and_the_retry_is_asked_again() {
        let store = Rc::new(MemoryStore::new());
        let (mock, mut g, _) = sent(&config("stream", "", false), &store, DOC);
        answer(&mock, &mut g, 2);
        assert_eq!(mock.sent_status(), Some(429));
        assert!(!mock.resumed.get());
        let headers = mock.sent_headers.borrow().clone();
        for want in [("retry-after", "41"), ("x-ratelimit-limit", "5, 5;w=60"), ("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "41")] {
            assert!(headers.contains(&(want.0.to_string(), want.1.to_string())), "{want:?} in {headers:?}");
        }
        assert_eq!(counted(&mock, Counter::GlobalRateLimited), 1);
        assert_eq!(counted(&mock, Counter::Rejected(Reason::RateLimited)), 1);
        assert!(mock.logs.borrow()[0].contains("fleet rate limit for application"), "{:?}", mock.logs.borrow());
        // The same event again: not in flight, not a duplicate, asked again.
        let (mock, _, action) = sent(&config("stream", "", false), &store, DOC);
        assert_eq!((action, mock.sent_status(), mock.grpc_calls.borrow().len()), (Action::Pause, None, 1));
    }

    #[test]
    fn a_failed_service_forwards_by_default_and_holds_when_asked() {
        let store = Rc::new(MemoryStore::new());
        let (mock, mut g, _) = sent(&config("stream", "", false), &store, DOC);
        g.on_grpc_response(1, 14, 0);
        assert!(mock.resumed.get());
        assert_eq!(counted(&mock, Counter::GlobalRateLimitFailedOpen), 1);
        assert!(mock.logs.borrow()[0].contains("global rate limit unavailable endpoint=fleet cluster=ratelimit: the call failed (gRPC status 14); forwarded"));

        let (mock, mut g, _) = sent(&config("stream", r#","on_error":"hold""#, false), &store, &DOC.replace("19:20:08", "19:20:09"));
        answer(&mock, &mut g, 0);
        assert_eq!(mock.sent_status(), Some(503));
        assert!(mock.sent_headers.borrow().contains(&("retry-after".to_string(), "5".to_string())));
        assert_eq!(counted(&mock, Counter::GlobalRateLimitError), 1);
        assert_eq!(counted(&mock, Counter::Rejected(Reason::RateLimitUnavailable)), 1);
        assert!(
            mock.logs.borrow()[0].ends_with("detail=the fleet rate limit could not be checked (the answer has no code); retry later"),
            "{:?}",
            mock.logs.borrow()
        );
        // Held, so not in flight: the retry is asked again.
        let (mock, _, _) = sent(&config("stream", r#","on_error":"hold""#, false), &store, &DOC.replace("19:20:08", "19:20:09"));
        assert_eq!(mock.grpc_calls.borrow().len(), 1);

        // A call that cannot be sent (no such cluster) is a failure too.
        let (mock, _) = guard_on(&store, SECOND, "POST", "/fleet?sig=TOPSECRET", &[]);
        mock.grpc_refused.set(true);
        let mut g = Guard::new(Rc::clone(&mock), Rc::new(Config::parse(config("hold", "", false).as_bytes(), |_| None).unwrap()));
        g.on_request_headers(false);
        assert_eq!(feed(&mock, &mut g, DOC.replace("19:20:08", "19:20:10").as_bytes()), Action::Continue);
        assert_eq!(counted(&mock, Counter::GlobalRateLimitFailedOpen), 1);
    }

    #[test]
    fn duplicates_and_refusals_are_never_asked_and_limited_events_cost_no_arm_call() {
        let store = Rc::new(MemoryStore::new());
        let (mock, mut g, _) = sent(&config("hold", "", false), &store, DOC);
        answer(&mock, &mut g, 1);
        *mock.status.borrow_mut() = Some(200);
        g.on_response_headers();
        let (mock, _, _) = sent(&config("hold", "", false), &store, DOC);
        assert_eq!(mock.sent_status(), Some(200), "a duplicate");
        assert!(mock.grpc_calls.borrow().is_empty());
        let (mock, _, _) = sent(&config("hold", "", false), &store, "{}");
        assert_eq!(mock.sent_status(), Some(400));
        assert!(mock.grpc_calls.borrow().is_empty());

        let store = Rc::new(MemoryStore::new());
        let (mock, mut g, _) = sent(&config("stream", "", true), &store, DOC);
        assert!(mock.calls.borrow().is_empty(), "the service first");
        answer(&mock, &mut g, 2);
        assert_eq!(mock.sent_status(), Some(429));
        assert!(mock.calls.borrow().is_empty(), "no ARM call for a limited event");
        let (mock, mut g, _) = sent(&config("stream", "", true), &store, &DOC.replace("19:20:08", "19:20:11"));
        answer(&mock, &mut g, 1);
        assert_eq!(mock.calls.borrow()[0].0, "imds", "allowed: the ARM check starts");
        assert!(!mock.resumed.get(), "held for the check");
    }

    #[test]
    fn an_answer_to_another_call_or_stage_is_ignored() {
        let (mock, mut g, _) = sent(&config("stream", "", false), &Rc::new(MemoryStore::new()), DOC);
        g.on_grpc_response(7, 0, 0);
        assert!(!mock.resumed.get() && mock.sent_status().is_none());
        let (mock, mut g) = guard("POST", "/az?sig=k", &[]);
        g.on_request_headers(false);
        g.on_grpc_response(1, 0, 0);
        assert!(mock.sent_status().is_none());
    }
}
