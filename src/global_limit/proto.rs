//! The few protobuf fields of `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`
//! the filter sends and reads, encoded by hand: the request is three nested messages of
//! strings, and the answer is read field by field, skipping whatever else the service
//! sends (its headers, body, metadata, quota). A protobuf crate would add its runtime to
//! every module for these (docs/fleet.md has the size measured). The encoding is checked
//! against the real definitions (`envoy-types`) by tools/ratelimit-service's tests and
//! against the real service by the fleet tests.

/// Wire types (protobuf encoding spec).
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// `RateLimitResponse.Code`.
pub const OK: u64 = 1;
pub const OVER_LIMIT: u64 = 2;

/// `RateLimitRequest { domain, descriptors: [RateLimitDescriptor { entries: [Entry { key,
/// value }] }] }`; `hits_addend` left out (the service counts 1).
pub fn encode_request(domain: &str, descriptors: &[Vec<(&str, &str)>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 96 * descriptors.len());
    put_bytes(&mut out, 1, domain.as_bytes());
    for descriptor in descriptors {
        let mut entries = Vec::new();
        for (key, value) in descriptor {
            let mut entry = Vec::with_capacity(key.len() + value.len() + 4);
            put_bytes(&mut entry, 1, key.as_bytes());
            put_bytes(&mut entry, 2, value.as_bytes());
            put_bytes(&mut entries, 1, &entry);
        }
        put_bytes(&mut out, 2, &entries);
    }
    out
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A length-delimited field (string, bytes or message); empty ones are written too
/// (proto3 would leave an empty string out; a service reads both the same).
fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | u64::from(LEN));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// What the filter reads of a `RateLimitResponse`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// `overall_code`: [`OK`], [`OVER_LIMIT`], or 0 (unknown).
    pub code: u64,
    pub statuses: Vec<DescriptorStatus>,
}

/// What the filter reads of one `DescriptorStatus`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DescriptorStatus {
    pub code: u64,
    /// `current_limit`: (`requests_per_unit`, `unit`), when the service names the limit.
    pub limit: Option<(u64, u64)>,
    pub remaining: u64,
    /// `duration_until_reset` in whole seconds, rounded up.
    pub reset_secs: Option<u64>,
}

/// Decodes `bytes`; `None` when they are no well-formed protobuf message.
pub fn decode_response(bytes: &[u8]) -> Option<Response> {
    let mut response = Response::default();
    for field in Fields(bytes) {
        match field? {
            (1, Value::Varint(code)) => response.code = code,
            (2, Value::Bytes(status)) => response.statuses.push(decode_status(status)?),
            _ => {}
        }
    }
    Some(response)
}

fn decode_status(bytes: &[u8]) -> Option<DescriptorStatus> {
    let mut status = DescriptorStatus::default();
    for field in Fields(bytes) {
        match field? {
            (1, Value::Varint(code)) => status.code = code,
            (2, Value::Bytes(limit)) => {
                let (mut per_unit, mut unit) = (0, 0);
                for field in Fields(limit) {
                    match field? {
                        (1, Value::Varint(v)) => per_unit = v,
                        (2, Value::Varint(v)) => unit = v,
                        _ => {}
                    }
                }
                status.limit = Some((per_unit, unit));
            }
            (3, Value::Varint(remaining)) => status.remaining = remaining,
            (4, Value::Bytes(duration)) => {
                let (mut seconds, mut nanos) = (0u64, 0u64);
                for field in Fields(duration) {
                    match field? {
                        (1, Value::Varint(v)) => seconds = v,
                        (2, Value::Varint(v)) => nanos = v,
                        _ => {}
                    }
                }
                // Negative values (two's complement, so past the signed range here) mean
                // nothing left to wait.
                let seconds = i64::try_from(seconds).map_or(0, |_| seconds);
                let part = i32::try_from(nanos).is_ok_and(|n| n > 0);
                status.reset_secs = Some(seconds.saturating_add(u64::from(part)));
            }
            _ => {}
        }
    }
    Some(status)
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of one message, in order; `Some(None)` at the first malformed byte.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Option<(u64, Value<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_none() {
            // Stop after reporting it: nothing after a malformed byte can be read.
            self.0 = &[];
        }
        Some(field)
    }
}

impl<'a> Fields<'a> {
    fn field(&mut self) -> Option<(u64, Value<'a>)> {
        let key = self.varint()?;
        let value = match (key & 7) as u8 {
            VARINT => Value::Varint(self.varint()?),
            LEN => {
                let len = usize::try_from(self.varint()?).ok()?;
                Value::Bytes(self.take(len)?)
            }
            FIXED64 => self.take(8).map(|_| Value::Fixed)?,
            FIXED32 => self.take(4).map(|_| Value::Fixed)?,
            // Groups (3, 4) are not in these messages, nor any other wire type.
            _ => return None,
        };
        Some((key >> 3, value))
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.0.len() {
            return None;
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(taken)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for (i, byte) in self.0.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.0 = self.0.get(i + 1..)?;
                return Some(value);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes written by protoc's encoder for the same messages (`envoy-types` in
    /// tools/ratelimit-service checks these against the real definitions too).
    const REQUEST: &[u8] =
        b"\x0a\x0dwebhook-guard\x12\x1d\x0a\x11\x0a\x08endpoint\x12\x05azure\x0a\x08\x0a\x01a\x12\x03app\x12\x0c\x0a\x0a\x0a\x01k\x12\x05\xc3\xa9t\xc3\xa9";

    #[test]
    fn the_request_is_the_protobuf_encoding() {
        let got = encode_request("webhook-guard", &[vec![("endpoint", "azure"), ("a", "app")], vec![("k", "été")]]);
        assert_eq!(got, REQUEST);
        // Lengths past 127 take two bytes.
        let long = "x".repeat(200);
        let got = encode_request(&long, &[]);
        assert_eq!(&got[..3], b"\x0a\xc8\x01");
        assert_eq!(got.len(), 203);
    }

    #[test]
    fn an_answer_is_read_and_unknown_fields_skipped() {
        // overall OVER_LIMIT; a status OVER_LIMIT, limit 5/minute named "n", 0 left,
        // reset in 41.5 s; then a header to add, raw_body, a fixed32 and a fixed64 field.
        let mut bytes = b"\x08\x02".to_vec();
        let status = b"\x08\x02\x12\x07\x08\x05\x10\x02\x1a\x01n\x18\x00\x22\x08\x08\x29\x10\x80\xca\xb5\xee\x01";
        bytes.extend_from_slice(&[0x12, status.len() as u8]);
        bytes.extend_from_slice(status);
        bytes.extend_from_slice(b"\x1a\x07\x0a\x01x\x12\x02yz\x2a\x02ab\x7d\x01\x02\x03\x04\x79\x01\x02\x03\x04\x05\x06\x07\x08");
        let response = decode_response(&bytes).unwrap();
        assert_eq!(response.code, OVER_LIMIT);
        assert_eq!(response.statuses, [DescriptorStatus { code: OVER_LIMIT, limit: Some((5, 2)), remaining: 0, reset_secs: Some(42) }]);
        assert_eq!(decode_response(b"").unwrap(), Response::default());
        assert_eq!(decode_response(b"\x08\x01").unwrap().code, OK);
    }

    #[test]
    fn a_negative_reset_is_no_wait() {
        // seconds -1 (ten-byte varint); then 7 s with nanos -1, which rounds nothing up.
        let minus_one = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        for (duration, want) in [([&[0x08][..], &minus_one].concat(), 0), ([&[0x08, 0x07, 0x10][..], &minus_one].concat(), 7)] {
            let mut status = vec![0x22, duration.len() as u8];
            status.extend_from_slice(&duration);
            let mut bytes = vec![0x12, status.len() as u8];
            bytes.extend_from_slice(&status);
            assert_eq!(decode_response(&bytes).unwrap().statuses[0].reset_secs, Some(want));
        }
    }

    proptest::proptest! {
        /// Any bytes are read or refused, never a trap; a status the real encoder would
        /// write inside any prefix is read back.
        #[test]
        fn any_answer_is_read_or_refused(
            noise in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            remaining in 0u8..128,
            reset in 0u8..128,
        ) {
            let _ = decode_response(&noise);
            let status = [0x08, 0x02, 0x18, remaining, 0x22, 0x02, 0x08, reset];
            let mut bytes = vec![0x08, 0x02, 0x12, status.len() as u8];
            bytes.extend_from_slice(&status);
            let read = decode_response(&bytes);
            let want = DescriptorStatus { code: OVER_LIMIT, limit: None, remaining: u64::from(remaining), reset_secs: Some(u64::from(reset)) };
            proptest::prop_assert_eq!(read.map(|r| r.statuses), Some(vec![want]));
        }
    }

    #[test]
    fn malformed_answers_are_refused_never_trapped() {
        for bad in [&b"\x08"[..], b"\x12\x05ab", b"\x0b", b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x12\x02\x08", b"\x79\x01"] {
            assert_eq!(decode_response(bad), None, "{bad:?}");
        }
    }
}
