//! A request's headers as the host hands them over, read in place: one buffer in the
//! proxy-wasm map serialisation (the count, each name's and value's length, then every
//! name and value followed by a NUL). The SDK's reader copies each name and value into a
//! `String` and a `Vec` of its own: two allocations per header on every request, a
//! fifth of a refusal's instructions (`make cost`).

/// The serialised header map and where each name and value lies in it.
pub struct Headers {
    buf: Vec<u8>,
    /// (name start, name end, value start, value end) per header, in order.
    spans: Vec<[usize; 4]>,
}

impl Headers {
    /// Reads `buf`; a map that does not add up (never sent by Envoy) reads as no header.
    pub fn parse(buf: Vec<u8>) -> Headers {
        let spans = spans(&buf).unwrap_or_default();
        Headers { buf, spans }
    }

    /// The map of `pairs`, serialised as the host does (the recording host's).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])> + Clone) -> Headers {
        let mut buf = Vec::new();
        let count = pairs.clone().into_iter().count();
        buf.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
        for (name, value) in pairs.clone() {
            for len in [name.len(), value.len()] {
                buf.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
            }
        }
        for (name, value) in pairs {
            for part in [name.as_bytes(), value] {
                buf.extend_from_slice(part);
                buf.push(0);
            }
        }
        Headers::parse(buf)
    }

    /// Every header in order: its name (Envoy's codecs accept only token characters; a
    /// name that is not UTF-8 would read as empty) and its value's bytes.
    pub fn iter(&self) -> Iter<'_> {
        Iter { buf: &self.buf, spans: self.spans.iter() }
    }

    /// The first value of header `name` (compared as bytes: no UTF-8 check per lookup).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let span = self.spans.iter().find(|[ns, ne, _, _]| self.buf.get(*ns..*ne) == Some(name.as_bytes()))?;
        self.buf.get(span[2]..span[3])
    }
}

/// The iterator of [`Headers::iter`].
pub struct Iter<'a> {
    buf: &'a [u8],
    spans: std::slice::Iter<'a, [usize; 4]>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let [ns, ne, vs, ve] = *self.spans.next()?;
        let name = self.buf.get(ns..ne).and_then(|n| std::str::from_utf8(n).ok()).unwrap_or_default();
        Some((name, self.buf.get(vs..ve).unwrap_or_default()))
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a [u8]);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

fn word(buf: &[u8], at: usize) -> Option<usize> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    usize::try_from(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])).ok()
}

fn spans(buf: &[u8]) -> Option<Vec<[usize; 4]>> {
    if buf.is_empty() {
        return Some(Vec::new());
    }
    let count = word(buf, 0)?;
    let mut at = count.checked_mul(8)?.checked_add(4)?;
    let mut spans = Vec::with_capacity(count.min(buf.len() / 10));
    for n in 0..count {
        let mut span = [0; 4];
        for (i, len) in [word(buf, 4 + n * 8)?, word(buf, 8 + n * 8)?].into_iter().enumerate() {
            let end = at.checked_add(len)?;
            // Each part is followed by its NUL.
            if buf.get(end) != Some(&0) {
                return None;
            }
            span[i * 2] = at;
            span[i * 2 + 1] = end;
            at = end + 1;
        }
        spans.push(span);
    }
    Some(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_serialises_in_order() {
        let pairs: [(&str, &[u8]); 3] = [(":path", b"/a?sig=k"), ("x-bin", b"\xff\x00z"), ("empty", b"")];
        let headers = Headers::from_pairs(pairs);
        assert_eq!(headers.iter().collect::<Vec<_>>(), pairs.to_vec());
        assert_eq!(headers.get("x-bin"), Some(&b"\xff\x00z"[..]));
        assert_eq!(headers.get("missing"), None);
    }

    #[test]
    fn a_map_that_does_not_add_up_reads_as_empty() {
        let good = Headers::from_pairs([("a", &b"b"[..])]).buf;
        assert_eq!(Headers::parse(Vec::new()).iter().count(), 0);
        for cut in 1..good.len() {
            assert_eq!(Headers::parse(good[..cut].to_vec()).iter().count(), 0, "cut at {cut}");
        }
        let mut huge = good.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Headers::parse(huge).iter().count(), 0);
    }
}
