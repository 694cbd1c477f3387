//! `github::signature::parse` over any `X-Hub-Signature-256` value: the properties of
//! `fuzz_hex_signature` with the prefix `sha256=`, the body being the input itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_guard::profile::github::signature::{parse, sign, verify};
use webhook_guard::signing::Key;
use webhook_guard_fuzz::fuzz_hex_signature;

const SECRET: &[u8] = b"It's a Secret to Everybody";

fuzz_target!(|data: &[u8]| {
    fuzz_hex_signature(data, "sha256=", parse, |body| sign(&Key::new(SECRET.to_vec()), body), |body, signature| verify(&[Key::new(SECRET.to_vec())], body, signature));
});
