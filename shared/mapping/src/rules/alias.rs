//! Spec §10: alias → Amplitude User Mapping, including unmap.

use crate::amplitude::UserMapping;
use crate::json;
use crate::message::Message;
use crate::plan::{Body, Endpoint, Plan, Rejection, Request};
use crate::settings::Settings;

pub fn plan<'a>(msg: &Message<'a>, settings: &Settings) -> Result<Plan<'a>, Rejection> {
    if !settings.send_alias {
        return Err(Rejection::Unsupported(
            "alias: the `sendAlias` (Enable Alias) setting is off".into(),
        ));
    }
    let mapping = if let Some(unmap) = json::id(msg.option("unmap")) {
        UserMapping {
            user_id: unmap,
            global_user_id: None,
            unmap: Some(true),
        }
    } else {
        let previous = json::id(msg.field("previousId"))
            .ok_or_else(|| Rejection::Invalid("alias: `previousId` is required".into()))?;
        let user_id = msg
            .user_id
            .clone()
            .ok_or_else(|| Rejection::Invalid("alias: `userId` is required".into()))?;
        UserMapping {
            user_id: previous,
            global_user_id: Some(user_id),
            unmap: None,
        }
    };
    Ok(Plan {
        requests: vec![Request::new(
            Endpoint::UserMap,
            settings.region,
            Body::UserMap(vec![mapping]),
        )],
    })
}
