//! Errors about a request as a whole, each with the status Segment gets. What the caller sees
//! is safe to show anyone: a configuration problem (a secret that cannot be read, no inbound
//! credential configured) is answered with a generic message and the request id, and its
//! detail goes only to the function's log.

use amplitude_client::JobListError;
use aws_lambda_events::http::StatusCode;

use crate::ingest::Route;
use crate::ingest::auth::AuthError;
use crate::ingest::body::BodyError;
use crate::ingest::inbound::InboundError;
use crate::ingest::reply::Reply;
use crate::ops::secrets::{SecretError, SecretId};

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("method: {} takes {}", .0.path(), allowed(*.0))]
    MethodNotAllowed(Route),
    /// An HTTP request to the redeliver function, which takes queue events only.
    #[error("this function takes queue events, not requests")]
    NoRoute,
    #[error("body: larger than 6 MB; lower the batch size in Segment")]
    TooLarge,
    #[error(transparent)]
    Inbound(#[from] InboundError),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("authentication: {0}")]
    Unauthorized(AuthError),
    /// The credential does not match keys read before it arrived, and they were read again
    /// too lately to read them once more: it may be a rotation. Segment retries.
    #[error("authentication: the credential cannot be checked yet; retry later")]
    CannotTellYet,
    /// A secret could not be read or is malformed: the operator must act; Segment retries.
    #[error("configuration: {0}")]
    Secret(#[from] SecretError),
    /// No inbound credential is configured at all: a server-side mistake, so Segment retries.
    #[error("configuration: {0}")]
    AuthNotConfigured(AuthError),
    /// Deletions without `PRIVACY_SECRET_ID`: they cannot succeed, so Segment does not retry.
    #[error(
        "deletions: no Amplitude secret key is configured (PRIVACY_SECRET_ID is not set); Amplitude's User Privacy API needs the project's secret key"
    )]
    DeletionsNotConfigured,
    /// The privacy secret exists but its `secret_key` is still empty: retried until it is set.
    #[error(
        "deletions: the privacy secret `{0}` has no secret_key yet; put the project's Amplitude secret key in it"
    )]
    SecretKeyNotSetUp(SecretId),
    #[error("query: {0}")]
    Query(String),
    #[error(transparent)]
    JobList(#[from] JobListError),
}

impl From<AuthError> for RequestError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::NotConfigured => RequestError::AuthNotConfigured(e),
            e => RequestError::Unauthorized(e),
        }
    }
}

impl RequestError {
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            RequestError::NoRoute => StatusCode::NOT_FOUND,
            RequestError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::Inbound(_) | RequestError::Body(_) | RequestError::Query(_) => {
                StatusCode::BAD_REQUEST
            }
            RequestError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            RequestError::Secret(_) | RequestError::AuthNotConfigured(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            RequestError::DeletionsNotConfigured => StatusCode::NOT_IMPLEMENTED,
            RequestError::SecretKeyNotSetUp(_)
            | RequestError::JobList(_)
            | RequestError::CannotTellYet => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// What the log may add to the answer: where an unreadable event went wrong.
    pub fn detail(&self) -> Option<&str> {
        match self {
            RequestError::Inbound(InboundError::BadEvent { detail }) => Some(detail),
            _ => None,
        }
    }

    /// True when only the function's log may hold the detail.
    fn is_configuration(&self) -> bool {
        matches!(
            self,
            RequestError::Secret(_) | RequestError::AuthNotConfigured(_)
        )
    }

    /// The answer to the caller.
    pub fn reply(&self, request_id: &str) -> Reply {
        let message = if self.is_configuration() {
            format!("configuration error (request {request_id}); see the function's logs")
        } else {
            self.to_string()
        };
        let reply = Reply::error(self.status(), message);
        match self {
            RequestError::MethodNotAllowed(route) => reply.with_allow(allowed(*route)),
            _ => reply,
        }
    }
}

/// The methods a route takes, as an `Allow` header lists them.
fn allowed(route: Route) -> String {
    let methods: Vec<&str> = route.operations().iter().map(|(m, _)| *m).collect();
    methods.join(", ")
}
