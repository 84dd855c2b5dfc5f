//! The deletions and Engage routes through the pipeline, against the emulator.

use std::time::Duration;

use amplitude_emulator::{Emulator, EmulatorConfig, Fault};
use pipeline::ingest::inbound::{Inbound, http_api_event};
use pipeline::ingest::reply::Reply;
use pipeline::{Function, Kind, Route};
use serde_json::{Value, json};

async fn function(
    route: Route,
    emu: &Emulator,
    settings: Value,
    privacy: Option<Value>,
) -> Function {
    let mut builder = Function::builder(Kind::Ingest(route))
        .var("INGEST_SECRET_ID", "ingest")
        .var("SEGMENT_SETTINGS", settings.to_string())
        .var(
            "AMPLITUDE_BASE_URL",
            format!("{}/_host/{{host}}", emu.url()),
        )
        .var("ALLOW_UNAUTHENTICATED", "true")
        .var("DELETION_REQUESTER", "dpo@example.com")
        .secret("ingest", json!({"api_key": "amp-key"}).to_string())
        .configure(|c| {
            c.client.deletion_interval = Duration::from_millis(30);
            c.client.backoff.base = Duration::from_millis(5);
        });
    if let Some(p) = privacy {
        builder = builder
            .var("PRIVACY_SECRET_ID", "privacy")
            .secret("privacy", p.to_string());
    }
    builder.build().unwrap()
}

/// The deletions function with this privacy secret, and no settings.
async fn deletions(emu: &Emulator, privacy: Value) -> Function {
    function(Route::Deletions, emu, json!({}), Some(privacy)).await
}

fn http(method: &str, body: &str, query: &str) -> Value {
    http_api_event(method, "/deletions", query, [], body.as_bytes(), "r")
}

/// The function's reply to a Lambda payload, given `budget` to answer.
async fn reply_within(f: &Function, payload: Value, budget: Duration) -> Reply {
    f.handle(
        Inbound::from_payload(payload).unwrap(),
        tokio::time::Instant::now() + budget,
        "t",
    )
    .await
}

async fn call(f: &Function, payload: Value) -> (u16, Value) {
    let reply = reply_within(f, payload, Duration::from_secs(4)).await;
    (
        reply.status.as_u16(),
        serde_json::to_value(&reply.body).unwrap(),
    )
}

const OPERATOR: &str = "operator-token";

/// A job listing request with the operator's token.
fn listing(query: &str) -> Value {
    let token = format!("Bearer {OPERATOR}");
    http_api_event(
        "GET",
        "/deletions",
        query,
        [("authorization", token.as_str())],
        b"",
        "r",
    )
}

fn deletes(n: usize) -> String {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({"type": "delete", "userId": format!("user-{i}"), "context": null, "integrations": [],
            "originalTimestamp": "2020-05-09 23:54:49.209808489 +0000 UTC m=+70366.298768264"}))
        .collect();
    Value::Array(items).to_string()
}

#[tokio::test]
async fn deletions_batched_by_100_with_basic_auth_on_the_standard_and_eu_hosts() {
    for (settings, host) in [
        (json!({}), "amplitude.com"),
        (json!({"endpoint": "europe"}), "analytics.eu.amplitude.com"),
    ] {
        let emu = Emulator::start(EmulatorConfig {
            secret_keys: [("amp-key".to_string(), "amp-secret".to_string())].into(),
            ..EmulatorConfig::default()
        })
        .await
        .unwrap();
        for i in 0..250 {
            emu.state.add_known_user(&format!("user-{i}"));
        }
        let f = function(
            Route::Deletions,
            &emu,
            settings,
            Some(json!({"secret_key": "amp-secret", "operator_token": OPERATOR})),
        )
        .await;
        let (status, body) = call(&f, http("POST", &deletes(250), "")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["counts"]["delivered"], 250);
        let jobs = body["jobs"].as_array().unwrap();
        assert_eq!(
            jobs.len() as u64 + body["jobs_omitted"].as_u64().unwrap_or(0),
            3,
            "100 + 100 + 50 ids, one job answer per request (as many as fit in the answer)"
        );
        assert!(body.to_string().len() <= pipeline::ingest::reply::MAX_REPLY_BYTES);
        assert_eq!(jobs[0]["status"], "staging");
        assert_eq!(jobs[0]["amplitude_ids"][0]["requester"], "dpo@example.com");
        let got = emu.state.ingested();
        assert_eq!(
            got.hosts,
            [(format!("{host}/api/2/deletions/users"), 3)].into()
        );
        assert_eq!(got.deletion_jobs[0].amplitude_ids.len(), 250);

        let today = got.deletion_jobs[0].day.clone();
        // Listing user ids needs the operator's token, not Segment's credentials.
        let query = format!("start_day={today}&end_day={today}");
        let (status, refused) = call(&f, http("GET", "", &query)).await;
        assert_eq!(
            (status, refused["error"].as_str()),
            (
                401,
                Some(
                    "authentication: listing deletion jobs needs the operator token (operator_token in the privacy secret) as Authorization: Bearer"
                )
            )
        );
        let (status, listed) =
            call(&f, listing(&format!("start_day={today}&end_day={today}"))).await;
        assert_eq!(status, 200);
        assert_eq!(
            listed["jobs"][0]["amplitude_ids"].as_array().unwrap().len(),
            250
        );
    }
}

#[tokio::test]
async fn deletions_not_configured_501_not_set_up_yet_503_and_bad_requests_400() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let none = function(Route::Deletions, &emu, json!({}), None).await;
    let (status, body) = call(&none, http("POST", &deletes(1), "")).await;
    assert_eq!(status, 501);
    assert_eq!(
        body["error"],
        "deletions: no Amplitude secret key is configured (PRIVACY_SECRET_ID is not set); Amplitude's User Privacy API needs the project's secret key"
    );
    // A created privacy secret whose secret_key is still empty means "not set up yet":
    // retryable, so Segment keeps the deletions until someone sets it.
    let empty = deletions(&emu, json!({"secret_key": ""})).await;
    let (status, body) = call(&empty, http("POST", &deletes(1), "")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            503,
            Some(
                "deletions: the privacy secret `privacy` has no secret_key yet; put the project's Amplitude secret key in it"
            )
        )
    );

    let f = deletions(&emu, json!({"secret_key": "s", "operator_token": OPERATOR})).await;
    let (status, body) = call(&f, http("POST", r#"{"type": "delete", "context": []}"#, "")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("delete: `userId` is required"))
    );
    for bad in [
        "start_day=2024-01-01",
        "start_day=20240101&end_day=2024-01-02",
        "start_day=2024-02-01&end_day=2024-01-01",
    ] {
        assert_eq!(call(&f, listing(bad)).await.0, 400, "{bad}");
    }
}

#[tokio::test]
async fn deletion_429_is_retried_within_the_deadline() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emu.state.add_known_user("user-0");
    emu.state.push_faults([
        Fault::status("/api/2/deletions/users", 429),
        Fault::status("/api/2/deletions/users", 503),
    ]);
    let f = deletions(&emu, json!({"secret_key": "s"})).await;
    let (status, _) = call(&f, http("POST", &deletes(1), "")).await;
    assert_eq!(status, 200);
    assert_eq!(emu.state.ingested().requests["/api/2/deletions/users"], 3);
}

/// In direct mode one invocation sends what its budget allows (Amplitude takes one deletion
/// request per second) and answers the rest retryable, and Segment sends the whole request
/// again. A deletion Amplitude accepted is not sent again by those retries, so each moves on to
/// ids not sent yet: every id is asked for, and the request ends 200 (before, each retry
/// sent the same first ids again and the request never ended). The only request sent twice
/// is one still unanswered when its invocation had to answer (a busy machine: Amplitude may
/// have taken it, so it is kept for the retry, and Amplitude takes the second as another
/// deletion of the same users): at most one per retried invocation.
#[tokio::test]
async fn retries_of_a_large_deletion_batch_move_on_to_ids_not_sent_yet() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    for i in 0..2_000 {
        emu.state.add_known_user(&format!("user-{i}"));
    }
    let f = deletions(&emu, json!({"secret_key": "s"})).await;
    let body = deletes(2_000);
    let mut answers = Vec::new();
    while answers.last() != Some(&200) && answers.len() < 40 {
        let reply = reply_within(&f, http("POST", &body, ""), Duration::from_millis(250)).await;
        answers.push(reply.status.as_u16());
        if reply.status == 200 {
            assert_eq!(reply.counts().delivered, 2_000);
        }
    }
    assert_eq!(answers.last(), Some(&200), "{answers:?}");
    assert!(answers.len() > 2, "{answers:?}");
    assert!(
        answers.iter().rev().skip(1).all(|s| *s == 503),
        "{answers:?}"
    );
    let got = emu.state.ingested();
    let sent = got.requests["/api/2/deletions/users"];
    let retried = answers.len() - 1;
    assert!(
        (20..=20 + retried).contains(&sent),
        "{sent} deletion requests for 20 batches of ids over {retried} retries"
    );
    let asked: std::collections::BTreeSet<String> = got
        .deletion_jobs
        .iter()
        .flat_map(|j| j.amplitude_ids.iter().filter_map(|a| a.user_id.clone()))
        .collect();
    assert_eq!(asked.len(), 2_000);
}

fn engage_batch(n: usize) -> String {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({"type": "identify", "userId": format!("user-{i}"), "messageId": format!("eng-{i}"),
            "traits": {"big_spenders": "true"},
            "context": {"personas": {"computation_class": "audience", "computation_key": "big_spenders"}},
            "integrations": {"All": false, "Webhooks": true}}))
        .collect();
    Value::Array(items).to_string()
}

#[tokio::test]
async fn engage_syncs_become_identify_user_properties() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let f = function(Route::Engage, &emu, json!({}), None).await;
    let body = json!([
        {"type": "identify", "userId": "user-1", "traits": {"vip": "true"}, "context": {"personas": {"computation_key": "vip"}}},
        {"type": "track", "event": "Audience Exited", "userId": "user-2", "properties": {"audience_key": "vip", "vip": false}},
        {"type": "track", "event": "Trait Computed", "userId": "user-3", "properties": {"trait_key": "orders", "orders": 12}},
        {"type": "identify", "traits": {"email": "only@example.com", "vip": true}, "context": {"personas": {"computation_key": "vip"}}},
    ])
    .to_string();
    let (status, reply) = call(&f, http("POST", &body, "")).await;
    assert_eq!(status, 200);
    assert_eq!(reply["counts"]["delivered"], 3);
    assert_eq!(
        reply["results"],
        json!([{"index": 3, "outcome": "skipped", "reason": "the profile has neither userId nor anonymousId (Amplitude needs one)"}])
    );
    let props: Vec<Value> = emu
        .state
        .ingested()
        .identifies
        .iter()
        .map(|i| i["user_properties"].clone())
        .collect();
    assert_eq!(
        props,
        vec![
            json!({"vip": true, "id": "user-1"}),
            json!({"vip": false, "id": "user-2"}),
            json!({"orders": 12, "id": "user-3"})
        ]
    );
}

#[tokio::test]
async fn engage_initial_sync_of_4000_profiles_is_4_requests() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let f = function(Route::Engage, &emu, json!({}), None).await;
    let started = std::time::Instant::now();
    let (status, reply) = call(&f, http("POST", &engage_batch(4000), "")).await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(4500),
        "answered within the response budget"
    );
    assert_eq!(reply["counts"]["delivered"], 4000);
    let got = emu.state.ingested();
    assert_eq!(
        got.requests["/identify"], 4,
        "1000 identifications per request"
    );
    assert_eq!(got.identifies.len(), 4000);
    assert_eq!(
        got.identifies[0]["user_properties"],
        json!({"big_spenders": true, "id": "user-0"})
    );
}
