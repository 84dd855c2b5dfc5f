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
pub(crate) fn init() {
    let level = configured_level();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_max_level(level)
        .with_writer(std::io::stdout);
    let filter = targets(level, &[]);
    if json {
        builder.json().finish().with(filter).init();
    } else {
        builder.finish().with(filter).init();
    }
}

/// The most bytes of one sender-given text (a messageId, a user id, a reason quoting a field)
/// a log line shows. Such texts are as long as the sender makes them (a 300 KB messageId is
/// valid JSON); CloudWatch cuts a log event at 256 KB, and an operator needs only enough to
/// search for it.
pub(crate) const LOGGED_TEXT_BYTES: usize = 256;

/// The most bytes of a user id a deletion audit line shows: Amplitude's limit on any string
/// it keeps, so every id Amplitude can hold is audited whole.
pub(crate) const AUDITED_ID_BYTES: usize = 1024;

/// A sender-given text as a log line shows it: whole up to a limit ([`LOGGED_TEXT_BYTES`], or
/// [`AUDITED_ID_BYTES`] for an audited id), else cut there (on a character boundary) and
/// followed by its full length.
pub(crate) struct Capped<'a> {
    text: &'a str,
    limit: usize,
}

impl<'a> Capped<'a> {
    /// A messageId, a reason: up to [`LOGGED_TEXT_BYTES`].
    pub(crate) fn text(text: &'a str) -> Self {
        Capped {
            text,
            limit: LOGGED_TEXT_BYTES,
        }
    }

    /// A user id in the deletion audit: up to [`AUDITED_ID_BYTES`].
    pub(crate) fn audited_id(text: &'a str) -> Self {
        Capped {
            text,
            limit: AUDITED_ID_BYTES,
        }
    }
}

impl std::fmt::Display for Capped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Capped { text, limit } = *self;
        if text.len() <= limit {
            return f.write_str(text);
        }
        let shown = text
            .get(..text.floor_char_boundary(limit))
            .unwrap_or_default();
        write!(f, "{shown}… ({} bytes)", text.len())
    }
}

/// Quoted and escaped as `str`'s `Debug` does (a list of ids in a log line).
impl std::fmt::Debug for Capped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// The level of `AWS_LAMBDA_LOG_LEVEL`, else of `RUST_LOG` (a level's name: `trace`, `debug`,
/// `info`, `warn`, `error`, `off`), else INFO.
pub fn configured_level() -> LevelFilter {
    let var = |name| std::env::var(name).ok();
    var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|| var("RUST_LOG"))
        .and_then(|l| LevelFilter::from_str(l.trim()).ok())
        .unwrap_or(LevelFilter::INFO)
}

/// This project's crates (and `more_own`, e.g. the command line's) at `level`; every other
/// at most WARN. A fixed list of targets, not `EnvFilter`: that pulls in a regular-expression
/// engine's DFA builder (binary size, and every regular expression compiled in the process
/// then builds a full DFA).
pub fn targets(level: LevelFilter, more_own: &[&'static str]) -> Targets {
    Targets::new()
        .with_default(level.min(LevelFilter::WARN))
        .with_targets(OWN.map(|crate_name| (crate_name, level)))
        .with_targets(more_own.iter().map(|crate_name| (*crate_name, level)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn a_sender_given_text_is_logged_whole_up_to_256_bytes_then_cut_with_its_length() {
        let short = "m".repeat(LOGGED_TEXT_BYTES);
        assert_eq!(Capped::text(&short).to_string(), short);
        let long = "m".repeat(300_000);
        assert_eq!(
            Capped::text(&long).to_string(),
            format!("{}… (300000 bytes)", "m".repeat(LOGGED_TEXT_BYTES))
        );
        // Cut on a character boundary: 255 ASCII bytes, then a 3-byte character across 256.
        let across = format!("{}€€", "a".repeat(LOGGED_TEXT_BYTES - 1));
        assert_eq!(
            Capped::text(&across).to_string(),
            format!("{}… (261 bytes)", "a".repeat(LOGGED_TEXT_BYTES - 1))
        );
        assert_eq!(format!("{:?}", Capped::text("m-\"1")), r#""m-\"1""#);
        // An audited id: whole up to Amplitude's 1024, then cut the same way.
        let id = "u".repeat(AUDITED_ID_BYTES);
        assert_eq!(Capped::audited_id(&id).to_string(), id);
        let long_id = "u".repeat(300_000);
        assert_eq!(
            Capped::audited_id(&long_id).to_string(),
            format!("{id}… (300000 bytes)")
        );
    }

    #[test]
    fn dependencies_stay_at_warn_whatever_the_level() {
        let trace = targets(LevelFilter::TRACE, &["segment_amplitude"]);
        assert!(trace.would_enable("pipeline::function", &Level::TRACE));
        assert!(trace.would_enable("amplitude_client::engine", &Level::DEBUG));
        assert!(!trace.would_enable("lambda_runtime", &Level::TRACE));
        assert!(!trace.would_enable("aws_smithy_runtime::client", &Level::DEBUG));
        assert!(!trace.would_enable("hyper_util::client", &Level::INFO));
        assert!(trace.would_enable("lambda_runtime", &Level::WARN));
        assert!(trace.would_enable("segment_amplitude::serve", &Level::TRACE));
        let error = targets(LevelFilter::ERROR, &[]);
        assert!(!error.would_enable("pipeline", &Level::WARN));
        assert!(!error.would_enable("lambda_runtime", &Level::WARN));
    }
}
