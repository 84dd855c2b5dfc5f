//! Lenient reading of Segment JSON (spec §0.2, §0.3).
//!
//! Segment messages come from many libraries and from hand-written HTTP calls, so every read
//! here accepts odd shapes: a `context` that is `null` or `[]` is an empty object, a number where
//! a string is expected is its JSON text, and nothing ever panics.

use std::borrow::Cow;

use serde_json_borrow::Value;

static NULL: Value<'static> = Value::Null;

/// The value under `key` (exact match) of an object; `Null` for anything else.
pub fn get<'a, 'v>(value: &'v Value<'a>, key: &str) -> &'v Value<'a> {
    match value {
        Value::Object(o) => o.get(key).unwrap_or(&NULL),
        _ => &NULL,
    }
}

/// The value under a key that matches `key` loosely (§0.2: case and separators ignored).
/// An exact match wins over a loose one.
pub fn get_loose<'a, 'v>(value: &'v Value<'a>, key: &str) -> &'v Value<'a> {
    let Value::Object(o) = value else {
        return &NULL;
    };
    if let Some(v) = o.get(key) {
        return v;
    }
    o.iter()
        .find(|(k, _)| loose_eq(k, key))
        .map(|(_, v)| v)
        .unwrap_or(&NULL)
}

/// Keys are equal after lower-casing and dropping every character that is not `a-z`/`0-9`.
pub fn loose_eq(a: &str, b: &str) -> bool {
    fn norm(s: &str) -> impl Iterator<Item = u8> + '_ {
        s.bytes()
            .filter(u8::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
    }
    norm(a).eq(norm(b))
}

/// §0.2 *present*: not missing, not `null`, and not an empty string.
pub fn is_present(value: &Value<'_>) -> bool {
    match value {
        Value::Null => false,
        Value::Str(s) => !s.is_empty(),
        _ => true,
    }
}

/// A field Amplitude types as a string (§0.3.3): a non-empty string as it is, a number or
/// boolean as its JSON text, anything else absent.
pub fn text<'a>(value: &Value<'a>) -> Option<Cow<'a, str>> {
    match value {
        Value::Str(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// An identifier (`userId`, `anonymousId`, `previousId`, …): a non-empty string, or a number
/// converted to text. Booleans, objects and arrays are not identifiers.
pub fn id<'a>(value: &Value<'a>) -> Option<Cow<'a, str>> {
    match value {
        Value::Bool(_) => None,
        other => text(other),
    }
}

/// A money or count amount (§5.2): a number as it is, or a string that is a plain decimal
/// number once `$`, `,` and surrounding spaces are removed (`"1,000"` is 1000, not 1).
pub fn amount(value: &Value<'_>) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
        Value::Str(s) => {
            let cleaned: String = s.chars().filter(|c| *c != '$' && *c != ',').collect();
            parse_decimal(&cleaned)
        }
        _ => None,
    }
}

/// A latitude or longitude (§3.7.1): a number, or a string holding a plain decimal number.
pub fn coordinate<'a>(value: &Value<'a>) -> Option<Value<'a>> {
    match value {
        Value::Number(n) if n.as_f64().is_some_and(f64::is_finite) => Some(value.clone()),
        Value::Str(s) => parse_decimal(s).map(Value::from),
        _ => None,
    }
}

/// A plain decimal number: optional sign, digits, optional fraction; no exponent, no `inf`.
fn parse_decimal(s: &str) -> Option<f64> {
    let t = s.trim();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.len() + frac.len() == 0 || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    t.parse().ok()
}

/// An integer option (`event_id`, `session_id`): an integral number, or a string of digits.
pub fn integer(value: &Value<'_>) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        _ => None,
    }
}

/// How many bytes `value` takes as JSON, counted without writing it anywhere.
pub fn serialized_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// A JSON number for a computed amount: integral values print without a fraction.
pub fn number(f: f64) -> Value<'static> {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::from(f as i64)
    } else {
        Value::from(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_keys_ignore_case_and_separators() {
        assert!(loose_eq("sessionId", "session_id"));
        assert!(loose_eq("Session-ID", "sessionid"));
        assert!(!loose_eq("session", "session_id"));
    }

    #[test]
    fn amounts_strip_currency_and_separators_strictly() {
        let amount_of = |s: &str| amount(&Value::Str(s.into()));
        assert_eq!(amount_of("$1,000.50"), Some(1000.5));
        assert_eq!(amount_of(" 32 "), Some(32.0));
        assert_eq!(parse_decimal("1,000"), None);
        assert_eq!(parse_decimal("-4.5"), Some(-4.5));
        assert_eq!(parse_decimal("12abc"), None);
        assert_eq!(parse_decimal("1e5"), None);
        assert_eq!(parse_decimal("inf"), None);
        assert_eq!(parse_decimal(""), None);
        assert_eq!(parse_decimal("."), None);
    }

    #[test]
    fn integers_from_numbers_and_digit_strings_only() {
        let v: Value = serde_json::from_str(r#"[12, "34", "x1", 1.5, 2.0, "-3"]"#).unwrap();
        let got: Vec<_> = v.iter_array().unwrap().map(integer).collect();
        assert_eq!(got, vec![Some(12), Some(34), None, None, Some(2), None]);
    }
}
