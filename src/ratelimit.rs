//! Token-bucket rate limiting over proxy-wasm shared data, so that every worker's VM
//! draws from the same bucket.
//!
//! A bucket lives in one shared-data key as a 16-byte record (see [`State`]) and is updated
//! with a CAS loop ([`shared::update`]). Keys are bounded: a sender-chosen value is hashed
//! into one of a fixed number of slots per endpoint ([`slot_key`]).

use crate::shared::{self, SharedStore};

/// Slots per endpoint for a limit keyed on a sender-supplied value.
pub const DEFAULT_SLOTS: u32 = 1024;
/// CAS rounds before giving up with [`Acquire::Contended`].
pub const MAX_CAS_ATTEMPTS: u32 = 8;

/// Largest accepted `per_second` and `burst`.
const MAX_RATE: f64 = 1_000_000.0;
const MAX_BURST: u32 = 1_000_000;
/// Fixed-point scale of the stored token count: one token is a million micro-tokens.
const MICRO: u64 = 1_000_000;
/// How far the clock may go back and still be taken for jitter between workers (whose
/// reads of the clock and writes to the bucket interleave): within it the later timestamp
/// is kept, so no interval is refilled twice. A bigger step back is a real clock change;
/// the bucket is rebased on the new clock (still without refilling) so that it does not
/// stop refilling until the clock catches up again.
const MAX_CLOCK_REWIND_NANOS: u64 = 60 * 1_000_000_000;

/// A validated rate limit: a sustained rate and a burst (the bucket's capacity).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    per_second: f64,
    burst: u32,
}

impl Limit {
    /// `per_second` must be finite, above 0 and at most 1 000 000; `burst` from 1 to 1 000 000.
    pub fn new(per_second: f64, burst: u32) -> Result<Limit, String> {
        // Written so that NaN fails the test too.
        if !(per_second.is_finite() && per_second > 0.0 && per_second <= MAX_RATE) {
            return Err("rate_limit.per_second must be a positive number no greater than 1000000".into());
        }
        if burst == 0 || burst > MAX_BURST {
            return Err("rate_limit.burst must be an integer from 1 to 1000000".into());
        }
        Ok(Limit { per_second, burst })
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Bucket capacity in micro-tokens (at most 10^12, far from overflowing).
    fn capacity(&self) -> u64 {
        u64::from(self.burst).saturating_mul(MICRO)
    }

    /// Refill speed in micro-tokens per nanosecond (per_second × 10^6 / 10^9).
    fn micro_per_nano(&self) -> f64 {
        self.per_second / 1000.0
    }
}

/// A bucket as stored: 16 bytes, little-endian, `tokens_micro` then `updated_nanos`.
///
/// Tokens are fixed-point micro-tokens rather than f64 bits so that every byte pattern
/// decodes to a meaningful number (no NaN or negative counts to guard against) and the
/// arithmetic is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Tokens available, in millionths of a token.
    pub tokens_micro: u64,
    /// Time (ns since the Unix epoch) up to which refill has been credited.
    pub updated_nanos: u64,
}

impl State {
    pub const LEN: usize = 16;

    pub fn encode(&self) -> [u8; State::LEN] {
        let mut out = [0u8; State::LEN];
        let (tokens, updated) = out.split_at_mut(8);
        tokens.copy_from_slice(&self.tokens_micro.to_le_bytes());
        updated.copy_from_slice(&self.updated_nanos.to_le_bytes());
        out
    }

    /// None unless `bytes` is exactly one record; callers treat None as a fresh bucket.
    pub fn decode(bytes: &[u8]) -> Option<State> {
        let record: &[u8; State::LEN] = bytes.try_into().ok()?;
        let (tokens, updated) = record.split_at(8);
        Some(State { tokens_micro: u64::from_le_bytes(tokens.try_into().ok()?), updated_nanos: u64::from_le_bytes(updated.try_into().ok()?) })
    }
}

/// What [`take`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    Allowed,
    Limited { retry_after_secs: u64 },
}

/// What [`acquire`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    Allowed,
    Limited {
        retry_after_secs: u64,
    },
    /// No decision: CAS retries ran out or the store failed. The caller applies its
    /// fail-open/closed policy.
    Contended,
}

/// One request against a bucket: refill up to `now_nanos`, then take one token if there is
/// a whole one. `None` (missing or undecodable record) is a fresh, full bucket.
pub fn take(limit: &Limit, state: Option<State>, now_nanos: u64) -> (State, Take) {
    let capacity = limit.capacity();
    let state = match state {
        // Clamped because the limit may have shrunk since the record was written.
        Some(s) => State { tokens_micro: s.tokens_micro.min(capacity), updated_nanos: s.updated_nanos },
        None => State { tokens_micro: capacity, updated_nanos: now_nanos },
    };
    let mut state = refill(limit, state, now_nanos);
    if state.tokens_micro >= MICRO {
        state.tokens_micro = state.tokens_micro.saturating_sub(MICRO);
        (state, Take::Allowed)
    } else {
        let retry_after_secs = retry_after(limit, state.tokens_micro);
        (state, Take::Limited { retry_after_secs })
    }
}

fn refill(limit: &Limit, state: State, now: u64) -> State {
    let capacity = limit.capacity();
    let Some(elapsed) = now.checked_sub(state.updated_nanos) else {
        // The clock went back: never refill for it.
        let updated_nanos = if state.updated_nanos.saturating_sub(now) > MAX_CLOCK_REWIND_NANOS { now } else { state.updated_nanos };
        return State { updated_nanos, ..state };
    };
    let missing = capacity.saturating_sub(state.tokens_micro);
    // At most 1.8e19 ns × 1000 micro-tokens/ns: finite, and never NaN (both factors ≥ 0).
    let earned = elapsed as f64 * limit.micro_per_nano();
    if earned >= missing as f64 {
        // Full: time spent full earns nothing, so the clock moves all the way to now.
        return State { tokens_micro: capacity, updated_nanos: now };
    }
    // Float-to-int `as` truncates and saturates; `earned < missing` keeps it in range.
    let credited = earned as u64;
    if credited == 0 {
        // Keep the old timestamp so frequent requests still accumulate refill.
        return state;
    }
    // Advance the clock only by the time those whole micro-tokens took, rounded up: the
    // fraction left over carries to the next request and no interval is credited twice.
    // `credited ≥ 1` so this is never 0/0; a subnormal rate gives +inf, which `as` saturates.
    let spent = (credited as f64 / limit.micro_per_nano()).ceil() as u64;
    State { tokens_micro: state.tokens_micro.saturating_add(credited).min(capacity), updated_nanos: state.updated_nanos.saturating_add(spent.min(elapsed)) }
}

/// Whole seconds until one token is available, at least 1 (a `Retry-After: 0` would invite
/// an immediate retry). Saturates at u64::MAX for absurdly slow rates.
fn retry_after(limit: &Limit, tokens_micro: u64) -> u64 {
    let needed = MICRO.saturating_sub(tokens_micro) as f64;
    // per_second > 0, so the divisor is > 0 and the quotient finite or +inf, never NaN.
    let secs = (needed / (limit.per_second * MICRO as f64)).ceil() as u64;
    secs.max(1)
}

/// Takes one token from the shared bucket at `key`.
///
/// Admissions are written back with CAS; a limited request writes only when the record
/// needs repairing (garbage, a shrunk limit, a rebased clock). Otherwise its only change
/// would be refill bookkeeping that the next request recomputes from the same record, and
/// skipping it keeps a flood of rejected requests from contending with admissions (and
/// from turning into `Contended`, which a fail-open caller would admit).
pub fn acquire<S: SharedStore + ?Sized>(store: &S, key: &str, limit: &Limit, now_nanos: u64, max_attempts: u32) -> Acquire {
    let result = shared::update(store, key, max_attempts, |current| {
        let previous = current.and_then(State::decode);
        let (next, decision) = take(limit, previous, now_nanos);
        let persist = match (decision, previous) {
            (Take::Allowed, _) | (_, None) => true,
            (Take::Limited { .. }, Some(p)) => next.tokens_micro < p.tokens_micro || next.updated_nanos < p.updated_nanos,
        };
        (persist.then(|| next.encode().to_vec()), decision)
    });
    match result {
        Ok(Take::Allowed) => Acquire::Allowed,
        Ok(Take::Limited { retry_after_secs }) => Acquire::Limited { retry_after_secs },
        Err(_) => Acquire::Contended,
    }
}

/// Shared-data key of the bucket for `value` on `endpoint`: `wg.rl.{endpoint}.{n}` with
/// `n` = FNV-1a 64 of `value` modulo `slots` (0 is read as 1). A global limit passes
/// `slots = 1`.
///
/// Envoy never frees shared-data keys, so whatever senders put in `value` an endpoint
/// uses at most `slots` keys. The price: values that hash into one slot share a bucket,
/// so the limit gets stricter for them, never looser. FNV-1a is unkeyed, so a sender who
/// can choose values could aim them at another's slot and eat into its budget; more
/// slots make accidental sharing rarer. `n` has no dots, so the key is unambiguous.
pub fn slot_key(endpoint: &str, value: &str, slots: u32) -> String {
    shared::slot_key("rl", endpoint, value, slots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::memory::MemoryStore;
    use std::cell::{Cell, RefCell};
    use std::collections::HashSet;

    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 1_700_000_000 * SEC;

    fn limit(per_second: f64, burst: u32) -> Limit {
        Limit::new(per_second, burst).unwrap()
    }

    /// Runs `take` repeatedly at `now`, returning the decisions and final state.
    fn take_n(l: &Limit, mut s: Option<State>, now: u64, n: usize) -> (Vec<Take>, State) {
        let mut out = Vec::new();
        for _ in 0..n {
            let (next, d) = take(l, s, now);
            out.push(d);
            s = Some(next);
        }
        (out, s.unwrap())
    }

    /// A small deterministic PRNG (xorshift64*), to avoid a crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn limit_validation() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1_000_000.5] {
            let e = Limit::new(bad, 1).unwrap_err();
            assert!(e.contains("rate_limit.per_second"), "{bad}: {e}");
        }
        for bad in [0, 1_000_001, u32::MAX] {
            let e = Limit::new(1.0, bad).unwrap_err();
            assert!(e.contains("rate_limit.burst"), "{bad}: {e}");
        }
        assert!(Limit::new(1_000_000.0, 1_000_000).is_ok());
        assert!(Limit::new(f64::MIN_POSITIVE, 1).is_ok());
        let l = limit(2.5, 3);
        assert_eq!((l.per_second(), l.burst()), (2.5, 3));
    }

    #[test]
    fn state_round_trips_and_rejects_wrong_lengths() {
        let s = State { tokens_micro: 0x0102_0304_0506_0708, updated_nanos: u64::MAX - 1 };
        let bytes = s.encode();
        assert_eq!(bytes.first(), Some(&0x08)); // little-endian
        assert_eq!(State::decode(&bytes), Some(s));
        for len in [0, 1, 8, 15, 17, 32] {
            assert_eq!(State::decode(&vec![0xff; len]), None, "{len}");
        }
    }

    #[test]
    fn burst_then_limited() {
        let l = limit(1.0, 3);
        let (d, s) = take_n(&l, None, T0, 4);
        assert_eq!(&d[..3], &[Take::Allowed; 3]);
        assert_eq!(d[3], Take::Limited { retry_after_secs: 1 });
        assert_eq!(s, State { tokens_micro: 0, updated_nanos: T0 });
    }

    #[test]
    fn refills_after_elapsed_time() {
        let l = limit(2.0, 4);
        let (_, s) = take_n(&l, None, T0, 4);
        // 1.5 s at 2/s = 3 tokens.
        let (d, s) = take_n(&l, Some(s), T0 + 3 * SEC / 2, 4);
        assert_eq!(&d[..3], &[Take::Allowed; 3]);
        assert!(matches!(d[3], Take::Limited { .. }));
        assert_eq!(s.tokens_micro, 0);
        // Half a token's worth of time: still nothing.
        let (_, d) = take(&l, Some(s), T0 + 3 * SEC / 2 + SEC / 4);
        assert!(matches!(d, Take::Limited { .. }));
    }

    #[test]
    fn fractional_rate() {
        let l = limit(0.5, 1);
        let (d, s) = take_n(&l, None, T0, 2);
        assert_eq!(d, [Take::Allowed, Take::Limited { retry_after_secs: 2 }]);
        // 1 s later half a token has accrued: 1 s to go.
        let (s2, d) = take(&l, Some(s), T0 + SEC);
        assert_eq!(d, Take::Limited { retry_after_secs: 1 });
        let (_, d) = take(&l, Some(s2), T0 + 2 * SEC);
        assert_eq!(d, Take::Allowed);
    }

    #[test]
    fn frequent_requests_still_accumulate_refill() {
        // 0.001/s is one micro-token per millisecond; requests every 0.9 ms earn a fraction
        // each time, which must carry over rather than be dropped.
        let l = limit(0.001, 1);
        let (mut s, _) = take(&l, None, T0);
        let mut now = T0;
        let mut allowed_at = None;
        for _ in 0..2_000_000u32 {
            now += 900_000;
            let (next, d) = take(&l, Some(s), now);
            s = next;
            if d == Take::Allowed {
                allowed_at = Some(now);
                break;
            }
        }
        let at = allowed_at.unwrap();
        assert!((T0 + 1000 * SEC..T0 + 1000 * SEC + SEC / 100).contains(&at), "{at}");
    }

    #[test]
    fn refill_is_capped_at_burst() {
        let l = limit(100.0, 5);
        let (_, s) = take_n(&l, None, T0, 5);
        let (d, _) = take_n(&l, Some(s), T0 + 3600 * SEC, 6);
        assert_eq!(d.iter().filter(|d| **d == Take::Allowed).count(), 5);
        // A record from a bigger limit is clamped to this one.
        let big = State { tokens_micro: u64::MAX, updated_nanos: T0 };
        let (d, _) = take_n(&l, Some(big), T0, 6);
        assert_eq!(d.iter().filter(|d| **d == Take::Allowed).count(), 5);
    }

    #[test]
    fn clock_going_backwards_neither_refills_nor_rewinds() {
        let l = limit(1.0, 2);
        let (_, s) = take_n(&l, None, T0 + 10 * SEC, 2);
        let (s2, d) = take(&l, Some(s), T0 + 5 * SEC);
        assert!(matches!(d, Take::Limited { .. }));
        assert_eq!(s2.updated_nanos, T0 + 10 * SEC);
        assert_eq!(s2.tokens_micro, 0);
        // Refill resumes from the later time, not the earlier one.
        let (_, d) = take(&l, Some(s2), T0 + 10 * SEC + SEC / 2);
        assert!(matches!(d, Take::Limited { .. }));
        let (_, d) = take(&l, Some(s2), T0 + 11 * SEC);
        assert_eq!(d, Take::Allowed);
        // From time 0, or to time 0: no underflow.
        let (s3, _) = take(&l, Some(s2), 0);
        assert_eq!(s3.tokens_micro, 0);
    }

    #[test]
    fn large_clock_rewind_rebases_without_refilling() {
        let l = limit(1.0, 2);
        let (_, s) = take_n(&l, None, T0 + 86_400 * SEC, 2);
        let (s2, d) = take(&l, Some(s), T0);
        assert!(matches!(d, Take::Limited { .. }));
        assert_eq!(s2, State { tokens_micro: 0, updated_nanos: T0 });
        let (_, d) = take(&l, Some(s2), T0 + SEC);
        assert_eq!(d, Take::Allowed);
    }

    #[test]
    fn a_rewind_of_sixty_seconds_is_waited_out_and_a_longer_one_rebases() {
        let l = limit(1.0, 1);
        let empty = State { tokens_micro: 0, updated_nanos: T0 + 60 * SEC };
        let (s, _) = take(&l, Some(empty), T0);
        assert_eq!(s.updated_nanos, T0 + 60 * SEC, "up to 60 s back: the record's clock is kept");
        let empty = State { tokens_micro: 0, updated_nanos: T0 + 60 * SEC + 1 };
        let (s, _) = take(&l, Some(empty), T0);
        assert_eq!(s.updated_nanos, T0, "further back: rebased to now");
    }

    #[test]
    fn very_large_elapsed_times() {
        let l = limit(1_000_000.0, 1_000_000);
        let empty = State { tokens_micro: 0, updated_nanos: 0 };
        let (s, d) = take(&l, Some(empty), u64::MAX);
        assert_eq!(d, Take::Allowed);
        assert_eq!(s.tokens_micro, l.capacity() - MICRO);
        assert_eq!(s.updated_nanos, u64::MAX);
        let slow = limit(f64::MIN_POSITIVE, 1);
        let (s, d) = take(&slow, Some(empty), u64::MAX);
        assert_eq!(d, Take::Limited { retry_after_secs: u64::MAX });
        assert_eq!(s.tokens_micro, 0);
        let (_, d) = take(&slow, Some(State { tokens_micro: 1, updated_nanos: u64::MAX }), 0);
        assert!(matches!(d, Take::Limited { .. }));
    }

    #[test]
    fn arbitrary_inputs_keep_invariants() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let edges = [0, 1, MICRO - 1, MICRO, u64::MAX / 2, u64::MAX - 1, u64::MAX];
        let pick = |rng: &mut Rng| match rng.below(3) {
            0 => edges[rng.below(edges.len() as u64) as usize],
            _ => rng.next(),
        };
        for _ in 0..20_000 {
            let per_second = match rng.below(3) {
                0 => 1_000_000.0,
                1 => f64::MIN_POSITIVE,
                _ => (rng.below(1_000_000_000) + 1) as f64 / 1000.0,
            };
            let l = limit(per_second, (rng.below(u64::from(MAX_BURST)) + 1) as u32);
            let prev = State { tokens_micro: pick(&mut rng), updated_nanos: pick(&mut rng) };
            let now = pick(&mut rng);
            let (s, d) = take(&l, Some(prev), now);
            assert!(s.tokens_micro <= l.capacity());
            assert!(s.updated_nanos >= now.min(prev.updated_nanos));
            assert!(s.updated_nanos <= now.max(prev.updated_nanos));
            if let Take::Limited { retry_after_secs } = d {
                assert!(retry_after_secs >= 1);
                assert!(s.tokens_micro < MICRO);
            }
        }
    }

    #[test]
    fn garbage_state_is_a_fresh_bucket() {
        let s = MemoryStore::new();
        let l = limit(1.0, 2);
        for garbage in [&b""[..], b"x", &[0xff; 15], &[0xff; 17]] {
            s.put("k", garbage);
            assert_eq!(acquire(&s, "k", &l, T0, 1), Acquire::Allowed);
            let stored = s.value("k").and_then(|v| State::decode(&v));
            assert_eq!(stored, Some(State { tokens_micro: MICRO, updated_nanos: T0 }));
        }
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let l = limit(1_000_000.0, 1);
        let (s, _) = take(&l, None, T0);
        let (_, d) = take(&l, Some(s), T0);
        assert_eq!(d, Take::Limited { retry_after_secs: 1 });
        let l = limit(3.0, 1);
        let (_, d) = take(&l, Some(State { tokens_micro: MICRO - 1, updated_nanos: T0 }), T0);
        assert_eq!(d, Take::Limited { retry_after_secs: 1 });
        let l = limit(0.1, 1);
        let (_, d) = take(&l, Some(State { tokens_micro: 0, updated_nanos: T0 }), T0);
        assert_eq!(d, Take::Limited { retry_after_secs: 10 });
    }

    #[test]
    fn acquire_uses_the_shared_bucket() {
        let s = MemoryStore::new();
        let l = limit(1.0, 2);
        assert_eq!(acquire(&s, "k", &l, T0, MAX_CAS_ATTEMPTS), Acquire::Allowed);
        assert_eq!(acquire(&s, "k", &l, T0, MAX_CAS_ATTEMPTS), Acquire::Allowed);
        assert_eq!(acquire(&s, "k", &l, T0, MAX_CAS_ATTEMPTS), Acquire::Limited { retry_after_secs: 1 });
        assert_eq!(acquire(&s, "other", &l, T0, MAX_CAS_ATTEMPTS), Acquire::Allowed);
        assert_eq!(acquire(&s, "k", &l, T0 + SEC, MAX_CAS_ATTEMPTS), Acquire::Allowed);
    }

    #[test]
    fn limited_requests_do_not_write() {
        let s = MemoryStore::new();
        let l = limit(1.0, 1);
        assert_eq!(acquire(&s, "k", &l, T0, 1), Acquire::Allowed);
        let writes = s.writes();
        s.fail_next_sets(100); // any write would turn into Contended
        for i in 0..10 {
            let now = T0 + i * SEC / 20;
            assert!(matches!(acquire(&s, "k", &l, now, 1), Acquire::Limited { .. }));
        }
        assert_eq!(s.writes(), writes);
        // ...except to repair the record after a big clock step back.
        s.fail_next_sets(0);
        assert!(matches!(acquire(&s, "k", &l, T0 - 3600 * SEC, 1), Acquire::Limited { .. }));
        assert_eq!(s.writes(), writes + 1);
    }

    #[test]
    fn cas_conflict_is_retried() {
        let s = MemoryStore::new();
        let l = limit(1.0, 2);
        s.conflict_next_sets(MAX_CAS_ATTEMPTS - 1);
        assert_eq!(acquire(&s, "k", &l, T0, MAX_CAS_ATTEMPTS), Acquire::Allowed);
        assert_eq!(s.mismatches(), MAX_CAS_ATTEMPTS - 1);
        // Exactly one token was taken despite the retries.
        let stored = s.value("k").and_then(|v| State::decode(&v));
        assert_eq!(stored.map(|s| s.tokens_micro), Some(MICRO));
    }

    #[test]
    fn exhausted_cas_attempts_are_contended() {
        let s = MemoryStore::new();
        let l = limit(1.0, 2);
        s.conflict_next_sets(MAX_CAS_ATTEMPTS);
        assert_eq!(acquire(&s, "k", &l, T0, MAX_CAS_ATTEMPTS), Acquire::Contended);
        assert_eq!(s.value("k"), None);
        s.fail_next_sets(1);
        assert_eq!(acquire(&s, "k", &l, T0, MAX_CAS_ATTEMPTS), Acquire::Contended);
        assert_eq!(acquire(&s, "k", &l, T0, MAX_CAS_ATTEMPTS), Acquire::Allowed);
    }

    #[test]
    fn slot_key_is_stable_and_bounded() {
        // FNV-1a 64 reference values.
        assert_eq!(slot_key("ep", "a", DEFAULT_SLOTS), slot_key("ep", "a", DEFAULT_SLOTS));
        assert_eq!(slot_key("ep", "a", DEFAULT_SLOTS), format!("wg.rl.ep.{}", 0xaf63_dc4c_8601_ec8c_u64 % 1024));
        assert_eq!(slot_key("ep", "anything", 1), "wg.rl.ep.0");
        assert_eq!(slot_key("ep", "anything", 0), "wg.rl.ep.0");

        let keys: HashSet<String> = (0..100_000).map(|i| slot_key("ep", &format!("app-{i}"), DEFAULT_SLOTS)).collect();
        // Bounded, and spread over (nearly) every slot.
        assert!(keys.len() <= DEFAULT_SLOTS as usize);
        assert!(keys.len() > DEFAULT_SLOTS as usize * 99 / 100, "{}", keys.len());
        assert!(keys.iter().all(|k| k.starts_with("wg.rl.ep.")));

        // And so is the store, whatever values arrive.
        let s = MemoryStore::new();
        let l = limit(10.0, 1);
        for i in 0..20_000 {
            let key = slot_key("ep", &format!("v{i}"), 64);
            acquire(&s, &key, &l, T0, MAX_CAS_ATTEMPTS);
        }
        assert!(s.key_count() <= 64);
    }

    /// A view of a store through which one worker runs; before some of its writes, the
    /// other worker gets in first (a full `acquire` on the same store), so the first
    /// worker's CAS fails for real and has to retry on the new value.
    struct Interleaved<'a> {
        inner: &'a MemoryStore,
        before_set: &'a dyn Fn(),
    }

    impl SharedStore for Interleaved<'_> {
        fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            self.inner.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), shared::StoreError> {
            (self.before_set)();
            self.inner.set(key, value, cas)
        }
    }

    #[test]
    fn two_workers_never_exceed_the_budget() {
        // (rate, burst, seed, worker B gets in before one in `b_every` of A's writes)
        let cases = [(10.0, 5, 1, 2), (0.5, 1, 2, 2), (250.0, 40, 3, 2), (3.3, 7, 4, 1), (1000.0, 1, 5, 1)];
        for (per_second, burst, seed, b_every) in cases {
            let l = limit(per_second, burst);
            // Worker A alone asks for about a hundred times the sustained rate, so that
            // little refill is lost to a full bucket waiting for its next request.
            let max_step = (0.02 * SEC as f64 / per_second) as u64 + 1;
            // Worker B read the clock up to `skew` before or after worker A, so its writes
            // land out of time order. At most 2 ms, and a tenth of a token's time: more
            // would make the bucket's clock leap past a full bucket, losing refill to the
            // cap and failing the "close to the budget" check below.
            let skew = ((0.1 * SEC as f64 / per_second) as u64).min(2_000_000);

            let store = MemoryStore::new();
            let rng = RefCell::new(Rng(seed));
            let now = Cell::new(T0);
            let (allowed_a, allowed_b, contended) = (Cell::new(0u64), Cell::new(0u64), Cell::new(0));
            let run = |store: &dyn SharedStore, at: u64, counter: &Cell<u64>| match acquire(store, "wg.rl.ep.0", &l, at, MAX_CAS_ATTEMPTS) {
                Acquire::Allowed => counter.set(counter.get() + 1),
                Acquire::Limited { .. } => {}
                Acquire::Contended => contended.set(contended.get() + 1),
            };
            let worker_b = || {
                let at = (now.get() + rng.borrow_mut().below(2 * skew + 1)).saturating_sub(skew);
                if rng.borrow_mut().below(b_every) == 0 {
                    run(&store, at, &allowed_b);
                }
            };
            let worker_a = Interleaved { inner: &store, before_set: &worker_b };

            // The key's first write cannot be CAS-checked (see `shared`): create it alone.
            run(&store, T0, &allowed_a);
            for _ in 0..20_000 {
                now.set(now.get() + rng.borrow_mut().below(max_step));
                run(&worker_a, now.get(), &allowed_a);
                if rng.borrow_mut().below(3) == 0 {
                    run(&store, now.get(), &allowed_b);
                }
            }

            let admitted = (allowed_a.get() + allowed_b.get()) as f64;
            let elapsed = (now.get() + skew - (T0 - skew)) as f64 / SEC as f64;
            let budget = f64::from(burst) + per_second * elapsed;
            assert!(admitted <= budget, "{per_second}/s: {admitted} > {budget}");
            // Not trivially safe: both workers got in, the total is close to the budget,
            // and CAS conflicts really happened.
            assert!(admitted >= budget * 0.95, "{per_second}/s: {admitted} << {budget}");
            assert!(allowed_a.get() > 0 && allowed_b.get() > 0);
            assert!(store.mismatches() > 20, "{}", store.mismatches());
            assert!(contended.get() < 10, "{}", contended.get());
        }
    }
}
