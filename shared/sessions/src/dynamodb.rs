//! The DynamoDB store: one table keyed by `k` (the session key), with `start`, `last` and
//! `expires` (epoch seconds, the table's time-to-live attribute). Reads are `BatchGetItem`
//! calls of at most 100 keys, in parallel and strongly consistent (fewer conflicts on the
//! writes that follow); writes are one conditional `UpdateItem` per key whose state changed.
//!
//! Errors are reported by their code alone (`ThrottlingException`, `AccessDeniedException`…):
//! DynamoDB's messages can name the table's and the role's ARNs, which stay out of logs.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};

use crate::assign::State;
use crate::store::{Loaded, Saved, SessionStore, StoreError, now_s};

/// `BatchGetItem` takes at most 100 keys.
const KEYS_PER_READ: usize = 100;
/// `BatchGetItem` calls in flight at once (4,000 keys are 40 calls).
const READS_IN_FLIGHT: usize = 16;
/// A read whose keys DynamoDB left unprocessed (under load) is repeated at most this often.
const MAX_READ_ROUNDS: usize = 4;

const KEY: &str = "k";
const START: &str = "start";
const LAST: &str = "last";
const EXPIRES: &str = "expires";

/// Sessions' state in a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    /// One `BatchGetItem` of at most 100 keys, repeated for what DynamoDB left unprocessed.
    async fn read(&self, keys: &[String]) -> Result<Loaded, StoreError> {
        let mut loaded = Loaded::default();
        let mut wanted: Vec<HashMap<String, AttributeValue>> = keys
            .iter()
            .map(|k| HashMap::from([(KEY.to_owned(), AttributeValue::S(k.clone()))]))
            .collect();
        for _ in 0..MAX_READ_ROUNDS {
            if wanted.is_empty() {
                return Ok(loaded);
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut wanted)))
                .consistent_read(true)
                .projection_expression("#k, #s, #l, #e")
                .expression_attribute_names("#k", KEY)
                .expression_attribute_names("#s", START)
                .expression_attribute_names("#l", LAST)
                .expression_attribute_names("#e", EXPIRES)
                .build()
                .map_err(|e| StoreError::Failed(e.to_string()))?;
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(error)?;
            loaded.calls += 1;
            let now = now_s();
            for item in output
                .responses()
                .and_then(|r| r.get(&self.table))
                .into_iter()
                .flatten()
            {
                if let (Some(key), Some(state)) = (text(item.get(KEY)), state(item))
                    && number(item.get(EXPIRES)).is_none_or(|e| e > now)
                {
                    // An expired item DynamoDB has not removed yet counts as no state.
                    loaded.states.insert(key, state);
                }
            }
            if let Some(left) = output.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                wanted = left.keys().to_vec();
            }
        }
        if wanted.is_empty() {
            Ok(loaded)
        } else {
            Err(StoreError::Throttled(format!(
                "{} keys left unprocessed",
                wanted.len()
            )))
        }
    }
}

impl SessionStore for DynamoStore {
    fn load<'s>(&'s self, keys: &'s [String]) -> BoxFuture<'s, Result<Loaded, StoreError>> {
        async move {
            let calls: Vec<BoxFuture<'_, Result<Loaded, StoreError>>> = keys
                .chunks(KEYS_PER_READ)
                .map(|c| self.read(c).boxed())
                .collect();
            let reads: Vec<Loaded> = futures::stream::iter(calls)
                .buffer_unordered(READS_IN_FLIGHT)
                .try_collect()
                .await?;
            let mut all = Loaded::default();
            for r in reads {
                all.calls += r.calls;
                all.states.extend(r.states);
            }
            Ok(all)
        }
        .boxed()
    }

    fn save<'s>(
        &'s self,
        key: &'s str,
        expected: Option<State>,
        new: State,
        expires_at_s: i64,
    ) -> BoxFuture<'s, Result<Saved, StoreError>> {
        async move {
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(KEY, AttributeValue::S(key.to_owned()))
                .update_expression("SET #s = :s, #l = :l, #e = :e")
                .expression_attribute_names("#s", START)
                .expression_attribute_names("#l", LAST)
                .expression_attribute_names("#e", EXPIRES)
                .expression_attribute_values(":s", n(new.start))
                .expression_attribute_values(":l", n(new.last))
                .expression_attribute_values(":e", n(expires_at_s));
            update = match expected {
                // No state, or one that has expired (DynamoDB removes expired items late).
                None => update
                    .expression_attribute_names("#k", KEY)
                    .expression_attribute_values(":now", n(now_s()))
                    .condition_expression("attribute_not_exists(#k) OR #e <= :now"),
                Some(old) => update
                    .expression_attribute_values(":s0", n(old.start))
                    .expression_attribute_values(":l0", n(old.last))
                    .condition_expression("#s = :s0 AND #l = :l0"),
            };
            match update.send().await {
                Ok(_) => Ok(Saved::Written),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                {
                    Ok(Saved::Conflict)
                }
                Err(e) => Err(error(e)),
            }
        }
        .boxed()
    }
}

/// The error by its code only (see the module docs).
fn error<E: ProvideErrorMetadata, R>(e: SdkError<E, R>) -> StoreError {
    let code = match &e {
        SdkError::ServiceError(s) => s.err().code().unwrap_or("unknown service error"),
        SdkError::TimeoutError(_) => "timeout",
        SdkError::DispatchFailure(_) => "connection failed",
        SdkError::ResponseError(_) => "unreadable response",
        SdkError::ConstructionFailure(_) => "request not built",
        _ => "unknown error",
    }
    .to_owned();
    match code.as_str() {
        "ThrottlingException"
        | "ProvisionedThroughputExceededException"
        | "RequestLimitExceeded" => StoreError::Throttled(code),
        _ => StoreError::Failed(code),
    }
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn text(value: Option<&AttributeValue>) -> Option<String> {
    value.and_then(|v| v.as_s().ok()).cloned()
}

fn number(value: Option<&AttributeValue>) -> Option<i64> {
    value
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

fn state(item: &HashMap<String, AttributeValue>) -> Option<State> {
    Some(State {
        start: number(item.get(START))?,
        last: number(item.get(LAST))?,
    })
}
