//! Azure's second authentication step: confirming each notification against Azure
//! Resource Manager (`arm_check` on an `azure_managed_app` endpoint).
//!
//! Plain Rust like the rest: the host is reached through [`Outbound`] (implemented by
//! `host.rs`, mocked in tests) and the clock is passed in as a value.
//! - [`config`]: the `arm_check` block;
//! - [`token`]: the shared token cache, its refresh lease and the token answers;
//! - [`request`]: the ARM GET and the token requests;
//! - [`consistency`]: the table between a notification and ARM's answer;
//! - [`verify`]: the filter's verify stage, from a validated event to a decision.

pub mod config;
pub mod consistency;
pub mod request;
pub mod token;
pub mod verify;

use crate::metrics::{Counter, ProfileCounter};
pub use crate::outbound::{Answer, Call, Outbound};

/// Everything the check counts, per endpoint (`webhook_guard_arm_check_total{outcome="<slug>"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// ARM confirmed the notification: forwarded, marked verified.
    Verified,
    /// ARM lags behind the notification: held (503), confirmed on a retry.
    NotYet,
    /// ARM contradicts the notification: held (503).
    Inconsistent,
    /// ARM answered 403: our identity cannot read the application.
    Denied,
    /// ARM answered 401: it refused the token itself, and a new one did not help or could
    /// not be had yet.
    TokenRejected,
    /// ARM answered 429.
    Throttled,
    /// ARM failed, timed out or answered something unusable.
    Unavailable,
    /// No token could be had for this notification.
    TokenUnavailable,
    /// Forwarded unverified because of `on_error: forward`.
    ForwardedUnverified,
    /// A token fetched and stored (root refreshes and request fetches).
    TokenFetched,
    /// A token fetch that failed.
    TokenFailed,
}

impl Outcome {
    pub const ALL: [Outcome; 11] = [
        Outcome::Verified,
        Outcome::NotYet,
        Outcome::Inconsistent,
        Outcome::Denied,
        Outcome::TokenRejected,
        Outcome::Throttled,
        Outcome::Unavailable,
        Outcome::TokenUnavailable,
        Outcome::ForwardedUnverified,
        Outcome::TokenFetched,
        Outcome::TokenFailed,
    ];

    /// The name in log lines (`outcome=<slug>`).
    pub fn slug(self) -> &'static str {
        self.labels().first().map_or("", |(_, slug)| slug)
    }

    /// Its counter, `arm_check_total{outcome="<slug>"}`.
    pub fn counter(self) -> Counter {
        Counter::Profile(ProfileCounter { family: "arm_check_total", labels: self.labels(), verdict: false })
    }

    fn labels(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Outcome::Verified => &[("outcome", "verified")],
            Outcome::NotYet => &[("outcome", "not_yet")],
            Outcome::Inconsistent => &[("outcome", "inconsistent")],
            Outcome::Denied => &[("outcome", "denied")],
            Outcome::TokenRejected => &[("outcome", "token_rejected")],
            Outcome::Throttled => &[("outcome", "throttled")],
            Outcome::Unavailable => &[("outcome", "unavailable")],
            Outcome::TokenUnavailable => &[("outcome", "token_unavailable")],
            Outcome::ForwardedUnverified => &[("outcome", "forwarded_unverified")],
            Outcome::TokenFetched => &[("outcome", "token_fetched")],
            Outcome::TokenFailed => &[("outcome", "token_failed")],
        }
    }
}

/// A recording [`Outbound`] over a shared in-memory store, for the module's tests.
#[cfg(test)]
pub mod testing {
    use super::config::{ArmCheck, RawArmCheck};
    use super::{Answer, Call, Outbound};
    use crate::shared::memory::MemoryStore;
    use crate::shared::{SharedStore, StoreError};
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    /// A dispatched call: (id, cluster, headers, body).
    pub type Recorded = (u32, String, Vec<(&'static str, String)>, Option<Vec<u8>>);

    /// One worker: its own calls, the workers' shared store.
    #[derive(Default)]
    pub struct Host {
        pub store: Rc<MemoryStore>,
        pub calls: RefCell<Vec<Recorded>>,
        /// The timeout of each call, in the same order.
        pub timeouts: RefCell<Vec<u64>>,
        pub next_id: Rc<Cell<u32>>,
        pub refuse_dispatch: Cell<bool>,
        pub next_answer: RefCell<Answer>,
    }

    impl Host {
        pub fn new() -> Rc<Host> {
            Rc::new(Host::default())
        }

        /// Another worker sharing this one's store (and call ids, as Envoy's are per VM
        /// but tests compare them).
        pub fn sharing(&self) -> Rc<Host> {
            Rc::new(Host { store: Rc::clone(&self.store), next_id: Rc::clone(&self.next_id), ..Host::default() })
        }
    }

    impl SharedStore for Host {
        fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            self.store.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            self.store.set(key, value, cas)
        }
    }

    impl Outbound for Host {
        fn dispatch(&self, call: &Call<'_>) -> Option<u32> {
            if self.refuse_dispatch.get() {
                return None;
            }
            let id = self.next_id.get() + 1;
            self.next_id.set(id);
            self.calls.borrow_mut().push((id, call.cluster.to_string(), call.headers.clone(), call.body.clone()));
            self.timeouts.borrow_mut().push(call.timeout_ms);
            Some(id)
        }
        fn answer(&self, _body_size: usize) -> Answer {
            self.next_answer.borrow().clone()
        }
    }

    /// An `arm_check` with clusters `arm` and `login`, the secret `Sup3rSecret`, and the
    /// given token source member.
    pub fn check(source: &str) -> ArmCheck {
        let json = format!(r#"{{"arm_cluster":"arm","token_cluster":"login","timeout_ms":3000,{source}}}"#);
        let env = |_: &str| Some("Sup3rSecret".to_string());
        let raw = RawArmCheck::parse(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        ArmCheck::validate(raw, "azure", &env).unwrap_or_else(|e| panic!("{e}"))
    }
}
