//! The pure Segment → Amplitude mapping of this project: one Segment message plus the
//! destination [`Settings`] in, the exact Amplitude requests Segment's Amplitude destination
//! (cloud mode) would send out, as a typed [`Plan`] — or a typed [`Rejection`].
//!
//! No I/O, no async, no panics on any JSON. Where each rule lives: see [`rules`].
//!
//! ```
//! let settings = mapping::Settings::default();
//! let input = r#"{"type":"track","event":"Signed Up","userId":"user-1","messageId":"m1"}"#;
//! let mut scratch = mapping::Scratch::default();
//! let message = mapping::parse(input, &mut scratch).unwrap();
//! let plan = mapping::plan(&message, &settings).unwrap();
//! assert_eq!(plan.requests[0].url, "https://api2.amplitude.com/2/httpapi");
//! ```

// Every string here comes from the sender: slicing one by byte index can split a multi-byte
// character and panic, and indexing can run past the end. Neither is allowed in this crate
// (tests may index their own fixtures).
#![cfg_attr(not(test), deny(clippy::string_slice, clippy::indexing_slicing))]

pub mod amplitude;
mod json;
mod locale;
mod message;
mod plan;
mod props;
mod read;
mod rules;
mod settings;
mod time;
mod user_agent;
pub mod write;

pub use json::{Scratch, id, parse};
pub use message::{Batch, Call, Message};
pub use plan::{Body, Endpoint, Plan, Rejection, Request};
pub use props::{Prop, PropMap};
pub use rules::engage;
pub use rules::session::SessionNeed;
pub use settings::{DEVICE_MODE_ONLY_KEYS, QueryParamTarget, Region, Settings, SettingsError};

use serde_json_borrow::Value;

/// Why a message with `integrations.Amplitude: false` is skipped (§2.6).
const DISABLED: &str =
    "`integrations.Amplitude` is false: the sender turned this destination off for it";

/// Maps one Segment message (already parsed) to the Amplitude requests it becomes.
pub fn plan<'a>(message: &'a Value<'a>, settings: &Settings) -> Result<Plan<'a>, Rejection> {
    plan_in(message, Batch::NONE, settings)
}

/// [`plan`] for a message of a batch body, which shares the batch's `context` and
/// `integrations`.
pub fn plan_in<'a>(
    message: &'a Value<'a>,
    batch: Batch<'a>,
    settings: &Settings,
) -> Result<Plan<'a>, Rejection> {
    let msg = Message::parse_in(message, batch)?;
    if msg.disabled {
        return Ok(Plan::skipped(DISABLED.into()));
    }
    match msg.call {
        Call::Track => rules::track::plan(&msg, settings),
        Call::Page | Call::Screen => rules::page::plan(&msg, settings),
        Call::Identify => rules::identify::plan(&msg, settings),
        Call::Group => rules::group::plan(&msg, settings),
        Call::Alias => rules::alias::plan(&msg, settings),
        Call::Delete => rules::delete::plan(&msg, settings),
    }
}

/// Spec §18: whether a message of a batch body needs a server-side session, and its key.
/// `None` unless `sessionize` is on; see [`SessionNeed`].
pub fn session_need_in<'a>(
    message: &'a Value<'a>,
    batch: Batch<'a>,
    settings: &Settings,
) -> Option<SessionNeed> {
    if !settings.sessionize {
        return None;
    }
    let msg = Message::parse_in(message, batch).ok()?;
    rules::session::need(&msg, settings)
}
