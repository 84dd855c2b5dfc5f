//! End-to-end delivery benchmark: the client delivers the 100,000-message generated corpus
//! (seed 42) to the Amplitude emulator on loopback, emulator included in the same process and
//! on the same two cores. Prints events/s and the HTTP requests sent against the fewest the
//! limits allow.
//!
//! Run: `cargo bench -p amplitude-client --bench delivery`. Figures go to BENCHMARKS.md.

use std::time::{Duration, Instant};

use amplitude_client::batch;
use amplitude_client::encode;
use amplitude_client::{AmplitudeClient, ClientConfig, Credentials};
use amplitude_emulator::{Emulator, EmulatorConfig};
use mapping::{Plan, Settings};

const MESSAGES: usize = 100_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

/// The fewest requests Amplitude's limits allow for these plans.
fn minimum_requests(plans: &[Plan<'_>], api_key: &str) -> usize {
    let items: Vec<encode::Item> = plans
        .iter()
        .enumerate()
        .flat_map(|(m, p)| encode::items(m, p))
        .collect();
    batch::minimum_requests(&items, api_key)
}

async fn run() {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let settings = Settings::from_json(&corpus::settings()).expect("settings");
    let lines = corpus::lines(42, MESSAGES);
    let parsed: Vec<serde_json_borrow::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let plans: Vec<Plan> = parsed
        .iter()
        .map(|m| mapping::plan(m, &settings).unwrap())
        .collect();
    let events: usize = plans
        .iter()
        .flat_map(|p| &p.requests)
        .map(|r| match &r.body {
            mapping::Body::Events(e) => e.len(),
            mapping::Body::Identify(i) => i.len(),
            mapping::Body::GroupIdentify(g) => g.len(),
            mapping::Body::UserMap(m) => m.len(),
            mapping::Body::Deletion(d) => d.user_ids.len(),
        })
        .sum();
    let api_key = corpus::settings()["apiKey"]
        .as_str()
        .expect("the corpus settings name a key")
        .to_owned();
    let minimum = minimum_requests(&plans, &api_key);
    let credentials = Credentials::new(api_key);
    let client = AmplitudeClient::new(ClientConfig {
        base_url: Some(emulator.url()),
        ..ClientConfig::default()
    })
    .expect("client");

    let mut best = Duration::MAX;
    let mut requests = 0;
    for run in 1..=3 {
        emulator.state.reset();
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        let report = client
            .deliver(&plans, settings.region, &credentials, deadline)
            .await;
        let took = started.elapsed();
        let (delivered, rejected, retryable) = report.tally();
        assert_eq!((rejected, retryable), (0, 0), "every message is delivered");
        assert_eq!(delivered, MESSAGES);
        println!(
            "run {run}: {events} objects ({MESSAGES} messages) in {:.2} s = {:.0} objects/s, {:.0} messages/s; {} requests",
            took.as_secs_f64(),
            events as f64 / took.as_secs_f64(),
            MESSAGES as f64 / took.as_secs_f64(),
            report.requests_sent()
        );
        best = best.min(took);
        requests = report.requests_sent();
    }
    println!(
        "delivery: best {:.0} events/s end to end; {requests} requests sent, minimum the limits allow {minimum} ({:+.1}%)",
        events as f64 / best.as_secs_f64(),
        (requests as f64 / minimum as f64 - 1.0) * 100.0
    );
}
