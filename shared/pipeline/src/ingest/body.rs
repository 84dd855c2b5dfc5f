//! The Segment body shapes (segment-delivery §0–§1): one event, a JSON array of events
//! (Webhooks (Actions) batching), or `{"batch": [...], "context", "integrations"}` (HTTP
//! Tracking API shape, whose top-level `context`/`integrations` are merged into each item).

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// The messages of one request, each as its own JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct Messages {
    pub items: Vec<String>,
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
}

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
    #[serde(default)]
    context: Option<Value>,
    #[serde(default)]
    integrations: Option<Value>,
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
    match serde_json::from_slice::<FirstOfArray>(body) {
        Ok(FirstOfArray {
            first: Some(first),
            events,
        }) => SignedPart {
            bytes: first.get().as_bytes(),
            covers_body: false,
            events,
        },
        _ => whole,
    }
}

/// An array's first element, borrowed, and its length.
struct FirstOfArray<'b> {
    first: Option<&'b RawValue>,
    events: usize,
}

impl<'de: 'b, 'b> Deserialize<'de> for FirstOfArray<'b> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'b>(std::marker::PhantomData<&'b ()>);
        impl<'de: 'b, 'b> serde::de::Visitor<'de> for Visit<'b> {
            type Value = FirstOfArray<'b>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of events")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let first: Option<&'de RawValue> = seq.next_element()?;
                let mut events = usize::from(first.is_some());
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    events += 1;
                }
                Ok(FirstOfArray { first, events })
            }
        }
        d.deserialize_seq(Visit(std::marker::PhantomData))
    }
}

/// Splits a body into messages without re-serialising them (signatures cover exact bytes).
pub fn split(body: &[u8]) -> Result<Messages, BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| BodyError::NotJson(e.to_string()))?;
    let trimmed = text.trim_start();
    match trimmed.as_bytes().first() {
        None => Err(BodyError::Empty),
        Some(b'[') => {
            let items: Vec<&RawValue> =
                serde_json::from_str(text).map_err(|e| BodyError::NotJson(e.to_string()))?;
            if items.is_empty() {
                return Err(BodyError::EmptyBatch);
            }
            Ok(Messages {
                items: items.iter().map(|r| r.get().to_owned()).collect(),
            })
        }
        Some(b'{') => {
            let value: &RawValue =
                serde_json::from_str(text).map_err(|e| BodyError::NotJson(e.to_string()))?;
            if let Ok(batch) = serde_json::from_str::<BatchBody>(value.get()) {
                if batch.batch.is_empty() {
                    return Err(BodyError::EmptyBatch);
                }
                let items = batch
                    .batch
                    .iter()
                    .map(|item| merge(item, batch.context.as_ref(), batch.integrations.as_ref()))
                    .collect();
                return Ok(Messages { items });
            }
            Ok(Messages {
                items: vec![value.get().to_owned()],
            })
        }
        Some(_) => match serde_json::from_str::<Value>(text) {
            Ok(_) => Err(BodyError::WrongShape),
            Err(e) => Err(BodyError::NotJson(e.to_string())),
        },
    }
}

/// A batch item with the batch's `context` and `integrations` merged in; the item's own keys
/// win. Items that need no merge keep their exact text.
fn merge(item: &RawValue, context: Option<&Value>, integrations: Option<&Value>) -> String {
    let shared = [("context", context), ("integrations", integrations)];
    if shared.iter().all(|(_, v)| !v.is_some_and(Value::is_object)) {
        return item.get().to_owned();
    }
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(item.get()) else {
        return item.get().to_owned();
    };
    for (key, top) in shared {
        let Some(Value::Object(top)) = top else {
            continue;
        };
        let mut merged = top.clone();
        if let Some(Value::Object(own)) = obj.get(key) {
            merged.extend(own.clone());
        }
        obj.insert(key.to_owned(), Value::Object(merged));
    }
    Value::Object(obj).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_is_one_message_signed_whole() {
        let body = br#"{"type":"track","event":"e"}"#;
        let m = split(body).unwrap();
        assert_eq!(m.items, vec![r#"{"type":"track","event":"e"}"#]);
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
    fn batch_shape_merges_context_and_integrations_item_keys_win() {
        let body = br#"{"batch":[{"type":"track","event":"a","context":{"ip":"1.1.1.1"}},{"type":"identify","userId":"u"}],
            "context":{"ip":"9.9.9.9","library":{"name":"http"}},"integrations":{"Amplitude":{"session_id":5}}}"#;
        let m = split(body).unwrap();
        let first: Value = serde_json::from_str(&m.items[0]).unwrap();
        assert_eq!(
            first["context"],
            serde_json::json!({"ip": "1.1.1.1", "library": {"name": "http"}})
        );
        assert_eq!(first["integrations"]["Amplitude"]["session_id"], 5);
        let second: Value = serde_json::from_str(&m.items[1]).unwrap();
        assert_eq!(second["context"]["ip"], "9.9.9.9");
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

    #[test]
    fn malformed_bodies_name_the_problem() {
        assert_eq!(split(b"  "), Err(BodyError::Empty));
        assert_eq!(split(b"[]"), Err(BodyError::EmptyBatch));
        assert_eq!(split(br#"{"batch": []}"#), Err(BodyError::EmptyBatch));
        assert_eq!(split(b"42"), Err(BodyError::WrongShape));
        assert!(matches!(split(b"{nope"), Err(BodyError::NotJson(_))));
    }
}
