//! The functions' request pipeline, so each function's `main` is one line. Its folders are its
//! architecture:
//!
//! * [`function`](Function): **the pipeline**, one request read top to bottom (route → keys →
//!   authenticate → plan → deliver, or queue → settle → reply), and what a function is
//!   ([`Kind`]) and how it hands over what it could not deliver (decided once when built);
//! * [`ingest`]: what arrives and what is answered — the routes ([`Route`]), the Lambda payload
//!   (`inbound`), Segment's body shapes (`body`), authentication (`auth`), the answer to
//!   Segment (`reply`);
//! * [`delivery`]: from messages to outcomes — planning one message (`planning`), the
//!   settlement every delivery goes through (`settlement`), and the one table of outcomes;
//! * [`durable`]: **durable delivery** — queue jobs (`job`), SQS and in-process queues, the
//!   dead-letter type, and the redeliver function (`redeliver`);
//! * [`ops`]: what a function runs on — configuration, **the secret cache** (`secrets`),
//!   **metrics**, logging, AWS clients.

pub mod delivery;
pub mod durable;
mod function;
pub mod ingest;
pub mod ops;

pub use function::{Builder, Function, Kind, MAX_BODY_BYTES};
pub use ingest::Route;
pub use ingest::error::RequestError;
pub use ops::aws::{AwsEnv, http_client as aws_http_client};
pub use ops::config::{ConfigError, FunctionConfig, QueueConfig, VARIABLES};

/// Runs a function on the Lambda runtime: logging (JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`, as
/// the template sets), configuration from the environment, then one invocation after another.
/// A configuration error stops the cold start with a message naming what is wrong.
pub async fn run(kind: Kind) -> Result<(), lambda_runtime::Error> {
    ops::memory::configure();
    ops::logging::init();
    let function = match Function::from_env(kind).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return Err(e.into());
        }
    };
    let function = &function;
    match kind {
        Kind::Redeliver => lambda_runtime::run(lambda_runtime::service_fn(
            move |event: lambda_runtime::LambdaEvent<aws_lambda_events::sqs::SqsEvent>| async move {
                function.redeliver_event(event).await
            },
        ))
        .await,
        Kind::Ingest(_) => {
            lambda_runtime::run(lambda_runtime::service_fn(
                move |event: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
                    function.invoke(event).await
                },
            ))
            .await
        }
    }
}
