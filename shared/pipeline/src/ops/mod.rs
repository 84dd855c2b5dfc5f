//! **Operations: what a function runs on.** Its configuration from the environment, validated
//! once at start-up ([`config`]), keys from Secrets Manager (**the secret cache**,
//! [`secrets`]), metrics as CloudWatch EMF and the local `/_metrics` ([`metrics`]), logging
//! ([`logging`]), the AWS SDK clients built from Lambda's environment ([`aws`]), and giving a
//! large request's freed memory back ([`memory`]).
//!
//! Nothing here knows Segment's messages or Amplitude's answers: it is what the pipeline uses,
//! not the pipeline.

pub mod aws;
pub mod config;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod secrets;

/// Now, in ms since the epoch: the one clock of the pipeline (a job's age, the Lambda
/// deadline, the session stage's receive time, the EMF timestamp).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
