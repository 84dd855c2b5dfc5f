//! Spec §9: group → a user's link to the group (`/identify`) and, for typed groups, the
//! group's properties (`/groupidentify`).

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use serde_json_borrow::Value;

use crate::amplitude::{
    DeviceFields, Event, GROUP_IDENTIFY_EVENT, GroupIdentification, GroupLink, Identification,
};
use crate::json::{self, text};
use crate::message::Message;
use crate::plan::{Body, Endpoint, Plan, Rejection, Request};
use crate::props::{Prop, PropMap};
use crate::rules::track::MAX_MESSAGE_OUTPUT_BYTES;
use crate::rules::{device, drop_refused_ids, events, identify, missing, user_properties};
use crate::settings::Settings;
use crate::write;

/// The legacy group type (§9.2.2).
const LEGACY_TYPE: &str = "[Segment] Group";

/// The most groups one call's properties go to as `$groupidentify` events (§9.4, decision):
/// each is an event of the calling user, and Amplitude throttles a user past 30 events a
/// second. Ten is what Amplitude tracks of one group type on one event.
const MAX_GROUP_EVENTS: usize = 10;

pub fn plan<'a>(msg: &Message<'a>, settings: &Settings) -> Result<Plan<'a>, Rejection> {
    let group_id = json::id(msg.field("groupId"))
        .ok_or_else(|| missing("group: `groupId`", msg.field("groupId")))?;
    let traits = msg.traits();
    let typed = typed_group(traits, settings);
    let (group_type, group_value) = match &typed {
        Some((t, v)) => (t.clone(), v.clone()),
        None => (
            Cow::Borrowed(LEGACY_TYPE),
            Prop::Owned(Value::Str(group_id)),
        ),
    };

    let mut requests = Vec::with_capacity(2);
    let mut user_id = msg.user_id.clone();
    let mut device_id = device::device_id(msg, settings);
    // §17.5: an id Amplitude would refuse is dropped from the link.
    let dropped = drop_refused_ids(
        &mut user_id,
        &mut device_id,
        settings.effective_min_id_length(),
    );
    let has_id = user_id.is_some() || device_id.is_some();
    // §9.4: the groups to identify.
    let values = match &typed {
        Some(_) => group_values(&group_value),
        None => Vec::new(),
    };
    if typed.is_some() {
        // Checked against the fan-out limit before anything is built. (As events, at most
        // `MAX_GROUP_EVENTS` of them also repeat the ids: far under it.)
        check_fan_out(&values, traits, settings)?;
    }
    // Decision (§9.4, as §8.1.4 for users): `/groupidentify` has no `insert_id`, so an `$add`,
    // `$append` or `$prepend` in the group's traits would be applied again by every resend.
    // Such properties go as `$groupidentify` events, which Amplitude deduplicates. They need a
    // user or device id, as every event does, and count toward that user's event rate, so a
    // group value of more than [`MAX_GROUP_EVENTS`] groups keeps `/groupidentify`.
    let as_events = (typed.is_some()
        && settings.idempotent_trait_operations
        && has_id
        && values.len() <= MAX_GROUP_EVENTS)
        .then(|| user_properties::normal_form(PropMap::from_object(traits)))
        .filter(identify::applies_twice);

    let pair = |value: &Prop<'a>| {
        let mut m = PropMap::new();
        m.insert(group_type.clone(), value.clone());
        m
    };
    let time = device::event_time(msg);
    // Who the `$groupidentify` events are of: the link's ids, taken before the link has them.
    let as_events = as_events.map(|properties| {
        let device = DeviceFields {
            user_id: user_id.clone(),
            device_id: device_id.clone(),
            time,
            library: Some(Cow::Borrowed("segment")),
            ..DeviceFields::default()
        };
        (properties, device)
    });
    if has_id {
        let link = GroupLink {
            user_id,
            device_id,
            time,
            groups: pair(&group_value),
            user_properties: pair(&group_value),
        };
        requests.push(Request::new(
            Endpoint::Identify,
            settings.region,
            Body::Identify(vec![Identification::GroupLink(link)]),
        ));
    }
    if let Some((properties, device)) = as_events {
        let groups = values.iter().map(|value| Prop::Map(pair(value)));
        let group_events = group_identify_events(msg, &device, groups, &properties);
        if !group_events.is_empty() {
            requests.push(events::request(settings, group_events));
        }
    } else if typed.is_some() {
        let identifications: Vec<_> = values
            .into_iter()
            .map(|value| GroupIdentification {
                group_type: group_type.clone(),
                group_value: value,
                group_properties: PropMap::from_object(traits),
            })
            .collect();
        if !identifications.is_empty() {
            requests.push(Request::new(
                Endpoint::GroupIdentify,
                settings.region,
                Body::GroupIdentify(identifications),
            ));
        }
    }
    if requests.is_empty() {
        return Err(Rejection::Invalid(match (typed.is_some(), dropped.first()) {
            (_, Some(d)) => format!("group: {}, and the message has no other id", d.reason()),
            (false, None) => {
                "group: `userId` or `anonymousId` is required to link a user to a legacy group"
                    .into()
            }
            (true, None) => {
                "group: `userId` or `anonymousId` is required, as the group value has no usable element"
                    .into()
            }
        }));
    }
    Ok(Plan::sending(requests))
}

/// §9.4 (decision): one `$groupidentify` event per group, carrying the group's properties, with
/// the `insert_id` of §3.4 ([`events::insert_id`]).
fn group_identify_events<'a>(
    msg: &Message<'a>,
    device: &DeviceFields<'a>,
    groups: impl Iterator<Item = Prop<'a>>,
    properties: &PropMap<'a>,
) -> Vec<Event<'a>> {
    let message_id = msg.message_id();
    groups
        .enumerate()
        .map(|(k, groups)| Event {
            device: device.clone(),
            event_type: Cow::Borrowed(GROUP_IDENTIFY_EVENT),
            insert_id: events::insert_id(message_id.as_ref(), k + 1),
            session_id: None,
            event_id: None,
            event_properties: None,
            user_properties: Arc::default(),
            groups: Some(groups),
            group_properties: Some(properties.clone()),
            revenue: None,
            user_agent: None,
            skip_user_properties_sync: None,
        })
        .collect()
}

/// §9.4: `/groupidentify` takes one string per group, so an array value names one group per
/// distinct non-empty element (as text, §0.3), in array order.
fn group_values<'a>(value: &Prop<'a>) -> Vec<Prop<'a>> {
    match value.value() {
        Some(Value::Array(items)) => {
            let mut seen = HashSet::new();
            items
                .iter()
                .filter_map(text)
                .filter(|t| seen.insert(t.clone()))
                .map(|t| Prop::Owned(Value::Str(t)))
                .collect()
        }
        _ => vec![value.clone()],
    }
}

/// Decision (not in the spec): refuses a group whose identifications would pass, by a close
/// upper estimate, [`MAX_MESSAGE_OUTPUT_BYTES`] (the limit on what one message becomes, as for
/// an order's products). Each identification repeats the group's traits, which hold the array
/// itself, so what a value of n elements becomes grows as n²: about 2,900 short values reach
/// the limit, fewer with larger traits. Past it the message is refused with the reason,
/// instead of costing the function its memory and Amplitude gigabytes.
fn check_fan_out(
    values: &[Prop<'_>],
    traits: &Value<'_>,
    settings: &Settings,
) -> Result<(), Rejection> {
    const OWN_FIELDS: usize = 128;
    let n = values.len();
    let name = settings.group_value_trait.as_deref().unwrap_or_default();
    let each = write::value_len(traits) + OWN_FIELDS;
    let estimate = n.saturating_mul(each) + values.iter().map(write::prop_len).sum::<usize>();
    if estimate > MAX_MESSAGE_OUTPUT_BYTES {
        return Err(Rejection::Invalid(format!(
            "group: `traits.{name}` has {n} distinct values, which would become as many group identifications each repeating the group's {} KB of traits: about {} MB, over this destination's limit of {} MB for one message",
            each >> 10,
            estimate >> 20,
            MAX_MESSAGE_OUTPUT_BYTES >> 20
        )));
    }
    Ok(())
}

/// §9.2.1: type and value from the configured traits, when both are set and present. The type
/// is text; the value is text, or an array of strings kept as it is.
fn typed_group<'a>(traits: &'a Value<'a>, settings: &Settings) -> Option<(Cow<'a, str>, Prop<'a>)> {
    let type_trait = settings.group_type_trait.as_deref()?;
    let value_trait = settings.group_value_trait.as_deref()?;
    let group_type = text(json::get(traits, type_trait))?;
    let value = json::get(traits, value_trait);
    let group_value = match value {
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
            Prop::Ref(value)
        }
        other => Prop::Owned(Value::Str(text(other)?)),
    };
    Some((group_type, group_value))
}
