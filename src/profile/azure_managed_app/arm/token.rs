//! The bearer token for ARM: one per endpoint in shared data, so every worker uses the
//! same token, refreshed ahead of its expiry by whichever worker takes the refresh lease.
//!
//! Two keys per endpoint (bounded, never freed by Envoy): the token record
//! (`issued`, `expires`, token) and the lease (`until`): a worker may fetch only after
//! moving `until` into the future with a CAS write, so one fetch runs at a time for all
//! workers. A failed fetch keeps the lease for a back-off (marked so in the lease's last
//! byte), so an issuer outage costs one request per back-off, not one per notification;
//! a request that finds a fetch running waits for it instead ([`Failure::InFlight`]).
//! A token ARM refuses (401) is dropped under the same lease ([`drop_refused`]), unless it
//! is younger than the back-off: an identity ARM refuses every token of costs the issuer
//! one request per back-off.

use super::config::ArmCheck;
use super::{request, Answer, Call, Outbound};
use crate::shared;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;

const SECOND: u64 = 1_000_000_000;
/// Longest token accepted (ARM tokens are 1-3 KB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Pause after a failed fetch (or ARM's `Retry-After` when throttled, up to a minute).
const BACKOFF_NANOS: u64 = 5 * SECOND;
const MAX_BACKOFF_SECS: u64 = 60;
const MAX_ATTEMPTS: u32 = 8;

/// A token from the cache, with its lifetime (host clock, nanoseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub issued: u64,
    pub expires: u64,
    pub value: String,
}

impl Token {
    fn lifetime(&self) -> u64 {
        self.expires.saturating_sub(self.issued)
    }

    /// Valid long enough for a request to use it (a minute, or a quarter of its lifetime).
    pub fn usable(&self, now: u64) -> bool {
        now.saturating_add((60 * SECOND).min(self.lifetime() / 4)) < self.expires
    }

    /// Time to fetch the next one: five minutes before expiry, or at half its lifetime.
    pub fn due(&self, now: u64) -> bool {
        now >= self.expires.saturating_sub((300 * SECOND).min(self.lifetime() / 2))
    }
}

/// Why a token could not be had. Never carries the issuer's body, which could echo input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The issuer answered this 4xx (other than 429): credentials or configuration.
    Refused(u16),
    /// 429 from the issuer.
    Throttled,
    /// No answer, a timeout, or a 5xx (the status when there was one).
    Unavailable(Option<u16>),
    /// A 2xx without a usable token.
    Malformed(&'static str),
    /// The call could not be dispatched (unknown Envoy cluster?).
    NotSent,
    /// The last fetch failed moments ago: no new one before the back-off ends.
    Busy,
    /// Another fetch is running (or a token just arrived): worth waiting for.
    InFlight,
    /// The token ARM refused was fetched moments ago: kept until the back-off ends.
    Recent,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused(status) => {
                write!(f, "the token issuer refused the request ({status}): check the tenant, client id and secret, or the managed identity")
            }
            Failure::Throttled => f.write_str("the token issuer is throttling (429)"),
            Failure::Unavailable(Some(status)) => write!(f, "the token issuer failed ({status})"),
            Failure::Unavailable(None) => f.write_str("the token issuer did not answer in time"),
            Failure::Malformed(why) => write!(f, "the token issuer's answer is unusable: {why}"),
            Failure::NotSent => f.write_str("the token request could not be sent (is the Envoy cluster defined?)"),
            Failure::Busy => f.write_str("no valid token: the last token fetch failed moments ago"),
            Failure::InFlight => f.write_str("no valid token in time: another token fetch is still running"),
            Failure::Recent => write!(f, "the token was fetched less than {} s ago: the next one comes once that back-off ends", BACKOFF_NANOS / SECOND),
        }
    }
}

#[derive(Deserialize)]
struct RawToken<'a> {
    access_token: String,
    /// A number from Entra ID, a string from the instance metadata service: read as raw
    /// JSON text (serde's untagged enums cost the module 10s of KB).
    #[serde(borrow)]
    expires_in: &'a RawValue,
}

/// The token and its lifetime in seconds from a token endpoint's JSON answer.
pub fn parse(body: &[u8]) -> Result<(String, u64), &'static str> {
    const NOT_A_TOKEN: &str = "not the JSON of a token (access_token, expires_in)";
    // Read as text: serde_json's reader of bytes would be a second copy of the parser.
    let json = std::str::from_utf8(body).map_err(|_| NOT_A_TOKEN)?;
    let raw: RawToken = serde_json::from_str(json).map_err(|_| NOT_A_TOKEN)?;
    let text = raw.expires_in.get();
    let digits = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    let seconds = digits.parse::<u64>().ok().filter(|s| *s > 0).ok_or("expires_in is not a positive number of seconds")?;
    // It goes into a header: visible ASCII only.
    let token_ok = !raw.access_token.is_empty() && raw.access_token.len() <= MAX_TOKEN_BYTES && raw.access_token.bytes().all(|b| b.is_ascii_graphic());
    if !token_ok {
        return Err("access_token is empty, too long or not visible ASCII");
    }
    Ok((raw.access_token, seconds))
}

/// The cached token of `check`'s endpoint, whatever its age.
pub fn cached<S: shared::SharedStore + ?Sized>(store: &S, check: &ArmCheck) -> Option<Token> {
    let bytes = store.get(&check.token_key).0?;
    let (issued, rest) = split_u64(&bytes)?;
    let (expires, value) = split_u64(rest)?;
    let value = String::from_utf8(value.to_vec()).ok().filter(|v| !v.is_empty())?;
    Some(Token { issued, expires, value })
}

fn split_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_at_checked(8)?;
    Some((u64::from_le_bytes(head.try_into().ok()?), rest))
}

/// Creates the lease key at configure time. A key that does not exist yet is writable by
/// anyone, so workers that took the lease as the key's creator could both win; once it
/// exists every take is CAS-checked.
pub fn init<S: shared::SharedStore + ?Sized>(store: &S, check: &ArmCheck) {
    if store.get(&check.lease_key).0.is_none() {
        let _ = store.set(&check.lease_key, &0u64.to_le_bytes(), None);
    }
}

/// The lease record: until when it is held, and whether for a back-off (1) or a fetch (0).
fn lease(until: u64, backoff: bool) -> Vec<u8> {
    let mut record = until.to_le_bytes().to_vec();
    record.push(u8::from(backoff));
    record
}

/// Moves the lease to `until` if it has run out, so this worker holds it; if not, why:
/// [`Failure::Busy`] in a back-off, [`Failure::InFlight`] while a fetch runs.
fn take_lease<S: shared::SharedStore + ?Sized>(store: &S, check: &ArmCheck, now: u64, until: u64) -> Result<(), Failure> {
    let taken = shared::update(store, &check.lease_key, MAX_ATTEMPTS, |current| match current.and_then(split_u64) {
        Some((held_until, rest)) if held_until > now => (None, Err(if rest == [1] { Failure::Busy } else { Failure::InFlight })),
        _ => (Some(lease(until, false)), Ok(())),
    });
    // Lost CAS races all: other workers are taking it.
    taken.unwrap_or(Err(Failure::InFlight))
}

/// Ends this worker's lease at `until` (0: free now; later: a back-off).
fn end_lease<S: shared::SharedStore + ?Sized>(store: &S, check: &ArmCheck, until: u64) {
    let _ = shared::update(store, &check.lease_key, MAX_ATTEMPTS, |_| (Some(lease(until, until > 0)), ()));
}

/// Takes the lease for as long as a fetch may run, when `needed` says the cached token
/// calls for it, before and again under the lease (a fetch may have ended in between):
/// a token not needed any more is [`Failure::InFlight`], one has just arrived.
fn lease_for<H: Outbound + ?Sized>(host: &H, check: &ArmCheck, now: u64, needed: impl Fn(Option<&Token>) -> bool) -> Result<(), Failure> {
    if !needed(cached(host, check).as_ref()) {
        return Err(Failure::InFlight);
    }
    take_lease(host, check, now, now.saturating_add(check.timeout_ms.saturating_add(1000).saturating_mul(1_000_000)))?;
    if !needed(cached(host, check).as_ref()) {
        end_lease(host, check, 0);
        return Err(Failure::InFlight);
    }
    Ok(())
}

/// Starts a token fetch that answers within `timeout_ms` when `needed` says the cached
/// token calls for one and this worker takes the lease: the call's id, or why not.
pub fn fetch<H: Outbound + ?Sized>(host: &H, check: &ArmCheck, now: u64, timeout_ms: u64, needed: impl Fn(Option<&Token>) -> bool) -> Result<u32, Failure> {
    lease_for(host, check, now, needed)?;
    host.dispatch(&Call { timeout_ms, ..request::token(check) }).ok_or_else(|| {
        end_lease(host, check, now.saturating_add(BACKOFF_NANOS));
        Failure::NotSent
    })
}

/// ARM refused the token issued at `issued` (401): drops it for every worker, under the
/// lease (only its holder writes the token), so the next request or tick fetches another.
/// Not when it is younger than the back-off ([`Failure::Recent`]), nor while the lease is
/// held; [`Failure::InFlight`] when it is gone already.
pub fn drop_refused<H: Outbound + ?Sized>(host: &H, check: &ArmCheck, now: u64, issued: u64) -> Result<(), Failure> {
    let refused = |token: Option<&Token>| token.is_some_and(|t| t.issued == issued);
    if refused(cached(host, check).as_ref()) && now < issued.saturating_add(BACKOFF_NANOS) {
        return Err(Failure::Recent);
    }
    lease_for(host, check, now, refused)?;
    let _ = host.set(&check.token_key, &[], None);
    end_lease(host, check, 0);
    Ok(())
}

/// Refresh from the root's tick: fetches when there is no token or it is due.
pub fn refresh<H: Outbound + ?Sized>(host: &H, check: &ArmCheck, now: u64) -> Option<Result<u32, Failure>> {
    match fetch(host, check, now, check.timeout_ms, |token| token.is_none_or(|t| t.due(now))) {
        Err(Failure::Busy | Failure::InFlight) => None,
        started => Some(started),
    }
}

/// Handles the issuer's answer to [`fetch`]'s call: stores the token and frees the lease,
/// or keeps the lease for a back-off. Returns the token for the caller's own use.
pub fn receive<H: Outbound + ?Sized>(host: &H, check: &ArmCheck, now: u64, answer: &Answer) -> Result<Token, Failure> {
    let outcome = match answer.status {
        Some(200..=299) => parse(&answer.body).map_err(Failure::Malformed),
        Some(429) => Err(Failure::Throttled),
        Some(status @ 400..=499) => Err(Failure::Refused(status)),
        status => Err(Failure::Unavailable(status)),
    };
    match outcome {
        Ok((value, seconds)) => {
            let expires = now.saturating_add(seconds.saturating_mul(SECOND));
            let mut record = Vec::with_capacity(16 + value.len());
            record.extend_from_slice(&now.to_le_bytes());
            record.extend_from_slice(&expires.to_le_bytes());
            record.extend_from_slice(value.as_bytes());
            // Only the lease holder writes the token.
            let _ = host.set(&check.token_key, &record, None);
            end_lease(host, check, 0);
            Ok(Token { issued: now, expires, value })
        }
        Err(failure) => {
            let backoff = match failure {
                Failure::Throttled => answer.retry_after().clamp(1, MAX_BACKOFF_SECS).saturating_mul(SECOND).max(BACKOFF_NANOS),
                _ => BACKOFF_NANOS,
            };
            end_lease(host, check, now.saturating_add(backoff));
            Err(failure)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, Host};
    use super::*;

    const NOW: u64 = 1_000 * SECOND;

    fn ok(body: &str) -> Answer {
        Answer { status: Some(200), retry_after: None, body: body.as_bytes().to_vec() }
    }

    #[test]
    fn both_answers_parse() {
        let entra = r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0.a-b_c"}"#;
        assert_eq!(parse(entra.as_bytes()), Ok(("eyJ0.a-b_c".to_string(), 3599)));
        let imds = r#"{"access_token":"eyJ0.x","client_id":"c","expires_in":"3599","expires_on":"1506484173","ext_expires_in":"3599","not_before":"1506480273","resource":"https://management.azure.com/","token_type":"Bearer"}"#;
        assert_eq!(parse(imds.as_bytes()), Ok(("eyJ0.x".to_string(), 3599)));
        for bad in [
            r#"{"access_token":"a b","expires_in":1}"#,
            r#"{"access_token":"","expires_in":1}"#,
            r#"{"access_token":"a","expires_in":"soon"}"#,
            r#"{"access_token":"a","expires_in":0}"#,
            r#"{"expires_in":1}"#,
            "<html>",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn refresh_ahead_of_expiry() {
        let hour = Token { issued: 0, expires: 3600 * SECOND, value: "t".into() };
        assert!(!hour.due(3299 * SECOND) && hour.due(3300 * SECOND), "five minutes ahead");
        assert!(hour.usable(3539 * SECOND) && !hour.usable(3540 * SECOND), "a minute of margin");
        let short = Token { issued: 0, expires: 4 * SECOND, value: "t".into() };
        assert!(!short.due(SECOND) && short.due(2 * SECOND), "half a short lifetime");
        assert!(short.usable(2 * SECOND) && !short.usable(3 * SECOND));
    }

    #[test]
    fn one_fetch_for_all_workers_then_a_cached_token() {
        let host = Host::new();
        let check = check(r#""managed_identity":{}"#);
        init(&*host, &check);
        let worker2 = host.sharing();
        assert_eq!(refresh(&*host, &check, NOW), Some(Ok(1)));
        assert_eq!(refresh(&*worker2, &check, NOW), None, "the lease is held");
        assert_eq!(
            receive(&*host, &check, NOW, &ok(r#"{"access_token":"tok","expires_in":"3600"}"#)),
            Ok(Token { issued: NOW, expires: NOW + 3600 * SECOND, value: "tok".into() })
        );
        let token = cached(&*worker2, &check).unwrap();
        assert_eq!((token.value.as_str(), token.expires), ("tok", NOW + 3600 * SECOND));
        assert_eq!(refresh(&*worker2, &check, NOW + 3000 * SECOND), None, "not due yet");
        assert_eq!(refresh(&*worker2, &check, NOW + 3300 * SECOND), Some(Ok(2)), "due: the other worker refreshes");
        assert_eq!(host.calls.borrow().len() + worker2.calls.borrow().len(), 2);
    }

    #[test]
    fn failures_back_off_and_never_store() {
        let host = Host::new();
        let check = check(r#""managed_identity":{}"#);
        for (answer, want) in [
            (Answer { status: Some(401), retry_after: None, body: b"{\"error\":\"x\"}".to_vec() }, Failure::Refused(401)),
            (Answer { status: Some(503), retry_after: None, body: vec![] }, Failure::Unavailable(Some(503))),
            (Answer { status: None, retry_after: None, body: vec![] }, Failure::Unavailable(None)),
            (ok("{}"), Failure::Malformed("not the JSON of a token (access_token, expires_in)")),
        ] {
            let now = NOW + u64::from(host.calls.borrow().len() as u32) * 10 * SECOND;
            assert!(refresh(&*host, &check, now).is_some_and(|r| r.is_ok()));
            assert_eq!(receive(&*host, &check, now, &answer), Err(want));
            assert_eq!(refresh(&*host, &check, now + 4 * SECOND), None, "backing off");
            assert!(cached(&*host, &check).is_none());
        }
        let throttled = Answer { status: Some(429), retry_after: Some("30".into()), body: vec![] };
        assert!(refresh(&*host, &check, NOW + 100 * SECOND).is_some());
        assert_eq!(receive(&*host, &check, NOW + 100 * SECOND, &throttled), Err(Failure::Throttled));
        assert_eq!(refresh(&*host, &check, NOW + 129 * SECOND), None, "the issuer's Retry-After");
        assert!(refresh(&*host, &check, NOW + 130 * SECOND).is_some());
    }

    #[test]
    fn a_running_fetch_is_told_apart_from_a_back_off() {
        let host = Host::new();
        let check = check(r#""managed_identity":{}"#);
        init(&*host, &check);
        let needed = |t: Option<&Token>| t.is_none();
        assert_eq!(fetch(&*host, &check, NOW, 700, needed), Ok(1));
        assert_eq!(*host.timeouts.borrow(), [700], "the caller's time left");
        assert_eq!(fetch(&*host.sharing(), &check, NOW, 700, needed), Err(Failure::InFlight));
        assert!(receive(&*host, &check, NOW, &Answer { status: Some(500), retry_after: None, body: vec![] }).is_err());
        assert_eq!(fetch(&*host.sharing(), &check, NOW + SECOND, 700, needed), Err(Failure::Busy));
    }

    #[test]
    fn an_undispatchable_call_backs_off_and_a_stale_lease_expires() {
        let host = Host::new();
        let check = check(r#""managed_identity":{}"#);
        host.refuse_dispatch.set(true);
        assert_eq!(refresh(&*host, &check, NOW), Some(Err(Failure::NotSent)));
        assert_eq!(refresh(&*host, &check, NOW + SECOND), None);
        host.refuse_dispatch.set(false);
        assert!(refresh(&*host, &check, NOW + 5 * SECOND).is_some());
        // The holder never heard back: the lease runs out after the timeout and a second.
        assert_eq!(refresh(&*host, &check, NOW + 8 * SECOND), None);
        assert!(refresh(&*host, &check, NOW + 9 * SECOND).is_some());
    }
    #[test]
    fn a_refused_token_is_dropped_under_the_lease_once_past_the_back_off() {
        let host = Host::new();
        let check = check(r#""managed_identity":{}"#);
        init(&*host, &check);
        let token = |value: &str| ok(&format!(r#"{{"access_token":"{value}","expires_in":"3600"}}"#));
        fetch(&*host, &check, NOW, 1000, |_| true).unwrap();
        let first = receive(&*host, &check, NOW, &token("tok-1")).unwrap().issued;
        assert_eq!(drop_refused(&*host, &check, NOW + 4 * SECOND, first), Err(Failure::Recent));
        assert!(cached(&*host, &check).is_some(), "kept within the back-off");
        // Another worker's fetch runs: the token stays until it lands, then is not dropped.
        let worker2 = host.sharing();
        assert!(fetch(&*worker2, &check, NOW + 5 * SECOND, 1000, |_| true).is_ok());
        assert_eq!(drop_refused(&*host, &check, NOW + 5 * SECOND, first), Err(Failure::InFlight));
        let second = receive(&*worker2, &check, NOW + 6 * SECOND, &token("tok-2")).unwrap().issued;
        assert_eq!(drop_refused(&*host, &check, NOW + 20 * SECOND, first), Err(Failure::InFlight), "replaced already");
        assert_eq!(cached(&*host, &check).unwrap().value, "tok-2");
        // Dropped for every worker, the lease free: the next tick or request fetches.
        assert_eq!(drop_refused(&*host, &check, NOW + 20 * SECOND, second), Ok(()));
        assert!(cached(&*worker2, &check).is_none());
        assert!(refresh(&*worker2, &check, NOW + 20 * SECOND).is_some_and(|started| started.is_ok()));
        // While the issuer backs off, nothing is dropped.
        let third = receive(&*worker2, &check, NOW + 20 * SECOND, &token("tok-3")).unwrap().issued;
        assert!(refresh(&*worker2, &check, NOW + 3600 * SECOND).is_some_and(|started| started.is_ok()));
        assert!(receive(&*worker2, &check, NOW + 3600 * SECOND, &Answer { status: Some(503), retry_after: None, body: vec![] }).is_err());
        assert_eq!(drop_refused(&*host, &check, NOW + 3601 * SECOND, third), Err(Failure::Busy));
    }
}
