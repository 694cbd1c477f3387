//! Generators of Azure notifications as a drifting sender might write them, shared by
//! the property tests of the pure API (tests/properties.rs) and of the whole flow over
//! the mock host (src/filter/properties.rs): a dev-dependency crate of its own.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{json, Value};

/// A strict JSON object whose four identifying fields are usable, with anything else a
/// drifting sender might add, in any order and spacing.
#[derive(Debug, Clone)]
pub struct Drifting {
    pub body: String,
    /// The four identifying fields alone, compact: the same event id.
    pub identifying: String,
}

/// `days_in_month(year, month)` is the library's (`timestamp::days_in_month`): this crate
/// cannot depend on the library whose tests use it.
pub fn drifting_doc(days_in_month: fn(u32, u32) -> u32) -> impl Strategy<Value = Drifting> {
    (
        any_name(&["PUT", "PATCH", "DELETE"]),
        any_name(&["Accepted", "Succeeded", "Failed", "Deleting", "Deleted", "Running", "Canceled"]),
        any_application_id(),
        any_event_time(days_in_month),
        prop::collection::vec(
            (prop::sample::select(vec!["applicationDefinitionId", "plan", "billingDetails", "error", "x"]), any_json()),
            0..5,
        ),
        permutation(),
        whitespace(),
        any::<bool>(),
    )
        .prop_map(|(event_type, state, application, time, others, order, ws, pretty)| {
            let mut fields = vec![
                ("eventType".to_string(), json!(event_type)),
                ("provisioningState".to_string(), json!(state)),
                ("applicationId".to_string(), json!(application)),
                ("eventTime".to_string(), json!(time)),
            ];
            let identifying = render(&fields, &[0, 1, 2, 3], &[""], false);
            for (key, value) in others {
                if !fields.iter().any(|(k, _)| k == key) {
                    fields.push((key.to_string(), value));
                }
            }
            // At most nine members: `order` (a permutation of 0..10) places them all.
            Drifting { body: render(&fields, &order, &ws, pretty), identifying }
        })
}

pub fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[A-Za-z0-9<>()._-]{1,40}",
        "[a-zé中]{1,8}",
    ]
}

/// The members in `order` (indices beyond the members are skipped), separated by the
/// whitespace pieces in `ws`, nested objects pretty-printed or not.
pub fn render(fields: &[(String, Value)], order: &[usize], ws: &[&str], pretty: bool) -> String {
    let mut pieces = ws.iter().cycle();
    let mut space = || *pieces.next().unwrap_or(&"");
    let mut out = format!("{}{{", space());
    let mut first = true;
    for &i in order.iter().filter(|&&i| i < fields.len()) {
        let (key, value) = &fields[i];
        if !first {
            out.push(',');
        }
        first = false;
        let value = if pretty {
            serde_json::to_string_pretty(value).unwrap()
        } else {
            value.to_string()
        };
        let key = serde_json::to_string(key).unwrap();
        out.push_str(&format!("{}{key}{}:{}{value}{}", space(), space(), space(), space()));
    }
    out.push('}');
    out.push_str(space());
    out
}

/// `s` with the case of its ASCII letters flipped where `mask` says so.
pub fn recase(s: &str, mask: &[bool]) -> String {
    s.chars()
        .zip(mask.iter().cycle())
        .map(|(c, &flip)| if flip { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
        .collect()
}

pub fn permutation() -> impl Strategy<Value = Vec<usize>> {
    Just((0..10).collect::<Vec<usize>>()).prop_shuffle()
}

pub fn whitespace() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(vec!["", " ", "\n", "\t", "\r\n  "]), 1..6)
}

/// Any JSON value nested at most three levels: what a drifting sender might put anywhere.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{0,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An eventType or provisioningState: a known value in any case, or any 1-64 characters.
fn any_name(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        (prop::sample::select(known), prop::collection::vec(any::<bool>(), 1..8)).prop_map(|(k, mask)| recase(k, &mask)),
        "\\PC{1,64}",
    ]
}

/// A usable applicationId in any accepted spelling.
fn any_application_id() -> impl Strategy<Value = String> {
    ((name(), name(), name()), any::<bool>(), any::<bool>(), prop::collection::vec(any::<bool>(), 1..8)).prop_map(|((sub, rg, app), lead, trail, mask)| {
        let words: Vec<String> = ["subscriptions", "resourceGroups", "providers", "Microsoft.Solutions", "applications"].iter().map(|w| recase(w, &mask)).collect();
        let (lead, trail) = (if lead { "/" } else { "" }, if trail { "/" } else { "" });
        format!("{lead}{}/{sub}/{}/{rg}/{}/{}/{}/{app}{trail}", words[0], words[1], words[2], words[3], words[4])
    })
}

/// A usable eventTime: any fraction, any offset or none, `T`, `t` or a space.
fn any_event_time(days_in_month: fn(u32, u32) -> u32) -> impl Strategy<Value = String> {
    (
        (1000u32..=8999, 1u32..=12, 1u32..=31, 0u32..24, 0u32..60, 0u32..60),
        "([.,][0-9]{1,12})?",
        prop::sample::select(vec!["T", "t", " "]),
        prop_oneof![
            prop::sample::select(vec!["Z", "z", ""]).prop_map(String::from),
            (prop::sample::select(vec!["+", "-"]), 0u32..24, 0u32..60, 0usize..3).prop_map(|(sign, h, m, form)| match form {
                0 => format!("{sign}{h:02}:{m:02}"),
                1 => format!("{sign}{h:02}{m:02}"),
                _ => format!("{sign}{h:02}"),
            }),
        ],
    )
        .prop_map(move |((y, mo, d, h, mi, s), frac, t, zone)| {
            format!("{y:04}-{mo:02}-{:02}{t}{h:02}:{mi:02}:{s:02}{frac}{zone}", d.min(days_in_month(y, mo)))
        })
}
