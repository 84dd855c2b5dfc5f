//! Durable mode through the pipeline, with the in-process queues and the redeliver logic that
//! drains them (the local runner's setup), and with an SQS that refuses the write.

use std::sync::Arc;
use std::time::Duration;

use amplitude_emulator::{Emulator, EmulatorConfig, Fault};
use pipeline::durable::{MemoryQueues, QueueKind, Queues, SqsQueues};
use pipeline::ingest::inbound::{Inbound, http_api_event};
use pipeline::{Function, Kind, Route};
use serde_json::{Value, json};

fn function(kind: Kind, emu: &Emulator, queues: Queues) -> Function {
    Function::builder(kind)
        .var("INGEST_SECRET_ID", "ingest")
        .var("AMPLITUDE_BASE_URL", emu.url())
        .var("ALLOW_UNAUTHENTICATED", "true")
        .var("RESPONSE_BUDGET_MS", "600")
        .var("DELIVERY_QUEUE_URL", "local")
        .var("DEAD_LETTER_QUEUE_URL", "local")
        .var("DELIVERY_RETRY_BASE_SECONDS", "1")
        .secret("ingest", json!({"api_key": "amp-key"}).to_string())
        .queues(queues)
        .configure(|c| c.client.backoff.base = Duration::from_millis(5))
        .build()
        .unwrap()
}

async fn post(f: &Function, body: &str) -> (u16, Value) {
    let event = http_api_event("POST", "/events", "", [], body.as_bytes(), "r");
    let reply = f
        .handle(
            Inbound::from_payload(event).unwrap(),
            tokio::time::Instant::now() + Duration::from_millis(600),
            "t",
        )
        .await;
    (
        reply.status.as_u16(),
        serde_json::to_value(&reply.body).unwrap(),
    )
}

/// An emulator whose HTTP V2 endpoint answers 503 to the next 10,000 requests.
async fn amplitude_down() -> Emulator {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emu.state
        .push_faults((0..10_000).map(|_| Fault::status("/2/httpapi", 503)));
    emu
}

fn track(i: usize) -> Value {
    json!({"type": "track", "event": "Played", "userId": format!("user-{i}"), "messageId": format!("q-{i}")})
}

#[tokio::test]
async fn queued_while_amplitude_fails_then_redelivered_once_from_the_in_process_queue() {
    let emu = amplitude_down().await;
    let memory = Arc::new(MemoryQueues::new());
    let queues = Queues::Memory(memory.clone());
    let events = function(Kind::Ingest(Route::Events), &emu, queues.clone());
    let body = json!([track(1), track(2)]).to_string();
    let (status, reply) = post(&events, &body).await;
    assert_eq!(status, 200);
    assert_eq!(reply["counts"]["queued"], 2);
    assert_eq!(
        memory.len(QueueKind::Delivery),
        1,
        "one job for both events"
    );

    emu.state.reset();
    let redeliver = Arc::new(function(Kind::Redeliver, &emu, queues));
    let consumer = tokio::spawn(pipeline::durable::consume_memory_queues(
        redeliver,
        memory.clone(),
        Duration::from_secs(60),
    ));
    // The job waits its backoff (1 s), then goes.
    for _ in 0..40 {
        if memory.len(QueueKind::Delivery) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consumer.abort();
    let got = emu.state.ingested();
    assert_eq!(
        (got.insert_ids["q-1"].stored, got.insert_ids["q-2"].stored),
        (1, 1)
    );
    assert_eq!(memory.len(QueueKind::Delivery), 0);
}

#[tokio::test]
async fn a_queue_that_refuses_the_write_leaves_the_events_retryable() {
    // Nothing is acknowledged that is not stored somewhere durable.
    let emu = amplitude_down().await;
    let aws = pipeline::AwsEnv::from_vars(|k| match k {
        "AWS_REGION" => Some("us-east-1".into()),
        "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("testing".into()),
        // Nothing listens there: every write is refused.
        "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:9".into()),
        _ => None,
    })
    .unwrap();
    let sqs = SqsQueues::new(
        aws.sqs(),
        "http://127.0.0.1:9/1/delivery".into(),
        None,
        None,
    );
    let events = function(
        Kind::Ingest(Route::Events),
        &emu,
        Queues::Sqs(Arc::new(sqs)),
    );
    let (status, reply) = post(&events, &track(1).to_string()).await;
    assert_eq!(status, 503);
    assert_eq!(reply["results"][0]["outcome"], "retryable");
}

/// An Amplitude item that, compressed, is still larger than an SQS message cannot be queued:
/// with Amplitude down, its batch is answered retryable (Segment keeps it) instead of queued,
/// and nothing of it is acknowledged (README, Durable delivery).
#[tokio::test]
async fn an_item_too_large_for_a_queue_message_keeps_its_batch_retryable() {
    use rand::{Rng, SeedableRng};
    let emu = amplitude_down().await;
    let memory = Arc::new(MemoryQueues::new());
    let events = function(
        Kind::Ingest(Route::Events),
        &emu,
        Queues::Memory(memory.clone()),
    );
    // 400 KB of random letters and digits: gzip keeps about three quarters, base64 adds a
    // third, so the item alone is over 256 KiB however it is packed.
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let noise: String = (0..400_000)
        .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
        .collect();
    let mut large = track(2);
    large["properties"] = json!({ "noise": noise });
    let (status, reply) = post(&events, &json!([track(1), large]).to_string()).await;
    assert_eq!(status, 503);
    assert_eq!(reply["counts"]["queued"], 0);
    assert_eq!(reply["results"][0]["outcome"], "retryable");
    assert_eq!(reply["results"][1]["outcome"], "retryable");
    assert_eq!(memory.len(QueueKind::Delivery), 0);
    // Without it, the same batch is queued.
    let (status, reply) = post(&events, &json!([track(1), track(3)]).to_string()).await;
    assert_eq!((status, &reply["counts"]["queued"]), (200, &json!(2)));
}

/// Issue "bounded" §1: in durable mode a message larger than a chunk is queued chunk by chunk
/// while Amplitude fails, answered queued once all it left is stored, and redelivered whole.
#[tokio::test]
async fn a_message_larger_than_a_chunk_is_queued_in_parts_and_redelivered_whole() {
    let emu = Emulator::start(EmulatorConfig {
        httpapi_eps: 100_000,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    emu.state
        .push_faults((0..100_000).map(|_| Fault::status("/2/httpapi", 503)));
    let memory = Arc::new(MemoryQueues::new());
    let queues = Queues::Memory(memory.clone());
    let events = Function::builder(Kind::Ingest(Route::Events))
        .var("INGEST_SECRET_ID", "ingest")
        .var("AMPLITUDE_BASE_URL", emu.url())
        .var("ALLOW_UNAUTHENTICATED", "true")
        .var("RESPONSE_BUDGET_MS", "20000")
        .var("DELIVERY_QUEUE_URL", "local")
        // The parts wait 1 s before redelivery, not the default 10 s (which is the whole of
        // the wait below: the test passed or failed by a few milliseconds).
        .var("DELIVERY_RETRY_BASE_SECONDS", "1")
        .secret("ingest", json!({"api_key": "amp-key"}).to_string())
        .queues(queues.clone())
        .configure(|c| {
            c.client.backoff.base = Duration::from_millis(5);
            c.client.max_attempts = 2;
        })
        .build()
        .unwrap();
    let products: Vec<Value> = (0..1300)
        .map(|i| json!({"sku": format!("sku-{i}"), "price": 1}))
        .collect();
    let order = json!({"type": "track", "event": "Order Completed", "userId": "big-spender",
        "messageId": "order-1", "context": {"traits": {"pad": "t".repeat(16 * 1024)}},
        "properties": {"revenue": 1300, "products": products}});
    let body = json!([track(1), order, track(2)]).to_string();
    let event = http_api_event("POST", "/events", "", [], body.as_bytes(), "r");
    let reply = events
        .handle(
            Inbound::from_payload(event).unwrap(),
            tokio::time::Instant::now() + Duration::from_secs(20),
            "t",
        )
        .await;
    let reply = serde_json::to_value(&reply.body).unwrap();
    assert_eq!(
        (&reply["status"], &reply["counts"]["queued"]),
        (&json!(200), &json!(3)),
        "{reply}"
    );
    assert!(
        memory.len(QueueKind::Delivery) > 1,
        "several queue messages"
    );

    emu.state.reset();
    let redeliver = Arc::new(function(Kind::Redeliver, &emu, queues));
    let consumer = tokio::spawn(pipeline::durable::consume_memory_queues(
        redeliver,
        memory.clone(),
        Duration::from_secs(60),
    ));
    for _ in 0..100 {
        if memory.len(QueueKind::Delivery) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consumer.abort();
    let got = emu.state.ingested();
    assert_eq!(got.events.len(), 1303, "every event once");
    assert_eq!(got.insert_ids["order-1-1301"].stored, 1);
    assert_eq!(memory.len(QueueKind::Delivery), 0);
}

/// Issue "bounded" §8: an unreadable delivery-queue message near SQS's limit, 140,000 `"`
/// characters (wrapped as a JSON string it would double), is dead-lettered within the limit,
/// done for its queue, and read back whole.
#[tokio::test]
async fn an_unreadable_message_near_the_limit_is_dead_lettered_within_it() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let memory = Arc::new(MemoryQueues::new());
    let redeliver = function(Kind::Redeliver, &emu, Queues::Memory(memory.clone()));
    let body = "\"".repeat(140_000);
    memory
        .send(
            QueueKind::Delivery,
            vec![pipeline::durable::Outgoing {
                body: body.clone(),
                delay: Duration::ZERO,
            }],
        )
        .unwrap();
    let received = memory.receive(QueueKind::Delivery, 10, Duration::from_secs(60));
    let records = received
        .iter()
        .map(|r| pipeline::durable::Record::from_memory(QueueKind::Delivery, r))
        .collect();
    let response = redeliver
        .redeliver(
            records,
            tokio::time::Instant::now() + Duration::from_secs(10),
            "t",
        )
        .await;
    assert!(response.batch_item_failures.is_empty(), "done: it is kept");
    let letters = memory.bodies(QueueKind::DeadLetter);
    assert_eq!(letters.len(), 1);
    assert!(letters[0].len() <= pipeline::durable::job::MAX_MESSAGE_BYTES);
    let Some(pipeline::durable::DeadLetter::Unreadable(kept)) =
        pipeline::durable::DeadLetter::decode(&letters[0])
    else {
        panic!("an unreadable dead letter: {}", &letters[0][..200]);
    };
    assert_eq!(kept.kept_body(), Some(body));
    assert_eq!(kept.bytes, 140_000);
    assert!(
        kept.dead_letter_reason
            .starts_with("unreadable job: the job is not a delivery job of this version")
    );
}
