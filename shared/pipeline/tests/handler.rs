//! The request pipeline against the real Amplitude emulator, with secrets from a fixed source:
//! every inbound shape, authentication, body shapes, and every answer to Segment.

use std::time::Duration;

use amplitude_emulator::{Emulator, EmulatorConfig, Fault, FaultAction};
use base64::Engine;
use pipeline::ingest::auth::sign;
use pipeline::ingest::inbound::{Inbound, http_api_event};
use pipeline::ingest::reply::Reply;
use pipeline::ops::metrics::{Registry, Sink};
use pipeline::ops::secrets::SecretSource;
use pipeline::{Builder, Function, Kind, Route};
use serde_json::{Value, json};

const SECRET: &str = "whsec-test";
const TOKEN: &str = "bearer-test";

struct Setup {
    emu: Emulator,
    function: Function,
    /// The in-memory secrets, to rotate them.
    secrets: SecretSource,
}

async fn setup(route: Route, settings: Value, ingest: Value) -> Setup {
    setup_with(route, settings, ingest, |b| b).await
}

/// [`setup`], with more done to the function's builder.
async fn setup_with(
    route: Route,
    settings: Value,
    ingest: Value,
    more: impl FnOnce(Builder) -> Builder,
) -> Setup {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let source = SecretSource::fixed([
        ("ingest".to_string(), ingest.to_string()),
        (
            "privacy".to_string(),
            json!({"secret_key": "sk"}).to_string(),
        ),
    ]);
    let function = Function::builder(Kind::Ingest(route))
        .var("INGEST_SECRET_ID", "ingest")
        .var("PRIVACY_SECRET_ID", "privacy")
        .var("SEGMENT_SETTINGS", settings.to_string())
        .var("AMPLITUDE_BASE_URL", emu.url())
        .secrets(source.clone())
        // Every mismatch reads the secret again, so each bad credential is refused for good
        // (tests of the re-read window set their own).
        .var("SECRET_REREAD_SECONDS", "0")
        .configure(|c| c.client.backoff.base = Duration::from_millis(5));
    let function = more(function).build().unwrap();
    Setup {
        emu,
        function,
        secrets: source,
    }
}

fn keys() -> Value {
    json!({"api_key": "amp-key", "webhook_secret": SECRET})
}

/// An HTTP API event for `body` with these headers (a JSON object), base64-encoded if asked.
fn apigw_v2(body: &str, headers: Value, base64: bool) -> Value {
    let pairs: Vec<(String, String)> = headers
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    let mut event = http_api_event(
        "POST",
        "/events",
        "",
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        body.as_bytes(),
        "r",
    );
    if base64 {
        event["body"] = Value::from(base64::engine::general_purpose::STANDARD.encode(body));
        event["isBase64Encoded"] = Value::Bool(true);
    }
    event
}

fn signed(body: &str) -> Value {
    json!({"content-type": "application/json", "X-Signature": sign(SECRET, body.as_bytes())})
}

/// The function's reply to a Lambda payload, given `budget` to answer.
async fn reply_within(f: &Function, payload: Value, budget: Duration) -> Reply {
    let inbound = Inbound::from_payload(payload).unwrap();
    f.handle(
        inbound,
        tokio::time::Instant::now() + budget,
        "test-request",
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

/// The ingest secret with the bearer token as well (batches need it).
fn keys_with_token() -> Value {
    json!({"api_key": "amp-key", "webhook_secret": SECRET, "bearer_token": TOKEN})
}

/// Signed by the first event, with the bearer token.
fn batch_headers(first: &str) -> Value {
    json!({"X-Signature": sign(SECRET, first.as_bytes()), "Authorization": format!("Bearer {TOKEN}")})
}

fn track(i: usize) -> Value {
    json!({"type": "track", "event": "Played", "userId": format!("user-{i}"), "messageId": format!("m{i}")})
}

#[tokio::test]
async fn signed_single_event_is_delivered_with_200_and_counts() {
    let s = setup(Route::Events, json!({}), keys()).await;
    let body = track(1).to_string();
    let (status, reply) = call(&s.function, apigw_v2(&body, signed(&body), false)).await;
    assert_eq!(status, 200);
    assert_eq!(
        reply,
        json!({"status": 200, "counts": {"received": 1, "delivered": 1, "skipped": 0, "rejected": 0, "unsupported": 0, "retryable": 0, "queued": 0},
            "results": []})
    );
    assert_eq!(s.emu.state.ingested().events[0]["_api_key"], "amp-key");
}

#[tokio::test]
async fn base64_bodies_rest_api_v1_and_direct_invocation() {
    let s = setup(Route::Events, json!({}), keys()).await;
    let body = track(1).to_string();
    assert_eq!(
        call(&s.function, apigw_v2(&body, signed(&body), true))
            .await
            .0,
        200
    );
    let v1 = json!({"resource": "/events", "path": "/events", "httpMethod": "POST",
        "headers": {"X-Signature": sign(SECRET, body.as_bytes())}, "multiValueHeaders": {},
        "queryStringParameters": null, "requestContext": {"accountId": "1", "resourceId": "r", "stage": "prod",
            "requestId": "q", "identity": {"sourceIp": "127.0.0.1"}, "resourcePath": "/events", "httpMethod": "POST", "apiId": "a"},
        "body": body, "isBase64Encoded": false});
    assert_eq!(call(&s.function, v1).await.0, 200);
    // Direct invocation (Segment's AWS Lambda destination) is authenticated by IAM.
    assert_eq!(call(&s.function, track(2)).await.0, 200);
    assert_eq!(
        s.emu.state.ingested().events.len(),
        2,
        "m1 twice is deduplicated by insert_id"
    );
}

#[tokio::test]
async fn authentication_fails_closed() {
    let s = setup(Route::Events, json!({}), keys()).await;
    let body = track(1).to_string();
    let unsigned = json!({"content-type": "application/json"});
    assert_eq!(
        call(&s.function, apigw_v2(&body, unsigned, false)).await,
        (
            401,
            json!({"status": 401, "error": "authentication: the X-Signature header is missing"})
        )
    );
    let forged = json!({"x-signature": sign("not-the-secret", body.as_bytes())});
    assert_eq!(
        call(&s.function, apigw_v2(&body, forged, false)).await.0,
        401
    );
    let tampered = json!({"X-SIGNATURE": sign(SECRET, b"{}")});
    assert_eq!(
        call(&s.function, apigw_v2(&body, tampered, false)).await.0,
        401
    );
    assert!(s.emu.state.ingested().events.is_empty());

    // No inbound credential configured at all is a server-side mistake: 500 (Segment
    // retries while it is fixed), with nothing about the configuration in the answer.
    let none = setup(Route::Events, json!({}), json!({"api_key": "k"})).await;
    assert_eq!(
        call(&none.function, apigw_v2(&body, json!({}), false)).await,
        (
            500,
            json!({"status": 500, "error": "configuration error (request test-request); see the function's logs"})
        )
    );
}

#[tokio::test]
async fn bearer_token_alone_and_with_the_signature() {
    let s = setup(
        Route::Events,
        json!({}),
        json!({"api_key": "k", "bearer_token": TOKEN}),
    )
    .await;
    let body = track(1).to_string();
    assert_eq!(
        call(
            &s.function,
            apigw_v2(
                &body,
                json!({"authorization": format!("Bearer {TOKEN}")}),
                false
            )
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            &s.function,
            apigw_v2(&body, json!({"Authorization": "Bearer wrong"}), false)
        )
        .await
        .0,
        401
    );
    let both = setup(
        Route::Events,
        json!({}),
        json!({"api_key": "k", "bearer_token": TOKEN, "webhook_secret": SECRET}),
    )
    .await;
    let mut h = signed(&body);
    assert_eq!(
        call(&both.function, apigw_v2(&body, h.clone(), false))
            .await
            .0,
        401,
        "both configured: both required"
    );
    h["Authorization"] = json!(format!("Bearer {TOKEN}"));
    assert_eq!(call(&both.function, apigw_v2(&body, h, false)).await.0, 200);
}

/// The events function whose ingest secret holds the token `old-token`, read again after a
/// mismatch at most every 30 s.
async fn old_token_reread_every_30s() -> Setup {
    setup_with(
        Route::Events,
        json!({}),
        json!({"api_key": "k", "bearer_token": "old-token"}),
        |b| b.var("SECRET_REREAD_SECONDS", "30"),
    )
    .await
}

/// An HTTP API event carrying `body` with `Authorization: Bearer <token>`.
fn bearer(body: &str, token: &str) -> Value {
    apigw_v2(
        body,
        json!({"authorization": format!("Bearer {token}")}),
        false,
    )
}

#[tokio::test]
async fn a_rotated_token_is_accepted_at_once_and_forgeries_do_not_reread_the_secret() {
    let s = old_token_reread_every_30s().await;
    let body = track(1).to_string();
    let with = |token: &str| bearer(&body, token);
    assert_eq!(call(&s.function, with("old-token")).await.0, 200);
    // The operator rotates the secret; the cached copy still has the old token.
    s.secrets.put(
        "ingest",
        &json!({"api_key": "k", "bearer_token": ["new-token", "old-token"]}).to_string(),
    );
    assert_eq!(
        call(&s.function, with("new-token")).await.0,
        200,
        "a mismatch reads the secret again before refusing"
    );
    assert_eq!(
        call(&s.function, with("old-token")).await.0,
        200,
        "the previous token still works"
    );
    s.secrets.put(
        "ingest",
        &json!({"api_key": "k", "bearer_token": "newest"}).to_string(),
    );
    assert_eq!(
        call(&s.function, with("newest")).await.0,
        503,
        "at most one re-read per 30 s per instance: a rotation cannot be told yet, so Segment retries"
    );
}

/// Issue "bounded" §4: a forged token makes the secret be read again and is refused (401);
/// forged tokens after it read nothing (503, never 401); a genuine token rotated in just after
/// the forgery is never refused 401 — 503 while it cannot be told, and accepted once the secret
/// may be read again.
#[tokio::test]
async fn forged_traffic_never_gets_a_rotated_token_refused_nor_multiplies_secret_reads() {
    let s = setup_with(
        Route::Events,
        json!({}),
        json!({"api_key": "k", "bearer_token": "old-token"}),
        // Long enough that the 52 calls below fit in it on a loaded machine.
        |b| b.configure(|c| c.secret_reread = Duration::from_millis(1500)),
    )
    .await;
    let body = track(1).to_string();
    let with = |token: &str| bearer(&body, token);
    assert_eq!(call(&s.function, with("old-token")).await.0, 200);
    let reads = s.secrets.reads();
    assert_eq!(call(&s.function, with("forged")).await.0, 401);
    assert_eq!(
        s.secrets.reads(),
        reads + 1,
        "the forgery read the secret once"
    );
    for _ in 0..50 {
        assert_eq!(call(&s.function, with("forged")).await.0, 503);
    }
    assert_eq!(
        s.secrets.reads(),
        reads + 1,
        "and forgeries after it read nothing"
    );
    // The operator rotates the token right after the forgery.
    s.secrets.put(
        "ingest",
        &json!({"api_key": "k", "bearer_token": "rotated"}).to_string(),
    );
    assert_eq!(
        call(&s.function, with("rotated")).await.0,
        503,
        "not refused: retried"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        call(&s.function, with("rotated")).await.0,
        200,
        "Segment's retry"
    );
    assert_eq!(s.secrets.reads(), reads + 2);
}

/// Sends `request()` three times: each is refused 401 with `error`, never 503, however soon
/// after the one before.
async fn refused_401_three_times(s: &Setup, request: impl Fn() -> Value, error: &str) {
    for _ in 0..3 {
        let (status, reply) = call(&s.function, request()).await;
        assert_eq!((status, reply["error"].clone()), (401, json!(error)));
    }
}

/// Issue "bounded" §4: a request with neither a bearer token nor an X-Signature header can
/// pass no secret, rotated or not, so it is refused 401 at once, every time: it reads the
/// secret no more than a valid request does, and it does not use up the re-read a forged
/// token would, so a rotated token right after it is accepted. Without a bearer token: no
/// Authorization header, another scheme (`Basic`), or an empty token.
#[tokio::test]
async fn a_request_without_credentials_is_refused_at_once_and_never_answered_503() {
    let s = old_token_reread_every_30s().await;
    let body = track(1).to_string();
    let reads = s.secrets.reads();
    for authorization in [
        None,
        Some("Basic b2xkLXRva2VuOg=="),
        Some("Bearer"),
        Some("Bearer   "),
    ] {
        let mut headers = json!({"content-type": "application/json"});
        if let Some(a) = authorization {
            headers["authorization"] = json!(a);
        }
        refused_401_three_times(
            &s,
            || apigw_v2(&body, headers.clone(), false),
            "authentication: the Authorization: Bearer header is missing",
        )
        .await;
    }
    assert_eq!(
        s.secrets.reads(),
        reads + 1,
        "the first read, then the cache"
    );
    s.secrets.put(
        "ingest",
        &json!({"api_key": "k", "bearer_token": "rotated"}).to_string(),
    );
    assert_eq!(
        call(&s.function, bearer(&body, "rotated")).await.0,
        200,
        "the re-read was not spent on the requests without credentials"
    );
}

/// `GET /deletions` without a bearer token (no Authorization header, another scheme, an empty
/// token) is refused 401 at once, however often: no operator token, rotated or not, could let
/// it pass. It neither reads the privacy secret again nor spends the re-read a rotated token
/// after it needs.
#[tokio::test]
async fn a_job_listing_without_a_token_is_refused_at_once_and_never_answered_503() {
    let s = setup_with(Route::Deletions, json!({}), json!({"api_key": "k"}), |b| {
        b.var("SECRET_REREAD_SECONDS", "30")
    })
    .await;
    let privacy = |token: &str| json!({"secret_key": "sk", "operator_token": token}).to_string();
    s.secrets.put("privacy", &privacy("op-old"));
    let listing = |headers: &[(&str, &str)]| {
        pipeline::ingest::inbound::http_api_event(
            "GET",
            "/deletions",
            "start_day=2024-01-01&end_day=2024-01-02",
            headers.iter().copied(),
            b"",
            "r",
        )
    };
    let reads = s.secrets.reads();
    for headers in [
        &[][..],
        &[("authorization", "Basic b3Atb2xkOg==")],
        &[("authorization", "Bearer ")],
    ] {
        refused_401_three_times(
            &s,
            || listing(headers),
            "authentication: listing deletion jobs needs the operator token (operator_token in the privacy secret) as Authorization: Bearer",
        )
        .await;
    }
    assert_eq!(
        s.secrets.reads(),
        reads + 2,
        "the ingest and privacy secrets read once each, then the cache"
    );
    s.secrets.put("privacy", &privacy("op-new"));
    let (status, reply) = call(&s.function, listing(&[("authorization", "Bearer op-new")])).await;
    assert_eq!(
        (status, reply["jobs"].clone()),
        (200, json!([])),
        "the re-read was not spent on the requests without a token"
    );
}

#[tokio::test]
async fn batch_array_is_signed_by_its_first_element_and_batch_object_merges_context() {
    let s = setup(Route::Events, json!({}), keys_with_token()).await;
    let first = track(1).to_string();
    let body = format!("[{first},{},{}]", track(2), track(3));
    let (status, reply) = call(&s.function, apigw_v2(&body, batch_headers(&first), false)).await;
    assert_eq!(
        (status, reply["counts"]["delivered"].clone()),
        (200, json!(3))
    );

    let batch =
        json!({"batch": [{"type": "identify", "userId": "user-9"}], "context": {"ip": "9.9.9.9"}})
            .to_string();
    let (status, _) = call(&s.function, apigw_v2(&batch, signed(&batch), false)).await;
    assert_eq!(
        status, 401,
        "the bearer token is configured, so it is required"
    );
    let mut headers = signed(&batch);
    headers["Authorization"] = json!(format!("Bearer {TOKEN}"));
    let (status, _) = call(&s.function, apigw_v2(&batch, headers, false)).await;
    assert_eq!(status, 200);
    assert_eq!(s.emu.state.ingested().identifies[0]["ip"], "9.9.9.9");
}

#[tokio::test]
async fn appended_events_behind_one_signature_are_refused() {
    // Segment signs a batch by its first event only: [<a signed event>, <anything>] with the
    // same X-Signature must not get in (an identify for another user, here).
    let s = setup(Route::Events, json!({}), keys()).await;
    let first = track(1).to_string();
    let forged = format!(
        "[{first},{}]",
        json!({"type": "identify", "userId": "victim-1", "traits": {"plan": "free"}})
    );
    let headers = json!({"X-Signature": sign(SECRET, first.as_bytes())});
    let (status, reply) = call(&s.function, apigw_v2(&forged, headers.clone(), false)).await;
    assert_eq!(status, 401);
    assert_eq!(
        reply["error"],
        "authentication: a batch of several events is signed by its first event only, so the signature cannot vouch for the others: batches need the bearer token (set bearer_token in the ingest secret and send it in an Authorization header), or ALLOW_SIGNED_BATCHES=true"
    );
    let got = s.emu.state.ingested();
    assert!(got.events.is_empty() && got.identifies.is_empty());

    // The operator may opt in, knowing the risk.
    let mut opted = setup(Route::Events, json!({}), keys()).await;
    opted.function.config.allow_signed_batches = true;
    assert_eq!(
        call(&opted.function, apigw_v2(&forged, headers, false))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let s = setup(Route::Events, json!({}), keys()).await;
    let bad = "{not json";
    let (status, reply) = call(&s.function, apigw_v2(bad, signed(bad), false)).await;
    assert_eq!(status, 400);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .starts_with("body: not valid JSON")
    );
    let only_invalid = json!({"type": "track", "userId": "user-1"}).to_string();
    assert_eq!(
        call(
            &s.function,
            apigw_v2(&only_invalid, signed(&only_invalid), false)
        )
        .await
        .1["error"],
        "track: `event` is required"
    );
    // A compressed body is named as such, not as text that is not JSON. A JSON body with the
    // header (a gateway that decompressed it) is read as it is.
    let mut gzipped = apigw_v2(bad, signed(bad), false);
    gzipped["headers"]["content-encoding"] = json!("gzip");
    assert_eq!(
        call(&s.function, gzipped).await,
        (
            400,
            json!({"status": 400,
                "error": "body: not JSON, and compressed (a `Content-Encoding` header); send it uncompressed"})
        )
    );
    let body = track(1).to_string();
    let mut decompressed = apigw_v2(&body, signed(&body), false);
    decompressed["headers"]["content-encoding"] = json!("gzip");
    assert_eq!(call(&s.function, decompressed).await.0, 200);
    let huge = format!(
        "{{\"type\":\"track\",\"event\":\"e\",\"userId\":\"user-1\",\"p\":\"{}\"}}",
        "x".repeat(7 << 20)
    );
    assert_eq!(
        call(&s.function, apigw_v2(&huge, signed(&huge), false))
            .await
            .0,
        413
    );
}

#[tokio::test]
async fn unsupported_types_get_501_and_mixed_batches_200() {
    let s = setup(Route::Events, json!({}), keys()).await;
    let delete = json!({"type": "delete", "userId": "user-1"}).to_string();
    let (status, reply) = call(&s.function, apigw_v2(&delete, signed(&delete), false)).await;
    assert_eq!(status, 501);
    assert_eq!(
        reply["error"],
        "`type`: Delete calls are not handled by the /events route"
    );
    let mixed = format!("[{},{delete}]", track(1));
    let first = track(1).to_string();
    let with_token = setup(Route::Events, json!({}), keys_with_token()).await;
    let (status, reply) = call(
        &with_token.function,
        apigw_v2(&mixed, batch_headers(&first), false),
    )
    .await;
    assert_eq!(
        (status, reply["counts"]["unsupported"].clone()),
        (200, json!(1))
    );

    let alias = setup(Route::Alias, json!({}), keys()).await;
    let a = json!({"type": "alias", "previousId": "anon-1", "userId": "user-1"}).to_string();
    let (status, reply) = call(&alias.function, apigw_v2(&a, signed(&a), false)).await;
    assert_eq!(
        (status, reply["error"].clone()),
        (
            501,
            json!("alias: the `sendAlias` (Enable Alias) setting is off")
        )
    );
    let alias_on = setup(Route::Alias, json!({"sendAlias": true}), keys()).await;
    assert_eq!(
        call(&alias_on.function, apigw_v2(&a, signed(&a), false))
            .await
            .0,
        200
    );
    assert_eq!(
        alias_on.emu.state.ingested().mappings,
        vec![json!({"user_id": "anon-1", "global_user_id": "user-1"})]
    );
}

#[tokio::test]
async fn amplitude_503_then_recovery_delivers_each_event_once() {
    let s = setup(Route::Events, json!({}), keys_with_token()).await;
    s.emu
        .state
        .push_faults((0..200).map(|_| Fault::status("/2/httpapi", 503)));
    let body = format!("[{},{}]", track(1), track(2));
    let headers = batch_headers(&track(1).to_string());
    let reply = reply_within(
        &s.function,
        apigw_v2(&body, headers.clone(), false),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(reply.status.as_u16(), 503, "Segment must retry");
    assert!(s.emu.state.ingested().events.is_empty());
    s.emu.state.reset();
    let (status, _) = call(&s.function, apigw_v2(&body, headers, false)).await;
    assert_eq!(status, 200);
    let ids = s.emu.state.ingested().insert_ids;
    assert_eq!((ids["m1"].stored, ids["m2"].stored), (1, 1));
}

#[tokio::test]
async fn amplitude_429_answers_429() {
    let s = setup(Route::Events, json!({}), keys()).await;
    s.emu.state.push_faults([Fault {
        route: None,
        delay_ms: 0,
        action: FaultAction::Throttle {
            users: vec!["user-1".into()],
            devices: vec![],
        },
    }]);
    let body = track(1).to_string();
    let (status, reply) = call(&s.function, apigw_v2(&body, signed(&body), false)).await;
    assert_eq!(status, 429);
    assert_eq!(reply["results"][0]["cause"], "throttled");
}

#[tokio::test]
async fn invalid_api_key_is_retryable_refetches_the_secret_and_never_echoes_it() {
    let s = setup(Route::Events, json!({}), keys()).await;
    let mut config = s.emu.state.config();
    config.api_keys = ["another-key".to_string()].into();
    s.emu.state.set_config(config);
    let body = track(1).to_string();
    let (status, reply) = call(&s.function, apigw_v2(&body, signed(&body), false)).await;
    assert_eq!(status, 503);
    assert_eq!(
        reply["error"],
        "configuration: Amplitude 400: Invalid API key"
    );
    assert!(!reply.to_string().contains("amp-key"));
}

#[tokio::test]
async fn missing_secret_is_a_generic_500_with_the_detail_only_in_the_log() {
    let s = setup(Route::Events, json!({}), keys()).await;
    let f = Function::builder(Kind::Ingest(Route::Events))
        .var(
            "INGEST_SECRET_ID",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope",
        )
        .var("AMPLITUDE_BASE_URL", s.emu.url())
        .build()
        .unwrap();
    let body = track(1).to_string();
    let (status, reply) = call(&f, apigw_v2(&body, json!({}), false)).await;
    assert_eq!(
        (status, reply),
        (
            500,
            json!({"status": 500, "error": "configuration error (request test-request); see the function's logs"})
        )
    );
}

#[tokio::test]
async fn direct_invocation_retryable_is_a_function_error() {
    let s = setup(Route::Events, json!({}), keys()).await;
    s.emu
        .state
        .push_faults((0..200).map(|_| Fault::status("/2/httpapi", 503)));
    let source = Inbound::from_payload(track(1)).unwrap().source;
    let reply = reply_within(&s.function, track(1), Duration::from_millis(300)).await;
    let err = reply.into_response(source).unwrap_err();
    assert_eq!(err.error_type, "Retryable");
}

#[tokio::test]
async fn a_stalled_secrets_manager_is_given_up_at_the_deadline() {
    // A Secrets Manager that accepts the connection and never answers.
    let stall = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", stall.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = stall.accept().await {
            held.push(socket);
        }
    });
    let aws = pipeline::AwsEnv::from_vars(|k| match k {
        "AWS_REGION" => Some("us-east-1".into()),
        "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("testing".into()),
        "AWS_ENDPOINT_URL" => Some(endpoint.clone()),
        _ => None,
    })
    .unwrap();
    let s = setup(Route::Events, json!({}), keys()).await;
    let f = Function::builder(Kind::Ingest(Route::Events))
        .var("INGEST_SECRET_ID", "ingest")
        .secrets(SecretSource::SecretsManager(aws.secrets_manager()))
        .build()
        .unwrap();
    let body = track(1).to_string();
    let started = std::time::Instant::now();
    let reply = reply_within(
        &f,
        apigw_v2(&body, signed(&body), false),
        Duration::from_millis(400),
    )
    .await;
    assert_eq!(reply.status.as_u16(), 500);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at the deadline, not at the SDK's own timeout"
    );
    drop(s);
}

/// Issue "metrics": one mixed batch, counted by outcome. Delivered, skipped by the settings
/// (a page with `trackAllPages` off), refused by the mapping (no user or device id),
/// unsupported by the route (a delete), refused by Amplitude (an id on its invalid-id list;
/// a short id no longer reaches it, spec §17.5) and throttled (Amplitude's 429 for that user).
#[tokio::test]
async fn a_mixed_batch_is_counted_by_outcome() {
    let registry = std::sync::Arc::new(Registry::default());
    let sink = Sink::Registry(registry.clone());
    let s = setup_with(Route::Events, json!({}), keys_with_token(), |b| {
        b.metrics(sink)
    })
    .await;
    // The first request is refused for m6's reserved event type; the throttle answers the
    // second.
    s.emu.state.push_faults([
        Fault {
            route: None,
            delay_ms: 0,
            action: FaultAction::Pass,
        },
        Fault {
            route: None,
            delay_ms: 0,
            action: FaultAction::Throttle {
                users: vec!["user-5".into()],
                devices: vec![],
            },
        },
    ]);
    let events = [
        track(1),
        json!({"type": "page", "userId": "user-2", "messageId": "m2"}),
        json!({"type": "track", "event": "e", "messageId": "m3"}),
        json!({"type": "delete", "userId": "user-4", "messageId": "m4"}),
        track(5),
        json!({"type": "track", "event": "[Amplitude] Merged User", "userId": "user-6", "messageId": "m6"}),
    ];
    let body = serde_json::to_string(&events).unwrap();
    let (status, reply) = call(
        &s.function,
        apigw_v2(&body, batch_headers(&events[0].to_string()), false),
    )
    .await;
    assert_eq!(status, 429, "{reply}");
    let outcomes: Vec<(&str, &str)> = reply["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap(),
                r["by"].as_str().or(r["cause"].as_str()).unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("skipped", ""),
            ("rejected", "mapping"),
            ("unsupported", ""),
            ("retryable", "throttled"),
            ("rejected", "amplitude"),
        ]
    );
    let text = registry.prometheus();
    let messages: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("segment_amplitude_messages_total"))
        .collect();
    assert_eq!(
        messages,
        [
            r#"segment_amplitude_messages_total{route="events",outcome="dead_lettered"} 0"#,
            r#"segment_amplitude_messages_total{route="events",outcome="delivered"} 1"#,
            r#"segment_amplitude_messages_total{route="events",outcome="queued"} 0"#,
            r#"segment_amplitude_messages_total{route="events",outcome="received"} 6"#,
            r#"segment_amplitude_messages_total{route="events",outcome="refused_amplitude"} 0"#,
            r#"segment_amplitude_messages_total{route="events",outcome="rejected_amplitude"} 1"#,
            r#"segment_amplitude_messages_total{route="events",outcome="rejected_mapping"} 1"#,
            r#"segment_amplitude_messages_total{route="events",outcome="retryable"} 1"#,
            r#"segment_amplitude_messages_total{route="events",outcome="skipped"} 1"#,
            r#"segment_amplitude_messages_total{route="events",outcome="throttled"} 1"#,
            r#"segment_amplitude_messages_total{route="events",outcome="unsupported"} 1"#,
        ]
    );
    assert!(
        text.contains(r#"segment_amplitude_amplitude_requests_total{route="events",endpoint="httpapi",status="429"} 1"#),
        "{text}"
    );
}

/// Issue "bounded" §6: an ingest route takes POST only, whatever the gateway in front; the
/// answer names the methods it takes, in an `Allow` header too, and nothing is delivered.
#[tokio::test]
async fn other_methods_are_answered_405_with_allow() {
    let s = setup(Route::Events, json!({}), keys_with_token()).await;
    let body = track(1).to_string();
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let mut event = apigw_v2(
            &body,
            json!({"Authorization": format!("Bearer {TOKEN}")}),
            false,
        );
        event["requestContext"]["http"]["method"] = json!(method);
        let reply = reply_within(&s.function, event, Duration::from_secs(4)).await;
        assert_eq!(
            (reply.status.as_u16(), reply.allow.as_deref()),
            (405, Some("POST")),
            "{method}"
        );
        assert_eq!(
            serde_json::to_value(&reply.body).unwrap(),
            json!({"status": 405, "error": "method: /events takes POST"})
        );
        let response = reply.into_response(pipeline::ingest::inbound::Source::HttpApi);
        let Ok(pipeline::ingest::reply::LambdaResponse::HttpApi(r)) = response else {
            panic!("an HTTP API response");
        };
        assert_eq!(r.headers["allow"], "POST");
    }
    assert!(s.emu.state.ingested().events.is_empty());
    let deletions = setup(Route::Deletions, json!({}), keys_with_token()).await;
    let mut event = apigw_v2("{}", json!({}), false);
    event["requestContext"]["http"]["method"] = json!("PUT");
    let reply = reply_within(&deletions.function, event, Duration::from_secs(4)).await;
    assert_eq!(
        (reply.status.as_u16(), reply.allow.as_deref()),
        (405, Some("POST, GET"))
    );
}

/// Issue "bounded" §6: a header value API Gateway passes but HTTP forbids (a control
/// character) is refused with a generic 400 that does not echo the caller's bytes.
#[tokio::test]
async fn a_malformed_header_gets_a_generic_400_without_its_value() {
    let s = setup(Route::Events, json!({}), keys_with_token()).await;
    let body = track(1).to_string();
    let mut event = apigw_v2(&body, json!({}), false);
    event["headers"]["x-caller"] = json!("\u{1}caller-secret-bytes");
    let mut context = lambda_runtime::Context::default();
    context.deadline = pipeline::ops::now_ms() + Duration::from_secs(5).as_millis() as u64;
    let response = s
        .function
        .invoke(lambda_runtime::LambdaEvent::new(event, context))
        .await
        .unwrap();
    let (status, text) = response.status_and_body();
    assert_eq!(
        (
            status.as_u16(),
            serde_json::from_str::<Value>(&text).unwrap()
        ),
        (
            400,
            json!({"status": 400, "error": "the API Gateway event is malformed (a header, the query string or the request context)"})
        )
    );
    assert!(s.emu.state.ingested().events.is_empty());
}

/// Issue "bounded" §2: 100,000 messages the mapping rejects (no user or device id) get an
/// answer within 64 KB: the counts, the first results with their messageIds and reason, and
/// the rest counted by reason.
#[tokio::test]
async fn the_answer_to_100_000_rejected_messages_stays_within_64_kb() {
    let token_only = json!({"api_key": "amp-key", "bearer_token": TOKEN});
    let s = setup(Route::Events, json!({}), token_only).await;
    let events: Vec<String> = (0..100_000)
        .map(|i| format!(r#"{{"type":"track","event":"e","messageId":"m{i}"}}"#))
        .collect();
    let body = format!("[{}]", events.join(","));
    assert!(body.len() < pipeline::MAX_BODY_BYTES);
    let headers = json!({"Authorization": format!("Bearer {TOKEN}")});
    let reply = reply_within(
        &s.function,
        apigw_v2(&body, headers, false),
        Duration::from_secs(30),
    )
    .await;
    let text = serde_json::to_string(&reply.body).unwrap();
    assert!(
        text.len() <= pipeline::ingest::reply::MAX_REPLY_BYTES,
        "{}",
        text.len()
    );
    let reply: Value = serde_json::from_str(&text).unwrap();
    let reason = "`userId` or `anonymousId` (or `context.device.id`) is required";
    assert_eq!(reply["status"], 200);
    assert_eq!(reply["counts"]["rejected"], 100_000);
    let results = reply["results"].as_array().unwrap();
    assert!(results.len() > 100, "{}", results.len());
    for (i, r) in results.iter().enumerate() {
        assert_eq!(
            r,
            &json!({"index": i, "message_id": format!("m{i}"), "outcome": "rejected",
                "by": "mapping", "reason": reason})
        );
    }
    assert_eq!(
        reply["omitted"],
        json!({"results": 100_000 - results.len(),
            "by_reason": [{"outcome": "rejected", "reason": reason, "count": 100_000 - results.len()}]})
    );
}

/// An order of 1,300 products whose user has 16 KB of traits: 1,301 events and about 21 MB.
fn big_order(message_id: &str) -> Value {
    let products: Vec<Value> = (0..1300)
        .map(|i| json!({"sku": format!("sku-{i}"), "price": 1}))
        .collect();
    json!({"type": "track", "event": "Order Completed", "userId": "big-spender",
        "messageId": message_id, "context": {"traits": {"pad": "t".repeat(16 * 1024)}},
        "properties": {"revenue": 1300, "products": products}})
}

/// Issue "bounded" §1: a message whose events are more than a chunk holds (8 MB) is delivered
/// over several chunks, every event once, and answered as one message; the messages around it
/// too.
#[tokio::test]
async fn a_message_larger_than_a_chunk_is_delivered_whole_across_chunks() {
    let token_only = json!({"api_key": "amp-key", "bearer_token": TOKEN});
    let s = setup(Route::Events, json!({}), token_only).await;
    // One user's 1,301 events in a second: more than Amplitude's 30 a second on HTTP V2 allows,
    // which this test is not about.
    s.emu.state.set_config(EmulatorConfig {
        httpapi_eps: 100_000,
        ..EmulatorConfig::default()
    });
    let body = json!([track(1), big_order("order-1"), track(2)]).to_string();
    let headers = json!({"Authorization": format!("Bearer {TOKEN}")});
    let reply = reply_within(
        &s.function,
        apigw_v2(&body, headers, false),
        Duration::from_secs(60),
    )
    .await;
    let reply = serde_json::to_value(&reply.body).unwrap();
    assert_eq!(
        (
            &reply["status"],
            &reply["counts"]["delivered"],
            &reply["results"]
        ),
        (&json!(200), &json!(3), &json!([]))
    );
    let got = s.emu.state.ingested();
    assert_eq!(got.events.len(), 1303);
    let ids: std::collections::HashSet<&str> = got
        .events
        .iter()
        .filter_map(|e| e["insert_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 1303, "each event once");
    assert!(ids.contains("order-1-1301") && ids.contains("m1") && ids.contains("m2"));
    let requests = got.requests["/2/httpapi"];
    assert!(
        requests >= 21,
        "21 MB in requests of at most 1 MB: {requests}"
    );
}

/// Issue "first deploy" §9 and §10: with Segment's Webhooks set up with one URL, `/events`
/// delivers the alias calls Segment sends there as `/alias` does (the same `sendAlias` gate),
/// and the Extensible Webhook's `{"json": event}` items are delivered as their events.
#[tokio::test]
async fn one_url_takes_alias_and_the_extensible_webhooks_wrapped_items() {
    let token_only = json!({"api_key": "amp-key", "bearer_token": TOKEN});
    let s = setup(
        Route::Events,
        json!({"sendAlias": true}),
        token_only.clone(),
    )
    .await;
    let alias =
        json!({"type": "alias", "previousId": "anon-1", "userId": "user-1", "messageId": "a1"});
    let body = json!([{"json": track(1)}, {"json": alias}]).to_string();
    let headers = json!({"Authorization": format!("Bearer {TOKEN}")});
    let (status, reply) = call(&s.function, apigw_v2(&body, headers.clone(), false)).await;
    assert_eq!(
        (status, &reply["counts"]["delivered"]),
        (200, &json!(2)),
        "{reply}"
    );
    let got = s.emu.state.ingested();
    assert_eq!(got.events[0]["insert_id"], "m1");
    assert_eq!(
        (
            &got.mappings[0]["user_id"],
            &got.mappings[0]["global_user_id"]
        ),
        (&json!("anon-1"), &json!("user-1"))
    );
    // sendAlias off: unsupported, as on /alias.
    let off = setup(Route::Events, json!({}), token_only).await;
    let (status, reply) = call(
        &off.function,
        apigw_v2(&json!([alias]).to_string(), headers, false),
    )
    .await;
    assert_eq!(
        (status, &reply["results"][0]["outcome"]),
        (501, &json!("unsupported"))
    );
}

/// Spec §18: with `sessionize` on, the events function needs a store for the sessions' state
/// and says so at start-up; the other functions (which never sessionize) start without one.
#[test]
fn sessionize_needs_a_store_for_the_events_function_only() {
    let build = |kind| {
        Function::builder(kind)
            .var("INGEST_SECRET_ID", "ingest")
            .var("SEGMENT_SETTINGS", r#"{"sessionize": true}"#)
            .build()
    };
    assert_eq!(
        build(Kind::Ingest(Route::Events))
            .err()
            .map(|e| e.to_string()),
        Some(
            "environment: `SESSIONS_TABLE` is invalid: not set, and the settings turn \
             `sessionize` on: the events function keeps the sessions' state there (the \
             template's `Sessions` parameter)"
                .to_owned()
        )
    );
    assert!(build(Kind::Ingest(Route::Alias)).is_ok());
    assert!(
        Function::builder(Kind::Ingest(Route::Events))
            .var("INGEST_SECRET_ID", "ingest")
            .var("SEGMENT_SETTINGS", r#"{"sessionize": true}"#)
            .sessions(std::sync::Arc::new(sessions::MemoryStore::new()))
            .build()
            .is_ok()
    );
}
