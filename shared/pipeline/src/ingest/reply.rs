//! Answers to Segment (segment-delivery §1.7): 2xx is done; 429 and 5xx (except 501) are
//! retried for hours; other 4xx and 501 are dropped.
//!
//! **An answer is at most [`MAX_REPLY_BYTES`], whatever the request** (Lambda refuses a
//! response over 6 MB, and Segment reads only the status): the counts always; the messages that
//! were not delivered, one result each, in order, while they fit; then the rest counted by
//! outcome and reason. Every message is in the log and the metrics anyway.

use std::collections::{HashMap, hash_map};

use amplitude_client::RetryCause;
use amplitude_wire::DeletionJob;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;
use serde_with::skip_serializing_none;

use crate::delivery::{Counts, Entry, MessageOutcome, RejectedBy, Tally, json_prefix};
use crate::ingest::body;
use crate::ingest::inbound::Source;

/// The largest answer, in bytes of JSON.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;
/// Room for the per-message results; the deletion jobs get what they leave of the answer less
/// [`ROOM_FOR_THE_REST`].
const RESULTS_BYTES: usize = 40 * 1024;
/// Room kept for the status, the error, the counts and the summary of omitted results.
const ROOM_FOR_THE_REST: usize = 8 * 1024;
/// Room for the operator's job listing (`GET /deletions`).
const LISTING_BYTES: usize = 4 * 1024 * 1024;
/// A reason is cut to this many bytes in an answer (Amplitude's can be long).
const MAX_REASON_BYTES: usize = 300;
/// At most this many outcome-and-reason groups in the summary of omitted results.
const MAX_GROUPS: usize = 16;

/// The JSON body of every answer.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplyBody {
    pub status: u16,
    pub error: Option<String>,
    pub counts: Option<Counts>,
    /// The messages not delivered, in order, as many as fit.
    pub results: Option<Vec<Entry>>,
    /// The results that did not fit, counted.
    pub omitted: Option<Omitted>,
    /// Deletion jobs (deletions route: the jobs Amplitude scheduled, or the listing), as many
    /// as fit.
    pub jobs: Option<Vec<DeletionJob>>,
    /// Jobs that did not fit.
    pub jobs_omitted: Option<usize>,
}

/// What an answer leaves out of its results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Omitted {
    pub results: usize,
    /// The omitted results by outcome and reason, largest groups first (at most 16 groups; the
    /// rest in one group with no reason).
    pub by_reason: Vec<ReasonCount>,
}

/// Omitted results of one outcome and reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonCount {
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub count: usize,
}

/// The HTTP answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: ReplyBody,
    /// The `Allow` header of a 405.
    pub allow: Option<String>,
}

impl Reply {
    /// An error about the request itself; the message must be safe to show to the caller.
    pub fn error(status: StatusCode, message: impl Into<String>) -> Reply {
        Reply {
            status,
            body: ReplyBody {
                status: status.as_u16(),
                error: Some(message.into()),
                counts: None,
                results: None,
                omitted: None,
                jobs: None,
                jobs_omitted: None,
            },
            allow: None,
        }
    }

    /// The answer with an `Allow` header.
    pub fn with_allow(mut self, methods: String) -> Reply {
        self.allow = Some(methods);
        self
    }

    /// A deletion job listing (for the operator: up to 4 MB of jobs; a narrower date range
    /// lists the rest).
    pub fn jobs(jobs: Vec<DeletionJob>) -> Reply {
        let (jobs, jobs_omitted) = fitting(jobs, LISTING_BYTES);
        Reply {
            status: StatusCode::OK,
            body: ReplyBody {
                status: 200,
                error: None,
                counts: None,
                results: None,
                omitted: None,
                jobs: Some(jobs),
                jobs_omitted,
            },
            allow: None,
        }
    }

    /// The answer for a request whose messages all have outcomes:
    /// * any message still undelivered → 429 when Amplitude throttled, else 503 (Segment
    ///   retries; `insert_id` makes the retry safe);
    /// * every message unsupported here → 501 (Segment does not retry);
    /// * a request whose only message the mapping rejected → 400, naming the field;
    /// * otherwise 200 (delivered, queued for redelivery, skipped or rejected for good).
    ///
    /// `unread` messages followed the request's first `body::MAX_MESSAGES`: rejected, counted,
    /// and summarised with the omitted results (they have no messageIds to list).
    pub fn for_entries(
        entries: Vec<Entry>,
        unread: usize,
        jobs: Option<Vec<DeletionJob>>,
    ) -> Reply {
        let mut tally = Tally::of(&entries);
        tally.add_unread(unread);
        let c = tally.counts();
        let throttled = entries.iter().any(|e| {
            matches!(
                e.outcome,
                MessageOutcome::Retryable {
                    cause: RetryCause::Throttled,
                    ..
                }
            )
        });
        let only_mapping_rejection = matches!(
            entries.as_slice(),
            [Entry {
                outcome: MessageOutcome::Rejected {
                    by: RejectedBy::Mapping,
                    ..
                },
                ..
            }]
        );
        let status = if c.retryable > 0 {
            if throttled {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            }
        } else if c.unsupported == c.received && c.received > 0 {
            StatusCode::NOT_IMPLEMENTED
        } else if only_mapping_rejection {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        let error = (status != StatusCode::OK)
            .then(|| entries.iter().find_map(|e| e.outcome.reason()))
            .flatten()
            .map(|r| cut(r).to_owned());
        let (results, used, omitted) = results(entries, unread);
        let (jobs, jobs_omitted) = match jobs {
            Some(jobs) => {
                let room = MAX_REPLY_BYTES - ROOM_FOR_THE_REST - used;
                let (kept, omitted) = fitting(jobs, room);
                (Some(kept), omitted)
            }
            None => (None, None),
        };
        Reply {
            status,
            body: ReplyBody {
                status: status.as_u16(),
                error,
                counts: Some(c),
                results: Some(results),
                omitted,
                jobs,
                jobs_omitted,
            },
            allow: None,
        }
    }

    /// True when Segment must send the request again.
    pub fn is_retryable(&self) -> bool {
        self.status == StatusCode::TOO_MANY_REQUESTS
            || (self.status.is_server_error() && self.status != StatusCode::NOT_IMPLEMENTED)
    }

    /// The counts of the answer (zero for request-level errors).
    pub fn counts(&self) -> Counts {
        self.body.counts.unwrap_or_default()
    }

    /// The Lambda response: an API Gateway response of the request's version, or for a direct
    /// invocation the body itself, and an error when Segment must retry, since the Lambda
    /// destination retries only failed invocations.
    pub fn into_response(
        self,
        source: Source,
    ) -> Result<LambdaResponse, lambda_runtime::Diagnostic> {
        let text = serde_json::to_string(&self.body).expect("reply bodies serialise");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(allow) = self
            .allow
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok())
        {
            headers.insert(header::ALLOW, allow);
        }
        match source {
            Source::HttpApi => {
                let mut r = ApiGatewayV2httpResponse::default();
                r.status_code = i64::from(self.status.as_u16());
                r.headers = headers;
                r.body = Some(Body::Text(text));
                Ok(LambdaResponse::HttpApi(r))
            }
            Source::RestApi => {
                let mut r = ApiGatewayProxyResponse::default();
                r.status_code = i64::from(self.status.as_u16());
                r.headers = headers;
                r.body = Some(Body::Text(text));
                Ok(LambdaResponse::RestApi(r))
            }
            Source::Direct if self.is_retryable() => Err(lambda_runtime::Diagnostic {
                error_type: if self.status == StatusCode::TOO_MANY_REQUESTS {
                    "Throttled"
                } else {
                    "Retryable"
                }
                .into(),
                error_message: text,
            }),
            Source::Direct => Ok(LambdaResponse::Direct(Box::new(self.body))),
        }
    }
}

/// The results of an answer: the messages not delivered, in order, while they fit in
/// [`RESULTS_BYTES`] (the bytes they take); the others, and the `unread`, counted by outcome
/// and reason.
fn results(mut entries: Vec<Entry>, unread: usize) -> (Vec<Entry>, usize, Option<Omitted>) {
    entries.retain(|e| e.outcome != MessageOutcome::Delivered);
    let mut bytes = 0;
    let mut fit = entries.len();
    for (i, entry) in entries.iter_mut().enumerate() {
        entry.outcome.cut_reason(MAX_REASON_BYTES);
        let size = serde_json::to_vec(&entry).map_or(usize::MAX, |v| v.len() + 1);
        if bytes + size > RESULTS_BYTES {
            fit = i;
            break;
        }
        bytes += size;
    }
    let omitted = summary(&entries[fit..], unread);
    entries.truncate(fit);
    (entries, bytes, omitted)
}

/// `rest`, then the `unread` (rejected, [`body::UNREAD`]), counted by outcome and reason:
/// the [`MAX_GROUPS`] largest groups (the first seen first among equals), the others as one.
/// One pass, and only the groups shown are copied: 100,000 messages may each have a reason
/// of their own.
fn summary(rest: &[Entry], unread: usize) -> Option<Omitted> {
    if rest.is_empty() && unread == 0 {
        return None;
    }
    let mut at: HashMap<(&str, Option<&str>), usize> = HashMap::new();
    let mut groups: Vec<((&str, Option<&str>), usize)> = Vec::new();
    for entry in rest {
        let key = (entry.outcome.kind(), entry.outcome.reason().map(cut));
        match at.entry(key) {
            hash_map::Entry::Occupied(i) => groups[*i.get()].1 += 1,
            hash_map::Entry::Vacant(slot) => {
                slot.insert(groups.len());
                groups.push((key, 1));
            }
        }
    }
    if unread > 0 {
        groups.push((("rejected", Some(body::UNREAD)), unread));
    }
    groups.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    let shown = if groups.len() > MAX_GROUPS {
        MAX_GROUPS - 1
    } else {
        groups.len()
    };
    let (listed, merged) = groups.split_at(shown);
    let mut by_reason: Vec<ReasonCount> = listed
        .iter()
        .map(|&((outcome, reason), count)| ReasonCount {
            outcome,
            reason: reason.map(str::to_owned),
            count,
        })
        .collect();
    if !merged.is_empty() {
        by_reason.push(ReasonCount {
            outcome: "other",
            reason: None,
            count: merged.iter().map(|(_, n)| n).sum(),
        });
    }
    Some(Omitted {
        results: rest.len() + unread,
        by_reason,
    })
}

/// The jobs that fit in `budget` bytes, in order, and how many did not.
fn fitting(jobs: Vec<DeletionJob>, budget: usize) -> (Vec<DeletionJob>, Option<usize>) {
    let total = jobs.len();
    let mut bytes = 0;
    let kept: Vec<DeletionJob> = jobs
        .into_iter()
        .take_while(|job| {
            bytes += serde_json::to_vec(job).map_or(usize::MAX, |v| v.len() + 1);
            bytes <= budget
        })
        .collect();
    let omitted = total - kept.len();
    (kept, (omitted > 0).then_some(omitted))
}

/// A reason cut to [`MAX_REASON_BYTES`] as JSON, on a character boundary.
fn cut(reason: &str) -> &str {
    json_prefix(reason, MAX_REASON_BYTES)
}

/// What a function returns to the Lambda runtime.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum LambdaResponse {
    HttpApi(ApiGatewayV2httpResponse),
    RestApi(ApiGatewayProxyResponse),
    Direct(Box<ReplyBody>),
}

impl LambdaResponse {
    /// The status and JSON body, whatever the shape (for the local runner and tests).
    pub fn status_and_body(&self) -> (StatusCode, String) {
        let (code, body) = match self {
            LambdaResponse::HttpApi(r) => (r.status_code, r.body.as_ref()),
            LambdaResponse::RestApi(r) => (r.status_code, r.body.as_ref()),
            LambdaResponse::Direct(b) => {
                return (
                    StatusCode::from_u16(b.status).unwrap_or(StatusCode::OK),
                    serde_json::to_string(b).expect("reply bodies serialise"),
                );
            }
        };
        let text = match body {
            Some(Body::Text(t)) => t.clone(),
            Some(Body::Binary(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        let status = u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, text)
    }

    /// The headers API Gateway would send with it (`Content-Type`, and a 405's `Allow`); a
    /// direct invocation's body has none of its own, so it is shown as JSON.
    pub fn headers(&self) -> HeaderMap {
        match self {
            LambdaResponse::HttpApi(r) => r.headers.clone(),
            LambdaResponse::RestApi(r) => r.headers.clone(),
            LambdaResponse::Direct(_) => HeaderMap::from_iter([(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(index: usize, reason: String) -> Entry {
        Entry {
            index,
            message_id: Some(format!("m{index}")),
            outcome: MessageOutcome::Rejected {
                by: RejectedBy::Amplitude,
                reason,
                endpoint: Some("httpapi"),
            },
        }
    }

    /// Reasons can quote what a sender or Amplitude wrote, and a control character there
    /// takes six bytes as JSON (`\u0001`): reasons are cut by their size as JSON, so the
    /// answer's bound holds for the bytes written (before: 69,683 bytes). 100,000 messages,
    /// each with a reason of its own, are summarised in one pass (before: a search of every
    /// group seen so far for each message: 127 s for 100,000 such messages in a debug build).
    #[test]
    fn reasons_that_grow_when_escaped_and_all_differ_keep_the_answer_bounded() {
        let reason = |i: usize, controls: usize| format!("{i:06}{}", "\u{1}".repeat(controls));
        // As an unknown call type is quoted: every message unsupported, answered 501.
        let entries = (0..100_000)
            .map(|i| Entry {
                index: i,
                message_id: Some(format!("m{i}")),
                outcome: MessageOutcome::Unsupported {
                    reason: reason(i, 400),
                },
            })
            .collect();
        let reply = Reply::for_entries(entries, 0, None);
        assert_eq!(reply.status, StatusCode::NOT_IMPLEMENTED);
        let text = serde_json::to_string(&reply.body).unwrap();
        assert!(text.len() <= MAX_REPLY_BYTES, "{}", text.len());
        // 6 digits and 49 control characters: 300 bytes as JSON.
        let error = reply.body.error.clone().unwrap();
        assert_eq!(error, reason(0, 49));
        assert_eq!(serde_json::to_string(&error).unwrap().len(), 2 + 300);
        let results = reply.body.results.unwrap();
        let shown = results.len();
        assert!(
            results
                .iter()
                .enumerate()
                .all(|(i, r)| r.index == i && r.outcome.reason() == Some(reason(i, 49).as_str()))
        );
        let omitted = reply.body.omitted.unwrap();
        assert_eq!(omitted.results, 100_000 - shown);
        let groups: Vec<(&str, Option<String>, usize)> = omitted
            .by_reason
            .iter()
            .map(|g| (g.outcome, g.reason.clone(), g.count))
            .collect();
        let mut expected: Vec<(&str, Option<String>, usize)> = (shown..shown + 15)
            .map(|i| ("unsupported", Some(reason(i, 49)), 1))
            .collect();
        expected.push(("other", None, 100_000 - shown - 15));
        assert_eq!(groups, expected);
    }

    /// Messages past a request's first `body::MAX_MESSAGES` are rejected unread: counted as
    /// received and rejected, and summarised as one group (they have no messageIds to list);
    /// the request is still answered by what became of the messages read.
    #[test]
    fn unread_messages_are_counted_and_summarised_as_one_group() {
        let entries = vec![
            Entry {
                index: 0,
                message_id: Some("m0".into()),
                outcome: MessageOutcome::Delivered,
            },
            rejected(1, "no id".into()),
        ];
        let reply = Reply::for_entries(entries, 3_000_000, None);
        assert_eq!(reply.status, StatusCode::OK);
        let body = reply.body;
        let c = body.counts.unwrap();
        assert_eq!(
            (c.received, c.delivered, c.rejected),
            (3_000_002, 1, 3_000_001)
        );
        assert_eq!(body.results.unwrap(), vec![rejected(1, "no id".into())]);
        assert_eq!(
            body.omitted,
            Some(Omitted {
                results: 3_000_000,
                by_reason: vec![ReasonCount {
                    outcome: "rejected",
                    reason: Some(
                        "the request holds more than 250,000 messages: those past the 250,000th are not read"
                            .into()
                    ),
                    count: 3_000_000
                }]
            })
        );
    }

    #[test]
    fn many_reasons_are_summarised_in_sixteen_groups_and_long_reasons_cut() {
        let long = "x".repeat(10_000);
        let mut entries = vec![
            rejected(0, long),
            Entry {
                index: 1,
                message_id: None,
                outcome: MessageOutcome::Delivered,
            },
        ];
        entries.extend((2..20_000).map(|i| rejected(i, format!("reason {}", i % 40))));
        let reply = Reply::for_entries(entries, 0, None);
        let text = serde_json::to_string(&reply.body).unwrap();
        assert!(text.len() <= MAX_REPLY_BYTES, "{}", text.len());
        let results = reply.body.results.unwrap();
        assert_eq!(
            results[0].outcome.reason().map(str::len),
            Some(MAX_REASON_BYTES)
        );
        assert_eq!(
            results[1].index, 2,
            "delivered messages are counted, not listed"
        );
        let omitted = reply.body.omitted.unwrap();
        assert_eq!(omitted.results, 20_000 - 1 - results.len());
        assert_eq!(omitted.by_reason.len(), MAX_GROUPS);
        let last = omitted.by_reason.last().unwrap();
        assert_eq!((last.outcome, last.reason.as_deref()), ("other", None));
        let counted: usize = omitted.by_reason.iter().map(|g| g.count).sum();
        assert_eq!(counted, omitted.results);
        assert_eq!(reply.body.counts.unwrap().rejected, 19_999);
    }
}
