//! Spec §8: identify (including Engage audience and computed-trait identifies, §8.3), and
//! §8.1.4: identifies with non-idempotent trait operations travel as `$identify` events.

use std::borrow::Cow;
use std::sync::Arc;

use crate::amplitude::{DeviceFields, Event, IDENTIFY_EVENT, Identification, UserIdentification};
use crate::json;
use crate::message::Message;
use crate::plan::{Body, Endpoint, Plan, Rejection, Request};
use crate::props::{Prop, PropMap};
use crate::rules::{device, events, require_ids, user_properties};
use crate::settings::Settings;

/// Operations Amplitude applies again on every resend (§8.1.4): `$set`, `$setOnce` and `$unset`
/// give the same result twice, these do not.
const NON_IDEMPOTENT: [&str; 3] = ["$add", "$append", "$prepend"];

/// True if properties in normal form hold an operation a resend would apply again (§8.1.4).
/// Only an operation with an object of keys is one: a plain key named `$add` (`"$add": 5`) is
/// not, and stays a plain key of the normal form.
pub fn applies_twice(properties: &PropMap<'_>) -> bool {
    NON_IDEMPOTENT
        .iter()
        .any(|op| matches!(properties.get(op), Some(Prop::Map(_))))
}

pub fn plan<'a>(msg: &Message<'a>, settings: &Settings) -> Result<Plan<'a>, Rejection> {
    plan_with(msg, settings, user_properties::for_identify(msg, settings))
}

/// An identification with these user properties (already in normal form): one `/identify`
/// request, or one `$identify` event when its operations must not be applied twice.
pub fn plan_with<'a>(
    msg: &Message<'a>,
    settings: &Settings,
    user_properties: PropMap<'a>,
) -> Result<Plan<'a>, Rejection> {
    let mut device = device::device_fields(msg, settings);
    require_ids(msg, &mut device, settings)?;
    let option = |key| {
        Some(msg.option(key))
            .filter(|v| json::is_present(v))
            .map(Prop::Ref)
    };
    let groups = user_properties::groups(msg).map(Prop::Ref);
    let (paying, start_version) = (option("paying"), option("start_version"));
    if msg.any_option("clearAll") == &serde_json_borrow::Value::Bool(true) {
        return clear_all_then_identify(
            msg,
            settings,
            device,
            user_properties,
            groups,
            paying,
            start_version,
        );
    }
    if settings.idempotent_trait_operations && applies_twice(&user_properties) {
        let event = identify_event(msg, device, user_properties, groups, paying, start_version);
        return Ok(Plan::sending(vec![events::request(settings, vec![event])]));
    }
    let identification = UserIdentification {
        device,
        user_properties,
        groups,
        paying,
        start_version,
    };
    Ok(Plan::sending(vec![Request::new(
        Endpoint::Identify,
        settings.region,
        Body::Identify(vec![Identification::User(identification)]),
    )]))
}

/// §17.1.3: the `clearAll` option. Amplitude takes `$clearAll` only alone, so the identify
/// becomes two `$identify` events in one request: the clear (`insert_id` `<messageId>-clear`,
/// 1 ms before the message) and then the identify's own properties. Both are deduplicated by
/// Amplitude, so a replayed clear cannot erase updates made after it; a message without
/// `messageId` could not be made safe and is refused.
fn clear_all_then_identify<'a>(
    msg: &Message<'a>,
    settings: &Settings,
    device: DeviceFields<'a>,
    user_properties: PropMap<'a>,
    groups: Option<Prop<'a>>,
    paying: Option<Prop<'a>>,
    start_version: Option<Prop<'a>>,
) -> Result<Plan<'a>, Rejection> {
    let message_id = msg.message_id().ok_or_else(|| {
        Rejection::Invalid(
            "`messageId` is required with the `clearAll` option: without it a resent clear would erase later updates".into(),
        )
    })?;
    let mut clear_device = device.clone();
    clear_device.time = device.time.map(|t| t.saturating_sub(1));
    let mut clear_properties = PropMap::new();
    clear_properties.insert(
        "$clearAll",
        Prop::Owned(serde_json_borrow::Value::Str("-".into())),
    );
    let mut clear = identify_event(msg, clear_device, clear_properties, None, None, None);
    clear.insert_id = Some(Cow::Owned(format!("{message_id}-clear")));
    let update = identify_event(msg, device, user_properties, groups, paying, start_version);
    Ok(Plan::sending(vec![events::request(
        settings,
        vec![clear, update],
    )]))
}

/// §8.1.4: the identification as a `$identify` event with the message's `insert_id` (§3.4).
/// `paying` and `start_version` exist only in the Identify API; on an event they become user
/// properties, `paying` under `$set` and `start_version` under `$setOnce`.
fn identify_event<'a>(
    msg: &Message<'a>,
    device: DeviceFields<'a>,
    mut user_properties: PropMap<'a>,
    groups: Option<Prop<'a>>,
    paying: Option<Prop<'a>>,
    start_version: Option<Prop<'a>>,
) -> Event<'a> {
    for (op, key, value) in [
        ("$set", "paying", paying),
        ("$setOnce", "start_version", start_version),
    ] {
        let Some(value) = value else { continue };
        match user_properties.get_mut(op) {
            Some(Prop::Map(map)) => map.insert(key, value),
            _ => {
                let mut map = PropMap::new();
                map.insert(key, value);
                user_properties.insert(op, Prop::Map(map));
            }
        }
    }
    Event {
        device,
        event_type: Cow::Borrowed(IDENTIFY_EVENT),
        insert_id: msg.message_id(),
        session_id: None,
        event_id: None,
        event_properties: None,
        user_properties: Arc::new(user_properties),
        groups,
        group_properties: None,
        revenue: None,
        user_agent: None,
        skip_user_properties_sync: None,
    }
}
