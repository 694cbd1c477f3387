//! Standard Webhooks 1.0 signatures: the `webhook-signature` header, `whsec_` secrets with
//! the HMAC-SHA256 (`v1`) and `whpk_` public keys with ed25519 (`v1a`), both over
//! `{webhook-id}.{webhook-timestamp}.{body}`.

use crate::signing::{self, HmacSha256};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_compact::{PublicKey, Signature};
use hmac::Mac;

/// Bytes of an HMAC-SHA256 signature.
pub const SIGNATURE_BYTES: usize = 32;
/// Bytes of an ed25519 signature.
pub const V1A_SIGNATURE_BYTES: usize = 64;
/// Signatures read from one header: a sender rotating its secret sends two or three.
pub const MAX_SIGNATURES: usize = 16;
/// The spec's secrets are 24 to 64 random bytes.
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
/// Longest `webhook-id` accepted: ids are short tokens (`msg_` + 27 characters for Svix).
pub const MAX_ID_LEN: usize = 256;

/// A verification key, decoded from its `whsec_` or `whpk_` form. `Debug` never prints a
/// secret.
#[derive(Debug)]
pub enum Key {
    /// `whsec_`: the HMAC key of `v1` signatures.
    Secret(signing::Key),
    /// `whpk_`: the ed25519 public key of `v1a` signatures.
    Public(PublicKey),
}

impl Key {
    /// A key as the sender shows it: `whpk_` and the base64 of an ed25519 public key, or
    /// `whsec_` and the base64 of an HMAC key (the prefix may be left out, as the reference
    /// libraries allow). The error never quotes it.
    pub fn decode(secret: &[u8]) -> Result<Key, &'static str> {
        if secret.starts_with(b"whsk_") {
            // The receiver verifies with the public key; holding the signing key would let
            // anyone who reads the configuration forge deliveries.
            return Err("is a whsk_ ed25519 signing key; give the sender's whpk_ public key instead, the receiver must never hold the signing key");
        }
        if let Some(encoded) = secret.strip_prefix(b"whpk_") {
            let key = std::str::from_utf8(encoded).ok().and_then(signing::base64::<{ PublicKey::BYTES }>);
            let key = PublicKey::new(key.ok_or("must be whpk_ followed by the base64 of a 32-byte ed25519 public key")?);
            // A non-canonical or small-order key could never verify (or would verify forgeries).
            key.validate().map_err(|_| "is not a valid ed25519 public key")?;
            return Ok(Key::Public(key));
        }
        let encoded = secret.strip_prefix(b"whsec_").unwrap_or(secret);
        let key = STANDARD.decode(encoded).map_err(|_| "must be whsec_ or whpk_ followed by base64")?;
        if !SECRET_BYTES.contains(&key.len()) {
            return Err("must decode to 24 to 64 bytes");
        }
        Ok(Key::Secret(signing::Key::new(key)))
    }
}

/// The signatures of a `webhook-signature` header, by version.
#[derive(Debug, Default, PartialEq)]
pub struct Signatures {
    /// `v1`: HMAC-SHA256.
    pub v1: Vec<[u8; SIGNATURE_BYTES]>,
    /// `v1a`: ed25519.
    pub v1a: Vec<[u8; V1A_SIGNATURE_BYTES]>,
}

/// The `v1` and `v1a` signatures of a `webhook-signature` value: space-separated
/// `<version>,<base64>`. Other versions are skipped; a `v1` that is not the base64 of 32
/// bytes, a `v1a` that is not the base64 of 64, a value without any of them, or more
/// than [`MAX_SIGNATURES`] entries is malformed.
pub fn parse(header: &str) -> Result<Signatures, &'static str> {
    let mut signatures = Signatures::default();
    for (i, entry) in header.split(' ').filter(|e| !e.is_empty()).enumerate() {
        if i == MAX_SIGNATURES {
            return Err("holds more than 16 signatures");
        }
        let Some((version, encoded)) = entry.split_once(',') else {
            return Err("holds an entry that is not <version>,<signature>");
        };
        match version {
            "v1" => signatures.v1.push(signing::base64(encoded).ok_or("holds a v1 signature that is not the base64 of 32 bytes")?),
            "v1a" => signatures.v1a.push(signing::base64(encoded).ok_or("holds a v1a signature that is not the base64 of 64 bytes")?),
            _ => {}
        }
    }
    if signatures.v1.is_empty() && signatures.v1a.is_empty() {
        return Err("holds no v1 or v1a signature");
    }
    Ok(signatures)
}

/// Whether `keys` hold a kind that one of `signatures` could match: a `whsec_` secret for
/// a `v1` entry, a `whpk_` key for a `v1a` entry.
pub fn checkable(signatures: &Signatures, keys: &[Key]) -> bool {
    let has = |public: bool| keys.iter().any(|k| matches!(k, Key::Public(_)) == public);
    (!signatures.v1.is_empty() && has(false)) || (!signatures.v1a.is_empty() && has(true))
}

/// Whether one `v1` signature is the HMAC of `{id}.{timestamp}.{body}` under one `whsec_`
/// key (every pair tried, each in constant time), or one `v1a` signature is its ed25519
/// signature under one `whpk_` key.
pub fn verify(keys: &[Key], id: &str, timestamp: &str, body: &[u8], signatures: &Signatures) -> bool {
    let parts = signed(id, timestamp, body);
    let secrets: Vec<&signing::Key> = keys.iter().filter_map(|k| if let Key::Secret(s) = k { Some(s) } else { None }).collect();
    let hmac = signing::any_matches::<HmacSha256, _, _>(&secrets, &parts, &signatures.v1);
    // Public keys hold nothing to leak through timing: the first match may end the search.
    let mut public = keys.iter().filter_map(|k| if let Key::Public(p) = k { Some(p) } else { None });
    hmac || public.any(|key| signatures.v1a.iter().any(|signature| verifies(key, &parts, signature)))
}

/// Whether `signature` is the ed25519 signature of `parts`, concatenated, under `key`.
fn verifies(key: &PublicKey, parts: &[&[u8]], signature: &[u8; V1A_SIGNATURE_BYTES]) -> bool {
    let Ok(mut state) = key.verify_incremental(&Signature::new(*signature)) else {
        return false;
    };
    for part in parts {
        state.absorb(part);
    }
    state.verify().is_ok()
}

/// The `v1,<base64>` signature of a message under a `whsec_` key, as a sender writes it
/// (tests and tools); empty for a `whpk_` key, which cannot sign.
pub fn sign(key: &Key, id: &str, timestamp: &str, body: &[u8]) -> String {
    let Key::Secret(key) = key else { return String::new() };
    let tag = signing::mac::<HmacSha256>(key.as_ref(), &signed(id, timestamp, body)).map(|mac| mac.finalize().into_bytes());
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
        for header in [
            "",
            " ",
            "v1",
            "v1,",
            "v1,abc",
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw",
            "v1a,AAAA",
            "v2,AAAA",
            "x v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        ] {
            assert!(parse(header).is_err(), "{header:?}");
        }
        let many = vec![SIGNATURE; MAX_SIGNATURES + 1].join(" ");
        assert!(parse(&many).is_err());
        // Other versions are skipped; runs of spaces are one separator.
        assert_eq!(parse(&format!("v2,AAAA  {SIGNATURE}")).unwrap().v1.len(), 1);
        assert!(parse("v2,AAAA").is_err());
    }

    #[test]
    fn secrets_must_be_whsec_base64_of_24_to_64_bytes() {
        assert!(Key::decode(b"whsec_!!!").is_err());
        assert!(Key::decode(b"whsec_AAAA").is_err(), "3 bytes");
        assert!(!format!("{:?}", key()).contains("C2FV"));
    }

    // v1a: a keypair and signature made independently with Python's `cryptography`
    // (Ed25519PrivateKey from the seed sha256("webhook-guard v1a test key")) over the
    // reference vector's id, timestamp and body: the spec and its reference libraries
    // publish no v1a vector.
    const PUBLIC: &[u8] = b"whpk_3QPC+MuKnO2mTuDIBDslqPHSXD064SfMyyIePN719uo=";
    const OTHER_PUBLIC: &[u8] = b"whpk_vZK+d9kKMJjZUK49Gx5ImsjqQWMjP9v+5wCdDwH7Xl8=";
    const V1A: &str = "v1a,q4aZHa0apStovPyo71O3UW4K2IQ7gt2BiB1Y/vA5UGcCH5s00DkoIBlG/6p4M1I6oF/zaF3401pJnrV0SWpEAg==";

    fn public() -> Key {
        Key::decode(PUBLIC).unwrap()
    }

    #[test]
    fn a_v1a_signature_verifies_under_its_public_key_only() {
        let v1a = parse(V1A).unwrap();
        assert_eq!((v1a.v1.len(), v1a.v1a.len()), (0, 1));
        assert!(verify(&[public()], ID, TIMESTAMP, BODY, &v1a));
        assert!(!verify(&[Key::decode(OTHER_PUBLIC).unwrap()], ID, TIMESTAMP, BODY, &v1a), "another public key");
        assert!(!verify(&[key()], ID, TIMESTAMP, BODY, &v1a), "a v1a entry under whsec_ keys only");
        assert!(!verify(&[public()], ID, TIMESTAMP, BODY, &parse(SIGNATURE).unwrap()), "a v1 entry under whpk_ keys only");
        let mut body = BODY.to_vec();
        body[2] ^= 1;
        assert!(!verify(&[public()], ID, TIMESTAMP, &body, &v1a), "a changed body byte");
        assert!(!verify(&[public()], ID, "1649367554", BODY, &v1a));
        // Every bit of the signature counts, R and S alike.
        for at in [0, 31, 32, 63] {
            let mut forged = parse(V1A).unwrap();
            forged.v1a[0][at] ^= 1;
            assert!(!verify(&[public()], ID, TIMESTAMP, BODY, &forged), "{at}");
        }
    }

    #[test]
    fn keys_of_both_kinds_and_signatures_of_both_versions_mix() {
        let both = parse(&format!("{} {V1A}", OTHERS[0])).unwrap();
        assert!(verify(&[key(), public()], ID, TIMESTAMP, BODY, &both), "the v1a entry under the whpk_ key");
        assert!(!verify(&[key()], ID, TIMESTAMP, BODY, &both));
        let both = parse(&format!("{SIGNATURE} {}", &V1A.replace('q', "r"))).unwrap();
        assert!(verify(&[public(), key()], ID, TIMESTAMP, BODY, &both), "the v1 entry under the whsec_ key");
        assert!(!verify(&[public()], ID, TIMESTAMP, BODY, &both));
    }

    #[test]
    fn malformed_v1a_entries_are_refused() {
        let truncated = &V1A[..V1A.len() - 4];
        for header in [truncated, "v1a,", "v1a,AAAA", format!("{V1A}AAAA").as_str(), format!("{SIGNATURE} {truncated}").as_str()] {
            assert!(parse(header).is_err(), "{header:?}");
        }
    }

    #[test]
    fn public_keys_are_checked_and_signing_keys_refused() {
        assert!(matches!(public(), Key::Public(_)));
        for bad in [&b"whpk_AAAA"[..], b"whpk_3QPC+MuKnO2mTuDIBDslqPHSXD064SfMyyIePN719u", b"whpk_!!!"] {
            assert!(Key::decode(bad).unwrap_err().contains("32-byte ed25519 public key"), "{bad:?}");
        }
        // The identity point, a small-order key under which forgeries verify.
        let identity = format!("whpk_{}", STANDARD.encode([1u8].iter().chain(&[0u8; 31]).copied().collect::<Vec<u8>>()));
        assert_eq!(Key::decode(identity.as_bytes()).unwrap_err(), "is not a valid ed25519 public key");
        let err = Key::decode(b"whsk_JbJsqNhrG9ewnhvR+YcVJvv0OnOVxqNdbtixVsy9rXE=").unwrap_err();
        assert!(err.contains("whsk_") && err.contains("never hold the signing key") && !err.contains("JbJs"), "{err}");
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
