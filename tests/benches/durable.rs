//! Durable delivery, measured:
//!
//! * **ingest while Amplitude is down**: a 4,000-event corpus batch through the `/events`
//!   pipeline with every Amplitude request failing: when it is answered (the budget is
//!   4,500 ms), how long the queue write takes, and how many SQS calls it makes (moto's SQS on
//!   loopback, the real SDK client);
//! * **redeliver drain rate**: 100,000 corpus messages as delivery jobs in the in-process
//!   queue, drained by the redeliver logic in batches of 10 jobs (the event source's batch
//!   size) to the Amplitude emulator: events/s and requests against the fewest the limits
//!   allow.
//!
//! Run: `cargo bench -p tests --bench durable`. Figures go to BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use amplitude_client::{Report, batch};
use amplitude_emulator::{Emulator, EmulatorConfig, Fault};
use mapping::Settings;
use pipeline::delivery::planning;
use pipeline::durable::{MemoryQueues, Outgoing, QueueKind, Queues, Record, SqsQueues, job};
use pipeline::ingest::inbound::{Inbound, http_api_event};
use pipeline::ops::metrics;
use pipeline::{Function, Kind, Route};
use serde_json::json;
use tests::moto::Moto;

const API_KEY: &str = "bench-api-key";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        ingest_while_amplitude_is_down().await;
        drain_rate().await;
    });
}

fn function(kind: Kind, emu: &Emulator, queues: Queues, extra: &[(&str, &str)]) -> Function {
    Function::builder(kind)
        .var("INGEST_SECRET_ID", "ingest")
        .var("AMPLITUDE_BASE_URL", emu.url())
        .var("ALLOW_UNAUTHENTICATED", "true")
        .var("SEGMENT_SETTINGS", corpus::settings().to_string())
        .var("DELIVERY_QUEUE_URL", "local")
        .var("DEAD_LETTER_QUEUE_URL", "local")
        .vars(extra.iter().map(|(k, v)| (*k, v.to_string())))
        .secret("ingest", json!({"api_key": API_KEY}).to_string())
        .queues(queues)
        // Metrics counted in process: EMF lines on standard output would only clutter the
        // figures.
        .metrics(metrics::Sink::Registry(Arc::default()))
        .build()
        .unwrap()
}

/// Corpus lines as the `/events` route plans them: items in wire form and their messageIds.
fn planned(lines: &[String]) -> (Vec<amplitude_client::Item>, Vec<Option<String>>) {
    let settings = Settings::from_json(&corpus::settings()).unwrap();
    let mut items = Vec::new();
    let mut ids = Vec::new();
    for line in lines {
        let decided = planning::decide(Route::Events, &settings, line);
        if let Ok(own) = decided.items {
            items.extend(own.into_iter().map(|mut item| {
                item.message = ids.len();
                item
            }));
            ids.push(decided.message_id);
        }
    }
    (items, ids)
}

async fn ingest_while_amplitude_is_down() {
    let Some(moto) = Moto::start().await else {
        println!("ingest: skipped (moto is not installed; bash tests/run.sh installs it)");
        return;
    };
    let sqs = moto.sqs().await;
    let url = sqs
        .create_queue()
        .queue_name("bench-delivery")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let aws = pipeline::AwsEnv::from_vars(|k| {
        moto.env()
            .into_iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v)
    })
    .unwrap();
    let queues = Queues::Sqs(Arc::new(SqsQueues::new(aws.sqs(), url.clone(), None, None)));
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emu.state
        .push_faults((0..1_000_000).map(|_| Fault::status("/2/httpapi", 503)));
    emu.state
        .push_faults((0..1_000_000).map(|_| Fault::status("/identify", 503)));
    let events = function(Kind::Ingest(Route::Events), &emu, queues.clone(), &[]);
    let lines = corpus::lines(7, 4000);
    let body = format!("[{}]", lines.join(","));

    // The whole request: delivery attempts until the budget less the queue's reserve, then
    // the queue write.
    let started = Instant::now();
    let inbound = Inbound::from_payload(http_api_event(
        "POST",
        "/events",
        "",
        [],
        body.as_bytes(),
        "b",
    ))
    .unwrap();
    let reply = events
        .handle(
            inbound,
            tokio::time::Instant::now() + Duration::from_millis(4500),
            "bench",
        )
        .await;
    let answered = started.elapsed();
    let counts = reply.counts();

    // The queue write alone, for the same 4,000 events: jobs, compression, SendMessageBatch.
    let (items, ids) = planned(&lines);
    let report = Report::held(items, ids.len(), "Amplitude 503: server error");
    let mut samples = Vec::new();
    let mut calls = 0;
    let mut messages = 0;
    let mut bytes = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let jobs = job::jobs_from(
            &report.undelivered,
            &ids,
            Route::Events,
            mapping::Region::Standard,
            1,
            pipeline::ops::now_ms(),
        );
        let outgoing: Vec<Outgoing> = jobs
            .into_iter()
            .flat_map(|j| j.bodies())
            .map(|body| Outgoing {
                body,
                delay: Duration::ZERO,
            })
            .collect();
        messages = outgoing.len();
        bytes = outgoing.iter().map(|o| o.body.len()).sum::<usize>();
        calls = queues.send(QueueKind::Delivery, outgoing).await.unwrap();
        samples.push(started.elapsed());
    }
    samples.sort();
    let raw: usize = report.undelivered.iter().map(|u| u.item.wire.len()).sum();
    println!(
        "ingest, Amplitude down: 4000 events answered {} in {} ms (budget 4500 ms): {} queued; \
         queue write {} items ({:.1} MB) -> {messages} SQS messages ({:.0} KB, gzip), {calls} SendMessageBatch call(s), \
         median {} ms of 5",
        reply.status.as_u16(),
        answered.as_millis(),
        counts.queued,
        report.undelivered.len(),
        raw as f64 / 1e6,
        bytes as f64 / 1e3,
        samples[2].as_millis()
    );
}

async fn drain_rate() {
    const MESSAGES: usize = 100_000;
    let (items, ids) = planned(&corpus::lines(42, MESSAGES));
    let minimum = batch::minimum_requests(&items, API_KEY);
    let count = items.len();
    let report = Report::held(items, ids.len(), "Amplitude 503: server error");
    let jobs = job::jobs_from(
        &report.undelivered,
        &ids,
        Route::Events,
        mapping::Region::Standard,
        1,
        pipeline::ops::now_ms(),
    );
    let bodies: Vec<String> = jobs.into_iter().flat_map(|j| j.bodies()).collect();
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    for run in 1..=3 {
        emu.state.reset();
        let memory = Arc::new(MemoryQueues::new());
        memory
            .send(
                QueueKind::Delivery,
                bodies
                    .iter()
                    .map(|b| Outgoing {
                        body: b.clone(),
                        delay: Duration::ZERO,
                    })
                    .collect(),
            )
            .unwrap();
        let redeliver = function(Kind::Redeliver, &emu, Queues::Memory(memory.clone()), &[]);
        let started = Instant::now();
        let mut invocations = 0;
        loop {
            let received = memory.receive(QueueKind::Delivery, 10, Duration::from_secs(300));
            if received.is_empty() {
                break;
            }
            invocations += 1;
            let records = received
                .iter()
                .map(|r| Record::from_memory(QueueKind::Delivery, r))
                .collect();
            let response = redeliver
                .redeliver(
                    records,
                    tokio::time::Instant::now() + Duration::from_secs(60),
                    "bench",
                )
                .await;
            assert!(
                response.batch_item_failures.is_empty(),
                "every job delivered"
            );
            for r in &received {
                memory.delete(QueueKind::Delivery, &r.receipt);
            }
        }
        let took = started.elapsed();
        let got = emu.state.ingested();
        let requests: usize = got.requests.values().sum();
        println!(
            "redeliver drain, run {run}: {} jobs ({MESSAGES} messages, {count} Amplitude objects) in {invocations} invocations, \
             {:.2} s = {:.0} objects/s; {requests} requests, the fewest the limits allow {minimum} ({:+.1}%)",
            bodies.len(),
            took.as_secs_f64(),
            count as f64 / took.as_secs_f64(),
            (requests as f64 / minimum as f64 - 1.0) * 100.0
        );
    }
}
