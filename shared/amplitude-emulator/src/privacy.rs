//! The User Privacy API (amplitude-api §7, §9.4): deletion requests with Basic auth, and the
//! job listing.

use base64::Engine;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde_json::Value;

use amplitude_wire::DeletionEntry;

use crate::events::{answer, error};
use crate::store::{DeletionJob, Store};

/// At most this many ids per deletion request.
const MAX_IDS: usize = 100;
/// The job listing covers at most about six months.
const MAX_RANGE_DAYS: i32 = 184;

/// The API key of valid Basic credentials; `Err` is the 401 to send.
pub fn authenticate(store: &Store, authorization: Option<&str>) -> Result<String, (u16, Value)> {
    let unauthorized = || error(401, "Invalid credentials");
    let encoded = authorization
        .and_then(|h| h.strip_prefix("Basic "))
        .ok_or_else(unauthorized)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(unauthorized)?;
    let (key, secret) = decoded.split_once(':').ok_or_else(unauthorized)?;
    let config = &store.config;
    let secret_ok = match config.secret_keys.get(key) {
        Some(expected) => expected == secret,
        None => config.secret_keys.is_empty() && !secret.is_empty(),
    };
    if config.key_ok(key) && secret_ok {
        Ok(key.to_owned())
    } else {
        Err(unauthorized())
    }
}

fn today() -> Date {
    TimeZone::UTC.to_datetime(Timestamp::now()).date()
}

fn truthy(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true))) || v.and_then(Value::as_str) == Some("true")
}

/// `POST /api/2/deletions/users`.
pub fn request(store: &mut Store, api_key: &str, body: &[u8]) -> (u16, Value) {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
        return error(400, "Invalid JSON request body");
    };
    let as_list = |k: &str| {
        req.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let user_ids: Vec<String> = as_list("user_ids")
        .iter()
        .filter_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect();
    let amplitude_ids = as_list("amplitude_ids");
    let total = user_ids.len() + amplitude_ids.len();
    if total == 0 {
        return error(400, "Request missing user_ids or amplitude_ids");
    }
    if total > MAX_IDS {
        return error(400, "Too many ids: at most 100 per request");
    }
    let ignore_invalid =
        truthy(req.get("ignore_invalid_id")) || truthy(req.get("ignore_invalid_ids"));
    let (known, invalid): (Vec<String>, Vec<String>) = user_ids
        .into_iter()
        .partition(|u| store.known_users.contains(u));
    if !invalid.is_empty() && !ignore_invalid {
        return answer(
            400,
            serde_json::json!({"code": 400, "error": "Invalid user ids", "invalid_ids": invalid}),
        );
    }
    let requester = req
        .get("requester")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let today = today();
    let day = today
        .checked_add(store.config.deletion_delay_days.days())
        .unwrap_or(today)
        .to_string();
    let entry = |amplitude_id: Value, user_id: Option<String>| DeletionEntry {
        amplitude_id,
        user_id,
        requester: Some(requester.clone()),
        requested_on_day: Some(today.to_string()),
    };
    let entries: Vec<DeletionEntry> = known
        .iter()
        .map(|u| entry(Value::from(amplitude_id(u)), Some(u.clone())))
        .chain(amplitude_ids.iter().map(|a| entry(a.clone(), None)))
        .collect();
    let jobs = &mut store.ingested.deletion_jobs;
    let job = match jobs
        .iter_mut()
        .position(|j| j.day == day && j.api_key == api_key)
    {
        Some(i) => &mut jobs[i],
        None => {
            jobs.push(DeletionJob {
                job: amplitude_wire::DeletionJob {
                    day,
                    status: "staging".into(),
                    ..Default::default()
                },
                api_key: api_key.to_owned(),
            });
            jobs.last_mut().expect("just pushed")
        }
    };
    job.job.amplitude_ids.extend(entries);
    let mut body = job.job.clone();
    if !invalid.is_empty() {
        body.invalid_ids = Some(invalid.into_iter().map(Value::from).collect());
    }
    answer(200, body)
}

/// A stable number standing in for Amplitude's internal id of a user.
fn amplitude_id(user: &str) -> u64 {
    user.bytes().fold(1_469_598_103_934_665_603u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211)
    }) % 10_000_000_000
}

/// `GET /api/2/deletions/users?start_day=YYYY-MM-DD&end_day=YYYY-MM-DD`.
pub fn list(store: &Store, api_key: &str, query: Option<&str>) -> (u16, Value) {
    let params: std::collections::HashMap<String, String> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    // Only the dashed form: `20220201` is what the docs' examples show, but not what they ask.
    let day = |k: &str| {
        params
            .get(k)
            .filter(|d| d.len() == 10 && d.as_bytes()[4] == b'-' && d.as_bytes()[7] == b'-')
            .and_then(|d| d.parse::<Date>().ok())
    };
    let (Some(start), Some(end)) = (day("start_day"), day("end_day")) else {
        return error(400, "start_day and end_day (YYYY-MM-DD) are required");
    };
    let span = (end - start).get_days();
    if !(0..=MAX_RANGE_DAYS).contains(&span) {
        return error(400, "end_day must be after start_day and within 6 months");
    }
    let jobs: Vec<&amplitude_wire::DeletionJob> = store
        .ingested
        .deletion_jobs
        .iter()
        .filter(|j| j.api_key == api_key)
        .filter(|j| j.day.parse::<Date>().is_ok_and(|d| d >= start && d <= end))
        .map(|j| &j.job)
        .collect();
    answer(200, jobs)
}
