//! Logging as Lambda expects it: JSON lines when the function's log format is JSON (the
//! template sets it), at the level of `AWS_LAMBDA_LOG_LEVEL` (or `RUST_LOG`), INFO by default.
//!
//! **No secret at any level.** The level applies to this project's crates, whose lines never
//! hold a key, a token or an ARN. Every other crate — the Lambda runtime, the AWS SDK, hyper,
//! reqwest, rustls — is held at WARN whatever the level: at DEBUG and TRACE the runtime logs
//! each raw event (with its `Authorization` header and the payload) and the SDK each response
//! (with a secret's ARN, and so the account id).
//!
//! Set up here rather than with `lambda_runtime`'s helper, whose per-target filter pulls in a
//! regular-expression engine that the functions never use (and that costs binary size and cold
//! start).

use std::str::FromStr;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The crates whose log lines follow the configured level.
const OWN: [&str; 9] = [
    "pipeline",
    "amplitude_client",
    "amplitude_wire",
    "mapping",
    "events",
    "alias",
    "deletions",
    "engage",
    "redeliver",
];

/// Installs the process's log subscriber.
pub fn init() {
    let var = |name| std::env::var(name).ok();
    let level = var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|| var("RUST_LOG"))
        .and_then(|l| LevelFilter::from_str(&l).ok())
        .unwrap_or(LevelFilter::INFO);
    let json = var("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_max_level(level)
        .with_writer(std::io::stdout);
    let filter = targets(level);
    if json {
        builder.json().finish().with(filter).init();
    } else {
        builder.finish().with(filter).init();
    }
}

/// This project's crates at `level`; every other at most WARN.
fn targets(level: LevelFilter) -> Targets {
    Targets::new()
        .with_default(level.min(LevelFilter::WARN))
        .with_targets(OWN.map(|crate_name| (crate_name, level)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn dependencies_stay_at_warn_whatever_the_level() {
        let trace = targets(LevelFilter::TRACE);
        assert!(trace.would_enable("pipeline::function", &Level::TRACE));
        assert!(trace.would_enable("amplitude_client::engine", &Level::DEBUG));
        assert!(!trace.would_enable("lambda_runtime", &Level::TRACE));
        assert!(!trace.would_enable("aws_smithy_runtime::client", &Level::DEBUG));
        assert!(!trace.would_enable("hyper_util::client", &Level::INFO));
        assert!(trace.would_enable("lambda_runtime", &Level::WARN));
        let error = targets(LevelFilter::ERROR);
        assert!(!error.would_enable("pipeline", &Level::WARN));
        assert!(!error.would_enable("lambda_runtime", &Level::WARN));
    }
}
