//! What every event of a track, page or screen call shares (spec §3, §3.4 `insert_id`, §3.15),
//! and the request that carries them (§2.3).

use std::borrow::Cow;
use std::sync::Arc;

use serde_json_borrow::Value;

use crate::amplitude::{DeviceFields, Event, Revenue};
use crate::json::text;
use crate::message::Message;
use crate::plan::{Body, Endpoint, Rejection, Request};
use crate::props::{Prop, PropMap};
use crate::rules::{device, require_ids, user_properties};
use crate::settings::Settings;

/// The fields all events of one message have in common.
#[derive(Clone)]
pub struct EventBase<'a> {
    device: DeviceFields<'a>,
    message_id: Option<Cow<'a, str>>,
    session_id: Option<i64>,
    event_id: Option<i64>,
    user_properties: Arc<PropMap<'a>>,
    groups: Option<&'a Value<'a>>,
    user_agent: Option<Cow<'a, str>>,
    skip_user_properties_sync: Option<bool>,
}

impl<'a> EventBase<'a> {
    pub fn new(msg: &Message<'a>, settings: &Settings) -> Result<Self, Rejection> {
        let mut device = device::device_fields(msg, settings);
        if settings.library_from_context
            && let Some(name) = text(msg.ctx("library", "name"))
        {
            // §17.4.4: the sending library, as Segment's Actions destination names it.
            device.library = Some(name);
        }
        require_ids(msg, &mut device, settings)?;
        Ok(EventBase {
            device,
            message_id: msg.message_id(),
            session_id: device::session_id(msg),
            event_id: device::event_id(msg),
            user_properties: Arc::new(user_properties::for_event(msg, settings)),
            groups: user_properties::groups(msg),
            // §17.4.2: the user agent as sent.
            user_agent: settings
                .include_raw_user_agent
                .then(|| text(msg.context("userAgent")))
                .flatten(),
            // §17.1.4: the event is stored without touching the user's properties.
            skip_user_properties_sync: (msg.any_option("skip_user_properties_sync")
                == &Value::Bool(true))
                .then_some(true),
        })
    }

    /// Bytes of JSON every event of the message repeats: its device fields and user
    /// properties.
    pub fn shared_len(&self) -> usize {
        crate::json::serialized_len(&self.device)
            + crate::write::prop_map_len(&self.user_properties)
    }

    /// The event at 1-based `position` in this message's output, with its [`insert_id`].
    pub fn event(
        &self,
        position: usize,
        event_type: Cow<'a, str>,
        event_properties: PropMap<'a>,
        revenue: Option<Revenue<'a>>,
    ) -> Event<'a> {
        self.clone()
            .into_event(position, event_type, event_properties, revenue)
    }

    /// [`EventBase::event`] for a message's last event: the shared fields moved, not copied.
    pub fn into_event(
        self,
        position: usize,
        event_type: Cow<'a, str>,
        event_properties: PropMap<'a>,
        revenue: Option<Revenue<'a>>,
    ) -> Event<'a> {
        Event {
            device: self.device,
            event_type,
            insert_id: insert_id(self.message_id.as_ref(), position),
            session_id: self.session_id,
            event_id: self.event_id,
            event_properties: Some(event_properties),
            user_properties: self.user_properties,
            groups: self.groups.map(Prop::Ref),
            group_properties: None,
            revenue,
            user_agent: self.user_agent,
            skip_user_properties_sync: self.skip_user_properties_sync,
        }
    }
}

/// §3.4: the `insert_id` of the event at 1-based `position` in a message's output: the first
/// keeps the bare `messageId`, the others get `-<position>`, so a redelivery cannot
/// double-count. None without a `messageId`.
pub fn insert_id<'a>(message_id: Option<&Cow<'a, str>>, position: usize) -> Option<Cow<'a, str>> {
    message_id.map(|id| match position {
        1 => id.clone(),
        p => Cow::Owned(format!("{id}-{p}")),
    })
}

/// §2.3: one request to `/2/httpapi`, or `/batch` when `sendToBatchEndpoint` is on.
pub fn request<'a>(settings: &Settings, events: Vec<Event<'a>>) -> Request<'a> {
    let endpoint = if settings.send_to_batch_endpoint {
        Endpoint::Batch
    } else {
        Endpoint::HttpApi
    };
    Request::new(endpoint, settings.region, Body::Events(events))
}
