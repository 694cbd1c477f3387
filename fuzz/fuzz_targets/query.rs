//! `query::find` and `query::without_secrets` on any UTF-8 query string: `find` never
//! panics; once the secrets are stripped no copy of `sig` is left under any reading, no
//! value that is a secret survives under any key, and stripping is idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_guard::query::{decode_lenient, find, split, without_secrets, Found, Secrets};

const PARAM: &str = "sig";
const SECRETS: [&[u8]; 2] = [b"k", b"a+b="];

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    let found = find(Some(q), PARAM);

    let secrets = Secrets { params: &[PARAM], values: SECRETS.to_vec() };
    let path = format!("/p?{q}");
    let stripped = without_secrets(&path, &secrets);
    let (base, rest) = split(&stripped);
    assert_eq!(base, "/p", "the path proper changed: {stripped:?}");

    // No copy of the secret survives: what is left is Missing, or Malformed for an
    // undecodable key that is kept because no reading of it is `sig`.
    let after = find(rest, PARAM);
    assert!(matches!(after, Found::Missing | Found::Malformed), "{q:?} -> {stripped:?} (before: {found:?}, after: {after:?})");
    for piece in rest.unwrap_or("").split(['&', ';']) {
        let value = piece.split_once('=').map_or("", |(_, v)| v);
        let decoded = decode_lenient(value.as_bytes());
        assert!(!SECRETS.contains(&decoded.as_ref()), "{q:?} -> {stripped:?}");
    }

    // Stripping is idempotent.
    assert_eq!(without_secrets(&stripped, &secrets), stripped);
});
