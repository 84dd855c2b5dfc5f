//! Logging as Lambda expects it: JSON lines when the function's log format is JSON (the
//! template sets it), at the level of `AWS_LAMBDA_LOG_LEVEL` (or `RUST_LOG`), INFO by default.
//!
//! Set up here rather than with `lambda_runtime`'s helper, whose per-target filter pulls in a
//! regular-expression engine that the functions never use (and that costs binary size and cold
//! start).

use std::str::FromStr;

use tracing_subscriber::filter::LevelFilter;

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
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
