//! Standard Webhooks 1.0 signatures: the `webhook-signature` header, `whsec_` secrets and
//! the HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`.

use crate::signing::{self, HmacSha256};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::Mac;

/// Bytes of an HMAC-SHA256 signature.
pub const SIGNATURE_BYTES: usize = 32;
/// Signatures read from one header: a sender rotating its secret sends two or three.
pub const MAX_SIGNATURES: usize = 16;
/// The spec's secrets are 24 to 64 random bytes.
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
/// Longest `webhook-id` accepted: ids are short tokens (`msg_` + 27 characters for Svix).
pub const MAX_ID_LEN: usize = 256;

/// An HMAC key, decoded from its `whsec_` form. `Debug` never prints it.
#[derive(Debug)]
pub struct Key(signing::Key);

impl Key {
    /// A secret as the sender shows it: `whsec_` and the base64 of the key (the prefix
    /// may be left out, as the reference libraries allow). The error never quotes it.
    pub fn decode(secret: &[u8]) -> Result<Key, &'static str> {
        if secret.starts_with(b"whpk_") || secret.starts_with(b"whsk_") {
            return Err("v1a (ed25519) keys are not supported yet; give the endpoint's whsec_ secret");
        }
        let encoded = secret.strip_prefix(b"whsec_").unwrap_or(secret);
        let key = STANDARD.decode(encoded).map_err(|_| "must be whsec_ followed by base64")?;
        if !SECRET_BYTES.contains(&key.len()) {
            return Err("must decode to 24 to 64 bytes");
        }
        Ok(Key(signing::Key::new(key)))
    }
}

/// The `v1` signatures of a `webhook-signature` value: space-separated
/// `<version>,<base64>`. Other versions (`v1a`) are skipped; a `v1` that is not the
/// base64 of 32 bytes, a value without any `v1`, or more than [`MAX_SIGNATURES`]
/// entries is malformed.
pub fn parse(header: &str) -> Result<Vec<[u8; SIGNATURE_BYTES]>, &'static str> {
    let mut signatures = Vec::new();
    for (i, entry) in header.split(' ').filter(|e| !e.is_empty()).enumerate() {
        if i == MAX_SIGNATURES {
            return Err("holds more than 16 signatures");
        }
        let Some((version, encoded)) = entry.split_once(',') else {
            return Err("holds an entry that is not <version>,<signature>");
        };
        if version != "v1" {
            continue;
        }
        let signature = signing::base64::<SIGNATURE_BYTES>(encoded).ok_or("holds a v1 signature that is not the base64 of 32 bytes")?;
        signatures.push(signature);
    }
    if signatures.is_empty() {
        return Err("holds no v1 signature (v1a, ed25519, is not supported yet)");
    }
    Ok(signatures)
}

/// Whether one of `signatures` is the HMAC of `{id}.{timestamp}.{body}` under one of
/// `keys` (every key and signature tried, each in constant time).
pub fn verify(keys: &[Key], id: &str, timestamp: &str, body: &[u8], signatures: &[[u8; SIGNATURE_BYTES]]) -> bool {
    let keys: Vec<&signing::Key> = keys.iter().map(|k| &k.0).collect();
    signing::any_matches::<HmacSha256, _, _>(&keys, &signed(id, timestamp, body), signatures)
}

/// The `v1,<base64>` signature of a message, as a sender writes it (tests and tools).
pub fn sign(key: &Key, id: &str, timestamp: &str, body: &[u8]) -> String {
    let tag = signing::mac::<HmacSha256>(key.0.as_ref(), &signed(id, timestamp, body)).map(|mac| mac.finalize().into_bytes());
    tag.map(|tag| format!("v1,{}", STANDARD.encode(tag))).unwrap_or_default()
}

/// The signed content, `{id}.{timestamp}.{body}`, in parts.
fn signed<'a>(id: &'a str, timestamp: &'a str, body: &'a [u8]) -> [&'a [u8]; 5] {
    [id.as_bytes(), b".", timestamp.as_bytes(), b".", body]
}

#[cfg(test)]
mod tests {
    use super::*;

    // The reference libraries' test vector (standard-webhooks/standard-webhooks,
    // libraries/rust/src/lib.rs `test_sign`; the same values in the other libraries),
    // recomputed independently with Python's hmac before being written here.
    const SECRET: &[u8] = b"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TIMESTAMP: &str = "1649367553";
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
    /// Signatures of other messages, from the same library's multi-signature tests.
    const OTHERS: [&str; 3] = [
        "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ=",
        "v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q=",
        "v1,9DfC1c3eeOrXB6w/5dIDydLNQaEyww5KalE5jLBZucE=",
    ];

    fn key() -> Key {
        Key::decode(SECRET).unwrap()
    }

    #[test]
    fn the_reference_vector_signs_and_verifies() {
        assert_eq!(sign(&key(), ID, TIMESTAMP, BODY), SIGNATURE);
        assert!(verify(&[key()], ID, TIMESTAMP, BODY, &parse(SIGNATURE).unwrap()));
        // The prefix is optional, as in the reference libraries.
        let bare = Key::decode(&SECRET[6..]).unwrap();
        assert!(verify(&[bare], ID, TIMESTAMP, BODY, &parse(SIGNATURE).unwrap()));
    }

    #[test]
    fn any_signature_of_several_may_match_and_none_of_the_others_does() {
        let all = format!("{} {} {SIGNATURE} {}", OTHERS[0], OTHERS[1], OTHERS[2]);
        assert!(verify(&[key()], ID, TIMESTAMP, BODY, &parse(&all).unwrap()));
        let others = OTHERS.join(" ");
        assert!(!verify(&[key()], ID, TIMESTAMP, BODY, &parse(&others).unwrap()));
    }

    #[test]
    fn rotation_tries_every_key() {
        let other = Key::decode(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert!(verify(&[other, key()], ID, TIMESTAMP, BODY, &parse(SIGNATURE).unwrap()));
        let other = Key::decode(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert!(!verify(&[other], ID, TIMESTAMP, BODY, &parse(SIGNATURE).unwrap()));
    }

    #[test]
    fn every_signed_part_counts() {
        let signatures = parse(SIGNATURE).unwrap();
        assert!(!verify(&[key()], "msg_27UH4WbU6Z5A5EzD8u03UvzRbpK", TIMESTAMP, BODY, &signatures));
        assert!(!verify(&[key()], ID, "1649367554", BODY, &signatures));
        let mut body = BODY.to_vec();
        body[2] ^= 1;
        assert!(!verify(&[key()], ID, TIMESTAMP, &body, &signatures));
        // The separators are part of it: moving a byte across one changes the message.
        assert!(!verify(&[key()], "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk.1", "649367553", BODY, &signatures));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for header in
            ["", " ", "v1", "v1,", "v1,abc", "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw", "v1a,AAAA", "x v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="]
        {
            assert!(parse(header).is_err(), "{header:?}");
        }
        let many = vec![SIGNATURE; MAX_SIGNATURES + 1].join(" ");
        assert!(parse(&many).is_err());
        // Other versions are skipped; runs of spaces are one separator.
        assert_eq!(parse(&format!("v1a,AAAA  {SIGNATURE}")).unwrap().len(), 1);
    }

    #[test]
    fn secrets_must_be_whsec_base64_of_24_to_64_bytes() {
        assert!(Key::decode(b"whsec_!!!").is_err());
        assert!(Key::decode(b"whsec_AAAA").is_err(), "3 bytes");
        assert!(Key::decode(b"whpk_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap_err().contains("not supported"));
        assert!(!format!("{:?}", key()).contains("C2FV"));
    }

    proptest::proptest! {
        /// Any change to any signed byte (the id, the timestamp or the body) is refused.
        #[test]
        fn any_change_to_a_signed_byte_is_refused(
            id in "[a-zA-Z0-9_]{1,40}",
            timestamp in 1_000_000_000u64..4_000_000_000,
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            at in proptest::num::usize::ANY,
            flip in 1u8..=255,
        ) {
            let timestamp = timestamp.to_string();
            let signatures = parse(&sign(&key(), &id, &timestamp, &body)).unwrap();
            proptest::prop_assert!(verify(&[key()], &id, &timestamp, &body, &signatures));
            let mut message = [id.as_bytes(), b".", timestamp.as_bytes(), b".", &body].concat();
            let at = at % message.len();
            message[at] ^= flip;
            // Split again at the first two dots: the parts a receiver would sign.
            let mut parts = message.splitn(3, |b| *b == b'.');
            let (Some(id), Some(timestamp), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
                return Ok(());
            };
            let (Ok(id), Ok(timestamp)) = (std::str::from_utf8(id), std::str::from_utf8(timestamp)) else {
                return Ok(());
            };
            proptest::prop_assert!(!verify(&[key()], id, timestamp, body, &signatures));
        }
    }
}
