//! The root context's work, one per worker, in plain Rust over [`RootHost`]: the safety net
//! for held heads whose body never came, the ARM tokens' refresh ahead of expiry, and the
//! streams whose ARM check waits for a token another fetch brings. `host.rs` only adapts
//! Envoy's root callbacks to it.

use crate::config::{Config, HeaderMode};
use crate::filter::{Guard, HttpHost, HOLD_TIMEOUT_SECS};
use crate::held::{Held, MAX_HELD};
use crate::profile::azure_managed_app::arm::config::ArmCheck;
use crate::profile::azure_managed_app::arm::verify::Awaiting;
use crate::profile::azure_managed_app::arm::{token, Outcome};
use std::cell::RefCell;
use std::rc::{Rc, Weak};

/// What the root needs from the proxy besides a stream's host calls.
pub trait RootHost: HttpHost {
    /// Makes stream `id` the current context, so a local reply or resume goes to it;
    /// `false` when the stream is gone.
    fn enter(&self, id: u32) -> bool;
}

/// A stream's flow, shared between its context and the root.
pub type Flow<H> = Rc<RefCell<Guard<H>>>;
/// Streams tracked by the root, shared with the stream contexts that add and release them.
pub type Streams<H> = Rc<RefCell<Held<Weak<RefCell<Guard<H>>>>>>;

pub struct Root<H> {
    host: H,
    config: Rc<Config>,
    /// Heads held until their body's first callback.
    pub held: Streams<H>,
    /// Streams whose ARM check waits for a token another fetch brings.
    pub waiting: Streams<H>,
    /// Calls of those streams made from the root, by call id: their answers come here.
    routed: Held<(u32, Weak<RefCell<Guard<H>>>)>,
    /// Token refreshes this worker started: (call id, endpoint index).
    refreshes: Vec<(u32, usize)>,
}

impl<H: RootHost> Root<H> {
    pub fn new(host: H, config: Rc<Config>) -> Self {
        let streams = || Rc::new(RefCell::new(Held::new(MAX_HELD)));
        Root { host, config, held: streams(), waiting: streams(), routed: Held::new(MAX_HELD), refreshes: Vec::new() }
    }

    pub fn config(&self) -> &Rc<Config> {
        &self.config
    }

    /// The root's host; each stream gets a clone.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// Prepares the shared token records; whether the root needs a tick (the safety net of
    /// `hold`, or tokens to refresh).
    pub fn start(&self) -> bool {
        let mut checks = self.arm_checks().peekable();
        let checks_arm = checks.peek().is_some();
        checks.for_each(|(_, check)| token::init(&self.host, check));
        self.config.header_mode == HeaderMode::Hold || checks_arm
    }

    /// Once a second: expired heads answered, tokens refreshed, waiting checks woken.
    pub fn on_tick(&mut self) {
        self.answer_expired_heads();
        self.refresh_tokens();
        self.wake_waiting();
    }

    /// The answer to a call the root made: a token refresh, or a waiting stream's call.
    pub fn on_call_response(&mut self, call: u32, body_size: usize) {
        if let Some(at) = self.refreshes.iter().position(|(id, _)| *id == call) {
            let (_, index) = self.refreshes.swap_remove(at);
            self.refreshed(index, body_size);
        } else if let Some((id, flow)) = self.routed.take(call) {
            self.on_stream(id, flow, |flow| flow.on_call_response(call, body_size));
        }
        self.wake_waiting();
    }

    /// The endpoints with an ARM check, with their index.
    fn arm_checks(&self) -> impl Iterator<Item = (usize, &ArmCheck)> {
        self.config.endpoints.iter().enumerate().filter_map(|(i, e)| Some((i, e.profile.arm_check()?)))
    }

    /// Answers the heads held longer than HOLD_TIMEOUT_SECS without a body callback.
    fn answer_expired_heads(&self) {
        let expired = self.held.try_borrow_mut().map(|mut h| h.expired(self.host.now_nanos(), HOLD_TIMEOUT_SECS * 1_000_000_000));
        for (id, flow) in expired.unwrap_or_default() {
            let Some(flow) = flow.upgrade() else { continue };
            // The local reply goes to the stream's context, not the root's.
            if self.host.enter(id) {
                if let Ok(mut flow) = flow.try_borrow_mut() {
                    flow.on_body_missing();
                }
            }
        }
    }

    /// Lets the checks waiting for another's token fetch look at the shared token again:
    /// when a fetch of this worker's root ends, and on every tick (for the fetches of
    /// other workers and of requests, which cannot reach these streams).
    fn wake_waiting(&mut self) {
        let waiting = self.waiting.try_borrow_mut().map(|mut w| w.take_all()).unwrap_or_default();
        for (id, flow) in waiting {
            self.on_stream(id, flow, Guard::on_token_ready);
        }
    }

    /// Runs `f` on stream `id`'s flow as that stream, then tracks what its check waits
    /// for: a call made here answers to the root.
    fn on_stream(&mut self, id: u32, flow: Weak<RefCell<Guard<H>>>, f: impl FnOnce(&mut Guard<H>)) {
        let Some(strong) = flow.upgrade() else { return };
        if !self.host.enter(id) {
            return;
        }
        let Ok(mut guard) = strong.try_borrow_mut() else { return };
        f(&mut guard);
        match guard.verify_awaiting() {
            Some(Awaiting::SharedToken) => {
                if let Ok(mut waiting) = self.waiting.try_borrow_mut() {
                    waiting.hold(id, self.host.now_nanos(), flow);
                }
            }
            Some(Awaiting::Call(call)) => self.routed.hold(call, self.host.now_nanos(), (id, flow)),
            None => {}
        }
    }

    /// Stores (or not) the token of a refresh this root started.
    fn refreshed(&self, index: usize, body_size: usize) {
        let Some(check) = self.config.endpoints.get(index).and_then(|e| e.profile.arm_check()) else {
            return;
        };
        let result = token::receive(&self.host, check, self.host.now_nanos(), &self.host.answer(body_size));
        self.token_fetched(index, result.map(|_| ()));
    }

    /// Refreshes each ARM token ahead of its expiry; the lease lets one worker do it.
    fn refresh_tokens(&mut self) {
        let now = self.host.now_nanos();
        let mut started = Vec::new();
        for (index, check) in self.arm_checks() {
            match token::refresh(&self.host, check, now) {
                Some(Ok(call)) => started.push((call, index)),
                Some(Err(failure)) => self.token_fetched(index, Err(failure)),
                None => {}
            }
        }
        self.refreshes.extend(started);
    }

    /// Counts and logs the end of a token fetch the root started (never the token).
    fn token_fetched(&self, index: usize, result: Result<(), token::Failure>) {
        match result {
            Ok(()) => self.host.count(index, Outcome::TokenFetched.counter()),
            Err(failure) => {
                self.host.count(index, Outcome::TokenFailed.counter());
                let name = self.config.endpoints.get(index).map_or("", |e| e.name.as_str());
                self.host.log(log::Level::Warn, &format!("webhook-guard: arm token refresh failed endpoint={name}: {failure}"));
            }
        }
    }
}

/// After a stream's head: a held head is tracked for the safety net. The clock is read
/// only then: most heads go on, and each read is a host call.
pub fn track_head<H: HttpHost>(id: u32, flow: &Flow<H>, held: &Streams<H>, now: impl FnOnce() -> u64) {
    if flow.try_borrow().is_ok_and(|guard| guard.holds_head()) {
        if let Ok(mut held) = held.try_borrow_mut() {
            held.hold(id, now(), Rc::downgrade(flow));
        }
    }
}

/// After a stream's body: a check waiting for another's token fetch is handed to the
/// root, which wakes it.
pub fn track_wait<H: HttpHost>(id: u32, flow: &Flow<H>, waiting: &Streams<H>, now: impl FnOnce() -> u64) {
    if flow.try_borrow().is_ok_and(|guard| guard.verify_awaiting() == Some(Awaiting::SharedToken)) {
        if let Ok(mut waiting) = waiting.try_borrow_mut() {
            waiting.hold(id, now(), Rc::downgrade(flow));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::mock::{guard_on, Mock, CONFIG, SECOND};
    use crate::outbound::Answer;
    use crate::shared::memory::MemoryStore;
    use std::cell::Cell;

    /// A worker's root over `store`, at `now`, with the mock's configuration.
    fn root(store: &Rc<MemoryStore>, now: u64) -> (Rc<Mock>, Root<Rc<Mock>>) {
        let config = Rc::new(Config::parse(CONFIG.as_bytes(), |_| None).unwrap());
        let host = Rc::new(Mock { store: Rc::clone(store), now: Cell::new(now), ..Mock::default() });
        (Rc::clone(&host), Root::new(host, config))
    }

    #[test]
    fn a_head_held_past_the_timeout_is_answered_503_once_as_its_stream() {
        let store = Rc::new(MemoryStore::new());
        let (host, mut root) = root(&store, SECOND);
        let (stream, guard) = guard_on(&store, SECOND, "POST", "/az?sig=k", &[]);
        let flow = Rc::new(RefCell::new(guard));
        flow.borrow_mut().on_request_headers(false);
        track_head(7, &flow, &root.held, || SECOND);
        host.now.set(SECOND + (HOLD_TIMEOUT_SECS - 1) * SECOND);
        root.on_tick();
        assert_eq!(stream.sent_status(), None, "not yet");
        host.now.set(SECOND + HOLD_TIMEOUT_SECS * SECOND);
        root.on_tick();
        assert_eq!(stream.sent_status(), Some(503));
        assert_eq!(*host.entered.borrow(), [7], "the reply went to the stream's context");
        *stream.sent.borrow_mut() = None;
        root.on_tick();
        assert_eq!(stream.sent_status(), None, "answered once");
    }

    #[test]
    fn a_head_whose_body_came_is_released_and_a_gone_stream_skipped() {
        let store = Rc::new(MemoryStore::new());
        let (host, mut root) = root(&store, 0);
        let (stream, guard) = guard_on(&store, 0, "POST", "/az?sig=k", &[]);
        let flow = Rc::new(RefCell::new(guard));
        flow.borrow_mut().on_request_headers(false);
        track_head(1, &flow, &root.held, || 0);
        root.held.borrow_mut().release(1);
        let (_, gone) = guard_on(&store, 0, "POST", "/az?sig=k", &[]);
        let gone = Rc::new(RefCell::new(gone));
        gone.borrow_mut().on_request_headers(false);
        track_head(2, &gone, &root.held, || 0);
        drop(gone);
        host.now.set(60 * SECOND);
        root.on_tick();
        assert_eq!(stream.sent_status(), None);
        assert!(host.entered.borrow().is_empty());
    }

    #[test]
    fn tokens_are_fetched_ahead_and_their_answers_stored_and_counted() {
        let store = Rc::new(MemoryStore::new());
        let (host, mut root) = root(&store, SECOND);
        assert!(root.start(), "hold and an ARM check both need the tick");
        root.on_tick();
        // The `checked` endpoint (index 9) has no token yet: the root fetches one.
        assert_eq!(host.calls.borrow().len(), 1, "{:?}", host.calls.borrow());
        assert_eq!(host.calls.borrow()[0].0, "imds");
        *host.answer.borrow_mut() = Answer { status: Some(200), retry_after: None, body: br#"{"access_token":"t0k","expires_in":3600}"#.to_vec() };
        root.on_call_response(1, 100);
        assert_eq!(*host.counts.borrow(), [(9, Outcome::TokenFetched.counter())]);
        // Fresh: the next tick fetches nothing.
        root.on_tick();
        assert_eq!(host.calls.borrow().len(), 1);
        // A failed refresh is counted and logged, never with the token.
        host.now.set(3600 * SECOND);
        root.on_tick();
        *host.answer.borrow_mut() = Answer { status: Some(500), retry_after: None, body: Vec::new() };
        root.on_call_response(2, 0);
        assert_eq!(host.counts.borrow().last(), Some(&(9, Outcome::TokenFailed.counter())));
        assert!(host.logs.borrow().iter().all(|l| !l.contains("t0k")), "{:?}", host.logs.borrow());
    }

    #[test]
    fn only_a_held_head_or_a_waiting_check_is_tracked() {
        let store = Rc::new(MemoryStore::new());
        let (_, root) = root(&store, 0);
        let (_, guard) = guard_on(&store, 0, "POST", "/az?sig=wrong", &[]);
        let flow = Rc::new(RefCell::new(guard));
        flow.borrow_mut().on_request_headers(false);
        track_head(3, &flow, &root.held, || 0);
        track_wait(3, &flow, &root.waiting, || 0);
        assert!(root.held.borrow_mut().take(3).is_none(), "refused, not held");
        assert!(root.waiting.borrow_mut().take(3).is_none());
    }
}
