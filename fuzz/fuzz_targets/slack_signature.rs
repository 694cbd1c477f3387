//! `slack::signature::parse` over any `X-Slack-Signature` value: the properties of
//! `fuzz_hex_signature` with the prefix `v0=`, the body being the input itself under a
//! fixed timestamp.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_guard::profile::slack::signature::{parse, sign, verify};
use webhook_guard::signing::Key;
use webhook_guard_fuzz::fuzz_hex_signature;

const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
const TIMESTAMP: &str = "1531420618";

fuzz_target!(|data: &[u8]| {
    fuzz_hex_signature(data, "v0=", parse, |body| sign(&Key::new(SECRET.to_vec()), TIMESTAMP, body), |body, signature| verify(&[Key::new(SECRET.to_vec())], TIMESTAMP, body, signature));
});
