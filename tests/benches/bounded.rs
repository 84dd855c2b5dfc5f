//! The memory model, measured: the release `events` binary under the Runtime API emulator
//! (moto as Secrets Manager, the Amplitude emulator on loopback), one fresh process per input,
//! fed the largest and oddest bodies API Gateway delivers. For each: the status, the time, the
//! reply's size, the events Amplitude stored, and the process's peak RSS (`VmHWM`).
//!
//! Then every input again, one after another in one process (direct mode), as a warm Lambda
//! sandbox takes them: what the allocator keeps or leaves fragmented from one request adds to
//! the next, so this peak can be above the largest single input's, and must stay in the model
//! too. `BOUNDED_ONLY=warm` runs only this part; `BOUNDED_WARM="120 deep|identify of 650,000"`
//! only the inputs named, in that order.
//!
//! Then the CPU the function spends per million corpus events: 25 invocations of 4,000 corpus
//! events, the process's user + system time from `/proc/<pid>/stat`.
//!
//! Run: `cargo build --release -p events && cargo bench -p tests --bench bounded`. Figures go to
//! BENCHMARKS.md (the machine with them).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use amplitude_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};
use tests::moto::Moto;
use tests::runtime_api::{Invocation, RuntimeApi};

const TOKEN: &str = "bench-token";

/// The binary under `target/release` (or `$BOUNDED_PROFILE`, e.g. `profiling` for `perf`).
fn release(name: &str) -> PathBuf {
    let profile = std::env::var("BOUNDED_PROFILE").unwrap_or_else(|_| "release".into());
    let path = tests::workspace_root()
        .join("target")
        .join(profile)
        .join(name);
    assert!(
        path.exists(),
        "build it first: cargo build --release -p {name}"
    );
    path
}

async fn spawn(
    moto: &Moto,
    amp: &Emulator,
    extra: &[(&str, &str)],
) -> (RuntimeApi, tokio::process::Child) {
    let runtime = RuntimeApi::start().await;
    let mut cmd = tokio::process::Command::new(release("events"));
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", runtime.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "events")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("INGEST_SECRET_ID", "ingest")
        .env("SEGMENT_SETTINGS", corpus::settings().to_string())
        .env("AMPLITUDE_BASE_URL", amp.url())
        // Metrics to stdout would only be read by CloudWatch.
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in moto.env() {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    (runtime, child)
}

/// A `/proc/<pid>/status` field in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 14th, stime the
    // 15th field of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn v2(body: String, authorized: bool) -> Value {
    let headers = if authorized {
        json!({"authorization": format!("Bearer {TOKEN}"), "content-type": "application/json"})
    } else {
        json!({"content-type": "application/json"})
    };
    json!({"version": "2.0", "routeKey": "POST /events", "rawPath": "/events", "rawQueryString": "", "headers": headers,
        "requestContext": {"accountId": "1", "apiId": "a", "domainName": "x", "domainPrefix": "x",
            "http": {"method": "POST", "path": "/events", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "b"},
            "requestId": "r", "routeKey": "POST /events", "stage": "$default", "time": "", "timeEpoch": 0},
        "body": body, "isBase64Encoded": false})
}

/// The inputs: (name, body, with credentials).
/// A JSON array of `item(0)`, `item(1)`, … until it is at least `bytes` long.
fn array_of_about(bytes: usize, item: impl Fn(usize) -> String) -> String {
    let mut array = String::from("[");
    let mut i = 0;
    while array.len() < bytes {
        if i > 0 {
            array.push(',');
        }
        array.push_str(&item(i));
        i += 1;
    }
    array.push(']');
    array
}

fn shapes() -> Vec<(&'static str, String, bool)> {
    let order = |n: usize| {
        let products: Vec<Value> = (0..1300).map(|i| json!({"id": i})).collect();
        json!({"type": "track", "event": "Order Completed", "userId": format!("buyer-{n}"),
            "messageId": format!("order-{n}"), "context": {"traits": {"pad": "t".repeat(16 * 1024)}},
            "properties": {"revenue": 10, "products": products}})
    };
    let fan_out = serde_json::to_string(&(0..24).map(order).collect::<Vec<_>>()).unwrap();
    let small = |i: usize| json!({"type": "track", "event": "Played", "userId": format!("user-{}", i % 700), "messageId": format!("s{i}")});
    let shared = json!({"batch": (0..5000).map(small).collect::<Vec<_>>(),
        "context": {"traits": {"pad": "p".repeat(100 * 1024)}}})
    .to_string();
    let no_ids = array_of_about(5_500_000, |i| {
        format!(r#"{{"type":"track","event":"e","messageId":"n{i}"}}"#)
    });
    // Every message with a reason of its own (an unknown call type is quoted, control
    // characters and all): the answer still lists and counts them within 64 KB.
    let own_reasons = array_of_about(5_500_000, |i| {
        format!(
            r#"{{"type":"t{i}\u0001\u0001\u0001\u0001","event":"e","userId":"user-1","messageId":"o{i}"}}"#
        )
    });
    let huge_string =
        json!({"type": "track", "event": "Big", "userId": "user-1", "messageId": "h1",
        "properties": {"blob": "b".repeat(5_800_000)}})
        .to_string();
    let mut deep = String::new();
    for _ in 0..100_000 {
        deep.push_str(r#"{"a":"#);
    }
    let deep = format!(r#"{{"type":"track","event":"Deep","userId":"user-1","properties":{deep}1"#);
    let corpus = format!("[{}]", corpus::lines(7, 4000).join(","));
    // Wide objects and arrays: maps of this many keys are indexed, not searched (`PropMap`).
    let wide_traits: serde_json::Map<String, Value> =
        (0..300_000).map(|i| (format!("k{i}"), json!(i))).collect();
    let wide_identify = json!({"type": "identify", "userId": "user-1", "messageId": "w1",
        "traits": wide_traits})
    .to_string();
    let unsets: Vec<String> = (0..300_000).map(|i| format!("f{i}")).collect();
    let wide_unset = json!({"type": "identify", "userId": "user-1", "messageId": "w2",
        "integrations": {"Amplitude": {"fieldsToUnset": unsets}}})
    .to_string();
    let groups: Vec<String> = (0..300_000).map(|i| format!("g{i}")).collect();
    let wide_group = json!({"type": "group", "userId": "user-1", "groupId": "g", "messageId": "w3",
        "traits": {"plan_type": "team", "name": groups}})
    .to_string();
    // Repeated keys: such a message is written again without its repeats and read again
    // (`mapping::parse`): one wide message, and many small ones.
    let twice: Vec<String> = (0..300_000)
        .map(|i| format!(r#""k{}":{i}"#, i / 2))
        .collect();
    let wide_twice = format!(
        r#"{{"type":"identify","userId":"user-1","messageId":"w4","traits":{{{}}}}}"#,
        twice.join(",")
    );
    let repeated: Vec<String> = (0..20_000)
        .map(|i| {
            format!(
                r#"{{"type":"track","event":"e","event":"Played","userId":"user-{}","messageId":"r{i}","properties":{{"a":1,"b":2,"a":3}}}}"#,
                i % 700
            )
        })
        .collect();
    let repeated = format!("[{}]", repeated.join(","));
    // The most messages a body can hold: one byte each (`[1,1,…]`, every one refused as not an
    // object), and the smallest objects, in the `{"batch"}` shape.
    let ones = array_of_about(5_990_000, |_| "1".to_string());
    let empties = format!(
        r#"{{"batch":{}}}"#,
        array_of_about(5_990_000, |_| "{}".to_string())
    );
    // The smallest containers, as many as one message holds: a container of one item is
    // where a tree costs most per byte of text.
    let containers = |item: &str, n: usize| {
        format!(
            r#"{{"type":"track","event":"Tiny","userId":"user-1","messageId":"c1","properties":{{"x":[{}]}}}}"#,
            vec![item; n].join(",")
        )
    };
    let one_item_arrays = containers("[1]", 1_490_000);
    let one_key_objects = containers(r#"{"a":1}"#, 740_000);
    let empty_arrays = containers("[]", 1_990_000);
    // Nested as deep as serde_json reads (128 levels, three of them the message's own).
    let tower = format!("{}1{}", "[".repeat(120), "]".repeat(120));
    let towers = containers(&tower, 24_600);
    let escaped_strings = containers(r#""\n""#, 1_190_000);
    // The most properties a track can name: short keys (four characters), one-digit values.
    let names: Vec<String> = (0..650_000u32)
        .map(|i| {
            let digits: String = [i / 46_656, i / 1_296 % 36, i / 36 % 36, i % 36]
                .iter()
                .filter_map(|d| char::from_digit(*d, 36))
                .collect();
            format!(r#""{digits}":1"#)
        })
        .collect();
    // Each wide message is its head, the names (joined once), and its closing braces.
    let (all_names, fewer_names) = (names.join(","), names[..640_000].join(","));
    let wide = |head: &str, names: &str, tail: &str| format!("{head}{names}{tail}");
    let many_properties = wide(
        r#"{"type":"track","event":"Wide","userId":"user-1","messageId":"p1","properties":{"#,
        &all_names,
        "}}",
    );
    let many_traits = wide(
        r#"{"type":"identify","userId":"user-1","messageId":"p2","traits":{"#,
        &all_names,
        "}}",
    );
    let many_context_traits = wide(
        r#"{"type":"track","event":"Wide","userId":"user-1","messageId":"p4","context":{"traits":{"#,
        &all_names,
        "}}}",
    );
    let many_group_traits = wide(
        r#"{"type":"group","userId":"user-1","groupId":"g","messageId":"p5","traits":{"plan_type":"team","name":"acme","#,
        &fewer_names,
        "}}",
    );
    // The same with operations the caller wrote and a trait the settings increment: the
    // plain traits are moved under `$set`, and `logins` to `$add`.
    let many_traits_and_operations = wide(
        r#"{"type":"identify","userId":"user-1","messageId":"p3","traits":{"$set":{"plan":"pro"},"$setOnce":{"first":1},"logins":3,"#,
        &fewer_names,
        "}}",
    );
    vec![
        ("4,000 corpus events", corpus, true),
        ("24 orders x 1,300 products, 16 KB traits", fan_out, true),
        (
            "5,000 tracks sharing a 100 KB batch context, no credentials",
            shared.clone(),
            false,
        ),
        ("5,000 tracks sharing a 100 KB batch context", shared, true),
        (
            "110,000 events without ids, no credentials",
            no_ids.clone(),
            false,
        ),
        ("110,000 events without ids", no_ids, true),
        (
            "59,379 events of unknown types, each its own reason",
            own_reasons,
            true,
        ),
        ("one event with a 5.8 MB string", huge_string, true),
        ("one event nested 100,000 deep (not closed)", deep, true),
        ("one identify with 300,000 traits", wide_identify, true),
        ("one identify unsetting 300,000 fields", wide_unset, true),
        (
            "one group of 300,000 values (refused: fan-out)",
            wide_group,
            true,
        ),
        (
            "one identify naming 150,000 traits twice each",
            wide_twice,
            true,
        ),
        ("20,000 tracks each naming two keys twice", repeated, true),
        ("2,995,000 one-byte messages", ones, true),
        ("1,996,667 empty objects in a batch body", empties, true),
        (
            "one track of 1,490,000 one-item arrays",
            one_item_arrays,
            true,
        ),
        (
            "one track of 740,000 one-key objects",
            one_key_objects,
            true,
        ),
        ("one track of 1,990,000 empty arrays", empty_arrays, true),
        ("one track of 24,600 one-item arrays 120 deep", towers, true),
        (
            "one track of 1,190,000 escaped strings",
            escaped_strings,
            true,
        ),
        ("one track of 650,000 properties", many_properties, true),
        ("one identify of 650,000 traits", many_traits, true),
        (
            "one track of 650,000 context traits",
            many_context_traits,
            true,
        ),
        ("one group of 640,000 traits", many_group_traits, true),
        (
            "one identify of 640,000 traits, operations and a trait to increment",
            many_traits_and_operations,
            true,
        ),
    ]
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
    let Some(moto) = Moto::start().await else {
        println!("skipped: moto is not installed (bash tests/run.sh installs it)");
        return;
    };
    moto.put_secret(
        "ingest",
        &json!({"api_key": "bench-key", "bearer_token": TOKEN}).to_string(),
    )
    .await;
    let amp = Emulator::start(EmulatorConfig {
        // Throughput, not Amplitude's per-user rate limit, is measured here.
        httpapi_eps: 1_000_000,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    // `BOUNDED_ONLY=cpu` measures the CPU only (for profiling), `BOUNDED_ONLY=warm` the warm
    // process only; `BOUNDED_ONLY=<text>` runs only the inputs whose name holds the text, in
    // both modes.
    let only = std::env::var("BOUNDED_ONLY").ok();
    let shapes_too = !matches!(only.as_deref(), Some("cpu" | "warm"));
    let chosen = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    for durable in [false, true].into_iter().filter(|_| shapes_too) {
        println!(
            "{} mode:",
            if durable {
                "durable (SQS on moto)"
            } else {
                "direct"
            }
        );
        let queue = if durable {
            Some(
                moto.sqs()
                    .await
                    .create_queue()
                    .queue_name("bounded-delivery")
                    .send()
                    .await
                    .unwrap()
                    .queue_url
                    .unwrap(),
            )
        } else {
            None
        };
        for (name, body, authorized) in shapes().into_iter().filter(|s| chosen(s.0)) {
            amp.state.reset();
            let extra: Vec<(&str, &str)> = queue
                .iter()
                .map(|q| ("DELIVERY_QUEUE_URL", q.as_str()))
                .collect();
            let (runtime, child) = spawn(&moto, &amp, &extra).await;
            let pid = child.id().unwrap();
            let size = body.len();
            let started = Instant::now();
            let answer = runtime
                .invoke(v2(body, authorized), Duration::from_secs(10))
                .await;
            let took = started.elapsed();
            let (status, reply, first) = match &answer {
                Invocation::Response(r) => {
                    let text = r["body"].as_str().unwrap_or_default();
                    let body: Value = serde_json::from_str(text).unwrap_or_default();
                    let first = body["results"][0]["reason"]
                        .as_str()
                        .or(body["error"].as_str())
                        .map(|r| format!("; first reason: {r}"))
                        .unwrap_or_default();
                    (r["statusCode"].to_string(), text.len(), first)
                }
                Invocation::Error(e) => (format!("error {e}"), 0, String::new()),
            };
            let got = amp.state.ingested();
            println!(
                "  {name} ({:.2} MB body): {status} in {:.0} ms, reply {:.1} KB, {} events stored; peak RSS {:.1} MB{first}",
                size as f64 / 1e6,
                took.as_secs_f64() * 1e3,
                reply as f64 / 1024.0,
                got.events.len(),
                status_kb(pid, "VmHWM:") as f64 / 1024.0
            );
            drop(child);
        }
    }
    if only.is_none() || only.as_deref() == Some("warm") {
        one_process(&moto, &amp).await;
    }
    if only.is_none() || only.as_deref() == Some("cpu") {
        cpu_per_million(&moto, &amp).await;
    }
}

/// Every input, one after another in one process (direct mode): each one's status and the
/// process's resident memory after it, then its peak.
async fn one_process(moto: &Moto, amp: &Emulator) {
    println!("every input above, one after another in one direct-mode process:");
    let (runtime, child) = spawn(moto, amp, &[]).await;
    let pid = child.id().unwrap();
    let mut peak = 0;
    // `BOUNDED_WARM="a|b|…"`: only the inputs whose names hold these texts, in this order (the
    // same input may come twice), to see what one request leaves to the next.
    let all = shapes();
    let sequence: Vec<_> = match std::env::var("BOUNDED_WARM") {
        Err(_) => all,
        Ok(names) => names
            .split('|')
            .filter_map(|n| all.iter().find(|s| s.0.contains(n)).cloned())
            .collect(),
    };
    for (name, body, authorized) in sequence {
        amp.state.reset();
        // The peak is set back to what is resident (Linux: `clear_refs` 5), so each line
        // shows the peak during its own request.
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        let answer = runtime
            .invoke(v2(body, authorized), Duration::from_secs(10))
            .await;
        let status = match &answer {
            Invocation::Response(r) => r["statusCode"].to_string(),
            Invocation::Error(e) => format!("error {e}"),
        };
        let during = status_kb(pid, "VmHWM:");
        peak = peak.max(during);
        println!(
            "  {name}: {status}; peak during it {:.1} MB, resident after it {:.1} MB",
            during as f64 / 1024.0,
            status_kb(pid, "VmRSS:") as f64 / 1024.0
        );
    }
    println!(
        "  peak RSS of the process: {:.1} MB",
        peak.max(status_kb(pid, "VmHWM:")) as f64 / 1024.0
    );
    drop(child);
}

/// CPU seconds of the `events` function per million corpus events, through the real binary:
/// five fresh processes of 25 invocations each (the median is the figure: CPU time on these
/// virtual machines varies by ±10% from run to run).
async fn cpu_per_million(moto: &Moto, amp: &Emulator) {
    let bodies: Vec<String> = (0..25)
        .map(|i| format!("[{}]", corpus::lines(100 + i, 4000).join(",")))
        .collect();
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let (runtime, child) = spawn(moto, amp, &[]).await;
        let pid = child.id().unwrap();
        let before = cpu_seconds(pid);
        for body in &bodies {
            amp.state.reset();
            let answer = runtime
                .invoke(v2(body.clone(), true), Duration::from_secs(30))
                .await;
            assert!(
                matches!(answer, Invocation::Response(ref r) if r["statusCode"] == 200),
                "{answer:?}"
            );
        }
        // 100,000 events: CPU-s per million is ten times the round's.
        rounds.push((cpu_seconds(pid) - before) * 10.0);
        drop(child);
    }
    let shown: Vec<String> = rounds.iter().map(|r| format!("{r:.1}")).collect();
    rounds.sort_by(f64::total_cmp);
    println!(
        "cpu: 25 x 4,000 corpus events through the events binary, 5 fresh processes: median {:.1} CPU-s per million events (rounds: {})",
        rounds[2],
        shown.join(", ")
    );
}
