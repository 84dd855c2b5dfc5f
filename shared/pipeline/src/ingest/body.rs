//! The Segment body shapes (segment-delivery §0–§1): one event, a JSON array of events
//! (Webhooks (Actions) batching), or `{"batch": [...], "context", "integrations"}` (HTTP
//! Tracking API shape, whose top-level `context`/`integrations` every item shares: the mapping
//! reads them under the item's own keys, `mapping::Batch`).
//!
//! Segment's Extensible Webhook wraps each item of its batches as `{"json": event}`
//! (segment-delivery §1.2): such an item is read as the event it wraps, and its `X-Signature`
//! covers that event.
//!
//! Nothing is copied: a message is a slice of the body, exactly as sent.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{Error as _, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// The most messages of one request that are read. A body of API Gateway's 6 MiB holds at
/// most about 203,000 messages Amplitude would take (the smallest,
/// `{"type":"page","userId":12345}`, is 30 bytes and a comma), but 3,000,000 one-byte items
/// (`[1,1,…]`): each message read keeps its id and outcome until the request is answered, a
/// few hundred bytes, which for 3,000,000 came to 780 MB. Items past this many are rejected
/// unread, counted, with [`UNREAD`] (which, like the README, names the number).
pub const MAX_MESSAGES: usize = 250_000;

/// Why a message past [`MAX_MESSAGES`] is rejected.
pub const UNREAD: &str =
    "the request holds more than 250,000 messages: those past the 250,000th are not read";

/// The messages of one request, each its own JSON text in the body.
#[derive(Debug, Clone)]
pub struct Messages<'b> {
    /// The first [`MAX_MESSAGES`].
    pub items: Vec<&'b RawValue>,
    /// The `{"batch"}` shape's shared `context`, as sent.
    pub context: Option<&'b RawValue>,
    /// The `{"batch"}` shape's shared `integrations`, as sent.
    pub integrations: Option<&'b RawValue>,
    /// How many items followed the first [`MAX_MESSAGES`]: rejected unread.
    pub unread: usize,
}

impl<'b> Messages<'b> {
    fn of(listed: Listing<'b>) -> Self {
        Messages {
            items: listed.kept,
            context: None,
            integrations: None,
            unread: listed.unread,
        }
    }

    /// Each message's text.
    pub fn texts(&self) -> impl Iterator<Item = &'b str> + '_ {
        self.items.iter().map(|r| r.get())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body: empty")]
    Empty,
    #[error("body: not valid JSON ({0})")]
    NotJson(String),
    #[error("body: must be a Segment event object, an array of events, or {{\"batch\": [...]}}")]
    WrongShape,
    #[error("body: the batch holds no events")]
    EmptyBatch,
    /// A body that is not JSON, sent with a `Content-Encoding` other than `identity`: Segment
    /// sends JSON as it is, and "not valid JSON (invalid utf-8…)" would name the wrong cause.
    /// Not decompressed: a few bytes can expand past any memory bound.
    #[error("body: not JSON, and compressed (a `Content-Encoding` header); send it uncompressed")]
    Encoded,
}

/// The `{"batch": [...], "context", "integrations"}` shape. A key named twice keeps its last
/// value, as in every object a message holds (`mapping::parse`): serde's derived reader would
/// refuse the body instead.
struct BatchBody<'a> {
    batch: Listing<'a>,
    context: Option<&'a RawValue>,
    integrations: Option<&'a RawValue>,
}

/// An object key, borrowed from the body unless it holds an escape.
#[derive(Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de> Deserialize<'de> for BatchBody<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = BatchBody<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a batch body")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut batch, mut context, mut integrations) = (None, None, None);
                while let Some(Key(key)) = map.next_key()? {
                    match key.as_ref() {
                        "batch" => batch = Some(map.next_value()?),
                        "context" => context = map.next_value()?,
                        "integrations" => integrations = map.next_value()?,
                        _ => drop(map.next_value::<IgnoredAny>()?),
                    }
                }
                Ok(BatchBody {
                    batch: batch.ok_or_else(|| A::Error::missing_field("batch"))?,
                    context,
                    integrations,
                })
            }
        }
        d.deserialize_map(Visit)
    }
}

/// What Segment's `X-Signature` covers in a body, found before (and without) splitting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedPart<'b> {
    /// The signed bytes: the whole body, or an array body's first element exactly as sent.
    pub bytes: &'b [u8],
    /// True when `bytes` is the whole body.
    pub covers_body: bool,
    /// Events in an array body (1 otherwise).
    pub events: usize,
}

/// The signed part of `body`. An array's elements are skipped, not read into memory: only the
/// first is kept (as a slice of the body), the others are counted. A body that is not a
/// well-formed non-empty array counts as signed whole.
pub fn signed_part(body: &[u8]) -> SignedPart<'_> {
    let whole = SignedPart {
        bytes: body,
        covers_body: true,
        events: 1,
    };
    if body.trim_ascii_start().first() != Some(&b'[') {
        return whole;
    }
    match serde_json::from_slice::<Listed<1>>(body) {
        Ok(Listed { kept, unread }) => match kept.first() {
            Some(first) => SignedPart {
                bytes: unwrapped(first).get().as_bytes(),
                covers_body: false,
                events: 1 + unread,
            },
            None => whole,
        },
        Err(_) => whole,
    }
}

/// An Extensible Webhook item, `{"json": event}`: nothing but the wrapped event (a `json`
/// named twice: the last one, as [`BatchBody`] reads its keys).
struct Wrapped<'a> {
    json: &'a RawValue,
}

impl<'de> Deserialize<'de> for Wrapped<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Wrapped<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#"{"json": event}"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut json = None;
                while let Some(Key(key)) = map.next_key()? {
                    if key != "json" {
                        return Err(A::Error::unknown_field(&key, &["json"]));
                    }
                    json = Some(map.next_value()?);
                }
                let json = json.ok_or_else(|| A::Error::missing_field("json"))?;
                Ok(Wrapped { json })
            }
        }
        d.deserialize_map(Visit)
    }
}

/// The event an item wraps as `{"json": {...}}`, or the item itself.
fn unwrapped(item: &RawValue) -> &RawValue {
    // Only an item whose first key is "json" is parsed again.
    let text = item.get().trim_start();
    let first_key = text
        .strip_prefix('{')
        .map(|rest| rest.trim_start().starts_with("\"json\""));
    if first_key != Some(true) {
        return item;
    }
    match serde_json::from_str::<Wrapped>(item.get()) {
        Ok(w) if w.json.get().starts_with('{') => w.json,
        _ => item,
    }
}

/// An array's elements, borrowed: the first `KEEP` kept, the others only counted (skipped as
/// they are read, so a body of millions of items takes no memory for them).
struct Listed<'b, const KEEP: usize> {
    kept: Vec<&'b RawValue>,
    unread: usize,
}

/// A body's messages: the first [`MAX_MESSAGES`].
type Listing<'b> = Listed<'b, MAX_MESSAGES>;

impl<'de: 'b, 'b, const KEEP: usize> Deserialize<'de> for Listed<'b, KEEP> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'b, const KEEP: usize>(std::marker::PhantomData<&'b ()>);
        impl<'de: 'b, 'b, const KEEP: usize> Visitor<'de> for Visit<'b, KEEP> {
            type Value = Listed<'b, KEEP>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of events")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut kept = Vec::new();
                while kept.len() < KEEP {
                    match seq.next_element::<&'de RawValue>()? {
                        Some(item) => kept.push(item),
                        None => return Ok(Listed { kept, unread: 0 }),
                    }
                }
                let mut unread = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    unread += 1;
                }
                Ok(Listed { kept, unread })
            }
        }
        d.deserialize_seq(Visit(std::marker::PhantomData))
    }
}

/// Splits a body into messages without copying them (signatures cover exact bytes).
pub fn split(body: &[u8]) -> Result<Messages<'_>, BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| BodyError::NotJson(e.to_string()))?;
    split_text(text)
}

/// [`split`] for a body known to be text.
pub fn split_text(text: &str) -> Result<Messages<'_>, BodyError> {
    let trimmed = text.trim_start();
    match trimmed.as_bytes().first() {
        None => Err(BodyError::Empty),
        Some(b'[') => {
            let mut listed: Listing<'_> =
                serde_json::from_str(text).map_err(|e| BodyError::NotJson(e.to_string()))?;
            if listed.kept.is_empty() {
                return Err(BodyError::EmptyBatch);
            }
            for item in &mut listed.kept {
                *item = unwrapped(item);
            }
            Ok(Messages::of(listed))
        }
        Some(b'{') => {
            let value: &RawValue =
                serde_json::from_str(text).map_err(|e| BodyError::NotJson(e.to_string()))?;
            if let Ok(batch) = serde_json::from_str::<BatchBody>(value.get()) {
                if batch.batch.kept.is_empty() {
                    return Err(BodyError::EmptyBatch);
                }
                return Ok(Messages {
                    context: batch.context,
                    integrations: batch.integrations,
                    ..Messages::of(batch.batch)
                });
            }
            Ok(Messages::of(Listed {
                kept: vec![value],
                unread: 0,
            }))
        }
        Some(_) => match serde_json::from_str::<Value>(text) {
            Ok(_) => Err(BodyError::WrongShape),
            Err(e) => Err(BodyError::NotJson(e.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_is_one_message_signed_whole() {
        let body = br#"{"type":"track","event":"e"}"#;
        let m = split(body).unwrap();
        assert_eq!(
            m.texts().collect::<Vec<_>>(),
            vec![r#"{"type":"track","event":"e"}"#]
        );
        assert_eq!(signed_part(body).bytes, body);
    }

    #[test]
    fn array_signature_covers_the_first_element_exactly() {
        let body = br#"[{"type":"track", "event":"a"} , {"type":"track","event":"b"}]"#;
        let m = split(body).unwrap();
        assert_eq!(m.items.len(), 2);
        assert_eq!(signed_part(body).bytes, br#"{"type":"track", "event":"a"}"#);
    }

    #[test]
    fn batch_shape_keeps_items_exact_and_its_shared_context_apart() {
        let body = br#"{"batch":[{"type":"track","event":"a","context":{"ip":"1.1.1.1"}},{"type":"identify","userId":"u"}],
            "context":{"ip":"9.9.9.9","library":{"name":"http"}},"integrations":{"Amplitude":{"session_id":5}}}"#;
        let m = split(body).unwrap();
        assert_eq!(
            m.texts().collect::<Vec<_>>(),
            vec![
                r#"{"type":"track","event":"a","context":{"ip":"1.1.1.1"}}"#,
                r#"{"type":"identify","userId":"u"}"#
            ]
        );
        assert_eq!(
            m.context.map(RawValue::get),
            Some(r#"{"ip":"9.9.9.9","library":{"name":"http"}}"#)
        );
        assert_eq!(
            m.integrations.map(RawValue::get),
            Some(r#"{"Amplitude":{"session_id":5}}"#)
        );
    }

    #[test]
    fn the_signed_part_is_found_without_splitting_the_body() {
        let body = br#" [{"type":"track", "event":"a"} , {"type":"track"}, 3]"#;
        assert_eq!(
            signed_part(body),
            SignedPart {
                bytes: br#"{"type":"track", "event":"a"}"#,
                covers_body: false,
                events: 3
            }
        );
        for whole in [
            &b"{\"type\":\"track\"}"[..],
            b"[]",
            b"[{\"a\":1},",
            b"nope",
            b"",
        ] {
            assert_eq!(
                signed_part(whole),
                SignedPart {
                    bytes: whole,
                    covers_body: true,
                    events: 1
                },
                "{}",
                String::from_utf8_lossy(whole)
            );
        }
    }

    /// Issue "first deploy" §10: the Extensible Webhook's `[{"json": event}, ...]` batches are
    /// read as their events, and the signature covers the first wrapped event; an item with
    /// other keys beside `json`, or a `json` that is not an object, stays as it is.
    #[test]
    fn extensible_webhook_items_are_read_as_the_events_they_wrap() {
        let body = br#"[{"json": {"type":"track","event":"a"}}, {"json":{"type":"identify"}}, {"json": {"x": 1}, "other": 2}, {"json": 5}]"#;
        let m = split(body).unwrap();
        assert_eq!(
            m.texts().collect::<Vec<_>>(),
            vec![
                r#"{"type":"track","event":"a"}"#,
                r#"{"type":"identify"}"#,
                r#"{"json": {"x": 1}, "other": 2}"#,
                r#"{"json": 5}"#
            ]
        );
        let signed = signed_part(body);
        assert_eq!(
            (signed.bytes, signed.events, signed.covers_body),
            (&br#"{"type":"track","event":"a"}"#[..], 4, false)
        );
    }

    /// A key named twice in the body's own objects keeps its last value, as in messages:
    /// the last `batch`, the last shared `context` (here `null`: none), the last `json` of an
    /// Extensible Webhook item; a key written with an escape is the same key.
    #[test]
    fn a_repeated_body_key_keeps_its_last_value() {
        let body = br#"{"batch":[{"type":"track","event":"first"}],"context":{"ip":"192.0.2.1"},
            "\u0062atch":[{"type":"track","event":"a"},{"type":"track","event":"b"}],"context":null}"#;
        let m = split(body).unwrap();
        assert_eq!(
            m.texts().collect::<Vec<_>>(),
            [
                r#"{"type":"track","event":"a"}"#,
                r#"{"type":"track","event":"b"}"#
            ]
        );
        assert!(m.context.is_none());
        let body = br#"[{"json":{"type":"track","event":"first"},"json":{"type":"track","event":"last"}}]"#;
        let m = split(body).unwrap();
        assert_eq!(
            m.texts().collect::<Vec<_>>(),
            [r#"{"type":"track","event":"last"}"#]
        );
        assert_eq!(
            signed_part(body).bytes,
            br#"{"type":"track","event":"last"}"#
        );
    }

    /// A body of more items than `MAX_MESSAGES` (`[1,1,…]` takes two bytes an item) keeps the
    /// first `MAX_MESSAGES` and counts the rest, in both list shapes; the rest must still be
    /// JSON.
    #[test]
    fn items_past_the_limit_are_counted_not_kept() {
        let ones = |n: usize| format!("[{}]", vec!["1"; n].join(","));
        let items = ones(MAX_MESSAGES + 3);
        for body in [items.clone(), format!(r#"{{"batch":{items}}}"#)] {
            let m = split(body.as_bytes()).unwrap();
            assert_eq!((m.items.len(), m.unread), (MAX_MESSAGES, 3));
            assert!(m.texts().all(|t| t == "1"));
        }
        assert_eq!(
            MAX_MESSAGES, 250_000,
            "UNREAD and the README name the limit"
        );
        let exactly = ones(MAX_MESSAGES);
        let m = split(exactly.as_bytes()).unwrap();
        assert_eq!((m.items.len(), m.unread), (MAX_MESSAGES, 0));
        let broken = format!("{},x]", &items[..items.len() - 1]);
        assert!(matches!(
            split(broken.as_bytes()),
            Err(BodyError::NotJson(_))
        ));
    }

    #[test]
    fn malformed_bodies_name_the_problem() {
        assert_eq!(split(b"  ").unwrap_err(), BodyError::Empty);
        assert_eq!(split(b"[]").unwrap_err(), BodyError::EmptyBatch);
        assert_eq!(
            split(br#"{"batch": []}"#).unwrap_err(),
            BodyError::EmptyBatch
        );
        assert_eq!(split(b"42").unwrap_err(), BodyError::WrongShape);
        assert!(matches!(split(b"{nope"), Err(BodyError::NotJson(_))));
    }
}
