//! `application/x-www-form-urlencoded` bodies, decoded strictly (unlike browsers): `+` is
//! a space, `%` must be followed by two hex digits, and every decoded name and value must
//! be UTF-8; anything else is refused. Senders that post forms (the md5 envelope, GitHub's
//! and Slack's `payload=`, Slack's slash commands) read their fields through this.

use crate::problem::echo;

/// The decoded `(name, value)` pairs of `body`, in order; `Err` is a problem detail.
pub fn fields(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = match pair.iter().position(|b| *b == b'=') {
            Some(eq) => pair.split_at(eq),
            None => (pair, &b"="[..]),
        };
        let name = decode(raw_name).map_err(|e| format!("form field name {e}"))?;
        let value = decode(raw_value.get(1..).unwrap_or_default()).map_err(|e| format!("form field {} {e}", echo(&name, 40)))?;
        out.push((name, value));
    }
    Ok(out)
}

/// The value of the field `name`, which may appear once at most.
pub fn only<'a>(fields: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, String> {
    let mut values = fields.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let first = values.next();
    if values.next().is_some() {
        return Err(format!("form field {name} appears more than once"));
    }
    Ok(first)
}

/// Percent-decodes one name or value, with `+` as a space (before the escapes, so `%2B`
/// stays a `+`); `Err` completes a detail.
fn decode(raw: &[u8]) -> Result<String, &'static str> {
    let spaced: Vec<u8> = raw.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    let bytes = crate::query::decode(&spaced).ok_or("has a '%' not followed by two hexadecimal digits")?;
    String::from_utf8(bytes.into_owned()).map_err(|_| "is not UTF-8 once percent-decoded")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_rules() {
        assert_eq!(decode(b"a+b%20c%2B%41").unwrap(), "a b c+A");
        assert_eq!(decode(b"").unwrap(), "");
        assert!(decode(b"%").is_err());
        assert!(decode(b"%a").is_err());
        assert!(decode(b"%fe").is_err());
        assert!(decode(b"%g0").is_err());
    }

    #[test]
    fn fields_are_decoded_in_order_and_counted() {
        let f = fields(b"a=1&&b&c=x%3Dy=z&a=2").unwrap();
        let want = [("a", "1"), ("b", ""), ("c", "x=y=z"), ("a", "2")];
        assert_eq!(f.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect::<Vec<_>>(), want);
        assert_eq!(only(&f, "c").unwrap(), Some("x=y=z"));
        assert_eq!(only(&f, "d").unwrap(), None);
        assert_eq!(only(&f, "a").unwrap_err(), "form field a appears more than once");
        assert_eq!(fields(b"%zz=1").unwrap_err(), "form field name has a '%' not followed by two hexadecimal digits");
        assert_eq!(fields(b"n=%ff").unwrap_err(), "form field n is not UTF-8 once percent-decoded");
    }
}
