//! The *redeliver* function: delivery jobs from the delivery and deletion queues (SQS event
//! sources), sent with the same client and retry policy as the other functions; what cannot be
//! delivered goes to the dead-letter queue with its reason. All logic lives in `pipeline`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    pipeline::run(pipeline::Kind::Redeliver).await
}
