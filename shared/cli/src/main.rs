//! `segment-amplitude`: the project's command line.
//!
//! * `map --settings SETTINGS.json [INPUT]`: Segment events (JSON Lines) → the Amplitude
//!   requests the destination sends for each, one JSON line per input line.
//! * `emulator [--port N] [--config FILE]`: a local Amplitude on 127.0.0.1 (see the
//!   `amplitude-emulator` crate), for trying the destination by hand.
//! * `serve`: every function behind a local HTTP server with the routes of `template.yaml`,
//!   Amplitude replaced by the emulator (see `serve.rs`).

/// `map` parses and maps each line in many small, short-lived allocations; with mimalloc the
/// allocator's share of its CPU falls from 14% to 6% (`perf`, BENCHMARKS.md). The functions
/// keep the system allocator: their time goes to I/O.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod dlq;
mod mapper;
mod output;
mod secret;
mod serve;

use std::fs;
use std::io::{self, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mapping::Settings;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Parser)]
#[command(
    name = "segment-amplitude",
    version,
    about = "Self-hosted Amplitude destination for Segment"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the Amplitude requests each Segment event (one JSON per line) becomes.
    Map {
        /// Segment's settings JSON for the Amplitude destination (its own keys, e.g. `apiKey`).
        #[arg(long)]
        settings: PathBuf,
        /// JSON Lines file of Segment events; standard input when absent.
        input: Option<PathBuf>,
    },
    /// Run the functions locally behind an HTTP server on 127.0.0.1 (the emulator as Amplitude).
    #[command(after_help = serve::variables_help())]
    Serve(serve::ServeArgs),
    /// The dead-letter queue of durable delivery.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// The stack's secrets.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Run the Amplitude emulator on 127.0.0.1 until interrupted.
    Emulator {
        /// Port on 127.0.0.1 (0 = any free port).
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// JSON file with the emulator's configuration (accepted keys, limits, rate model).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Print each dead-lettered job (endpoint, messages, age, attempts, reason; never a key)
    /// without removing it. Uses the standard AWS configuration (profile, region).
    Inspect {
        /// The dead-letter queue's URL (the stack output `DeadLetterQueueUrl`).
        #[arg(long)]
        queue_url: String,
        /// Stop after this many messages.
        #[arg(long, default_value_t = 1000)]
        max: usize,
        /// Seconds each message read stays hidden before it is back in the queue.
        #[arg(long, default_value_t = 30)]
        visibility_seconds: i32,
    },
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Put one key (e.g. the Amplitude `api_key`) into a secret, keeping its other keys (the
    /// generated bearer token): the value is read from standard input. Uses the standard AWS
    /// configuration (profile, region).
    Set {
        /// The secret's name or ARN (the stack outputs `IngestSecret`, `PrivacySecret`).
        #[arg(long)]
        secret_id: String,
        /// The key: api_key, webhook_secret, bearer_token, secret_key or operator_token.
        #[arg(long)]
        key: String,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Secret {
            command: SecretCommand::Set { secret_id, key },
        } => run_async("secret", async move {
            let mut value = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut value) {
                eprintln!("secret: cannot read the value from standard input: {e}");
                return ExitCode::FAILURE;
            }
            let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .http_client(pipeline::aws_http_client())
                .load()
                .await;
            let client = aws_sdk_secretsmanager::Client::new(&aws);
            match secret::set(
                &client,
                &secret_id,
                &key,
                value.trim_end_matches(['\n', '\r']),
            )
            .await
            {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }),
        Command::Dlq {
            command:
                DlqCommand::Inspect {
                    queue_url,
                    max,
                    visibility_seconds,
                },
        } => run_async("dlq", async move {
            let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .http_client(pipeline::aws_http_client())
                .load()
                .await;
            let client = aws_sdk_sqs::Client::new(&aws);
            match dlq::inspect(&client, &queue_url, max, visibility_seconds).await {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }),
        Command::Map { settings, input } => map(&settings, input.as_deref()),
        Command::Emulator { port, config } => emulator(port, config.as_deref()),
        Command::Serve(args) => serve(args),
    }
}

/// Runs `work` on a multi-threaded runtime until it ends or Ctrl-C; `name` prefixes errors.
fn run_async(name: &str, work: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(async {
            tokio::select! {
                code = work => code,
                _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
            }
        }),
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: serve::ServeArgs) -> ExitCode {
    // As the functions log: `RUST_LOG` names a level for this project's crates; the AWS SDK,
    // hyper and the rest stay at WARN whatever it says (no key, token or ARN at any level).
    let level = pipeline::ops::logging::configured_level();
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .finish()
        .with(pipeline::ops::logging::targets(
            level,
            &["segment_amplitude", "amplitude_emulator"],
        ))
        .init();
    run_async("serve", async {
        match serve::run(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("serve: {e}");
                ExitCode::from(2)
            }
        }
    })
}

fn emulator(port: u16, config: Option<&std::path::Path>) -> ExitCode {
    let config = match config {
        None => amplitude_emulator::EmulatorConfig::default(),
        Some(path) => match fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("emulator: config {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    run_async("emulator", async {
        let emulator = match amplitude_emulator::Emulator::start_on(config, port).await {
            Ok(e) => e,
            Err(e) => {
                eprintln!("emulator: cannot listen on 127.0.0.1:{port}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let url = emulator.url();
        // One write, and a closed standard output is not an error (a test may read one line).
        let banner = format!(
            "Amplitude emulator listening on {url}\n  what it ingested:  curl {url}/_emulator/ingested\n  script faults:     curl -X POST {url}/_emulator/faults -d '[{{\"kind\":\"status\",\"status\":503}}]'\n"
        );
        let _ = io::Write::write_all(&mut io::stdout(), banner.as_bytes());
        emulator.wait().await;
        ExitCode::FAILURE
    })
}

/// Segment's settings file: the mapping's settings and the credentials beside them.
fn read_settings(path: &std::path::Path) -> Result<(Settings, output::Keys), String> {
    let text = fs::read_to_string(path)
        .map_err(|e| format!("settings: cannot read {}: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("settings: not valid JSON ({e})"))?;
    let settings = Settings::from_json(&value).map_err(|e| e.to_string())?;
    Ok((settings, output::Keys::from_settings(&value)?))
}

fn map(settings_path: &std::path::Path, input: Option<&std::path::Path>) -> ExitCode {
    let (settings, keys) = match read_settings(settings_path) {
        Ok(s) => s,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let reader: Box<dyn Read + Send> = match input {
        Some(path) => match fs::File::open(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("input: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => Box::new(io::stdin()),
    };
    widen_pipes();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    // No buffer in between: `map` writes half a megabyte or more at a time (`mapper`), which
    // a buffer of its own size would only copy once more.
    let output = io::stdout();
    match mapper::run(&settings, &keys, reader, output, threads) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("map: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Standard input and output as 1 MB pipes where they are pipes (Linux; the default is 64 KB):
/// a block goes through in one wake-up of each side instead of sixteen, which on one core is
/// most of what the pipes cost. Best effort: a pipe that cannot grow keeps its size.
fn widen_pipes() {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsFd;
        let _ = rustix::pipe::fcntl_setpipe_size(io::stdin().as_fd(), 1 << 20);
        let _ = rustix::pipe::fcntl_setpipe_size(io::stdout().as_fd(), 1 << 20);
    }
}
