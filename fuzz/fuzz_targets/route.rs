//! `route::canonical`, `route::readings` and `route::lenient` over any request path: never
//! panic; a canonical form is in canonical shape and canonical itself; on a path with a
//! canonical form, every lenient reading is that form or one of its other readings (`;` a
//! character, or Tomcat's: raw `;` parameters cut, then `%3B` decoded to a character), and
//! every other reading is a lenient one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_guard::route::{canonical, lenient, readings};

fuzz_target!(|data: &[u8]| {
    let lenient = lenient(data);
    assert!(lenient.iter().all(|r| r.starts_with('/')), "{lenient:?}");
    let Ok(form) = canonical(data) else {
        return;
    };
    let others = readings(data);
    let path = String::from_utf8_lossy(data);
    assert!(lenient.iter().all(|r| *r == form || others.contains(r)), "{path:?}: {form:?} or {others:?} but lenient {lenient:?}");
    assert!(others.iter().all(|r| lenient.contains(r)), "{path:?}: {others:?} not all in lenient {lenient:?}");
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
