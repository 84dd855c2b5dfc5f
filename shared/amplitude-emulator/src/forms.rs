//! `POST /identify`, `/groupidentify` and `/usermap` (amplitude-api §4–§6, §9.3): form fields
//! from the body or the query string, JSON values of one object or an array.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::config::EmulatorConfig;
use crate::events::error;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Identify,
    GroupIdentify,
    UserMap,
}

impl Kind {
    pub fn path(self) -> &'static str {
        match self {
            Kind::Identify => "/identify",
            Kind::GroupIdentify => "/groupidentify",
            Kind::UserMap => "/usermap",
        }
    }

    fn field(self) -> &'static str {
        match self {
            Kind::UserMap => "mapping",
            _ => "identification",
        }
    }

    fn max_items(self) -> usize {
        match self {
            Kind::Identify => usize::MAX,
            Kind::GroupIdentify => 1024,
            Kind::UserMap => 2000,
        }
    }
}

pub struct Accepted {
    pub items: Vec<Value>,
}

/// The form fields of the body and the query string (the body wins).
pub fn fields(query: Option<&str>, body: &[u8]) -> HashMap<String, String> {
    let mut f: HashMap<String, String> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    f.extend(form_urlencoded::parse(body).into_owned());
    f
}

/// Validates a form request; `Err` is the response to send.
pub fn validate(
    config: &EmulatorConfig,
    kind: Kind,
    fields: &HashMap<String, String>,
    body_len: usize,
) -> Result<Accepted, (u16, Value)> {
    if body_len > config.form_max_bytes {
        return Err(error(413, "Payload too large"));
    }
    let Some(api_key) = fields.get("api_key") else {
        return Err((
            400,
            json!({"code": 400, "error": "Request missing required field", "missing_field": "api_key"}),
        ));
    };
    if !config.key_ok(api_key) {
        return Err(error(400, &format!("Invalid API key: {api_key}")));
    }
    let bad = || {
        (
            400,
            Value::String(format!(
                "missing_event: `{}` is missing or malformed",
                kind.field()
            )),
        )
    };
    let parsed: Value = fields
        .get(kind.field())
        .and_then(|v| serde_json::from_str(v).ok())
        .ok_or_else(bad)?;
    let items = match parsed {
        Value::Array(a) => a,
        Value::Object(_) => vec![parsed],
        _ => return Err(bad()),
    };
    if items.is_empty() {
        return Err(bad());
    }
    if items.len() > kind.max_items() {
        return Err(error(413, "Payload too large"));
    }
    let present = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    let valid = |v: &Value| match kind {
        Kind::Identify => present(v, "user_id") || present(v, "device_id"),
        // amplitude-api §5: `group_value` is one string; an array is refused.
        Kind::GroupIdentify => present(v, "group_type") && present(v, "group_value"),
        Kind::UserMap => {
            present(v, "user_id")
                && (present(v, "global_user_id") || v.get("unmap") == Some(&Value::Bool(true)))
        }
    };
    if !items.iter().all(valid) {
        return Err(bad());
    }
    Ok(Accepted { items })
}

pub fn ingest(store: &mut Store, kind: Kind, items: Vec<Value>) -> (u16, Value) {
    match kind {
        Kind::Identify => store.store_identifies(items),
        Kind::GroupIdentify => store.store_group_identifies(items),
        Kind::UserMap => store.ingested.mappings.extend(items),
    }
    (200, Value::String("success".into()))
}
