//! Every Segment → Amplitude rule, one module per part of the mapping spec
//! (`../shared/spec/mapping.md`): `device` §3, `user_properties` §3.14/§8.2/§11,
//! `event_properties` §4, `revenue` §5–§6, `track` §5–§6, `page` §7, `identify` §8,
//! `group` §9, `alias` §10, `delete` §12, and `engage` (the `/engage` route's forms, §8.3).

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
pub mod track;
pub mod user_properties;

use crate::amplitude::DeviceFields;
use crate::plan::Rejection;

/// §13: Amplitude rejects events and identifications with neither `user_id` nor `device_id`.
pub(crate) fn require_ids(device: &DeviceFields<'_>) -> Result<(), Rejection> {
    if device.user_id.is_none() && device.device_id.is_none() {
        return Err(Rejection::Invalid(
            "`userId` or `anonymousId` (or `context.device.id`) is required".into(),
        ));
    }
    Ok(())
}
