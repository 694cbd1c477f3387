//! `standard_webhooks::signature::parse` over any `webhook-signature` value: never panics;
//! on Ok, 1 to 16 signatures, each exactly what the value's `v1` entries encode (written
//! back as `v1,<base64>` they parse to the same), and none verifies an unrelated message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_guard::profile::standard_webhooks::signature::{parse, sign, verify, Key, MAX_SIGNATURES};

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(signatures) = parse(header) else {
        return;
    };
    assert!((1..=MAX_SIGNATURES).contains(&signatures.len()), "{header:?}");
    let v1 = header.split(' ').filter(|e| e.starts_with("v1,")).count();
    assert_eq!(signatures.len(), v1, "{header:?}");
    let key = Key::decode(b"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    let signed = sign(&key, "msg_fuzz", "1700000000", data);
    let rewritten: Vec<String> = signatures.iter().map(|s| format!("v1,{}", base64_of(s))).collect();
    assert_eq!(parse(&rewritten.join(" ")).unwrap(), signatures);
    // Only the signature of this very message verifies it.
    let genuine = parse(&signed).unwrap();
    assert!(verify(&[key], "msg_fuzz", "1700000000", data, &genuine));
    let key = Key::decode(b"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    assert_eq!(verify(&[key], "msg_fuzz", "1700000000", data, &signatures), signatures.contains(&genuine[0]));
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
