//! `segment-amplitude secret set --secret-id ID --key api_key`: puts one key into a secret's
//! JSON, keeping every other key. `aws secretsmanager put-secret-value` replaces the whole
//! value, so setting the Amplitude key that way would drop the generated bearer token (and
//! every Segment request would be refused). The value is read from standard input, so it never
//! appears on a command line or in a shell's history; what is printed names keys, never values.

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use serde_json::{Map, Value};

/// The keys a secret of this project holds.
const KEYS: [&str; 5] = [
    "api_key",
    "webhook_secret",
    "bearer_token",
    "secret_key",
    "operator_token",
];

/// Sets `key` to `value` in the JSON object of secret `id`; returns the line to print.
pub async fn set(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
    key: &str,
    value: &str,
) -> Result<String, String> {
    if !KEYS.contains(&key) {
        return Err(format!(
            "secret: `{key}` is not a key of this project's secrets ({})",
            KEYS.join(", ")
        ));
    }
    if value.is_empty() {
        return Err("secret: the value read from standard input is empty".into());
    }
    let name = pipeline::ops::secrets::SecretId::new(id).to_string();
    let failed = |what: &str, code: Option<&str>| {
        format!(
            "secret: cannot {what} `{name}` ({})",
            code.unwrap_or("could not reach Secrets Manager")
        )
    };
    let current = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| failed("read", e.code()))?;
    let mut object = match current.secret_string().map(serde_json::from_str::<Value>) {
        Some(Ok(Value::Object(o))) => o,
        None => Map::new(),
        Some(_) => {
            return Err(format!(
                "secret: `{name}` does not hold a JSON object; not changed"
            ));
        }
    };
    object.insert(key.to_owned(), Value::from(value));
    client
        .put_secret_value()
        .secret_id(id)
        .secret_string(Value::Object(object.clone()).to_string())
        .send()
        .await
        .map_err(|e| failed("write", e.code()))?;
    let kept: Vec<&str> = object
        .keys()
        .map(String::as_str)
        .filter(|k| *k != key)
        .collect();
    Ok(format!(
        "set `{key}` in `{name}`; kept {}",
        if kept.is_empty() {
            "nothing else".to_owned()
        } else {
            kept.join(", ")
        }
    ))
}
