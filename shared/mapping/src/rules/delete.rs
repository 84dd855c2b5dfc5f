//! Spec §12: a Segment `delete` (GDPR) → the users of an Amplitude User Privacy API deletion.
//!
//! §12.2 (no secret key → configuration error) is the delivery's rule, not the mapping's: the
//! keys never reach the mapping. The functions answer 501 without a privacy secret; the `map`
//! command reports a configuration error without `secretKey`.

use crate::amplitude::Deletion;
use crate::message::Message;
use crate::plan::{Body, Endpoint, Plan, Rejection, Request};
use crate::rules::missing;
use crate::settings::Settings;

pub fn plan<'a>(msg: &Message<'a>, settings: &Settings) -> Result<Plan<'a>, Rejection> {
    let user_id = msg
        .user_id
        .clone()
        .ok_or_else(|| missing("delete: `userId`", msg.field("userId")))?;
    Ok(Plan::sending(vec![Request::new(
        Endpoint::Deletion,
        settings.region,
        Body::Deletion(Deletion {
            user_ids: vec![user_id],
        }),
    )]))
}
