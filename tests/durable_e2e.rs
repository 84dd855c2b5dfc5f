//! Durable delivery end to end: the real ingest and `redeliver` binaries under the Runtime API
//! emulator, SQS and Secrets Manager on moto, Amplitude emulated, and a stand-in for Lambda's
//! SQS event source — all on loopback.

use std::time::{Duration, Instant};

use amplitude_emulator::{Emulator, EmulatorConfig, Fault, FaultAction};
use pipeline::durable::Job;
use serde_json::{Value, json};
use tests::function::{self, Running};
use tests::moto::Moto;
use tests::sqs::{EventSource, Queues};

const TOKEN: &str = "token-durable";

struct Setup {
    moto: Moto,
    amp: Emulator,
    queues: Queues,
}

async fn setup(name: &str) -> Option<Setup> {
    let Some(moto) = Moto::start().await else {
        println!("skipped: moto is not installed (bash tests/run.sh installs it into .venv)");
        return None;
    };
    moto.put_secret(
        "ingest",
        &json!({"api_key": "amp-key", "bearer_token": TOKEN}).to_string(),
    )
    .await;
    moto.put_secret("privacy", &json!({"secret_key": "amp-secret"}).to_string())
        .await;
    let queues = Queues::create(&moto, name).await;
    let amp = Emulator::start(EmulatorConfig::default()).await.unwrap();
    Some(Setup { moto, amp, queues })
}

impl Setup {
    /// A function in durable mode with quick retries (1 s backoff, 1 s throttle delay).
    async fn start(&self, name: &str, extra: &[(&str, String)]) -> Running {
        let mut env = self.queues.env();
        env.extend([
            ("DELIVERY_RETRY_BASE_SECONDS", "1".to_string()),
            ("DELIVERY_THROTTLE_DELAY_SECONDS", "1".to_string()),
            ("RESPONSE_BUDGET_MS", "1000".to_string()),
            ("PRIVACY_SECRET_ID", "privacy".to_string()),
        ]);
        env.extend(extra.iter().cloned());
        function::start(name, &self.moto, &self.amp.url(), "ingest", json!({}), &env).await
    }

    fn delivery(&self) -> EventSource<'_> {
        EventSource {
            queues: &self.queues,
            url: self.queues.delivery.clone(),
            batch: 10,
        }
    }

    fn deletion(&self) -> EventSource<'_> {
        EventSource {
            queues: &self.queues,
            url: self.queues.deletion.clone(),
            batch: 1,
        }
    }

    /// Polls both queues, as Lambda would, until they are empty or `limit` has passed.
    async fn drain(&self, redeliver: &Running, limit: Duration) {
        let started = Instant::now();
        while started.elapsed() < limit {
            let n = self
                .delivery()
                .poll(&redeliver.runtime, Duration::from_secs(10))
                .await
                + self
                    .deletion()
                    .poll(&redeliver.runtime, Duration::from_secs(10))
                    .await;
            let left = self.queues.depth(&self.queues.delivery).await
                + self.queues.depth(&self.queues.deletion).await;
            if left == 0 {
                return;
            }
            if n == 0 {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

fn bearer() -> Value {
    json!({"Authorization": format!("Bearer {TOKEN}")})
}

fn tracks(from: usize, n: usize) -> String {
    let items: Vec<Value> = (from..from + n)
        .map(|i| json!({"type": "track", "event": "Played", "userId": format!("user-{i}"), "messageId": format!("d-{i}")}))
        .collect();
    Value::Array(items).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amplitude_down_then_up_segment_always_200_every_event_once() {
    let Some(s) = setup("outage").await else {
        return;
    };
    let events = s.start("events", &[]).await;
    let redeliver = s.start("redeliver", &[]).await;
    // Amplitude answers 503 for the whole first part of the run.
    s.amp
        .state
        .push_faults((0..100_000).map(|_| Fault::status("/2/httpapi", 503)));
    for batch in 0..5 {
        let (status, body) = events
            .http(function::post(&tracks(batch * 20, 20), bearer()))
            .await;
        assert_eq!(status, 200, "Segment is never asked to retry: {body}");
        assert_eq!(body["counts"]["queued"], 20);
        assert_eq!(body["results"][0]["outcome"], "queued");
    }
    // The outage goes on while the jobs are tried: each retried in place, with backoff.
    s.drain(&redeliver, Duration::from_secs(2)).await;
    assert!(s.amp.state.ingested().events.is_empty());
    assert!(s.queues.depth(&s.queues.delivery).await > 0, "kept");
    // Amplitude recovers: everything is delivered, each event exactly once.
    s.amp.state.reset();
    s.drain(&redeliver, Duration::from_secs(30)).await;
    let got = s.amp.state.ingested();
    assert_eq!(got.events.len(), 100);
    assert!((0..100).all(|i| got.insert_ids[&format!("d-{i}")].stored == 1));
    assert_eq!(s.queues.depth(&s.queues.dead_letter).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_users_are_delivered_after_the_delay_without_a_segment_retry() {
    let Some(s) = setup("throttle").await else {
        return;
    };
    let events = s.start("events", &[]).await;
    let redeliver = s.start("redeliver", &[]).await;
    s.amp.state.push_faults([Fault {
        route: Some("/2/httpapi".into()),
        delay_ms: 0,
        action: FaultAction::Throttle {
            users: vec!["user-3".into()],
            devices: vec![],
        },
    }]);
    let (status, body) = events.http(function::post(&tracks(0, 5), bearer())).await;
    assert_eq!(status, 200, "not 429: the queue holds the throttled user");
    assert_eq!(body["counts"]["delivered"], 4);
    assert_eq!(
        body["results"][0],
        json!({"index": 3, "message_id": "d-3", "outcome": "queued",
            "reason": "Amplitude throttled this user or device"})
    );
    assert_eq!(s.amp.state.ingested().events.len(), 4);
    // Not before Amplitude's delay (1 s here): the job is delayed in the queue.
    assert_eq!(
        s.delivery()
            .poll(&redeliver.runtime, Duration::from_secs(5))
            .await,
        0
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.drain(&redeliver, Duration::from_secs(10)).await;
    assert_eq!(s.amp.state.ingested().insert_ids["d-3"].stored, 1);
    assert_eq!(s.amp.state.ingested().events.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_key_jobs_end_in_the_dead_letter_queue_and_a_redrive_delivers_them() {
    let Some(s) = setup("refused").await else {
        return;
    };
    // Amplitude knows only another key: every request is refused.
    let mut config = s.amp.state.config();
    config.api_keys = ["the-right-key".to_string()].into();
    s.amp.state.set_config(config.clone());
    let events = s.start("events", &[]).await;
    let redeliver = s
        .start("redeliver", &[("DELIVERY_MAX_ATTEMPTS", "3".into())])
        .await;
    let (status, body) = events.http(function::post(&tracks(0, 3), bearer())).await;
    assert_eq!((status, &body["counts"]["queued"]), (200, &json!(3)));
    s.drain(&redeliver, Duration::from_secs(15)).await;
    assert_eq!(s.queues.depth(&s.queues.delivery).await, 0);
    let dead = s.queues.peek(&s.queues.dead_letter).await;
    assert_eq!(dead.len(), 1, "one job of 3 messages");
    let job = Job::decode(&dead[0]).unwrap();
    assert_eq!(job.message_ids.len(), 3);
    assert_eq!(
        job.dead_letter_reason
            .as_deref()
            .map(|r| r.split(" over ").next().unwrap_or(r)),
        Some("gave up after 3 attempts")
    );
    assert!(
        job.dead_letter_reason
            .as_deref()
            .unwrap()
            .ends_with("configuration: Amplitude 400: Invalid API key")
    );
    let warned = redeliver
        .logs_saying("dead-lettered")
        .iter()
        .filter(|l| l["level"] == "WARN")
        .count();
    assert_eq!(warned, 3, "one WARN line per dead-lettered message");

    // What an operator reads before replaying: endpoint, messages, age, attempts, reason.
    let out = std::process::Command::new(tests::binary("segment-amplitude"))
        .args(["dlq", "inspect", "--visibility-seconds", "2", "--queue-url"])
        .arg(&s.queues.dead_letter)
        .env_clear()
        .envs(s.moto.env())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("httpapi           3 message(s)  age "),
        "{text}"
    );
    assert!(lines[0].contains("attempts 3    route /events"), "{text}");
    assert!(
        lines[0].ends_with("configuration: Amplitude 400: Invalid API key"),
        "{text}"
    );
    assert_eq!(lines[1], "1 job(s), 3 message(s) in the dead-letter queue");
    assert!(!text.contains("amp-key"));
    // Inspecting takes nothing away: the message is back after the peek's visibility.
    tokio::time::sleep(Duration::from_millis(2100)).await;

    // The operator fixes the key and replays the dead-letter queue (SQS's redrive).
    s.moto
        .client()
        .await
        .put_secret_value()
        .secret_id("ingest")
        .secret_string(json!({"api_key": "the-right-key", "bearer_token": TOKEN}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        s.queues
            .move_all(&s.queues.dead_letter, &s.queues.delivery)
            .await,
        1
    );
    s.drain(&redeliver, Duration::from_secs(15)).await;
    let got = s.amp.state.ingested();
    assert_eq!(got.events.len(), 3);
    assert!(got.events.iter().all(|e| e["_api_key"] == "the-right-key"));
    assert_eq!(s.queues.depth(&s.queues.dead_letter).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2000_id_deletion_batch_is_deleted_at_most_one_request_per_second() {
    let Some(s) = setup("deletions").await else {
        return;
    };
    for i in 0..2000 {
        s.amp.state.add_known_user(&format!("user-{i}"));
    }
    let deletions = s.start("deletions", &[]).await;
    let redeliver = s.start("redeliver", &[]).await;
    let body: Vec<Value> = (0..2000)
        .map(|i| json!({"type": "delete", "userId": format!("user-{i}")}))
        .collect();
    let (status, reply) = deletions
        .http(function::post(&Value::Array(body).to_string(), bearer()))
        .await;
    assert_eq!((status, &reply["counts"]["queued"]), (200, &json!(2000)));
    s.drain(&redeliver, Duration::from_secs(60)).await;
    let got = s.amp.state.ingested();
    let deleted: std::collections::HashSet<String> = got
        .deletion_jobs
        .iter()
        .flat_map(|j| j.amplitude_ids.iter().filter_map(|e| e.user_id.clone()))
        .collect();
    assert_eq!(deleted.len(), 2000, "every id deleted");
    let at = &got.requests_at["/api/2/deletions/users"];
    assert_eq!(at.len(), 20, "100 ids per request");
    let gaps: Vec<u64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g >= 950),
        "at most one request per second: gaps {gaps:?} ms"
    );
    let audits = redeliver
        .json_logs()
        .iter()
        .filter(|l| l["fields"]["audit"] == "deletion" && l["fields"]["outcome"] == "requested")
        .count();
    assert_eq!(audits, 2000, "one audit line per deleted id");
}
