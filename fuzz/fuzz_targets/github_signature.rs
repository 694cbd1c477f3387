//! `github::signature::parse` over any `X-Hub-Signature-256` value: never panics; on Ok,
//! the value is `sha256=` and the 64 hex digits of the 32 bytes returned (written back in
//! lowercase they parse the same), and only the genuine signature of a body verifies it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_guard::profile::github::signature::{parse, sign, verify};
use webhook_guard::signing::{to_hex, Key};

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(signature) = parse(header) else {
        return;
    };
    assert!(header.len() == 71 && header.starts_with("sha256="), "{header:?}");
    let hex = to_hex(&signature);
    assert_eq!(hex, header[7..].to_ascii_lowercase());
    assert_eq!(parse(&format!("sha256={hex}")).unwrap(), signature);
    let key = Key::new(b"It's a Secret to Everybody");
    let genuine = parse(&sign(&key, data)).unwrap();
    assert!(verify(&[Key::new(b"It's a Secret to Everybody")], data, &genuine));
    assert_eq!(verify(&[key], data, &signature), signature == genuine);
});
