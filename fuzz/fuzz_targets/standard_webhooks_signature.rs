//! `standard_webhooks::signature::parse` over any `webhook-signature` value: never panics;
//! on Ok, 1 to 16 signatures, each exactly what the value's `v1` and `v1a` entries encode
//! (written back as `v1,<base64>` and `v1a,<base64>` they parse to the same), and none
//! verifies an unrelated message, under a `whsec_` key, a `whpk_` key or both.
#![no_main]

use ed25519_compact::{KeyPair, Seed};
use libfuzzer_sys::fuzz_target;
use webhook_guard::profile::standard_webhooks::signature::{parse, sign, verify, Key, Signatures, MAX_SIGNATURES};

const SECRET: &[u8] = b"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(signatures) = parse(header) else {
        return;
    };
    let total = signatures.v1.len() + signatures.v1a.len();
    assert!((1..=MAX_SIGNATURES).contains(&total), "{header:?}");
    let count = |prefix: &str| header.split(' ').filter(|e| e.starts_with(prefix)).count();
    assert_eq!((signatures.v1.len(), signatures.v1a.len()), (count("v1,"), count("v1a,")), "{header:?}");
    let v1 = signatures.v1.iter().map(|s| format!("v1,{}", base64_of(s)));
    let rewritten: Vec<String> = v1.chain(signatures.v1a.iter().map(|s| format!("v1a,{}", base64_of(s)))).collect();
    assert_eq!(parse(&rewritten.join(" ")).unwrap(), signatures);
    // Only the signature of this very message verifies it, whatever the keys.
    let pair = KeyPair::from_seed(Seed::new([7; 32]));
    let public = || Key::decode(format!("whpk_{}", base64_of(&pair.pk[..])).as_bytes()).unwrap();
    let secret = || Key::decode(SECRET).unwrap();
    let genuine = Signatures {
        v1: parse(&sign(&secret(), "msg_fuzz", "1700000000", data)).unwrap().v1,
        v1a: vec![*pair.sk.sign([&b"msg_fuzz.1700000000."[..], data].concat(), None)],
    };
    assert!(verify(&[secret()], "msg_fuzz", "1700000000", data, &Signatures { v1: genuine.v1.clone(), v1a: Vec::new() }));
    assert!(verify(&[public()], "msg_fuzz", "1700000000", data, &Signatures { v1: Vec::new(), v1a: genuine.v1a.clone() }));
    let has_v1 = signatures.v1.contains(&genuine.v1[0]);
    let has_v1a = signatures.v1a.contains(&genuine.v1a[0]);
    assert_eq!(verify(&[secret()], "msg_fuzz", "1700000000", data, &signatures), has_v1);
    assert_eq!(verify(&[public()], "msg_fuzz", "1700000000", data, &signatures), has_v1a);
    assert_eq!(verify(&[public(), secret()], "msg_fuzz", "1700000000", data, &signatures), has_v1 || has_v1a);
});

fn base64_of(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
