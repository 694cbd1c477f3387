//! Strict JSON: one value, no duplicate key in any object, every number finite and every
//! string valid Unicode (serde_json refuses lone surrogates and out-of-range numbers when
//! it visits them). Both profiles check a body with it before reading it, so a backend
//! that parses strictly (I-JSON) never receives something it cannot read.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::problem::echo;

/// Checks that `text` is one JSON value with no duplicate key in any object.
pub fn check(text: &str) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    Strict::deserialize(&mut de)?;
    de.end()
}

/// Whether valid JSON `text` nests arrays and objects deeper than `max`. serde_json only
/// limits depth (at 128) when it builds values, not for raw or skipped ones, and a
/// forwarded CloudEvent wraps the sender's JSON two levels deeper: profiles cap it lower.
pub fn too_deep(text: &str, max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// An object key, borrowed from the input when it has no escapes.
#[derive(Deserialize)]
#[serde(transparent)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

/// Walks any JSON value, rejecting duplicate object keys at every depth.
struct Strict;

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_none<E: de::Error>(self) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        while seq.next_element::<Strict>()?.is_some() {}
        Ok(Strict)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        // Keys are borrowed from the body unless they hold escapes; a B-tree keeps a
        // hostile object with thousands of keys at O(n log n).
        let mut seen = BTreeSet::new();
        while let Some(Key(key)) = map.next_key::<Key>()? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format_args!("duplicate key \"{}\"", echo(&key, 40))));
            }
            map.next_value::<Strict>()?;
            seen.insert(key);
        }
        Ok(Strict)
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn refuses_what_strict_parsers_refuse() {
        assert!(check(r#"{"a": [1, {"b": "\u00e9"}], "c": null}"#).is_ok());
        for bad in [r#"{"a": 1, "a": 2}"#, r#"{"x": {"k": 1, "k": 1}}"#, r#"{"x": "\ud800"}"#, r#"{"x": 1e999999}"#, "{} {}", "{"] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert!(!super::too_deep(r#"[[{"a": "[[[[[["}]]"#, 3));
        assert!(super::too_deep("[[[[]]]]", 3));
    }

    #[test]
    fn many_keys_and_escaped_keys() {
        let keys: Vec<String> = (0..20_000).map(|i| format!(r#""k{i}": {i}"#)).collect();
        assert!(check(&format!("{{{}}}", keys.join(","))).is_ok());
        assert!(check(&format!(r#"{{{}, "k7": 0}}"#, keys.join(","))).is_err());
        // The same key, once escaped: still a duplicate.
        assert!(check(r#"{"ab": 1, "a\u0062": 2}"#).is_err());
    }
}
