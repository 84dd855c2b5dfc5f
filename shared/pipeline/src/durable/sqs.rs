//! The queues on Amazon SQS: `SendMessageBatch` within SQS's limits (ten entries and 256 KiB a
//! call), per-message delays on the standard queue, one message group and a content hash as the
//! deduplication id on the FIFO deletion queue, and `ChangeMessageVisibility` for a retry in
//! place.

use std::time::Duration;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use sha1::{Digest, Sha1};

use super::job::{self, MAX_MESSAGE_BYTES};
use super::{Outgoing, QueueError, QueueKind};

/// The one message group of the deletion queue: every deletion job waits its turn.
pub const DELETION_GROUP: &str = "deletions";

/// The SQS queues a function may use (ingest functions know only the delivery queue).
pub struct SqsQueues {
    client: aws_sdk_sqs::Client,
    delivery: String,
    deletion: Option<String>,
    dead_letter: Option<String>,
}

impl SqsQueues {
    pub fn new(
        client: aws_sdk_sqs::Client,
        delivery: String,
        deletion: Option<String>,
        dead_letter: Option<String>,
    ) -> Self {
        SqsQueues {
            client,
            delivery,
            deletion,
            dead_letter,
        }
    }

    pub fn url(&self, kind: QueueKind) -> Result<&str, QueueError> {
        match kind {
            QueueKind::Delivery => Some(self.delivery.as_str()),
            QueueKind::Deletion => self.deletion.as_deref(),
            QueueKind::DeadLetter => self.dead_letter.as_deref(),
        }
        .ok_or(QueueError::NotConfigured(kind.name()))
    }

    pub async fn send(
        &self,
        kind: QueueKind,
        messages: Vec<Outgoing>,
    ) -> Result<usize, QueueError> {
        let url = self.url(kind)?;
        let fifo = url.ends_with(".fifo");
        let refused = |reason: String| QueueError::Refused {
            queue: kind.name(),
            reason,
        };
        if let Some(m) = messages.iter().find(|m| m.body.len() > MAX_MESSAGE_BYTES) {
            return Err(refused(format!(
                "a message of {} bytes is over the {MAX_MESSAGE_BYTES}-byte limit",
                m.body.len()
            )));
        }
        let calls = job::batches(messages, |m| m.body.len());
        let count = calls.len();
        for call in calls {
            let entries = call
                .into_iter()
                .enumerate()
                .map(|(i, m)| entry(i, m, fifo))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| refused(e.to_string()))?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| refused(sdk_reason(&e)))?;
            if let Some(failed) = out.failed().first() {
                return Err(refused(format!(
                    "{} of the batch failed ({})",
                    out.failed().len(),
                    failed.code()
                )));
            }
        }
        Ok(count)
    }

    pub async fn retry_later(
        &self,
        kind: QueueKind,
        receipt: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(self.url(kind)?)
            .receipt_handle(receipt)
            .visibility_timeout(delay.as_secs().min(43_200) as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| QueueError::Refused {
                queue: kind.name(),
                reason: sdk_reason(&e),
            })
    }
}

fn entry(
    i: usize,
    m: Outgoing,
    fifo: bool,
) -> Result<SendMessageBatchRequestEntry, aws_sdk_sqs::error::BuildError> {
    let builder = SendMessageBatchRequestEntry::builder().id(format!("m{i}"));
    let builder = if fifo {
        let digest = hex::encode(Sha1::digest(m.body.as_bytes()));
        builder
            .message_group_id(DELETION_GROUP)
            .message_deduplication_id(digest)
    } else {
        builder.delay_seconds(m.delay.as_secs().min(900) as i32)
    };
    builder.message_body(m.body).build()
}

/// An SDK error as its code or the kind of failure, never with a URL (it holds the account id).
fn sdk_reason<E, R>(e: &aws_sdk_sqs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
    match (e.code(), e) {
        (Some(code), _) => code.to_owned(),
        (None, SdkError::TimeoutError(_)) => "timed out".into(),
        (None, SdkError::DispatchFailure(_)) => "could not reach SQS".into(),
        (None, _) => "unexpected answer from SQS".into(),
    }
}
