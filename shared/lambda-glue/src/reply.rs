//! Answers to Segment (segment-delivery §1.7): 2xx is done; 429 and 5xx (except 501) are
//! retried for hours; other 4xx and 501 are dropped.

use amplitude_client::Outcome;
use serde::Serialize;
use serde_json::{Value, json};

use crate::inbound::Source;

/// What happened to one message of the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Result {
    Delivered,
    /// Nothing to send (a page with no page setting on; an Engage profile without ids); never
    /// retried.
    Skipped {
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Invalid for Amplitude, or refused by it for good.
    Rejected {
        reason: String,
    },
    /// Not handled by this route or these settings.
    Unsupported {
        reason: String,
    },
    /// Not delivered yet; Segment must retry.
    Retryable {
        reason: String,
        throttled: bool,
    },
}

impl From<Outcome> for Result {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Delivered => Result::Delivered,
            Outcome::Rejected { reason } => Result::Rejected { reason },
            Outcome::Retryable { reason, throttled } => Result::Retryable { reason, throttled },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(flatten)]
    pub result: Result,
}

/// The HTTP answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// What happened to the request's messages (all zero for request-level errors).
    pub counts: Counts,
}

/// Counts by outcome, for the response body and the log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub received: usize,
    pub delivered: usize,
    pub skipped: usize,
    pub rejected: usize,
    pub unsupported: usize,
    pub retryable: usize,
}

pub fn counts(entries: &[Entry]) -> Counts {
    let mut c = Counts {
        received: entries.len(),
        ..Counts::default()
    };
    for e in entries {
        match e.result {
            Result::Delivered => c.delivered += 1,
            Result::Skipped { .. } => c.skipped += 1,
            Result::Rejected { .. } => c.rejected += 1,
            Result::Unsupported { .. } => c.unsupported += 1,
            Result::Retryable { .. } => c.retryable += 1,
        }
    }
    c
}

impl Reply {
    /// An error about the request itself (bad body, failed auth, configuration).
    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply {
            status,
            body: json!({"status": status, "error": message.into()}),
            counts: Counts::default(),
        }
    }

    /// The answer for a request whose messages all have results:
    /// * any message still undelivered → 429 when Amplitude throttled, else 503 (Segment
    ///   retries; `insert_id` makes the retry safe);
    /// * every message unsupported here → 501 (Segment does not retry);
    /// * a request whose only message is invalid → 400, naming the field;
    /// * otherwise 200 (delivered, skipped or permanently rejected).
    pub fn for_entries(entries: Vec<Entry>, extra: Option<(&str, Value)>) -> Reply {
        let c = counts(&entries);
        let throttled = entries.iter().any(|e| {
            matches!(
                e.result,
                Result::Retryable {
                    throttled: true,
                    ..
                }
            )
        });
        let status = if c.retryable > 0 {
            if throttled { 429 } else { 503 }
        } else if c.unsupported == c.received && c.received > 0 {
            501
        } else if c.received == 1 && c.rejected == 1 && entries[0].is_invalid() {
            400
        } else {
            200
        };
        let error = (status != 200)
            .then(|| entries.iter().find_map(Entry::reason))
            .flatten()
            .map(str::to_owned);
        let mut body = json!({"status": status, "counts": c, "results": entries});
        if let Some((key, value)) = extra {
            body[key] = value;
        }
        if let Some(reason) = error {
            body["error"] = Value::String(reason);
        }
        Reply {
            status,
            body,
            counts: c,
        }
    }

    /// The Lambda response: an API Gateway proxy response, or for a direct invocation the body
    /// itself — and an error when Segment must retry, since the Lambda destination retries
    /// only failed invocations.
    pub fn into_payload(
        self,
        source: Source,
    ) -> std::result::Result<Value, lambda_runtime::Diagnostic> {
        match source {
            Source::HttpApi | Source::RestApi => Ok(json!({
                "statusCode": self.status,
                "headers": {"content-type": "application/json"},
                "body": self.body.to_string(),
                "isBase64Encoded": false,
            })),
            Source::Direct if self.status == 429 || (self.status >= 500 && self.status != 501) => {
                Err(lambda_runtime::Diagnostic {
                    error_type: if self.status == 429 {
                        "Throttled"
                    } else {
                        "Retryable"
                    }
                    .into(),
                    error_message: self.body.to_string(),
                })
            }
            Source::Direct => Ok(self.body),
        }
    }
}

impl Entry {
    /// Why the message was not delivered, if it says.
    fn reason(&self) -> Option<&str> {
        match &self.result {
            Result::Rejected { reason }
            | Result::Unsupported { reason }
            | Result::Retryable { reason, .. } => Some(reason),
            Result::Skipped { reason } => reason.as_deref(),
            Result::Delivered => None,
        }
    }

    fn is_invalid(&self) -> bool {
        matches!(&self.result, Result::Rejected { reason } if !reason.starts_with("Amplitude"))
    }
}
