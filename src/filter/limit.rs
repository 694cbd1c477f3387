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
    use crate::filter::mock::*;
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
}
