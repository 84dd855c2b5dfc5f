//! The deployed shape, measured: release function binaries under the Runtime API emulator with
//! moto as Secrets Manager and the Amplitude emulator on loopback.
//!
//! * stripped binary sizes;
//! * init time: process start → first `/next` call (secrets are fetched on first use, so the
//!   secret fetch is not part of it);
//! * peak RSS after handling a 4,000-event batch;
//! * requests/s of `segment-amplitude serve` (emulator behind it) under a bounded local load.
//!
//! Run: `cargo build --release -p events -p alias -p segment-amplitude &&
//! cargo bench -p tests --bench functions`. Figures go to BENCHMARKS.md.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use amplitude_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};
use tests::moto::Moto;
use tests::runtime_api::{Invocation, RuntimeApi};

fn release(name: &str) -> PathBuf {
    let path = tests::workspace_root().join("target/release").join(name);
    assert!(
        path.exists(),
        "build it first: cargo build --release -p {name}"
    );
    path
}

async fn spawn(
    name: &str,
    moto: &Moto,
    amp: &Emulator,
) -> (RuntimeApi, tokio::process::Child, Instant) {
    let runtime = RuntimeApi::start().await;
    let mut cmd = tokio::process::Command::new(release(name));
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", runtime.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("INGEST_SECRET_ID", "ingest")
        .env("SEGMENT_SETTINGS", r#"{"sendAlias": true}"#)
        .env("AMPLITUDE_BASE_URL", amp.url())
        .env("ALLOW_UNAUTHENTICATED", "true")
        .kill_on_drop(true);
    for (k, v) in moto.env() {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let child = cmd.spawn().unwrap();
    (runtime, child, started)
}

fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn v2(body: String) -> Value {
    json!({"version": "2.0", "routeKey": "POST /events", "rawPath": "/events", "rawQueryString": "", "headers": {},
        "requestContext": {"accountId": "1", "apiId": "a", "domainName": "x", "domainPrefix": "x",
            "http": {"method": "POST", "path": "/events", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "b"},
            "requestId": "r", "routeKey": "POST /events", "stage": "$default", "time": "", "timeEpoch": 0},
        "body": body, "isBase64Encoded": false})
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    for name in ["events", "alias", "segment-amplitude"] {
        let bytes = std::fs::metadata(release(name)).unwrap().len();
        println!(
            "size: {name}: {:.2} MB ({bytes} bytes, stripped)",
            bytes as f64 / 1e6
        );
    }
    let Some(moto) = Moto::start().await else {
        println!("skipped the rest: moto is not installed (bash tests/run.sh installs it)");
        return;
    };
    moto.put_secret("ingest", r#"{"api_key": "bench-key"}"#)
        .await;
    let amp = Emulator::start(EmulatorConfig::default()).await.unwrap();

    for name in ["events", "alias"] {
        let mut inits = Vec::new();
        for _ in 0..10 {
            let (runtime, mut child, started) = spawn(name, &moto, &amp).await;
            while runtime.first_next().is_none() {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            inits.push(runtime.first_next().unwrap() - started);
            child.kill().await.unwrap();
        }
        inits.sort();
        println!(
            "init: {name}: median {:.1} ms, min {:.1} ms, max {:.1} ms (10 cold starts, process start → first /next)",
            inits[5].as_secs_f64() * 1e3,
            inits[0].as_secs_f64() * 1e3,
            inits[9].as_secs_f64() * 1e3
        );
    }

    let (runtime, child, _) = spawn("events", &moto, &amp).await;
    let lines = corpus::lines(7, 4000);
    let body = format!("[{}]", lines.join(","));
    let size = body.len();
    let started = Instant::now();
    let answer = runtime.invoke(v2(body), Duration::from_secs(30)).await;
    let took = started.elapsed();
    let status = match &answer {
        Invocation::Response(r) => r["statusCode"].clone(),
        Invocation::Error(e) => e.clone(),
    };
    let rss = peak_rss_kb(child.id().unwrap());
    println!(
        "batch: 4000 corpus events ({:.1} MB body) answered {status} in {:.0} ms; peak RSS {:.1} MB",
        size as f64 / 1e6,
        took.as_secs_f64() * 1e3,
        rss as f64 / 1024.0
    );
    drop(child);

    serve_load().await;
}

async fn serve_load() {
    let mut child = tokio::process::Command::new(release("segment-amplitude"))
        .args(["serve", "--port", "0", "--emulator-port", "0"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(u) = line.strip_prefix("Segment → Amplitude destination listening on ") {
            url = u.to_owned();
            break;
        }
    }
    amplitude_client::install_crypto_provider();
    let client = reqwest::Client::new();
    let ok = Arc::new(AtomicUsize::new(0));
    let other = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs(10);
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let (client, url, ok, other) = (client.clone(), url.clone(), ok.clone(), other.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                let body = json!({"type": "track", "event": "Played", "userId": format!("user-{worker}-{}", n % 500),
                    "messageId": format!("load-{worker}-{n}"), "properties": {"n": n}});
                let r = client
                    .post(format!("{url}/events"))
                    .header("authorization", "Bearer local-token")
                    .body(body.to_string())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => other.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ok = ok.load(Ordering::Relaxed);
    println!(
        "serve: {:.0} requests/s answered 200 over 10 s with 16 concurrent clients on 127.0.0.1 ({} not 200)",
        ok as f64 / 10.0,
        other.load(Ordering::Relaxed)
    );
    child.kill().await.unwrap();
}
