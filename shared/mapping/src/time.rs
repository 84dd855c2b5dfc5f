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
