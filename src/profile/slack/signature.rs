//! Slack's request signature: `X-Slack-Signature: v0=<hex>`, the HMAC-SHA256 of
//! `v0:{X-Slack-Request-Timestamp}:{raw body}` keyed with the app's signing secret.

use crate::signing::{self, HmacSha256, Key};
use hmac::Mac;

/// Bytes of an HMAC-SHA256 signature.
pub const SIGNATURE_BYTES: usize = 32;
const PREFIX: &str = "v0=";

/// The signature of an `X-Slack-Signature` value: `v0=` and 64 hex digits (either case),
/// nothing else.
pub fn parse(header: &str) -> Result<[u8; SIGNATURE_BYTES], &'static str> {
    let hex = header.strip_prefix(PREFIX).ok_or("must start with v0=")?;
    signing::hex::<SIGNATURE_BYTES>(hex).ok_or("must be v0= followed by 64 hexadecimal digits")
}

/// Whether `signature` is the HMAC of `v0:{timestamp}:{body}` under one of `keys` (each
/// tried, in constant time).
pub fn verify(keys: &[Key], timestamp: &str, body: &[u8], signature: &[u8; SIGNATURE_BYTES]) -> bool {
    signing::any_matches::<HmacSha256, _, _>(keys, &signed(timestamp, body), &[signature])
}

/// The header value Slack writes (tests and tools).
pub fn sign(key: &Key, timestamp: &str, body: &[u8]) -> String {
    let tag = signing::mac::<HmacSha256>(key.as_ref(), &signed(timestamp, body)).map(|mac| mac.finalize().into_bytes());
    tag.map(|tag| format!("{PREFIX}{}", signing::to_hex(&tag))).unwrap_or_default()
}

/// The signed content, `v0:{timestamp}:{body}`, in parts.
fn signed<'a>(timestamp: &'a str, body: &'a [u8]) -> [&'a [u8]; 4] {
    [b"v0:", timestamp.as_bytes(), b":", body]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // Slack's documented example ("Verifying requests from Slack"; the same values in
    // slackapi/python-slack-sdk's signature tests), recomputed with Python's hmac before
    // being written here.
    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const TIMESTAMP: &str = "1531420618";
    pub(crate) const BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn key() -> Key {
        Key::new(SECRET.to_vec())
    }

    #[test]
    fn the_documented_example_signs_and_verifies() {
        assert_eq!(sign(&key(), TIMESTAMP, BODY), SIGNATURE);
        let signature = parse(SIGNATURE).unwrap();
        assert!(verify(&[key()], TIMESTAMP, BODY, &signature));
        assert!(verify(&[Key::new(b"old".to_vec()), key()], TIMESTAMP, BODY, &signature), "rotation: any key");
        assert!(!verify(&[Key::new(b"old".to_vec())], TIMESTAMP, BODY, &signature));
        assert!(!verify(&[key()], "1531420619", BODY, &signature), "the timestamp is signed");
        // The separators count: a digit moved across one is another message.
        let moved = [&b"8:"[..], &BODY[..BODY.len() - 1]].concat();
        assert!(!verify(&[key()], "153142061", &moved, &signature));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for header in [
            "",
            "v0=",
            "v1=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            "V0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b50",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503,v0=00",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b50z",
        ] {
            assert!(parse(header).is_err(), "{header:?}");
        }
        assert!(parse(&SIGNATURE.to_uppercase().replace("V0=", "v0=")).is_ok(), "hex in either case");
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
            let signature = parse(&sign(&key(), &timestamp, &body)).unwrap();
            proptest::prop_assert!(verify(&[key()], &timestamp, &body, &signature));
            let mut message = [b"v0:", timestamp.as_bytes(), b":", &body].concat();
            let at = at % message.len();
            message[at] ^= flip;
            // Split again where a receiver would: the version, the timestamp, the body.
            let mut parts = message.splitn(3, |b| *b == b':');
            let (Some(b"v0"), Some(timestamp), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
                return Ok(());
            };
            let Ok(timestamp) = std::str::from_utf8(timestamp) else {
                return Ok(());
            };
            proptest::prop_assert!(!verify(&[key()], timestamp, body, &signature));
        }
    }
}
