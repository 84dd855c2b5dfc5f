//! The Engage path, measured: 100,000 audience-membership identifies through the `/engage`
//! handler (body split, mapping, batching, delivery) to the Amplitude emulator on loopback, in
//! Lambda-sized requests of 4,000 profiles (Webhooks (Actions)' largest batch). Prints
//! profiles/s and Amplitude requests against the fewest the limits allow.
//!
//! Run: `cargo bench -p pipeline --bench engage`. Figures go to BENCHMARKS.md.

use std::time::{Duration, Instant};

use amplitude_emulator::{Emulator, EmulatorConfig};
use pipeline::ingest::inbound::Inbound;
use pipeline::{Function, Kind, Route};
use serde_json::{Value, json};

const PROFILES: usize = 100_000;
const PER_REQUEST: usize = 4_000;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

fn request(batch: usize) -> Value {
    let members: Vec<Value> = (batch * PER_REQUEST..(batch + 1) * PER_REQUEST)
        .map(|i| {
            json!({"type": "identify", "userId": format!("member-{i:07}"), "messageId": format!("aud-{i}"),
                "traits": {"high_value_customers": true, "email": format!("m{i}@example.com")},
                "context": {"personas": {"computation_class": "audience", "computation_id": "aud_2kj3",
                    "computation_key": "high_value_customers", "namespace": "spa_1", "space_id": "spa_1"},
                    "library": {"name": "unknown", "version": "unknown"}},
                "integrations": {"All": false, "Webhooks": true},
                "timestamp": "2026-11-28T10:00:00.000Z"})
        })
        .collect();
    json!({"version": "2.0", "routeKey": "POST /engage", "rawPath": "/engage", "rawQueryString": "", "headers": {},
        "requestContext": {"accountId": "1", "apiId": "a", "domainName": "x", "domainPrefix": "x",
            "http": {"method": "POST", "path": "/engage", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "Segment (Actions)"},
            "requestId": "r", "routeKey": "POST /engage", "stage": "$default", "time": "", "timeEpoch": 0},
        "body": Value::Array(members).to_string(), "isBase64Encoded": false})
}

async fn run() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let function = Function::builder(Kind::Ingest(Route::Engage))
        .var("INGEST_SECRET_ID", "ingest")
        .var("AMPLITUDE_BASE_URL", emu.url())
        .var("ALLOW_UNAUTHENTICATED", "true")
        .secret("ingest", r#"{"api_key": "k"}"#)
        .build()
        .unwrap();
    let requests: Vec<Value> = (0..PROFILES / PER_REQUEST).map(request).collect();

    let mut best = Duration::MAX;
    for run in 1..=3 {
        emu.state.reset();
        let started = Instant::now();
        for payload in &requests {
            let inbound = Inbound::from_payload(payload.clone()).unwrap();
            let reply = function
                .handle(
                    inbound,
                    tokio::time::Instant::now() + Duration::from_millis(4500),
                    "bench",
                )
                .await;
            assert_eq!(reply.status, 200);
        }
        let took = started.elapsed();
        let got = emu.state.ingested();
        assert_eq!(got.identifies.len(), PROFILES);
        let sent = got.requests["/identify"];
        println!(
            "run {run}: {PROFILES} profiles in {:.2} s = {:.0} profiles/s; {sent} Identify requests (fewest: {})",
            took.as_secs_f64(),
            PROFILES as f64 / took.as_secs_f64(),
            PROFILES.div_ceil(1000)
        );
        best = best.min(took);
    }
    println!(
        "engage: best {:.0} profiles/s",
        PROFILES as f64 / best.as_secs_f64()
    );
}
