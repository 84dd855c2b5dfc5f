//! The typed result of mapping one Segment message: the Amplitude requests to send, or why none.

use crate::amplitude::{Deletion, Event, GroupIdentification, Identification, UserMapping};
use crate::settings::Region;

/// The Amplitude API a request goes to. Serialises as its [`Endpoint::as_str`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// HTTP V2, `/2/httpapi` (JSON).
    HttpApi,
    /// Batch Event Upload, `/batch` (JSON), when `sendToBatchEndpoint` is on.
    Batch,
    /// Identify, `/identify` (form-encoded).
    Identify,
    /// Group Identify, `/groupidentify` (form-encoded).
    GroupIdentify,
    /// User Mapping, `/usermap` (form-encoded).
    UserMap,
    /// User Privacy API, `/api/2/deletions/users` (JSON, Basic auth).
    Deletion,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 6] = [
        Endpoint::HttpApi,
        Endpoint::Batch,
        Endpoint::Identify,
        Endpoint::GroupIdentify,
        Endpoint::UserMap,
        Endpoint::Deletion,
    ];

    /// The name used in the `map` command's output and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::HttpApi => "httpapi",
            Endpoint::Batch => "batch",
            Endpoint::Identify => "identify",
            Endpoint::GroupIdentify => "groupidentify",
            Endpoint::UserMap => "usermap",
            Endpoint::Deletion => "deletion",
        }
    }

    /// The endpoint [`Endpoint::as_str`] names.
    pub fn from_name(name: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// The URL on Amplitude's hosts for a region (spec §2.2).
    pub fn url(self, region: Region) -> &'static str {
        match (region, self) {
            (Region::Standard, Endpoint::HttpApi) => "https://api2.amplitude.com/2/httpapi",
            (Region::Standard, Endpoint::Batch) => "https://api2.amplitude.com/batch",
            (Region::Standard, Endpoint::Identify) => "https://api2.amplitude.com/identify",
            (Region::Standard, Endpoint::GroupIdentify) => {
                "https://api2.amplitude.com/groupidentify"
            }
            (Region::Standard, Endpoint::UserMap) => "https://api.amplitude.com/usermap",
            (Region::Standard, Endpoint::Deletion) => "https://amplitude.com/api/2/deletions/users",
            (Region::Eu, Endpoint::HttpApi) => "https://api.eu.amplitude.com/2/httpapi",
            (Region::Eu, Endpoint::Batch) => "https://api.eu.amplitude.com/batch",
            (Region::Eu, Endpoint::Identify) => "https://api.eu.amplitude.com/identify",
            (Region::Eu, Endpoint::GroupIdentify) => "https://api.eu.amplitude.com/groupidentify",
            (Region::Eu, Endpoint::UserMap) => "https://api.eu.amplitude.com/usermap",
            (Region::Eu, Endpoint::Deletion) => {
                "https://analytics.eu.amplitude.com/api/2/deletions/users"
            }
        }
    }

    /// The path part of the URL (the same on every host), for clients with a base-URL override.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::HttpApi => "/2/httpapi",
            Endpoint::Batch => "/batch",
            Endpoint::Identify => "/identify",
            Endpoint::GroupIdentify => "/groupidentify",
            Endpoint::UserMap => "/usermap",
            Endpoint::Deletion => "/api/2/deletions/users",
        }
    }

    /// Form-encoded endpoints carry their JSON in form fields.
    pub fn is_form(self) -> bool {
        matches!(
            self,
            Endpoint::Identify | Endpoint::GroupIdentify | Endpoint::UserMap
        )
    }
}

/// What a request carries. Each variant holds a list so a transport can merge the bodies of
/// several messages into one request. Serialises as its objects (without any key: the delivery
/// frames them with the credentials).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Body<'a> {
    Events(Vec<Event<'a>>),
    Identify(Vec<Identification<'a>>),
    GroupIdentify(Vec<GroupIdentification<'a>>),
    UserMap(Vec<UserMapping<'a>>),
    Deletion(Deletion<'a>),
}

/// One planned Amplitude request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request<'a> {
    pub endpoint: Endpoint,
    pub url: &'static str,
    pub body: Body<'a>,
}

impl<'a> Request<'a> {
    pub(crate) fn new(endpoint: Endpoint, region: Region, body: Body<'a>) -> Self {
        Request {
            endpoint,
            url: endpoint.url(region),
            body,
        }
    }
}

/// The requests one Segment message becomes, in the order they must be sent. Empty when the
/// settings or the sender skip the message (a page no page setting sends, `Amplitude: false`),
/// and then `skipped` says why: the answer to Segment and the logs name the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan<'a> {
    pub requests: Vec<Request<'a>>,
    /// Why there is nothing to send; set only on a plan without requests.
    pub skipped: Option<String>,
}

impl<'a> Plan<'a> {
    /// A plan that sends these requests, in this order.
    pub(crate) fn sending(requests: Vec<Request<'a>>) -> Self {
        Plan {
            requests,
            skipped: None,
        }
    }

    /// A plan that sends nothing, and why.
    pub(crate) fn skipped(reason: String) -> Self {
        Plan {
            requests: Vec::new(),
            skipped: Some(reason),
        }
    }

    /// Spec §18: gives every event of the plan without a session id this one (the session the
    /// `sessions` stage chose for the message, or `-1`: out of session). Identifications,
    /// `$identify` and `$groupidentify` events never get one: they change properties, they are
    /// not something the user did.
    pub fn set_session_id(&mut self, id: i64) {
        for request in &mut self.requests {
            if let Body::Events(events) = &mut request.body {
                for event in events.iter_mut() {
                    let changes_properties = [
                        crate::amplitude::IDENTIFY_EVENT,
                        crate::amplitude::GROUP_IDENTIFY_EVENT,
                    ]
                    .contains(&event.event_type.as_ref());
                    if event.session_id.is_none() && !changes_properties {
                        event.session_id = Some(id);
                    }
                }
            }
        }
    }
}

/// Why a message produces no request. None of these can succeed on a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The message lacks what Amplitude needs (spec §13); the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// A call type or feature this destination does not handle with these settings.
    #[error("{0}")]
    Unsupported(String),
    /// The settings do not allow the call (e.g. a deletion without a secret key).
    #[error("{0}")]
    Configuration(String),
}

impl Rejection {
    /// `invalid`, `unsupported` or `configuration`.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::Invalid(_) => "invalid",
            Rejection::Unsupported(_) => "unsupported",
            Rejection::Configuration(_) => "configuration",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Rejection::Invalid(m) | Rejection::Unsupported(m) | Rejection::Configuration(m) => m,
        }
    }
}
