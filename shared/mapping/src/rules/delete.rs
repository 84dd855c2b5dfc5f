//! Spec §12: a Segment `delete` (GDPR) → an Amplitude User Privacy API deletion.

use std::borrow::Cow;

use crate::amplitude::Deletion;
use crate::message::Message;
use crate::plan::{Body, Endpoint, Plan, Rejection, Request};
use crate::settings::Settings;

/// Who Amplitude records as having asked for the deletion, unless the operator names someone.
pub const DEFAULT_REQUESTER: &str = "segment";

pub fn plan<'a>(msg: &Message<'a>, settings: &Settings) -> Result<Plan<'a>, Rejection> {
    if settings.secret_key().is_none() {
        return Err(Rejection::Configuration(
            "delete: Amplitude deletions need the `secretKey` setting, which is not configured"
                .into(),
        ));
    }
    let user_id = msg
        .user_id
        .clone()
        .ok_or_else(|| Rejection::Invalid("delete: `userId` is required".into()))?;
    Ok(Plan {
        requests: vec![Request::new(
            Endpoint::Deletion,
            settings.region,
            Body::Deletion(Deletion {
                user_ids: vec![user_id],
                requester: Cow::Borrowed(DEFAULT_REQUESTER),
            }),
        )],
    })
}
