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
    /// What Segment's `X-Signature` covers.
    pub signed: Signed,
}

/// The part of a body Segment's `X-Signature` covers.
#[derive(Debug, Clone, PartialEq)]
pub enum Signed {
    /// The whole body (one event, or the `{"batch": [...]}` shape).
    WholeBody,
    /// An array body: only its first element's text, exactly as sent.
    FirstElement(String),
}

impl Messages {
    /// The signed bytes of `body` (the body these messages were split from).
    pub fn signed_bytes<'b>(&'b self, body: &'b [u8]) -> &'b [u8] {
        match &self.signed {
            Signed::WholeBody => body,
            Signed::FirstElement(first) => first.as_bytes(),
        }
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

/// Splits a body into messages without re-serialising them (signatures cover exact bytes).
pub fn split(body: &[u8]) -> Result<Messages, BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| BodyError::NotJson(e.to_string()))?;
    let trimmed = text.trim_start();
    match trimmed.as_bytes().first() {
        None => Err(BodyError::Empty),
        Some(b'[') => {
            let items: Vec<&RawValue> =
                serde_json::from_str(text).map_err(|e| BodyError::NotJson(e.to_string()))?;
            let first = items.first().ok_or(BodyError::EmptyBatch)?;
            Ok(Messages {
                signed: Signed::FirstElement(first.get().to_owned()),
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
                return Ok(Messages {
                    items,
                    signed: Signed::WholeBody,
                });
            }
            Ok(Messages {
                items: vec![value.get().to_owned()],
                signed: Signed::WholeBody,
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
        assert_eq!(m.signed_bytes(body), body);
    }

    #[test]
    fn array_signature_covers_the_first_element_exactly() {
        let body = br#"[{"type":"track", "event":"a"} , {"type":"track","event":"b"}]"#;
        let m = split(body).unwrap();
        assert_eq!(m.items.len(), 2);
        assert_eq!(m.signed_bytes(body), br#"{"type":"track", "event":"a"}"#);
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
    fn malformed_bodies_name_the_problem() {
        assert_eq!(split(b"  "), Err(BodyError::Empty));
        assert_eq!(split(b"[]"), Err(BodyError::EmptyBatch));
        assert_eq!(split(br#"{"batch": []}"#), Err(BodyError::EmptyBatch));
        assert_eq!(split(b"42"), Err(BodyError::WrongShape));
        assert!(matches!(split(b"{nope"), Err(BodyError::NotJson(_))));
    }
}
