//! Strict JSON: one value, no duplicate key in any object, every number finite and every
//! string valid Unicode (serde_json refuses lone surrogates and out-of-range numbers when
//! it visits them). Both profiles check a body with it before reading it, so a backend
//! that parses strictly (I-JSON) never receives something it cannot read; the Azure
//! profile's hot path reads its members with [`walk`], which settles the common case in
//! the same pass and leaves the rest to [`check`].

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

/// How [`walk`] found a text.
#[derive(Debug, PartialEq)]
pub enum Walked {
    /// Strict JSON, nested no deeper than the limit.
    Strict,
    /// Not nested too deep, but maybe not strict: only [`check`] can tell. The walk is
    /// sure in the common case, unsure on an escaped key, a `\u` escape in the surrogate
    /// range, a number of 300 digits or more, a repeated key, or more keys than it holds.
    Unsure,
    /// Nested deeper than the limit: found at once, without recursion.
    TooDeep,
}

/// One pass over `text`, which must already be one valid JSON value (serde_json has read
/// it): judges nesting and, where it can, strictness, and hands `visit` each member of
/// the outermost object (key decoded) or element of the outermost array, as raw text
/// without surrounding whitespace. Unless nested too deep, the whole text is visited.
pub fn walk<'a>(text: &'a str, max_depth: usize, mut visit: impl FnMut(&str, &'a str)) -> Walked {
    walk_with(text, max_depth, &mut visit)
}

/// [`walk`], compiled once for every visitor: the module stays small.
fn walk_with<'a>(text: &'a str, max_depth: usize, visit: &mut dyn FnMut(&str, &'a str)) -> Walked {
    let bytes = text.as_bytes();
    let mut sure = true;
    let mut keys = Keys::default();
    let mut depth = 0usize;
    let mut outer_array = false;
    // The key (empty in an array) and start of the depth-1 value being read.
    let mut member: Option<(Cow<'a, str>, usize)> = None;
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Walked::TooDeep;
                }
                if c == b'{' {
                    sure &= keys.open();
                } else if depth == 1 {
                    outer_array = true;
                    member = Some((Cow::Borrowed(""), skip_space(bytes, i + 1)));
                }
            }
            b'}' | b']' | b',' if depth == 1 => {
                if let Some((key, start)) = member.take() {
                    let mut end = i;
                    while end > start && bytes.get(end - 1).copied().is_some_and(is_space) {
                        end -= 1;
                    }
                    // Empty only for the end of `[]`.
                    if let Some(value) = text.get(start..end).filter(|v| !v.is_empty()) {
                        visit(&key, value);
                    }
                }
                if c == b'}' {
                    keys.close();
                }
                if c != b',' {
                    depth = 0;
                } else if outer_array {
                    member = Some((Cow::Borrowed(""), skip_space(bytes, i + 1)));
                }
            }
            b'}' | b']' => {
                if c == b'}' {
                    keys.close();
                }
                depth = depth.saturating_sub(1);
            }
            b':' if depth == 1 => {
                if let Some((_, start)) = member.as_mut() {
                    *start = skip_space(bytes, i + 1);
                }
            }
            b'"' => {
                let (end, escaped) = string_end(bytes, i);
                let next = skip_space(bytes, end);
                let is_key = bytes.get(next) == Some(&b':');
                let raw = text.get(i + 1..end.saturating_sub(1)).unwrap_or_default();
                if escaped {
                    // Lone surrogates and repeated keys spelled differently are check's.
                    sure &= !is_key && !has_surrogate_escape(raw);
                    if is_key && depth == 1 {
                        let quoted = text.get(i..end).unwrap_or_default();
                        if let Ok(decoded) = serde_json::from_str::<String>(quoted) {
                            member = Some((Cow::Owned(decoded), end));
                        }
                    }
                } else if is_key {
                    sure &= keys.insert(raw);
                    if depth == 1 {
                        member = Some((Cow::Borrowed(raw), end));
                    }
                }
                i = end;
                continue;
            }
            b'-' | b'0'..=b'9' => {
                let end = number_end(bytes, i);
                sure &= !may_overflow(text.get(i..end).unwrap_or_default());
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    match sure {
        true => Walked::Strict,
        false => Walked::Unsure,
    }
}

/// The unescaped keys of the open objects, innermost last, on the stack: enough for
/// notifications; a body with more keys open at once is left to [`check`].
#[derive(Default)]
struct Keys<'a> {
    /// `None` marks where an object's keys start.
    stack: [Option<&'a str>; 32],
    len: usize,
    full: bool,
}

impl<'a> Keys<'a> {
    /// False once the keys no longer fit (then nothing is tracked any more).
    fn open(&mut self) -> bool {
        self.push(None)
    }

    fn close(&mut self) {
        while !self.full && self.len > 0 {
            self.len -= 1;
            if matches!(self.stack.get(self.len), Some(None)) {
                break;
            }
        }
    }

    /// False if the innermost object already has `key`, or it does not fit.
    fn insert(&mut self, key: &'a str) -> bool {
        let open = self.stack.get(..self.len).unwrap_or_default();
        for seen in open.iter().rev() {
            match seen {
                None => break,
                Some(seen) if *seen == key => return false,
                Some(_) => {}
            }
        }
        self.push(Some(key))
    }

    fn push(&mut self, entry: Option<&'a str>) -> bool {
        match self.stack.get_mut(self.len) {
            Some(slot) if !self.full => {
                *slot = entry;
                self.len += 1;
                true
            }
            _ => {
                self.full = true;
                false
            }
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_space(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).copied().is_some_and(is_space) {
        i += 1;
    }
    i
}

/// The index after the string starting at `i`, and whether it holds an escape.
fn string_end(bytes: &[u8], i: usize) -> (usize, bool) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let (mut j, mut escaped) = (i + 1, false);
    loop {
        // Eight bytes at a time to the next quote or backslash: a zero byte of `w ^ pattern`,
        // the lowest flagged byte being the first (a borrow only flags bytes above it).
        while let Some(chunk) = bytes.get(j..).and_then(<[u8]>::first_chunk) {
            let w = u64::from_le_bytes(*chunk);
            let (q, b) = (w ^ (ONES * u64::from(b'"')), w ^ (ONES * u64::from(b'\\')));
            let found = (q.wrapping_sub(ONES) & !q | b.wrapping_sub(ONES) & !b) & HIGHS;
            if found != 0 {
                j += (found.trailing_zeros() / 8) as usize;
                break;
            }
            j += 8;
        }
        match bytes.get(j) {
            Some(b'"') => return (j + 1, escaped),
            Some(b'\\') => {
                escaped = true;
                j += 2;
            }
            Some(_) => j += 1,
            None => return (bytes.len(), escaped),
        }
    }
}

/// Whether string contents hold something like `\uD800`-`\uDFFF` (over-approximated).
fn has_surrogate_escape(raw: &str) -> bool {
    raw.as_bytes().windows(4).any(|w| matches!(w, [b'\\', b'u', b'd' | b'D', b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F']))
}

fn number_end(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')) {
        i += 1;
    }
    i
}

/// Whether a valid JSON number could exceed f64's range: below 10^300 it cannot.
fn may_overflow(number: &str) -> bool {
    let (mantissa, exponent) = match number.find(['e', 'E']) {
        Some(e) => (number.get(..e).unwrap_or(number), number.get(e + 1..).unwrap_or("")),
        None => (number, ""),
    };
    let whole = mantissa.split('.').next().unwrap_or(mantissa).trim_start_matches('-');
    let exponent = match exponent.strip_prefix('-') {
        Some(_) => 0,
        None => exponent.trim_start_matches('+').chars().filter_map(|d| d.to_digit(10)).fold(0usize, |n, d| n.saturating_mul(10).saturating_add(d as usize)),
    };
    whole.len().saturating_add(exponent) >= 300
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
    use super::{check, too_deep, walk, Walked};
    use proptest::prelude::*;
    use serde_json::value::RawValue;
    use std::collections::BTreeMap;

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

    /// The members `walk` visits, and its verdict.
    fn members(text: &str, max_depth: usize) -> (Walked, Vec<(String, &str)>) {
        let mut seen = Vec::new();
        let verdict = walk(text, max_depth, |key, value| seen.push((key.to_owned(), value)));
        (verdict, seen)
    }

    #[test]
    fn walk_visits_the_outermost_members_raw() {
        let text = " {\n \"a\" : [1, {\"b\": 2}] ,\"c\":\"x\\\"y\", \"\\u0064\": null,\"e\":{}}\n";
        let (verdict, seen) = members(text, 64);
        assert_eq!(verdict, Walked::Unsure); // an escaped key: `check` must decide
        let want = [("a", "[1, {\"b\": 2}]"), ("c", "\"x\\\"y\""), ("d", "null"), ("e", "{}")];
        let want: Vec<(String, &str)> = want.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(seen, want);
        let (verdict, seen) = members("[ 1 , \"a\" ,{\"k\":[]}]", 64);
        assert_eq!(verdict, Walked::Strict);
        let values: Vec<&str> = seen.iter().map(|(_, v)| *v).collect();
        assert_eq!(values, ["1", "\"a\"", "{\"k\":[]}"]);
        assert!(members("[ ]", 64).1.is_empty());
        assert!(members("{}", 64).1.is_empty());
    }

    #[test]
    fn walk_is_sure_only_of_strict_text() {
        for strict in [r#"{"a": [1, {"a": "\u00e9"}], "b": {"a": 1}, "c": -0.5e-3}"#, r#"{"k": 1e298}"#] {
            assert_eq!(walk(strict, 64, |_, _| {}), Walked::Strict, "{strict}");
        }
        // Refused by check, or only check can tell.
        for unsure in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"x": {"k": 1, "y": [], "k": 1}}"#,
            r#"{"x": "\ud800"}"#,
            r#"{"x": "\ud83d\ude00"}"#,
            r#"{"x": 1e999999}"#,
            r#"{"x": 1e300}"#,
            r#"{"ab": 1, "a\u0062": 2}"#,
        ] {
            assert_eq!(walk(unsure, 64, |_, _| {}), Walked::Unsure, "{unsure}");
        }
        // More keys open at once than the walk holds: check decides (here: all different).
        let keys: Vec<String> = (0..40).map(|i| format!(r#""k{i}": {i}"#)).collect();
        let many = format!("{{{}}}", keys.join(","));
        assert_eq!(walk(&many, 64, |_, _| {}), Walked::Unsure);
        assert!(check(&many).is_ok());
    }

    #[test]
    fn walk_refuses_deep_nesting_without_recursion() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200_000), "]".repeat(200_000));
        assert_eq!(walk(&deep, 64, |_, _| {}), Walked::TooDeep);
        let limit = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert_eq!(walk(&limit, 64, |_, _| {}), Walked::Strict);
        assert_eq!(walk(&format!("[{limit}]"), 64, |_, _| {}), Walked::TooDeep);
    }

    /// Keys, common and odd (escaped, a lone and a paired surrogate, empty).
    const ODD_KEYS: [&str; 5] = ["a\\u0062", "\\ud800", "\\ud83d\\ude00", "c\\n", ""];
    const LEAVES: [&str; 9] = ["null", "true", "0", "-1.5e3", "-0", "\"\"", "\"x\"", "\"\\\"[{,:}]\"", "\"\\u00e9\""];
    /// Numbers near or out of range, surrogate escapes.
    const ODD_LEAVES: [&str; 7] = ["1e308", "1e309", "2e299", "123456789012345678901234567890", "\"\\ud800\"", "\"\\udc00x\"", "\"\\ud83d\\ude00\""];

    /// Valid JSON, with repeated and escaped keys, surrogate escapes, huge numbers and deep
    /// nesting often enough.
    fn json() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            8 => (0..12u8).prop_map(|i| format!("k{i}")),
            1 => prop::sample::select(&ODD_KEYS[..]).prop_map(str::to_string),
        ];
        let leaf = prop_oneof![
            4 => prop::sample::select(&LEAVES[..]).prop_map(str::to_string),
            1 => prop::sample::select(&ODD_LEAVES[..]).prop_map(str::to_string),
        ];
        let tree = leaf.prop_recursive(8, 200, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(", "))),
                prop::collection::vec((key.clone(), inner), 0..6).prop_map(|members| {
                    let members: Vec<String> = members.iter().map(|(k, v)| format!("\"{k}\" :{v}")).collect();
                    format!("{{ {} }}", members.join(",\n"))
                }),
            ]
        });
        // Wrapped in up to 80 more levels, to cross any limit.
        (tree, 0usize..80, any::<bool>()).prop_map(|(tree, levels, object)| match object {
            true => format!("{}{tree}{}", "{\"w\":".repeat(levels), "}".repeat(levels)),
            false => format!("{}{tree}{}", "[".repeat(levels), "]".repeat(levels)),
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 2000,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn walk_agrees_with_check_and_serde(text in json(), depth in 1usize..80) {
            let (verdict, seen) = members(&text, depth);
            prop_assert_eq!(verdict == Walked::TooDeep, too_deep(&text, depth));
            if verdict == Walked::Strict {
                prop_assert!(check(&text).is_ok());
            }
            if verdict != Walked::TooDeep && check(&text).is_ok() {
                // What serde_json reads as the outermost members or elements, raw.
                if let Ok(map) = serde_json::from_str::<BTreeMap<String, &RawValue>>(&text) {
                    let got: BTreeMap<String, &str> = seen.into_iter().collect();
                    let want: BTreeMap<String, &str> =
                        map.into_iter().map(|(k, v)| (k, v.get())).collect();
                    prop_assert_eq!(got, want);
                } else if let Ok(list) = serde_json::from_str::<Vec<&RawValue>>(&text) {
                    let got: Vec<&str> = seen.into_iter().map(|(_, v)| v).collect();
                    let want: Vec<&str> = list.into_iter().map(RawValue::get).collect();
                    prop_assert_eq!(got, want);
                }
            }
        }
    }
}
