//! Planning: each message of a request, on its own, becomes the Amplitude requests to send or a
//! verdict (skipped, rejected by the mapping, unsupported by this route).
//!
//! One bad message never sinks its batch: each message is mapped, and its items encoded,
//! inside `catch_unwind` (the release profile unwinds), so a bug that panics on one message
//! rejects that message, with a reason, and the others go on.

use std::panic::{AssertUnwindSafe, catch_unwind};

use amplitude_client::Item;
use amplitude_client::encode;
use mapping::engage::Engage;
use mapping::{Batch, Message, Plan, Rejection, Settings};
use serde_json_borrow::Value;

use super::outcome::{MessageOutcome, RejectedBy, json_reason};
use crate::ingest::Route;
use crate::ingest::body::Messages;

/// A batch body's shared `context` and `integrations`, parsed once for all its messages.
pub struct Shared<'b> {
    context: Value<'b>,
    integrations: Value<'b>,
}

/// What the shared parts read by [`Shared::of`] borrow besides the body ([`mapping::parse`]).
pub type SharedScratch = [mapping::Scratch; 2];

impl<'b> Shared<'b> {
    /// Reads what `messages` share; an unreadable part shares nothing (the mapping is lenient).
    pub fn of(messages: &Messages<'b>, scratch: &'b mut SharedScratch) -> Self {
        let parse = |raw: Option<&'b serde_json::value::RawValue>, scratch| {
            raw.and_then(|r| mapping::parse(r.get(), scratch).ok())
                .unwrap_or(Value::Null)
        };
        let [context, integrations] = scratch;
        Shared {
            context: parse(messages.context, context),
            integrations: parse(messages.integrations, integrations),
        }
    }

    pub fn batch(&self) -> Batch<'_> {
        Batch {
            context: &self.context,
            integrations: &self.integrations,
        }
    }
}

/// One message, planned.
pub struct Planned<'v> {
    pub message_id: Option<String>,
    /// `userId` (the deletions audit names it).
    pub user_id: Option<String>,
    /// The requests to send (at least one), or the message's final outcome.
    pub plan: Result<Plan<'v>, MessageOutcome>,
}

/// A message's text, parsed as Segment reads it ([`mapping::parse`]: a repeated key keeps its
/// last value, a lone surrogate escape is U+FFFD; `scratch` holds what the tree borrows
/// besides the text); a text that cannot be read is rejected, saying why ([`unreadable`]).
pub fn parse<'t>(
    text: &'t str,
    scratch: &'t mut mapping::Scratch,
) -> Result<Value<'t>, MessageOutcome> {
    mapping::parse(text, scratch).map_err(|e| rejected(unreadable(&e)))
}

/// Why a message could not be read: serde_json's reason (a fixed phrase, never the sender's
/// bytes) without its line and column, so that every message refused for the same reason has
/// the same one, and a reply's counts by reason group them. Besides text that is not JSON,
/// this names JSON that cannot be held: a number beyond a double (`1e400`: "number out of
/// range") and nesting deeper than serde_json's 128 levels ("recursion limit exceeded"),
/// the limit that keeps a hostile body from exhausting the stack.
fn unreadable(e: &serde_json::Error) -> String {
    format!("the event could not be read as JSON ({})", json_reason(e))
}

/// Plans one parsed message for `route`. The ids are read before the mapping runs, so even a
/// message the mapping fails on is reported by its messageId.
pub fn plan<'v>(
    route: Route,
    settings: &Settings,
    value: &'v Value<'v>,
    batch: Batch<'v>,
) -> Planned<'v> {
    let id = |key| mapping::id(value.get(key)).map(|c| c.into_owned());
    Planned {
        message_id: id("messageId"),
        user_id: id("userId"),
        plan: guarded(|| plan_value(route, settings, value, batch)),
    }
}

fn plan_value<'v>(
    route: Route,
    settings: &Settings,
    value: &'v Value<'v>,
    batch: Batch<'v>,
) -> Result<Plan<'v>, MessageOutcome> {
    let planned = Message::parse_in(value, batch).and_then(|msg| {
        if !route.accepts(msg.call) {
            return Err(Rejection::Unsupported(format!(
                "`type`: {:?} calls are not handled by the {} route",
                msg.call,
                route.path()
            )));
        }
        route.planner()(value, batch, settings)
    });
    match planned {
        Ok(Engage::Skip(reason)) => Err(MessageOutcome::Skipped {
            reason: Some(reason.to_owned()),
        }),
        Ok(Engage::Plan(plan)) if plan.requests.is_empty() => Err(MessageOutcome::Skipped {
            reason: plan.skipped,
        }),
        Ok(Engage::Plan(plan)) => Ok(plan),
        Err(Rejection::Invalid(reason)) => Err(rejected(reason)),
        Err(Rejection::Unsupported(reason) | Rejection::Configuration(reason)) => {
            Err(MessageOutcome::Unsupported { reason })
        }
    }
}

fn rejected(reason: String) -> MessageOutcome {
    MessageOutcome::Rejected {
        by: RejectedBy::Mapping,
        reason,
        endpoint: None,
    }
}

/// Runs `work` on one message, turning a panic into a rejection of this message only.
pub fn guarded<T>(work: impl FnOnce() -> Result<T, MessageOutcome>) -> Result<T, MessageOutcome> {
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        Err(rejected(format!(
            "the destination failed on this event (a bug; the event was not sent): {what}"
        )))
    })
}

/// One message's text decided at once: its ids, and its items (numbered as message 0) or its
/// outcome. For tools and tests that plan single lines; the functions plan in chunks
/// (`stream`).
pub fn decide(route: Route, settings: &Settings, text: &str) -> Decided {
    let mut scratch = mapping::Scratch::default();
    let value = match parse(text, &mut scratch) {
        Ok(value) => value,
        Err(outcome) => {
            return Decided {
                message_id: None,
                user_id: None,
                items: Err(outcome),
            };
        }
    };
    let planned = plan(route, settings, &value, Batch::NONE);
    let items = planned
        .plan
        .and_then(|plan| guarded(|| Ok(encode::items(0, &plan))));
    Decided {
        message_id: planned.message_id,
        user_id: planned.user_id,
        items,
    }
}

/// A message decided at once ([`decide`]).
#[derive(Debug)]
pub struct Decided {
    pub message_id: Option<String>,
    pub user_id: Option<String>,
    pub items: Result<Vec<Item>, MessageOutcome>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_message_is_rejected_saying_why_without_where() {
        let reason = |text: &str| parse(text, &mut mapping::Scratch::default()).unwrap_err();
        let deep = format!(
            r#"{{"type":"track","properties":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(
            reason(&deep),
            rejected("the event could not be read as JSON (recursion limit exceeded)".into())
        );
        assert_eq!(
            reason(r#"{"type":"track","properties":{"n":1e400}}"#),
            rejected("the event could not be read as JSON (number out of range)".into())
        );
        // The same reason wherever the fault is, so a reply's counts group such messages.
        assert_eq!(
            reason(r#"{"type":"track""#),
            reason(r#"{"type":"track","event":"E""#)
        );
        assert_eq!(
            reason(r#"{"type":"track""#),
            rejected("the event could not be read as JSON (EOF while parsing an object)".into())
        );
    }

    #[test]
    fn a_panic_while_planning_one_message_rejects_only_that_message() {
        // Silence the default hook's backtrace for this deliberate panic.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let outcomes: Vec<Result<(), MessageOutcome>> = (0..3)
            .map(|i| {
                guarded(|| {
                    if i == 1 {
                        panic!("slice index inside a character");
                    }
                    Ok(())
                })
            })
            .collect();
        std::panic::set_hook(hook);
        assert_eq!(outcomes[0], Ok(()));
        assert_eq!(
            outcomes[1],
            Err(rejected(
                "the destination failed on this event (a bug; the event was not sent): slice index inside a character".into()
            ))
        );
        assert_eq!(outcomes[2], Ok(()));
    }

    #[test]
    fn each_message_is_decided_by_the_route() {
        let s = Settings::default();
        let track = r#"{"type":"track","event":"e","userId":"user-1","messageId":"m"}"#;
        let decided = decide(Route::Events, &s, track);
        assert_eq!(
            (decided.message_id.as_deref(), decided.user_id.as_deref()),
            (Some("m"), Some("user-1"))
        );
        let items = decided.items.unwrap();
        assert_eq!(items.len(), 1);
        assert!(items[0].wire.contains(r#""insert_id":"m""#));
        assert_eq!(
            decide(Route::Alias, &s, track).items.unwrap_err(),
            MessageOutcome::Unsupported {
                reason: "`type`: Track calls are not handled by the /alias route".into()
            }
        );
        assert_eq!(
            decide(Route::Events, &s, "{oops").items.unwrap_err(),
            rejected("the event could not be read as JSON (key must be a string)".into())
        );
        assert_eq!(
            decide(Route::Events, &s, r#"{"type":"page","userId":"u"}"#)
                .items
                .unwrap_err(),
            MessageOutcome::Skipped {
                reason: Some(
                    "page: no page setting sends it: `trackAllPages` is off, \
                     `trackCategorizedPages` is off, `trackNamedPages` is off"
                        .into()
                )
            }
        );
    }

    /// Mapping spec §0.3.4: property values are copied verbatim, numbers included. Decimals of
    /// 16-17 significant digits (what JavaScript prints for computed values, such as
    /// `0.1 + 0.2`) must be read to the nearest double, or the event reaches Amplitude one unit
    /// in the last place off: serde_json needs its `float_roundtrip` feature for that.
    #[test]
    fn s0_3_4_numbers_reach_amplitude_as_sent() {
        let settings = Settings::default();
        let sent = [
            "7673421687.513092",
            "4859115.385934569",
            "197282994996654.38",
            "2.0897437765157e-19",
            "0.30000000000000004",
            "1.7976931348623157e308",
            "5e-324",
        ];
        for number in sent {
            let text = format!(
                r#"{{"type":"track","event":"e","userId":"user-1","properties":{{"x":{number}}}}}"#
            );
            let mut scratch = mapping::Scratch::default();
            let value = parse(&text, &mut scratch).unwrap();
            let plan = plan(Route::Events, &settings, &value, Batch::NONE)
                .plan
                .unwrap();
            let wire = &encode::items(0, &plan)[0].wire;
            // The nearest double, as Rust's own parser reads it, written shortest.
            let nearest = serde_json::to_string(&number.parse::<f64>().unwrap()).unwrap();
            assert!(
                wire.contains(&format!(r#""event_properties":{{"x":{nearest}}}"#)),
                "{number}: {wire}"
            );
        }
    }

    /// A key named twice keeps its last value (`mapping::parse`), in a message and in the
    /// context a batch body shares: what reaches Amplitude, byte for byte.
    #[test]
    fn a_repeated_key_keeps_its_last_value_in_messages_and_shared_parts() {
        let body = br#"{"batch": [{"type":"track","event":"e","userId":"user-first",
            "userId":"user-last","messageId":"m1","properties":{"a":1,"a":2}}],
            "context": {"ip": "192.0.2.1", "ip": "192.0.2.2"}}"#;
        let messages = crate::ingest::body::split(body).unwrap();
        let mut shared_scratch = SharedScratch::default();
        let shared = Shared::of(&messages, &mut shared_scratch);
        let text = messages.texts().next().unwrap();
        let mut scratch = mapping::Scratch::default();
        let value = parse(text, &mut scratch).unwrap();
        let plan = plan(Route::Events, &Settings::default(), &value, shared.batch());
        assert_eq!(plan.user_id.as_deref(), Some("user-last"));
        assert_eq!(
            encode::items(0, &plan.plan.unwrap())[0].wire,
            r#"{"user_id":"user-last","library":"segment","ip":"192.0.2.2","event_type":"e","insert_id":"m1","event_properties":{"a":2},"user_properties":{"id":"user-last"}}"#
        );
    }

    #[test]
    fn a_batch_bodys_shared_context_is_read_under_each_messages_own() {
        let body = br#"{"batch": [
            {"type":"track","event":"a","userId":"user-1","messageId":"m1","context":{"ip":"1.1.1.1"}},
            {"type":"track","event":"b","userId":"user-1","messageId":"m2"}],
            "context": {"ip": "9.9.9.9", "library": {"name": "http"}},
            "integrations": {"Amplitude": {"session_id": 5}}}"#;
        let messages = crate::ingest::body::split(body).unwrap();
        let mut shared_scratch = SharedScratch::default();
        let shared = Shared::of(&messages, &mut shared_scratch);
        let settings = Settings::default();
        let wires: Vec<serde_json::Value> = messages
            .texts()
            .map(|text| {
                let mut scratch = mapping::Scratch::default();
                let value = parse(text, &mut scratch).unwrap();
                let plan = plan(Route::Events, &settings, &value, shared.batch())
                    .plan
                    .unwrap();
                serde_json::from_str(&encode::items(0, &plan)[0].wire).unwrap()
            })
            .collect();
        assert_eq!(
            (&wires[0]["ip"], &wires[0]["session_id"]),
            (&serde_json::json!("1.1.1.1"), &serde_json::json!(5))
        );
        assert_eq!(
            (&wires[1]["ip"], &wires[1]["session_id"]),
            (&serde_json::json!("9.9.9.9"), &serde_json::json!(5))
        );
    }
}
