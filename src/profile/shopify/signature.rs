//! Shopify's signatures: `X-Shopify-Hmac-Sha256` (or, on newer events deliveries,
//! `shopify-hmac-sha256`), the base64 HMAC-SHA256 of the raw body keyed with the app's
//! client secret (or a store's webhook signing secret), used as text, undecoded.

use crate::signing::{self, HmacSha256, Key};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::Mac;

/// Bytes of an HMAC-SHA256 signature.
pub const SIGNATURE_BYTES: usize = 32;

/// A secret as the Partner Dashboard or the store admin shows it; any text is a key.
pub fn decode_key(secret: &[u8]) -> Result<Key, &'static str> {
    Ok(Key::new(secret.to_vec()))
}

/// The signature of a header value: the base64 of exactly 32 bytes.
pub fn parse(header: &str) -> Option<[u8; SIGNATURE_BYTES]> {
    signing::base64::<SIGNATURE_BYTES>(header.trim_ascii())
}

/// Whether one of `signatures` is the HMAC of `body` under one of `keys` (every key and
/// signature tried, each in constant time).
pub fn verify(keys: &[Key], body: &[u8], signatures: &[[u8; SIGNATURE_BYTES]]) -> bool {
    signing::any_matches::<HmacSha256, _, _>(keys, &[body], signatures)
}

/// The header value of a body, as Shopify writes it (tests and tools).
pub fn sign(key: &Key, body: &[u8]) -> String {
    let tag = signing::mac::<HmacSha256>(key.as_ref(), &[body]).map(|mac| mac.finalize().into_bytes());
    tag.map(|tag| STANDARD.encode(tag)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shopify publishes no fixed vector (its libraries' tests sign at run time), so this
    // one was computed independently with Python's hmac:
    // base64.b64encode(hmac.new(b"hush", BODY, "sha256").digest()).
    const SECRET: &[u8] = b"hush";
    const BODY: &[u8] = br##"{"id":820982911946154508,"email":"jon@example.com","name":"#9999"}"##;
    const SIGNATURE: &str = "GHRA62rRonufCGcinoJEGFXXDPAEMt9WRVI1Q51xtjw=";

    fn key() -> Key {
        decode_key(SECRET).unwrap()
    }

    #[test]
    fn the_independent_vector_signs_and_verifies() {
        assert_eq!(sign(&key(), BODY), SIGNATURE);
        assert!(verify(&[key()], BODY, &[parse(SIGNATURE).unwrap()]));
        assert!(verify(&[key()], BODY, &[parse(&format!(" {SIGNATURE} ")).unwrap()]), "blanks around the value");
    }

    #[test]
    fn rotation_tries_every_key_and_every_signature() {
        let other = decode_key(b"previous").unwrap();
        assert!(verify(&[other, key()], BODY, &[[0; 32], parse(SIGNATURE).unwrap()]));
        assert!(!verify(&[decode_key(b"previous").unwrap()], BODY, &[parse(SIGNATURE).unwrap()]));
    }

    #[test]
    fn a_signature_is_the_base64_of_32_bytes() {
        for bad in [
            "",
            "GHRA62rRonufCGcinoJEGFXXDPAEMt9WRVI1Q51xtjw",
            "GHRA62rRonufCGcinoJEGFXXDPAEMt9WRVI1Q51xtjw==",
            "sha256=GHRA62rRonufCGcinoJEGFXXDPAEMt9WRVI1Q51xtjw=",
            &"ab".repeat(32),
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert!(!format!("{:?}", key()).contains("hush"));
    }

    proptest::proptest! {
        /// Any change to any signed byte (the body is all of it) is refused.
        #[test]
        fn any_change_to_a_signed_byte_is_refused(
            body in proptest::collection::vec(proptest::num::u8::ANY, 1..200),
            at in proptest::num::usize::ANY,
            flip in 1u8..=255,
        ) {
            let signature = parse(&sign(&key(), &body)).unwrap();
            proptest::prop_assert!(verify(&[key()], &body, &[signature]));
            let mut changed = body.clone();
            let at = at % changed.len();
            changed[at] ^= flip;
            proptest::prop_assert!(!verify(&[key()], &changed, &[signature]));
            proptest::prop_assert!(!verify(&[key()], &body[..body.len() - 1], &[signature]));
        }
    }
}
