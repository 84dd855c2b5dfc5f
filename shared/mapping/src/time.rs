//! Timestamps (spec §3.3): everything Segment libraries are known to send, to epoch milliseconds.

use jiff::{Timestamp, civil, tz::TimeZone};
use serde_json_borrow::Value;

/// Below this a JSON number is taken as epoch seconds, above as milliseconds (the rule of the
/// date library the classic integration used).
const SECONDS_THRESHOLD: f64 = 31_557_600_000.0;

/// Epoch milliseconds at or past this (about the year 255,000, inside JavaScript's `Date`
/// range of ±8.64e15) are no time at all: numbers and digit strings alike are refused there.
const MILLIS_LIMIT: i64 = 8_000_000_000_000_000;

/// Epoch milliseconds of a Segment timestamp value, or `None` when it does not parse.
pub fn epoch_millis(value: &Value<'_>) -> Option<i64> {
    match value {
        Value::Number(n) => {
            let f = n.as_f64()?;
            if !f.is_finite() {
                return None;
            }
            let ms = if f.abs() < SECONDS_THRESHOLD {
                f * 1000.0
            } else {
                f
            };
            (ms.abs() < MILLIS_LIMIT as f64).then_some(ms as i64)
        }
        Value::Str(s) => epoch_digits(s).or_else(|| parse_str(s)),
        _ => None,
    }
}

/// A string of ten or more digits, read as the classic integration's date library (`new-date`)
/// reads it: thirteen or more are epoch milliseconds, ten to twelve epoch seconds
/// (`"1714557600"` is 2024-05-01T10:00:00Z). Decision: only a string that is all digits; the
/// library also took the digits out of longer text, and gave anything else to JavaScript's
/// `Date`, whose lenient forms are not followed here.
fn epoch_digits(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() < 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = s.parse().ok()?;
    let ms = if s.len() >= 13 {
        n
    } else {
        n.checked_mul(1000)?
    };
    (ms < MILLIS_LIMIT).then_some(ms)
}

/// Parses ISO-8601 (with `Z`, an offset, or no zone = UTC; 0–9 fraction digits), the reduced
/// forms `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, and Go's `time.String` form found in delete events
/// (`2006-01-02 15:04:05.999999999 -0700 MST`).
pub fn parse_str(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(ms) = canonical_utc(s) {
        return Some(ms);
    }
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Some(ts.as_millisecond());
    }
    if let Ok(dt) = s.parse::<civil::DateTime>() {
        return utc_millis(dt);
    }
    if let Some(ms) = reduced_date(s) {
        return Some(ms);
    }
    go_time_string(s)
}

/// The form every Segment library sends, `YYYY-MM-DDTHH:MM:SS[.f…]Z` (a `.` and 1–9 digits of
/// fraction), from 1970 on, read without jiff: as jiff reads it (`tests::
/// the_canonical_form_is_read_as_jiff_reads_it`), in a tenth of the instructions (jiff's
/// general parser was 2% of `map`'s). `None` for anything else, including an invalid date or
/// a leap second, which [`parse_str`] then gives to jiff.
fn canonical_utc(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let (date_time, fraction) = match b {
        [head @ .., b'Z'] if head.len() >= 19 => head.split_at(19),
        _ => return None,
    };
    let millis = match fraction {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            // The first three digits, as milliseconds (later ones are truncated).
            digits
                .iter()
                .chain([b'0'; 3].iter())
                .take(3)
                .fold(0, |n, d| n * 10 + i64::from(d - b'0'))
        }
        _ => return None,
    };
    let [
        y0,
        y1,
        y2,
        y3,
        b'-',
        m0,
        m1,
        b'-',
        d0,
        d1,
        b'T',
        h0,
        h1,
        b':',
        n0,
        n1,
        b':',
        s0,
        s1,
    ] = *date_time
    else {
        return None;
    };
    let number = |digits: &[u8]| -> Option<i64> {
        digits.iter().try_fold(0, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let year = number(&[y0, y1, y2, y3])?;
    let month = number(&[m0, m1])?;
    let day = number(&[d0, d1])?;
    let (hour, minute, second) = (number(&[h0, h1])?, number(&[n0, n1])?, number(&[s0, s1])?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if year < 1970 || !(1..=month_days).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (years from March, so the leap day
    // ends a year: Howard Hinnant's `days_from_civil`).
    let y = if month <= 2 { year - 1 } else { year };
    let (era, year_of_era) = (y / 400, y % 400);
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

fn utc_millis(dt: civil::DateTime) -> Option<i64> {
    TimeZone::UTC
        .to_timestamp(dt)
        .ok()
        .map(|t| t.as_millisecond())
}

/// `YYYY`, `YYYY-MM`, `YYYY-MM-DD` at UTC midnight of their first day.
fn reduced_date(s: &str) -> Option<i64> {
    let mut parts = s.split('-');
    let year = parts.next().filter(|p| p.len() == 4)?.parse::<i16>().ok()?;
    let month = match parts.next() {
        Some(p) if p.len() == 2 => p.parse::<i8>().ok()?,
        Some(_) => return None,
        None => 1,
    };
    let day = match parts.next() {
        Some(p) if p.len() == 2 => p.parse::<i8>().ok()?,
        Some(_) => return None,
        None => 1,
    };
    if parts.next().is_some() {
        return None;
    }
    let date = civil::Date::new(year, month, day).ok()?;
    utc_millis(date.to_datetime(civil::Time::midnight()))
}

/// Go's `time.Time.String()`: `2021-01-02 03:04:05.123456789 +0000 UTC` (the zone name is
/// informational; the numeric offset decides), possibly with a `m=+0.000` monotonic suffix.
///
/// The offset is taken apart with `split_at_checked`, never by byte index, so text that only
/// looks like an offset (`+a€`, multi-byte characters) is refused instead of panicking.
fn go_time_string(s: &str) -> Option<i64> {
    let mut words = s.split_whitespace();
    let (date, time, offset) = (words.next()?, words.next()?, words.next()?);
    let (sign, digits) = offset.split_at_checked(1)?;
    let (hours, minutes) = digits.split_at_checked(2)?;
    let numeric = |p: &str| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit());
    if !matches!(sign, "+" | "-") || !numeric(hours) || !numeric(minutes) {
        return None;
    }
    // jiff wants `+hh:mm`; Go prints `+hhmm`.
    format!("{date}T{time}{sign}{hours}:{minutes}")
        .parse::<Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> Option<i64> {
        parse_str(s)
    }

    #[test]
    fn spec_3_3_reduced_iso_forms_are_utc_midnight() {
        assert_eq!(ms("2014"), Some(1_388_534_400_000));
        assert_eq!(ms("2016"), Some(1_451_606_400_000));
        assert_eq!(ms("2014-02"), Some(1_391_212_800_000));
        assert_eq!(ms("2014-02-03"), Some(1_391_385_600_000));
    }

    #[test]
    fn spec_3_3_full_iso_with_zone_offset_or_none() {
        assert_eq!(ms("2020-01-01T00:00:00Z"), Some(1_577_836_800_000));
        assert_eq!(ms("2020-01-01T00:00:00.123Z"), Some(1_577_836_800_123));
        assert_eq!(ms("2020-01-01T01:00:00+01:00"), Some(1_577_836_800_000));
        assert_eq!(ms("2020-01-01T00:00:00"), Some(1_577_836_800_000));
        assert_eq!(
            ms("2020-01-01T00:00:00.123456789Z"),
            Some(1_577_836_800_123)
        );
    }

    #[test]
    fn spec_3_3_go_time_string_from_delete_events() {
        assert_eq!(
            ms("2020-01-01 00:00:00.5 +0000 UTC"),
            Some(1_577_836_800_500)
        );
        assert_eq!(
            ms("2020-01-01 02:00:00 +0200 EET m=+0.001"),
            Some(1_577_836_800_000)
        );
    }

    #[test]
    fn spec_3_3_numbers_are_millis_or_seconds() {
        let v: Value = serde_json::from_str("1577836800").unwrap();
        assert_eq!(epoch_millis(&v), Some(1_577_836_800_000));
        let v: Value = serde_json::from_str("1577836800000").unwrap();
        assert_eq!(epoch_millis(&v), Some(1_577_836_800_000));
    }

    /// A timestamp written as a string of digits: ten to twelve are seconds, thirteen or more
    /// milliseconds, as the classic integration's date library reads them; fewer is a year
    /// (`"2014"`) or nothing.
    #[test]
    fn spec_3_3_digit_strings_are_seconds_or_millis() {
        let at = |s: &str| epoch_millis(&Value::Str(s.into()));
        assert_eq!(at("1714557600"), Some(1_714_557_600_000));
        assert_eq!(at(" 1714557600123 "), Some(1_714_557_600_123));
        assert_eq!(at("2014"), Some(1_388_534_400_000));
        assert_eq!(at("171455760"), None);
        assert_eq!(at("1714557600x"), None);
        assert_eq!(at("99999999999999999999"), None);
    }

    /// The fast path reads the canonical form as jiff does, and leaves to jiff everything it
    /// does not take: every day of four centuries of leap rules (1970–2400, a day and a time
    /// of day each), fractions of every length, and dates and times out of range.
    #[test]
    fn the_canonical_form_is_read_as_jiff_reads_it() {
        let jiff = |s: &str| s.parse::<Timestamp>().ok().map(|t| t.as_millisecond());
        let mut taken = 0;
        let start = civil::date(1970, 1, 1);
        for n in 0..157_000i64 {
            let Ok(date) = start.checked_add(jiff::Span::new().days(n)) else {
                break;
            };
            let (h, m, sec) = (n % 24, (n * 7) % 60, (n * 13) % 60);
            let fraction = ["", ".5", ".12", ".123", ".1234", ".123456789", ".000"][n as usize % 7];
            let s = format!("{date}T{h:02}:{m:02}:{sec:02}{fraction}Z");
            assert_eq!(canonical_utc(&s), jiff(&s), "{s}");
            taken += 1;
        }
        assert!(taken > 150_000);
        for s in [
            "2023-02-29T00:00:00Z",
            "2024-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2000-02-29T23:59:59.999Z",
            "2023-04-31T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-00-01T00:00:00Z",
            "2023-01-00T00:00:00Z",
            "2023-01-01T24:00:00Z",
            "2023-01-01T00:60:00Z",
            "2016-12-31T23:59:60Z",
            "1969-12-31T23:59:59.999Z",
            "2023-01-01T00:00:00.Z",
            "2023-01-01T00:00:00.1234567890Z",
            "2023-01-01T00:00:00,5Z",
            "2023-01-01 00:00:00Z",
            "2023-01-01T00:00:00z",
            "+2023-01-01T00:00:00Z",
            "2023-1-01T00:00:00Z",
            "2023-01-01T00:00:0xZ",
            "９９９９-01-01T00:00:00Z",
        ] {
            // Where the fast path takes a text it reads it as jiff does; where not, jiff decides.
            if let Some(ms) = canonical_utc(s) {
                assert_eq!(Some(ms), jiff(s), "{s}");
            }
            assert_eq!(parse_str(s), ms_by_jiff_path(s), "{s}");
        }
    }

    /// What [`parse_str`] gave before the fast path: jiff's parsers, then the other forms.
    fn ms_by_jiff_path(s: &str) -> Option<i64> {
        let s = s.trim();
        s.parse::<Timestamp>()
            .ok()
            .map(|t| t.as_millisecond())
            .or_else(|| s.parse::<civil::DateTime>().ok().and_then(utc_millis))
            .or_else(|| reduced_date(s))
            .or_else(|| go_time_string(s))
    }

    #[test]
    fn garbage_does_not_parse() {
        for s in [
            "",
            "yesterday",
            "2014-13",
            "20141",
            "2014-1-1",
            "1e400",
            // Looked like a Go offset by byte length and crashed a byte slice (issue: hardening).
            "a b +a€",
            "2020-01-01 00:00:00 +€0",
            "2020-01-01 00:00:00 +00€",
            "2020-01-01 00:00:00 +0x00",
        ] {
            assert_eq!(ms(s), None, "{s}");
        }
    }
}
