//! `POST /2/httpapi` and `POST /batch` (amplitude-api §2, §3, §9.2), checked in this fixed
//! order: size, body, JSON, required fields, API key, event count, per-event fields, silenced
//! devices, rate limit, daily quota; then dedup and store.

use std::collections::{BTreeMap, HashMap};

use amplitude_wire::{ErrorBody, IdCounts, IndexMap, SuccessBody};
use serde_json::Value;

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

/// An answer with one of Amplitude's JSON bodies.
pub fn answer(status: u16, body: impl serde::Serialize) -> (u16, Value) {
    (status, serde_json::to_value(body).unwrap_or(Value::Null))
}

pub fn error(status: u16, message: &str) -> (u16, Value) {
    answer(status, ErrorBody::new(status, message))
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
        answer(
            400,
            ErrorBody {
                missing_field: Some(field.to_owned()),
                ..ErrorBody::new(400, "Request missing required field")
            },
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

/// The event field that stores an event without touching its user's properties.
pub const SKIP_SYNC: &str = "$skip_user_properties_sync";

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
                Some(Value::String(id)) if amplitude_wire::is_refused_id(id) => {
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
        // amplitude-api §2.2: `user_agent` is a string, `$skip_user_properties_sync` a bool.
        if e.get("user_agent").is_some_and(|v| !v.is_string()) {
            invalid.entry("user_agent").or_default().push(i);
        }
        if e.get(SKIP_SYNC).is_some_and(|v| !v.is_boolean()) {
            invalid.entry(SKIP_SYNC).or_default().push(i);
        }
    }
    if invalid.is_empty() && missing.is_empty() && short.is_empty() {
        return Ok(());
    }
    let first_only = config.first_index_only;
    let render = |m: BTreeMap<&str, Vec<usize>>| -> Option<IndexMap> {
        let out: IndexMap = m
            .into_iter()
            .map(|(k, mut v)| {
                if first_only {
                    v.truncate(1);
                }
                (k.to_owned(), v)
            })
            .collect();
        Some(out)
    };
    let (error, short_only) = if invalid.is_empty() && missing.is_empty() {
        ("Invalid id length for user_id or device_id", true)
    } else {
        ("Invalid field values on some events", false)
    };
    let body = ErrorBody {
        events_with_invalid_fields: (!invalid.is_empty()).then(|| render(invalid)).flatten(),
        events_with_missing_fields: (!missing.is_empty()).then(|| render(missing)).flatten(),
        events_with_invalid_id_lengths: (!short.is_empty() || short_only)
            .then(|| render(short))
            .flatten(),
        ..ErrorBody::new(400, error)
    };
    Err(answer(400, body))
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
        return Err(answer(
            400,
            ErrorBody {
                eps_threshold: Some(u64::from(store.config.httpapi_eps)),
                silenced_devices: Some(store.config.silenced_devices.iter().cloned().collect()),
                silenced_events: Some(silenced),
                throttled_devices: Some(IdCounts::new()),
                throttled_events: Some(Vec::new()),
                exceeded_daily_quota_devices: Some(IdCounts::new()),
                ..ErrorBody::new(400, "Events silenced for device_id")
            },
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
        let (users, devices) = split_ids(quota.iter().map(|(id, n)| (id, *n)));
        return Err(too_many(
            eps,
            IdCounts::new(),
            IdCounts::new(),
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

/// Users and devices (`(is_user, id)`) with their counts, split into the two maps of a 429.
fn split_ids<'i>(ids: impl Iterator<Item = (&'i (bool, String), u64)>) -> (IdCounts, IdCounts) {
    let (mut users, mut devices) = (IdCounts::new(), IdCounts::new());
    for ((is_user, id), n) in ids {
        let target = if *is_user { &mut users } else { &mut devices };
        target.insert(id.clone(), n);
    }
    (users, devices)
}

/// The documented 429 body naming these users/devices and their events' indices.
pub fn throttled_body(eps: u32, events: &[Value], over: &[((bool, String), u32)]) -> (u16, Value) {
    let (users, devices) = split_ids(over.iter().map(|(id, n)| (id, u64::from(*n))));
    let indices: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            ids(e).any(|(u, id)| over.iter().any(|((ou, oid), _)| *ou == u && *oid == id))
        })
        .map(|(i, _)| i)
        .collect();
    too_many(
        eps,
        users,
        devices,
        indices,
        IdCounts::new(),
        IdCounts::new(),
    )
}

fn too_many(
    eps: u32,
    users: IdCounts,
    devices: IdCounts,
    indices: Vec<usize>,
    quota_users: IdCounts,
    quota_devices: IdCounts,
) -> (u16, Value) {
    answer(
        429,
        ErrorBody {
            eps_threshold: Some(u64::from(eps)),
            throttled_devices: Some(devices),
            throttled_users: Some(users),
            throttled_events: Some(indices),
            exceeded_daily_quota_users: Some(quota_users),
            exceeded_daily_quota_devices: Some(quota_devices),
            ..ErrorBody::new(429, "Too many requests for some devices and users")
        },
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
    answer(
        200,
        SuccessBody {
            code: 200,
            events_ingested: n,
            payload_size_bytes: body_len,
            server_upload_time: now_ms(),
        },
    )
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
