//! `stripe::signature::parse` over any `Stripe-Signature` value: never panics; on Ok, the
//! `t` is the value's one `t` entry and there are 1 to 16 signatures, one per `v1` entry,
//! each the 32 bytes its hex encodes; and only the genuine signature of a message
//! verifies it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_guard::profile::stripe::signature::{decode_key, parse, sign, verify, MAX_SIGNATURES};
use webhook_guard::signing::to_hex;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = parse(header) else {
        return;
    };
    let entries: Vec<(&str, &str)> = header.split(',').filter_map(|e| e.trim_ascii().split_once('=')).collect();
    assert_eq!(entries.iter().filter(|(k, _)| *k == "t").map(|(_, v)| *v).collect::<Vec<_>>(), [parsed.timestamp], "{header:?}");
    let v1: Vec<&str> = entries.iter().filter(|(k, _)| *k == "v1").map(|(_, v)| *v).collect();
    assert!((1..=MAX_SIGNATURES).contains(&parsed.signatures.len()), "{header:?}");
    assert_eq!(parsed.signatures.len(), v1.len(), "{header:?}");
    for (signature, hex) in parsed.signatures.iter().zip(&v1) {
        assert_eq!(to_hex(signature), hex.to_ascii_lowercase(), "{header:?}");
    }
    // Only the signature of this very message verifies it.
    let key = decode_key(b"whsec_fuzz").unwrap();
    let genuine = parse(&sign(&key, "1700000000", data)).unwrap().signatures;
    assert!(verify(&[decode_key(b"whsec_fuzz").unwrap()], "1700000000", data, &genuine));
    assert_eq!(verify(&[key], "1700000000", data, &parsed.signatures), parsed.signatures.contains(&genuine[0]));
});
