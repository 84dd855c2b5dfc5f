//! Chaos: 10,000 messages of the generated corpus through a seeded random fault schedule (5xx,
//! 503, 429 for throttled users, 413, 400 with listed indices, timeouts, resets, 500 after
//! accepting half). Every message must end delivered exactly once (by insert_id) or rejected
//! with Amplitude's reason; the retryable ones are sent again, as Segment would, until nothing
//! valid is missing.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use amplitude_client::Outcome;
use amplitude_emulator::{Fault, FaultAction};
use common::*;
use mapping::{Body, Plan, Settings};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

const MESSAGES: usize = 10_000;
const SEED: u64 = 20_261_128;

fn schedule(rng: &mut SmallRng, users: &[String], n: usize) -> Vec<Fault> {
    (0..n)
        .map(|_| {
            let roll = rng.random_range(0..100);
            let (delay_ms, action) = match roll {
                0..8 => (
                    0,
                    FaultAction::Status {
                        status: [500, 502, 504][rng.random_range(0..3)],
                        body: None,
                    },
                ),
                8..16 => (
                    0,
                    FaultAction::Status {
                        status: 503,
                        body: None,
                    },
                ),
                16..24 => {
                    let u: Vec<String> = (0..3)
                        .map(|_| users[rng.random_range(0..users.len())].clone())
                        .collect();
                    (
                        0,
                        FaultAction::Throttle {
                            users: u,
                            devices: vec![],
                        },
                    )
                }
                24..30 => (
                    0,
                    FaultAction::Status {
                        status: 413,
                        body: None,
                    },
                ),
                30..35 => {
                    let idx = (0..2).map(|_| rng.random_range(0..40)).collect();
                    (
                        0,
                        FaultAction::InvalidIndices {
                            indices: idx,
                            field: "time".into(),
                        },
                    )
                }
                35..38 => (900, FaultAction::Pass), // longer than the client's timeout
                38..42 => (0, FaultAction::Reset),
                42..47 => (0, FaultAction::AcceptHalf { status: 500 }),
                _ => (0, FaultAction::Pass),
            };
            Fault {
                route: None,
                delay_ms,
                action,
            }
        })
        .collect()
}

/// The insert_ids each message's events carry (identify/group/alias messages have none).
fn insert_ids(plan: &Plan<'_>) -> Vec<String> {
    plan.requests
        .iter()
        .flat_map(|r| match &r.body {
            Body::Events(e) => e
                .iter()
                .filter_map(|e| e.insert_id.as_deref().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_every_event_once_or_rejected_with_a_reason() {
    let emu = emulator().await;
    let mut rng = SmallRng::seed_from_u64(SEED);
    let lines = corpus::lines(SEED, MESSAGES);
    let settings = Settings::from_json(&corpus::settings()).unwrap();
    let parsed = parse(&lines);
    let plans = plan_all(&parsed, &settings);
    let users: Vec<String> = parsed
        .iter()
        .filter_map(|m| m.get("userId").as_str().map(str::to_owned))
        .collect();
    emu.state.push_faults(schedule(&mut rng, &users, 400));

    let client = client_with(&emu, |c| {
        c.concurrency = 4;
        c.request_timeout = Duration::from_millis(500);
        c.max_items_per_request = Some(100);
    });
    let mut reasons: HashMap<String, usize> = HashMap::new();
    let mut final_outcome: HashMap<usize, Outcome> = HashMap::new();
    let mut pending: Vec<usize> = (0..MESSAGES).collect();
    let mut rounds = 0;
    let mut tally_first = None;
    while !pending.is_empty() && rounds < 20 {
        rounds += 1;
        let batch: Vec<Plan> = pending.iter().map(|&i| plans[i].clone()).collect();
        let report = client
            .deliver(
                &batch,
                settings.region,
                &credentials(),
                Instant::now() + Duration::from_secs(10),
            )
            .await;
        tally_first.get_or_insert(report.tally());
        let mut still = Vec::new();
        for (k, outcome) in report.outcomes.into_iter().enumerate() {
            let m = pending[k];
            if let Outcome::Rejected { reason } = &outcome {
                assert!(
                    reason.starts_with("Amplitude "),
                    "rejections carry Amplitude's reason: {reason}"
                );
            }
            match &outcome {
                Outcome::Retryable { reason, .. } | Outcome::Rejected { reason } => {
                    *reasons.entry(reason.clone()).or_default() += 1;
                }
                Outcome::Delivered => {}
            }
            if outcome.is_retryable() {
                still.push(m);
            }
            final_outcome.insert(m, outcome);
        }
        pending = still;
        if rounds == 3 {
            // Segment keeps retrying; by now the fault schedule is spent or nearly so.
            emu.state.push_faults(schedule(&mut rng, &users, 20));
        }
    }
    assert!(
        pending.is_empty(),
        "{} messages still retryable after {rounds} rounds",
        pending.len()
    );

    let ingested = emu.state.ingested();
    let stored: HashSet<&str> = ingested
        .events
        .iter()
        .filter_map(|e| e["insert_id"].as_str())
        .collect();
    let mut delivered_events = 0;
    let mut rejected = 0;
    for (m, plan) in plans.iter().enumerate() {
        match &final_outcome[&m] {
            Outcome::Delivered => {
                for id in insert_ids(plan) {
                    let count = ingested.insert_ids.get(&id).copied().unwrap_or_default();
                    assert_eq!(
                        count.stored, 1,
                        "event {id} of a delivered message is stored exactly once"
                    );
                    assert!(stored.contains(id.as_str()));
                    delivered_events += 1;
                }
            }
            Outcome::Rejected { .. } => rejected += 1,
            Outcome::Retryable { .. } => unreachable!("drained above"),
        }
    }
    assert!(
        ingested.insert_ids.values().all(|c| c.stored <= 1),
        "nothing stored twice"
    );
    let duplicates: usize = ingested
        .insert_ids
        .values()
        .map(|c| c.received - c.stored)
        .sum();
    let (d, r, t) = tally_first.unwrap();
    println!(
        "chaos: {MESSAGES} messages; first delivery: {d} delivered, {r} rejected, {t} retryable; \
         after {rounds} rounds: {} delivered ({delivered_events} events stored once), {rejected} rejected; \
         {duplicates} resent duplicates absorbed by insert_id; {} requests received by the emulator",
        MESSAGES - rejected,
        ingested.requests.values().sum::<usize>()
    );
    let mut reasons: Vec<_> = reasons.into_iter().collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    for (reason, n) in reasons {
        println!("chaos:   {n:>6} × {reason}");
    }
    assert!(
        rejected < MESSAGES / 10,
        "only events hit by an injected 400 are rejected"
    );
}
