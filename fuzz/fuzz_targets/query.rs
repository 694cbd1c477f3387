//! `query::find` and `query::without_param` on any UTF-8 query string: `find` agrees with
//! an independent model (keys percent-decoded and matched without regard to ASCII case),
//! and once `sig` is stripped no copy of it is left while the other pairs keep their order
//! and bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_guard::query::{find, split, without_param, Found};

const PARAM: &str = "sig";

/// Independent `%XX` decoder (`+` kept literally); `None` on a malformed escape.
fn decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn key(piece: &str) -> &str {
    piece.split_once('=').map_or(piece, |(k, _)| k)
}

/// Whether a decoded key names the secret parameter.
fn is_param(decoded: &[u8]) -> bool {
    decoded.eq_ignore_ascii_case(PARAM.as_bytes())
}

/// What `find` must answer, by the documented rules.
fn model(query: &str) -> Found {
    let mut value = None;
    for piece in query.split('&') {
        match decode(key(piece)) {
            None => return Found::Malformed,
            Some(k) if is_param(&k) => {
                if value.is_some() {
                    return Found::Repeated;
                }
                value = Some(piece.split_once('=').map_or("", |(_, v)| v));
            }
            Some(_) => {}
        }
    }
    match value.map(decode) {
        None => Found::Missing,
        Some(None) => Found::Malformed,
        Some(Some(v)) if v.is_empty() => Found::Missing,
        Some(Some(v)) => Found::Value(v),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    let found = find(Some(q), PARAM);
    assert_eq!(found, model(q), "find disagrees with the model on {q:?}");

    let path = format!("/p?{q}");
    let stripped = without_param(&path, PARAM);
    let (base, rest) = split(&stripped);
    assert_eq!(base, "/p", "the path proper changed: {stripped:?}");

    // No copy of the secret survives: what is left is Missing, or Malformed when (and only
    // when) the query holds an undecodable key, which is kept because it is not `sig`.
    let undecodable = q.split('&').any(|p| decode(key(p)).is_none());
    let after = find(rest, PARAM);
    let want = if undecodable { Found::Malformed } else { Found::Missing };
    assert_eq!(after, want, "{q:?} -> {stripped:?} (before: {found:?})");
    if found != Found::Malformed && found != Found::Repeated {
        // `find` read every key without meeting an undecodable one, so stripping leaves
        // nothing to find: Missing unless the original was Malformed (or Repeated).
        assert_eq!(after, Found::Missing, "{q:?}");
    }
    if let Some(rest) = rest {
        for piece in rest.split('&') {
            assert!(!decode(key(piece)).is_some_and(|k| is_param(&k)), "{q:?} -> {stripped:?}");
        }
    }

    // The other pairs keep their order and exact bytes; `?` goes when nothing is left.
    let kept: Vec<&str> = q
        .split('&')
        .filter(|p| decode(key(p)).is_none_or(|k| !is_param(&k)))
        .collect();
    let expected = if kept.iter().all(|p| p.is_empty()) {
        "/p".to_string()
    } else {
        format!("/p?{}", kept.join("&"))
    };
    assert_eq!(stripped, expected, "{q:?}");

    // Stripping is idempotent.
    assert_eq!(without_param(&stripped, PARAM), stripped);
});
