//! The sending loop: one request, attempted until Amplitude gives an answer that is not a
//! transient failure, with backoff between attempts, never past the deadline, and with the
//! deletion endpoint's one-request-per-second spacing.

use std::time::Duration;

use mapping::Endpoint;
use tokio::time::Instant;

use crate::Shared;
use crate::outcome::RequestRecord;
use crate::policy::{Verdict, classify};

/// How a request ended.
pub(crate) enum Resolution {
    /// Amplitude answered something that is not a transient failure.
    Answered {
        verdict: Box<Verdict>,
        body: Vec<u8>,
    },
    /// Transient failures until the deadline (or the attempt cap) left no room to retry.
    GaveUp { reason: String },
}

impl Shared {
    /// Sends the request `build` makes (given the time left for it) until Amplitude answers
    /// something other than a transient failure, waiting with backoff between attempts and
    /// never past `deadline`. Every attempt is recorded in `records`.
    pub(crate) async fn send_with_retries(
        &self,
        endpoint: Endpoint,
        items: usize,
        deadline: Instant,
        records: &mut Vec<RequestRecord>,
        build: impl Fn(Duration) -> reqwest::RequestBuilder,
    ) -> Resolution {
        let config = &self.config;
        let mut last = String::from("not sent before the deadline");
        for attempt in 0..config.max_attempts {
            if Instant::now() + config.min_request_time >= deadline {
                break;
            }
            if endpoint == Endpoint::Deletion && !self.wait_for_deletion_slot(deadline).await {
                break;
            }
            let timeout = config
                .request_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            let started = Instant::now();
            let (status, answer) = match build(timeout).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    match read_capped(response, response_limit(endpoint)).await {
                        Ok(body) => (Some(status), Ok(body)),
                        Err(_) => (
                            Some(status),
                            Err(format!("Amplitude {status}: response cut short")),
                        ),
                    }
                }
                Err(e) => (None, Err(transport_reason(&e))),
            };
            if endpoint == Endpoint::Deletion {
                self.deletion_ended();
            }
            records.push(RequestRecord {
                endpoint,
                status,
                latency: started.elapsed(),
                items,
            });
            match answer.map(|body| (classify(endpoint, status.unwrap_or(0), &body), body)) {
                Ok((Verdict::Retry { reason }, _)) => last = reason,
                Ok((verdict, body)) => {
                    return Resolution::Answered {
                        verdict: Box::new(verdict),
                        body,
                    };
                }
                Err(reason) => last = reason,
            }
            let delay = config.backoff.delay(attempt, &mut rand::rng());
            if Instant::now() + delay + config.min_request_time >= deadline {
                break;
            }
            tracing::debug!(endpoint = endpoint.as_str(), attempt, reason = %last, "retrying");
            tokio::time::sleep(delay).await;
        }
        Resolution::GaveUp { reason: last }
    }

    /// Waits until the next deletion request would be allowed (one per second), so whoever
    /// sends the next one, in this process or another, keeps the spacing.
    pub(crate) async fn wait_for_deletion_spacing(&self) {
        let next = *self.next_deletion.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = next {
            tokio::time::sleep_until(at).await;
        }
    }

    /// A deletion request has ended (answered, failed or timed out): the next may start one
    /// interval from now, not from when this one was let go. Amplitude counts requests as
    /// they arrive, somewhere between the two; spacing from the end keeps every arrival an
    /// interval apart however late a request left (a busy process, a new connection), at the
    /// cost of one round trip per request (20 requests for 2,000 ids).
    fn deletion_ended(&self) {
        let mut next = self.next_deletion.lock().unwrap_or_else(|p| p.into_inner());
        let after = Instant::now() + self.config.deletion_interval;
        *next = Some(next.map_or(after, |n| n.max(after)));
    }

    /// Amplitude allows one deletion request per second per project (amplitude-api §7.1).
    /// Returns false when the next slot is past the deadline.
    async fn wait_for_deletion_slot(&self, deadline: Instant) -> bool {
        let wait = {
            let mut next = self.next_deletion.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            if at + self.config.min_request_time >= deadline {
                return false;
            }
            *next = Some(at + self.config.deletion_interval);
            at - now
        };
        if wait > Duration::ZERO {
            tokio::time::sleep(wait).await;
        }
        true
    }
}

/// The most of an answer's body that is read. Amplitude's answers are a few hundred bytes,
/// except the User Privacy API's job listing (a few MB over six months: the operator's listing
/// shows up to 4 MB); a misbehaving server can send any amount, and a function has 256 MB.
fn response_limit(endpoint: Endpoint) -> usize {
    match endpoint {
        Endpoint::Deletion => 16 << 20,
        _ => 1 << 20,
    }
}

/// Reads a body up to `limit` bytes, then stops (the rest is never read; the connection is
/// dropped). What was read is classified as it is: a cut 200 is still a 200; a cut error body
/// no longer parses and is read as naming no event.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> reqwest::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        body.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        if body.len() >= limit {
            break;
        }
    }
    Ok(body)
}

/// A transport failure as a reason without secrets or URLs.
fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "Amplitude did not answer in time".into()
    } else if e.is_connect() {
        "could not connect to Amplitude".into()
    } else {
        "the connection to Amplitude failed".into()
    }
}
