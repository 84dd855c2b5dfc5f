//! Planning: each message of a request, on its own, becomes the Amplitude items to send or a
//! verdict (skipped, rejected by the mapping, unsupported by this route).
//!
//! One bad message never sinks its batch: each message is mapped and encoded inside
//! `catch_unwind` (the release profile unwinds), so a bug that panics on one message rejects
//! that message, with a reason and an ERROR line naming its messageId, and the others go on.

use std::panic::{AssertUnwindSafe, catch_unwind};

use amplitude_client::Item;
use amplitude_client::encode;
use mapping::engage::Engage;
use mapping::{Message, Rejection, Settings};

use super::outcome::{MessageOutcome, RejectedBy};
use crate::ingest::Route;

/// What one message becomes before delivery.
#[derive(Debug)]
pub enum Decision {
    /// Items to deliver, in wire form (numbered as message 0 until the request numbers them).
    Send(Vec<Item>),
    /// Nothing to send; never retried.
    Skip(Option<String>),
    /// The mapping refused it (the reason names the field).
    Reject(String),
    /// Not handled by this route or these settings.
    Unsupported(String),
}

impl Decision {
    /// The message's outcome when planning settles it, or else its items, numbered as the
    /// `message`-th message of the delivery.
    pub fn settle(self, message: usize) -> Result<MessageOutcome, Vec<Item>> {
        match self {
            Decision::Send(mut items) => {
                items.iter_mut().for_each(|item| item.message = message);
                Err(items)
            }
            Decision::Skip(reason) => Ok(MessageOutcome::Skipped { reason }),
            Decision::Reject(reason) => Ok(MessageOutcome::Rejected {
                by: RejectedBy::Mapping,
                reason,
                endpoint: None,
            }),
            Decision::Unsupported(reason) => Ok(MessageOutcome::Unsupported { reason }),
        }
    }
}

/// One message, decided.
#[derive(Debug)]
pub struct Planned {
    pub message_id: Option<String>,
    /// `userId` (the deletions audit names it).
    pub user_id: Option<String>,
    pub decision: Decision,
}

/// A request's messages, planned: for each, its ids and its outcome when planning settled it
/// (`None`: its items go to Amplitude); and every item to deliver, numbered by its message's
/// place in the request.
#[derive(Debug, Default)]
pub struct RequestPlan {
    pub messages: Vec<PlannedMessage>,
    pub items: Vec<Item>,
}

/// One message of a [`RequestPlan`].
#[derive(Debug)]
pub struct PlannedMessage {
    pub message_id: Option<String>,
    pub user_id: Option<String>,
    pub settled: Option<MessageOutcome>,
}

/// Plans every message of a request (`texts`, one JSON event each) for `route`.
pub fn plan_request<'t>(
    route: Route,
    settings: &Settings,
    texts: impl IntoIterator<Item = &'t str>,
) -> RequestPlan {
    let mut plan = RequestPlan::default();
    for (index, text) in texts.into_iter().enumerate() {
        let planned = decide(route, settings, text);
        let settled = match planned.decision.settle(index) {
            Ok(outcome) => Some(outcome),
            Err(items) => {
                plan.items.extend(items);
                None
            }
        };
        plan.messages.push(PlannedMessage {
            message_id: planned.message_id,
            user_id: planned.user_id,
            settled,
        });
    }
    plan
}

/// Decides one message (`text`, one JSON event) for `route`. The ids are read before the
/// mapping runs, so even a message the mapping fails on is reported by its messageId.
pub fn decide(route: Route, settings: &Settings, text: &str) -> Planned {
    let Ok(value) = serde_json::from_str::<serde_json_borrow::Value>(text) else {
        return Planned {
            message_id: None,
            user_id: None,
            decision: Decision::Reject("the event is not valid JSON".into()),
        };
    };
    let id = |key| mapping::id(value.get(key)).map(|c| c.into_owned());
    Planned {
        message_id: id("messageId"),
        user_id: id("userId"),
        decision: guarded(|| decide_value(route, settings, &value)),
    }
}

fn decide_value(
    route: Route,
    settings: &Settings,
    value: &serde_json_borrow::Value<'_>,
) -> Decision {
    let planned = Message::parse(value).and_then(|msg| {
        if !route.accepts(msg.call) {
            return Err(Rejection::Unsupported(format!(
                "`type`: {:?} calls are not handled by the {} route",
                msg.call,
                route.path()
            )));
        }
        route.planner()(value, settings)
    });
    match planned {
        Ok(Engage::Skip(reason)) => Decision::Skip(Some(reason.to_owned())),
        Ok(Engage::Plan(plan)) if plan.requests.is_empty() => Decision::Skip(None),
        Ok(Engage::Plan(plan)) => Decision::Send(encode::items(0, &plan)),
        Err(Rejection::Invalid(reason)) => Decision::Reject(reason),
        Err(Rejection::Unsupported(reason) | Rejection::Configuration(reason)) => {
            Decision::Unsupported(reason)
        }
    }
}

/// Runs `decide`, turning a panic into a rejection of this message only.
pub fn guarded(decide: impl FnOnce() -> Decision) -> Decision {
    match catch_unwind(AssertUnwindSafe(decide)) {
        Ok(decision) => decision,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            Decision::Reject(format!(
                "the destination failed on this event (a bug; the event was not sent): {what}"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_deciding_one_message_rejects_only_that_message() {
        // Silence the default hook's backtrace for this deliberate panic.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let decisions: Vec<Decision> = (0..3)
            .map(|i| {
                guarded(|| {
                    if i == 1 {
                        panic!("slice index inside a character");
                    }
                    Decision::Skip(None)
                })
            })
            .collect();
        std::panic::set_hook(hook);
        assert!(matches!(decisions[0], Decision::Skip(None)));
        assert!(
            matches!(&decisions[1], Decision::Reject(r) if r == "the destination failed on this event (a bug; the event was not sent): slice index inside a character")
        );
        assert!(matches!(decisions[2], Decision::Skip(None)));
    }

    #[test]
    fn each_message_is_decided_by_the_route() {
        let s = Settings::default();
        let track = r#"{"type":"track","event":"e","userId":"user-1","messageId":"m"}"#;
        let planned = decide(Route::Events, &s, track);
        assert_eq!(
            (planned.message_id.as_deref(), planned.user_id.as_deref()),
            (Some("m"), Some("user-1"))
        );
        match planned.decision {
            Decision::Send(items) => {
                assert_eq!(items.len(), 1);
                assert!(items[0].wire.contains(r#""insert_id":"m""#));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide(Route::Alias, &s, track).decision,
            Decision::Unsupported(r) if r == "`type`: Track calls are not handled by the /alias route"
        ));
        assert!(matches!(
            decide(Route::Events, &s, "{oops").decision,
            Decision::Reject(r) if r == "the event is not valid JSON"
        ));
        assert!(matches!(
            decide(Route::Events, &s, r#"{"type":"page","userId":"u"}"#).decision,
            Decision::Skip(None)
        ));
    }
}
