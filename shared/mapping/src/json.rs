//! Lenient reading of Segment JSON (spec §0.2, §0.3).
//!
//! Segment messages come from many libraries and from hand-written HTTP calls, so every read
//! here accepts odd shapes: a `context` that is `null` or `[]` is an empty object, a number where
//! a string is expected is its JSON text, and nothing ever panics.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json_borrow::Value;

use crate::read;

static NULL: Value<'static> = Value::Null;

/// What a message read by [`parse`] borrows besides its text: the text written again (a
/// repeated key, a lone surrogate) and the strings written with escapes, unescaped. One per
/// message; it is dropped with the message's tree.
#[derive(Default)]
pub struct Scratch {
    rewritten: Option<String>,
    strings: bumpalo::Bump,
}

/// Reads one Segment JSON text as Segment reads it:
///
/// * where an object names a key more than once, the last value counts, at the key's first
///   place. That is what `JSON.parse` (Node, where Segment's destinations run) and Go's
///   `encoding/json` do, and what Amplitude does with a repeated key. `serde_json_borrow`
///   keeps every entry and its lookups find the first, so without this
///   `{"userId":"a","userId":"b"}` was sent as user `a`, `"type"` given twice was read by its
///   first value, and `properties` with a key twice reached Amplitude with both;
/// * a `\u` escape of a lone UTF-16 surrogate (a string cut in the middle of an emoji) is
///   U+FFFD, as Segment's tracking API (Go's `encoding/json`) reads it. serde_json refuses
///   such a text, so the message was rejected as not JSON.
///
/// The text is read once, into a tree whose arrays and objects hold exactly their items
/// ([`crate::read`]: a message's tree is bounded by its text). Only a text with a repeated
/// key or a lone surrogate (Segment's own deliveries have neither) is written again without
/// them, into `scratch`, and read from there; the values are the same (`float_roundtrip`
/// reads back every number as written).
pub fn parse<'t>(text: &'t str, scratch: &'t mut Scratch) -> Result<Value<'t>, serde_json::Error> {
    let Scratch { rewritten, strings } = scratch;
    let strings: &'t bumpalo::Bump = strings;
    let again = match read::exact(text, strings) {
        Ok(read) if !read.names_a_key_twice => return Ok(read.value),
        Ok(read) => serde_json::to_string(&LastWins(&read.value))?,
        Err(refused) => {
            let Some(mended) = without_lone_surrogates(text) else {
                return Err(refused);
            };
            let read = read::exact(&mended, strings)?;
            if read.names_a_key_twice {
                serde_json::to_string(&LastWins(&read.value))?
            } else {
                drop(read);
                mended
            }
        }
    };
    // One tree at a time: the first is gone, so the peak is a tree and a text, not two trees.
    read::exact(Option::insert(rewritten, again), strings).map(|read| read.value)
}

/// `text` with every `\u` escape of a lone UTF-16 surrogate written `\ufffd`, or `None` if it
/// has none. A pair (`\ud83d\ude00`) stays; so does an escaped backslash before a `u`.
fn without_lone_surrogates(text: &str) -> Option<String> {
    if !text.contains("\\u") {
        return None;
    }
    let bytes = text.as_bytes();
    let escape_at = |i: usize| -> Option<u16> {
        let hex = bytes.get(i..i + 6)?.strip_prefix(b"\\u")?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    };
    let is_high = |n: Option<u16>| n.is_some_and(|n| (0xD800..=0xDBFF).contains(&n));
    let is_low = |n: Option<u16>| n.is_some_and(|n| (0xDC00..=0xDFFF).contains(&n));
    let mut out = Vec::with_capacity(bytes.len());
    let (mut copied, mut i, mut mended) = (0, 0, false);
    // Each escape is looked at from its backslash; the bytes between are copied as they are.
    while let Some(at) = bytes.get(i..)?.iter().position(|b| *b == b'\\') {
        let at = i + at;
        let n = escape_at(at);
        i = if is_high(n) && is_low(escape_at(at + 6)) {
            at + 12
        } else if is_high(n) || is_low(n) {
            out.extend_from_slice(bytes.get(copied..at)?);
            out.extend_from_slice(b"\\ufffd");
            copied = at + 6;
            mended = true;
            at + 6
        } else {
            at + 2 // `\\`, `\"`, another escape: the byte after the backslash is not one
        };
    }
    out.extend_from_slice(bytes.get(copied..)?);
    // Only ASCII escapes were replaced by ASCII escapes: the text is still UTF-8.
    mended.then(|| String::from_utf8(out).ok()).flatten()
}

/// Objects up to this size are checked through a filter ([`names_a_key_twice`]), without
/// allocating; most of a message's objects hold a few to a few dozen keys.
const FILTERED_UP_TO: usize = 48;

/// True if the entries of one object name a key twice. The reader ([`read::exact`]) asks it of
/// each object as the object's entries are gathered, while they are in cache, instead of a
/// second walk over the whole tree (that walk was 4% of `map`'s instructions).
///
/// Every object of every message is checked, so each key sets one bit of a 64-bit filter by a
/// fingerprint of its length and end bytes, and only a key whose bit is already set is
/// compared with the keys before it (comparing every pair instead cost 6% of `map`'s
/// instructions). An object of more keys than the filter can tell apart (a hostile message can
/// hold 300,000 traits) is checked with a set, in linear time.
pub(crate) fn names_a_key_twice<V>(entries: &[(&str, V)]) -> bool {
    if entries.len() > FILTERED_UP_TO {
        let mut seen = HashSet::with_capacity(entries.len());
        return !entries.iter().all(|(k, _)| seen.insert(*k));
    }
    let mut filter = 0u64;
    for (i, (key, _)) in entries.iter().enumerate() {
        let bit = 1u64 << fingerprint(key.as_bytes());
        if filter & bit != 0 && entries.iter().take(i).any(|(earlier, _)| earlier == key) {
            return true;
        }
        filter |= bit;
    }
    false
}

/// A number in `0..64` from a key's length, first and last bytes (one multiplication).
fn fingerprint(key: &[u8]) -> u32 {
    let end = |b: Option<&u8>| u32::from(b.copied().unwrap_or(0));
    let packed = (key.len() as u32) ^ (end(key.first()) << 12) ^ (end(key.last()) << 20);
    packed.wrapping_mul(0x9E37_79B1) >> 26
}

/// A value written with each key of each object once: at its first place, with its last value.
struct LastWins<'v, 'a>(&'v Value<'a>);

impl Serialize for LastWins<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(o) => {
                let mut last: HashMap<&str, &Value<'_>> = HashMap::with_capacity(o.len());
                for (k, v) in o.iter() {
                    last.insert(k, v);
                }
                let mut map = s.serialize_map(Some(last.len()))?;
                for k in o.keys() {
                    if let Some(v) = last.remove(k) {
                        map.serialize_entry(k, &LastWins(v))?;
                    }
                }
                map.end()
            }
            Value::Array(a) => s.collect_seq(a.iter().map(LastWins)),
            other => other.serialize(s),
        }
    }
}

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
        Value::Number(n) => Some(Cow::Owned(number_text(n))),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// A number as JavaScript writes it (`String(n)`, what Segment's destinations, on Node, make of
/// a number): `2.0` is `2`, `1.5e300` is `1.5e+300`, `1e-7` is `1e-7`, `-0.0` is `0`. Rust's
/// own formatting writes every digit (`1.5e300` became a 301-character user id). A whole
/// number that fits 64 bits keeps all its digits (decision: JavaScript would round one past
/// 2^53, which would turn a numeric id into another user's).
fn number_text(n: &serde_json_borrow::Number) -> String {
    match (n.as_u64(), n.as_i64(), n.as_f64()) {
        (Some(u), _, _) => u.to_string(),
        (_, Some(i), _) => i.to_string(),
        (_, _, Some(f)) => ryu_js::Buffer::new().format(f).to_owned(),
        // Every JSON number has an f64 form; kept total rather than unwrapped.
        (None, None, None) => n.to_string(),
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

    fn read(text: &str) -> (String, bool) {
        let mut scratch = Scratch::default();
        let value = parse(text, &mut scratch).unwrap();
        let read = serde_json::to_string(&value).unwrap();
        (read, scratch.rewritten.is_some())
    }

    /// A repeated key keeps its last value at its first place, at every depth and in arrays;
    /// a key written with escapes is the same key.
    #[test]
    fn a_repeated_key_keeps_its_last_value_at_its_first_place() {
        assert_eq!(
            read(r#"{"a":1,"b":{"c":1,"c":[{"d":1,"e":0,"d":2}]},"a":3,"\u0062":"x"}"#),
            (r#"{"a":3,"b":"x"}"#.to_string(), true)
        );
        assert_eq!(
            read(r#"[{"c":1,"c":[{"d":1,"e":0,"d":{"f":1,"f":null}}]}]"#),
            (r#"[{"c":[{"d":{"f":null},"e":0}]}]"#.to_string(), true)
        );
    }

    /// The values of a rewritten text are the values sent: numbers (negative zero, the
    /// largest integers, a 17-digit decimal) and escaped strings read back as they were.
    #[test]
    fn a_rewritten_text_keeps_every_value() {
        let text = r#"{"k":0,"x":-0.0,"u":18446744073709551615,"i":-9223372036854775808,"f":7673421687.5130919,"s":"q\"\u2028\u0000😀","k":1}"#;
        let expected = r#"{"k":1,"x":-0.0,"u":18446744073709551615,"i":-9223372036854775808,"f":7673421687.513092,"s":"q\"\u{2028}\u0000😀"}"#
            .replace(r"\u{2028}", "\u{2028}");
        assert_eq!(read(text), (expected, true));
    }

    /// A `\u` escape of a lone UTF-16 surrogate is U+FFFD, as Segment's tracking API reads
    /// it (the text was refused before); pairs, escaped backslashes and other escapes stay.
    #[test]
    fn a_lone_surrogate_is_read_as_the_replacement_character() {
        let text = r#"{"cut":"Joy \ud83d","low":"\uDE00!","pair":"\ud83d\ude00","two":"\ud83d\ud83d\ude00","lit":"\\ud800","q":"\"\u0041"}"#;
        assert_eq!(
            read(text),
            (
                "{\"cut\":\"Joy \u{fffd}\",\"low\":\"\u{fffd}!\",\"pair\":\"😀\",\"two\":\"\u{fffd}😀\",\"lit\":\"\\\\ud800\",\"q\":\"\\\"A\"}"
                    .to_string(),
                true
            )
        );
        // With a repeated key too; and a text refused for another reason stays refused.
        assert_eq!(
            read(r#"{"a":"\udc00","a":"\ud800x"}"#),
            ("{\"a\":\"\u{fffd}x\"}".to_string(), true)
        );
        let mut scratch = Scratch::default();
        assert!(parse(r#"{"a":"\ud800","b":1e400}"#, &mut scratch).is_err());
        assert!(parse(r#"{"a":"\ud800"#, &mut scratch).is_err());
        assert_eq!(without_lone_surrogates(r#"{"a":"\\ud800\u00e9"}"#), None);
    }

    /// Objects past the filter's size are checked with a set: one repeat among 500 keys is
    /// found.
    #[test]
    fn a_repeat_in_a_large_object_is_found() {
        let keys: Vec<String> = (0..500).map(|i| format!("\"k{i}\":{i}")).collect();
        let text = format!("{{{}}}", keys.join(","));
        assert_eq!(read(&text), (text.clone(), false));
        let (once, rewrote) = read(&format!("{{{},\"k7\":\"last\"}}", keys.join(",")));
        assert!(rewrote);
        assert_eq!(once, text.replace("\"k7\":7,", "\"k7\":\"last\","));
    }

    /// The README's known limit: a message nested 127 levels deep is read, 128 is refused
    /// (serde_json's recursion limit; every reader and writer of a message recurses per level).
    #[test]
    fn nesting_is_read_to_127_levels() {
        let nested = |levels: usize| {
            let inner = levels - 1;
            format!(r#"{{"p":{}{}}}"#, "[".repeat(inner), "]".repeat(inner))
        };
        let mut scratch = Scratch::default();
        assert!(parse(&nested(127), &mut scratch).is_ok());
        let refused = parse(&nested(128), &mut scratch).unwrap_err().to_string();
        assert!(refused.starts_with("recursion limit exceeded"), "{refused}");
    }

    /// A text without repeats is read in place: nothing is written again.
    #[test]
    fn a_text_without_repeats_is_read_once() {
        let text = r#"{"a":{"b":[1,{"c":2}],"c":"d"},"b":[{"a":1},{"a":2}]}"#;
        assert_eq!(read(text), (text.to_string(), false));
    }

    /// Random nested objects whose keys repeat (few names; objects past the filter's size
    /// too): what is read is the model with each key once, at its first place, with its
    /// last value.
    mod repeated_keys {
        use super::read;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Model {
            Leaf(i64),
            Array(Vec<Model>),
            Object(Vec<(u8, Model)>),
        }

        fn model() -> impl Strategy<Value = Model> {
            any::<i64>()
                .prop_map(Model::Leaf)
                .prop_recursive(4, 200, 40, |inner| {
                    prop_oneof![
                        prop::collection::vec(inner.clone(), 0..4).prop_map(Model::Array),
                        prop::collection::vec((0u8..80, inner), 0..70).prop_map(Model::Object),
                    ]
                })
        }

        /// Key `k` as sent: odd keys are written with an escape (`\u006b` is `k`).
        fn key(k: u8) -> String {
            if k % 2 == 1 {
                format!(r#""\u006b{k}""#)
            } else {
                format!(r#""k{k}""#)
            }
        }

        fn list(items: impl Iterator<Item = String>) -> String {
            items.collect::<Vec<_>>().join(",")
        }

        fn sent(m: &Model) -> String {
            match m {
                Model::Leaf(n) => n.to_string(),
                Model::Array(a) => format!("[{}]", list(a.iter().map(sent))),
                Model::Object(o) => format!(
                    "{{{}}}",
                    list(o.iter().map(|(k, v)| format!("{}:{}", key(*k), sent(v))))
                ),
            }
        }

        fn expected(m: &Model) -> String {
            match m {
                Model::Leaf(n) => n.to_string(),
                Model::Array(a) => format!("[{}]", list(a.iter().map(expected))),
                Model::Object(o) => {
                    let mut once: Vec<(u8, &Model)> = Vec::new();
                    for (k, v) in o {
                        match once.iter_mut().find(|(seen, _)| seen == k) {
                            Some(slot) => slot.1 = v,
                            None => once.push((*k, v)),
                        }
                    }
                    let entries = once
                        .iter()
                        .map(|(k, v)| format!(r#""k{k}":{}"#, expected(v)));
                    format!("{{{}}}", list(entries))
                }
            }
        }

        proptest! {
            #[test]
            fn each_key_once_at_its_first_place_with_its_last_value(m in model()) {
                prop_assert_eq!(read(&sent(&m)).0, expected(&m));
            }
        }
    }

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
