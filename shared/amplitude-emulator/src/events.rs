//! `POST /2/httpapi` and `POST /batch` (amplitude-api §2, §3, §9.2), checked in this fixed
//! order: size, body, JSON, required fields, API key, event count, per-event fields, silenced
//! devices, rate limit, daily quota; then dedup and store.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};

use crate::config::EmulatorConfig;
use crate::store::Store;

/// Event types Amplitude reserves (amplitude-api §2.2).
const RESERVED_EVENT_TYPES: [&str; 6] = [
    "[Amplitude] Start Session",
    "[Amplitude] End Session",
    "[Amplitude] Revenue",
    "[Amplitude] Revenue (Verified)",
    "[Amplitude] Revenue (Unverified)",
    "[Amplitude] Merged User",
];

/// Ids Amplitude refuses (amplitude-api §2.3).
const INVALID_IDS: [&str; 15] = [
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    HttpApi,
    Batch,
}

impl Kind {
    pub fn path(self) -> &'static str {
        match self {
            Kind::HttpApi => "/2/httpapi",
            Kind::Batch => "/batch",
        }
    }
}

/// A validated request: the key and its events.
pub struct Accepted {
    pub api_key: String,
    pub events: Vec<Value>,
}

pub fn error(status: u16, message: &str) -> (u16, Value) {
    (status, json!({"code": status, "error": message}))
}

/// Checks a request up to (not including) rate limits; `Err` is the response to send.
pub fn validate(
    config: &EmulatorConfig,
    kind: Kind,
    body: &[u8],
) -> Result<Accepted, (u16, Value)> {
    let max_bytes = match kind {
        Kind::HttpApi => config.httpapi_max_bytes,
        Kind::Batch => config.batch_max_bytes,
    };
    if body.len() > max_bytes {
        return Err(error(413, "Payload too large"));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(error(400, "Missing request body"));
    }
    let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(body) else {
        return Err(error(400, "Invalid JSON request body"));
    };
    let missing = |field: &str| {
        (
            400,
            json!({"code": 400, "error": "Request missing required field", "missing_field": field}),
        )
    };
    let api_key = match request.get("api_key") {
        Some(Value::String(k)) => k.clone(),
        _ => return Err(missing("api_key")),
    };
    let events = match request.remove("events") {
        Some(Value::Array(e)) => e,
        _ => return Err(missing("events")),
    };
    if !config.key_ok(&api_key) {
        return Err(error(400, &format!("Invalid API key: {api_key}")));
    }
    if events.len() > config.max_events {
        return Err(error(413, "Payload too large"));
    }
    let min_len = request
        .get("options")
        .and_then(|o| o.get("min_id_length"))
        .and_then(Value::as_u64)
        .map_or(config.min_id_length, |n| n as usize);
    check_events(config, &events, min_len)?;
    Ok(Accepted { api_key, events })
}

fn check_events(
    config: &EmulatorConfig,
    events: &[Value],
    min_len: usize,
) -> Result<(), (u16, Value)> {
    let mut invalid: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut missing: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut short: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        let Some(e) = e.as_object() else {
            invalid.entry("event").or_default().push(i);
            continue;
        };
        match e.get("event_type") {
            Some(Value::String(t)) if !t.is_empty() => {
                if RESERVED_EVENT_TYPES.contains(&t.as_str()) {
                    invalid.entry("event_type").or_default().push(i);
                }
            }
            _ => missing.entry("event_type").or_default().push(i),
        }
        let mut has_id = false;
        for field in ["user_id", "device_id"] {
            match e.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::String(id))
                    if INVALID_IDS.contains(&id.to_ascii_lowercase().as_str()) =>
                {
                    invalid.entry(field).or_default().push(i)
                }
                Some(Value::String(id)) if id.chars().count() < min_len => {
                    short.entry(field).or_default().push(i)
                }
                Some(Value::String(_)) => has_id = true,
                Some(_) => invalid.entry(field).or_default().push(i),
            }
        }
        if !has_id
            && !invalid
                .values()
                .chain(short.values())
                .any(|v| v.contains(&i))
        {
            missing.entry("user_id").or_default().push(i);
        }
        if let Some(t) = e.get("time")
            && !(t.is_i64() || t.is_u64())
        {
            invalid.entry("time").or_default().push(i);
        }
    }
    if invalid.is_empty() && missing.is_empty() && short.is_empty() {
        return Ok(());
    }
    let first_only = config.first_index_only;
    let render = |m: BTreeMap<&str, Vec<usize>>| -> Value {
        let mut out = Map::new();
        for (k, mut v) in m {
            if first_only {
                v.truncate(1);
            }
            out.insert(k.to_owned(), json!(v));
        }
        Value::Object(out)
    };
    let (error, short_only) = if invalid.is_empty() && missing.is_empty() {
        ("Invalid id length for user_id or device_id", true)
    } else {
        ("Invalid field values on some events", false)
    };
    let mut body = json!({"code": 400, "error": error});
    let o = body.as_object_mut().expect("object");
    if !invalid.is_empty() {
        o.insert("events_with_invalid_fields".into(), render(invalid));
    }
    if !missing.is_empty() {
        o.insert("events_with_missing_fields".into(), render(missing));
    }
    if !short.is_empty() || short_only {
        o.insert("events_with_invalid_id_lengths".into(), render(short));
    }
    Err((400, body))
}

fn ids(e: &Value) -> impl Iterator<Item = (bool, &str)> + '_ {
    [("user_id", true), ("device_id", false)]
        .into_iter()
        .filter_map(|(f, is_user)| e.get(f).and_then(Value::as_str).map(|id| (is_user, id)))
}

/// Silenced devices, rate limit and daily quota; `Err` is the response to send.
pub fn throttle(store: &mut Store, kind: Kind, accepted: &Accepted) -> Result<(), (u16, Value)> {
    let silenced: Vec<usize> = accepted
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.get("device_id")
                .and_then(Value::as_str)
                .is_some_and(|d| store.config.silenced_devices.contains(d))
        })
        .map(|(i, _)| i)
        .collect();
    if !silenced.is_empty() {
        return Err((
            400,
            json!({"code": 400, "error": "Events silenced for device_id",
                "eps_threshold": store.config.httpapi_eps,
                "silenced_devices": store.config.silenced_devices, "silenced_events": silenced,
                "throttled_devices": {}, "throttled_events": [], "exceeded_daily_quota_devices": {}}),
        ));
    }
    let mut counts: HashMap<(bool, &str), u32> = HashMap::new();
    for e in &accepted.events {
        for id in ids(e) {
            *counts.entry(id).or_default() += 1;
        }
    }
    let eps = match kind {
        Kind::HttpApi => store.config.httpapi_eps,
        Kind::Batch => store.config.batch_eps,
    };
    let unique: Vec<(bool, &str)> = counts.keys().copied().collect();
    let quota = store.over_daily_quota(&accepted.api_key, &unique);
    if !quota.is_empty() {
        let users: Map<String, Value> = quota
            .iter()
            .filter(|((u, _), _)| *u)
            .map(|((_, id), n)| (id.clone(), json!(n)))
            .collect();
        let devices: Map<String, Value> = quota
            .iter()
            .filter(|((u, _), _)| !*u)
            .map(|((_, id), n)| (id.clone(), json!(n)))
            .collect();
        return Err(too_many(
            eps,
            Map::new(),
            Map::new(),
            Vec::new(),
            users,
            devices,
        ));
    }
    let over = store.rate_check(&accepted.api_key, eps, &counts);
    if over.is_empty() {
        return Ok(());
    }
    Err(throttled_body(eps, &accepted.events, &over))
}

/// The documented 429 body naming these users/devices and their events' indices.
pub fn throttled_body(eps: u32, events: &[Value], over: &[((bool, String), u32)]) -> (u16, Value) {
    let users: Map<String, Value> = over
        .iter()
        .filter(|((u, _), _)| *u)
        .map(|((_, id), n)| (id.clone(), json!(n)))
        .collect();
    let devices: Map<String, Value> = over
        .iter()
        .filter(|((u, _), _)| !*u)
        .map(|((_, id), n)| (id.clone(), json!(n)))
        .collect();
    let indices: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            ids(e).any(|(u, id)| over.iter().any(|((ou, oid), _)| *ou == u && *oid == id))
        })
        .map(|(i, _)| i)
        .collect();
    too_many(eps, users, devices, indices, Map::new(), Map::new())
}

fn too_many(
    eps: u32,
    users: Map<String, Value>,
    devices: Map<String, Value>,
    indices: Vec<usize>,
    quota_users: Map<String, Value>,
    quota_devices: Map<String, Value>,
) -> (u16, Value) {
    (
        429,
        json!({"code": 429, "error": "Too many requests for some devices and users",
            "eps_threshold": eps, "throttled_devices": devices, "throttled_users": users,
            "throttled_events": indices, "exceeded_daily_quota_users": quota_users,
            "exceeded_daily_quota_devices": quota_devices}),
    )
}

/// Stores the events and answers the documented 200 body.
pub fn ingest(store: &mut Store, kind: Kind, accepted: Accepted, body_len: usize) -> (u16, Value) {
    let n = accepted.events.len();
    let endpoint = match kind {
        Kind::HttpApi => "httpapi",
        Kind::Batch => "batch",
    };
    store.store_events(endpoint, &accepted.api_key, accepted.events);
    (
        200,
        json!({"code": 200, "events_ingested": n, "payload_size_bytes": body_len,
            "server_upload_time": now_ms()}),
    )
}

pub fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}
