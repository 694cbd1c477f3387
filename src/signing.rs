//! What signed senders share: HMAC over the signed parts under every secret, compared in
//! constant time against every signature the request carries, and hex decoding. Each
//! profile parses its own headers and decides what the parts are.

use hmac::digest::KeyInit;
use hmac::Mac;
use std::fmt;

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

/// `bytes` as lowercase hex, as the hex-signing senders write signatures (tests and tools).
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

/// An HMAC key used as the sender shows it (GitHub's webhook secret, Slack's signing
/// secret: the text's bytes). `Debug` never prints it.
pub struct Key(Vec<u8>);

impl Key {
    pub fn new(secret: &[u8]) -> Key {
        Key(secret.to_vec())
    }

    /// The keys of an endpoint's secrets, in order (several = rotation).
    pub fn all(secrets: &[Vec<u8>]) -> Vec<Key> {
        secrets.iter().map(|s| Key::new(s)).collect()
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// The endpoint keys of a sender that signs a timestamp (`standard_webhooks`, `slack`).
#[derive(serde::Deserialize)]
pub struct TimedKeys {
    pub tolerance_seconds: Option<u64>,
    pub keep_signature: Option<bool>,
}

impl TimedKeys {
    /// Longest accepted tolerance: an hour either way.
    pub const MAX_TOLERANCE: u64 = 3600;

    /// `tolerance_seconds`, the sender's documented `default` when unset.
    pub fn tolerance(&self, default: u64) -> Result<u64, String> {
        match self.tolerance_seconds.unwrap_or(default) {
            t @ 1..=Self::MAX_TOLERANCE => Ok(t),
            _ => Err(format!("tolerance_seconds: must be between 1 and {}", Self::MAX_TOLERANCE)),
        }
    }
}

/// A signed timestamp header (Unix seconds, canonical decimal: the signed text is the
/// header as sent) within `tolerance` seconds of `now_secs`, in either direction; `Err`
/// completes a detail that starts with the header's name.
pub fn timestamp_within(text: &str, now_secs: u64, tolerance: u64) -> Result<u64, String> {
    let canonical = text.len() <= 12 && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    let sent: u64 = match text.parse() {
        Ok(secs) if canonical => secs,
        _ => return Err("must be Unix seconds".into()),
    };
    if sent.abs_diff(now_secs) > tolerance {
        let when = if sent < now_secs { "older" } else { "later" };
        return Err(format!("is {when} than the {tolerance} s tolerance allows"));
    }
    Ok(sent)
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
    fn hex_needs_exactly_n_bytes_of_digits() {
        assert_eq!(hex::<2>("0aFf"), Some([0x0a, 0xff]));
        assert_eq!(to_hex(&[0x0a, 0xff]), "0aff");
        for bad in ["0aF", "0aFf0", "0g00", "+1ff", " 0aF"] {
            assert_eq!(hex::<2>(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_are_canonical_and_within_tolerance_both_ways() {
        assert_eq!(timestamp_within("1000", 1060, 60), Ok(1000));
        assert_eq!(timestamp_within("1060", 1000, 60), Ok(1060));
        assert!(timestamp_within("999", 1060, 60).unwrap_err().contains("older"));
        assert!(timestamp_within("1061", 1000, 60).unwrap_err().contains("later"));
        for bad in ["", "01000", "1000.0", "+1000", " 1000", "1e3", "1234567890123"] {
            assert_eq!(timestamp_within(bad, 1000, 60).unwrap_err(), "must be Unix seconds", "{bad:?}");
        }
    }

    #[test]
    fn keys_never_show_in_debug() {
        let keys = Key::all(&[b"It's a Secret".to_vec()]);
        assert_eq!(format!("{keys:?}"), "[Key(<redacted>)]");
        assert_eq!(keys[0].as_ref(), b"It's a Secret");
    }
}
