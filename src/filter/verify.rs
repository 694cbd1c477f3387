//! The verify stage (only with `arm_check`): the request is held while Azure Resource
//! Manager confirms the notification, over one or two outbound calls (a token when none
//! is cached, then ARM). Consistent: the forward stage, marked verified; otherwise 503 or,
//! if the endpoint chooses, forwarded unverified. The rules are in arm/verify.rs; this
//! stage holds the request and counts and logs each outcome once.

use super::{Guard, HttpHost, Stage};
use crate::config::Endpoint;
use crate::event::Event;
use crate::metrics::Histogram;
use crate::problem::{Reason, Rejection};
use crate::profile::azure_managed_app::arm::config::ArmCheck;
use crate::profile::azure_managed_app::arm::verify::{self, Awaiting, Step, Verdict};
use crate::profile::azure_managed_app::arm::Outcome;
use proxy_wasm::types::Action;

/// A request held by the verify stage: its event, body size and the check's state.
pub(super) struct Confirming {
    event: Event,
    size: usize,
    pending: verify::Pending,
    /// When the check started (host clock, ns): its duration is recorded at the outcome.
    since: u64,
}

impl<H: HttpHost> Guard<H> {
    /// Starts the check of `event`, which passed every other check.
    pub(super) fn verify(&mut self, endpoint: &Endpoint, check: &ArmCheck, event: Event, size: usize) -> Action {
        let now = self.host.now_nanos();
        let step = verify::start(&self.host, check, &event, now);
        self.decide(endpoint, event, size, now, step)
    }

    /// The answer to one of the check's calls; a request the check lets go is resumed.
    pub(super) fn verify_answer(&mut self, endpoint: &Endpoint, call: u32, body_size: usize) {
        let answer = self.host.answer(body_size);
        self.verify_next(endpoint, |host, check, pending, now| verify::resume(host, check, pending, call, &answer, now));
    }

    /// A token fetch ended, or the root's tick: a check waiting for another's fetch looks
    /// at the shared token again.
    pub(super) fn verify_recheck(&mut self, endpoint: &Endpoint) {
        self.verify_next(endpoint, |host, check, pending, now| verify::recheck(host, check, pending, now));
    }

    /// What a request held by the verify stage waits for (the root tracks it).
    pub fn verify_awaiting(&self) -> Option<Awaiting> {
        match &self.stage {
            Stage::Verifying(held) => Some(held.pending.awaiting()),
            _ => None,
        }
    }

    /// Takes the check one step on with `next`; a request it lets go is resumed.
    fn verify_next(&mut self, endpoint: &Endpoint, next: impl FnOnce(&H, &ArmCheck, verify::Pending, u64) -> Step) {
        let Some(check) = endpoint.profile.arm_check() else {
            return;
        };
        let Stage::Verifying(held) = std::mem::replace(&mut self.stage, Stage::Idle) else {
            return;
        };
        let Confirming { event, size, pending, since } = *held;
        let step = next(&self.host, check, pending, self.host.now_nanos());
        if self.decide(endpoint, event, size, since, step) == Action::Continue {
            self.host.resume_request();
        }
    }

    /// Applies a step of the check: holds the request while it waits, then forwards it or
    /// answers 503 (arm/verify.rs has the rules). One counter and one log line per outcome.
    /// `since`: when the check started.
    fn decide(&mut self, endpoint: &Endpoint, event: Event, size: usize, since: u64, step: Step) -> Action {
        let (decision, Some(check), Some(index)) = (step, endpoint.profile.arm_check(), self.matched) else {
            return Action::Continue;
        };
        let decision = match decision {
            Step::Wait(pending) => {
                self.stage = Stage::Verifying(Box::new(Confirming { event, size, pending, since }));
                return Action::Pause;
            }
            Step::Done(decision) => decision,
        };
        self.host.record(index, Histogram::ArmCheck, self.host.now_nanos().saturating_sub(since) / 1_000_000);
        self.host.count(index, decision.outcome.counter());
        if let Some(fetched) = decision.token_fetch {
            self.host.count(index, if fetched { Outcome::TokenFetched } else { Outcome::TokenFailed }.counter());
        }
        let verdict = decision.verdict(check);
        self.host.log(decision.level(), &verify::log_line(&endpoint.name, &decision, verdict));
        match verdict {
            Verdict::Forward { verified } => {
                if !verified {
                    self.host.count(index, Outcome::ForwardedUnverified.counter());
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::mock::*;
    use crate::shared::memory::MemoryStore;
    use std::rc::Rc;

    /// Answers the call in flight with `status` and `body`.
    fn reply(mock: &Mock, guard: &mut Guard<Rc<Mock>>, status: u16, body: &str) {
        *mock.answer.borrow_mut() = crate::outbound::Answer { status: Some(status), retry_after: None, body: body.as_bytes().to_vec() };
        let call = u32::try_from(mock.calls.borrow().len()).unwrap();
        guard.on_call_response(call, body.len());
    }

    const TOKEN: &str = r#"{"access_token":"tok","expires_in":"3600"}"#;

    fn arm_says(state: &str) -> String {
        format!(r#"{{"properties":{{"provisioningState":"{state}"}}}}"#)
    }

    /// `DOC` sent to the checked endpoint over `store`, its token fetched, and ARM saying
    /// `state`.
    fn checked(store: &Rc<MemoryStore>, state: &str) -> (Rc<Mock>, Guard<Rc<Mock>>) {
        let (mock, mut g) = guard_on(store, SECOND, "POST", "/checked?sig=k", &[]);
        g.on_request_headers(false);
        feed(&mock, &mut g, DOC.as_bytes());
        reply(&mock, &mut g, 200, TOKEN);
        reply(&mock, &mut g, 200, &arm_says(state));
        (mock, g)
    }

    #[test]
    fn verify_holds_the_request_until_arm_confirms_it() {
        let (mock, mut g) = guard_on(&Rc::new(MemoryStore::new()), SECOND, "POST", "/checked?sig=k", &[]);
        g.on_request_headers(false);
        assert_eq!(feed(&mock, &mut g, DOC.as_bytes()), Action::Pause, "held for the token");
        reply(&mock, &mut g, 200, TOKEN);
        assert_eq!(mock.header("x-webhook-event-id"), None, "nothing forwarded yet");
        assert!(!mock.resumed.get());
        mock.now.set(mock.now.get() + 1_250_000_000);
        reply(&mock, &mut g, 200, &arm_says("Succeeded"));
        assert_eq!(*mock.records.borrow(), [(9, Histogram::ArmCheck, 1250)], "the check's duration, once");
        assert!(mock.resumed.get());
        assert_eq!(mock.header("x-webhook-verified").as_deref(), Some("true"));
        let event: serde_json::Value = serde_json::from_slice(&mock.body.borrow()).unwrap();
        assert_eq!(event["verified"], true);
        let calls = mock.calls.borrow();
        assert_eq!((calls[0].0.as_str(), calls[1].0.as_str()), ("imds", "arm"));
        assert_eq!(calls[1].1, "/subscriptions/s/resourceGroups/r/providers/Microsoft.Solutions/applications/a?api-version=2021-07-01");
        assert!(mock.counts.borrow().contains(&(9, Outcome::Verified.counter())));
        assert_eq!(mock.logs.borrow().len(), 1, "one line per outcome");
    }

    #[test]
    fn lagging_arm_answers_503_and_frees_the_event_for_the_retry() {
        let store = Rc::new(MemoryStore::new());
        let (mock, _) = checked(&store, "Accepted");
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
        let (mock, mut g) = checked(&store, "Succeeded");
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
    fn a_request_finding_a_fetch_running_waits_for_its_token() {
        let store = Rc::new(MemoryStore::new());
        let (first, mut g1) = guard_on(&store, SECOND, "POST", "/checked?sig=k", &[]);
        g1.on_request_headers(false);
        feed(&first, &mut g1, DOC.as_bytes());
        assert_eq!(first.calls.borrow()[0].0, "imds", "the first request fetches the token");
        let (second, mut g2) = guard_on(&store, SECOND, "POST", "/checked?sig=k", &[]);
        g2.on_request_headers(false);
        assert_eq!(feed(&second, &mut g2, DOC.replace("19:20:08", "19:20:09").as_bytes()), Action::Pause);
        assert_eq!(g2.verify_awaiting(), Some(Awaiting::SharedToken), "waits: no 503 while a fetch runs");
        g2.on_token_ready();
        assert!(second.calls.borrow().is_empty() && second.sent_status().is_none(), "still waiting");
        reply(&first, &mut g1, 200, TOKEN);
        g2.on_token_ready();
        assert_eq!(second.calls.borrow()[0].0, "arm", "the first request's token, no fetch of its own");
        reply(&second, &mut g2, 200, &arm_says("Succeeded"));
        assert!(second.resumed.get());
        assert_eq!(second.header("x-webhook-verified").as_deref(), Some("true"));
        assert_eq!(g2.verify_awaiting(), None);
    }
    /// The retry of `DOC` ten seconds after [`checked`] fetched the token (at 1 s), ARM
    /// refusing that token: the filter's own counters and log line.
    fn refused(store: &Rc<MemoryStore>) -> (Rc<Mock>, Guard<Rc<Mock>>) {
        let (mock, mut g) = guard_on(store, 10 * SECOND, "POST", "/checked?sig=k", &[]);
        g.on_request_headers(false);
        feed(&mock, &mut g, DOC.replace("19:20:08", "19:20:09").as_bytes());
        reply(&mock, &mut g, 401, r#"{"error":{"code":"InvalidAuthenticationToken"}}"#);
        assert_eq!(mock.calls.borrow()[1].0, "imds", "the refused token is replaced");
        reply(&mock, &mut g, 200, TOKEN);
        (mock, g)
    }

    fn counted(mock: &Mock, outcome: Outcome) -> usize {
        mock.counts.borrow().iter().filter(|c| **c == (9, outcome.counter())).count()
    }

    #[test]
    fn a_refused_token_is_replaced_and_its_outcome_counted() {
        let store = Rc::new(MemoryStore::new());
        checked(&store, "Succeeded");
        let (mock, mut g) = refused(&store);
        reply(&mock, &mut g, 401, "{}");
        assert_eq!(mock.sent_status(), Some(503), "the new token refused too: held");
        assert_eq!((counted(&mock, Outcome::TokenRejected), counted(&mock, Outcome::TokenFetched)), (1, 1));
        assert_eq!(counted(&mock, Outcome::Denied), 0, "a 401 is no missing permission");
        let logs = mock.logs.borrow();
        let named = "event=PUT/Succeeded application='/subscriptions/s/resourceGroups/r/providers/Microsoft.Solutions/applications/a' outcome=token_rejected held status=503";
        assert!(logs.len() == 1 && logs[0].contains(named), "{logs:?}");

        let store = Rc::new(MemoryStore::new());
        checked(&store, "Succeeded");
        let (mock, mut g) = refused(&store);
        reply(&mock, &mut g, 200, &arm_says("Succeeded"));
        assert!(mock.resumed.get(), "forwarded within the same deadline");
        assert_eq!(mock.header("x-webhook-verified").as_deref(), Some("true"));
        assert_eq!((counted(&mock, Outcome::Verified), counted(&mock, Outcome::TokenRejected)), (1, 0));
    }
}
