//! The endpoint's rate limits: the global bucket, taken on the head once the request is
//! authenticated (strangers cannot spend a sender's budget), and the per-application or
//! per-subscription bucket, taken on the body once the event is known.

use super::{Guard, HttpHost};
use crate::config::{Contention, Endpoint, RateKey};
use crate::event::Event;
use crate::metrics::Counter;
use crate::problem::{Reason, Rejection};
use crate::ratelimit::{self, Acquire};
use std::borrow::Cow;

impl<H: HttpHost> Guard<H> {
    /// Applies the endpoint's rate limit: the global bucket when `event` is `None` (the
    /// head), the application or subscription bucket of `event` otherwise.
    pub(super) fn limit(&self, endpoint: &Endpoint, event: Option<&Event>) -> Result<(), Rejection> {
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
            Acquire::Allowed => return Ok(()),
            Acquire::Contended => {
                if let Some(index) = self.matched {
                    self.host.count(index, Counter::RateLimitContended);
                }
                if rate.on_contention == Contention::Allow {
                    return Ok(());
                }
                1
            }
            Acquire::Limited { retry_after_secs } => retry_after_secs,
        };
        let subject = match event.and_then(|e| e.subject.as_deref()) {
            Some(application) => format!("application '{application}'"),
            None => format!("endpoint '{}'", endpoint.name),
        };
        let mut rejection = Rejection::new(Reason::RateLimited, format!("rate limit for {subject} exceeded; retry in {retry_after} s"));
        rejection.retry_after = Some(retry_after);
        Err(rejection)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::filter::mock::*;
    use crate::filter::{Guard, VERDICT_HEADER};
    use crate::metrics::Counter;
    use crate::problem::Reason;
    use crate::shared::memory::MemoryStore;
    use proxy_wasm::types::Action;
    use std::rc::Rc;

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

    /// `CONFIG` with the `limited` endpoint's rate limit extended by `extra` members.
    fn limited_with(store: &Rc<MemoryStore>, endpoint: &str) -> (Rc<Mock>, Guard<Rc<Mock>>) {
        let json = CONFIG.replacen(r#""rate_limit":{"per_second":0.5,"burst":2}"#, endpoint, 1);
        let (mock, _) = guard_on(store, SECOND, "POST", "/limited?sig=k", &[]);
        let config = Rc::new(Config::parse(json.as_bytes(), |_| None).unwrap());
        (Rc::clone(&mock), Guard::new(mock, config))
    }

    fn retry_after(mock: &Mock) -> Vec<String> {
        mock.sent_headers.borrow().iter().filter(|(k, _)| k == "retry-after").map(|(_, v)| v.clone()).collect()
    }

    #[test]
    fn contention_denies_by_default_and_is_counted() {
        let store = Rc::new(MemoryStore::new());
        store.conflict_next_sets(100);
        let (mock, mut g) = guard_on(&store, SECOND, "POST", "/limited?sig=k", &[]);
        assert_eq!(g.on_request_headers(false), Action::Pause);
        assert_eq!(mock.sent_status(), Some(429));
        assert_eq!(retry_after(&mock), ["1"]);
        let counts = mock.counts.borrow();
        assert_eq!(counts.iter().filter(|c| **c == (2, Counter::RateLimitContended)).count(), 1);
        assert!(counts.contains(&(2, Counter::Rejected(Reason::RateLimited))));
    }

    #[test]
    fn contention_allows_with_on_contention_allow_and_is_counted() {
        let store = Rc::new(MemoryStore::new());
        store.conflict_next_sets(100);
        let (mock, mut g) = limited_with(&store, r#""rate_limit":{"per_second":0.5,"burst":2,"on_contention":"allow"}"#);
        assert_eq!(g.on_request_headers(false), Action::Pause, "held for its body, not refused");
        assert_eq!(mock.sent_status(), None);
        let counts = mock.counts.borrow();
        assert_eq!(counts.iter().filter(|c| **c == (2, Counter::RateLimitContended)).count(), 1);
        assert!(!counts.iter().any(|(_, c)| matches!(c, Counter::Rejected(_))));
    }

    #[test]
    fn shadow_mode_reports_a_rate_limit_verdict_and_forwards() {
        let store = Rc::new(MemoryStore::new());
        let endpoint = r#""mode":"shadow","rate_limit":{"per_second":0.5,"burst":1}"#;
        let (first, mut g) = limited_with(&store, endpoint);
        g.on_request_headers(false);
        assert_eq!(first.header(VERDICT_HEADER), None);
        let (mock, mut g) = limited_with(&store, endpoint);
        assert_eq!(g.on_request_headers(false), Action::Continue, "shadow forwards what it would refuse");
        assert_eq!(mock.sent_status(), None);
        assert_eq!(mock.header(VERDICT_HEADER).as_deref(), Some("rate_limited"));
        let counts = mock.counts.borrow();
        assert!(counts.contains(&(2, Counter::Rejected(Reason::RateLimited))));
        assert!(counts.contains(&(2, Counter::Forwarded)));
        let logs = mock.logs.borrow();
        assert_eq!(logs.len(), 1);
        assert!(logs[0].starts_with("webhook-guard: shadow: would reject endpoint=limited status=429 reason=rate_limited detail="), "{logs:?}");
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
}
