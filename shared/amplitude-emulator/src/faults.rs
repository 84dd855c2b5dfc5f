//! Fault injection: a script of what to serve next, consumed in order by the routes it names.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One scripted response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// The path it applies to (`/2/httpapi`, `/identify`, …); any route when absent.
    #[serde(default)]
    pub route: Option<String>,
    /// Wait this long before acting (longer than the client's timeout = a timeout).
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(flatten)]
    pub action: FaultAction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer this status (with this JSON body, or `{"code": status}`); nothing is ingested.
    Status {
        status: u16,
        #[serde(default)]
        body: Option<Value>,
    },
    /// 429 for the events of these users/devices, with the documented body; nothing ingested.
    Throttle {
        #[serde(default)]
        users: Vec<String>,
        #[serde(default)]
        devices: Vec<String>,
    },
    /// 429 naming these users/devices as over their daily quota.
    DailyQuota {
        #[serde(default)]
        users: Vec<String>,
        #[serde(default)]
        devices: Vec<String>,
    },
    /// 400 listing these event indices in `events_with_invalid_fields.<field>`.
    InvalidIndices { indices: Vec<usize>, field: String },
    /// Ingest the first half of the request's items, then answer `status` (e.g. 500).
    AcceptHalf { status: u16 },
    /// Ingest the whole request as usual, then wait `after_ms` and answer `status`: "stored,
    /// then 500" (`status` 500) or "stored, then too slow" (`status` 200 with `after_ms` longer
    /// than the client's timeout). The client cannot tell it was stored.
    StoreThen {
        status: u16,
        #[serde(default)]
        after_ms: u64,
    },
    /// Answer 200 with `{"code": code}` in the body (RudderStack has seen 200 + code 429).
    CodeInBody { code: u16 },
    /// Close the connection without a complete response.
    Reset,
    /// Only the delay; then the request is handled normally.
    Pass,
}

impl Fault {
    pub fn applies_to(&self, route: &str) -> bool {
        self.route.as_deref().is_none_or(|r| r == route)
    }

    /// Shorthand for a plain status on a route.
    pub fn status(route: &str, status: u16) -> Fault {
        Fault {
            route: Some(route.to_owned()),
            delay_ms: 0,
            action: FaultAction::Status { status, body: None },
        }
    }
}
