//! The proxy-wasm "shared data" store, as a trait the host layer implements and tests mock.
//!
//! Envoy runs one Wasm VM per worker thread; shared data is the only state those VMs share.
//! Every key carries a CAS token that changes on each write, so a read-modify-write is made
//! safe by writing back with the token that was read and starting over on a mismatch
//! ([`update`]). Envoy never frees a key: callers must keep their key space bounded.
//!
//! One race is inherent to the host API: a key that does not exist yet is always settable,
//! so two workers that both find a key missing can both write it and one write is lost.
//! That can happen only while a key is first created; every later write is CAS-checked.

/// The key `wg.{kind}.{endpoint}.{n}` where `n` = FNV-1a 64 of `value` modulo `slots`
/// (0 is read as 1): a fixed key set per endpoint and kind, whatever `value` senders send.
pub fn slot_key(kind: &str, endpoint: &str, value: &str, slots: u32) -> String {
    let n = fnv1a64(value.as_bytes()) % u64::from(slots.max(1));
    format!("wg.{kind}.{endpoint}.{n}")
}

/// FNV-1a, 64-bit: stable across builds and VMs, so every worker picks the same slot.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// Access to the host's shared data.
pub trait SharedStore {
    /// Current value and CAS token of `key` (None when absent).
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes `value` if the key's CAS token still equals `cas` (None: unconditional).
    /// A missing key is always settable, whatever `cas` is.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// Why a [`SharedStore::set`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Someone wrote the key since it was read: read again and retry.
    CasMismatch,
    /// Any other host failure; not worth retrying on the request path.
    Other,
}

/// Why [`update`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateError {
    /// Every attempt lost its CAS race.
    Contended,
    /// The host reported a failure other than a CAS mismatch.
    Store,
}

/// Read-modify-write of `key`, retried on CAS mismatches, at most `max_attempts` rounds
/// (0 counts as 1).
///
/// `f` gets the current value (None when the key is absent) and returns the value to write
/// (None: nothing to write, the read alone decides) and the result to hand back once the
/// write, if any, has landed. `f` runs once per attempt, on a fresh read each time, so it
/// must not have side effects beyond computing its answer.
///
/// A [`StoreError::Other`] ends the loop at once with [`UpdateError::Store`]: it is a host
/// failure rather than contention, so retrying would only add latency, and the caller has
/// to apply its fail-open/closed policy either way.
pub fn update<S, T, F>(store: &S, key: &str, max_attempts: u32, mut f: F) -> Result<T, UpdateError>
where
    S: SharedStore + ?Sized,
    F: FnMut(Option<&[u8]>) -> (Option<Vec<u8>>, T),
{
    for _ in 0..max_attempts.max(1) {
        let (current, cas) = store.get(key);
        let (next, result) = f(current.as_deref());
        let Some(next) = next else {
            return Ok(result);
        };
        match store.set(key, &next, cas) {
            Ok(()) => return Ok(result),
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Other) => return Err(UpdateError::Store),
        }
    }
    Err(UpdateError::Contended)
}

/// An in-memory [`SharedStore`] with Envoy's CAS semantics, for unit tests.
#[cfg(test)]
pub mod memory {
    use super::{SharedStore, StoreError};
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    /// Behaves like Envoy's shared data: every write bumps the key's CAS token; a set with a
    /// stale token fails; a missing key is always settable. Failures can be injected.
    #[derive(Debug, Default)]
    pub struct MemoryStore {
        entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        last_cas: Cell<u32>,
        conflicts: Cell<u32>,
        failures: Cell<u32>,
        writes: Cell<u32>,
        mismatches: Cell<u32>,
    }

    impl MemoryStore {
        pub fn new() -> Self {
            Self::default()
        }

        /// The next `n` sets fail with [`StoreError::CasMismatch`] (as if another worker
        /// had just written the key), whatever their token.
        pub fn conflict_next_sets(&self, n: u32) {
            self.conflicts.set(n);
        }

        /// The next `n` sets fail with [`StoreError::Other`] (checked after conflicts).
        pub fn fail_next_sets(&self, n: u32) {
            self.failures.set(n);
        }

        /// Writes `value` unconditionally, bypassing injected failures (e.g. to plant garbage).
        pub fn put(&self, key: &str, value: &[u8]) {
            let cas = self.bump();
            self.entries.borrow_mut().insert(key.to_owned(), (value.to_vec(), cas));
        }

        /// The stored bytes of `key`.
        pub fn value(&self, key: &str) -> Option<Vec<u8>> {
            self.entries.borrow().get(key).map(|(v, _)| v.clone())
        }

        /// How many keys exist.
        pub fn key_count(&self) -> usize {
            self.entries.borrow().len()
        }

        /// Successful sets so far.
        pub fn writes(&self) -> u32 {
            self.writes.get()
        }

        /// Sets that failed with a CAS mismatch, injected or genuine.
        pub fn mismatches(&self) -> u32 {
            self.mismatches.get()
        }

        fn bump(&self) -> u32 {
            let cas = self.last_cas.get().wrapping_add(1).max(1);
            self.last_cas.set(cas);
            cas
        }

        fn mismatch(&self) -> Result<(), StoreError> {
            self.mismatches.set(self.mismatches.get().saturating_add(1));
            Err(StoreError::CasMismatch)
        }
    }

    impl SharedStore for MemoryStore {
        fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            match self.entries.borrow().get(key) {
                Some((v, cas)) => (Some(v.clone()), Some(*cas)),
                None => (None, None),
            }
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            if self.conflicts.get() > 0 {
                self.conflicts.set(self.conflicts.get() - 1);
                return self.mismatch();
            }
            if self.failures.get() > 0 {
                self.failures.set(self.failures.get() - 1);
                return Err(StoreError::Other);
            }
            let current = self.entries.borrow().get(key).map(|(_, c)| *c);
            if let (Some(current), Some(expected)) = (current, cas) {
                if current != expected {
                    return self.mismatch();
                }
            }
            self.put(key, value);
            self.writes.set(self.writes.get().saturating_add(1));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::memory::MemoryStore;
    use super::*;

    #[test]
    fn slot_keys_use_fnv1a_64() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(slot_key("rl", "ep", "x", 1), "wg.rl.ep.0");
    }

    fn increment(store: &MemoryStore, attempts: u32) -> Result<u8, UpdateError> {
        update(store, "k", attempts, |cur| {
            let n = cur.and_then(|b| b.first().copied()).unwrap_or(0).saturating_add(1);
            (Some(vec![n]), n)
        })
    }

    #[test]
    fn creates_then_updates() {
        let s = MemoryStore::new();
        assert_eq!(increment(&s, 3), Ok(1));
        assert_eq!(increment(&s, 3), Ok(2));
        assert_eq!(s.value("k"), Some(vec![2]));
    }

    #[test]
    fn retries_conflicts_then_succeeds() {
        let s = MemoryStore::new();
        s.conflict_next_sets(2);
        let mut calls = 0;
        let r = update(&s, "k", 3, |_| {
            calls += 1;
            (Some(vec![7]), calls)
        });
        assert_eq!(r, Ok(3));
        assert_eq!(s.mismatches(), 2);
        assert_eq!(s.writes(), 1);
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let s = MemoryStore::new();
        s.conflict_next_sets(3);
        assert_eq!(increment(&s, 3), Err(UpdateError::Contended));
        assert_eq!(s.value("k"), None);
        // Zero attempts still makes one.
        assert_eq!(increment(&s, 0), Ok(1));
    }

    #[test]
    fn store_failure_is_not_retried() {
        let s = MemoryStore::new();
        s.fail_next_sets(1);
        let mut calls = 0;
        let r = update(&s, "k", 5, |_| {
            calls += 1;
            (Some(vec![1]), ())
        });
        assert_eq!(r, Err(UpdateError::Store));
        assert_eq!(calls, 1);
    }

    #[test]
    fn no_write_needed_skips_the_set() {
        let s = MemoryStore::new();
        s.fail_next_sets(1);
        assert_eq!(update(&s, "k", 1, |_| (None, 5)), Ok(5));
        assert_eq!(s.writes(), 0);
    }

    #[test]
    fn memory_store_detects_stale_tokens() {
        let s = MemoryStore::new();
        assert_eq!(s.set("k", b"a", Some(42)), Ok(())); // missing key: always settable
        let (_, cas) = s.get("k");
        s.put("k", b"b");
        assert_eq!(s.set("k", b"c", cas), Err(StoreError::CasMismatch));
        let (v, cas) = s.get("k");
        assert_eq!(v.as_deref(), Some(&b"b"[..]));
        assert_eq!(s.set("k", b"c", cas), Ok(()));
        assert_eq!(s.set("k", b"d", None), Ok(()));
        assert_eq!(s.value("k"), Some(b"d".to_vec()));
    }
}
