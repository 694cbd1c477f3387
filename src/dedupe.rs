//! Duplicate suppression across workers, recorded only after the upstream took an event.
//!
//! Each endpoint has [`SLOTS`] shared-data keys; an event id lives in the slot its hash
//! picks. A slot holds one record: the id, whether it is in flight or delivered, and when.
//! Two ids that share a slot overwrite each other, which can only let a duplicate through
//! (at-least-once), never drop an event. Envoy never frees keys, so the key set stays at
//! `SLOTS` per endpoint whatever senders send.

use crate::shared::{self, SharedStore};

/// Slots per endpoint.
pub const SLOTS: u32 = 4096;
/// How long an in-flight mark holds off copies; longer than any sane route timeout, and a
/// stream that ends without an upstream answer clears its mark at once.
pub const IN_FLIGHT_NANOS: u64 = 60 * 1_000_000_000;
const MAX_ATTEMPTS: u32 = 8;

const IN_FLIGHT: u8 = 1;
const DELIVERED: u8 = 2;

/// What to do with an event about to be forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Forward it; it is now marked in flight.
    Proceed,
    /// The upstream already took it within the window: answer 200 without forwarding.
    Duplicate,
    /// A copy is being forwarded right now: answer 429 and let the sender retry.
    InFlight,
    /// The slot stayed contended: answer 429 (never risk a second forward).
    Contended,
}

/// The shared-data key of `id`'s slot on `endpoint`.
pub fn slot_key(endpoint: &str, id: &str) -> String {
    shared::slot_key("dd", endpoint, id, SLOTS)
}

fn encode(mark: u8, at_nanos: u64, id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + id.len());
    out.push(mark);
    out.extend_from_slice(&at_nanos.to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out
}

/// `(mark, at, id)`; `None` for an empty (released) or unreadable slot.
fn decode(bytes: &[u8]) -> Option<(u8, u64, &[u8])> {
    let (&mark, rest) = bytes.split_first()?;
    let at: [u8; 8] = rest.get(..8)?.try_into().ok()?;
    Some((mark, u64::from_le_bytes(at), rest.get(8..)?))
}

/// Checks `id` and, unless it is a duplicate or in flight, marks it in flight.
pub fn begin<S: SharedStore + ?Sized>(store: &S, key: &str, id: &str, now_nanos: u64, window_nanos: u64) -> Begin {
    let result = shared::update(store, key, MAX_ATTEMPTS, |current| {
        if let Some((mark, at, stored)) = current.and_then(decode) {
            let age = now_nanos.saturating_sub(at);
            if stored == id.as_bytes() {
                if mark == DELIVERED && age < window_nanos {
                    return (None, Begin::Duplicate);
                }
                if mark == IN_FLIGHT && age < IN_FLIGHT_NANOS {
                    return (None, Begin::InFlight);
                }
            }
        }
        (Some(encode(IN_FLIGHT, now_nanos, id)), Begin::Proceed)
    });
    result.unwrap_or(Begin::Contended)
}

/// Ends `id`'s flight: marks it delivered when the upstream took it, frees the slot
/// otherwise (so the sender's retry is forwarded). A slot another id has taken since is
/// left alone.
pub fn finish<S: SharedStore + ?Sized>(store: &S, key: &str, id: &str, now_nanos: u64, delivered: bool) {
    let _ = shared::update(store, key, MAX_ATTEMPTS, |current| {
        let ours = current.and_then(decode).is_some_and(|(mark, _, stored)| mark == IN_FLIGHT && stored == id.as_bytes());
        let next = match (ours, delivered) {
            (false, _) => None,
            (true, true) => Some(encode(DELIVERED, now_nanos, id)),
            (true, false) => Some(Vec::new()),
        };
        (next, ())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::memory::MemoryStore;

    const S: u64 = 1_000_000_000;
    const WINDOW: u64 = 3600 * S;

    #[test]
    fn delivered_events_are_duplicates_within_the_window() {
        let store = MemoryStore::new();
        let key = slot_key("e", "id-1");
        assert_eq!(begin(&store, &key, "id-1", S, WINDOW), Begin::Proceed);
        finish(&store, &key, "id-1", 2 * S, true);
        assert_eq!(begin(&store, &key, "id-1", 3 * S, WINDOW), Begin::Duplicate);
        assert_eq!(begin(&store, &key, "id-1", 2 * S + WINDOW, WINDOW), Begin::Proceed, "window over");
    }

    #[test]
    fn copies_in_flight_wait_and_failures_free_the_slot() {
        let store = MemoryStore::new();
        let key = slot_key("e", "id-1");
        assert_eq!(begin(&store, &key, "id-1", S, WINDOW), Begin::Proceed);
        assert_eq!(begin(&store, &key, "id-1", 2 * S, WINDOW), Begin::InFlight);
        finish(&store, &key, "id-1", 3 * S, false);
        assert_eq!(begin(&store, &key, "id-1", 4 * S, WINDOW), Begin::Proceed, "the retry is forwarded");
        assert_eq!(begin(&store, &key, "id-1", 4 * S + IN_FLIGHT_NANOS, WINDOW), Begin::Proceed, "a stale flight expires");
    }

    #[test]
    fn another_id_in_the_slot_is_never_mistaken_for_a_duplicate() {
        let store = MemoryStore::new();
        let key = slot_key("e", "a");
        assert_eq!(begin(&store, &key, "a", S, WINDOW), Begin::Proceed);
        finish(&store, &key, "a", S, true);
        // "b" lands in the same slot (forced here): it is forwarded and takes the slot over.
        assert_eq!(begin(&store, &key, "b", S, WINDOW), Begin::Proceed);
        finish(&store, &key, "a", S, false);
        assert_eq!(begin(&store, &key, "b", S, WINDOW), Begin::InFlight, "a's late finish left b alone");
        assert_eq!(begin(&store, &key, "a", S, WINDOW), Begin::Proceed, "a was evicted: at-least-once");
    }

    #[test]
    fn contention_and_garbage() {
        let store = MemoryStore::new();
        let key = slot_key("e", "x");
        store.conflict_next_sets(MAX_ATTEMPTS);
        assert_eq!(begin(&store, &key, "x", S, WINDOW), Begin::Contended);
        store.put(&key, b"\x02\x01");
        assert_eq!(begin(&store, &key, "x", S, WINDOW), Begin::Proceed);
    }

    #[test]
    fn keys_are_bounded_and_spread_per_endpoint() {
        let keys: std::collections::HashSet<_> = (0..100_000).map(|i| slot_key("e", &format!("id-{i}"))).collect();
        assert_eq!(keys.len(), SLOTS as usize, "every slot used, no more");
        assert!(keys.iter().all(|k| k.starts_with("wg.dd.e.")), "{keys:?}");
        assert_ne!(slot_key("e", "id-1"), slot_key("f", "id-1"), "endpoints never share a slot");
    }

    #[test]
    fn an_in_flight_mark_holds_for_sixty_seconds() {
        let store = MemoryStore::new();
        let key = slot_key("e", "id-1");
        assert_eq!(begin(&store, &key, "id-1", S, WINDOW), Begin::Proceed);
        assert_eq!(begin(&store, &key, "id-1", S + 59 * S, WINDOW), Begin::InFlight);
        assert_eq!(begin(&store, &key, "id-1", S + 60 * S, WINDOW), Begin::Proceed);
    }
}
