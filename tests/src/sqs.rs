//! SQS on moto's server for the durable-delivery tests: the queues as the template creates
//! them, and a stand-in for Lambda's SQS event source that drives the real `redeliver` binary
//! (receive, invoke, delete what succeeded, leave the failures).

use std::time::Duration;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::{Value, json};

use crate::moto::{Moto, REGION};
use crate::runtime_api::{Invocation, RuntimeApi};

/// The three queues.
pub struct Queues {
    pub client: aws_sdk_sqs::Client,
    pub delivery: String,
    pub deletion: String,
    pub dead_letter: String,
}

impl Queues {
    /// Creates the delivery queue, the FIFO deletion queue and the dead-letter queue.
    pub async fn create(moto: &Moto, prefix: &str) -> Queues {
        let client = moto.sqs().await;
        let make = |name: String, fifo: bool| {
            let client = client.clone();
            async move {
                let mut create = client.create_queue().queue_name(name);
                if fifo {
                    create = create.attributes(QueueAttributeName::FifoQueue, "true");
                }
                create
                    .send()
                    .await
                    .expect("create queue")
                    .queue_url
                    .unwrap()
            }
        };
        Queues {
            delivery: make(format!("{prefix}-delivery"), false).await,
            deletion: make(format!("{prefix}-deletion.fifo"), true).await,
            dead_letter: make(format!("{prefix}-dead-letter"), false).await,
            client,
        }
    }

    /// The environment of a function that uses these queues.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DELIVERY_QUEUE_URL", self.delivery.clone()),
            ("DELETION_QUEUE_URL", self.deletion.clone()),
            ("DEAD_LETTER_QUEUE_URL", self.dead_letter.clone()),
        ]
    }

    /// Messages in a queue, visible or in flight (not the delayed ones).
    pub async fn depth(&self, url: &str) -> usize {
        let attrs = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .expect("queue attributes");
        let count = |name: QueueAttributeName| -> usize {
            attrs
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        count(QueueAttributeName::ApproximateNumberOfMessages)
            + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            + count(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
    }

    /// The bodies in a queue, read without taking them (visibility timeout 0).
    pub async fn peek(&self, url: &str) -> Vec<String> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .expect("receive");
        out.messages()
            .iter()
            .filter_map(|m| m.body.clone())
            .collect()
    }

    /// Moves every message of `from` to `to`: what SQS's `StartMessageMoveTask` (the DLQ
    /// redrive) does, which moto does not implement.
    pub async fn move_all(&self, from: &str, to: &str) -> usize {
        let mut moved = 0;
        loop {
            let out = self
                .client
                .receive_message()
                .queue_url(from)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("receive");
            if out.messages().is_empty() {
                return moved;
            }
            for m in out.messages() {
                self.client
                    .send_message()
                    .queue_url(to)
                    .message_body(m.body.clone().unwrap_or_default())
                    .send()
                    .await
                    .expect("send");
                self.client
                    .delete_message()
                    .queue_url(from)
                    .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
                moved += 1;
            }
        }
    }
}

/// Lambda's SQS event source, for one queue: takes a batch, invokes the function with it as
/// an `SqsEvent`, deletes the records that did not fail, and leaves the failures to reappear.
pub struct EventSource<'q> {
    pub queues: &'q Queues,
    pub url: String,
    pub batch: i32,
}

impl EventSource<'_> {
    /// One poll; returns the records handed to the function (0 when nothing was visible).
    pub async fn poll(&self, runtime: &RuntimeApi, timeout: Duration) -> usize {
        let client = &self.queues.client;
        let out = client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(self.batch)
            .visibility_timeout(30)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive");
        let messages = out.messages();
        if messages.is_empty() {
            return 0;
        }
        let name = self.url.rsplit('/').next().unwrap_or_default();
        let arn = format!("arn:aws:sqs:{REGION}:123456789012:{name}");
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attributes: serde_json::Map<String, Value> = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_owned(), Value::from(v.as_str())))
                            .collect()
                    })
                    .unwrap_or_default();
                json!({"messageId": m.message_id, "receiptHandle": m.receipt_handle,
                    "body": m.body, "attributes": attributes, "messageAttributes": {},
                    "md5OfBody": m.md5_of_body, "eventSource": "aws:sqs",
                    "eventSourceARN": arn, "awsRegion": REGION})
            })
            .collect();
        let failed: Vec<String> = match runtime.invoke(json!({"Records": records}), timeout).await {
            Invocation::Response(r) => r["batchItemFailures"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                .collect(),
            // A failed invocation hands the whole batch out again.
            Invocation::Error(_) => return messages.len(),
        };
        for m in messages {
            if !failed
                .iter()
                .any(|f| Some(f.as_str()) == m.message_id.as_deref())
            {
                client
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
            }
        }
        messages.len()
    }
}
