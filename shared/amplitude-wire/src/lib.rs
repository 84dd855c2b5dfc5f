//! Amplitude's answers as typed structs (`../shared/spec/amplitude-api.md` §2.6, §3, §7): the
//! client reads them to decide what each response means, the emulator writes them, and the
//! deletion audit log reads the jobs. One definition, so the two sides cannot drift apart.
//!
//! Reading is lenient: every field is optional and a field of an unexpected shape is treated as
//! absent, because a misbehaving or future Amplitude must never make the client panic or lose
//! the rest of an answer.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_with::skip_serializing_none;

/// The ids Amplitude refuses whatever their length (amplitude-api §2.3): an event that carries
/// one as `user_id` or `device_id` gets a 400. The mapping drops them before sending; the
/// emulator refuses them.
pub const REFUSED_IDS: [&str; 15] = [
    "anonymous",
    "nil",
    "none",
    "null",
    "n/a",
    "na",
    "undefined",
    "unknown",
    "\"\"",
    "",
    "00000000-0000-0000-0000-000000000000",
    "{}",
    "lmy47d",
    "0",
    "-1",
];

/// True for an id of [`REFUSED_IDS`], compared without regard to ASCII case (the docs list
/// them in lower case; `Undefined` from a client is as much a placeholder as `undefined`).
pub fn is_refused_id(id: &str) -> bool {
    REFUSED_IDS.iter().any(|r| r.eq_ignore_ascii_case(id))
}

/// The event type whose `group_properties` update the groups in its `groups` (amplitude-api
/// §2.2). The mapping sends a group's non-idempotent operations as such events (mapping §9.4);
/// the emulator applies them to the groups it holds.
pub const GROUP_IDENTIFY_EVENT: &str = "$groupidentify";

/// `{field: [event index]}`, as in `events_with_invalid_fields`.
pub type IndexMap = BTreeMap<String, Vec<usize>>;
/// `{user or device id: events per second (or per day)}`, as in `throttled_users`.
pub type IdCounts = BTreeMap<String, u64>;

/// The body of a 2xx from `/2/httpapi` and `/batch` (amplitude-api §2.6).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SuccessBody {
    pub code: u16,
    pub events_ingested: usize,
    pub payload_size_bytes: usize,
    pub server_upload_time: u64,
}

/// The body of a 400, 413 or 429 (amplitude-api §2.6, §3). One struct for all three: Amplitude
/// uses one family of keys, and which of them are present decides what the client does.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    #[serde(deserialize_with = "lenient")]
    pub code: Option<u16>,
    #[serde(deserialize_with = "lenient")]
    pub error: Option<String>,
    /// A request-level field the request lacks (`api_key`, `events`).
    #[serde(deserialize_with = "lenient")]
    pub missing_field: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub events_with_invalid_fields: Option<IndexMap>,
    #[serde(deserialize_with = "lenient")]
    pub events_with_missing_fields: Option<IndexMap>,
    #[serde(deserialize_with = "lenient")]
    pub events_with_invalid_id_lengths: Option<IndexMap>,
    #[serde(deserialize_with = "lenient")]
    pub eps_threshold: Option<u64>,
    #[serde(deserialize_with = "lenient")]
    pub silenced_devices: Option<Vec<String>>,
    #[serde(deserialize_with = "lenient")]
    pub silenced_events: Option<Vec<usize>>,
    #[serde(deserialize_with = "lenient")]
    pub throttled_devices: Option<IdCounts>,
    #[serde(deserialize_with = "lenient")]
    pub throttled_users: Option<IdCounts>,
    #[serde(deserialize_with = "lenient")]
    pub throttled_events: Option<Vec<usize>>,
    #[serde(deserialize_with = "lenient")]
    pub exceeded_daily_quota_users: Option<IdCounts>,
    #[serde(deserialize_with = "lenient")]
    pub exceeded_daily_quota_devices: Option<IdCounts>,
}

impl ErrorBody {
    /// Reads a response body; anything that is not a JSON object (form endpoints answer plain
    /// text) reads as an empty body.
    pub fn parse(body: &[u8]) -> ErrorBody {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// A body with `code` and `error` only (e.g. `{"code": 413, "error": "Payload too large"}`).
    pub fn new(code: u16, error: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code: Some(code),
            error: Some(error.into()),
            ..ErrorBody::default()
        }
    }

    /// The index maps of a 400, with their key names.
    pub fn index_maps(&self) -> [(&'static str, Option<&IndexMap>); 3] {
        [
            (
                "events_with_invalid_fields",
                self.events_with_invalid_fields.as_ref(),
            ),
            (
                "events_with_missing_fields",
                self.events_with_missing_fields.as_ref(),
            ),
            (
                "events_with_invalid_id_lengths",
                self.events_with_invalid_id_lengths.as_ref(),
            ),
        ]
    }

    /// True when the body names events by index (index maps, `silenced_events`,
    /// `throttled_events`): then it is about those events, whatever its `error` says.
    pub fn lists_events(&self) -> bool {
        let listed = |v: &Option<Vec<usize>>| v.as_ref().is_some_and(|l| !l.is_empty());
        self.index_maps()
            .iter()
            .any(|(_, m)| m.is_some_and(|m| m.values().any(|v| !v.is_empty())))
            || listed(&self.silenced_events)
            || listed(&self.throttled_events)
    }
}

/// One deletion job of the User Privacy API (amplitude-api §7.1–§7.2). Fields Amplitude adds
/// later are kept in `other`, so the job is passed on as Amplitude sent it.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeletionJob {
    #[serde(default)]
    pub day: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub amplitude_ids: Vec<DeletionEntry>,
    #[serde(default, deserialize_with = "lenient")]
    pub invalid_ids: Option<Vec<Value>>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// One user of a deletion job.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeletionEntry {
    #[serde(default)]
    pub amplitude_id: Value,
    #[serde(default, deserialize_with = "lenient")]
    pub user_id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub requester: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub requested_on_day: Option<String>,
}

/// The answer to a deletion request: one job, or (with `delete_from_org`) a list of jobs.
pub fn parse_deletion_jobs(body: &[u8]) -> Option<Vec<DeletionJob>> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Jobs {
        Many(Vec<DeletionJob>),
        One(DeletionJob),
    }
    match serde_json::from_slice(body).ok()? {
        Jobs::Many(list) => Some(list),
        Jobs::One(job) => Some(vec![job]),
    }
}

/// A field of an unexpected shape reads as absent instead of failing the whole body.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_documented_429_body_reads_whole() {
        let body = json!({"code": 429, "error": "Too many requests for some devices and users",
            "eps_threshold": 30, "throttled_devices": {"d": 31}, "throttled_users": {"u": 40},
            "throttled_events": [0, 2], "exceeded_daily_quota_users": {"q": 500001},
            "exceeded_daily_quota_devices": {}});
        let e = ErrorBody::parse(body.to_string().as_bytes());
        assert_eq!(e.code, Some(429));
        assert_eq!(e.throttled_events, Some(vec![0, 2]));
        assert_eq!(e.throttled_users.unwrap()["u"], 40);
        assert_eq!(e.exceeded_daily_quota_users.unwrap()["q"], 500_001);
    }

    #[test]
    fn odd_shapes_read_as_absent_never_as_a_failure() {
        let body = json!({"code": "400", "error": 7, "events_with_invalid_fields": {"time": ["x"]},
            "silenced_events": [1], "throttled_events": "all"});
        let e = ErrorBody::parse(body.to_string().as_bytes());
        assert_eq!(
            e,
            ErrorBody {
                silenced_events: Some(vec![1]),
                ..ErrorBody::default()
            }
        );
        assert_eq!(ErrorBody::parse(b"success"), ErrorBody::default());
        assert!(e.lists_events());
        assert!(!ErrorBody::new(400, "Invalid JSON request body").lists_events());
    }

    #[test]
    fn deletion_answers_are_one_job_or_a_list_and_keep_unknown_fields() {
        let one = json!({"day": "2026-12-03", "status": "staging", "app": 7,
            "amplitude_ids": [{"amplitude_id": 1, "user_id": "u", "requester": "r",
                "requested_on_day": "2026-11-30"}]});
        let jobs = parse_deletion_jobs(one.to_string().as_bytes()).unwrap();
        assert_eq!(jobs[0].amplitude_ids[0].user_id.as_deref(), Some("u"));
        assert_eq!(serde_json::to_value(&jobs[0]).unwrap(), one);
        let many = parse_deletion_jobs(json!([one, one]).to_string().as_bytes()).unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(parse_deletion_jobs(b"nope"), None);
    }
}
