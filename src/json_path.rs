//! Where in a JSON text a parser stopped, told the way a reader looks it up: the path of
//! the member (`endpoints[1].secret.values`) and the line and column. Configuration errors
//! use it; serde only gives a position, and wrapping every visitor to track the path would
//! add 20 KB to the module.

/// A place in a JSON text.
#[derive(Debug, PartialEq, Eq)]
pub struct Place {
    /// Members and indexes from the root, e.g. `endpoints[1].secret`; empty at the root.
    pub path: String,
    /// 1-based, as serde_json counts them.
    pub line: usize,
    pub column: usize,
}

/// The byte offset of serde_json's `line` and `column` in `text`.
pub fn offset(text: &str, line: usize, column: usize) -> usize {
    let line_start = match line {
        0 | 1 => 0,
        _ => text.match_indices('\n').nth(line - 2).map_or(text.len(), |(i, _)| i + 1),
    };
    line_start.saturating_add(column).min(text.len())
}

enum Frame<'a> {
    /// The key being read or last read, and whether the next string is a key.
    Object {
        key: &'a str,
        want_key: bool,
    },
    Array {
        index: usize,
    },
}

/// The place of byte `offset` in `text`, which is read up to there (it need not be valid
/// past it, or at all: the path is what the text opened so far).
pub fn place(text: &str, offset: usize) -> Place {
    let end = offset.min(text.len());
    let head = text.as_bytes().get(..end).unwrap_or_default();
    let mut stack: Vec<Frame> = Vec::new();
    let (mut string_start, mut escaped) = (None, false);
    for (i, &b) in head.iter().enumerate() {
        if let Some(start) = string_start {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => {
                    string_start = None;
                    if let Some(Frame::Object { key, want_key: want_key @ true }) = stack.last_mut() {
                        *key = text.get(start..i).unwrap_or_default();
                        *want_key = false;
                    }
                }
                _ => {}
            }
            continue;
        }
        match (b, stack.last_mut()) {
            (b'"', _) => string_start = Some(i + 1),
            (b'{', _) => stack.push(Frame::Object { key: "", want_key: true }),
            (b'[', _) => stack.push(Frame::Array { index: 0 }),
            (b'}' | b']', _) => {
                stack.pop();
            }
            (b',', Some(Frame::Object { want_key, .. })) => *want_key = true,
            (b',', Some(Frame::Array { index })) => *index += 1,
            _ => {}
        }
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object { key: "", .. } => {}
            Frame::Object { key, .. } if path.is_empty() => path.push_str(key),
            Frame::Object { key, .. } => {
                path.push('.');
                path.push_str(key);
            }
            Frame::Array { index } => path.push_str(&format!("[{index}]")),
        }
    }
    let line_start = text.get(..end).unwrap_or_default().rfind('\n').map_or(0, |i| i + 1);
    Place { path, line: text.get(..end).unwrap_or_default().matches('\n').count() + 1, column: end - line_start }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_follows_members_and_indexes() {
        let text = "{\"a\": [1, {\"b\": {\"c\": \"x,]}\\\"\"}}], \"d\": 2}";
        let at = |needle: &str| place(text, text.find(needle).unwrap() + needle.len()).path;
        assert_eq!(at("[1"), "a[0]");
        assert_eq!(at("\"c\""), "a[1].b.c");
        assert_eq!(at("x,]}\\\"\""), "a[1].b.c");
        assert_eq!(at("\"d\""), "d");
        assert_eq!(place(text, 0).path, "");
    }

    #[test]
    fn lines_and_columns_round_trip_with_offsets() {
        let text = "{\n  \"a\": {\n    \"b\": 1\n  }\n}";
        let p = place(text, offset(text, 3, 8));
        assert_eq!(p, Place { path: "a.b".into(), line: 3, column: 8 });
        assert_eq!(offset(text, 1, 1), 1);
        assert_eq!(offset(text, 99, 1), text.len());
    }
}
