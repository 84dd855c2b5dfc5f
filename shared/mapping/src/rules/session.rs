//! Spec §18.2–§18.4: which events get a server-side session (`sessionize`), and under which
//! key. The mapping only marks them: the state and the choice of ids are the `sessions`
//! crate's, which fills [`Plan::set_session_id`](crate::Plan::set_session_id) before
//! delivery.

use crate::json::text;
use crate::message::{Call, Message};
use crate::rules::{device, drop_refused_ids, page};
use crate::settings::Settings;

/// A message whose events need a session: the key its state is kept under, and the event's
/// own time (§3.3), when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionNeed {
    /// `d:<device_id>`, else `u:<user_id>` (Amplitude counts sessions per device, §18.3); the
    /// prefix keeps a device and a user with the same text apart.
    pub key: String,
    /// Epoch milliseconds; `None`: the time the request was received stands in.
    pub time: Option<i64>,
}

/// The need of a message, or `None` when it gets no synthesised session: `sessionize` off, not
/// a track, page or screen, a message that sends no event (a page the page settings skip, a
/// track without a name, `Amplitude: false`, no id left), or one with its own session id
/// (§3.11), which it keeps.
pub fn need(msg: &Message<'_>, settings: &Settings) -> Option<SessionNeed> {
    if !settings.sessionize || msg.disabled {
        return None;
    }
    let sends = match msg.call {
        Call::Track => text(msg.field("event")).is_some(),
        Call::Page | Call::Screen => page::is_sent(msg, settings),
        _ => false,
    };
    if !sends || device::session_id(msg).is_some() {
        return None;
    }
    let mut user_id = msg.user_id.clone();
    let mut device_id = device::device_id(msg, settings);
    drop_refused_ids(
        &mut user_id,
        &mut device_id,
        settings.effective_min_id_length(),
    );
    let key = match (device_id, user_id) {
        (Some(d), _) => format!("d:{d}"),
        (None, Some(u)) => format!("u:{u}"),
        (None, None) => return None,
    };
    Some(SessionNeed {
        key,
        time: device::event_time(msg),
    })
}
