//! One object of the plugin configuration, read member by member. Every object (the top
//! level, an endpoint, its secret and limits, a profile's keys, the ARM check) goes
//! through this one reader: serde's derive gave each struct its own visitor, inlined into
//! the configure path, and cost the module about 40 KB. Errors keep the derive's words
//! (`missing field`, `duplicate field`, `unknown field ..., expected one of ...`) and the
//! places serde_json gave them.

use super::{deserialize, placed};
use crate::json_path;
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;

/// An object's members in order, values unread (a map costs the module 4 KB more).
pub struct Object<'a> {
    /// The whole configuration: error places are counted in it.
    json: &'a str,
    /// This object's text, a slice of `json`.
    part: &'a str,
    members: Vec<(String, &'a RawValue)>,
}

impl<'a> Object<'a> {
    /// `part` (`json` or a slice of it) read as an object; `what` is what the error calls
    /// the expected value when it is not one (`struct RawSecret`, as the derive named it).
    pub fn read(json: &'a str, part: &'a str, what: &'static str) -> Result<Self, String> {
        let mut de = serde_json::Deserializer::from_str(part);
        let members = Members(what).deserialize(&mut de).and_then(|members| de.end().map(|()| members));
        members.map(|members| Object { json, part, members }).map_err(|e| placed(json, part, &e))
    }

    /// The member `key`'s value as text, when given.
    pub fn raw(&self, key: &str) -> Option<&'a str> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, value)| value.get())
    }

    /// The member `key` as `T` (an `Option` reads `null` as absent); `None` when absent.
    pub fn get<T: Deserialize<'a>>(&self, key: &str) -> Result<Option<T>, String> {
        self.raw(key).map(|value| deserialize(self.json, value)).transpose()
    }

    /// The member `key` as an object, `None` when absent; an `Option` of the derive (`optional`)
    /// reads `null` as absent too. `what`: as in [`Object::read`].
    pub fn object(&self, key: &str, what: &'static str, optional: bool) -> Result<Option<Object<'a>>, String> {
        let value = self.raw(key).filter(|value| !(optional && *value == "null"));
        value.map(|value| Object::read(self.json, value, what)).transpose()
    }

    /// The derive's error for a required member that is absent, placed where serde_json
    /// noticed it: at the object's closing brace.
    pub fn missing(&self, key: &str) -> String {
        self.error_at(self.start() + self.part.len(), &format!("missing field `{key}`"))
    }

    /// The first member, in order, whose key is not `known` (`Ok(key)`) or repeats an
    /// earlier one (`Err(key)`), with the place serde_json reported it at: just past the key.
    pub fn stray(&self, known: impl Fn(&str) -> bool) -> Option<(Result<&str, &str>, json_path::Place)> {
        self.members.iter().enumerate().find_map(|(i, (key, value))| {
            let stray = if !known(key) {
                Ok(key.as_str())
            } else if self.members.iter().take(i).any(|(k, _)| k == key) {
                Err(key.as_str())
            } else {
                return None;
            };
            let value_at = (value.get().as_ptr() as usize).saturating_sub(self.json.as_ptr() as usize);
            let key_end = self.json.get(..value_at).and_then(|before| before.rfind('"')).map_or(value_at, |quote| quote + 1);
            Some((stray, json_path::place(self.json, key_end)))
        })
    }

    /// Refuses a key not among `keys`, and a key given twice, as `deny_unknown_fields` did.
    pub fn closed(&self, keys: &[&str]) -> Result<(), String> {
        let Some((stray, place)) = self.stray(|key| keys.contains(&key)) else {
            return Ok(());
        };
        let message = match stray {
            Ok(key) => super::redact(&format!("unknown field `{key}`, expected {}", one_of(keys))),
            Err(key) => duplicate(key),
        };
        Err(at(&place, &message))
    }

    fn start(&self) -> usize {
        (self.part.as_ptr() as usize).saturating_sub(self.json.as_ptr() as usize)
    }

    fn error_at(&self, offset: usize, message: &str) -> String {
        at(&json_path::place(self.json, offset), message)
    }
}

/// `message` at `place`, worded as every configuration error.
pub fn at(place: &json_path::Place, message: &str) -> String {
    let path = if place.path.is_empty() { "configuration" } else { &place.path };
    format!("{path}: {message} at line {} column {} of the plugin configuration", place.line, place.column)
}

/// The derive's error for a key given twice (quoted parts redacted as in serde_json's).
pub fn duplicate(key: &str) -> String {
    super::redact(&format!("duplicate field `{key}`"))
}

/// serde's list of the expected keys: "`a`", "`a` or `b`", "one of `a`, `b`, `c`".
fn one_of(keys: &[&str]) -> String {
    match keys {
        [one] => format!("`{one}`"),
        [a, b] => format!("`{a}` or `{b}`"),
        _ => format!("one of `{}`", keys.join("`, `")),
    }
}

/// Reads an object's members; its error names `what` was expected (the derive's words).
struct Members(&'static str);

impl<'de> DeserializeSeed<'de> for Members {
    type Value = Vec<(String, &'de RawValue)>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Members {
    type Value = Vec<(String, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            members.push((key, map.next_value()?));
        }
        Ok(members)
    }
}
