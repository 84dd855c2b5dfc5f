//! Spec §10: alias → Amplitude User Mapping, including unmap.

use std::borrow::Cow;

use serde_json_borrow::Value;

use crate::amplitude::UserMapping;
use crate::json;
use crate::message::Message;
use crate::plan::{Body, Endpoint, Plan, Rejection, Request};
use crate::rules::missing;
use crate::settings::Settings;

pub fn plan<'a>(msg: &Message<'a>, settings: &Settings) -> Result<Plan<'a>, Rejection> {
    if !settings.send_alias {
        return Err(Rejection::Unsupported(
            "alias: the `sendAlias` (Enable Alias) setting is off".into(),
        ));
    }
    let mapping = if let Some(unmap) = unmap_id(msg.option("unmap"))? {
        UserMapping {
            user_id: unmap,
            global_user_id: None,
            unmap: Some(true),
        }
    } else {
        let previous = json::id(msg.field("previousId"))
            .ok_or_else(|| missing("alias: `previousId`", msg.field("previousId")))?;
        let user_id = msg
            .user_id
            .clone()
            .ok_or_else(|| missing("alias: `userId`", msg.field("userId")))?;
        UserMapping {
            user_id: previous,
            global_user_id: Some(user_id),
            unmap: None,
        }
    };
    Ok(Plan::sending(vec![Request::new(
        Endpoint::UserMap,
        settings.region,
        Body::UserMap(vec![mapping]),
    )]))
}

/// The `unmap` option (§10.2): the id to unmap, or `None` to map as usual. Absent, `null`,
/// `false` and `""` ask for no unmap (Segment's code tests the option for truth). `true`, an
/// object or an array are refused: they say "unmap" without saying whom, and mapping as
/// usual would do the opposite of what the sender asked (Segment sends them on as the
/// `user_id`, which Amplitude refuses).
fn unmap_id<'a>(option: &Value<'a>) -> Result<Option<Cow<'a, str>>, Rejection> {
    match option {
        Value::Null | Value::Bool(false) => Ok(None),
        Value::Str(s) if s.is_empty() => Ok(None),
        other => json::id(other).map(Some).ok_or_else(|| {
            Rejection::Invalid(
                "alias: `integrations.Amplitude.unmap` must be the id to unmap (a string)".into(),
            )
        }),
    }
}
