//! The secret query parameter: finding it, decoding it, and removing it from `:path`.
//!
//! Keys are percent-decoded and matched without regard to ASCII case, so `s%69g=...` and
//! `SIG=...` count as `sig`: a backend that decodes keys or reads them case-insensitively
//! must never see a secret the filter did not check and remove. `+` is kept literally
//! (RFC 3986); only `%XX` escapes are decoded.

/// What the query string holds under the secret parameter.
#[derive(Debug, PartialEq)]
pub enum Found {
    /// Absent, or present with an empty value.
    Missing,
    /// Given more than once: a proxy and a backend could read different copies.
    Repeated,
    /// A `%` escape that is not two hex digits.
    Malformed,
    /// The single percent-decoded value.
    Value(Vec<u8>),
}

/// Splits `:path` into the path proper and the query string (without `?`).
pub fn split(path: &str) -> (&str, Option<&str>) {
    match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    }
}

/// Looks up `param` in `query`.
pub fn find(query: Option<&str>, param: &str) -> Found {
    let mut found = None;
    for piece in query.unwrap_or("").split('&') {
        let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
        match is_param(key, param) {
            Some(true) => {}
            Some(false) => continue,
            // An undecodable key could be the secret under a disguise; refuse it.
            None => return Found::Malformed,
        }
        if found.is_some() {
            return Found::Repeated;
        }
        found = Some(value);
    }
    match found.map(|v| decode(v.as_bytes())) {
        None => Found::Missing,
        Some(None) => Found::Malformed,
        Some(Some(v)) if v.is_empty() => Found::Missing,
        Some(Some(v)) => Found::Value(v),
    }
}

/// `path` with every `param` pair removed from its query; other pairs keep their order
/// and exact bytes. The `?` goes when nothing is left.
pub fn without_param(path: &str, param: &str) -> String {
    let (base, query) = split(path);
    let Some(query) = query else {
        return base.to_string();
    };
    let kept: Vec<&str> = query.split('&').filter(|piece| !names(piece, param)).collect();
    if kept.iter().all(|p| p.is_empty()) {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// `path` with every secret it may carry removed: each `params` pair from its query, and
/// each `;key=value` path parameter named like one of `params` from every segment (Spring
/// and Tomcat read `/a;sig=x` as a parameter; a forwarded path must not carry it). For a
/// path that is forwarded or logged as it was sent.
pub fn without_secrets(path: &str, params: &[&str]) -> String {
    let (base, query) = split(path);
    let segments: Vec<String> = base
        .split('/')
        .map(|segment| {
            let mut pieces = segment.split(';');
            let name = pieces.next().unwrap_or_default();
            let kept = pieces.filter(|piece| !params.iter().any(|param| names(piece, param)));
            std::iter::once(name).chain(kept).collect::<Vec<_>>().join(";")
        })
        .collect();
    let base = segments.join("/");
    let path = query.map_or(base.clone(), |query| format!("{base}?{query}"));
    params.iter().fold(path, |path, param| without_param(&path, param))
}

/// Whether the `key=value` pair `piece` (a query pair or a path parameter) is `param`'s.
fn names(piece: &str, param: &str) -> bool {
    let key = piece.split_once('=').map_or(piece, |(k, _)| k);
    is_param(key, param) == Some(true)
}

/// Whether `key` names `param` (percent-decoded, ASCII case ignored); `None` when an
/// escape is malformed. Shared by `find` and `without_param`, so every key that is checked
/// as the secret is also a key that is removed.
fn is_param(key: &str, param: &str) -> Option<bool> {
    decode(key.as_bytes()).map(|k| k.eq_ignore_ascii_case(param.as_bytes()))
}

/// Decodes `%XX` escapes; `None` when an escape is malformed.
pub fn decode(s: &[u8]) -> Option<Vec<u8>> {
    unescape(s, true)
}

/// Decodes the well-formed `%XX` escapes and keeps any other `%` as it is, as a lenient
/// server does.
pub fn decode_lenient(s: &[u8]) -> Vec<u8> {
    unescape(s, false).unwrap_or_default()
}

/// `None` only when `strict` and an escape is malformed.
fn unescape(s: &[u8], strict: bool) -> Option<Vec<u8>> {
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
    Some(out)
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

    #[test]
    fn removes_only_the_secret() {
        assert_eq!(without_param("/r?sig=k", "sig"), "/r");
        assert_eq!(without_param("/r?a=1&sig=k&b=%20", "sig"), "/r?a=1&b=%20");
        assert_eq!(without_param("/r?s%69g=k&a", "sig"), "/r?a");
        assert_eq!(without_param("/r?Sig=k&a", "sig"), "/r?a");
        assert_eq!(without_param("/r", "sig"), "/r");
        assert_eq!(without_param("/r?b=2&a=1&sig=k", "sig"), "/r?b=2&a=1");
    }

    #[test]
    fn removes_secrets_from_path_parameters_and_the_query() {
        let params = ["sig", "token"];
        for (path, want) in [
            ("/shadow;sig=k?a=1&sig=k", "/shadow?a=1"),
            ("/a;x=1;SIG=k/b;s%69g=k;y=2/c;token;z", "/a;x=1/b;y=2/c;z"),
            ("/a;sigma=1/b;=2?token=t", "/a;sigma=1/b;=2"),
            ("/a;s%zzig=1", "/a;s%zzig=1"),
            ("/plain/path/", "/plain/path/"),
        ] {
            assert_eq!(without_secrets(path, &params), want, "{path}");
        }
    }

    #[test]
    fn lenient_decoding_keeps_a_malformed_escape() {
        assert_eq!(decode_lenient(b"%41%zz%4%"), b"A%zz%4%");
        assert_eq!(decode(b"%41%4"), None);
        assert_eq!(decode(b"%41+"), Some(b"A+".to_vec()));
    }

    #[test]
    fn splits_path() {
        assert_eq!(split("/a?b=c?d"), ("/a", Some("b=c?d")));
        assert_eq!(split("/a"), ("/a", None));
    }
}
