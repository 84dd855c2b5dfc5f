//! The line format of `segment-amplitude map`, a fixed contract other tools drive:
//! `{"index": N, "requests": [{"endpoint", "method", "url", "body"}], "error": null | {"kind", "message"}}`.

use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};

use crate::plan::{Plan, Rejection, Request};
use crate::settings::Settings;

/// Maps one JSON Lines input line and appends its output line (with `\n`) to `out`.
/// A line that is not JSON is a rejected event, never an error of the run.
pub fn write_line(index: usize, line: &str, settings: &Settings, out: &mut Vec<u8>) {
    let parsed: Result<serde_json_borrow::Value, _> = serde_json::from_str(line);
    let result = match &parsed {
        Ok(message) => crate::plan(message, settings),
        Err(e) => Err(Rejection::Invalid(format!(
            "the line is not valid JSON ({e})"
        ))),
    };
    let record = Record {
        index,
        requests: Requests {
            plan: result.as_ref().ok(),
            api_key: settings.api_key(),
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
                body: r.body_with_key(self.api_key),
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
