//! A lenient view of one Segment message (spec §0.2, segment-delivery §2).

use std::borrow::Cow;

use serde_json_borrow::Value;

use crate::json;
use crate::plan::Rejection;

/// The Segment call types the destination knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Track,
    Page,
    Screen,
    Identify,
    Group,
    Alias,
    Delete,
}

/// One parsed Segment message with the parts every rule reads looked up once.
#[derive(Debug)]
pub struct Message<'a> {
    pub raw: &'a Value<'a>,
    pub call: Call,
    /// `context`, or `Null` when it is missing or not an object (`null`, `[]`).
    pub context: &'a Value<'a>,
    /// The Amplitude options `integrations.Amplitude` (§0.2), or `Null`.
    pub options: &'a Value<'a>,
    /// `integrations.Amplitude === false`: the sender turned this destination off (§2.6).
    pub disabled: bool,
    pub user_id: Option<Cow<'a, str>>,
    pub anonymous_id: Option<Cow<'a, str>>,
}

impl<'a> Message<'a> {
    pub fn parse(raw: &'a Value<'a>) -> Result<Self, Rejection> {
        if !raw.is_object() {
            return Err(Rejection::Invalid(
                "the message must be a JSON object".into(),
            ));
        }
        let call = match json::get(raw, "type") {
            Value::Str(t) => match t.to_ascii_lowercase().as_str() {
                "track" => Call::Track,
                "page" => Call::Page,
                "screen" => Call::Screen,
                "identify" => Call::Identify,
                "group" => Call::Group,
                "alias" => Call::Alias,
                "delete" => Call::Delete,
                other => {
                    return Err(Rejection::Unsupported(format!(
                        "`type`: the call type {other:?} is not sent to Amplitude"
                    )));
                }
            },
            Value::Null => return Err(Rejection::Invalid("`type` is required".into())),
            _ => return Err(Rejection::Invalid("`type` must be a string".into())),
        };
        let context = object_or_null(json::get(raw, "context"));
        let integrations = json::get(raw, "integrations");
        let amplitude = match json::get(integrations, "Amplitude") {
            Value::Null => json::get_loose(integrations, "amplitude"),
            v => v,
        };
        Ok(Message {
            raw,
            call,
            context,
            options: object_or_null(amplitude),
            disabled: matches!(amplitude, Value::Bool(false)),
            user_id: json::id(json::get(raw, "userId")),
            anonymous_id: json::id(json::get(raw, "anonymousId")),
        })
    }

    /// A top-level field.
    pub fn field(&self, key: &str) -> &'a Value<'a> {
        json::get(self.raw, key)
    }

    /// `context.<outer>.<inner>`.
    pub fn ctx(&self, outer: &str, inner: &str) -> &'a Value<'a> {
        json::get(json::get(self.context, outer), inner)
    }

    /// An Amplitude option, matched loosely (`sessionId` = `session_id`).
    pub fn option(&self, key: &str) -> &'a Value<'a> {
        json::get_loose(self.options, key)
    }

    /// `messageId` as text.
    pub fn message_id(&self) -> Option<Cow<'a, str>> {
        json::id(self.field("messageId"))
    }

    /// `properties` for track/page/screen, `traits` for identify/group, as an object or `Null`.
    pub fn properties(&self) -> &'a Value<'a> {
        object_or_null(self.field("properties"))
    }

    pub fn traits(&self) -> &'a Value<'a> {
        object_or_null(self.field("traits"))
    }
}

fn object_or_null<'a>(v: &'a Value<'a>) -> &'a Value<'a> {
    static NULL: Value<'static> = Value::Null;
    if v.is_object() { v } else { &NULL }
}
