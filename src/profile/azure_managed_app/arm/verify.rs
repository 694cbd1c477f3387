//! The verify stage: from a validated notification to a decision, through at most one
//! token fetch and one ARM GET. The filter holds the request while it waits and applies
//! the decision: forward (marked verified or not) or hold (503 + `Retry-After`).
//!
//! One deadline, `timeout_ms` after the check starts, bounds it all: waiting for a token
//! (its own fetch or another's) and the ARM call, which gets only the time left. A token
//! ARM refuses (401) is dropped for every worker and the check asks once more with a new
//! one, in the time left.

use super::config::{ArmCheck, OnError};
use super::consistency::{self, Arm, Consistency};
use super::token::{self, Failure, Token};
use super::{request, Answer, Call, Outbound, Outcome};
use crate::event::Event;
use crate::problem::{clip, echo};
use crate::profile::azure_managed_app::notification as azure;
use serde::Deserialize;

/// A check waiting for the answer of call `call`, or for another's token fetch.
#[derive(Debug)]
pub struct Pending {
    call: u32,
    waiting: Waiting,
    /// When the check must be decided (host clock, nanoseconds).
    deadline: u64,
    application: String,
    pair: (&'static str, &'static str),
    /// Whether this check fetched a token itself, and with what success.
    token_fetch: Option<bool>,
    /// When the token ARM is asked with was issued: what identifies it in the cache.
    token: u64,
    /// The token ARM refused (401), never used again by this check.
    refused: Option<u64>,
    /// Whether this check dropped the refused token (once per back-off for all workers).
    dropped: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// For its own token fetch (no valid one was cached).
    Token,
    /// For a token fetch another request or worker runs: re-checked with [`recheck`].
    Shared,
    /// For ARM's answer.
    Arm,
}

/// What a waiting check needs to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaiting {
    /// The answer of this call.
    Call(u32),
    /// A token in the shared cache: [`recheck`] when a fetch ends, and now and then.
    SharedToken,
}

impl Pending {
    /// A cached token this check may use: valid, and not the one ARM refused.
    fn fits(&self, token: &Token, now: u64) -> bool {
        token.usable(now) && Some(token.issued) != self.refused
    }

    pub fn awaiting(&self) -> Awaiting {
        match self.waiting {
            Waiting::Shared => Awaiting::SharedToken,
            Waiting::Token | Waiting::Arm => Awaiting::Call(self.call),
        }
    }
}

#[derive(Debug)]
pub enum Step {
    Wait(Pending),
    Done(Decision),
}

/// The check's result: its counter, and the detail of its one log line (no token, no
/// secret: ARM's and the issuer's bodies are never quoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub detail: String,
    /// The notification: its pair and application, as the log line names them.
    about: String,
    /// Whether the check dropped a token ARM refused.
    dropped: bool,
    /// ARM's own `Retry-After` when it throttled.
    arm_retry_after: u64,
    /// Set when the check fetched a token itself: whether that worked (counted apart).
    pub token_fetch: Option<bool>,
}

/// What the filter does with the notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Forward {
        verified: bool,
    },
    /// 503 with this `Retry-After`.
    Hold {
        retry_after: u64,
    },
}

impl Decision {
    fn new(outcome: Outcome, detail: String) -> Self {
        Decision { outcome, detail, about: String::new(), dropped: false, arm_retry_after: 0, token_fetch: None }
    }

    pub fn verdict(&self, check: &ArmCheck) -> Verdict {
        let hold = Verdict::Hold { retry_after: check.retry_after.max(self.arm_retry_after) };
        match (self.outcome, check.on_error) {
            (Outcome::Verified, _) => Verdict::Forward { verified: true },
            (Outcome::NotYet | Outcome::Inconsistent, _) | (_, OnError::Hold) => hold,
            (_, OnError::Forward) => Verdict::Forward { verified: false },
        }
    }

    /// The level of the decision's log line: an operator must act on `denied` at once, and
    /// on a refused token, said at error level once per back-off (by the check that
    /// dropped it; the others it holds meanwhile warn). Any check that dropped one warns.
    pub fn level(&self) -> log::Level {
        match (self.outcome, self.dropped) {
            (Outcome::Denied, _) | (Outcome::TokenRejected, true) => log::Level::Error,
            (Outcome::Verified, false) => log::Level::Debug,
            (Outcome::NotYet, false) => log::Level::Info,
            _ => log::Level::Warn,
        }
    }
}

/// The decision's one log line. ARM's and the issuer's bodies, tokens and secrets are
/// never in it.
pub fn log_line(endpoint: &str, decision: &Decision, verdict: Verdict) -> String {
    let action = match verdict {
        Verdict::Forward { verified } => format!("forwarded verified={verified}"),
        Verdict::Hold { retry_after } => format!("held status=503 retry_after={retry_after}"),
    };
    format!("webhook-guard: arm check endpoint={endpoint} {} outcome={} {action} detail={}", decision.about, decision.outcome.slug(), decision.detail)
}

/// Starts the check of `event`: asks ARM with the cached token, or fetches one first.
pub fn start<H: Outbound + ?Sized>(host: &H, check: &ArmCheck, event: &Event, now: u64) -> Step {
    let pair = azure::pair_of(&event.kind).and_then(|i| azure::PAIRS.get(i));
    let (Some(&pair), Some(application)) = (pair, event.subject.clone()) else {
        let decision = Decision::new(Outcome::Unavailable, "the event is not an Azure managed application notification".into());
        return Step::Done(Decision { about: format!("event={}", clip(&event.kind)), ..decision });
    };
    let deadline = now.saturating_add(check.timeout_ms.saturating_mul(MILLI));
    let pending = Pending { call: 0, waiting: Waiting::Shared, deadline, application, pair, token_fetch: None, token: 0, refused: None, dropped: false };
    with_token(host, check, pending, now)
}

/// Goes on with a check waiting for another's token fetch (a no-op for any other wait):
/// asks ARM if the token has come, gives up at the deadline, else waits on.
pub fn recheck<H: Outbound + ?Sized>(host: &H, check: &ArmCheck, pending: Pending, now: u64) -> Step {
    if pending.waiting != Waiting::Shared {
        return Step::Wait(pending);
    }
    with_token(host, check, pending, now)
}

/// Asks ARM with the cached token; without a valid one, fetches it or waits for the fetch
/// that runs: a request waits for one fetch at most, within its deadline.
fn with_token<H: Outbound + ?Sized>(host: &H, check: &ArmCheck, mut pending: Pending, now: u64) -> Step {
    if let Some(cached) = token::cached(host, check).filter(|t| pending.fits(t, now)) {
        return ask(host, check, pending, &cached, now);
    }
    let Some(left) = time_left(&pending, now) else {
        return done(&pending, token_failed(Failure::InFlight));
    };
    let needed = |t: Option<&Token>| t.is_none_or(|t| !pending.fits(t, now));
    match token::fetch(host, check, now, left, needed) {
        Ok(call) => {
            pending.call = call;
            pending.waiting = Waiting::Token;
            Step::Wait(pending)
        }
        Err(Failure::InFlight) => {
            pending.waiting = Waiting::Shared;
            Step::Wait(pending)
        }
        Err(failure) => done(&pending, token_failed(failure)),
    }
}

const MILLI: u64 = 1_000_000;

/// Whole milliseconds left before the deadline, `None` when none are.
fn time_left(pending: &Pending, now: u64) -> Option<u64> {
    Some(pending.deadline.saturating_sub(now) / MILLI).filter(|ms| *ms > 0)
}

/// Continues the check with the answer of call `call`.
pub fn resume<H: Outbound + ?Sized>(host: &H, check: &ArmCheck, pending: Pending, call: u32, answer: &Answer, now: u64) -> Step {
    if call != pending.call {
        return Step::Wait(pending);
    }
    match pending.waiting {
        Waiting::Shared => Step::Wait(pending),
        Waiting::Token => {
            let received = token::receive(host, check, now, answer);
            let pending = Pending { token_fetch: Some(received.is_ok()), ..pending };
            match received {
                Ok(token) => ask(host, check, pending, &token, now),
                Err(failure) => done(&pending, token_failed(failure)),
            }
        }
        Waiting::Arm if answer.status == Some(401) => refused(host, check, pending, now),
        Waiting::Arm => done(&pending, judge(&pending, answer)),
    }
}

/// Every decision names the notification; one after a refused token also says so.
fn done(pending: &Pending, decision: Decision) -> Step {
    let (event_type, state) = pending.pair;
    let about = format!("event={event_type}/{state} application='{}'", echo(&pending.application, 512));
    let mut detail = decision.detail;
    if pending.refused.is_some() && decision.outcome != Outcome::TokenRejected {
        detail.push_str("; ARM had refused the first token (401)");
    }
    Step::Done(Decision { token_fetch: pending.token_fetch, about, detail, dropped: pending.dropped, ..decision })
}

/// What a 401 means, unlike a 403 (the token itself, not a missing permission).
const REFUSED: &str = "the token itself is refused (a missing permission is 403): check the identity's tenant (the application's subscription's, or the offer's for Marketplace), the token's audience (https://management.azure.com/) and clock skew";

/// ARM refused the token (401): dropped for every worker, and the check asks once more
/// with another, in the time left. A token younger than the back-off is kept
/// (token::drop_refused), so an identity ARM refuses costs one token fetch per back-off.
fn refused<H: Outbound + ?Sized>(host: &H, check: &ArmCheck, mut pending: Pending, now: u64) -> Step {
    let rejected = |what: &str| Decision::new(Outcome::TokenRejected, format!("ARM refused {what}; {REFUSED}"));
    if pending.refused.is_some() {
        return done(&pending, rejected("the new token too (401)"));
    }
    match token::drop_refused(host, check, now, pending.token) {
        Ok(()) => pending.dropped = true,
        Err(Failure::Recent) => return done(&pending, rejected(&format!("the token (401): {}", Failure::Recent))),
        // Gone already, being replaced, or the issuer backs off: `with_token` sees which.
        Err(_) => {}
    }
    pending.refused = Some(pending.token);
    if time_left(&pending, now).is_none() {
        return done(&pending, rejected("the token (401): no time was left to ask again with a new one"));
    }
    with_token(host, check, pending, now)
}

fn token_failed(failure: Failure) -> Decision {
    Decision::new(Outcome::TokenUnavailable, failure.to_string())
}

/// Asks ARM, with what is left of the check's time.
fn ask<H: Outbound + ?Sized>(host: &H, check: &ArmCheck, mut pending: Pending, token: &Token, now: u64) -> Step {
    let Some(left) = time_left(&pending, now) else {
        return done(&pending, Decision::new(Outcome::Unavailable, "no time left for the ARM request: the token came at the deadline".into()));
    };
    let call = request::application(check, &pending.application, &token.value).and_then(|call| host.dispatch(&Call { timeout_ms: left, ..call }));
    let Some(call) = call else {
        return done(&pending, Decision::new(Outcome::Unavailable, "the ARM request could not be sent (is the Envoy cluster defined?)".into()));
    };
    pending.call = call;
    pending.waiting = Waiting::Arm;
    pending.token = token.issued;
    Step::Wait(pending)
}

#[derive(Deserialize)]
struct Resource {
    properties: Properties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Properties {
    provisioning_state: String,
}

/// ARM's answer against the consistency table.
fn judge(pending: &Pending, answer: &Answer) -> Decision {
    let (event_type, state) = pending.pair;
    let about = format!("{event_type}/{state}");
    // Read as text: serde_json's reader of bytes would be a second copy of the parser.
    let resource = |body: &[u8]| {
        let text = std::str::from_utf8(body).ok()?;
        serde_json::from_str::<Resource>(text).ok().map(|r| r.properties.provisioning_state)
    };
    let arm = match answer.status {
        Some(200) => match resource(&answer.body) {
            Some(state) => state,
            None => return Decision::new(Outcome::Unavailable, "ARM answered 200 without properties.provisioningState".into()),
        },
        Some(404) => String::new(),
        Some(403) => {
            let detail = "ARM refused our identity (403): it cannot read the application; grant it Reader on the application, or for Marketplace offers an authorization in the offer";
            return Decision::new(Outcome::Denied, detail.into());
        }
        Some(429) => {
            let mut decision = Decision::new(Outcome::Throttled, "ARM is throttling (429)".into());
            decision.arm_retry_after = answer.retry_after().min(3600);
            return decision;
        }
        Some(status) => return Decision::new(Outcome::Unavailable, format!("ARM answered {status}")),
        None => return Decision::new(Outcome::Unavailable, "ARM did not answer in time".into()),
    };
    let (seen, answer) = if arm.is_empty() { ("404".to_string(), Arm::Absent) } else { (format!("provisioningState '{}'", clip(&arm)), Arm::State(&arm)) };
    match consistency::judge(event_type, state, answer) {
        Consistency::Consistent => Decision::new(Outcome::Verified, format!("ARM answered {seen}: consistent with {about}")),
        Consistency::NotYet => Decision::new(Outcome::NotYet, format!("ARM answered {seen}: not yet consistent with {about}")),
        Consistency::Inconsistent => Decision::new(Outcome::Inconsistent, format!("ARM answered {seen}: inconsistent with {about}")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, Host};
    use super::*;
    use std::rc::Rc;

    const SECOND: u64 = 1_000_000_000;
    const NOW: u64 = 1_000 * SECOND;
    const APP: &str = "/subscriptions/s-1/resourceGroups/rg/providers/Microsoft.Solutions/applications/app";
    const CLIENT: &str = r#""client_credentials":{"tenant":"t","client_id":"c","client_secret_env":"S"}"#;

    fn event(kind: &str) -> Event {
        let doc = format!(
            r#"{{"eventType":"{}","provisioningState":"{}","eventTime":"2019-08-14T19:20:08Z","applicationId":"{APP}",
            "applicationDefinitionId":"subscriptions/s-1/resourceGroups/r/providers/Microsoft.Solutions/applicationDefinitions/d"}}"#,
            kind.split('/').next().unwrap(),
            kind.split('/').nth(1).unwrap()
        );
        azure::validate(doc.as_bytes()).unwrap()
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer { status: Some(status), retry_after: None, body: body.as_bytes().to_vec() }
    }

    fn arm_state(state: &str) -> Answer {
        answer(200, &format!(r#"{{"id":"{APP}","properties":{{"provisioningState":"{state}"}},"kind":"ServiceCatalog"}}"#))
    }

    /// Runs a check to its decision: the token answer (when fetched), then ARM's.
    fn run(host: &Host, check: &ArmCheck, kind: &str, token: Option<Answer>, arm: Answer) -> Decision {
        let mut step = start(host, check, &event(kind), NOW);
        for reply in token.into_iter().chain([arm]) {
            let Step::Wait(pending) = step else { break };
            let call = pending.call;
            step = resume(host, check, pending, call, &reply, NOW);
        }
        match step {
            Step::Done(decision) => decision,
            Step::Wait(p) => panic!("still waiting: {p:?}"),
        }
    }

    fn token_answer() -> Answer {
        answer(200, r#"{"token_type":"Bearer","expires_in":3599,"access_token":"tok-1"}"#)
    }

    #[test]
    fn fetches_a_token_then_asks_arm_exactly() {
        let host = Host::new();
        let check = check(CLIENT);
        let decision = run(&host, &check, "PUT/Succeeded", Some(token_answer()), arm_state("Succeeded"));
        assert_eq!(decision.outcome, Outcome::Verified);
        assert_eq!(decision.verdict(&check), Verdict::Forward { verified: true });
        let calls = host.calls.borrow();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].1, "login");
        let (_, cluster, headers, body) = &calls[1];
        assert_eq!(cluster, "arm");
        assert!(headers.contains(&(":path", format!("{APP}?api-version=2021-07-01"))));
        assert!(headers.contains(&("authorization", "Bearer tok-1".to_string())));
        assert!(body.is_none());
        assert!(!decision.detail.contains("tok-1") && !decision.detail.contains("Sup3rSecret"));
        assert_eq!(decision.token_fetch, Some(true));
    }

    #[test]
    fn a_cached_token_is_used_by_every_worker() {
        let host = Host::new();
        let check = check(CLIENT);
        run(&host, &check, "PUT/Succeeded", Some(token_answer()), arm_state("Succeeded"));
        let worker2 = host.sharing();
        let decision = run(&worker2, &check, "PUT/Accepted", None, arm_state("Succeeded"));
        assert_eq!(decision.outcome, Outcome::Verified, "state moved on");
        assert_eq!(decision.token_fetch, None);
        assert_eq!(worker2.calls.borrow().len(), 1, "ARM only");
    }

    #[test]
    fn outcomes_and_what_they_do() {
        let check_hold = check(CLIENT);
        let check_forward = check(&format!(r#""on_error":"forward",{CLIENT}"#));
        let throttled = Answer { status: Some(429), retry_after: Some("120".into()), body: vec![] };
        let cases = [
            ("PUT/Succeeded", arm_state("Accepted"), Outcome::NotYet, Verdict::Hold { retry_after: 30 }, Verdict::Hold { retry_after: 30 }),
            ("PUT/Succeeded", answer(404, "{}"), Outcome::Inconsistent, Verdict::Hold { retry_after: 30 }, Verdict::Hold { retry_after: 30 }),
            (
                "DELETE/Deleted",
                answer(404, r#"{"error":{"code":"ResourceNotFound"}}"#),
                Outcome::Verified,
                Verdict::Forward { verified: true },
                Verdict::Forward { verified: true },
            ),
            ("PUT/Succeeded", answer(403, "{}"), Outcome::Denied, Verdict::Hold { retry_after: 30 }, Verdict::Forward { verified: false }),
            ("PUT/Succeeded", answer(401, "{}"), Outcome::TokenRejected, Verdict::Hold { retry_after: 30 }, Verdict::Forward { verified: false }),
            ("PUT/Succeeded", throttled, Outcome::Throttled, Verdict::Hold { retry_after: 120 }, Verdict::Forward { verified: false }),
            ("PUT/Succeeded", answer(500, ""), Outcome::Unavailable, Verdict::Hold { retry_after: 30 }, Verdict::Forward { verified: false }),
            ("PUT/Succeeded", Answer::default(), Outcome::Unavailable, Verdict::Hold { retry_after: 30 }, Verdict::Forward { verified: false }),
            (
                "PUT/Succeeded",
                answer(200, r#"{"properties":{}}"#),
                Outcome::Unavailable,
                Verdict::Hold { retry_after: 30 },
                Verdict::Forward { verified: false },
            ),
        ];
        for (kind, arm, outcome, hold, forward) in cases {
            let decision = run(&Host::new(), &check_hold, kind, Some(token_answer()), arm);
            assert_eq!(decision.outcome, outcome, "{kind}: {}", decision.detail);
            assert_eq!(decision.verdict(&check_hold), hold, "{kind}: {}", decision.detail);
            assert_eq!(decision.verdict(&check_forward), forward, "{kind}: {}", decision.detail);
        }
    }

    #[test]
    fn denied_names_the_cause_at_error_level() {
        let decision = run(&Host::new(), &check(CLIENT), "PUT/Succeeded", Some(token_answer()), answer(403, "{}"));
        assert_eq!(decision.level(), log::Level::Error);
        assert!(decision.detail.contains("ARM refused our identity (403)") && decision.detail.contains("grant it Reader"), "{}", decision.detail);
        let line = log_line("azure", &decision, Verdict::Hold { retry_after: 30 });
        assert!(line.starts_with(&format!("webhook-guard: arm check endpoint=azure event=PUT/Succeeded application='{APP}' outcome=denied held")), "{line}");
    }

    #[test]
    fn token_failures_decide_without_calling_arm() {
        let host = Host::new();
        let check = check(CLIENT);
        let decision = run(&host, &check, "PUT/Succeeded", None, answer(401, r#"{"error":"invalid_client"}"#));
        assert_eq!(decision.outcome, Outcome::TokenUnavailable);
        assert!(decision.detail.contains("refused the request (401)"), "{}", decision.detail);
        let line = log_line("azure", &decision, Verdict::Hold { retry_after: 30 });
        assert!(line.contains(&format!("event=PUT/Succeeded application='{APP}' outcome=token_unavailable")), "the notification is named: {line}");
        assert_eq!(decision.token_fetch, Some(false));
        assert_eq!(host.calls.borrow().len(), 1, "no ARM call");
        // The failed fetch backs off: the next request does not call the issuer again.
        let Step::Done(decision) = start(&*host, &check, &event("PUT/Succeeded"), NOW + SECOND) else { panic!("waits") };
        assert_eq!(decision.outcome, Outcome::TokenUnavailable);
        assert_eq!(host.calls.borrow().len(), 1);
    }

    #[test]
    fn answers_to_other_calls_are_ignored() {
        let host = Host::new();
        let check = check(CLIENT);
        let Step::Wait(pending) = start(&*host, &check, &event("PUT/Succeeded"), NOW) else { panic!("no wait") };
        let call = pending.call;
        let Step::Wait(pending) = resume(&*host, &check, pending, call + 7, &token_answer(), NOW) else { panic!("settled") };
        assert_eq!(pending.call, call);
    }

    const MS: u64 = 1_000_000;

    fn waiting(step: Step) -> Pending {
        match step {
            Step::Wait(pending) => pending,
            Step::Done(decision) => panic!("decided: {decision:?}"),
        }
    }

    #[test]
    fn a_request_finding_a_fetch_running_waits_for_its_token() {
        let worker1 = Host::new();
        let check = check(CLIENT);
        let fetching = waiting(start(&*worker1, &check, &event("PUT/Succeeded"), NOW));
        let worker2 = worker1.sharing();
        let pending = waiting(start(&*worker2, &check, &event("PUT/Succeeded"), NOW + 10 * MS));
        assert_eq!(pending.awaiting(), Awaiting::SharedToken, "no 'busy' refusal while a fetch runs");
        let pending = waiting(recheck(&*worker2, &check, pending, NOW + 500 * MS));
        assert_eq!(pending.awaiting(), Awaiting::SharedToken, "still no token");
        let call = fetching.call;
        waiting(resume(&*worker1, &check, fetching, call, &token_answer(), NOW + 1000 * MS));
        let pending = waiting(recheck(&*worker2, &check, pending, NOW + 1000 * MS));
        let Awaiting::Call(arm) = pending.awaiting() else { panic!("asks ARM") };
        assert_eq!(worker2.calls.borrow()[0].1, "arm", "with the other's token, not a fetch of its own");
        assert_eq!(*worker2.timeouts.borrow(), [2010], "what is left of the 3 s started at +10 ms");
        let Step::Done(decision) = resume(&*worker2, &check, pending, arm, &arm_state("Succeeded"), NOW + 1100 * MS) else { panic!("waits") };
        assert_eq!((decision.outcome, decision.token_fetch), (Outcome::Verified, None));
    }

    #[test]
    fn waiting_for_another_fetch_ends_at_the_deadline() {
        let worker1 = Host::new();
        let check = check(CLIENT);
        waiting(start(&*worker1, &check, &event("PUT/Succeeded"), NOW));
        let worker2 = worker1.sharing();
        let pending = waiting(start(&*worker2, &check, &event("PUT/Succeeded"), NOW));
        let pending = waiting(recheck(&*worker2, &check, pending, NOW + 2999 * MS));
        let Step::Done(decision) = recheck(&*worker2, &check, pending, NOW + 3000 * MS) else { panic!("waits on") };
        assert_eq!(decision.outcome, Outcome::TokenUnavailable);
        assert!(decision.detail.contains("another token fetch is still running"), "{}", decision.detail);
        assert!(worker2.calls.borrow().is_empty());
    }

    #[test]
    fn a_failed_fetch_ends_the_wait_at_once() {
        let worker1 = Host::new();
        let check = check(CLIENT);
        let fetching = waiting(start(&*worker1, &check, &event("PUT/Succeeded"), NOW));
        let worker2 = worker1.sharing();
        let pending = waiting(start(&*worker2, &check, &event("PUT/Succeeded"), NOW));
        let call = fetching.call;
        resume(&*worker1, &check, fetching, call, &answer(503, ""), NOW + 100 * MS);
        let Step::Done(decision) = recheck(&*worker2, &check, pending, NOW + 100 * MS) else { panic!("waits on") };
        assert_eq!(decision.outcome, Outcome::TokenUnavailable);
        assert!(decision.detail.contains("failed moments ago"), "the back-off: {}", decision.detail);
        assert_eq!(decision.about, format!("event=PUT/Succeeded application='{APP}'"));
    }

    #[test]
    fn the_arm_call_gets_only_what_is_left_of_one_deadline() {
        let host = Host::new();
        let check = check(CLIENT);
        let pending = waiting(start(&*host, &check, &event("PUT/Succeeded"), NOW));
        let call = pending.call;
        waiting(resume(&*host, &check, pending, call, &token_answer(), NOW + 1200 * MS));
        assert_eq!(*host.timeouts.borrow(), [3000, 1800], "token, then ARM within the same 3 s");
        let host = Host::new();
        let pending = waiting(start(&*host, &check, &event("PUT/Succeeded"), NOW));
        let call = pending.call;
        let Step::Done(decision) = resume(&*host, &check, pending, call, &token_answer(), NOW + 3000 * MS) else { panic!("asks ARM") };
        assert_eq!(decision.outcome, Outcome::Unavailable, "{}", decision.detail);
        assert_eq!(host.calls.borrow().len(), 1, "no ARM call past the deadline");
    }

    #[test]
    fn recheck_leaves_other_waits_alone() {
        let host = Host::new();
        let check = check(CLIENT);
        let pending = waiting(start(&*host, &check, &event("PUT/Succeeded"), NOW));
        let call = pending.call;
        let pending = waiting(recheck(&*host, &check, pending, NOW + 5000 * MS));
        assert_eq!(pending.awaiting(), Awaiting::Call(call));
    }
    const REFUSED_TOKEN: &str = r#"{"error":{"code":"InvalidAuthenticationToken","message":"The access token is invalid."}}"#;

    fn token_named(value: &str) -> Answer {
        answer(200, &format!(r#"{{"token_type":"Bearer","expires_in":3599,"access_token":"{value}"}}"#))
    }

    /// A worker with `value` in the shared cache, fetched 10 s before NOW (past the back-off;
    /// no call left recorded).
    fn with_token_of_10s(value: &str) -> (Rc<Host>, ArmCheck) {
        let (host, check) = (Host::new(), check(CLIENT));
        token::fetch(&*host, &check, NOW - 10 * SECOND, 1000, |_| true).unwrap();
        token::receive(&*host, &check, NOW - 10 * SECOND, &token_named(value)).unwrap();
        host.calls.borrow_mut().clear();
        host.timeouts.borrow_mut().clear();
        (host, check)
    }

    /// Answers each call of `step` at `now` with `reply(cluster)`, to the decision.
    fn settle(host: &Host, check: &ArmCheck, mut step: Step, now: u64, reply: impl Fn(&str) -> Answer) -> Decision {
        loop {
            match step {
                Step::Done(decision) => return decision,
                Step::Wait(pending) => {
                    let Awaiting::Call(call) = pending.awaiting() else { panic!("waits for another's fetch") };
                    let cluster = host.calls.borrow().iter().find(|c| c.0 == call).map(|c| c.1.clone()).unwrap();
                    step = resume(host, check, pending, call, &reply(&cluster), now);
                }
            }
        }
    }

    fn bearer(host: &Host, at: usize) -> String {
        let calls = host.calls.borrow();
        calls[at].2.iter().find(|(k, _)| *k == "authorization").map(|(_, v)| v.clone()).unwrap()
    }

    fn clusters(host: &Host) -> Vec<String> {
        host.calls.borrow().iter().map(|c| c.1.clone()).collect()
    }

    #[test]
    fn a_refused_token_is_dropped_and_the_check_asks_again_with_a_new_one() {
        let (host, check) = with_token_of_10s("tok-old");
        let arm = std::cell::Cell::new(0);
        let decision = settle(&host, &check, start(&*host, &check, &event("PUT/Succeeded"), NOW), NOW, |cluster| match cluster {
            "login" => token_named("tok-new"),
            _ if arm.replace(arm.get() + 1) == 0 => answer(401, REFUSED_TOKEN),
            _ => arm_state("Succeeded"),
        });
        assert_eq!((decision.outcome, decision.token_fetch), (Outcome::Verified, Some(true)), "{}", decision.detail);
        assert_eq!(decision.level(), log::Level::Warn, "a replaced token is worth a line");
        assert!(decision.detail.contains("ARM had refused the first token (401)"), "{}", decision.detail);
        assert_eq!(clusters(&host), ["arm", "login", "arm"]);
        assert_eq!((bearer(&host, 0), bearer(&host, 2)), ("Bearer tok-old".to_string(), "Bearer tok-new".to_string()));
        assert_eq!(token::cached(&*host, &check).unwrap().value, "tok-new");
        // The other worker goes on with the new token: no fetch of its own.
        let worker2 = host.sharing();
        let decision = run(&worker2, &check, "PUT/Succeeded", None, arm_state("Succeeded"));
        assert_eq!(decision.outcome, Outcome::Verified);
        assert_eq!((clusters(&worker2), bearer(&worker2, 0)), (vec!["arm".to_string()], "Bearer tok-new".to_string()));
    }

    #[test]
    fn a_token_refused_again_or_moments_after_its_fetch_is_kept_until_the_back_off_ends() {
        let (host, check) = with_token_of_10s("tok-1");
        let refused = |cluster: &str| if cluster == "login" { token_named("tok-2") } else { answer(401, REFUSED_TOKEN) };
        let decision = settle(&host, &check, start(&*host, &check, &event("PUT/Succeeded"), NOW), NOW, refused);
        assert_eq!((decision.outcome, decision.level()), (Outcome::TokenRejected, log::Level::Error), "the dropping check says it");
        assert!(decision.detail.starts_with("ARM refused the new token too (401); ") && decision.detail.contains("audience"), "{}", decision.detail);
        assert_eq!(decision.verdict(&check), Verdict::Hold { retry_after: 30 });
        assert_eq!(clusters(&host), ["arm", "login", "arm"], "one retry");
        host.calls.borrow_mut().clear();
        let decision = settle(&host, &check, start(&*host, &check, &event("PUT/Succeeded"), NOW + 4999 * MS), NOW + 4999 * MS, refused);
        assert_eq!((decision.outcome, decision.level()), (Outcome::TokenRejected, log::Level::Warn));
        assert!(decision.detail.contains("fetched less than 5 s ago: the next one comes once that back-off ends"), "{}", decision.detail);
        assert_eq!(clusters(&host), ["arm"], "no fetch within the back-off");
        assert_eq!(token::cached(&*host, &check).unwrap().value, "tok-2", "kept meanwhile");
        host.calls.borrow_mut().clear();
        settle(&host, &check, start(&*host, &check, &event("PUT/Succeeded"), NOW + 5 * SECOND), NOW + 5 * SECOND, refused);
        assert_eq!(clusters(&host), ["arm", "login", "arm"], "replaced again once it ends");
    }

    /// ARM refusing every token, a notification every 250 ms for 20 s: one fetch per 5 s
    /// back-off, and as many error lines; every other notification held at warn level.
    #[test]
    fn an_identity_arm_refuses_costs_one_fetch_and_one_error_per_back_off() {
        let (host, check) = with_token_of_10s("tok-0");
        let fetched = std::cell::Cell::new(0);
        let mut levels = Vec::new();
        for i in 0..80 {
            let now = NOW + i * 250 * MS;
            let decision = settle(&host, &check, start(&*host, &check, &event("PUT/Succeeded"), now), now, |cluster| {
                fetched.set(fetched.get() + 1);
                if cluster == "login" {
                    token_named(&format!("tok-{}", fetched.get()))
                } else {
                    answer(401, REFUSED_TOKEN)
                }
            });
            assert_eq!(decision.outcome, Outcome::TokenRejected);
            levels.push(decision.level());
        }
        let logins = clusters(&host).iter().filter(|c| *c == "login").count();
        assert_eq!(logins, 4, "at 0, 5, 10 and 15 s");
        assert_eq!(levels.iter().filter(|l| **l == log::Level::Error).count(), 4);
        assert_eq!(levels.iter().filter(|l| **l == log::Level::Warn).count(), 76);
    }

    #[test]
    fn workers_refused_together_fetch_one_new_token() {
        let (worker1, check) = with_token_of_10s("tok-old");
        let worker2 = worker1.sharing();
        let asking1 = waiting(start(&*worker1, &check, &event("PUT/Succeeded"), NOW));
        let asking2 = waiting(start(&*worker2, &check, &event("PUT/Succeeded"), NOW));
        let call = asking1.call;
        let fetching = waiting(resume(&*worker1, &check, asking1, call, &answer(401, REFUSED_TOKEN), NOW + 10 * MS));
        let call = asking2.call;
        let pending = waiting(resume(&*worker2, &check, asking2, call, &answer(401, REFUSED_TOKEN), NOW + 20 * MS));
        assert_eq!(pending.awaiting(), Awaiting::SharedToken, "waits for worker 1's fetch");
        assert!(token::cached(&*worker2, &check).is_none(), "dropped for both");
        let call = fetching.call;
        waiting(resume(&*worker1, &check, fetching, call, &token_named("tok-new"), NOW + 100 * MS));
        let pending = waiting(recheck(&*worker2, &check, pending, NOW + 100 * MS));
        let Awaiting::Call(arm) = pending.awaiting() else { panic!("asks ARM") };
        assert_eq!(clusters(&worker2), ["arm", "arm"]);
        assert_eq!(bearer(&worker2, 1), "Bearer tok-new");
        let Step::Done(decision) = resume(&*worker2, &check, pending, arm, &arm_state("Succeeded"), NOW + 200 * MS) else { panic!("waits") };
        assert_eq!((decision.outcome, decision.level()), (Outcome::Verified, log::Level::Debug), "worker 1 dropped it: {}", decision.detail);
        assert_eq!(clusters(&worker1).iter().filter(|c| *c == "login").count(), 1);
    }

    #[test]
    fn a_token_refused_at_the_deadline_is_dropped_for_the_next_notifications() {
        let (host, check) = with_token_of_10s("tok-old");
        let asking = waiting(start(&*host, &check, &event("PUT/Succeeded"), NOW));
        let call = asking.call;
        let Step::Done(decision) = resume(&*host, &check, asking, call, &answer(401, REFUSED_TOKEN), NOW + 3000 * MS) else { panic!("waits") };
        assert_eq!((decision.outcome, decision.level()), (Outcome::TokenRejected, log::Level::Error));
        assert!(decision.detail.contains("no time was left"), "{}", decision.detail);
        assert!(token::cached(&*host, &check).is_none(), "the root's tick fetches the next");
        assert!(token::refresh(&*host, &check, NOW + 3100 * MS).is_some_and(|started| started.is_ok()));
    }
}
