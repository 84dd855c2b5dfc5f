//! Server-side sessions (mapping §18), measured: for a 4,000-event request with realistic
//! numbers of devices, the store calls the stage makes (cold: no state yet; warm: the next
//! request, every device continuing its session), the time it adds, and what DynamoDB
//! on-demand charges for it per million events.
//!
//! * **Calls** are counted by the stage itself (`BatchGetItem` calls of ≤100 keys, one
//!   conditional `UpdateItem` per key whose state changed).
//! * **Added time** is measured three ways: the CPU of finding the events that need a session
//!   (parsing each message again and `mapping::session_need_in`) and of assigning them (the
//!   in-process store); the stage against a store that answers each call after a fixed
//!   latency, as DynamoDB does in-region (6 ms per call is assumed: no AWS here); and the
//!   real code path against moto's DynamoDB on loopback (far slower per call than DynamoDB:
//!   shown to prove the path, not as DynamoDB's figure).
//! * **Cost** uses us-east-1 on-demand prices: $0.125 per million read request units (a
//!   strongly consistent read of an item under 4 KB is one unit) and $0.625 per million write
//!   request units (an update under 1 KB is one), an estimate to check against the price page.
//!
//! Run: `cargo bench -p tests --bench sessions`. Figures go to BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use sessions::{
    Assigned, DynamoStore, Loaded, MemoryStore, Need, Saved, SessionStore, Sessionizer, State,
    StoreError,
};
use tests::moto::Moto;

const EVENTS: usize = 4_000;
const TIMEOUT: Duration = Duration::from_secs(30 * 60);
const BUDGET: Duration = Duration::from_millis(300);
const DYNAMODB_LATENCY: Duration = Duration::from_millis(6);
const READ_PRICE: f64 = 0.125; // $ per million read request units
const WRITE_PRICE: f64 = 0.625; // $ per million write request units

fn now_ms() -> i64 {
    pipeline::ops::now_ms() as i64
}

/// 4,000 events over `devices` devices, a few seconds apart, starting at `start`.
fn needs(devices: usize, start: i64, tag: &str) -> Vec<Need> {
    (0..EVENTS)
        .map(|i| Need {
            message: i,
            key: format!("d:{tag}-{}", i % devices),
            time: start + i as i64 * 50,
        })
        .collect()
}

/// A store answering every call after a fixed latency.
struct Latency {
    inner: MemoryStore,
    latency: Duration,
}

impl SessionStore for Latency {
    fn load<'s>(&'s self, keys: &'s [String]) -> BoxFuture<'s, Result<Loaded, StoreError>> {
        async move {
            // The calls of one load run 16 at a time (as DynamoStore's).
            let waves = keys.len().div_ceil(100).div_ceil(16).max(1) as u32;
            tokio::time::sleep(self.latency * waves).await;
            self.inner.load(keys).await
        }
        .boxed()
    }

    fn save<'s>(
        &'s self,
        key: &'s str,
        expected: Option<State>,
        new: State,
        expires_at_s: i64,
    ) -> BoxFuture<'s, Result<Saved, StoreError>> {
        async move {
            tokio::time::sleep(self.latency).await;
            self.inner.save(key, expected, new, expires_at_s).await
        }
        .boxed()
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn run(stage: &Sessionizer, needs: Vec<Need>) -> (Assigned, Duration) {
    let started = Instant::now();
    let a = stage
        .assign(needs, now_ms(), tokio::time::Instant::now() + BUDGET)
        .await;
    (a, started.elapsed())
}

/// Dollars per million events when each request of 4,000 events reads `keys_read` items and
/// makes `writes` writes (the prices are per million units).
fn cost_per_million(keys_read: usize, writes: usize) -> f64 {
    (keys_read as f64 * READ_PRICE + writes as f64 * WRITE_PRICE) / EVENTS as f64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // CPU: finding the needs of 4,000 corpus events (parse + session_need_in).
    let settings = {
        let mut s = corpus::settings();
        s["sessionize"] = serde_json::json!(true);
        mapping::Settings::from_json(&s).unwrap()
    };
    let mut lines = corpus::lines(20_261_201, EVENTS);
    corpus::without_session_ids(&mut lines, 1);
    let mut times = Vec::new();
    let mut found = 0;
    for _ in 0..15 {
        let started = Instant::now();
        found = lines
            .iter()
            .filter_map(|l| {
                let v: serde_json_borrow::Value = serde_json::from_str(l).ok()?;
                mapping::session_need_in(&v, mapping::Batch::NONE, &settings)
            })
            .count();
        times.push(started.elapsed());
    }
    println!(
        "needs of {EVENTS} corpus events: {found} need a session; {:.1} ms (median of 15)",
        median(times).as_secs_f64() * 1000.0
    );

    println!(
        "\n| devices in the request | calls cold (reads + writes) | calls warm | added time, in process | added time, {} ms per call | $ per million events (warm) |",
        DYNAMODB_LATENCY.as_millis()
    );
    println!("|---|---|---|---|---|---|");
    for devices in [1, 40, 400, 1_000, 4_000] {
        let memory = Sessionizer::new(Arc::new(MemoryStore::new()), TIMEOUT, BUDGET);
        let mut cpu = Vec::new();
        for r in 0..9 {
            let (_, t) = run(&memory, needs(devices, 1_700_000_000_000, &format!("m{r}"))).await;
            cpu.push(t);
        }
        let latency = Sessionizer::new(
            Arc::new(Latency {
                inner: MemoryStore::new(),
                latency: DYNAMODB_LATENCY,
            }),
            TIMEOUT,
            BUDGET,
        );
        let (cold, cold_time) = run(&latency, needs(devices, 1_700_000_000_000, "l")).await;
        let (warm, warm_time) =
            run(&latency, needs(devices, 1_700_000_000_000 + 300_000, "l")).await;
        let keys_read = devices; // one unit per key read, strongly consistent
        println!(
            "| {devices} | {} + {} | {} + {} | {:.1} ms | {:.0} ms cold, {:.0} ms warm{} | {:.3} |",
            cold.reads,
            cold.writes,
            warm.reads,
            warm.writes,
            median(cpu).as_secs_f64() * 1000.0,
            cold_time.as_secs_f64() * 1000.0,
            warm_time.as_secs_f64() * 1000.0,
            if cold.degraded.is_empty() && warm.degraded.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} + {} events past the budget)",
                    cold.degraded.len(),
                    warm.degraded.len()
                )
            },
            cost_per_million(keys_read, warm.writes),
        );
    }

    // The real path: DynamoStore over HTTP against moto's DynamoDB.
    let Some(moto) = Moto::start().await else {
        println!("\nmoto is not installed: no DynamoDB path figures");
        return;
    };
    moto.create_sessions_table("bench").await;
    let store = DynamoStore::new(moto.dynamodb().await, "bench");
    let warmup = Sessionizer::new(Arc::new(store.clone()), TIMEOUT, BUDGET);
    run(&warmup, needs(10, 1_700_000_000_000, "warm")).await;
    for devices in [40, 400] {
        let stage = Sessionizer::new(Arc::new(store.clone()), TIMEOUT, BUDGET);
        let (a, t) = run(&stage, needs(devices, 1_700_000_000_000, "moto")).await;
        println!(
            "moto, {devices} devices: {} reads + {} writes in {:.0} ms ({} events past the 300 ms budget)",
            a.reads,
            a.writes,
            t.as_secs_f64() * 1000.0,
            a.degraded.len()
        );
    }
}
