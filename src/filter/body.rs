//! The body stage: the buffered body against the endpoint's size limit, its profile's
//! validation, what the endpoint does with a nonconforming notification, the
//! per-application or per-subscription rate limit, shadow mode's verdict, the vendor's
//! ping, and duplicate suppression. What passes goes to the fleet's rate limit service
//! when the endpoint asks one, then to the verify stage when the endpoint confirms
//! notifications with ARM, else straight to the forward stage.

use super::{Guard, HttpHost, Stage};
use crate::config::{Endpoint, Mode};
use crate::dedupe::{self, Begin};
use crate::event::Event;
use crate::metrics::Counter;
use crate::problem::{Reason, Rejection};
use crate::profile::Authentication;
use crate::{check, nonconforming};
use proxy_wasm::types::Action;

impl<H: HttpHost> Guard<H> {
    /// A body callback: buffers until the end of the stream, within the size limit.
    pub(super) fn body(&mut self, endpoint: &Endpoint, body_size: usize, end_of_stream: bool) -> Action {
        if let Stage::Body { size, .. } = &mut self.stage {
            // Envoy reports the cumulative size of the buffered body.
            *size = body_size;
        }
        if body_size > endpoint.max_body_bytes {
            let detail = format!("the body is larger than {} bytes", endpoint.max_body_bytes);
            return self.reject(endpoint, Rejection::new(Reason::TooLarge, detail));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.finish_body(endpoint)
    }

    /// The whole body is there: checks it, then hands the event on.
    pub(super) fn finish_body(&mut self, endpoint: &Endpoint) -> Action {
        let Stage::Body { media, size } = self.stage else {
            return Action::Continue;
        };
        let body = self.host.request_body(size).unwrap_or_default();
        // A held or refused nonconforming event is answered before it draws a
        // per-application token or is marked in flight.
        let signed = endpoint.profile.authentication() == Authentication::Signature;
        let now_secs = if signed { self.host.now_nanos() / 1_000_000_000 } else { 0 };
        // A signed request is authenticated only now: its global limit is taken here.
        let checked = check::body(endpoint, media, &body, &self.signed, now_secs)
            .and_then(|event| if signed { self.limit(endpoint, None).map(|()| event) } else { Ok(event) })
            .and_then(|event| self.judge(endpoint, event))
            .and_then(|event| self.limit(endpoint, Some(&event)).map(|()| event));
        let event = match checked {
            Ok(event) => event,
            Err(rejection) => return self.reject(endpoint, rejection),
        };
        if endpoint.mode == Mode::Shadow {
            return self.shadow_accept();
        }
        if let Some(answer) = endpoint.profile.local_answer(&event) {
            return self.local_answer(endpoint, answer);
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
        self.limit_globally(endpoint, event, size)
    }

    /// The ARM check when the endpoint confirms notifications, else the forward stage.
    pub(super) fn confirm(&mut self, endpoint: &Endpoint, event: Event, size: usize) -> Action {
        match endpoint.profile.arm_check() {
            Some(check) => self.verify(endpoint, check, event, size),
            None => self.forward(endpoint, &event, size, None),
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
            self.host.log(log::Level::Warn, &nonconforming::log_line(&endpoint.name, endpoint.profile.on_nonconforming(), &event));
        }
        match nonconforming::refusal(endpoint.profile.on_nonconforming(), &event.nonconforming) {
            Some(rejection) => Err(rejection),
            None => Ok(event),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::mock::*;
    use crate::shared::memory::MemoryStore;
    use std::rc::Rc;

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
        let nonconforming = |index: usize| (index, Counter::Nonconforming("state_undocumented"));
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
