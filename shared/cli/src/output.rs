//! The line format of `segment-amplitude map`, a fixed contract other tools drive:
//! `{"index": N, "requests": [{"endpoint", "method", "url", "body"}], "error": null | {"kind", "message"}}`.
//!
//! The bodies are shown as Amplitude receives them: the API key where Amplitude expects it
//! (form endpoints as an object of their fields, the JSON fields decoded), deletions with the
//! `requester` and without credentials (those go in the `Authorization` header).

use mapping::{Body, Plan, Rejection, Request, Settings};
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// The credentials of the settings file: Segment keeps them among its settings, the mapping
/// never sees them.
pub struct Keys {
    api_key: String,
    secret_key: Option<String>,
}

impl Keys {
    /// `apiKey` (required) and `secretKey` of Segment's settings JSON; the error names the key.
    pub fn from_settings(settings: &Value) -> Result<Keys, String> {
        let text = |key: &str| -> Result<Option<String>, String> {
            match settings.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone()).filter(|s| !s.trim().is_empty())),
                Some(_) => Err(format!("settings: `{key}` must be a string")),
            }
        };
        Ok(Keys {
            api_key: text("apiKey")?.ok_or("settings: `apiKey` is required")?,
            secret_key: text("secretKey")?,
        })
    }
}

/// The rejection of a deletion without a secret key (mapping spec §12.2, §13).
const NO_SECRET_KEY: &str =
    "delete: Amplitude deletions need the `secretKey` setting, which is not configured";

/// Maps one JSON Lines input line and appends its output line (with `\n`) to `out`.
/// A line that is not JSON is a rejected event, never an error of the run.
pub fn write_line(index: usize, line: &str, settings: &Settings, keys: &Keys, out: &mut Vec<u8>) {
    let parsed: Result<serde_json_borrow::Value, _> = serde_json::from_str(line);
    let result = match &parsed {
        Ok(message) => mapping::plan(message, settings).and_then(|plan| {
            let deletes = plan
                .requests
                .iter()
                .any(|r| matches!(r.body, Body::Deletion(_)));
            if deletes && keys.secret_key.is_none() {
                Err(Rejection::Configuration(NO_SECRET_KEY.into()))
            } else {
                Ok(plan)
            }
        }),
        Err(e) => Err(Rejection::Invalid(format!(
            "the line is not valid JSON ({e})"
        ))),
    };
    let record = Record {
        index,
        requests: Requests {
            plan: result.as_ref().ok(),
            api_key: &keys.api_key,
            min_id_length: settings.min_id_length,
        },
        error: result.as_ref().err().map(|r| ErrorRecord {
            kind: r.kind(),
            message: r.message(),
        }),
    };
    serde_json::to_writer(&mut *out, &record).expect("writing JSON to a Vec cannot fail");
    out.push(b'\n');
}

#[derive(Serialize)]
struct Record<'r, 'a> {
    index: usize,
    requests: Requests<'r, 'a>,
    error: Option<ErrorRecord<'r>>,
}

#[derive(Serialize)]
struct ErrorRecord<'r> {
    kind: &'static str,
    message: &'r str,
}

struct Requests<'r, 'a> {
    plan: Option<&'r Plan<'a>>,
    api_key: &'r str,
    min_id_length: Option<u32>,
}

impl Serialize for Requests<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let requests: &[Request<'_>] = self.plan.map_or(&[], |p| &p.requests);
        let mut seq = s.serialize_seq(Some(requests.len()))?;
        for r in requests {
            seq.serialize_element(&RequestRecord {
                endpoint: r.endpoint.as_str(),
                method: "POST",
                url: r.url,
                body: KeyedBody {
                    api_key: self.api_key,
                    body: &r.body,
                    min_id_length: self.min_id_length,
                },
            })?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct RequestRecord<B> {
    endpoint: &'static str,
    method: &'static str,
    url: &'static str,
    body: B,
}

/// A body as Amplitude receives it: with `options.min_id_length` when `minIdLength` is set,
/// on every endpoint but deletions, as the client sends it (spec §17.5).
struct KeyedBody<'r, 'a> {
    api_key: &'r str,
    body: &'r Body<'a>,
    min_id_length: Option<u32>,
}

impl Serialize for KeyedBody<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        match self.body {
            Body::Deletion(d) => {
                map.serialize_entry("user_ids", &d.user_ids)?;
                map.serialize_entry("requester", amplitude_client::DEFAULT_REQUESTER)?;
            }
            Body::Events(e) => {
                map.serialize_entry("api_key", self.api_key)?;
                map.serialize_entry("events", e)?;
            }
            Body::Identify(i) => {
                map.serialize_entry("api_key", self.api_key)?;
                map.serialize_entry("identification", i)?;
            }
            Body::GroupIdentify(g) => {
                map.serialize_entry("api_key", self.api_key)?;
                map.serialize_entry("identification", g)?;
            }
            Body::UserMap(m) => {
                map.serialize_entry("api_key", self.api_key)?;
                map.serialize_entry("mapping", m)?;
            }
        }
        if let Some(n) = self.min_id_length
            && !matches!(self.body, Body::Deletion(_))
        {
            map.serialize_entry("options", &serde_json::json!({"min_id_length": n}))?;
        }
        map.end()
    }
}
