//! The secret query parameter: finding it, decoding it, and removing every copy of it
//! from `:path`.
//!
//! Authentication reads pairs split on `&` whose key, percent-decoded, is the parameter
//! without regard to ASCII case (`s%69g`, `SIG`). Backends read a query in more ways, so
//! the filter also reads it in each of them ([`Reading`]): split on `&` and `;` (Rack 2,
//! Python before 3.9.2, Go before 1.17), and each piece decoded before its `=` is found
//! (`sig%3Dx`), with keys that, cut at a NUL, trimmed of spaces (and `+`) and of a `[...]`
//! suffix (PHP, Rails), are the parameter (`%20sig`, `sig[]`, `sig%00`). A second copy
//! under any of them is ambiguous; and every copy, under any key whose value is a
//! configured secret, leaves the path. `+` in a value is kept literally (RFC 3986); only
//! `%XX` escapes are decoded.

use crate::auth;
use std::borrow::Cow;

/// What the query string holds under the secret parameter.
#[derive(Debug, PartialEq)]
pub enum Found {
    /// Absent, or present with an empty value.
    Missing,
    /// Given more than once under some reading, or read as different values by two
    /// readings: a proxy and a backend could read different copies.
    Repeated,
    /// A `%` escape that is not two hex digits.
    Malformed,
    /// The single percent-decoded value.
    Value(Vec<u8>),
}

/// What must leave a path: pairs whose key names one of `params`, and pairs whose value
/// is one of `values`.
pub struct Secrets<'a> {
    pub params: &'a [&'a str],
    pub values: Vec<&'a [u8]>,
}

/// One way a backend reads a query.
#[derive(Clone, Copy)]
enum Reading {
    /// Pairs split on `&`, then on the first `=`.
    Standard,
    /// Pairs split on `&` and `;`.
    Semicolons,
    /// Pairs split on `&` and `;`, each decoded before its first `=` is found.
    DecodedFirst,
}

impl Reading {
    const ALL: [Reading; 3] = [Reading::Standard, Reading::Semicolons, Reading::DecodedFirst];

    /// `readings` (the standard one first) that can read `text` otherwise than the standard
    /// one: none when it holds no `;` and no `%`, as all then split and decode it alike.
    fn distinct<'r>(readings: &'r [Reading], text: &str) -> &'r [Reading] {
        if text.bytes().any(|b| b == b';' || b == b'%') {
            readings
        } else {
            readings.get(..1).unwrap_or_default()
        }
    }

    fn pieces(self, query: &str) -> std::str::Split<'_, &'static [char]> {
        let separators: &'static [char] = match self {
            Reading::Standard => &['&'],
            Reading::Semicolons | Reading::DecodedFirst => &['&', ';'],
        };
        query.split(separators)
    }

    /// The key and value of `piece`, decoded leniently (borrowed where nothing is).
    fn pair(self, piece: &str) -> (Cow<'_, [u8]>, Cow<'_, [u8]>) {
        match self {
            Reading::Standard | Reading::Semicolons => {
                let (key, value) = split_pair(piece.as_bytes());
                (decode_lenient(key), decode_lenient(value))
            }
            Reading::DecodedFirst => match decode_lenient(piece.as_bytes()) {
                Cow::Borrowed(piece) => {
                    let (key, value) = split_pair(piece);
                    (Cow::Borrowed(key), Cow::Borrowed(value))
                }
                Cow::Owned(decoded) => {
                    let (key, value) = split_pair(&decoded);
                    (Cow::Owned(key.to_vec()), Cow::Owned(value.to_vec()))
                }
            },
        }
    }
}

/// Splits `key=value` at the first `=`; no `=` is a key with an empty value.
fn split_pair(piece: &[u8]) -> (&[u8], &[u8]) {
    match piece.iter().position(|b| *b == b'=') {
        Some(at) => (&piece[..at], &piece[at + 1..]),
        None => (piece, &[]),
    }
}

/// Splits `:path` into the path proper and the query string (without `?`).
pub fn split(path: &str) -> (&str, Option<&str>) {
    match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    }
}

/// Looks up `param` in `query` as authentication reads it: pairs split on `&`, keys
/// percent-decoded and matched without regard to ASCII case. A disguised key (`sig[]`,
/// `%20sig`, `sig%00`, `b=1;sig`, `sig%3D...`) does not authenticate, but a copy under
/// any reading next to the parameter, or a reading of another value, is `Repeated`.
pub fn find(query: Option<&str>, param: &str) -> Found {
    let query = query.unwrap_or("");
    let mut found = None;
    for piece in query.split('&') {
        let (key, value) = split_pair(piece.as_bytes());
        match decode(key) {
            // An undecodable key could be the secret under a disguise; refuse it.
            None => return Found::Malformed,
            Some(key) if key.eq_ignore_ascii_case(param.as_bytes()) => {
                if found.is_some() {
                    return Found::Repeated;
                }
                found = Some(value);
            }
            Some(_) => {}
        }
    }
    let found = match found.map(decode) {
        Some(None) => return Found::Malformed,
        found => found.flatten(),
    };
    for &reading in Reading::distinct(&Reading::ALL, query) {
        let mut copies = reading.pieces(query).map(|piece| reading.pair(piece)).filter(|(key, _)| names(key, param));
        let (first, second) = (copies.next(), copies.next());
        if second.is_some() || first.zip(found.as_ref()).is_some_and(|((_, value), found)| value != *found) {
            return Found::Repeated;
        }
    }
    match found {
        Some(v) if !v.is_empty() => Found::Value(v.into_owned()),
        _ => Found::Missing,
    }
}

/// `path` with every secret it may carry removed: from the query, each `&` pair that
/// holds one, else each of its `;` pieces that does; from every segment, each `;key=value`
/// path parameter that does (Spring and Tomcat read `/a;sig=x` as a parameter). Everything
/// else keeps its order and exact bytes; the `?` goes when nothing is left. For a path
/// that is forwarded or logged.
pub fn without_secrets(path: &str, secrets: &Secrets) -> String {
    let (base, query) = split(path);
    without_secrets_in(base, query, secrets)
}

/// [`without_secrets`] of the path `base` (holding no `?`) with `query`, when any.
pub fn without_secrets_in(base: &str, query: Option<&str>, secrets: &Secrets) -> String {
    // Without a `;` (the usual path) there is no path parameter: the base stays as it is.
    let base = if base.contains(';') { without_parameters(base, secrets) } else { base.to_string() };
    let Some(query) = query else {
        return base;
    };
    let kept: Vec<String> = query
        .split('&')
        .filter(|pair| !holds(pair, secrets))
        .filter_map(|pair| {
            let pieces: Vec<&str> = pair.split(';').filter(|piece| !holds(piece, secrets)).collect();
            // A pair all of whose pieces held a secret goes as a whole.
            (!pieces.is_empty()).then(|| pieces.join(";"))
        })
        .collect();
    if kept.iter().all(String::is_empty) {
        base
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// `base` (a path without its query) without the `;` path parameters that hold a secret.
fn without_parameters(base: &str, secrets: &Secrets) -> String {
    let segments: Vec<String> = base
        .split('/')
        .map(|segment| {
            let mut pieces = segment.split(';');
            let name = pieces.next().unwrap_or_default();
            let kept = pieces.filter(|piece| !holds(piece, secrets));
            std::iter::once(name).chain(kept).collect::<Vec<_>>().join(";")
        })
        .collect();
    segments.join("/")
}

/// Whether `piece` (a query pair, or a piece of one, or a path parameter) holds a secret
/// under some reading: its key names a secret parameter, or its value is a secret
/// (compared in constant time, `+` read literally and as a space).
fn holds(piece: &str, secrets: &Secrets) -> bool {
    Reading::distinct(&[Reading::Standard, Reading::DecodedFirst], piece).iter().any(|&reading| {
        let (key, value) = reading.pair(piece);
        // Without a `+`, the spaced reading is the value itself.
        let spaced = value.contains(&b'+').then(|| value.iter().map(|b| if *b == b'+' { b' ' } else { *b }).collect::<Vec<u8>>());
        secrets.params.iter().any(|param| names(&key, param))
            || auth::matches_any(&value, &secrets.values)
            || spaced.is_some_and(|spaced| auth::matches_any(&spaced, &secrets.values))
    })
}

/// Whether the decoded `key` names `param`: cut at a NUL (C strings), trimmed of spaces,
/// control characters and `+` (a form-decoded space; PHP drops leading spaces), without a
/// `[...]` suffix (PHP and Rails read `sig[]` as `sig`), ASCII case ignored.
fn names(key: &[u8], param: &str) -> bool {
    let key = key.split(|b| *b == 0).next().unwrap_or_default();
    let key = trim(key);
    let key = match key.iter().position(|b| *b == b'[') {
        Some(at) if key.ends_with(b"]") => trim(&key[..at]),
        _ => key,
    };
    key.eq_ignore_ascii_case(param.as_bytes())
}

fn trim(key: &[u8]) -> &[u8] {
    let blank = |b: &u8| *b <= b' ' || *b == b'+' || *b == 0x7f;
    let start = key.iter().position(|b| !blank(b)).unwrap_or(key.len());
    let end = key.iter().rposition(|b| !blank(b)).map_or(start, |at| at + 1);
    &key[start..end.max(start)]
}

/// Decodes `%XX` escapes; `None` when an escape is malformed.
pub fn decode(s: &[u8]) -> Option<Cow<'_, [u8]>> {
    unescape(s, true)
}

/// Decodes the well-formed `%XX` escapes and keeps any other `%` as it is, as a lenient
/// server does.
pub fn decode_lenient(s: &[u8]) -> Cow<'_, [u8]> {
    unescape(s, false).unwrap_or_default()
}

/// `None` only when `strict` and an escape is malformed. Without a `%` (most keys and
/// values) `s` is its own decoding: borrowed, not copied.
fn unescape(s: &[u8], strict: bool) -> Option<Cow<'_, [u8]>> {
    if !s.contains(&b'%') {
        return Some(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        let escaped = match (b, s.get(i + 1..i + 3)) {
            (b'%', Some(&[hi, lo])) => hex(hi).zip(hex(lo)).map(|(hi, lo)| hi << 4 | lo),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None if b == b'%' && strict => return None,
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(Cow::Owned(out))
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_decodes_the_secret() {
        assert_eq!(find(Some("sig=abc"), "sig"), Found::Value(b"abc".to_vec()));
        assert_eq!(find(Some("a=1&sig=a%2Bb%3D&b=2"), "sig"), Found::Value(b"a+b=".to_vec()));
        assert_eq!(find(Some("sig=a+b"), "sig"), Found::Value(b"a+b".to_vec()));
        assert_eq!(find(Some("s%69g=x"), "sig"), Found::Value(b"x".to_vec()));
        assert_eq!(find(Some("SIG=x"), "sig"), Found::Value(b"x".to_vec()));
        assert_eq!(find(Some("signature=x"), "sig"), Found::Missing);
    }

    #[test]
    fn missing_empty_repeated_malformed() {
        assert_eq!(find(None, "sig"), Found::Missing);
        assert_eq!(find(Some(""), "sig"), Found::Missing);
        assert_eq!(find(Some("sig="), "sig"), Found::Missing);
        assert_eq!(find(Some("sig"), "sig"), Found::Missing);
        assert_eq!(find(Some("sig=a&sig=a"), "sig"), Found::Repeated);
        assert_eq!(find(Some("sig=a&s%69g=b"), "sig"), Found::Repeated);
        assert_eq!(find(Some("sig=a&SIG=a"), "sig"), Found::Repeated);
        assert_eq!(find(Some("sig=&sig=a"), "sig"), Found::Repeated);
        assert_eq!(find(Some("sig=%zz"), "sig"), Found::Malformed);
        assert_eq!(find(Some("sig=%4"), "sig"), Found::Malformed);
        assert_eq!(find(Some("s%6=x"), "sig"), Found::Malformed);
    }

    fn strip(path: &str, params: &[&str]) -> String {
        without_secrets(path, &Secrets { params, values: vec![b"S".as_slice(), b"a b".as_slice()] })
    }

    #[test]
    fn removes_only_the_secret() {
        for (path, want) in [
            ("/r?sig=k", "/r"),
            ("/r?a=1&sig=k&b=%20", "/r?a=1&b=%20"),
            ("/r?s%69g=k&a", "/r?a"),
            ("/r?Sig=k&a", "/r?a"),
            ("/r", "/r"),
            ("/r?b=2&a=1&sig=k", "/r?b=2&a=1"),
            ("/r?a=x;y&b", "/r?a=x;y&b"),
        ] {
            assert_eq!(strip(path, &["sig"]), want, "{path}");
        }
    }

    #[test]
    fn removes_secrets_from_path_parameters_and_the_query() {
        let params = ["sig", "token"];
        for (path, want) in [
            ("/shadow;sig=k?a=1&sig=k", "/shadow?a=1"),
            ("/a;x=1;SIG=k/b;s%69g=k;y=2/c;token;z", "/a;x=1/b;y=2/c;z"),
            ("/a;sigma=1/b;=2?token=t", "/a;sigma=1/b;=2"),
            ("/a;s%zzig=1", "/a;s%zzig=1"),
            ("/a;x=S/b", "/a/b"),
            ("/plain/path/", "/plain/path/"),
        ] {
            assert_eq!(strip(path, &params), want, "{path}");
        }
    }

    #[test]
    fn every_spelling_and_every_key_of_a_secret_value_leaves_the_path() {
        for (path, want) in [
            ("/r?sig=S&b=1;sig=S", "/r?b=1"),
            ("/r?a=1;sig=S;c=3&d", "/r?a=1;c=3&d"),
            ("/r?sig%3DS&a=1", "/r?a=1"),
            ("/r?sig[]=S&a=1", "/r?a=1"),
            ("/r?sig%5B%5D=x", "/r"),
            ("/r?%20sig=x&+sig=y", "/r"),
            ("/r?sig%00=x&a", "/r?a"),
            ("/r?other=S&x=%53&y=a+b&z=a%20b", "/r"),
            ("/r?x%3DS", "/r"),
            ("/r?a=1;x=S", "/r?a=1"),
            ("/r?x=Sx&y=xS&sigma=S2", "/r?x=Sx&y=xS&sigma=S2"),
        ] {
            assert_eq!(strip(path, &["sig"]), want, "{path}");
        }
    }

    #[test]
    fn a_secret_read_twice_under_any_reading_is_repeated() {
        for query in
            ["sig=S&b=1;sig=S", "sig=S&sig%3DS", "sig=S&sig[]=S", "sig=S&%20sig=S", "sig=S&sig%00=S", "sig=S&sig[x]=T", "sig=S;x", "sig=S&a=1%26sig%3DS;sig=S"]
        {
            assert_eq!(find(Some(query), "sig"), Found::Repeated, "{query}");
        }
        // A disguised key alone does not authenticate (it is removed all the same).
        for query in ["sig%3DS", "sig[]=S", "%20sig=S", "sig%00=S", "b=1;sig=S", "sig%20=S"] {
            assert_eq!(find(Some(query), "sig"), Found::Missing, "{query}");
        }
        for query in ["sig=S%26x=1%3Dy", "sig=S&x[]=S&y%00=S", "a=1;b&sig=S"] {
            assert!(matches!(find(Some(query), "sig"), Found::Value(v) if v.starts_with(b"S")), "{query}");
        }
    }

    #[test]
    fn only_a_closed_bracket_suffix_names_the_parameter() {
        // PHP reads `sig[x` as `sig_x`, not `sig`: another parameter, left alone.
        for key in ["sig[]", "sig[x]", " sig[0] "] {
            assert!(names(key.as_bytes(), "sig"), "{key}");
        }
        for key in ["sig[", "sig[x", "sig]", "sigx]"] {
            assert!(!names(key.as_bytes(), "sig"), "{key}");
        }
        assert_eq!(find(Some("sig=S&sig[x=T"), "sig"), Found::Value(b"S".to_vec()));
    }

    #[test]
    fn readings_agree_on_a_text_without_semicolon_or_escape() {
        let read = |reading: Reading, text| reading.pieces(text).map(|piece| reading.pair(piece)).collect::<Vec<_>>();
        for text in ["sig=a&b=c", "a+b=c+d&sig[]=x", " sig=x", "x", "", "=&&="] {
            assert_eq!(Reading::distinct(&Reading::ALL, text).len(), 1, "{text}");
            for reading in Reading::ALL {
                assert_eq!(read(reading, text), read(Reading::Standard, text), "{text}");
            }
        }
        for text in ["a;b", "a%3Bb", "%"] {
            assert_eq!(Reading::distinct(&Reading::ALL, text).len(), 3, "{text}");
        }
    }

    #[test]
    fn lenient_decoding_keeps_a_malformed_escape() {
        assert_eq!(*decode_lenient(b"%41%zz%4%"), *b"A%zz%4%");
        assert_eq!(decode(b"%41%4"), None);
        assert_eq!(decode(b"%41+").as_deref(), Some(&b"A+"[..]));
        // Nothing to decode: borrowed, not copied.
        assert!(matches!(decode(b"a+b"), Some(Cow::Borrowed(b"a+b"))));
        assert!(matches!(decode_lenient(b""), Cow::Borrowed(b"")));
    }

    #[test]
    fn splits_path() {
        assert_eq!(split("/a?b=c?d"), ("/a", Some("b=c?d")));
        assert_eq!(split("/a"), ("/a", None));
    }
}
