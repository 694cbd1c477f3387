//! Which requests an endpoint guards: the canonical form of a request path.
//!
//! Backends route loosely: ASP.NET Core and Express ignore case and a trailing slash,
//! Spring and Tomcat drop `;` path parameters, Rails accepts a format suffix, most decode
//! `%XX` and resolve dot segments (docs/paths.md). A guard that matched
//! paths byte for byte could be walked around, so a path is reduced to what any of them
//! could route it to, and an endpoint guards every request whose canonical form equals
//! its own. Guarding too much is harmless: a guarded request goes upstream with exactly
//! the endpoint's configured path.
//!
//! The canonical form, in order: each segment is percent-decoded once; a `;`
//! and what follows it in a segment is dropped; `.` segments go and `..` removes the
//! segment before it; then spaces around a segment and dots after it go (IIS and
//! Windows ignore trailing dots and spaces, Spring's matcher trims); empty segments go (repeated
//! and trailing slashes); letters are folded to ASCII lowercase; a format suffix (`.json`,
//! `.xml`, anything from the first dot of the last segment on) is dropped, as Spring's
//! suffix patterns (`resource.*`) and Rails' `(.:format)` accept any.

use crate::query;

/// Rounds of percent-decoding a lenient reading applies (`%2572` → `%72` → `r`).
const LENIENT_DECODES: usize = 3;

/// Why a path has no single canonical form: backends disagree on what it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguity {
    /// A `%` not followed by two hex digits.
    Escape,
    /// `\`, `%2F` or `%5C`: one backend's separator is another's character.
    Separator,
    /// A control character (NUL truncates a path in some servers).
    Control,
    /// Bytes that are not UTF-8 once decoded.
    NotUtf8,
    /// A `%XX` left after decoding, which a backend that decodes twice reads again.
    DoubleEncoded,
    /// A `;` segment that `..` removes: Tomcat cuts the parameter first and so removes the
    /// segment before it, Go takes `;` as a character and removes the `;` segment itself
    /// (and so does Tomcat where the `;` was sent as `%3B`). See [`readings`].
    Parameter,
}

impl Ambiguity {
    /// A short explanation for a problem body (names no part of the path).
    pub fn detail(self) -> &'static str {
        match self {
            Ambiguity::Escape => "the path holds a malformed percent-escape",
            Ambiguity::Separator => "the path holds a '\\' or an encoded '/' or '\\'",
            Ambiguity::Control => "the path holds a control character",
            Ambiguity::NotUtf8 => "the path is not UTF-8 once percent-decoded",
            Ambiguity::DoubleEncoded => "the path is percent-encoded twice",
            Ambiguity::Parameter => "the path holds a ';' parameter that a '..' segment removes",
        }
    }
}

/// The canonical form of `path` (without its query), or why it has none.
pub fn canonical(path: &[u8]) -> Result<String, Ambiguity> {
    decoded(path).map(|text| shape(&text, &['/'], Params::Cut))
}

/// The other forms backends give a path that has a canonical form: `;` taken as a
/// character (Go, Express, Rails), and `;` parameters cut from the raw segments before
/// decoding, so that a `%3B` is a character (Tomcat, and Spring on it). Empty for a path
/// with no `;` (raw or `%3B`).
///
/// Why both: a guarded path holds no `;`, and a segment that keeps one cannot name it
/// unless a `..` removes that segment, where the canonical form (which empties it) removes
/// the one before. Tomcat's reading is neither of the others when raw `;` and `%3B` mix:
/// `/api;/resource/%3Bx/..` is `/api` canonically and `/api;/resource` with `;` a
/// character, but Tomcat cuts `;` from `api;`, decodes `%3Bx` to `;x` and lets `..` remove
/// it: `/api/resource`, a guarded endpoint reached with no secret checked, unless this
/// reading is looked up too (`Config::route` refuses it as [`Ambiguity::Parameter`]).
pub fn readings(path: &[u8]) -> Vec<String> {
    if !path.contains(&b';') && !path.windows(3).any(|w| matches!(w, [b'%', b'3', b'b' | b'B'])) {
        return Vec::new();
    }
    [path.to_vec(), without_params(path)].iter().filter_map(|source| decoded(source).ok()).map(|text| shape(&text, &['/'], Params::Kept)).collect()
}

/// `path` with the `;` parameters of its raw segments cut, as Tomcat does before decoding.
fn without_params(path: &[u8]) -> Vec<u8> {
    path.split(|b| *b == b'/').map(|s| s.split(|b| *b == b';').next().unwrap_or_default()).collect::<Vec<_>>().join(&b'/')
}

/// `path` percent-decoded once, segment by segment, or why that has no single reading.
fn decoded(path: &[u8]) -> Result<String, Ambiguity> {
    let mut text = String::with_capacity(path.len());
    for (i, raw) in path.split(|b| *b == b'/').enumerate() {
        if i > 0 {
            text.push('/');
        }
        let decoded = query::decode(raw).ok_or(Ambiguity::Escape)?;
        if decoded.iter().any(|b| matches!(b, b'/' | b'\\')) {
            return Err(Ambiguity::Separator);
        }
        let segment = std::str::from_utf8(&decoded).map_err(|_| Ambiguity::NotUtf8)?;
        if segment.chars().any(char::is_control) {
            return Err(Ambiguity::Control);
        }
        if query::decode_lenient(&decoded) != decoded {
            return Err(Ambiguity::DoubleEncoded);
        }
        text.push_str(segment);
    }
    Ok(text)
}

/// The canonical forms lenient backends could give an ambiguous path: escapes decoded
/// repeatedly and wherever they are well-formed, encoded separators taken as separators,
/// `\\` as a separator or a character, control characters and bytes that are not UTF-8
/// either dropped or ending the path, `;` as a parameter or a character; and all that
/// again after `;` parameters are cut from the raw segments (Tomcat cuts them before
/// decoding, so whatever they hold is gone).
pub fn lenient(path: &[u8]) -> Vec<String> {
    let without_params = without_params(path);
    let mut forms = Vec::new();
    for source in [path, &without_params] {
        let mut bytes = source.to_vec();
        for _ in 0..LENIENT_DECODES {
            let next = query::decode_lenient(&bytes);
            if next == bytes {
                break;
            }
            bytes = next.into_owned();
        }
        // `None` for a control character or bytes that are not UTF-8; a U+FFFD sent as such
        // is a character like any other (the canonical form keeps it too).
        let chars: Vec<Option<char>> = bytes
            .utf8_chunks()
            .flat_map(|chunk| chunk.valid().chars().map(|c| Some(c).filter(|c| !c.is_control())).chain((!chunk.invalid().is_empty()).then_some(None)))
            .collect();
        let dropped: String = chars.iter().flatten().collect();
        let ended: String = chars.iter().map_while(|c| *c).collect();
        for text in [&dropped, &ended] {
            for params in [Params::Cut, Params::Kept] {
                forms.push(shape(text, &['/', '\\'], params));
                forms.push(shape(text, &['/'], params));
            }
        }
    }
    forms
}

/// What a `;` in a segment starts.
#[derive(Clone, Copy)]
enum Params {
    /// Parameters the backend drops (Tomcat, Spring): `..;x` is `..`, `;x` is empty.
    Cut,
    /// Nothing: `;` is a character (Go, Express); a format suffix and trimming still apply.
    Kept,
}

/// The segment rules of the canonical form, over a decoded path.
fn shape(text: &str, separators: &[char], params: Params) -> String {
    // Dot segments are resolved first: a segment that trims to nothing still counts for `..`.
    let mut resolved: Vec<&str> = Vec::new();
    for segment in text.split(separators) {
        let segment = match params {
            Params::Cut => segment.split(';').next().unwrap_or_default(),
            Params::Kept => segment,
        };
        match segment {
            "" | "." => {}
            ".." => {
                resolved.pop();
            }
            segment => resolved.push(segment),
        }
    }
    let mut segments: Vec<String> =
        resolved.iter().map(|s| trim_end(s.trim_start_matches(' '))).filter(|s| !s.is_empty()).map(|s| s.chars().map(fold).collect()).collect();
    if let Some(last) = segments.last_mut() {
        let stem = last.split_once('.').map(|(stem, _)| trim_end(stem)).filter(|stem| !stem.is_empty());
        if let Some(stem) = stem {
            *last = stem.to_string();
        }
    }
    if segments.is_empty() {
        return "/".to_string();
    }
    segments.iter().flat_map(|s| ["/", s.as_str()]).collect()
}

/// A segment without the dots and spaces after it. Other whitespace is a control
/// character, which makes a path ambiguous.
fn trim_end(segment: &str) -> &str {
    segment.trim_end_matches(['.', ' '])
}

/// ASCII lowercase, and the four other letters whose case mapping is an ASCII letter
/// (.NET's and Java's case-insensitive comparisons equate them with it).
fn fold(c: char) -> char {
    match c {
        '\u{130}' | '\u{131}' => 'i',
        '\u{17f}' => 's',
        '\u{212a}' => 'k',
        _ => c.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(path: &str) -> Result<String, Ambiguity> {
        canonical(path.as_bytes())
    }

    #[test]
    fn loose_spellings_reach_the_same_form() {
        let same = [
            "/api/resource",
            "/api/resource/",
            "/API/resource",
            "/api/Resource",
            "/api/resource;x=1",
            "/api;v=2/resource",
            "/api/resource/.",
            "/api/resource.json",
            "/api/resource.XML",
            "/api/resource%20",
            "/api//resource",
            "/api/./resource",
            "/api/x/../resource",
            "/api/%72esource",
            "/api/resource;sig=k",
            "/api/resource.",
            "/api/resource...",
            "/api/resource%2E",
            "/api/x/..;/resource",
            "/api/%2e/resource",
            "/api/x/%2e%2e/resource",
            "/api/resource%3Bx",
            "/api/re\u{17f}ource",
            "/api/RE\u{17f}OURCE%20.json",
            "//api///resource//",
            "/x/../../api/resource",
        ];
        for path in same {
            assert_eq!(canon(path).as_deref(), Ok("/api/resource"), "{path}");
        }
    }

    #[test]
    fn other_paths_keep_their_own_form() {
        for (path, want) in [
            ("/api/resources", "/api/resources"),
            ("/api/resource-status", "/api/resource-status"),
            ("/api/resource/x", "/api/resource/x"),
            ("/api/resource.json.xml", "/api/resource"),
            ("/api/resource.any-format", "/api/resource"),
            ("/api/v1.0/resource", "/api/v1.0/resource"),
            ("/api/.json", "/api/.json"),
            ("/api/resource+", "/api/resource+"),
            ("/", "/"),
            ("", "/"),
            ("/..", "/"),
            ("/caf\u{e9}", "/caf\u{e9}"),
        ] {
            assert_eq!(canon(path).as_deref(), Ok(want), "{path}");
        }
    }

    #[test]
    fn ambiguous_paths_say_why() {
        for (path, why) in [
            ("/api/resource%2F", Ambiguity::Separator),
            ("/api%2fresource", Ambiguity::Separator),
            ("/api%5Cresource", Ambiguity::Separator),
            ("/api\\resource", Ambiguity::Separator),
            ("/api/resource%00", Ambiguity::Control),
            ("/api/resource%0a", Ambiguity::Control),
            ("/api/resource%C2%85", Ambiguity::Control),
            ("/api/resource%", Ambiguity::Escape),
            ("/api/resource%zz", Ambiguity::Escape),
            ("/api/resource%ff", Ambiguity::NotUtf8),
            ("/api/%2572esource", Ambiguity::DoubleEncoded),
        ] {
            assert_eq!(canon(path), Err(why), "{path}");
        }
        assert_eq!(canonical(b"/api/\xffresource"), Err(Ambiguity::NotUtf8));
    }

    #[test]
    fn a_semicolon_segment_removed_by_dot_dot_reads_two_ways() {
        assert_eq!(canon("/api/resource/;x=1/..").as_deref(), Ok("/api"));
        assert_eq!(readings(b"/api/resource/;x=1/.."), ["/api/resource", "/api"]);
        assert_eq!(readings(b"/api/resource/%3b/.."), ["/api/resource", "/api/resource"]);
        assert_eq!(readings(b"/api/x/..;/resource"), ["/api/x/..;/resource", "/api/resource"]);
        assert!(readings(b"/api/x/../resource").is_empty());
    }

    /// Tomcat cuts raw `;` parameters, then decodes: a `%3B` stays a character.
    #[test]
    fn raw_and_encoded_semicolons_give_a_third_reading() {
        let path = b"/api;/resource/%3Bx/..";
        assert_eq!(canonical(path).as_deref(), Ok("/api"));
        assert_eq!(readings(path), ["/api;/resource", "/api/resource"]);
        for (path, form, others) in [
            ("/a;/b%3B", "/a/b", ["/a;/b;", "/a/b;"]),
            ("/api;/resource%3B", "/api/resource", ["/api;/resource;", "/api/resource;"]),
            ("/a%3B/;", "/a", ["/a;/;", "/a;"]),
            ("/a;x/b%3B", "/a/b", ["/a;x/b;", "/a/b;"]),
        ] {
            assert_eq!(canonical(path.as_bytes()).as_deref(), Ok(form), "{path}");
            assert_eq!(readings(path.as_bytes()), others, "{path}");
            assert!(lenient(path.as_bytes()).iter().all(|r| r == form || others.contains(&r.as_str())), "{path}");
        }
    }

    #[test]
    fn lenient_readings_of_ambiguous_paths() {
        let guarded = |path: &str| lenient(path.as_bytes()).contains(&"/api/resource".to_string());
        for path in [
            "/api%2Fresource",
            "/api%5cresource",
            "\\api\\resource",
            "/api/resource;a\\x",
            "/api/%2572esource",
            "/api/resource%00",
            "/api/resource%00.png",
            "/api/res%00ource",
            "/api/resource%ff",
            "/api/resource/x%zz/..",
            "/api%252Fresource",
            "/api/resource;a%2F%",
            "/api/x;%2F..%2F/resource",
            "/api//resource/%3B%2F%2E%2E",
        ] {
            assert!(guarded(path), "{path}: {:?}", lenient(path.as_bytes()));
        }
        for path in ["/api/resource%2Fx", "/api/resource%", "/api/resources%00", "/api/other%2F", "/api/resource%EF%BF%BD%2F"] {
            assert!(!guarded(path), "{path}: {:?}", lenient(path.as_bytes()));
        }
    }

    #[test]
    fn a_path_read_up_to_its_first_control_character_is_a_lenient_reading() {
        // A C-string backend stops at the NUL: only that reading names the endpoint.
        let forms = lenient(b"/api/resource%00/x");
        assert!(forms.contains(&"/api/resource".to_string()), "{forms:?}");
        assert!(forms.contains(&"/api/resource/x".to_string()), "{forms:?}");
        // Bytes that are not UTF-8 end it the same way, for a backend that stops at them.
        let forms = lenient(b"/api/resource%FF/x");
        assert!(forms.contains(&"/api/resource".to_string()), "{forms:?}");
        assert!(forms.contains(&"/api/resource/x".to_string()), "{forms:?}");
    }

    /// Every non-ASCII character whose simple case mapping is an ASCII letter is folded
    /// to it, and no other. U+0130's simple lowercase is `i`; Rust gives its full one.
    #[test]
    fn the_fold_table_is_complete() {
        for c in (0x80..=0x10ffff).filter_map(char::from_u32) {
            let single = |mapped: String| Some(mapped).filter(|m| m.len() == 1 && m.is_ascii());
            let ascii = single(c.to_lowercase().collect()).or_else(|| single(c.to_uppercase().collect()));
            let want = match (c, ascii) {
                ('\u{130}', _) => 'i',
                (_, Some(a)) => a.to_ascii_lowercase().chars().next().unwrap(),
                (_, None) => c,
            };
            assert_eq!(fold(c), want, "{c:?}");
        }
    }
}
