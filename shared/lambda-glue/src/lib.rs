//! What the four Lambda functions share, so each `main` is a few lines: the inbound request
//! ([`inbound`]: API Gateway v2/v1 or direct invocation), Segment's body shapes ([`body`]),
//! authentication ([`auth`]), keys from Secrets Manager ([`secrets`], **the secret cache**),
//! configuration ([`config`]), the request pipeline ([`function`]: keys → authenticate → plan
//! → deliver → reply), planning one message ([`planning`]), request-level errors ([`error`]),
//! the deletions route's own behaviour ([`deletions`]) and the answer to Segment ([`reply`]).

pub mod auth;
mod aws;
pub mod body;
mod config;
mod deletions;
mod error;
mod function;
pub mod inbound;
mod logging;
pub mod metrics;
pub mod planning;
pub mod queue;
mod redeliver;
pub mod reply;
pub mod secrets;

pub use aws::{AwsEnv, http_client as aws_http_client};
pub use config::{ConfigError, FunctionConfig, QueueConfig, Route};
pub use error::RequestError;
pub use function::{Function, MAX_BODY_BYTES};
pub use redeliver::consume_memory_queues;

/// Runs a function on the Lambda runtime: logging (JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`, as
/// the template sets), configuration from the environment, then one invocation after another.
/// A configuration error stops the cold start with a message naming what is wrong.
pub async fn run(route: Route) -> Result<(), lambda_runtime::Error> {
    logging::init();
    let function = match Function::from_env(route).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return Err(e.into());
        }
    };
    let function = &function;
    if route == Route::Redeliver {
        return lambda_runtime::run(lambda_runtime::service_fn(
            move |event: lambda_runtime::LambdaEvent<aws_lambda_events::sqs::SqsEvent>| async move {
                function.redeliver_event(event).await
            },
        ))
        .await;
    }
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            function.invoke(event).await
        },
    ))
    .await
}
