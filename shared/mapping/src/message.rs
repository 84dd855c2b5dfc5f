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

/// What a batch body (`{"batch": [...], "context", "integrations"}`, segment-delivery §0)
/// shares with each of its messages: a message's own `context` and `integrations` keys win over
/// these, key by key. Read where a key is looked up, never copied into each message (a large
/// shared context would otherwise be copied once per message).
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub context: &'a Value<'a>,
    pub integrations: &'a Value<'a>,
}

impl Batch<'static> {
    /// A message on its own.
    pub const NONE: Batch<'static> = Batch {
        context: &Value::Null,
        integrations: &Value::Null,
    };
}

/// An object of a message, over the batch's object of the same name: a key of the message's
/// own wins.
#[derive(Debug, Clone, Copy)]
pub struct Layered<'a> {
    own: &'a Value<'a>,
    shared: &'a Value<'a>,
}

impl<'a> Layered<'a> {
    /// The value under `key`: the message's own if it has the key, else the batch's.
    pub fn get(&self, key: &str) -> &'a Value<'a> {
        match self.own {
            Value::Object(o) => o.get(key),
            _ => None,
        }
        .unwrap_or_else(|| json::get(self.shared, key))
    }

    /// As [`Layered::get`], matching keys loosely (§0.2).
    fn get_loose(&self, key: &str) -> &'a Value<'a> {
        match json::get_loose(self.own, key) {
            Value::Null => json::get_loose(self.shared, key),
            v => v,
        }
    }
}

/// One parsed Segment message with the parts every rule reads looked up once.
#[derive(Debug)]
pub struct Message<'a> {
    pub raw: &'a Value<'a>,
    pub call: Call,
    /// `context` (where a message's context is missing or not an object, `null` or `[]`, only
    /// the batch's counts).
    context: Layered<'a>,
    integrations: Layered<'a>,
    /// The Amplitude options `integrations.Amplitude` (§0.2), or `Null`.
    pub options: &'a Value<'a>,
    /// `integrations.Amplitude === false`: the sender turned this destination off (§2.6).
    pub disabled: bool,
    pub user_id: Option<Cow<'a, str>>,
    pub anonymous_id: Option<Cow<'a, str>>,
}

impl<'a> Message<'a> {
    /// A message on its own.
    pub fn parse(raw: &'a Value<'a>) -> Result<Self, Rejection> {
        Self::parse_in(raw, Batch::NONE)
    }

    /// A message of a batch body.
    pub fn parse_in(raw: &'a Value<'a>, batch: Batch<'a>) -> Result<Self, Rejection> {
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
        let context = Layered {
            own: object_or_null(json::get(raw, "context")),
            shared: object_or_null(batch.context),
        };
        let integrations = Layered {
            own: json::get(raw, "integrations"),
            shared: batch.integrations,
        };
        let amplitude = match integrations.get("Amplitude") {
            Value::Null => integrations.get_loose("amplitude"),
            v => v,
        };
        Ok(Message {
            raw,
            call,
            context,
            integrations,
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

    /// `context.<key>`.
    pub fn context(&self, key: &str) -> &'a Value<'a> {
        self.context.get(key)
    }

    /// `context.<outer>.<inner>`.
    pub fn ctx(&self, outer: &str, inner: &str) -> &'a Value<'a> {
        json::get(self.context.get(outer), inner)
    }

    /// `integrations.<name>`.
    pub fn integration(&self, name: &str) -> &'a Value<'a> {
        self.integrations.get(name)
    }

    /// An Amplitude option, matched loosely (`sessionId` = `session_id`).
    pub fn option(&self, key: &str) -> &'a Value<'a> {
        json::get_loose(self.options, key)
    }

    /// An Amplitude option from `integrations.Amplitude`, else from `integrations["Actions
    /// Amplitude"]` (where Segment's Actions plugins write), matched loosely (§17).
    pub fn any_option(&self, key: &str) -> &'a Value<'a> {
        match self.option(key) {
            Value::Null => json::get_loose(self.integration("Actions Amplitude"), key),
            v => v,
        }
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
