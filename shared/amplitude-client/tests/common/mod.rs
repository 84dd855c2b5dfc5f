//! Test harness: the real emulator on loopback and a client pointed at it.

#![allow(dead_code)]

use std::time::Duration;

use amplitude_client::{AmplitudeClient, Backoff, ClientConfig, Credentials, Report};
use amplitude_emulator::{Emulator, EmulatorConfig};
use mapping::{Plan, Settings};
use serde_json::Value;
use tokio::time::Instant;

pub const KEY: &str = "test-api-key";

pub async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator starts")
}

/// A client for the emulator with short backoffs; one request at a time so fault scripts
/// are consumed in a known order.
pub fn client(emulator: &Emulator) -> AmplitudeClient {
    client_with(emulator, |_| {})
}

pub fn client_with(emulator: &Emulator, tune: impl FnOnce(&mut ClientConfig)) -> AmplitudeClient {
    let mut config = ClientConfig {
        base_url: Some(emulator.url()),
        concurrency: 1,
        request_timeout: Duration::from_secs(2),
        backoff: Backoff {
            base: Duration::from_millis(5),
            max: Duration::from_millis(40),
        },
        deletion_interval: Duration::from_millis(20),
        ..ClientConfig::default()
    };
    tune(&mut config);
    AmplitudeClient::new(config).expect("client builds")
}

pub fn settings(extra: Value) -> Settings {
    let mut s = serde_json::json!({"apiKey": KEY});
    s.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    Settings::from_json(&s).unwrap()
}

/// The test project's credentials (any secret key is accepted unless the emulator names one).
pub fn credentials() -> Credentials {
    Credentials::new(KEY).with_secret_key("test-secret-key")
}

/// Maps the messages and delivers them with the test credentials and a deadline `secs` from
/// now.
pub async fn deliver(
    client: &AmplitudeClient,
    settings: &Settings,
    messages: &[Value],
    secs: f64,
) -> Report {
    deliver_with(client, settings, &credentials(), messages, secs).await
}

/// [`deliver`] with other credentials.
pub async fn deliver_with(
    client: &AmplitudeClient,
    settings: &Settings,
    credentials: &Credentials,
    messages: &[Value],
    secs: f64,
) -> Report {
    let lines: Vec<String> = messages.iter().map(Value::to_string).collect();
    let parsed = parse(&lines);
    let plans = plan_all(&parsed, settings);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    client
        .deliver(&plans, settings.region, credentials, deadline)
        .await
}

/// JSON lines parsed as the mapping reads them.
pub fn parse(lines: &[String]) -> Vec<serde_json_borrow::Value<'_>> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("test lines are JSON"))
        .collect()
}

/// The mapping's plan for each message.
pub fn plan_all<'a>(
    parsed: &'a [serde_json_borrow::Value<'a>],
    settings: &Settings,
) -> Vec<Plan<'a>> {
    parsed
        .iter()
        .map(|m| mapping::plan(m, settings).expect("test messages map"))
        .collect()
}

/// `n` track messages, user `user-<i>`, messageId `m<i>`.
pub fn tracks(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            serde_json::json!({"type": "track", "event": "Played", "userId": format!("user-{i}"),
                "messageId": format!("m{i}"), "timestamp": "2024-01-01T00:00:00Z"})
        })
        .collect()
}

/// The insert_ids the emulator stored, in order.
pub fn stored_ids(emulator: &Emulator) -> Vec<String> {
    emulator
        .state
        .ingested()
        .events
        .iter()
        .map(|e| e["insert_id"].as_str().unwrap().to_owned())
        .collect()
}
