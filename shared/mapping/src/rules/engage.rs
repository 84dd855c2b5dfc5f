//! Engage audience and computed-trait syncs (segment-delivery §3, mapping spec §8.3) as the
//! `/engage` route receives them: identifies with `context.personas`, and the track forms
//! "Audience Entered" / "Audience Exited" / "Trait Computed" whose `properties.audience_key` /
//! `properties.trait_key` names the property holding the value.
//!
//! Decision: both forms become **Identify API identifications**, not `$identify` events.
//! Amplitude does not count identify calls as events (so an initial sync of a large audience
//! does not consume event volume or per-device event-rate budget), the same 1 MB request limit
//! applies, and the identifications of up to 1000 profiles share one request; the trait
//! operations and other identify settings then apply exactly as on `/events`.

use std::borrow::Cow;

use serde_json_borrow::Value;

use crate::json::{self, id};
use crate::message::{Batch, Call, Message};
use crate::plan::{Plan, Rejection};
use crate::props::{Prop, PropMap};
use crate::rules::{identify, user_properties};
use crate::settings::Settings;

/// What an Engage message becomes.
#[derive(Debug)]
pub enum Engage<'a> {
    Plan(Plan<'a>),
    /// Acknowledged and not sent, with the reason (never retried: it can never be sent).
    Skip(&'static str),
}

/// Why an email-only profile is not sent.
pub const NO_IDS: &str = "the profile has neither userId nor anonymousId (Amplitude needs one)";

/// Maps one message of the `/engage` route.
pub fn plan<'a>(message: &'a Value<'a>, settings: &Settings) -> Result<Engage<'a>, Rejection> {
    plan_in(message, Batch::NONE, settings)
}

/// [`plan`] for a message of a batch body.
pub fn plan_in<'a>(
    message: &'a Value<'a>,
    batch: Batch<'a>,
    settings: &Settings,
) -> Result<Engage<'a>, Rejection> {
    let msg = Message::parse_in(message, batch)?;
    if msg.user_id.is_none() && msg.anonymous_id.is_none() && !has_device_id(&msg) {
        return Ok(Engage::Skip(NO_IDS));
    }
    match msg.call {
        Call::Identify => identify::plan(&msg, settings).map(Engage::Plan),
        Call::Track => track_form(&msg, settings).map(Engage::Plan),
        other => Err(Rejection::Unsupported(format!(
            "`type`: {other:?} calls are not Engage syncs (identify or track forms only)"
        ))),
    }
}

fn has_device_id(msg: &Message<'_>) -> bool {
    id(msg.ctx("device", "id")).is_some()
}

/// A track form: the user property is the property named by `audience_key` (audiences, whose
/// value is a boolean, also when sent as "true"/"false") or `trait_key` (computed traits, any
/// JSON value). It is sent as an identify of that one property.
fn track_form<'a>(msg: &Message<'a>, settings: &Settings) -> Result<Plan<'a>, Rejection> {
    let properties = msg.properties();
    let (key_field, audience) = if json::is_present(json::get(properties, "audience_key")) {
        ("audience_key", true)
    } else if json::is_present(json::get(properties, "trait_key")) {
        ("trait_key", false)
    } else {
        return Err(Rejection::Unsupported(
            "engage: a track needs `properties.audience_key` (Audience Entered/Exited) or `properties.trait_key` (Trait Computed)"
                .into(),
        ));
    };
    let key = json::get(properties, key_field).as_str().ok_or_else(|| {
        Rejection::Invalid(format!("engage: `properties.{key_field}` must be a string"))
    })?;
    let value = json::get(properties, key);
    let value = match (audience, value) {
        (true, Value::Str(s)) if s == "true" => Prop::Owned(Value::Bool(true)),
        (true, Value::Str(s)) if s == "false" => Prop::Owned(Value::Bool(false)),
        (true, Value::Null) => {
            // "Audience Entered" without the flag still means membership.
            let entered = json::get(msg.raw, "event").as_str() != Some("Audience Exited");
            Prop::Owned(Value::Bool(entered))
        }
        (_, Value::Null) => {
            return Err(Rejection::Invalid(format!(
                "engage: `properties.{key}` (the value of `{key_field}`) is required"
            )));
        }
        (_, v) => Prop::Ref(v),
    };
    // The one synced property (beside the `id` every identify carries), through the identify
    // rules, so trait operations and the normal form apply as on `/events`.
    let mut traits = PropMap::new();
    traits.insert(Cow::Borrowed(key), value);
    let base = user_properties::base(&NULL, msg);
    for (k, v) in base.into_entries() {
        traits.insert_missing(k, v);
    }
    let props = user_properties::identify_properties(msg, settings, traits);
    identify::plan_with(msg, settings, props)
}

static NULL: Value<'static> = Value::Null;
