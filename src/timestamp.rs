//! ISO 8601 / RFC 3339 date-times, normalised to UTC in RFC 3339.
//!
//! Only the extended format with seconds is accepted (what Azure sends), with any offset:
//! a sender's serialiser choosing `+01:00` over `Z`, or trimming fractional digits, must
//! not lose a notification. The normalised form, and so the event id derived from it, is
//! the same for every spelling of one instant with the same fractional digits.

/// The rule a malformed timestamp breaks; callers prefix the field name.
const SHAPE: &str = "must be an ISO 8601 date-time such as 2019-08-14T19:20:08.1707163Z";

/// A parsed date-time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    /// RFC 3339 in UTC: uppercase `T` and `Z`, fractional digits exactly as given
    /// (trimming them would change the event id of a retry).
    pub utc: String,
    /// Whether the text named its offset (`Z` or `±hh:mm`); without one it is read as UTC.
    pub has_offset: bool,
}

/// Parses `YYYY-MM-DD(T|t| )HH:MM:SS[(.|,)f+][Z|z|±hh:mm|±hhmm|±hh]` and converts it to
/// UTC. No leap seconds (`:60`): most consumers cannot represent them.
/// The error describes the broken rule, without the field name or the value.
pub fn parse(s: &str) -> Result<Timestamp, String> {
    let shape = || SHAPE.to_owned();
    let (date, rest) = s.split_at_checked(10).ok_or_else(shape)?;
    let rest = rest.strip_prefix(['T', 't', ' ']).ok_or_else(shape)?;
    let (time, rest) = rest.split_at_checked(8).ok_or_else(shape)?;
    let (fraction, zone) = match rest.strip_prefix(['.', ',']) {
        Some(tail) => {
            let n = tail.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return Err(shape());
            }
            tail.split_at_checked(n).ok_or_else(shape)?
        }
        None => ("", rest),
    };
    let offset_minutes = match zone {
        "" => None,
        "Z" | "z" => Some(0),
        zone => Some(offset(zone).ok_or_else(shape)?),
    };
    let [year, month, day] = fields(date, b'-', [4, 2, 2]).ok_or_else(shape)?;
    let [hour, minute, second] = fields(time, b':', [2, 2, 2]).ok_or_else(shape)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err("is not a valid calendar date".into());
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err("is not a valid time of day".into());
    }
    let days = days_from_civil(i64::from(year), i64::from(month), i64::from(day));
    let local = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    // Offsets are whole minutes: the fraction carries over unchanged.
    let utc = rfc3339(local - offset_minutes.unwrap_or(0) * 60, fraction).ok_or("is outside the years 0000 to 9999 in UTC")?;
    Ok(Timestamp { utc, has_offset: offset_minutes.is_some() })
}

/// Minutes east of UTC of `±hh:mm`, `±hhmm` or `±hh` (hours to 23, minutes to 59).
fn offset(zone: &str) -> Option<i64> {
    let (sign, digits) = match zone.split_at_checked(1)? {
        ("+", rest) => (1, rest),
        ("-", rest) => (-1, rest),
        _ => return None,
    };
    let (hh, mm) = match (digits.len(), digits.as_bytes().get(2)) {
        (2, _) => (digits, "00"),
        (4, _) => digits.split_at_checked(2)?,
        (5, Some(b':')) => (digits.get(..2)?, digits.get(3..)?),
        _ => return None,
    };
    let number = |s: &str| s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse::<i64>().ok()).flatten();
    let (hh, mm) = (number(hh)?, number(mm)?);
    (hh <= 23 && mm <= 59).then_some(sign * (hh * 60 + mm))
}

/// Three ASCII-digit fields of fixed widths joined by `sep`, read as bytes (no
/// character boundary to keep: a non-ASCII byte is no digit and no separator).
fn fields(s: &str, sep: u8, widths: [usize; 3]) -> Option<[u32; 3]> {
    let mut out = [0; 3];
    let mut bytes = s.as_bytes().iter();
    for (i, (slot, width)) in out.iter_mut().zip(widths).enumerate() {
        if i > 0 && bytes.next() != Some(&sep) {
            return None;
        }
        // Digits only (no sign), at most four: no overflow.
        for _ in 0..width {
            let digit = bytes.next().filter(|b| b.is_ascii_digit())?;
            *slot = *slot * 10 + u32::from(digit - b'0');
        }
    }
    bytes.next().is_none().then_some(out)
}

/// Days in `month` (1-12) of `year` (proleptic Gregorian).
pub fn days_in_month(year: u32, month: u32) -> u32 {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// RFC 3339 UTC form of a Unix time, e.g. `1466526410` -> `2016-06-21T16:26:50Z`;
/// `None` outside the years 0000..=9999, which RFC 3339 cannot write.
pub fn rfc3339_from_unix(secs: i64) -> Option<String> {
    rfc3339(secs, "")
}

/// [`rfc3339_from_unix`] with the digits `fraction` (when not empty) after the seconds:
/// written digit by digit into one buffer, without the formatting machinery.
fn rfc3339(secs: i64, fraction: &str) -> Option<String> {
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    if !(0..=9999).contains(&year) {
        return None;
    }
    let sod = secs.rem_euclid(86_400);
    // Each field's digits written from its last into the template's zeros; every field
    // is within 0..=9999 and fits its width.
    let mut text = *b"0000-00-00T00:00:00";
    let fields = [(0..4, year), (5..7, month), (8..10, day), (11..13, sod / 3600), (14..16, sod / 60 % 60), (17..19, sod % 60)];
    for (digits, mut value) in fields {
        for at in digits.rev() {
            if let Some(byte) = text.get_mut(at) {
                *byte = b'0' + u8::try_from(value % 10).unwrap_or(0);
            }
            value /= 10;
        }
    }
    let mut out = String::with_capacity(21 + fraction.len());
    // ASCII: always UTF-8.
    out.push_str(std::str::from_utf8(&text).ok()?);
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    out.push('Z');
    Some(out)
}

/// Proleptic Gregorian date of a day count since 1970-01-01: the inverse of Howard
/// Hinnant's days-from-civil algorithm (eras of 400 years, years starting in March).
/// No overflow for any `i64` day count derived from seconds.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year
    let mp = (5 * doy + 2) / 153; // March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date: Howard Hinnant's
/// days-from-civil algorithm, the inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> Result<String, String> {
        parse(s).map(|t| t.utc)
    }

    #[test]
    fn accepts_and_normalises() {
        let cases = [
            ("2019-08-14T19:20:08.1707163Z", "2019-08-14T19:20:08.1707163Z"),
            ("2019-08-14t19:20:08.1707163z", "2019-08-14T19:20:08.1707163Z"),
            ("2019-08-14 19:20:08,17Z", "2019-08-14T19:20:08.17Z"),
            ("2019-08-14T19:20:08+00:00", "2019-08-14T19:20:08Z"),
            ("2019-08-14T19:20:08-00:00", "2019-08-14T19:20:08Z"),
            ("2019-08-14T19:20:08.1+00:00", "2019-08-14T19:20:08.1Z"),
            ("2019-08-14T19:20:08.0000000Z", "2019-08-14T19:20:08.0000000Z"),
            ("2019-08-14T19:20:08.10Z", "2019-08-14T19:20:08.10Z"),
            ("2019-08-14T19:20:08.170716345678Z", "2019-08-14T19:20:08.170716345678Z"),
            ("2019-08-14T21:20:08.1707163+02:00", "2019-08-14T19:20:08.1707163Z"),
            ("2019-08-14T14:50:08-04:30", "2019-08-14T19:20:08Z"),
            ("2019-08-14T21:20:08+0200", "2019-08-14T19:20:08Z"),
            ("2019-08-14T21:20:08+02", "2019-08-14T19:20:08Z"),
            // Offsets move the date across days, months, years and 29 February.
            ("2020-01-01T01:00:00+02:00", "2019-12-31T23:00:00Z"),
            ("2019-12-31T23:00:00-01:30", "2020-01-01T00:30:00Z"),
            ("2020-02-28T23:30:00-01:00", "2020-02-29T00:30:00Z"),
            ("2020-02-29T00:00:00Z", "2020-02-29T00:00:00Z"),
            ("2000-02-29T00:00:00Z", "2000-02-29T00:00:00Z"),
            ("0000-01-01T00:00:00Z", "0000-01-01T00:00:00Z"),
            ("9999-12-31T23:59:59.9999999Z", "9999-12-31T23:59:59.9999999Z"),
            ("2019-08-14T19:20:08", "2019-08-14T19:20:08Z"),
        ];
        for (input, want) in cases {
            assert_eq!(utc(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn tells_whether_an_offset_was_given() {
        assert!(!parse("2019-08-14T19:20:08.17").unwrap().has_offset);
        for given in ["2019-08-14T19:20:08Z", "2019-08-14T19:20:08+01:00", "2019-08-14T19:20:08-0000"] {
            assert!(parse(given).unwrap().has_offset, "{given}");
        }
    }

    #[test]
    fn rejects_with_the_broken_rule() {
        let cases = [
            ("2019-02-29T00:00:00Z", "not a valid calendar date"),
            ("1900-02-29T00:00:00Z", "not a valid calendar date"),
            ("2019-04-31T00:00:00Z", "not a valid calendar date"),
            ("2019-13-01T00:00:00Z", "not a valid calendar date"),
            ("2019-00-10T00:00:00Z", "not a valid calendar date"),
            ("2019-01-00T00:00:00Z", "not a valid calendar date"),
            ("2019-01-32T00:00:00Z", "not a valid calendar date"),
            ("2019-08-14T24:00:00Z", "not a valid time of day"),
            ("2019-08-14T23:60:00Z", "not a valid time of day"),
            ("2019-08-14T23:59:60Z", "not a valid time of day"),
            ("0000-01-01T00:30:00+01:00", "outside the years"),
            ("9999-12-31T23:30:00-01:00", "outside the years"),
        ];
        for (input, want) in cases {
            let err = parse(input).unwrap_err();
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn rejects_other_shapes() {
        let cases = [
            "",
            "2019-08-14",
            "2019-08-14T19:20Z",
            "2019-8-14T19:20:08Z",
            "20190814T192008Z",
            "2019-08-14T19:20:08.Z",
            "2019-08-14T19:20:08Z ",
            " 2019-08-14T19:20:08Z",
            "2019-08-14T19:20:08ZZ",
            "2019-08-14T19:20:08UTC",
            "2019-08-14T19:20:08+24:00",
            "2019-08-14T19:20:08+01:60",
            "2019-08-14T19:20:08+1",
            "2019-08-14T19:20:08+01:0",
            "2019-08-14T19:20:08+01-00",
            "2019-08-14T19:20:08++1:00",
            "2019-08-14T19:20:08+０1",
            "+019-08-14T19:20:08Z",
            "2019-+8-14T19:20:08Z",
            "2019-08-14T19:20:+8Z",
            "2019/08/14T19:20:08Z",
            "２019-08-14T19:20:08Z",
            "2019-08-14T19:20:08.１Z",
            "2019-08-14T19:20:0éZ",
        ];
        for input in cases {
            assert_eq!(parse(input), Err(SHAPE.to_owned()), "{input:?}");
        }
    }

    #[test]
    fn formats_unix_times() {
        let cases = [
            (1_466_526_410, Some("2016-06-21T16:26:50Z")),
            (0, Some("1970-01-01T00:00:00Z")),
            (-1, Some("1969-12-31T23:59:59Z")),
            (951_782_400, Some("2000-02-29T00:00:00Z")),
            (253_402_300_799, Some("9999-12-31T23:59:59Z")),
            (-62_167_219_200, Some("0000-01-01T00:00:00Z")),
            (253_402_300_800, None),
            (-62_167_219_201, None),
            (i64::MAX, None),
            (i64::MIN, None),
        ];
        for (secs, want) in cases {
            assert_eq!(rfc3339_from_unix(secs).as_deref(), want, "{secs}");
        }
        // Digit by digit, what `format!` writes, over the whole range.
        for secs in (-62_167_219_200..=253_402_300_799_i64).step_by(987_654_321).chain([-62_167_219_200, 253_402_300_799]) {
            let ((year, month, day), sod) = (civil_from_days(secs.div_euclid(86_400)), secs.rem_euclid(86_400));
            let want = format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", sod / 3600, sod / 60 % 60, sod % 60);
            assert_eq!(rfc3339_from_unix(secs), Some(format!("{want}Z")));
            assert_eq!(rfc3339(secs, "0123"), Some(format!("{want}.0123Z")));
        }
    }

    #[test]
    fn civil_dates_round_trip_through_the_parser() {
        // Every day of 1896..=2104 (leap and non-leap centuries) plus the extremes.
        let days = (days_from_civil(1896, 1, 1)..=days_from_civil(2104, 12, 31)).chain([days_from_civil(0, 1, 1), days_from_civil(9999, 12, 31)]);
        for day in days {
            let s = rfc3339_from_unix(day * 86_400 + 3_723).unwrap();
            assert_eq!(utc(&s).as_deref(), Ok(s.as_str()));
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
            assert!(s.ends_with("T01:02:03Z"), "{s}");
        }
    }

    #[test]
    fn fields_reads_exactly_three_fixed_width_numbers() {
        assert_eq!(fields("2019-08-14", b'-', [4, 2, 2]), Some([2019, 8, 14]));
        assert_eq!(fields("19:20:08", b':', [2, 2, 2]), Some([19, 20, 8]));
        let bad = ["2019-8-014", "2019-08-1", "2019-08-144", "2019-08-+4", "2019-08:14"];
        for bad in bad.into_iter().chain(["2019-08-14-", "٢٠١٩-08-14", ""]) {
            assert_eq!(fields(bad, b'-', [4, 2, 2]), None, "{bad}");
        }
    }
}
