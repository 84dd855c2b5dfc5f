//! The *redeliver* function: delivery jobs from the delivery and deletion queues (SQS event
//! sources), sent with the same client and retry policy as the other functions; what cannot be
//! delivered goes to the dead-letter queue with its reason. All logic lives in `pipeline`.

/// Large blocks in mappings of their own: a warm instance holds what a fresh one would.
#[global_allocator]
static ALLOCATOR: pipeline::ops::memory::Allocator = pipeline::ops::memory::Allocator;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    pipeline::run(pipeline::Kind::Redeliver).await
}
