//! Answers to Segment (segment-delivery §1.7): 2xx is done; 429 and 5xx (except 501) are
//! retried for hours; other 4xx and 501 are dropped.

use amplitude_client::RetryCause;
use amplitude_wire::DeletionJob;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;
use serde_with::skip_serializing_none;

use crate::delivery::{Counts, Entry, MessageOutcome, RejectedBy, Tally};
use crate::ingest::inbound::Source;

/// The JSON body of every answer.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplyBody {
    pub status: u16,
    pub error: Option<String>,
    pub counts: Option<Counts>,
    pub results: Option<Vec<Entry>>,
    /// Deletion jobs (deletions route: the jobs Amplitude scheduled, or the listing).
    pub jobs: Option<Vec<DeletionJob>>,
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
                jobs: None,
            },
            allow: None,
        }
    }

    /// The answer with an `Allow` header.
    pub fn with_allow(mut self, methods: String) -> Reply {
        self.allow = Some(methods);
        self
    }

    /// A deletion job listing.
    pub fn jobs(jobs: Vec<DeletionJob>) -> Reply {
        Reply {
            status: StatusCode::OK,
            body: ReplyBody {
                status: 200,
                error: None,
                counts: None,
                results: None,
                jobs: Some(jobs),
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
    pub fn for_entries(entries: Vec<Entry>, jobs: Option<Vec<DeletionJob>>) -> Reply {
        let c = Tally::of(&entries).counts();
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
            .map(str::to_owned);
        Reply {
            status,
            body: ReplyBody {
                status: status.as_u16(),
                error,
                counts: Some(c),
                results: Some(entries),
                jobs,
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
}
