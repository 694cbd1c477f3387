//! `route::canonical` and `route::lenient` over any request path: never panic; a canonical
//! form is in canonical shape and canonical itself; on a path with a canonical form, every
//! lenient reading is that form or the one where `;` is a character (`route::literal`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_guard::route::{canonical, lenient, literal};

fuzz_target!(|data: &[u8]| {
    let readings = lenient(data);
    assert!(readings.iter().all(|r| r.starts_with('/')), "{readings:?}");
    let Ok(form) = canonical(data) else {
        return;
    };
    let literal = literal(data);
    assert!(readings.iter().all(|r| *r == form || Some(r) == literal.as_ref()), "{:?}: {form:?} but lenient {readings:?}", String::from_utf8_lossy(data));
    assert!(form.starts_with('/'), "{form:?}");
    assert!(!form.contains([';', '\\']) && !form.chars().any(|c| c.is_control() || c.is_ascii_uppercase()), "{form:?}");
    let segments: Vec<&str> = form.split('/').skip(1).collect();
    assert!(form == "/" || segments.iter().all(|s| !s.is_empty() && *s != "." && *s != ".."), "{form:?}");
    assert!(segments.last().is_none_or(|last| !last.contains('.') || last.starts_with('.')), "format suffix kept: {form:?}");
    // A literal '%' (from %25) is an escape to a second reading; anything else is a fixed point.
    if !form.contains('%') {
        assert_eq!(canonical(form.as_bytes()).as_ref(), Ok(&form), "not a fixed point");
    }
});
