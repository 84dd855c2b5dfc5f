//! Spec §8: identify (including Engage audience and computed-trait identifies, §8.3).

use crate::amplitude::{Identification, UserIdentification};
use crate::json;
use crate::message::Message;
use crate::plan::{Body, Endpoint, Plan, Rejection, Request};
use crate::props::Prop;
use crate::rules::{device, require_ids, user_properties};
use crate::settings::Settings;

pub fn plan<'a>(msg: &Message<'a>, settings: &Settings) -> Result<Plan<'a>, Rejection> {
    plan_with(msg, settings, user_properties::for_identify(msg, settings))
}

/// An identification with these user properties (already in normal form).
pub fn plan_with<'a>(
    msg: &Message<'a>,
    settings: &Settings,
    user_properties: crate::props::PropMap<'a>,
) -> Result<Plan<'a>, Rejection> {
    let device = device::device_fields(msg, settings);
    require_ids(&device)?;
    let option = |key| {
        Some(msg.option(key))
            .filter(|v| json::is_present(v))
            .map(Prop::Ref)
    };
    let identification = UserIdentification {
        device,
        user_properties,
        groups: user_properties::groups(msg).map(Prop::Ref),
        paying: option("paying"),
        start_version: option("start_version"),
    };
    Ok(Plan {
        requests: vec![Request::new(
            Endpoint::Identify,
            settings.region,
            Body::Identify(vec![Identification::User(identification)]),
        )],
    })
}
