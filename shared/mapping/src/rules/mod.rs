//! Every Segment → Amplitude rule, one module per part of the mapping spec
//! (`../shared/spec/mapping.md`): `device` §3, `user_properties` §3.14/§8.2/§11,
//! `event_properties` §4, `revenue` §5–§6, `track` §5–§6, `page` §7, `identify` §8,
//! `group` §9, `alias` §10, `delete` §12, `engage` (the `/engage` route's forms, §8.3) and
//! `session` (which events get a server-side session, §18).
//!
//! The opt-in rules of §17 sit with the rule they extend: removals (§17.1.1–2), trait
//! operations on events (§17.2) and the referrer (§17.4.1) in `user_properties`; `clearAll`
//! (§17.1.3) in `identify`; `skip_user_properties_sync`, the raw user agent and the library
//! (§17.1.4, §17.4.2, §17.4.4) in `events`; name templates (§17.3) in `page`; short ids (§17.5)
//! in [`require_ids`] here.

pub mod alias;
pub mod delete;
pub mod device;
pub mod engage;
pub mod event_properties;
pub mod events;
pub mod group;
pub mod identify;
pub mod page;
pub mod revenue;
pub mod session;
pub mod track;
pub mod user_properties;

use std::borrow::Cow;

use serde_json_borrow::Value;

use crate::amplitude::DeviceFields;
use crate::json;
use crate::message::Message;
use crate::plan::Rejection;
use crate::settings::Settings;

/// §13 and §17.5: an id Amplitude would refuse (shorter than the minimum, `minIdLength` else
/// 5, or one of its placeholder values such as `undefined`) is dropped, as Amplitude would
/// refuse the whole event over it; then an event or an identification needs a `user_id` or a
/// `device_id`, and the reason names what was missing, refused, or sent as the wrong type.
pub(crate) fn require_ids(
    msg: &Message<'_>,
    device: &mut DeviceFields<'_>,
    settings: &Settings,
) -> Result<(), Rejection> {
    let dropped = drop_refused_ids(
        &mut device.user_id,
        &mut device.device_id,
        settings.effective_min_id_length(),
    );
    if device.user_id.is_some() || device.device_id.is_some() {
        return Ok(());
    }
    let mistyped = ["userId", "anonymousId"].into_iter().find(|field| {
        let value = msg.field(field);
        json::is_present(value) && json::id(value).is_none()
    });
    Err(Rejection::Invalid(match (dropped.first(), mistyped) {
        (Some(d), _) => format!("{}, and the message has no other id", d.reason()),
        (None, Some(field)) => {
            format!("`{field}` must be a string or a number, and the message has no other id")
        }
        (None, None) => "`userId` or `anonymousId` (or `context.device.id`) is required".into(),
    }))
}

/// The rejection for a field that must hold an id or a name (`what`, e.g. "group:
/// `groupId`") and does not: "is required" when it is absent, `null` or `""`; what it must be
/// when it is there as something else (`true`, an object, an array), so the sender is not
/// told to add a field it sent.
pub(crate) fn missing(what: &str, value: &Value<'_>) -> Rejection {
    Rejection::Invalid(if json::is_present(value) {
        format!("{what} must be a string or a number")
    } else {
        format!("{what} is required")
    })
}

/// An id [`drop_refused_ids`] took out, where it came from, and why.
pub(crate) struct DroppedId {
    field: &'static str,
    id: String,
    why: Refused,
}

/// Why Amplitude would refuse an id.
enum Refused {
    /// Shorter than this many characters (`minIdLength`, else 5).
    Short(u32),
    /// One of Amplitude's placeholder values (`amplitude_wire::REFUSED_IDS`), long enough.
    Placeholder,
}

impl DroppedId {
    /// Why, for a rejection's reason.
    pub(crate) fn reason(&self) -> String {
        let DroppedId { field, id, why } = self;
        match why {
            Refused::Placeholder => {
                format!("{field} {id:?} is a placeholder Amplitude refuses as an id")
            }
            Refused::Short(min) => format!(
                "{field} {id:?} is shorter than the {min} characters Amplitude accepts (minIdLength)"
            ),
        }
    }
}

/// amplitude-api §2.3, §17.5: drops a user id or device id shorter than `min` characters or
/// on Amplitude's list of refused ids; returns what it dropped.
pub(crate) fn drop_refused_ids<'a>(
    user_id: &mut Option<Cow<'a, str>>,
    device_id: &mut Option<Cow<'a, str>>,
    min: u32,
) -> Vec<DroppedId> {
    let mut dropped = Vec::new();
    for (slot, field) in [
        (user_id, "`userId`"),
        (
            device_id,
            "the device id (`context.device.id` or `anonymousId`)",
        ),
    ] {
        let Some(id) = slot.as_deref() else {
            continue;
        };
        let why = if id.chars().count() < min as usize {
            Refused::Short(min)
        } else if amplitude_wire::is_refused_id(id) {
            Refused::Placeholder
        } else {
            continue;
        };
        dropped.extend(slot.take().map(|id| DroppedId {
            field,
            id: id.into_owned(),
            why,
        }));
    }
    dropped
}
