//! A real function binary under the Runtime API emulator, with moto's environment, its log
//! lines captured as Lambda would ship them to CloudWatch.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipeline::ingest::inbound::http_api_event;
use serde_json::Value;

use crate::moto::Moto;
use crate::runtime_api::{Invocation, RuntimeApi};

pub struct Running {
    pub runtime: RuntimeApi,
    pub child: tokio::process::Child,
    /// The function's log lines (stdout and stderr).
    pub logs: Arc<Mutex<Vec<String>>>,
}

/// Starts function `name` with its ingest secret, Segment's settings, Amplitude at
/// `amplitude_url` (under the emulator's `/_host/{host}` routes) and `extra` variables.
pub async fn start(
    name: &str,
    moto: &Moto,
    amplitude_url: &str,
    ingest_id: &str,
    settings: Value,
    extra: &[(&str, String)],
) -> Running {
    let runtime = RuntimeApi::start().await;
    let mut cmd = tokio::process::Command::new(crate::binary(name));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", runtime.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("INGEST_SECRET_ID", ingest_id)
        // Each bad credential is refused for good at once (the re-read window has its own
        // tests in pipeline's handler tests).
        .env("SECRET_REREAD_SECONDS", "0")
        .env("SEGMENT_SETTINGS", settings.to_string())
        .env(
            "AMPLITUDE_BASE_URL",
            format!("{amplitude_url}/_host/{{host}}"),
        )
        .kill_on_drop(true);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    for (k, v) in moto.env() {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("function binary starts");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    collect(stdout, logs.clone());
    collect(stderr, logs.clone());
    Running {
        runtime,
        child,
        logs,
    }
}

/// Every line of `output` into `logs`, as Lambda ships both streams to CloudWatch.
fn collect(
    output: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    logs: Arc<Mutex<Vec<String>>>,
) {
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(output).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            logs.lock().unwrap().push(line);
        }
    });
}

impl Running {
    pub async fn call(&self, payload: Value) -> Invocation {
        self.runtime.invoke(payload, Duration::from_secs(5)).await
    }

    /// Calls through an API Gateway event and returns (statusCode, parsed body).
    pub async fn http(&self, payload: Value) -> (u16, Value) {
        match self.call(payload).await {
            Invocation::Response(r) => (
                r["statusCode"].as_u64().unwrap() as u16,
                serde_json::from_str(r["body"].as_str().unwrap()).unwrap(),
            ),
            Invocation::Error(e) => panic!("function error: {e}"),
        }
    }

    /// The log lines that are JSON.
    pub fn json_logs(&self) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The JSON log lines whose message is `message` (e.g. "request handled").
    pub fn logs_saying(&self, message: &str) -> Vec<Value> {
        self.json_logs()
            .into_iter()
            .filter(|l| l["fields"]["message"] == message)
            .collect()
    }
}

/// An HTTP API event for `body` with these headers (a JSON object of strings).
pub fn post(body: &str, headers: Value) -> Value {
    let pairs: Vec<(String, String)> = headers
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    http_api_event(
        "POST",
        "/events",
        "",
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        body.as_bytes(),
        "r",
    )
}
