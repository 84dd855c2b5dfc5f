//! End to end: the real `events` and `alias` binaries under the Lambda Runtime API emulator,
//! with moto as Secrets Manager and the Amplitude emulator as Amplitude — all on loopback.

use std::time::Duration;

use amplitude_emulator::{Emulator, EmulatorConfig, Fault, FaultAction};
use base64::Engine;
use lambda_glue::auth::sign;
use serde_json::{Value, json};
use tests::moto::Moto;
use tests::runtime_api::{Invocation, RuntimeApi};

const SECRET: &str = "whsec-e2e";
const TOKEN: &str = "token-e2e";

struct Running {
    runtime: RuntimeApi,
    child: tokio::process::Child,
}

async fn start(
    name: &str,
    moto: &Moto,
    amplitude: &Emulator,
    ingest_id: &str,
    settings: Value,
) -> Running {
    let runtime = RuntimeApi::start().await;
    let mut cmd = tokio::process::Command::new(tests::binary(name));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", runtime.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("INGEST_SECRET_ID", ingest_id)
        .env("SEGMENT_SETTINGS", settings.to_string())
        .env("AMPLITUDE_BASE_URL", amplitude.url())
        .kill_on_drop(true);
    for (k, v) in moto.env() {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("function binary starts");
    Running { runtime, child }
}

impl Running {
    async fn call(&self, payload: Value) -> Invocation {
        self.runtime.invoke(payload, Duration::from_secs(5)).await
    }

    /// Calls through an API Gateway event and returns (statusCode, parsed body).
    async fn http(&self, payload: Value) -> (u16, Value) {
        match self.call(payload).await {
            Invocation::Response(r) => (
                r["statusCode"].as_u64().unwrap() as u16,
                serde_json::from_str(r["body"].as_str().unwrap()).unwrap(),
            ),
            Invocation::Error(e) => panic!("function error: {e}"),
        }
    }
}

fn v2(body: &str, headers: Value) -> Value {
    json!({
        "version": "2.0", "routeKey": "POST /events", "rawPath": "/events", "rawQueryString": "", "headers": headers,
        "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "x", "domainPrefix": "x",
            "http": {"method": "POST", "path": "/events", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "Segment.io/1.0"},
            "requestId": "r", "routeKey": "POST /events", "stage": "$default", "time": "28/Nov/2026:10:00:00 +0000", "timeEpoch": 0},
        "body": body, "isBase64Encoded": false
    })
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
    // Batch array signed by its first element, and the {"batch"} shape.
    let first = track(4).to_string();
    let array = format!(
        "[{first},{},{}]",
        track(5),
        json!({"type": "page", "userId": "user-6", "messageId": "e2e-6"})
    );
    let (status, body) = f
        .http(v2(
            &array,
            json!({"X-Signature": sign(SECRET, first.as_bytes())}),
        ))
        .await;
    assert_eq!((status, &body["counts"]["delivered"]), (200, &json!(3)));
    let batch =
        json!({"batch": [track(7), track(8)], "context": {"ip": "203.0.113.9"}}).to_string();
    assert_eq!(f.http(v2(&batch, sig(&batch))).await.0, 200);
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
        9,
        "events 1–9 (page 6 included), each once"
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
async fn missing_secret_is_answered_with_its_name() {
    let Some((moto, amp)) = env().await else {
        return;
    };
    let f = start("events", &moto, &amp, "no/such/secret", json!({})).await;
    let one = track(1).to_string();
    let (status, body) = f.http(v2(&one, sig(&one))).await;
    assert_eq!(status, 500);
    assert_eq!(
        body["error"],
        "configuration: secret `no/such/secret` could not be read: ResourceNotFoundException: Secrets Manager can't find the specified secret."
    );
}
