//! The payload as compact JSON, the way Ruby's or JavaScript's `to_json` writes it: the
//! second basis the md5 may cover, and the one form of `data.payload` whatever the
//! envelope's syntax.

use std::borrow::Cow;

/// `text` (one valid JSON value) without insignificant whitespace: members in the order
/// given, numbers as written, every string decoded and written again with the minimal
/// escapes (`\"`, `\\`, `\b \f \n \r \t`, `\u00xx` for other control characters), as
/// serde_json, Ruby's `JSON.generate` and JavaScript's `JSON.stringify` all do.
/// `None` when a string does not decode (the text is not JSON).
pub(super) fn compact(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let taken = match c {
            ' ' | '\t' | '\n' | '\r' => 1,
            '"' => {
                let literal = rest.get(..string_end(rest)?)?;
                let decoded: Cow<'_, str> = serde_json::from_str(literal).ok()?;
                out.push_str(&serde_json::to_string(&decoded).ok()?);
                literal.len()
            }
            _ => {
                out.push(c);
                c.len_utf8()
            }
        };
        rest = rest.get(taken..)?;
    }
    Some(out)
}

/// Byte length of the JSON string literal that `s` starts with, quotes included.
fn string_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 1;
    while let Some(b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Compact JSON as Rails' `to_json` writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped
/// as `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029` (ActiveSupport's default
/// `escape_html_entities_in_json`). Outside strings JSON holds none of them.
pub(super) fn html_safe(compact: &str) -> String {
    let mut out = String::with_capacity(compact.len());
    for c in compact.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_goes_strings_are_rewritten_order_and_numbers_stay() {
        let text = "{ \"b\" : [1, 2.50 ,1e3],\n\t\"a\":\"x\\u00e9\\/\\u001F \\\" y\" , \"c\": { } }";
        assert_eq!(compact(text).unwrap(), "{\"b\":[1,2.50,1e3],\"a\":\"xé/\\u001f \\\" y\",\"c\":{}}");
        assert_eq!(compact("\"\\\\\"").unwrap(), "\"\\\\\"");
        assert_eq!(compact(" true ").unwrap(), "true");
    }

    #[test]
    fn what_javascript_writes_is_kept_byte_for_byte() {
        // JSON.stringify({type:"ping",n:"a<b>\n",e:"é",l:[1,-2],o:{}})
        let js = r#"{"type":"ping","n":"a<b>\n","e":"é","l":[1,-2],"o":{}}"#;
        assert_eq!(compact(js).unwrap(), js);
    }

    #[test]
    fn rails_escapes_html_characters() {
        let json = compact(r#"{"n": "a<b> & c"}"#).unwrap();
        assert_eq!(html_safe(&json), r#"{"n":"a\u003cb\u003e \u0026 c"}"#);
        assert_eq!(html_safe("\"\u{2028}\u{2029}\""), r#""\u2028\u2029""#);
    }

    #[test]
    fn broken_strings_give_none() {
        assert_eq!(compact("\"abc"), None);
        assert_eq!(compact("\"\\x\""), None);
        assert_eq!(compact("\"a\\"), None);
    }
}
