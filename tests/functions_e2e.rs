//! End to end: the real `events` and `alias` binaries under the Lambda Runtime API emulator,
//! with moto as Secrets Manager and the Amplitude emulator as Amplitude — all on loopback.

use std::time::Duration;

use amplitude_emulator::{Emulator, EmulatorConfig, Fault, FaultAction};
use base64::Engine;
use pipeline::ingest::auth::sign;
use pipeline::ingest::inbound::http_api_event;
use serde_json::{Value, json};
use tests::function::{self, Running};
use tests::moto::Moto;
use tests::runtime_api::Invocation;

const SECRET: &str = "whsec-e2e";
const TOKEN: &str = "token-e2e";
const OPERATOR: &str = "operator-e2e";

async fn start(
    name: &str,
    moto: &Moto,
    amplitude: &Emulator,
    ingest_id: &str,
    settings: Value,
) -> Running {
    start_with(name, moto, amplitude, ingest_id, settings, &[]).await
}

async fn start_with(
    name: &str,
    moto: &Moto,
    amplitude: &Emulator,
    ingest_id: &str,
    settings: Value,
    extra: &[(&str, String)],
) -> Running {
    function::start(name, moto, &amplitude.url(), ingest_id, settings, extra).await
}

/// The events function behind a secret of its own, whose bearer token is `token-1`.
async fn events_with_token(moto: &Moto, amplitude: &Emulator, ingest_id: &str) -> Running {
    let secret = json!({"api_key": "key-1", "bearer_token": "token-1"});
    moto.put_secret(ingest_id, &secret.to_string()).await;
    start("events", moto, amplitude, ingest_id, json!({})).await
}

fn v2(body: &str, headers: Value) -> Value {
    function::post(body, headers)
}

fn v1(body: &str, headers: Value) -> Value {
    json!({"resource": "/events", "path": "/events", "httpMethod": "POST", "headers": headers, "multiValueHeaders": {},
        "requestContext": {"accountId": "1", "resourceId": "r", "stage": "prod", "requestId": "q",
            "identity": {"sourceIp": "127.0.0.1"}, "resourcePath": "/events", "httpMethod": "POST", "apiId": "a"},
        "body": body, "isBase64Encoded": false})
}

fn sig(body: &str) -> Value {
    json!({"content-type": "application/json", "x-signature": sign(SECRET, body.as_bytes())})
}

fn track(i: usize) -> Value {
    json!({"type": "track", "event": "Played", "userId": format!("user-{i}"), "messageId": format!("e2e-{i}")})
}

async fn env() -> Option<(Moto, Emulator)> {
    let Some(moto) = Moto::start().await else {
        println!("skipped: moto is not installed (bash tests/run.sh installs it into .venv)");
        return None;
    };
    moto.put_secret(
        "ingest/events",
        &json!({"api_key": "amp-key", "webhook_secret": SECRET}).to_string(),
    )
    .await;
    moto.put_secret(
        "ingest/alias",
        &json!({"api_key": "amp-key", "bearer_token": TOKEN}).to_string(),
    )
    .await;
    moto.put_secret(
        "privacy",
        &json!({"secret_key": "amp-secret", "operator_token": OPERATOR}).to_string(),
    )
    .await;
    moto.put_secret("privacy/empty", &json!({"secret_key": ""}).to_string())
        .await;
    Some((
        moto,
        Emulator::start(EmulatorConfig::default()).await.unwrap(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_function_under_the_runtime_api() {
    let Some((moto, amp)) = env().await else {
        return;
    };
    let f = start(
        "events",
        &moto,
        &amp,
        "ingest/events",
        json!({"trackAllPages": true}),
    )
    .await;

    // HTTP API v2, signed.
    let one = track(1).to_string();
    let (status, body) = f.http(v2(&one, sig(&one))).await;
    assert_eq!((status, &body["counts"]["delivered"]), (200, &json!(1)));
    // REST API v1.
    let two = track(2).to_string();
    assert_eq!(f.http(v1(&two, sig(&two))).await.0, 200);
    // Direct invocation: authenticated by IAM, answered with the body itself.
    match f.call(track(3)).await {
        Invocation::Response(r) => assert_eq!(r["status"], 200),
        other => panic!("{other:?}"),
    }
    // Unsigned, forged, signed with the wrong secret.
    assert_eq!(f.http(v2(&one, json!({}))).await.0, 401);
    assert_eq!(
        f.http(v2(&one, json!({"X-Signature": "00".repeat(20)})))
            .await
            .0,
        401
    );
    assert_eq!(
        f.http(v2(
            &one,
            json!({"X-Signature": sign("wrong", one.as_bytes())})
        ))
        .await
        .0,
        401
    );
    // A batch array is signed by its first element only: with the signature alone it is
    // refused (anyone could append events); the operator can opt in with ALLOW_SIGNED_BATCHES.
    let first = track(4).to_string();
    let array = format!(
        "[{first},{},{}]",
        track(5),
        json!({"type": "page", "userId": "user-6", "messageId": "e2e-6"})
    );
    let first_sig = json!({"X-Signature": sign(SECRET, first.as_bytes())});
    assert_eq!(f.http(v2(&array, first_sig.clone())).await.0, 401);
    let opted = start_with(
        "events",
        &moto,
        &amp,
        "ingest/events",
        json!({"trackAllPages": true}),
        &[("ALLOW_SIGNED_BATCHES", "true".to_string())],
    )
    .await;
    let (status, body) = opted.http(v2(&array, first_sig)).await;
    assert_eq!((status, &body["counts"]["delivered"]), (200, &json!(3)));
    let batch =
        json!({"batch": [track(7), track(8)], "context": {"ip": "203.0.113.9"}}).to_string();
    assert_eq!(f.http(v2(&batch, sig(&batch))).await.0, 200);
    // A key named twice keeps its last value (`mapping::parse`), in the shared context too.
    let repeated = r#"{"batch":[{"type":"track","event":"e2e","userId":"user-first",
        "userId":"user-11","messageId":"e2e-11","properties":{"a":1,"a":2}}],
        "context":{"ip":"203.0.113.1","ip":"203.0.113.11"}}"#;
    assert_eq!(f.http(v2(repeated, sig(repeated))).await.0, 200);
    // Base64 body.
    let nine = track(9).to_string();
    let mut b64 = v2(
        &base64::engine::general_purpose::STANDARD.encode(&nine),
        sig(&nine),
    );
    b64["isBase64Encoded"] = json!(true);
    assert_eq!(f.http(b64).await.0, 200);
    // Malformed JSON and an oversized body.
    let (status, body) = f.http(v2("{oops", sig("{oops"))).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("body: not valid JSON")
    );
    let huge = format!(
        "{{\"type\":\"track\",\"event\":\"e\",\"userId\":\"user-1\",\"p\":\"{}\"}}",
        "x".repeat(6_500_000)
    );
    assert_eq!(f.http(v2(&huge, sig(&huge))).await.0, 413);

    let ingested = amp.state.ingested();
    assert_eq!(
        ingested.events.len(),
        10,
        "events 1–9 (page 6 included) and 11, each once"
    );
    let eleven = ingested
        .events
        .iter()
        .find(|e| e["insert_id"] == "e2e-11")
        .unwrap();
    assert_eq!(
        (
            &eleven["user_id"],
            &eleven["ip"],
            &eleven["event_properties"]
        ),
        (&json!("user-11"), &json!("203.0.113.11"), &json!({"a": 2}))
    );
    assert!(ingested.insert_ids.values().all(|c| c.stored == 1));
    assert_eq!(
        ingested
            .events
            .iter()
            .find(|e| e["insert_id"] == "e2e-7")
            .unwrap()["ip"],
        "203.0.113.9"
    );

    // Amplitude 503 until the deadline: Segment is told to retry; its retry delivers once.
    amp.state.reset();
    amp.state
        .push_faults((0..500).map(|_| Fault::status("/2/httpapi", 503)));
    let ten = track(10).to_string();
    let short = f
        .runtime
        .invoke(v2(&ten, sig(&ten)), Duration::from_millis(1200))
        .await;
    let Invocation::Response(r) = short else {
        panic!("{short:?}")
    };
    assert_eq!(r["statusCode"], 503);
    amp.state.reset();
    assert_eq!(f.http(v2(&ten, sig(&ten))).await.0, 200);
    assert_eq!(amp.state.ingested().insert_ids["e2e-10"].stored, 1);

    // Amplitude throttles the user: 429.
    amp.state.push_faults([Fault {
        route: None,
        delay_ms: 0,
        action: FaultAction::Throttle {
            users: vec!["user-11".into()],
            devices: vec![],
        },
    }]);
    let eleven = track(11).to_string();
    assert_eq!(f.http(v2(&eleven, sig(&eleven))).await.0, 429);

    // Amplitude refuses the key: retryable, no key in the answer; once the key is accepted,
    // the retry goes through (the secret is fetched again).
    let mut config = amp.state.config();
    config.api_keys = ["rotated".to_string()].into();
    amp.state.set_config(config.clone());
    let (status, body) = f.http(v2(&eleven, sig(&eleven))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("configuration: Amplitude 400: Invalid API key"))
    );
    assert!(!body.to_string().contains("amp-key"));
    config.api_keys = ["amp-key".to_string()].into();
    amp.state.set_config(config);
    assert_eq!(f.http(v2(&eleven, sig(&eleven))).await.0, 200);

    // What the operator sees: an event Amplitude refuses (a 400 naming it) is logged at WARN
    // with its messageId and reason; events kept because Amplitude refused the request (403)
    // are logged at ERROR with their count and first messageIds.
    amp.state.push_faults([Fault {
        route: None,
        delay_ms: 0,
        action: FaultAction::InvalidIndices {
            indices: vec![0],
            field: "time".into(),
        },
    }]);
    let twelve = track(12).to_string();
    assert_eq!(f.http(v2(&twelve, sig(&twelve))).await.0, 200);
    amp.state.push_faults([Fault::status("/2/httpapi", 403)]);
    let thirteen = track(13).to_string();
    assert_eq!(f.http(v2(&thirteen, sig(&thirteen))).await.0, 503);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lines: Vec<Value> = f
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let warn = lines
        .iter()
        .find(|l| l["level"] == "WARN" && l["fields"]["message_id"] == "e2e-12")
        .expect("a WARN line for the rejected message");
    assert_eq!(
        warn["fields"]["reason"],
        "Amplitude 400: Invalid field values on some events (events_with_invalid_fields: time)"
    );
    assert_eq!(
        (&warn["fields"]["route"], &warn["fields"]["endpoint"]),
        (&json!("/events"), &json!("httpapi"))
    );
    // ... and the same request as metrics: the EMF lines the binary wrote for it (the one
    // invocation with a message Amplitude rejected).
    let emf: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("_aws").is_some() && l["RejectedAmplitude"] == 1)
        .collect();
    assert_eq!(emf.len(), 1, "one EMF route line for the rejected message");
    let route_line = emf[0];
    // Lambda's log-level filter (ApplicationLogLevel): a JSON line without a level counts as
    // INFO; every metric line passes WARN.
    let level_rank = |l: &Value| match l["level"].as_str().unwrap_or("INFO") {
        "TRACE" => 0,
        "DEBUG" => 1,
        "INFO" => 2,
        "WARN" => 3,
        "ERROR" => 4,
        _ => 5,
    };
    assert!(
        lines
            .iter()
            .filter(|l| l.get("_aws").is_some())
            .all(|l| level_rank(l) >= 3),
        "metric lines survive ApplicationLogLevel=WARN"
    );
    assert_eq!(
        route_line["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "SegmentAmplitude"
    );
    assert_eq!(
        (
            &route_line["Route"],
            &route_line["Received"],
            &route_line["Delivered"]
        ),
        (&json!("events"), &json!(1), &json!(0))
    );
    let endpoint_line = lines
        .iter()
        .find(|l| {
            l.get("_aws").is_some()
                && l["Endpoint"] == "httpapi"
                && l["_aws"]["Timestamp"] == route_line["_aws"]["Timestamp"]
        })
        .expect("the endpoint line of the same invocation");
    assert_eq!(
        (
            &endpoint_line["AmplitudeRequests"],
            &endpoint_line["AmplitudeStatus4xx"],
            &endpoint_line["EventsPerRequest"]
        ),
        (&json!(1), &json!(1), &json!(1.0))
    );
    let refused = |id: &str| {
        lines
            .iter()
            .find(|l| {
                l["level"] == "ERROR" && l["fields"]["first_message_ids"] == format!(r#"["{id}"]"#)
            })
            .unwrap_or_else(|| panic!("an ERROR line naming {id}"))
    };
    assert_eq!(refused("e2e-13")["fields"]["count"], 1);
    assert_eq!(
        refused("e2e-13")["fields"]["reason"],
        "Amplitude 403: request refused"
    );
    assert_eq!(
        refused("e2e-11")["fields"]["reason"],
        "configuration: Amplitude 400: Invalid API key"
    );
    drop(f.child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_function_with_bearer_token() {
    let Some((moto, amp)) = env().await else {
        return;
    };
    let f = start(
        "alias",
        &moto,
        &amp,
        "ingest/alias",
        json!({"sendAlias": true}),
    )
    .await;
    let alias = json!({"type": "alias", "previousId": "anon-1", "userId": "user-1"}).to_string();
    assert_eq!(
        f.http(v2(
            &alias,
            json!({"Authorization": format!("Bearer {TOKEN}")})
        ))
        .await
        .0,
        200
    );
    assert_eq!(
        f.http(v2(&alias, json!({"authorization": "Bearer nope"})))
            .await
            .0,
        401
    );
    let unmap = json!({"type": "alias", "previousId": "x", "userId": "user-2", "integrations": {"Amplitude": {"unmap": "user-2"}}}).to_string();
    assert_eq!(
        f.http(v2(
            &unmap,
            json!({"Authorization": format!("Bearer {TOKEN}")})
        ))
        .await
        .0,
        200
    );
    let track = track(1).to_string();
    assert_eq!(
        f.http(v2(
            &track,
            json!({"Authorization": format!("Bearer {TOKEN}")})
        ))
        .await
        .0,
        501
    );
    assert_eq!(
        amp.state.ingested().mappings,
        vec![
            json!({"user_id": "anon-1", "global_user_id": "user-1"}),
            json!({"user_id": "user-2", "unmap": true})
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_tells_strangers_nothing_and_the_log_names_it() {
    let Some((moto, amp)) = env().await else {
        return;
    };
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:no/such/secret-AbCdEf";
    let f = start("events", &moto, &amp, arn, json!({})).await;
    let one = track(1).to_string();
    // Unauthenticated, even: the answer carries no ARN, account id or AWS error.
    let (status, body) = f.http(v2(&one, json!({}))).await;
    assert_eq!(status, 500);
    assert_eq!(
        body["error"],
        "configuration error (request req-0); see the function's logs"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = f.logs.lock().unwrap().clone();
    assert!(
        logs.iter().any(|l| l.contains(
            "configuration: secret `no/such/secret-AbCdEf` could not be read: ResourceNotFoundException"
        )),
        "{logs:?}"
    );
    assert!(logs.iter().all(|l| !l.contains("123456789012")), "{logs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_bearer_token_is_accepted_without_a_redeploy() {
    let Some((moto, amp)) = env().await else {
        return;
    };
    let f = start(
        "alias",
        &moto,
        &amp,
        "ingest/alias",
        json!({"sendAlias": true}),
    )
    .await;
    let alias = json!({"type": "alias", "previousId": "anon-1", "userId": "user-1"}).to_string();
    let with = |token: &str| v2(&alias, json!({"Authorization": format!("Bearer {token}")}));
    assert_eq!(f.http(with(TOKEN)).await.0, 200);
    // Rotation: the new token first, the previous one still accepted while Segment switches.
    moto.client()
        .await
        .put_secret_value()
        .secret_id("ingest/alias")
        .secret_string(
            json!({"api_key": "amp-key", "bearer_token": ["token-2", TOKEN]}).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        f.http(with("token-2")).await.0,
        200,
        "read again on the mismatch"
    );
    assert_eq!(f.http(with(TOKEN)).await.0, 200);
    assert_eq!(f.http(with("forged")).await.0, 401);
}

/// Mapping §9.4 (decision 2026-12-02) through the real `events` binary: a group call whose
/// traits increment a group property, Amplitude storing the request and then answering 500.
/// The function resends it; the increment is applied once, because it travelled as a
/// deduplicated `$groupidentify` event. With `idempotentTraitOperations: false` it goes to
/// `/groupidentify`, and the same fault applies it twice: the reason for the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_increment_resent_after_stored_then_500_is_applied_once() {
    let Some((moto, amp)) = env().await else {
        return;
    };
    for (idempotent, route, applied) in [(true, "/2/httpapi", 1), (false, "/groupidentify", 2)] {
        amp.state.reset();
        let f = start(
            "events",
            &moto,
            &amp,
            "ingest/events",
            json!({"groupTypeTrait": "kind", "groupValueTrait": "name",
                "idempotentTraitOperations": idempotent}),
        )
        .await;
        let group = json!({"type": "group", "userId": "user-1", "groupId": "g1",
            "messageId": "grp-1", "traits": {"kind": "team", "name": "red", "$add": {"seats": 3}}})
        .to_string();
        amp.state.push_faults([Fault {
            route: Some(route.into()),
            delay_ms: 0,
            action: FaultAction::StoreThen {
                status: 500,
                after_ms: 0,
            },
        }]);
        // The function resends the request itself within the invocation, and answers 200.
        let (status, body) = f.http(v2(&group, sig(&group))).await;
        assert_eq!(status, 200, "{body}");
        let got = amp.state.ingested();
        assert_eq!(
            got.groups["team"]["red"]["seats"],
            json!(3 * applied),
            "idempotentTraitOperations {idempotent}: {:?}",
            got.groups
        );
    }
}

fn bearer() -> Value {
    json!({"Authorization": format!("Bearer {TOKEN}")})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_function_under_the_runtime_api() {
    let Some((moto, amp)) = env().await else {
        return;
    };
    let mut config = amp.state.config();
    config.secret_keys = [("amp-key".to_string(), "amp-secret".to_string())].into();
    amp.state.set_config(config);
    for i in 0..120 {
        amp.state.add_known_user(&format!("user-{i}"));
    }
    let privacy = [
        ("PRIVACY_SECRET_ID", "privacy".to_string()),
        ("DELETION_REQUESTER", "dpo@example.com".to_string()),
    ];
    for (settings, host) in [
        (json!({}), "amplitude.com"),
        (json!({"endpoint": "eu"}), "analytics.eu.amplitude.com"),
    ] {
        amp.state.reset();
        for i in 0..120 {
            amp.state.add_known_user(&format!("user-{i}"));
        }
        let f = start_with("deletions", &moto, &amp, "ingest/alias", settings, &privacy).await;
        let deletes: Vec<Value> = (0..120)
            .map(|i| json!({"type": "delete", "userId": format!("user-{i}"), "context": null, "integrations": [],
                "originalTimestamp": "2020-05-09 23:54:49.209808489 +0000 UTC m=+70366.298768264"}))
            .collect();
        let (status, body) = f
            .http(v2(&Value::Array(deletes).to_string(), bearer()))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["jobs"].as_array().unwrap().len(), 2, "100 + 20 ids");
        let got = amp.state.ingested();
        assert_eq!(
            got.hosts,
            [(format!("{host}/api/2/deletions/users"), 2)].into()
        );
        assert_eq!(
            got.deletion_jobs[0].amplitude_ids[0].requester.as_deref(),
            Some("dpo@example.com")
        );
        // The job status query, as an operator would run it.
        let day = got.deletion_jobs[0].day.clone();
        let token = format!("Bearer {OPERATOR}");
        let get = http_api_event(
            "GET",
            "/deletions",
            &format!("start_day={day}&end_day={day}"),
            [("authorization", token.as_str())],
            b"",
            "r",
        );
        let (status, listed) = f.http(get).await;
        assert_eq!(
            (
                status,
                listed["jobs"][0]["amplitude_ids"].as_array().unwrap().len()
            ),
            (200, 120)
        );
        // One audit line per requested user id, with Amplitude's job day; no key anywhere.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let logs = f.logs.lock().unwrap().clone();
        let audits: Vec<Value> = logs
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["fields"]["audit"] == "deletion")
            .collect();
        assert_eq!(audits.len(), 120, "{logs:?}");
        assert_eq!(audits[7]["fields"]["user_id"], "user-7");
        assert_eq!(audits[7]["fields"]["job_day"], json!(day));
        assert_eq!(audits[7]["fields"]["outcome"], "requested");
        assert!(
            logs.iter()
                .all(|l| !l.contains("amp-secret") && !l.contains("amp-key"))
        );
    }
    // Amplitude rate-limits the deletion: retried within the deadline.
    amp.state
        .push_faults([Fault::status("/api/2/deletions/users", 429)]);
    let f = start_with(
        "deletions",
        &moto,
        &amp,
        "ingest/alias",
        json!({}),
        &privacy,
    )
    .await;
    let one = json!({"type": "delete", "userId": "user-1"}).to_string();
    assert_eq!(f.http(v2(&one, bearer())).await.0, 200);
    // A privacy secret created but not filled in yet: 503, so Segment keeps retrying.
    let empty = start_with(
        "deletions",
        &moto,
        &amp,
        "ingest/alias",
        json!({}),
        &[("PRIVACY_SECRET_ID", "privacy/empty".to_string())],
    )
    .await;
    let (status, body) = empty.http(v2(&one, bearer())).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            503,
            Some(
                "deletions: the privacy secret `privacy/empty` has no secret_key yet; put the project's Amplitude secret key in it"
            )
        )
    );
    // Deletions not configured at all: 501, which Segment does not retry.
    let none = start("deletions", &moto, &amp, "ingest/alias", json!({})).await;
    let (status, body) = none.http(v2(&one, bearer())).await;
    assert_eq!(status, 501);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("deletions: no Amplitude secret key is configured")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engage_function_under_the_runtime_api() {
    let Some((moto, amp)) = env().await else {
        return;
    };
    let f = start("engage", &moto, &amp, "ingest/alias", json!({})).await;
    let personas = |key: &str| json!({"personas": {"computation_class": "audience", "computation_key": key, "computation_id": "aud_1"}});
    let body = json!([
        {"type": "identify", "userId": "user-1", "traits": {"vip": true}, "context": personas("vip"), "integrations": {"All": false, "Hook": true}},
        {"type": "identify", "userId": "user-2", "traits": {"vip": "false"}, "context": personas("vip")},
        {"type": "identify", "userId": "user-3", "traits": {"ltv": 99.5}, "context": {"personas": {"computation_class": "trait", "computation_key": "ltv"}}},
        {"type": "track", "event": "Audience Entered", "userId": "user-4", "properties": {"audience_key": "vip", "vip": "true"}},
        {"type": "track", "event": "Trait Computed", "anonymousId": "anon-5", "properties": {"trait_key": "ltv", "ltv": 7}},
        {"type": "identify", "traits": {"email": "only@example.com", "vip": true}, "context": personas("vip")}
    ])
    .to_string();
    let (status, reply) = f.http(v2(&body, bearer())).await;
    assert_eq!(status, 200);
    assert_eq!(reply["counts"]["delivered"], 5);
    assert_eq!(reply["counts"]["skipped"], 1);
    let props: Vec<Value> = amp
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
            json!({"ltv": 99.5, "id": "user-3"}),
            json!({"vip": true, "id": "user-4"}),
            json!({"ltv": 7}),
        ]
    );
    // An initial sync: 4,000 members in one request → 4 Identify requests, answered in time.
    amp.state.reset();
    let members: Vec<Value> = (0..4000)
        .map(|i| json!({"type": "identify", "userId": format!("member-{i}"), "traits": {"vip": true}, "context": personas("vip")}))
        .collect();
    let started = std::time::Instant::now();
    let (status, reply) = f
        .http(v2(&Value::Array(members).to_string(), bearer()))
        .await;
    assert_eq!((status, &reply["counts"]["delivered"]), (200, &json!(4000)));
    assert!(started.elapsed() < Duration::from_millis(4500));
    assert_eq!(
        amp.state.ingested().hosts,
        [("api2.amplitude.com/identify".to_string(), 4)].into()
    );
}

/// Issue "bounded" §5: at TRACE, no line the function writes — its own, the Lambda runtime's,
/// the AWS SDK's, hyper's or reqwest's — holds a token, an API key, a webhook secret or an ARN,
/// through a valid request, a forged one, a malformed one and a key Amplitude refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_log_line_even_at_trace() {
    let Some((moto, amp)) = env().await else {
        return;
    };
    let (key, secret, token) = ("key-SECRET-1", "whsec-SECRET-2", "token-SECRET-3");
    moto.put_secret(
        "ingest/trace",
        &json!({"api_key": key, "webhook_secret": secret, "bearer_token": token}).to_string(),
    )
    .await;
    let f = start_with(
        "events",
        &moto,
        &amp,
        "ingest/trace",
        json!({}),
        &[("AWS_LAMBDA_LOG_LEVEL", "TRACE".into())],
    )
    .await;
    let body = track(1).to_string();
    let good = json!({"X-Signature": sign(secret, body.as_bytes()),
        "Authorization": format!("Bearer {token}")});
    assert_eq!(f.http(v2(&body, good.clone())).await.0, 200);
    assert_eq!(
        f.http(v2(
            &body,
            json!({"Authorization": "Bearer forged-SECRET-4"})
        ))
        .await
        .0,
        401
    );
    let mut bad = v2(&body, good.clone());
    bad["headers"]["x-odd"] = json!("\u{1}value");
    assert_eq!(f.http(bad).await.0, 400);
    // Amplitude refuses the key, quoting it: the function reads the secret again.
    let mut config = amp.state.config();
    config.api_keys = ["another-key".to_string()].into();
    amp.state.set_config(config);
    assert_eq!(f.http(v2(&body, good)).await.0, 503);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = f.logs.lock().unwrap().clone();
    assert!(
        logs.len() >= 8,
        "a line per request and more: {}",
        logs.len()
    );
    let refused = f.logs_saying("request refused");
    assert_eq!(refused.len(), 1, "the malformed event's one line");
    assert_eq!(
        (&refused[0]["level"], &refused[0]["fields"]["status"]),
        (&json!("WARN"), &json!(400))
    );
    let signature = sign(secret, body.as_bytes());
    for line in &logs {
        for never in [
            key,
            secret,
            token,
            "forged-SECRET-4",
            &signature,
            "arn:aws",
            "123456789012",
        ] {
            assert!(!line.contains(never), "{never} in a log line: {line}");
        }
    }
}

/// A sender-given text is logged cut to 256 bytes and its length: a rejected message whose
/// messageId is 300 KB (valid JSON, within a body) leaves a short WARN line that still names
/// it, not a 300 KB line (CloudWatch cuts a log event at 256 KB); so does a long
/// `X-Request-Id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_message_id_is_logged_cut_with_its_length() {
    let Some((moto, amp)) = env().await else {
        return;
    };
    let f = events_with_token(&moto, &amp, "ingest/huge-id").await;
    let id = "m".repeat(300_000);
    let body = json!({"type": "track", "userId": "user-1", "messageId": id}).to_string();
    let request_id = "r".repeat(5_000);
    let (status, _) = f
        .http(v2(
            &body,
            json!({"Authorization": "Bearer token-1", "X-Request-Id": request_id}),
        ))
        .await;
    assert_eq!(status, 400);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let handled = f.logs_saying("request handled");
    assert_eq!(
        handled[0]["fields"]["sender_request_id"],
        json!(format!("{}… (5000 bytes)", "r".repeat(256)))
    );
    let rejected = f.logs_saying("message rejected");
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        rejected[0]["fields"]["message_id"],
        json!(format!("{}… (300000 bytes)", "m".repeat(256)))
    );
    let longest = f.logs.lock().unwrap().iter().map(String::len).max();
    assert!(longest < Some(2048), "a log line of {longest:?} bytes");
}

/// Issue "bounded" §1, a shape found later: a body of millions of one-byte items (`[1,1,…]`, 6 MB)
/// held each message's id and outcome until the answer, 780 MB, and logged a WARN line for
/// every one (3,000,000 lines). Now the first `MAX_MESSAGES` (250,000) are read and the rest
/// rejected unread, counted in one group; at most 4,000 messages of a request are logged one
/// by one, then one line counts the rest. The message before the junk is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_more_messages_than_are_read_is_answered_in_bounded_lines() {
    let Some((moto, amp)) = env().await else {
        return;
    };
    let f = events_with_token(&moto, &amp, "ingest/many").await;
    let (limit, unread) = (pipeline::ingest::body::MAX_MESSAGES, 1_000);
    let first = json!({"type": "track", "event": "e", "userId": "user-1", "messageId": "kept"});
    let body = format!("[{first},{}]", vec!["1"; limit - 1 + unread].join(","));
    let (status, answer) = f
        .http(v2(&body, json!({"Authorization": "Bearer token-1"})))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["counts"],
        json!({"received": limit + unread, "delivered": 1, "skipped": 0,
            "rejected": limit - 1 + unread, "unsupported": 0, "retryable": 0, "queued": 0})
    );
    let groups = answer["omitted"]["by_reason"].as_array().unwrap();
    assert_eq!(
        groups
            .iter()
            .find(|g| g["reason"] == pipeline::ingest::body::UNREAD),
        Some(
            &json!({"outcome": "rejected", "reason": pipeline::ingest::body::UNREAD, "count": unread})
        )
    );
    assert!(answer.to_string().len() <= 64 * 1024);
    assert_eq!(amp.state.ingested().insert_ids["kept"].stored, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.logs_saying("message rejected").len(), 4_000);
    let rest = f.logs_saying(
        "more messages rejected or dead-lettered than are logged one by one (their outcomes are in the answer's counts and the metrics)",
    );
    assert_eq!(rest.len(), 1);
    assert_eq!(
        (
            &rest[0]["fields"]["rejected"],
            &rest[0]["fields"]["dead_lettered"]
        ),
        (&json!(limit - 1 - 4_000), &json!(0))
    );
    let unread_line = f.logs_saying("messages rejected unread");
    assert_eq!(unread_line.len(), 1);
    assert_eq!(unread_line[0]["fields"]["count"], json!(unread));
}

/// Issue "first deploy" §4: `segment-amplitude secret set` puts the Amplitude key into a
/// created secret and keeps its generated bearer token (`put-secret-value` would replace it),
/// reading the value from standard input and printing key names only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_set_keeps_the_generated_token() {
    let Some((moto, _amp)) = env().await else {
        return;
    };
    moto.put_secret(
        "created/ingest",
        &json!({"api_key": "SET-YOUR-AMPLITUDE-API-KEY", "bearer_token": "generated-SECRET"})
            .to_string(),
    )
    .await;
    let run = |key: &str, value: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(tests::binary("segment-amplitude"))
            .args([
                "secret",
                "set",
                "--secret-id",
                "created/ingest",
                "--key",
                key,
            ])
            .env_clear()
            .envs(moto.env())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(value.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, printed) = run("api_key", "amp-key-SECRET\n");
    assert!(ok, "{printed}");
    assert_eq!(
        printed.trim(),
        "set `api_key` in `created/ingest`; kept bearer_token"
    );
    let stored = moto
        .client()
        .await
        .get_secret_value()
        .secret_id("created/ingest")
        .send()
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(stored.secret_string().unwrap()).unwrap(),
        json!({"api_key": "amp-key-SECRET", "bearer_token": "generated-SECRET"})
    );
    let (ok, printed) = run("apikey", "x");
    assert!(!ok);
    assert!(
        printed.contains("`apikey` is not a key of this project's secrets"),
        "{printed}"
    );
}
