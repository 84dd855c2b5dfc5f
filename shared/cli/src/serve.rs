//! `segment-amplitude serve`: every function behind a local HTTP server on 127.0.0.1, with the
//! routes of `template.yaml`. Each HTTP request becomes the API Gateway (HTTP API, payload 2.0)
//! event the Lambda receives and goes through the same handler code. By default it needs no
//! AWS and no network: secrets are local and Amplitude is the emulator, started in-process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amplitude_emulator::{Emulator, EmulatorConfig};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use pipeline::durable::{DeadLetter, MemoryQueues, QueueKind, Queues, SqsQueues};
use pipeline::ingest::reply::Reply;
use pipeline::ops::metrics::{Registry, Sink};
use pipeline::ops::secrets::SecretSource;
use pipeline::{Function, Kind, Route};
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use sessions::{DynamoStore, MemoryStore, SessionStore};

const LOCAL_INGEST: &str = "local/ingest";
const LOCAL_PRIVACY: &str = "local/privacy";

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Port on 127.0.0.1 for the functions (0 = any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Port on 127.0.0.1 for the in-process Amplitude emulator (0 = any free port).
    #[arg(long, default_value_t = 8081)]
    emulator_port: u16,
    /// Segment's settings JSON for the Amplitude destination (apiKey/secretKey are ignored:
    /// keys come from the secrets).
    #[arg(long)]
    settings: Option<PathBuf>,
    /// Local secrets: {"ingest": {"api_key", "webhook_secret", "bearer_token"},
    /// "privacy": {"secret_key"}}. Defaults: API key `local-api-key`, bearer token
    /// `local-token`; `AMPLITUDE_API_KEY`, `WEBHOOK_SECRET`, `BEARER_TOKEN` and
    /// `AMPLITUDE_SECRET_KEY` override them.
    #[arg(long)]
    secrets: Option<PathBuf>,
    /// Read secrets from AWS Secrets Manager (`INGEST_SECRET_ID`, `PRIVACY_SECRET_ID`) instead.
    #[arg(long)]
    secrets_manager: bool,
    /// Send to Amplitude's real hosts instead of the emulator.
    #[arg(long)]
    real_amplitude: bool,
    /// Keep undelivered events in this SQS queue (with `--secrets-manager`'s AWS
    /// configuration) instead of the in-process queue; the deployed redeliver function drains it.
    #[arg(long, conflicts_with = "direct")]
    queue_url: Option<String>,
    /// Direct mode: no queue; what is not delivered in time is answered retryable, as without
    /// `DELIVERY_QUEUE_URL`.
    #[arg(long)]
    direct: bool,
    /// With `sessionize` in the settings: keep the sessions' state in this DynamoDB table
    /// (the AWS configuration as for `--secrets-manager`) instead of in process.
    #[arg(long)]
    sessions_table: Option<String>,
}

/// The queue URLs the functions see when the queues are in process.
const LOCAL_QUEUE: &str = "local";

/// The local runner's secrets file: `{"ingest": {...}, "privacy": {...}}`, each as the secret
/// of the same name holds it (see the README); absent parts keep the local defaults.
#[derive(Deserialize)]
struct LocalSecrets {
    #[serde(default = "default_ingest")]
    ingest: LocalIngest,
    #[serde(default = "default_privacy")]
    privacy: LocalPrivacy,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize)]
struct LocalIngest {
    api_key: Option<String>,
    webhook_secret: Option<String>,
    bearer_token: Option<String>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize)]
struct LocalPrivacy {
    secret_key: Option<String>,
    operator_token: Option<String>,
}

fn default_ingest() -> LocalIngest {
    LocalIngest {
        api_key: Some("local-api-key".into()),
        webhook_secret: None,
        bearer_token: Some("local-token".into()),
    }
}

fn default_privacy() -> LocalPrivacy {
    LocalPrivacy {
        secret_key: Some("local-secret-key".into()),
        operator_token: Some("local-operator-token".into()),
    }
}

fn local_secrets(path: Option<&PathBuf>) -> Result<HashMap<String, String>, String> {
    let mut secrets = match path {
        None => LocalSecrets {
            ingest: default_ingest(),
            privacy: default_privacy(),
        },
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("secrets: {}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("secrets: {}: {e}", path.display()))?
        }
    };
    let var = |name| std::env::var(name).ok();
    let ingest = &mut secrets.ingest;
    for (slot, name) in [
        (&mut ingest.api_key, "AMPLITUDE_API_KEY"),
        (&mut ingest.webhook_secret, "WEBHOOK_SECRET"),
        (&mut ingest.bearer_token, "BEARER_TOKEN"),
        (&mut secrets.privacy.secret_key, "AMPLITUDE_SECRET_KEY"),
    ] {
        if let Some(v) = var(name) {
            *slot = Some(v);
        }
    }
    let ingest = serde_json::to_string(&secrets.ingest).expect("secrets serialise");
    let privacy = serde_json::to_string(&secrets.privacy).expect("secrets serialise");
    Ok([
        (LOCAL_INGEST.to_owned(), ingest),
        (LOCAL_PRIVACY.to_owned(), privacy),
    ]
    .into())
}

pub async fn run(args: ServeArgs) -> Result<(), String> {
    let settings = match &args.settings {
        Some(p) => {
            std::fs::read_to_string(p).map_err(|e| format!("settings: {}: {e}", p.display()))?
        }
        None => std::env::var("SEGMENT_SETTINGS").unwrap_or_else(|_| "{}".to_owned()),
    };
    let emulator = if args.real_amplitude {
        None
    } else {
        Some(
            Emulator::start_on(EmulatorConfig::default(), args.emulator_port)
                .await
                .map_err(|e| {
                    format!(
                        "emulator: cannot listen on 127.0.0.1:{}: {e}",
                        args.emulator_port
                    )
                })?,
        )
    };
    // Locally, the standard AWS chain (profiles, SSO, ...), unlike the deployed functions.
    let aws = if args.secrets_manager || args.queue_url.is_some() || args.sessions_table.is_some() {
        Some(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .http_client(pipeline::aws_http_client())
                .load()
                .await,
        )
    } else {
        None
    };
    let (source, ingest_id, privacy_id) = if let (true, Some(aws)) = (args.secrets_manager, &aws) {
        let ingest = std::env::var("INGEST_SECRET_ID")
            .map_err(|_| "environment: `INGEST_SECRET_ID` is required".to_string())?;
        (
            SecretSource::SecretsManager(aws_sdk_secretsmanager::Client::new(aws)),
            ingest,
            std::env::var("PRIVACY_SECRET_ID").ok(),
        )
    } else {
        let map = local_secrets(args.secrets.as_ref())?;
        (
            SecretSource::fixed(map),
            LOCAL_INGEST.to_owned(),
            Some(LOCAL_PRIVACY.to_owned()),
        )
    };

    let (queues, memory) = match (&args.queue_url, &aws) {
        _ if args.direct => (None, None),
        (Some(url), Some(aws)) => (
            Some(Queues::Sqs(Arc::new(SqsQueues::new(
                aws_sdk_sqs::Client::new(aws),
                url.clone(),
                None,
                None,
            )))),
            None,
        ),
        _ => {
            let memory = Arc::new(MemoryQueues::new());
            (Some(Queues::Memory(memory.clone())), Some(memory))
        }
    };
    let queue_url = args
        .queue_url
        .clone()
        .unwrap_or_else(|| LOCAL_QUEUE.to_owned());
    let durable = |vars: &mut HashMap<&str, String>| {
        if queues.is_some() {
            vars.insert("DELIVERY_QUEUE_URL", queue_url.clone());
            vars.insert("DELETION_QUEUE_URL", LOCAL_QUEUE.to_owned());
            vars.insert("DEAD_LETTER_QUEUE_URL", LOCAL_QUEUE.to_owned());
            // Seconds, not the deployed default of 10, so a newcomer sees the retry soon.
            if std::env::var_os("DELIVERY_RETRY_BASE_SECONDS").is_none() {
                vars.insert("DELIVERY_RETRY_BASE_SECONDS", "2".to_owned());
            }
        }
    };

    // Sessions (spec §18, with `sessionize` on): in process unless a table is named.
    let sessions: Arc<dyn SessionStore> = match (&args.sessions_table, &aws) {
        (Some(table), Some(aws)) => Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(aws),
            table.clone(),
        )),
        _ => Arc::new(MemoryStore::new()),
    };

    // One registry for every function: `GET /_metrics` shows what the deployed functions
    // would put in CloudWatch.
    let registry = Arc::new(Registry::default());
    let local = Local {
        source: &source,
        queues: queues.as_ref(),
        sessions: &sessions,
        registry: &registry,
    };
    let mut router = Router::new().route(
        "/_metrics",
        axum::routing::get(metrics).with_state(registry.clone()),
    );
    for route in Route::ALL {
        let mut vars: HashMap<&str, String> = [
            ("SEGMENT_SETTINGS", settings.clone()),
            ("INGEST_SECRET_ID", ingest_id.clone()),
            // Only the deletion function reads the privacy secret, as in template.yaml.
            (
                "PRIVACY_SECRET_ID",
                if route.is_privacy() {
                    privacy_id.clone().unwrap_or_default()
                } else {
                    String::new()
                },
            ),
            (
                "AMPLITUDE_BASE_URL",
                emulator.as_ref().map(Emulator::url).unwrap_or_default(),
            ),
        ]
        .into();
        durable(&mut vars);
        let function = local.function(Kind::Ingest(route), &vars)?;
        router = router.route(
            route.path(),
            axum::routing::any(invoke).with_state(Arc::new(function)),
        );
    }
    if let Some(memory) = &memory {
        // The in-process stand-in for the redeliver function and its SQS event sources.
        let mut vars: HashMap<&str, String> = [
            // As in template.yaml (its Globals): the settings' minIdLength applies on resends.
            ("SEGMENT_SETTINGS", settings.clone()),
            ("INGEST_SECRET_ID", ingest_id.clone()),
            ("PRIVACY_SECRET_ID", privacy_id.clone().unwrap_or_default()),
            (
                "AMPLITUDE_BASE_URL",
                emulator.as_ref().map(Emulator::url).unwrap_or_default(),
            ),
        ]
        .into();
        durable(&mut vars);
        let redeliver = local.function(Kind::Redeliver, &vars)?;
        tokio::spawn(pipeline::durable::consume_memory_queues(
            Arc::new(redeliver),
            memory.clone(),
            // The visibility timeout (the template's is six times the function's timeout).
            Duration::from_secs(60),
        ));
        router = router.route(
            "/_queue",
            axum::routing::get(queue_state).with_state(memory.clone()),
        );
    }
    let router = router.fallback(not_found);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    let url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    println!("Segment → Amplitude destination listening on {url}");
    for route in Route::ALL {
        println!("  POST {url}{}", route.path());
    }
    println!("Metrics (Prometheus text format): {url}/_metrics");
    match &emulator {
        Some(e) => println!(
            "Amplitude emulator on {} — what Amplitude received: {}/_emulator/ingested",
            e.url(),
            e.url()
        ),
        None => println!("Sending to Amplitude's real hosts"),
    }
    match (&memory, &args.queue_url) {
        (Some(_), _) => println!(
            "Durable delivery: what Amplitude does not take in time is queued in process and redelivered — the queues: {url}/_queue"
        ),
        (None, Some(q)) => println!("Durable delivery: undelivered events go to the SQS queue {q}"),
        (None, None) => {
            println!("Direct mode: no queue; undelivered events are answered retryable")
        }
    }
    println!("Try it:");
    println!(
        "  curl -s -X POST {url}/events -H 'Authorization: Bearer local-token' -H 'content-type: application/json' \\\n    -d '{{\"type\":\"track\",\"event\":\"Signed Up\",\"userId\":\"user-1\",\"messageId\":\"m-1\"}}'"
    );
    if let Some(e) = &emulator {
        println!("  curl -s {}/_emulator/ingested", e.url());
    }
    axum::serve(listener, router)
        .await
        .map_err(|e| e.to_string())
}

/// What every local function shares: the secrets, the queues and the metrics registry.
struct Local<'a> {
    source: &'a SecretSource,
    queues: Option<&'a Queues>,
    sessions: &'a Arc<dyn SessionStore>,
    registry: &'a Arc<Registry>,
}

impl Local<'_> {
    /// One function as the template deploys it, on the local secrets, queues and metrics.
    /// Every variable a function takes comes from serve's own environment, under the same
    /// name; what serve sets itself (the local secrets, queues and emulator) wins.
    fn function(&self, kind: Kind, vars: &HashMap<&str, String>) -> Result<Function, String> {
        let inherited = pipeline::VARIABLES
            .iter()
            .filter_map(|(name, _)| std::env::var(name).ok().map(|v| (*name, v)));
        let mut builder = Function::builder(kind)
            .vars(inherited)
            .vars(vars.iter().map(|(k, v)| (*k, v.clone())))
            .secrets(self.source.clone())
            .sessions(self.sessions.clone())
            .metrics(Sink::Registry(self.registry.clone()));
        if let Some(q) = self.queues {
            builder = builder.queues(q.clone());
        }
        builder.build().map_err(|e| e.to_string())
    }
}

/// A path with no function behind it: 404 with a JSON body naming the routes, as every other
/// refusal has (API Gateway answers its own 404 there; the caller's path is not echoed).
async fn not_found() -> Response {
    let routes: Vec<&str> = Route::ALL.iter().map(|r| r.path()).collect();
    refusal(
        StatusCode::NOT_FOUND,
        format!("route: not one of {}", routes.join(", ")),
    )
}

/// A refusal by the local server itself, in the body shape of the functions' own.
fn refusal(status: StatusCode, error: String) -> Response {
    (status, axum::Json(Reply::error(status, error).body)).into_response()
}

/// `GET /_metrics`: the functions' counters in Prometheus text format.
async fn metrics(State(registry): State<Arc<Registry>>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        registry.prometheus(),
    )
        .into_response()
}

/// `GET /_queue`: what the in-process queues hold, and why each dead letter gave up.
async fn queue_state(State(queues): State<Arc<MemoryQueues>>) -> Response {
    let dead: Vec<serde_json::Value> = queues
        .bodies(QueueKind::DeadLetter)
        .iter()
        .map(|body| match DeadLetter::decode(body) {
            Some(DeadLetter::Job(job)) => serde_json::json!({"endpoint": job.endpoint.as_str(),
                "messages": job.message_ids.len(), "attempts": job.attempts,
                "reason": job.dead_letter_reason}),
            Some(DeadLetter::Unreadable(u)) => serde_json::json!({"unreadable": u.kept_body(),
                "bytes": u.bytes, "reason": u.dead_letter_reason}),
            None => serde_json::json!({"unreadable": body}),
        })
        .collect();
    axum::Json(serde_json::json!({
        "delivery": queues.len(QueueKind::Delivery),
        "deletion": queues.len(QueueKind::Deletion),
        "dead_letter": dead,
    }))
    .into_response()
}

/// An HTTP request → the HTTP API (payload 2.0) event Lambda would receive → the function →
/// its API Gateway response (status, headers, body) → HTTP.
async fn invoke(
    State(function): State<Arc<Function>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(body) = lambda_sized(body).await else {
        return refusal(StatusCode::BAD_REQUEST, "body: could not be read".into());
    };
    let request_id = format!(
        "local-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let event = pipeline::ingest::inbound::http_api_event(
        method.as_str(),
        uri.path(),
        uri.query().unwrap_or_default(),
        headers
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v))),
        &body,
        &request_id,
    );
    let mut context = lambda_runtime::Context::default();
    context.request_id = request_id;
    context.deadline = pipeline::ops::now_ms() + Duration::from_secs(10).as_millis() as u64;
    match function
        .invoke(lambda_runtime::LambdaEvent::new(event, context))
        .await
    {
        Ok(response) => {
            let (status, body) = response.status_and_body();
            (status, response.headers(), body).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.error_message).into_response(),
    }
}

/// The request's body as far as Lambda could take it: at most one byte more than the functions'
/// 6 MB limit is read, so a larger body still reaches the function, which refuses it itself (a
/// JSON 413 and its log line), and no more of it is held. (axum's own default limit, 2 MB,
/// would refuse bodies that Lambda takes, with a text answer.)
async fn lambda_sized(body: Body) -> Result<Vec<u8>, axum::Error> {
    use futures::StreamExt;
    let limit = pipeline::MAX_BODY_BYTES + 1;
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let room = limit - bytes.len();
        bytes.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        if bytes.len() >= limit {
            break;
        }
    }
    Ok(bytes)
}

/// `serve --help`'s list of the functions' variables, which serve passes on from its own
/// environment.
pub fn variables_help() -> String {
    let mut help = String::from(
        "Environment: every variable the functions take, under the same name, is passed on to \
         them (serve sets the secrets' ids, the queues and the Amplitude URL itself unless told \
         otherwise by its options):\n",
    );
    for (name, what) in pipeline::VARIABLES {
        help.push_str(&format!("  {name:<32} {what}\n"));
    }
    help
}
