//! The Amplitude objects the mapping produces, serialised exactly as Amplitude receives them
//! (spec §0.3: absent top-level fields are omitted, never sent as `null`: every `Option` field
//! is skipped when `None`).

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;
use serde_json_borrow::Value;
use serde_with::skip_serializing_none;

use crate::props::{Prop, PropMap};

/// Fields shared by events and user identifications (spec §3).
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeviceFields<'a> {
    pub user_id: Option<Cow<'a, str>>,
    pub device_id: Option<Cow<'a, str>>,
    pub time: Option<i64>,
    /// `"segment"`, or `context.library.name` on events with `libraryFromContext` (§17.4.4).
    pub library: Option<Cow<'a, str>>,
    pub platform: Option<Cow<'a, str>>,
    pub os_name: Option<Cow<'a, str>>,
    pub os_version: Option<Cow<'a, str>>,
    pub device_model: Option<Cow<'a, str>>,
    pub device_brand: Option<Cow<'a, str>>,
    pub device_manufacturer: Option<Cow<'a, str>>,
    pub carrier: Option<Cow<'a, str>>,
    pub app_version: Option<Cow<'a, str>>,
    pub ip: Option<Cow<'a, str>>,
    pub location_lat: Option<Value<'a>>,
    pub location_lng: Option<Value<'a>>,
    pub country: Option<Cow<'a, str>>,
    pub region: Option<Cow<'a, str>>,
    pub city: Option<Cow<'a, str>>,
    pub language: Option<&'static str>,
    pub idfa: Option<Cow<'a, str>>,
    pub adid: Option<Cow<'a, str>>,
}

/// Revenue fields of an event (spec §5.3, §6).
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Revenue<'a> {
    pub revenue: Value<'a>,
    pub price: Value<'a>,
    pub quantity: i64,
    #[serde(rename = "productId")]
    pub product_id: Option<Cow<'a, str>>,
    #[serde(rename = "revenueType")]
    pub revenue_type: Option<Cow<'a, str>>,
}

/// The event type of an identify sent as an event (spec §8.1.4).
pub const IDENTIFY_EVENT: &str = "$identify";

/// The event type of a group's properties sent as an event (spec §9.4, decision 2026-12-02).
pub use amplitude_wire::GROUP_IDENTIFY_EVENT;

/// One element of the HTTP V2 / Batch `events` array.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event<'a> {
    #[serde(flatten)]
    pub device: DeviceFields<'a>,
    pub event_type: Cow<'a, str>,
    pub insert_id: Option<Cow<'a, str>>,
    pub session_id: Option<i64>,
    pub event_id: Option<i64>,
    /// Always present on track, page and screen events (spec §0.3.2, possibly `{}`); absent
    /// only on `$identify` events, which carry an identification's fields (§8.1.4).
    pub event_properties: Option<PropMap<'a>>,
    /// Shared, not copied, by the events of one message: an order's product events all carry
    /// the same user properties, which may be large.
    #[serde(skip_serializing_if = "is_empty_shared")]
    pub user_properties: Arc<PropMap<'a>>,
    pub groups: Option<Prop<'a>>,
    /// Only on `$groupidentify` events: the properties of the groups in `groups`.
    pub group_properties: Option<PropMap<'a>>,
    #[serde(flatten)]
    pub revenue: Option<Revenue<'a>>,
    /// `context.userAgent` as sent, with `includeRawUserAgent` (§17.4.2).
    pub user_agent: Option<Cow<'a, str>>,
    /// The `skip_user_properties_sync` option (§17.1.4): Amplitude stores the event without
    /// touching the user's properties (historical backfills).
    #[serde(rename = "$skip_user_properties_sync")]
    pub skip_user_properties_sync: Option<bool>,
}

/// One identification sent to `/identify`: a user's properties (identify, spec §8) or a user's
/// link to a group (group, spec §9.3).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
#[allow(
    clippy::large_enum_variant,
    reason = "built once per message and moved into a Vec; boxing would add an allocation per identify"
)]
pub enum Identification<'a> {
    User(UserIdentification<'a>),
    GroupLink(GroupLink<'a>),
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserIdentification<'a> {
    #[serde(flatten)]
    pub device: DeviceFields<'a>,
    #[serde(skip_serializing_if = "is_empty")]
    pub user_properties: PropMap<'a>,
    pub groups: Option<Prop<'a>>,
    pub paying: Option<Prop<'a>>,
    pub start_version: Option<Prop<'a>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupLink<'a> {
    pub user_id: Option<Cow<'a, str>>,
    pub device_id: Option<Cow<'a, str>>,
    pub time: Option<i64>,
    pub groups: PropMap<'a>,
    pub user_properties: PropMap<'a>,
}

/// One identification sent to `/groupidentify` (spec §9.4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupIdentification<'a> {
    pub group_type: Cow<'a, str>,
    pub group_value: Prop<'a>,
    pub group_properties: PropMap<'a>,
}

/// One element of the `/usermap` `mapping` array (spec §10).
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserMapping<'a> {
    pub user_id: Cow<'a, str>,
    pub global_user_id: Option<Cow<'a, str>>,
    pub unmap: Option<bool>,
}

/// The users of a User Privacy API deletion (spec §12). The delivery adds the `requester`
/// (who asked; `segment` unless the operator names someone) and the credentials, which go in
/// the `Authorization` header, never in the body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deletion<'a> {
    pub user_ids: Vec<Cow<'a, str>>,
}

fn is_empty(map: &PropMap<'_>) -> bool {
    map.is_empty()
}

fn is_empty_shared(map: &Arc<PropMap<'_>>) -> bool {
    map.is_empty()
}
