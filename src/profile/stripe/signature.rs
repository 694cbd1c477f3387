//! Stripe's signatures: the `Stripe-Signature` header (`t=<unix seconds>,v1=<hex>[,v1=...]`),
//! the endpoint's `whsec_` signing secret and the HMAC-SHA256 over `{t}.{raw body}`.

use crate::signing::{self, HmacSha256, Key};
use hmac::Mac;

/// Bytes of an HMAC-SHA256 signature.
pub const SIGNATURE_BYTES: usize = 32;
/// `v1` signatures read from one header: Stripe sends one per active secret, two while
/// an endpoint's secret is rolled.
pub const MAX_SIGNATURES: usize = 16;
/// Entries read from one header (`t`, the `v1`s, and the others Stripe may add, `v0`).
pub const MAX_ENTRIES: usize = 32;

/// A signing secret as the Dashboard, the API and the CLI show it: `whsec_` and more. The
/// HMAC key is that text itself (Stripe's libraries key it with the string, undecoded).
/// The error never quotes it.
pub fn decode_key(secret: &[u8]) -> Result<Key, &'static str> {
    match secret.strip_prefix(b"whsec_") {
        Some(rest) if !rest.is_empty() => Ok(Key::new(secret.to_vec())),
        _ => Err("must be the endpoint's signing secret, whsec_..."),
    }
}

/// A parsed `Stripe-Signature` value.
#[derive(Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// `t` as sent: the signed text.
    pub timestamp: &'a str,
    pub signatures: Vec<[u8; SIGNATURE_BYTES]>,
}

/// The `t` and the `v1` signatures of a `Stripe-Signature` value: comma-separated
/// `<key>=<value>` entries (blanks around an entry ignored). Other keys (`v0`, Stripe's
/// test scheme) are skipped; a header without exactly one `t`, without any `v1`, with a
/// `v1` that is not 64 hex digits, or with more than [`MAX_ENTRIES`] entries or
/// [`MAX_SIGNATURES`] `v1`s is malformed.
pub fn parse(header: &str) -> Result<Header<'_>, &'static str> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for (i, entry) in header.split(',').map(str::trim_ascii).enumerate() {
        if i == MAX_ENTRIES {
            return Err("holds more than 32 entries");
        }
        let Some((key, value)) = entry.split_once('=') else {
            return Err("holds an entry that is not <key>=<value>");
        };
        match key {
            "t" if timestamp.is_some() => return Err("holds more than one timestamp t"),
            "t" => timestamp = Some(value),
            "v1" if signatures.len() == MAX_SIGNATURES => return Err("holds more than 16 v1 signatures"),
            "v1" => signatures.push(signing::hex::<SIGNATURE_BYTES>(value).ok_or("holds a v1 signature that is not 64 hex digits")?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or("holds no timestamp t")?;
    if signatures.is_empty() {
        return Err("holds no v1 signature");
    }
    Ok(Header { timestamp, signatures })
}

/// Whether one of `signatures` is the HMAC of `{timestamp}.{body}` under one of `keys`
/// (every key and signature tried, each in constant time).
pub fn verify(keys: &[Key], timestamp: &str, body: &[u8], signatures: &[[u8; SIGNATURE_BYTES]]) -> bool {
    signing::any_matches::<HmacSha256, _, _>(keys, &signed(timestamp, body), signatures)
}

/// The `t=...,v1=...` header of a body, as Stripe writes it (tests and tools).
pub fn sign(key: &Key, timestamp: &str, body: &[u8]) -> String {
    let tag = signing::mac::<HmacSha256>(key.as_ref(), &signed(timestamp, body)).map(|mac| mac.finalize().into_bytes());
    format!("t={timestamp},v1={}", tag.map(|tag| signing::to_hex(&tag)).unwrap_or_default())
}

/// The signed content, `{timestamp}.{body}`, in parts.
fn signed<'a>(timestamp: &'a str, body: &'a [u8]) -> [&'a [u8]; 3] {
    [timestamp.as_bytes(), b".", body]
}

#[cfg(test)]
mod tests {
    use super::*;

    // Stripe publishes no fixed signature vector (its libraries' tests sign with
    // `generateTestHeaderString` at run time), so these were computed independently with
    // Python's hmac: hmac.new(SECRET, TIMESTAMP + b"." + BODY, "sha256").hexdigest().
    const SECRET: &[u8] = b"whsec_test_secret";
    const TIMESTAMP: &str = "1700000000";
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event","type":"invoice.paid","created":1700000000}"#;
    const SIGNATURE: &str = "41da23d93534f7d7d0d533391b027cf2615dc843045a24d7eab0a2581bb98103";

    fn key() -> Key {
        decode_key(SECRET).unwrap()
    }

    fn header(signatures: &[&str]) -> String {
        let v1: Vec<String> = signatures.iter().map(|s| format!("v1={s}")).collect();
        format!("t={TIMESTAMP},{}", v1.join(","))
    }

    #[test]
    fn the_independent_vector_signs_and_verifies() {
        assert_eq!(sign(&key(), TIMESTAMP, BODY), header(&[SIGNATURE]));
        let value = header(&[SIGNATURE]);
        let parsed = parse(&value).unwrap();
        assert_eq!(parsed.timestamp, TIMESTAMP);
        assert!(verify(&[key()], TIMESTAMP, BODY, &parsed.signatures));
    }

    #[test]
    fn any_v1_may_match_and_other_schemes_are_skipped() {
        let zeros = "0".repeat(64);
        let value = format!("t={TIMESTAMP},v1={zeros},v0={zeros}, v1={SIGNATURE}");
        let parsed = parse(&value).unwrap();
        assert_eq!(parsed.signatures.len(), 2);
        assert!(verify(&[key()], TIMESTAMP, BODY, &parsed.signatures));
        assert!(!verify(&[key()], TIMESTAMP, BODY, &parse(&header(&[&zeros])).unwrap().signatures));
        // The case of the hex digits does not matter.
        assert!(verify(&[key()], TIMESTAMP, BODY, &parse(&header(&[&SIGNATURE.to_uppercase()])).unwrap().signatures));
    }

    #[test]
    fn rotation_tries_every_key() {
        let signatures = parse(&header(&[SIGNATURE])).unwrap().signatures;
        let other = decode_key(b"whsec_other").unwrap();
        assert!(verify(&[other, key()], TIMESTAMP, BODY, &signatures));
        assert!(!verify(&[decode_key(b"whsec_other").unwrap()], TIMESTAMP, BODY, &signatures));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let zeros = "0".repeat(64);
        for bad in [
            String::new(),
            format!("v1={SIGNATURE}"),
            format!("t={TIMESTAMP}"),
            format!("t={TIMESTAMP},v0={zeros}"),
            format!("t={TIMESTAMP},t={TIMESTAMP},v1={SIGNATURE}"),
            format!("t={TIMESTAMP},v1={}", &SIGNATURE[1..]),
            format!("t={TIMESTAMP},v1={SIGNATURE}0"),
            format!("t={TIMESTAMP},v1={SIGNATURE},"),
            format!("t={TIMESTAMP};v1={SIGNATURE}"),
            header(&vec![SIGNATURE; MAX_SIGNATURES + 1]),
            format!("{},{}", header(&[SIGNATURE]), vec!["x=1"; MAX_ENTRIES].join(",")),
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse(&header(&vec![SIGNATURE; MAX_SIGNATURES])).unwrap().signatures.len(), MAX_SIGNATURES);
    }

    #[test]
    fn secrets_must_be_whsec_and_never_print() {
        for bad in [&b"whsec_"[..], b"sk_live_123", b"secret"] {
            assert!(decode_key(bad).is_err());
        }
        assert!(!format!("{:?}", key()).contains("test_secret"));
    }

    proptest::proptest! {
        /// Any change to any signed byte (the timestamp or the body) is refused.
        #[test]
        fn any_change_to_a_signed_byte_is_refused(
            timestamp in 1_000_000_000u64..4_000_000_000,
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            at in proptest::num::usize::ANY,
            flip in 1u8..=255,
        ) {
            let timestamp = timestamp.to_string();
            let signatures = parse(&sign(&key(), &timestamp, &body)).unwrap().signatures;
            proptest::prop_assert!(verify(&[key()], &timestamp, &body, &signatures));
            let mut message = [timestamp.as_bytes(), b".", &body].concat();
            let at = at % message.len();
            message[at] ^= flip;
            // Split again at the first dot: the parts a receiver would sign.
            let mut parts = message.splitn(2, |b| *b == b'.');
            let (Some(timestamp), Some(body)) = (parts.next(), parts.next()) else {
                return Ok(());
            };
            let Ok(timestamp) = std::str::from_utf8(timestamp) else {
                return Ok(());
            };
            proptest::prop_assert!(!verify(&[key()], timestamp, body, &signatures));
        }
    }
}
