//! What the dead-letter queue holds ([`DeadLetter`]): a delivery job that gave up, with its
//! reason, or a message that was not a delivery job at all, kept as it came. The redeliver
//! function writes them; `segment-amplitude dlq inspect` and the local runner's `/_queue` read
//! them back, all through this one type.
//!
//! A dead letter always fits in a queue message: an unreadable body is kept gzip-compressed
//! (base64), and when even that is too large (a body of random bytes near SQS's limit), its
//! first part, with the whole body's size and SHA-1 digest.

use std::fmt;
use std::io::{Read, Write};

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use super::job::{Job, JobError, MAX_MESSAGE_BYTES};
use crate::delivery::json_prefix;

/// Why a job gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The message is not a delivery job of this version.
    Unreadable(JobError),
    /// Too old, or tried too often.
    GaveUp {
        attempts: u32,
        age_seconds: u64,
        last_reason: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unreadable(e) => write!(f, "unreadable job: {e}"),
            Reason::GaveUp {
                attempts,
                age_seconds,
                last_reason,
            } => write!(
                f,
                "gave up after {attempts} attempts over {age_seconds} s: {last_reason}"
            ),
        }
    }
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq)]
pub enum DeadLetter {
    /// A job that gave up; its `dead_letter_reason` says why. SQS's redrive can move it back
    /// to the delivery queue, where it starts afresh.
    Job(Job),
    /// A message that is not a delivery job.
    Unreadable(Unreadable),
}

/// A message that is not a delivery job, as kept in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreadable {
    /// Always `true`: tells it apart from a job.
    pub unreadable: bool,
    pub dead_letter_reason: String,
    /// The body's size in bytes.
    #[serde(default)]
    pub bytes: usize,
    /// SHA-1 of the body, hex.
    #[serde(default)]
    pub sha1: String,
    /// The body, gzip-compressed, base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_gzip: Option<String>,
    /// Set when `body_gzip` holds only the body's first bytes, this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_to: Option<usize>,
    /// The body as text (dead letters written before bodies were compressed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// Room kept for the rest of the envelope.
const ENVELOPE_BYTES: usize = 2048;

impl Unreadable {
    /// `body` kept with `reason`, within the queue's message limit.
    pub fn new(body: &str, reason: &Reason) -> Unreadable {
        // Cut by its size as JSON: a reason can quote what the queue's writer sent (serde_json
        // names an unknown variant as it was sent), control characters included.
        let reason = reason.to_string();
        let reason = json_prefix(&reason, ENVELOPE_BYTES / 2).to_owned();
        let room = MAX_MESSAGE_BYTES - ENVELOPE_BYTES;
        let mut keep = body.len();
        let body_gzip = loop {
            let kept = gzip_base64(truncate(body, keep).as_bytes());
            if kept.len() <= room || keep == 0 {
                break kept;
            }
            // Shrink in proportion, with a margin: compressed sizes are not linear.
            keep = truncate(body, keep * room / kept.len() * 9 / 10).len();
        };
        Unreadable {
            unreadable: true,
            dead_letter_reason: reason,
            bytes: body.len(),
            sha1: hex::encode(Sha1::digest(body.as_bytes())),
            body_gzip: Some(body_gzip),
            truncated_to: (keep < body.len()).then_some(keep),
            body: None,
        }
    }

    /// The body as it is kept (the first `truncated_to` bytes when truncated).
    pub fn kept_body(&self) -> Option<String> {
        if let Some(text) = &self.body {
            return Some(text.clone());
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.body_gzip.as_deref()?)
            .ok()?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .take(MAX_MESSAGE_BYTES as u64 * 16)
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    }
}

impl DeadLetter {
    /// A job given up for `reason`.
    pub fn job(mut job: Job, reason: &Reason) -> DeadLetter {
        job.dead_letter_reason = Some(reason.to_string());
        DeadLetter::Job(job)
    }

    /// Reads a dead-letter queue message: a job, or else what was kept of an unreadable one.
    /// `None` for a message that is neither (not written by this project).
    pub fn decode(body: &str) -> Option<DeadLetter> {
        match Job::decode(body) {
            Ok(job) => Some(DeadLetter::Job(job)),
            Err(_) => serde_json::from_str::<Unreadable>(body)
                .ok()
                .filter(|u| u.unreadable)
                .map(DeadLetter::Unreadable),
        }
    }

    /// The queue message bodies (a large job is split, as on the delivery queue).
    pub fn bodies(self) -> Vec<String> {
        match self {
            DeadLetter::Job(job) => job.bodies(),
            DeadLetter::Unreadable(u) => {
                vec![serde_json::to_string(&u).expect("dead letters serialise")]
            }
        }
    }

    /// Why it gave up.
    pub fn reason(&self) -> &str {
        match self {
            DeadLetter::Job(job) => job
                .dead_letter_reason
                .as_deref()
                .unwrap_or(&job.last_reason),
            DeadLetter::Unreadable(u) => &u.dead_letter_reason,
        }
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    text.get(..text.floor_char_boundary(max))
        .unwrap_or_default()
}

fn gzip_base64(bytes: &[u8]) -> String {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let compressed = gz
        .write_all(bytes)
        .and_then(|()| gz.finish())
        .expect("compressing into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(compressed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` characters that barely compress: each is `char_of` a xorshift step.
    fn noise(len: usize, char_of: impl Fn(u64) -> char) -> String {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char_of(x)
            })
            .collect()
    }

    fn reason() -> Reason {
        Reason::Unreadable(JobError::Malformed("expected value".into()))
    }

    #[test]
    fn a_body_of_quotes_near_the_limit_fits_once_kept_and_reads_back_whole() {
        // Wrapped as a JSON string, every `"` doubled the size: 280,187 bytes, refused by SQS.
        let body = "\"".repeat(140_000);
        let letter = DeadLetter::Unreadable(Unreadable::new(&body, &reason()));
        let [text] = letter.clone().bodies().try_into().unwrap();
        assert!(text.len() <= MAX_MESSAGE_BYTES, "{}", text.len());
        let Some(DeadLetter::Unreadable(back)) = DeadLetter::decode(&text) else {
            panic!("not read back: {text}");
        };
        assert_eq!(back.kept_body().as_deref(), Some(body.as_str()));
        assert_eq!((back.bytes, back.truncated_to), (140_000, None));
        assert_eq!(back.sha1, hex::encode(Sha1::digest(body.as_bytes())));
        assert_eq!(
            letter.reason(),
            "unreadable job: the job is not a delivery job of this version (expected value)"
        );
    }

    #[test]
    fn an_incompressible_body_at_the_limit_is_kept_in_part_with_its_size_and_digest() {
        let body = noise(MAX_MESSAGE_BYTES, |x| char::from(b'!' + (x % 90) as u8));
        let letter = DeadLetter::Unreadable(Unreadable::new(&body, &reason()));
        let [text] = letter.bodies().try_into().unwrap();
        assert!(text.len() <= MAX_MESSAGE_BYTES, "{}", text.len());
        let Some(DeadLetter::Unreadable(back)) = DeadLetter::decode(&text) else {
            panic!("not read back");
        };
        let kept = back.kept_body().unwrap();
        assert_eq!(Some(kept.len()), back.truncated_to);
        assert!(kept.len() > MAX_MESSAGE_BYTES / 2, "{}", kept.len());
        assert!(body.starts_with(&kept));
        assert_eq!(back.bytes, MAX_MESSAGE_BYTES);
        assert_eq!(back.sha1, hex::encode(Sha1::digest(body.as_bytes())));
    }

    /// serde_json names an unknown variant as it was sent, control characters and all, and
    /// each of those is six bytes once the reason is written as JSON (`\u0001`): with an
    /// incompressible body, the dead letter must still fit.
    #[test]
    fn a_reason_that_grows_when_escaped_still_fits_beside_an_incompressible_body() {
        // As the contents of a JSON string: neither `"` nor `\`.
        let pad = noise(MAX_MESSAGE_BYTES, |x| match b'#' + (x % 90) as u8 {
            b'\\' => '!',
            c => char::from(c),
        });
        let endpoint = "\\u0001".repeat(4_000);
        let body_of = |pad_len: usize| {
            let pad = pad.get(..pad_len).unwrap();
            format!(r#"{{"v":1,"route":"/events","endpoint":"{endpoint}","pad":"{pad}"}}"#)
        };
        // The longest body kept whole: its compressed form just fits the room for a body.
        let room = MAX_MESSAGE_BYTES - ENVELOPE_BYTES;
        let (mut fits, mut over) = (0, pad.len());
        while over - fits > 1 {
            let mid = (fits + over) / 2;
            if gzip_base64(body_of(mid).as_bytes()).len() <= room {
                fits = mid;
            } else {
                over = mid;
            }
        }
        let body = body_of(fits);
        let refused = Job::decode(&body).unwrap_err();
        let letter = DeadLetter::Unreadable(Unreadable::new(&body, &Reason::Unreadable(refused)));
        let [text] = letter.bodies().try_into().unwrap();
        // Before the reason was capped by its escaped size: 265,963 bytes.
        assert!(text.len() <= MAX_MESSAGE_BYTES, "{}", text.len());
        let Some(DeadLetter::Unreadable(back)) = DeadLetter::decode(&text) else {
            panic!("not read back");
        };
        assert_eq!(back.kept_body(), Some(body.clone()));
        assert_eq!((back.bytes, back.truncated_to), (body.len(), None));
        // What fits in 1,024 bytes as JSON: 157 control characters of six bytes each.
        let prefix =
            "unreadable job: the job is not a delivery job of this version (unknown variant `";
        assert_eq!(
            back.dead_letter_reason,
            format!("{prefix}{}", "\u{1}".repeat((1024 - prefix.len()) / 6))
        );
    }

    #[test]
    fn dead_letters_written_before_compression_still_read() {
        let old =
            r#"{"unreadable": true, "dead_letter_reason": "unreadable job: x", "body": "{oops"}"#;
        let Some(DeadLetter::Unreadable(u)) = DeadLetter::decode(old) else {
            panic!("not read");
        };
        assert_eq!(
            (u.kept_body().as_deref(), u.dead_letter_reason.as_str()),
            (Some("{oops"), "unreadable job: x")
        );
        assert_eq!(DeadLetter::decode("{\"anything\": 1}"), None);
    }
}
