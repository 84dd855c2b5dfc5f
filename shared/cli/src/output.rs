//! The line format of `segment-amplitude map`, a fixed contract other tools drive:
//! `{"index": N, "requests": [{"endpoint", "method", "url", "body"}], "error": null | {"kind", "message"}}`,
//! and `"skipped": "<why>"` on a line whose message maps to nothing.
//!
//! The bodies are shown as Amplitude receives them: the API key where Amplitude expects it
//! (form endpoints as an object of their fields, the JSON fields decoded), deletions with the
//! `requester` and without credentials (those go in the `Authorization` header).

use mapping::{Body, Plan, Rejection, Request, Settings};
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

use mapping::json_key as key;
use mapping::write::{self, Fields};

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
///
/// The line is written by `mapping::write` (the keys of the objects as literal bytes: 9% fewer
/// instructions than through serde) with strings and numbers by sonic-rs, not serde_json: the
/// same bytes as serde_json writes of the record (`tests::the_writer_writes_what_serde_json_
/// writes`, and the `map_line` fuzz target), with strings checked for characters to escape 16
/// bytes at a time where serde_json checks each byte. That check was a sixth of `map`'s
/// instructions; with sonic-rs `map` runs 3% fewer instructions and a quarter fewer
/// mispredicted branches (BENCHMARKS.md). Parsing stays with serde_json, as in
/// the functions: sonic-rs reads `-0` as `0` and nests 254 deep, not 127, so `map` would no
/// longer show what the functions send. sonic-rs reserves six bytes per byte of a string
/// before writing it (the worst case of escaping); untouched, the reservation is address space,
/// not memory: a line with one 20 MB string peaks at 71 MB resident, as with serde_json.
pub fn write_line(index: usize, line: &str, settings: &Settings, keys: &Keys, out: &mut Vec<u8>) {
    with_record(index, line, settings, keys, |record| record.write(out));
    out.push(b'\n');
}

/// Maps one line and hands its output record to `write`.
fn with_record<T>(
    index: usize,
    line: &str,
    settings: &Settings,
    keys: &Keys,
    write: impl FnOnce(&Record<'_, '_>) -> T,
) -> T {
    let mut scratch = mapping::Scratch::default();
    let parsed = mapping::parse(line, &mut scratch);
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
    write(&Record {
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
        skipped: result.as_ref().ok().and_then(|p| p.skipped.as_deref()),
    })
}

/// One output line. Its `Serialize` form (the derives and impls below) defines the line's
/// bytes; [`Record::write`] writes the same bytes faster, and the tests hold it to that.
#[derive(Serialize)]
struct Record<'r, 'a> {
    index: usize,
    requests: Requests<'r, 'a>,
    error: Option<ErrorRecord<'r>>,
    /// Why a message that maps to nothing does (the page settings, `Amplitude: false`); only
    /// on such lines, so every other line stays as it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<&'r str>,
}

impl Record<'_, '_> {
    /// The line's bytes: what serde_json writes of the record (its `Serialize` derives are
    /// the reference), written by `mapping::write`.
    fn write(&self, out: &mut Vec<u8>) {
        let mut f = Fields::open(out);
        f.value(key!("index"), &self.index);
        let requests: &[Request<'_>] = self.requests.plan.map_or(&[], |p| &p.requests);
        write::list(f.key(key!("requests")), requests, |out, r| {
            let mut f = Fields::open(out);
            f.str(key!("endpoint"), r.endpoint.as_str());
            f.str(key!("method"), "POST");
            f.str(key!("url"), r.url);
            let body = KeyedBody {
                api_key: self.requests.api_key,
                body: &r.body,
                min_id_length: self.requests.min_id_length,
            };
            body.write(f.key(key!("body")));
            f.close();
        });
        match &self.error {
            Some(error) => f.value(key!("error"), error),
            None => f.key(key!("error")).extend_from_slice(b"null"),
        }
        if let Some(skipped) = self.skipped {
            f.str(key!("skipped"), skipped);
        }
        f.close();
    }
}

impl KeyedBody<'_, '_> {
    fn write(&self, out: &mut Vec<u8>) {
        let mut f = Fields::open(out);
        let objects = match self.body {
            Body::Deletion(d) => {
                write::deletion_fields(&mut f, d);
                f.str(key!("requester"), amplitude_client::DEFAULT_REQUESTER);
                None
            }
            Body::Events(_) => Some(key!("events")),
            Body::Identify(_) | Body::GroupIdentify(_) => Some(key!("identification")),
            Body::UserMap(_) => Some(key!("mapping")),
        };
        if let Some(objects) = objects {
            f.str(key!("api_key"), self.api_key);
            write::body(f.key(objects), self.body);
            if let Some(n) = self.min_id_length {
                let out = f.key(key!("options"));
                out.extend_from_slice(br#"{"min_id_length":"#);
                sonic_rs::to_writer(&mut *out, &n).expect("writing JSON to a Vec cannot fail");
                out.push(b'}');
            }
        }
        f.close();
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `map` reads a line as the functions do: a key named twice keeps its last value
    /// (`mapping::parse`), and the line shows each property once.
    #[test]
    fn a_repeated_key_keeps_its_last_value() {
        let settings_json = serde_json::json!({"apiKey": "K"});
        let settings = Settings::from_json(&settings_json).unwrap();
        let keys = Keys::from_settings(&settings_json).unwrap();
        let mut out = Vec::new();
        let line = r#"{"type":"identify","type":"track","event":"e","userId":"user-first","userId":"user-last","properties":{"a":1,"a":2}}"#;
        write_line(3, line, &settings, &keys, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                r#"{"index":3,"requests":[{"endpoint":"httpapi","method":"POST","url":"https://api2.amplitude.com/2/httpapi","body":{"api_key":"K","events":[{"user_id":"user-last","library":"segment","event_type":"e","event_properties":{"a":2},"user_properties":{"id":"user-last"}}]}}],"error":null}"#,
                "\n"
            )
        );
    }

    /// The output line format is a contract (module docs): whatever the input, the writer
    /// (`mapping::write`, with this module's envelope) must write exactly the bytes serde_json
    /// writes for the same record through its `Serialize` derives. Checked on corpus
    /// events under the corpus settings (every rule on) and under defaults with
    /// `minIdLength` and a secret key (deletions), and on lines built to stress the writer:
    /// every control character, quotes, backslashes, separators, characters outside the BMP,
    /// extreme and negative-zero numbers, escaped keys, and lines that are not JSON.
    #[test]
    fn the_writer_writes_what_serde_json_writes() {
        let full = corpus::settings();
        let plain = serde_json::json!({"apiKey": "K\u{1}\"\\", "secretKey": "S", "minIdLength": 1});
        let mut lines = corpus::lines(42, 3_000);
        let every_char: String = (0u32..0x80)
            .chain([0x2028, 0x2029, 0xfeff, 0xffff, 0x1f600, 0x10ffff])
            .filter_map(char::from_u32)
            .collect();
        for text in [
            every_char.clone(),
            "\"\\/\u{7f}\u{80}\u{7ff}\u{800}".repeat(40),
            format!("{every_char}{every_char}").chars().rev().collect(),
        ] {
            let text = serde_json::to_string(&text).unwrap();
            lines.push(format!(
                r#"{{"type":"track","event":{text},"userId":{text},"messageId":{text},"properties":{{{text}:{text},"n":[{text}]}},"context":{{"ip":{text},"traits":{{{text}:1}}}}}}"#
            ));
            lines.push(format!(
                r#"{{"type":"identify","userId":"u","traits":{{{text}:{{{text}:[{text},null,true]}}}}}}"#
            ));
            lines.push(format!(r#"{{"type":"delete","userId":{text}}}"#));
            lines.push(format!(
                r#"{{"type":"alias","userId":{text},"previousId":"p"}}"#
            ));
        }
        for n in [
            "0",
            "-0",
            "-0.0",
            "1e21",
            "1e-7",
            "0.1",
            "5e-324",
            "1.7976931348623157e308",
            "18446744073709551615",
            "-9223372036854775808",
            "123456789.123456789",
            "4.35",
            "1E400",
            "100000000000000000000000",
            "-1.5e-300",
        ] {
            lines.push(format!(
                r#"{{"type":"track","event":"Order Completed","userId":"u","properties":{{"revenue":{n},"price":{n},"quantity":{n},"x":{n},"products":[{{"price":{n},"quantity":{n}}}]}},"context":{{"location":{{"latitude":{n},"longitude":{n}}}}},"timestamp":{n}}}"#
            ));
        }
        lines.extend(["{oops", "\"\\ud800\"", "[1,2", "nul"].map(String::from));
        let mut written = 0;
        for settings_json in [full, plain] {
            let settings = Settings::from_json(&settings_json).unwrap();
            let keys = Keys::from_settings(&settings_json).unwrap();
            for (k, line) in lines.iter().enumerate() {
                let (by_serde_json, by_writer) = with_record(k, line, &settings, &keys, |r| {
                    let mut written = Vec::new();
                    r.write(&mut written);
                    (serde_json::to_vec(r).unwrap(), written)
                });
                assert!(
                    by_serde_json == by_writer,
                    "line {k}: {line}\nserde_json: {}\nwriter:     {}",
                    String::from_utf8_lossy(&by_serde_json),
                    String::from_utf8_lossy(&by_writer)
                );
                written += by_writer.len();
            }
        }
        assert!(written > 8_000_000, "{written} bytes compared");
    }
}
