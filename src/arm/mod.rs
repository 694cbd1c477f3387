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

use crate::shared::SharedStore;

/// An outbound HTTP call through an Envoy cluster.
#[derive(Debug)]
pub struct Call<'a> {
    pub cluster: &'a str,
    /// Pseudo-headers included (`:method`, `:path`, `:authority`).
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
}

/// The answer to a [`Call`]: no status when the call failed or timed out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub status: Option<u16>,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    /// `Retry-After` in whole seconds (0 when absent or an HTTP date).
    pub fn retry_after(&self) -> u64 {
        self.retry_after.as_deref().and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }
}

/// What the check needs from the host besides shared data: calls out and their answers.
pub trait Outbound: SharedStore {
    /// Dispatches `call`; the id its answer will carry, `None` when it cannot be sent.
    fn dispatch(&self, call: &Call<'_>) -> Option<u32>;
    /// The answer of the call being reported, its body read up to `body_size` bytes.
    fn answer(&self, body_size: usize) -> Answer;
}

/// Everything the check counts, per endpoint (`webhook_guard.<endpoint>.arm.<slug>`).
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

    pub fn slug(self) -> &'static str {
        match self {
            Outcome::Verified => "verified",
            Outcome::NotYet => "not_yet",
            Outcome::Inconsistent => "inconsistent",
            Outcome::Denied => "denied",
            Outcome::TokenRejected => "token_rejected",
            Outcome::Throttled => "throttled",
            Outcome::Unavailable => "unavailable",
            Outcome::TokenUnavailable => "token_unavailable",
            Outcome::ForwardedUnverified => "forwarded_unverified",
            Outcome::TokenFetched => "token_fetched",
            Outcome::TokenFailed => "token_failed",
        }
    }
}

/// A recording [`Outbound`] over a shared in-memory store, for the module's tests.
#[cfg(test)]
pub mod testing {
    use super::config::ArmCheck;
    use super::{Answer, Call, Outbound};
    use crate::config::Profile;
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
        let raw = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        ArmCheck::validate(raw, Profile::AzureManagedApp, "azure", &env).unwrap_or_else(|e| panic!("{e}"))
    }
}
