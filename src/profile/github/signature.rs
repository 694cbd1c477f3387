//! GitHub's webhook signature: `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the
//! raw body keyed with the webhook's secret (its text, as typed in GitHub's settings).

use crate::signing::{self, HmacSha256, Key};
use hmac::Mac;

/// Bytes of an HMAC-SHA256 signature.
pub const SIGNATURE_BYTES: usize = 32;
const PREFIX: &str = "sha256=";

/// The signature of an `X-Hub-Signature-256` value: `sha256=` and 64 hex digits (either
/// case), nothing else.
pub fn parse(header: &str) -> Result<[u8; SIGNATURE_BYTES], &'static str> {
    let hex = header.strip_prefix(PREFIX).ok_or("must start with sha256=")?;
    signing::hex::<SIGNATURE_BYTES>(hex).ok_or("must be sha256= followed by 64 hexadecimal digits")
}

/// Whether `signature` is the HMAC of `body` under one of `keys` (each tried, in constant
/// time).
pub fn verify(keys: &[Key], body: &[u8], signature: &[u8; SIGNATURE_BYTES]) -> bool {
    signing::any_matches::<HmacSha256, _, _>(keys, &[body], &[signature])
}

/// The header value GitHub writes for `body` (tests and tools).
pub fn sign(key: &Key, body: &[u8]) -> String {
    let tag = signing::mac::<HmacSha256>(key.as_ref(), &[body]).map(|mac| mac.finalize().into_bytes());
    tag.map(|tag| format!("{PREFIX}{}", signing::to_hex(&tag))).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    // GitHub's documented example ("Validating webhook deliveries", "Testing the webhook
    // payload validation"), recomputed with Python's hmac before being written here.
    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn key() -> Key {
        Key::new(SECRET.to_vec())
    }

    #[test]
    fn the_documented_example_signs_and_verifies() {
        assert_eq!(sign(&key(), BODY), SIGNATURE);
        assert!(verify(&[key()], BODY, &parse(SIGNATURE).unwrap()));
        assert!(verify(&[key()], BODY, &parse(&SIGNATURE.to_uppercase().replace("SHA256=", "sha256=")).unwrap()), "hex in either case");
        assert!(!verify(&[key()], b"Hello, World?", &parse(SIGNATURE).unwrap()));
        assert!(!verify(&[Key::new(b"It's a Secret to Everybody ".to_vec())], BODY, &parse(SIGNATURE).unwrap()));
        assert!(verify(&[Key::new(b"old".to_vec()), key()], BODY, &parse(SIGNATURE).unwrap()), "rotation: any key");
    }

    #[test]
    fn malformed_headers_are_refused() {
        for header in [
            "",
            "sha256=",
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "SHA256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            " sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17 ",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1g",
        ] {
            assert!(parse(header).is_err(), "{header:?}");
        }
    }

    proptest::proptest! {
        /// Any change to any signed byte (the body is all of it) is refused.
        #[test]
        fn any_change_to_a_signed_byte_is_refused(
            body in proptest::collection::vec(proptest::num::u8::ANY, 1..300),
            at in proptest::num::usize::ANY,
            flip in 1u8..=255,
        ) {
            let signature = parse(&sign(&key(), &body)).unwrap();
            proptest::prop_assert!(verify(&[key()], &body, &signature));
            let mut changed = body.clone();
            let at = at % changed.len();
            changed[at] ^= flip;
            proptest::prop_assert!(!verify(&[key()], &changed, &signature));
        }
    }
}
