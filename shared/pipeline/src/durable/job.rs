//! Delivery jobs: what is left of a request for one endpoint, self-contained, so it can be sent
//! days later without the Segment request: the items in wire form (events with their
//! `insert_id`s), the endpoint and region, the messageIds, the attempt count, when they were
//! first seen and the last reason. Never a key.
//!
//! On the queue a job is a small JSON envelope whose `items` are gzip-compressed JSON in
//! base64: items compress about tenfold, so a 4,000-event batch fits in a few SQS messages.

use std::io::{Read, Write};
use std::time::Duration;

use amplitude_client::{Item, RetryCause, Undelivered};
use base64::Engine;
use flate2::Compression;
use mapping::{Endpoint, Region};
use serde::{Deserialize, Serialize};

use crate::delivery::json_reason;
use crate::ingest::Route;

/// The largest message this project puts on a queue, and the largest `SendMessageBatch`
/// payload: SQS's long-standing limit (queues may allow more; none allows less).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Entries per `SendMessageBatch` call (SQS's limit).
pub const MAX_BATCH_ENTRIES: usize = 10;

/// One delivery job, as it travels on a queue (a JSON object; see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The format's version.
    pub v: V1,
    /// The route the messages came in on (for logs and metrics). Only this project's routes
    /// read back: whoever may write to the queue cannot put a text of any size into every log
    /// line about the job's messages.
    pub route: Route,
    pub endpoint: Endpoint,
    pub region: Region,
    /// The messageIds of the job's messages; items refer to them by index.
    pub message_ids: Vec<Option<String>>,
    /// Delivery attempts made so far (the first, in the ingest function, counts).
    pub attempts: u32,
    /// When the messages first arrived, ms since the epoch: the job expires by age from then.
    pub first_seen_ms: u64,
    pub last_reason: String,
    pub cause: RetryCause,
    /// Set when the job was moved to the dead-letter queue: why it gave up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_reason: Option<String>,
    /// Base64 of the gzip-compressed JSON array of items on the queue.
    #[serde(with = "compressed")]
    pub items: Vec<JobItem>,
}

/// One item of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobItem {
    /// Index into the job's `message_ids`.
    #[serde(rename = "m")]
    pub message: usize,
    #[serde(rename = "w")]
    pub wire: String,
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

/// The job format's version, `1`: the only one this code writes or reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct V1;

impl Serialize for V1 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(1)
    }
}

impl<'de> Deserialize<'de> for V1 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u32::deserialize(d)? {
            1 => Ok(V1),
            v => Err(serde::de::Error::custom(format!("version {v}"))),
        }
    }
}

/// Items as base64 of gzip-compressed JSON: they compress about tenfold.
mod compressed {
    use super::*;

    /// A bound, so a hostile message cannot expand without limit.
    const MAX_EXPANDED: u64 = 64 << 20;

    pub fn serialize<S: serde::Serializer>(items: &[JobItem], s: S) -> Result<S::Ok, S::Error> {
        // Serialised first, then compressed in one write: the encoder is slow when fed
        // serde_json's many small writes (a 4,000-event batch took seconds instead of 0.1 s).
        let json = serde_json::to_vec(items).map_err(serde::ser::Error::custom)?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(&json)
            .and_then(|()| gz.finish())
            .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes))
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<JobItem>, D::Error> {
        use serde::de::Error;
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|_| D::Error::custom("items are not base64"))?;
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .take(MAX_EXPANDED)
            .read_to_end(&mut json)
            .map_err(|_| D::Error::custom("items are not gzip"))?;
        serde_json::from_slice(&json).map_err(|_| D::Error::custom("items are not a list of items"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("the job is not a delivery job of this version ({0})")]
    Malformed(String),
}

impl Job {
    /// The job as a queue message body.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("jobs serialise")
    }

    /// Reads a queue message body.
    pub fn decode(body: &str) -> Result<Job, JobError> {
        let job: Job =
            serde_json::from_str(body).map_err(|e| JobError::Malformed(json_reason(&e)))?;
        if job.items.iter().any(|i| i.message >= job.message_ids.len()) {
            return Err(JobError::Malformed("an item names no message".into()));
        }
        Ok(job)
    }

    /// The items as the client sends them; their `message` is offset by `first_message`.
    pub fn client_items(&self, first_message: usize) -> Vec<Item> {
        self.items
            .iter()
            .map(|i| Item {
                message: first_message + i.message,
                endpoint: self.endpoint,
                wire: i.wire.clone(),
                user_id: i.user_id.clone(),
                device_id: i.device_id.clone(),
            })
            .collect()
    }

    /// How old the job's messages are.
    pub fn age(&self, now_ms: u64) -> Duration {
        Duration::from_millis(now_ms.saturating_sub(self.first_seen_ms))
    }

    /// The job's encoded bodies, each at most [`MAX_MESSAGE_BYTES`]: split by items (keeping
    /// a message's items together where they fit) when one body would be larger. An item that
    /// alone exceeds the limit still travels alone (SQS then refuses it, and the caller keeps
    /// the message retryable).
    pub fn bodies(mut self) -> Vec<String> {
        let body = self.encode();
        if body.len() <= MAX_MESSAGE_BYTES || self.items.len() <= 1 {
            return vec![body];
        }
        let parts = body.len().div_ceil(MAX_MESSAGE_BYTES * 9 / 10).max(2);
        let per_part = self.items.len().div_ceil(parts);
        let mut items = std::mem::take(&mut self.items).into_iter();
        let mut out = Vec::new();
        loop {
            let chunk: Vec<JobItem> = items.by_ref().take(per_part).collect();
            if chunk.is_empty() {
                return out;
            }
            out.extend(self.with_items(chunk).bodies());
        }
    }

    /// This job with only `items` (and only their messages, renumbered).
    fn with_items(&self, mut items: Vec<JobItem>) -> Job {
        let message_ids = renumber(&mut items, &self.message_ids);
        // Field by field: `..self.clone()` would copy every item of the whole job for each part.
        Job {
            v: V1,
            route: self.route,
            endpoint: self.endpoint,
            region: self.region,
            message_ids,
            items,
            attempts: self.attempts,
            first_seen_ms: self.first_seen_ms,
            last_reason: self.last_reason.clone(),
            cause: self.cause,
            dead_letter_reason: self.dead_letter_reason.clone(),
        }
    }
}

/// Renumbers `items` to refer to only their own messages, in order of appearance; returns
/// those messages' ids (taken from `message_ids`, which the items indexed before).
fn renumber(items: &mut [JobItem], message_ids: &[Option<String>]) -> Vec<Option<String>> {
    let mut ids = Vec::new();
    let mut index = std::collections::HashMap::new();
    for it in items {
        it.message = *index.entry(it.message).or_insert_with(|| {
            ids.push(message_ids.get(it.message).cloned().flatten());
            ids.len() - 1
        });
    }
    ids
}

/// What a delivery left undelivered, as jobs: one per endpoint, with the throttled items apart
/// (they wait the delay Amplitude asks for). `message_ids` are those of the delivery's
/// messages (the items' `message` indexes them).
pub fn jobs_from(
    undelivered: &[Undelivered],
    message_ids: &[Option<String>],
    route: Route,
    region: Region,
    attempts: u32,
    first_seen_ms: u64,
) -> Vec<Job> {
    let mut groups: Vec<((Endpoint, bool), Vec<&Undelivered>)> = Vec::new();
    for u in undelivered {
        let key = (u.item.endpoint, u.cause == RetryCause::Throttled);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(u),
            None => groups.push((key, vec![u])),
        }
    }
    groups
        .into_iter()
        .map(|((endpoint, _), list)| {
            let first = list[0];
            let mut items: Vec<JobItem> = list
                .iter()
                .map(|u| JobItem {
                    message: u.item.message,
                    wire: u.item.wire.clone(),
                    user_id: u.item.user_id.clone(),
                    device_id: u.item.device_id.clone(),
                })
                .collect();
            Job {
                v: V1,
                route,
                endpoint,
                region,
                message_ids: renumber(&mut items, message_ids),
                items,
                attempts,
                first_seen_ms,
                last_reason: first.reason.clone(),
                cause: first.cause,
                dead_letter_reason: None,
            }
        })
        .collect()
}

/// Entries packed into `SendMessageBatch` calls: at most [`MAX_BATCH_ENTRIES`] and
/// [`MAX_MESSAGE_BYTES`] of bodies per call.
pub fn batches<T>(entries: Vec<T>, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut calls: Vec<Vec<T>> = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        let n = size(&entry);
        let full = calls
            .last()
            .is_none_or(|c| c.len() >= MAX_BATCH_ENTRIES || bytes + n > MAX_MESSAGE_BYTES);
        if full {
            calls.push(Vec::new());
            bytes = 0;
        }
        bytes += n;
        if let Some(call) = calls.last_mut() {
            call.push(entry);
        }
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(items: usize, wire_len: usize) -> Job {
        Job {
            v: V1,
            route: Route::Events,
            endpoint: Endpoint::HttpApi,
            region: Region::Eu,
            message_ids: (0..items).map(|i| Some(format!("m{i}"))).collect(),
            items: (0..items)
                .map(|i| JobItem {
                    message: i,
                    // Varied text, so it does not compress to nothing.
                    wire: format!(
                        "{{\"insert_id\":\"m{i}\",\"p\":\"{}\"}}",
                        pseudo_text(i, wire_len)
                    ),
                    user_id: Some(format!("user-{i}")),
                    device_id: None,
                })
                .collect(),
            attempts: 1,
            first_seen_ms: 1_764_500_000_000,
            last_reason: "Amplitude 503: server error".into(),
            cause: RetryCause::Transient,
            dead_letter_reason: None,
        }
    }

    fn pseudo_text(seed: usize, len: usize) -> String {
        let mut x = seed as u64 * 2_654_435_761 + 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect()
    }

    #[test]
    fn a_job_survives_the_queue_exactly() {
        let j = job(3, 20);
        assert_eq!(Job::decode(&j.encode()).unwrap(), j);
        assert!(matches!(Job::decode("{}"), Err(JobError::Malformed(_))));
        let mut bad = serde_json::from_str::<serde_json::Value>(&j.encode()).unwrap();
        bad["items"] = "not base64!".into();
        assert_eq!(
            Job::decode(&bad.to_string()),
            Err(JobError::Malformed("items are not base64".into()))
        );
        let mut elsewhere = serde_json::from_str::<serde_json::Value>(&j.encode()).unwrap();
        elsewhere["route"] = "/x".repeat(100_000).into();
        assert_eq!(
            Job::decode(&elsewhere.to_string()),
            Err(JobError::Malformed(
                "the route is not one of this project's".into()
            ))
        );
    }

    #[test]
    fn large_jobs_split_under_the_message_limit_and_keep_every_item() {
        let big = job(3000, 400);
        let bodies = big.clone().bodies();
        assert!(bodies.len() > 1);
        let mut seen = Vec::new();
        for body in &bodies {
            assert!(body.len() <= MAX_MESSAGE_BYTES, "{}", body.len());
            let part = Job::decode(body).unwrap();
            for item in &part.items {
                seen.push((part.message_ids[item.message].clone(), item.wire.clone()));
            }
        }
        let all: Vec<_> = big
            .items
            .iter()
            .map(|i| (big.message_ids[i.message].clone(), i.wire.clone()))
            .collect();
        assert_eq!(seen, all);
    }

    #[test]
    fn batches_respect_ten_entries_and_the_byte_limit() {
        let sizes = vec![
            100_000, 100_000, 100_000, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
        ];
        let calls = batches(sizes, |n| *n);
        let shape: Vec<usize> = calls.iter().map(Vec::len).collect();
        assert_eq!(shape, vec![2, 10, 1]);
    }
}
