//! What signed senders share: HMAC over the signed parts under every secret, compared in
//! constant time against every signature the request carries; hex and base64 signatures;
//! keys that never print; the tolerance key and the timestamp check. Each profile parses
//! its own headers and decides what the parts are.

use crate::profile::{Section, SignatureHeaders};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::digest::KeyInit;
use hmac::Mac;
use std::fmt;

/// The largest `tolerance_seconds` a profile accepts.
pub const MAX_TOLERANCE: u64 = 3600;

/// An HMAC key. `Debug` never prints it.
pub struct Key(Vec<u8>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    pub fn new(bytes: Vec<u8>) -> Key {
        Key(bytes)
    }

    /// A secret used as the key as the sender shows it, its text's bytes (GitHub's
    /// webhook secret, Slack's signing secret): the `decode` of [`Signed::configure`].
    pub fn raw(secret: &[u8]) -> Result<Key, &'static str> {
        Ok(Key(secret.to_vec()))
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Each of an endpoint's `secrets` decoded by `decode`. Secrets come from values and the
/// environment alike, so a bad one is named by its position only, never by its value.
pub fn keys<K>(secrets: &[Vec<u8>], decode: impl Fn(&[u8]) -> Result<K, &'static str>) -> Result<Vec<K>, String> {
    let count = secrets.len();
    let decoded = secrets.iter().enumerate().map(|(i, secret)| decode(secret).map_err(|rule| format!("secret: secret {} of {count} {rule}", i + 1)));
    decoded.collect()
}

/// What every signed sender's endpoint configures: its decoded secrets, its tolerance
/// and whether its signature is forwarded. A profile is a newtype around it.
#[derive(Debug)]
pub struct Signed<K> {
    pub keys: Vec<K>,
    /// `tolerance_seconds` (0 for a sender that signs no time).
    pub tolerance: u64,
    /// `keep_signature`: the signature headers are forwarded to the backend.
    pub keep_signature: bool,
}

impl<K> Signed<K> {
    /// The endpoint's secrets decoded by `decode`, its `tolerance_seconds` (`tolerance`:
    /// the sender's documented default, `None` for a sender that signs no time, whose
    /// registration does not list the key) and `keep_signature`.
    pub fn configure(section: &Section, tolerance: Option<u64>, decode: impl Fn(&[u8]) -> Result<K, &'static str>) -> Result<Self, String> {
        let (tolerance_seconds, keep_signature) = (section.get("tolerance_seconds")?, section.get("keep_signature")?);
        let tolerance = tolerance.map_or(Ok(0), |default| self::tolerance(tolerance_seconds, default))?;
        let keys = keys(&section.secret.values, decode)?;
        Ok(Signed { keys, tolerance, keep_signature: keep_signature.unwrap_or(false) })
    }

    /// The profile's [`crate::profile::Profile::signed`]: the `headers` it reads, of which
    /// `signatures` are removed before forwarding unless the endpoint keeps them.
    pub fn headers(&self, headers: &'static [&'static str], signatures: &'static [&'static str]) -> SignatureHeaders {
        SignatureHeaders::new(headers, signatures, self.keep_signature)
    }
}

/// The `tolerance_seconds` key: `default` (the sender's documented tolerance) when absent.
pub fn tolerance(configured: Option<u64>, default: u64) -> Result<u64, String> {
    let tolerance = configured.unwrap_or(default);
    if !(1..=MAX_TOLERANCE).contains(&tolerance) {
        return Err(format!("tolerance_seconds: must be between 1 and {MAX_TOLERANCE}"));
    }
    Ok(tolerance)
}

/// The Unix seconds of a signed timestamp `text` (`what` names it in the error), within
/// `tolerance` of the host clock `now_secs` in both directions: a clock behind the
/// sender's must not turn a replay window into a longer one. Canonical decimal only, as
/// the signed text is the value as sent.
pub fn fresh(what: &str, text: &str, now_secs: u64, tolerance: u64) -> Result<u64, String> {
    let canonical = text.len() <= 12 && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    let sent: u64 = match text.parse() {
        Ok(secs) if canonical => secs,
        _ => return Err(format!("{what} must be Unix seconds")),
    };
    if sent.abs_diff(now_secs) > tolerance {
        let when = if sent < now_secs { "older" } else { "later" };
        return Err(format!("{what} is {when} than the {tolerance} s tolerance allows"));
    }
    Ok(sent)
}

/// HMAC-SHA256 (Standard Webhooks, GitHub's `X-Hub-Signature-256`, Stripe, Slack, Shopify).
pub type HmacSha256 = hmac::Hmac<sha2::Sha256>;
/// HMAC-SHA1 (GitHub's legacy `X-Hub-Signature`).
pub type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// The MAC of `parts`, concatenated, under `key`.
pub fn mac<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Option<M> {
    let mut mac = <M as Mac>::new_from_slice(key).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac)
}

/// Whether one of `signatures` is the MAC of `parts` under one of `keys`. Every key and
/// every signature is tried (no early exit), each comparison in constant time, so the
/// time depends only on the counts and lengths, never on which one matched.
pub fn any_matches<M: Mac + KeyInit + Clone, K: AsRef<[u8]>, S: AsRef<[u8]>>(keys: &[K], parts: &[&[u8]], signatures: &[S]) -> bool {
    let mut any = false;
    for key in keys {
        let Some(mac) = mac::<M>(key.as_ref(), parts) else { continue };
        for signature in signatures {
            any |= mac.clone().verify_slice(signature.as_ref()).is_ok();
        }
    }
    any
}

/// The bytes of `hex` (either case), exactly `N` of them; `None` otherwise.
pub fn hex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    let digits = hex.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let digit = |d: u8| char::from(d).to_digit(16);
        *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

/// `bytes` as lowercase hex, as the hex-signing senders write signatures (tests and tools).
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of standard (padded) `base64`, exactly `N` of them; `None` otherwise.
pub fn base64<const N: usize>(base64: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    match STANDARD.decode_slice(base64, &mut out) {
        Ok(n) if n == N => Some(out),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_and_sha1_match_rfc_4231_and_2202() {
        // RFC 4231 test case 2 and RFC 2202 test case 2: key "Jefe".
        let parts: [&[u8]; 2] = [b"what do ya want ", b"for nothing?"];
        let sha256 = hex::<32>("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843").unwrap();
        let sha1 = hex::<20>("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79").unwrap();
        assert!(any_matches::<HmacSha256, _, _>(&[b"Jefe"], &parts, &[sha256]));
        assert!(any_matches::<HmacSha1, _, _>(&[b"Jefe"], &parts, &[sha1]));
        assert!(!any_matches::<HmacSha256, _, _>(&[b"Jefe"], &parts[..1], &[sha256]));
        assert!(any_matches::<HmacSha256, _, _>(&[&b"other"[..], b"Jefe"], &parts, &[[0u8; 32], sha256]), "rotation: any key, any signature");
    }

    #[test]
    fn base64_needs_exactly_n_bytes() {
        assert_eq!(base64::<2>("Cv8="), Some([0x0a, 0xff]));
        for bad in ["Cv8", "Cv8=Cv8=", "Cv/", "AAAA", "Cv8= ", "Cg=="] {
            assert_eq!(base64::<2>(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_are_canonical_and_fresh_both_ways() {
        assert_eq!(fresh("t", "1000", 1060, 60), Ok(1000));
        assert_eq!(fresh("t", "1060", 1000, 60), Ok(1060));
        assert_eq!(fresh("t", "1000", 1061, 60).unwrap_err(), "t is older than the 60 s tolerance allows");
        assert_eq!(fresh("t", "1061", 1000, 60).unwrap_err(), "t is later than the 60 s tolerance allows");
        for bad in ["", "01000", "+1000", "1000.0", "1e3", "9999999999999", " 1000"] {
            assert_eq!(fresh("t", bad, 1000, 60).unwrap_err(), "t must be Unix seconds", "{bad:?}");
        }
        assert_eq!(tolerance(None, 300), Ok(300));
        assert!(tolerance(Some(0), 300).is_err() && tolerance(Some(MAX_TOLERANCE + 1), 300).is_err());
    }

    #[test]
    fn a_bad_secret_is_named_by_position_only() {
        let secrets = vec![b"good".to_vec(), b"s3cret".to_vec()];
        let err = keys(&secrets, |s| if s == b"good" { Ok(Key::new(s.to_vec())) } else { Err("is bad") }).unwrap_err();
        assert_eq!(err, "secret: secret 2 of 2 is bad");
        assert_eq!(format!("{:?}", Key::new(b"s3cret".to_vec())), "Key(<redacted>)");
    }

    #[test]
    fn hex_needs_exactly_n_bytes_of_digits() {
        assert_eq!(hex::<2>("0aFf"), Some([0x0a, 0xff]));
        assert_eq!(to_hex(&[0x0a, 0xff]), "0aff");
        for bad in ["0aF", "0aFf0", "0g00", "+1ff", " 0aF"] {
            assert_eq!(hex::<2>(bad), None, "{bad}");
        }
    }
}
