//! The fuzz targets' bodies (`tests/fuzz/fuzz_targets/`), shared with the seed-replay test so
//! every seed and every input that once crashed runs in the ordinary test suite too.
//!
//! * [`map_line`]: one JSON line → the mapping under several settings → the wire items;
//! * [`inbound`]: a raw request (headers and body) → the inbound event, body splitting,
//!   authentication and the planning of each message;
//! * [`job`]: a queue message body → a delivery job (anyone who may write to the queue, or a
//!   dead-letter replay, can put anything there), and a list of items → a job's queue
//!   messages (inputs of fuzzing size make one message; the split of large jobs has its own
//!   unit test in `queue/job.rs`);
//! * [`response`]: an answer of Amplitude's, or of a server that misbehaves (any status, any
//!   body), → the retry policy's verdict for the request's items.
//!
//! They assert properties besides "no panic": a line is read as serde_json reads it, with each
//! key once (`mapping::parse`), items are valid JSON (or form text) that Amplitude's checks of
//! a request accept (`amplitude_emulator::check_request`), `mapping::write`
//! (`map`'s writer) writes every mapped body byte for byte as serde_json does, a body of
//! several events vouched for only by its first event's signature is never accepted, a
//! correct signature of the signed bytes is always accepted, a decoded job encodes back to
//! itself, and a job's queue messages stay within SQS's limit and carry every item once, in
//! order, with its messageId; an answer's reasons stay short whatever its body, never quote
//! a bad key's text, and a 400's listed events are within the request, each once, in order,
//! none both rejected and held.

use std::sync::OnceLock;

use amplitude_client::batch::Limits;
use amplitude_client::encode;
use amplitude_client::policy::{Verdict, classify};
use base64::Engine;
use mapping::Settings;
use pipeline::Route;
use pipeline::delivery::planning;
use pipeline::durable::job::MAX_MESSAGE_BYTES;
use pipeline::durable::{Job, JobItem, V1};
use pipeline::ingest::auth::{AuthConfig, AuthError, Presented, sign};
use pipeline::ingest::body;
use pipeline::ingest::inbound::Inbound;
use secrecy::SecretString;
use serde_json::{Value, json};

/// The shared secret and token the `inbound` target checks against.
pub const SECRET: &str = "fuzz-secret";
pub const TOKEN: &str = "fuzz-token";

/// Settings that together switch on every rule.
pub fn settings_variants() -> &'static [Settings] {
    static VARIANTS: OnceLock<Vec<Settings>> = OnceLock::new();
    VARIANTS.get_or_init(|| {
        [
            json!({}),
            corpus::settings(),
            json!({"endpoint": "eu", "sendToBatchEndpoint": true, "trackAllPages": true,
                "trackCategorizedPages": true, "trackNamedPages": true, "trackProductsOnce": true,
                "trackRevenuePerProduct": true, "preferAnonymousIdForDeviceId": true,
                "useCustomAmplitudeProperties": true, "sendAlias": true,
                "traitsToAppend": ["a", "tags"], "traitsToPrepend": ["p"],
                "traitsToIncrement": ["n", "logins"], "traitsToSetOnce": ["s"],
                "mapQueryParams": {"q": "user_properties", "r": "event_properties"},
                "groupTypeTrait": "t", "groupValueTrait": "v", "trackUtmProperties": true,
                "idempotentTraitOperations": false}),
            // The opt-in rules of spec §17, all on.
            json!({"trackNamedPages": true, "unsetNullTraits": true,
                "traitOperationsOnEvents": true, "traitsToIncrement": ["logins"],
                "pageEventNameTemplate": "Viewed {{name}} {{properties.title}}",
                "screenEventNameTemplate": "{{category}} {{name}}", "sendReferrer": true,
                "includeRawUserAgent": true, "libraryFromContext": true, "minIdLength": 1,
                "groupTypeTrait": "t", "groupValueTrait": "v"}),
        ]
        .iter()
        .map(|s| Settings::from_json(s).expect("fuzz settings are valid"))
        .collect()
    })
}

/// One JSON line through the mapping and the encoder, under every settings variant.
pub fn map_line(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut scratch = mapping::Scratch::default();
    let parsed = mapping::parse(text, &mut scratch);
    check_read_as_segment_reads(text, parsed.as_ref().ok());
    let Ok(value) = parsed else {
        return;
    };
    for settings in settings_variants() {
        if let Ok(plan) = mapping::plan(&value, settings) {
            check_plan(&plan, settings);
            check_writers(&plan);
        }
        if let Ok(mapping::engage::Engage::Plan(plan)) = mapping::engage::plan(&value, settings) {
            check_plan(&plan, settings);
            check_writers(&plan);
        }
    }
}

/// A plan's wire items, encoded once for both checks: each is JSON (or form text), and passes
/// Amplitude's checks of a request.
fn check_plan(plan: &mapping::Plan<'_>, settings: &Settings) {
    let items = encode::items(0, plan);
    check_items(&items);
    check_amplitude_accepts(&items, settings);
}

/// Every item the mapping plans passes Amplitude's checks of its request (the emulator's,
/// from amplitude-api.md): what the mapping sends is never refused for its shape, so a message
/// is either sent or rejected by the mapping with a reason. Each item goes alone in a request
/// framed as the client frames it; only a size refusal (413) is allowed, which the client
/// handles by splitting and, for an item too large alone, by rejecting it with the reason.
fn check_amplitude_accepts(items: &[amplitude_client::Item], settings: &Settings) {
    static CONFIG: OnceLock<amplitude_emulator::EmulatorConfig> = OnceLock::new();
    let config = CONFIG.get_or_init(amplitude_emulator::EmulatorConfig::default);
    for item in items {
        let frame = encode::Frame::new(item.endpoint, "K", settings.min_id_length, "segment");
        let body = frame.body(std::iter::once(item.wire.as_str()));
        let path = item.endpoint.path();
        if let Err((status, answer)) = amplitude_emulator::check_request(config, path, &body) {
            assert_eq!(
                status, 413,
                "Amplitude refuses a planned {path} item: {answer}\n{}",
                item.wire
            );
        }
    }
}

/// `mapping::parse` reads what serde_json reads (the same texts, the same values, a repeated
/// key's last value; serde_json's own maps keep the last), and leaves no object naming a key
/// twice, also where it wrote the text again. It also reads what serde_json refuses only for a
/// lone surrogate (read as U+FFFD). Its tree is `serde_json_borrow`'s, at the exact size.
fn check_read_as_segment_reads(text: &str, parsed: Option<&serde_json_borrow::Value<'_>>) {
    let reference = match (serde_json::from_str::<serde_json::Value>(text), parsed) {
        (Ok(reference), Some(parsed)) => {
            assert_eq!(serde_json::Value::from(parsed), reference, "values differ");
            reference
        }
        (Err(_), None) => return,
        (Ok(_), None) => panic!("mapping::parse refused what serde_json reads"),
        (Err(e), Some(parsed)) => {
            let why = e.to_string();
            assert!(
                why.contains("surrogate") || why.contains("hex escape"),
                "mapping::parse read what serde_json refuses: {why}"
            );
            serde_json::Value::from(parsed)
        }
    };
    let Some(parsed) = parsed else {
        return;
    };
    fn each_key_once(v: &serde_json_borrow::Value<'_>, r: &serde_json::Value) -> bool {
        use serde_json_borrow::Value as V;
        match (v, r) {
            (V::Object(o), serde_json::Value::Object(m)) => {
                o.len() == m.len()
                    && o.iter()
                        .all(|(k, v)| m.get(k).is_some_and(|r| each_key_once(v, r)))
            }
            (V::Array(a), serde_json::Value::Array(b)) => {
                a.iter().zip(b).all(|(v, r)| each_key_once(v, r))
            }
            _ => true,
        }
    }
    assert!(each_key_once(parsed, &reference), "a key is named twice");
    // Where `serde_json_borrow`'s own reader reads the text and no key is repeated, the
    // exact-size reader built its tree, entry for entry and in order; and every array and
    // object holds exactly its items.
    if let Ok(theirs) = serde_json::from_str::<serde_json_borrow::Value>(text)
        && each_key_once(&theirs, &reference)
    {
        assert!(
            *parsed == theirs,
            "the tree differs from serde_json_borrow's"
        );
    }
    fn exact(v: &serde_json_borrow::Value<'_>) -> bool {
        use serde_json_borrow::Value as V;
        match v {
            V::Array(a) => a.capacity() == a.len() && a.iter().all(exact),
            V::Object(o) => o.as_vec().capacity() == o.len() && o.values().all(exact),
            _ => true,
        }
    }
    assert!(
        exact(parsed),
        "a container has room for more than its items"
    );
}

/// `segment-amplitude map` writes its lines with `mapping::write`, the functions their bodies
/// with serde_json: both must write the same bytes for every mapped object.
fn check_writers(plan: &mapping::Plan<'_>) {
    for request in &plan.requests {
        let by_serde_json = serde_json::to_string(&request.body).expect("bodies serialise");
        let mut by_writer = Vec::new();
        mapping::write::body(&mut by_writer, &request.body);
        assert_eq!(
            by_serde_json.as_bytes(),
            by_writer,
            "the two JSON writers disagree"
        );
    }
}

/// Every item is what its endpoint's frame expects: JSON, or form-encoded JSON.
fn check_items(items: &[amplitude_client::Item]) {
    for item in items {
        let json = if item.endpoint.is_form() {
            form_urlencoded::parse(format!("x={}", item.wire).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        } else {
            item.wire.clone()
        };
        assert!(
            serde_json::from_str::<Value>(&json).is_ok(),
            "an item is not JSON: {json}"
        );
    }
}

/// A raw request: optional flag lines (`!rest`, `!direct`, `!base64`) and `name: value`
/// header lines, an empty line, then the body. Without an empty line it is all body.
pub fn inbound(data: &[u8]) {
    let (head, raw_body) = match find(data, b"\n\n") {
        Some(at) => (
            data.get(..at).unwrap_or_default(),
            data.get(at + 2..).unwrap_or_default(),
        ),
        None => (&b""[..], data),
    };
    let head = String::from_utf8_lossy(head);
    let flag = |f: &str| head.lines().any(|l| l.trim() == f);
    let headers: serde_json::Map<String, Value> = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), Value::from(v.trim())))
        .collect();
    let payload = if flag("!direct") {
        serde_json::from_slice(raw_body).unwrap_or(Value::Null)
    } else {
        let (text, base64) = if flag("!base64") {
            (
                base64::engine::general_purpose::STANDARD.encode(raw_body),
                true,
            )
        } else {
            (String::from_utf8_lossy(raw_body).into_owned(), false)
        };
        api_gateway(flag("!rest"), headers, &text, base64)
    };
    let Ok(inbound) = Inbound::from_payload(payload) else {
        return;
    };
    check_auth(&inbound);
    if let Ok(m) = body::split(inbound.body.as_bytes()) {
        // Each message as the functions plan it: under the batch's shared context.
        let mut shared_scratch = planning::SharedScratch::default();
        let shared = planning::Shared::of(&m, &mut shared_scratch);
        for text in m.texts().take(64) {
            let mut scratch = mapping::Scratch::default();
            let Ok(value) = planning::parse(text, &mut scratch) else {
                continue;
            };
            for route in [Route::Events, Route::Engage] {
                let planned =
                    planning::plan(route, &settings_variants()[1], &value, shared.batch());
                if let Ok(plan) = planned.plan {
                    check_plan(&plan, &settings_variants()[1]);
                }
            }
        }
    }
}

/// The functions' own authentication (`AuthConfig::check`, as `Function` calls it) over what
/// the request presents, with its properties.
fn check_auth(inbound: &Inbound) {
    let secrets = [SecretString::from(SECRET)];
    let tokens = [SecretString::from(TOKEN)];
    let header = |name: &str| inbound.header(name);
    let presented = Presented {
        header: &header,
        body: inbound.body.as_bytes(),
    };
    let signature_only = AuthConfig {
        shared_secrets: &secrets,
        ..AuthConfig::default()
    };
    let outcome = signature_only.check(&presented);
    let signed = body::signed_part(inbound.body.as_bytes());
    if signed.events > 1 && !signed.covers_body {
        assert_ne!(outcome, Ok(()), "a signature vouched for appended events");
    }
    for config in [
        AuthConfig {
            bearer_tokens: &tokens,
            ..AuthConfig::default()
        },
        AuthConfig {
            shared_secrets: &secrets,
            bearer_tokens: &tokens,
            ..AuthConfig::default()
        },
    ] {
        let _ = config.check(&presented);
    }
    // The correct signature of exactly the signed bytes always passes the signature check.
    let good = sign(SECRET, signed.bytes);
    let with_good = |name: &str| {
        if name == "x-signature" {
            Some(good.as_str())
        } else {
            inbound.header(name)
        }
    };
    let outcome = signature_only.check(&Presented {
        header: &with_good,
        ..presented
    });
    assert!(
        matches!(outcome, Ok(()) | Err(AuthError::SignedBatch)),
        "a correct signature was refused: {outcome:?}"
    );
}

fn api_gateway(
    rest: bool,
    headers: serde_json::Map<String, Value>,
    body: &str,
    base64: bool,
) -> Value {
    if rest {
        json!({"resource": "/events", "path": "/events", "httpMethod": "POST", "headers": headers,
            "multiValueHeaders": {}, "requestContext": {"accountId": "1", "resourceId": "r",
                "stage": "prod", "requestId": "q", "identity": {"sourceIp": "127.0.0.1"},
                "resourcePath": "/events", "httpMethod": "POST", "apiId": "a"},
            "body": body, "isBase64Encoded": base64})
    } else {
        json!({"version": "2.0", "routeKey": "POST /events", "rawPath": "/events",
            "rawQueryString": "", "headers": headers,
            "requestContext": {"accountId": "1", "apiId": "a", "domainName": "x", "domainPrefix": "x",
                "http": {"method": "POST", "path": "/events", "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1", "userAgent": "Segment.io/1.0"},
                "requestId": "r", "routeKey": "POST /events", "stage": "$default", "time": "",
                "timeEpoch": 0},
            "body": body, "isBase64Encoded": base64})
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Seeds for `map_line`: messages of the generated corpus, one per file; every other group
/// call increments its group (mapping §9.4: `$groupidentify` events).
pub fn map_line_seeds(count: usize) -> Vec<Vec<u8>> {
    let mut lines = corpus::lines(7, count);
    corpus::with_group_increments(&mut lines, 2);
    lines.into_iter().map(String::into_bytes).collect()
}

/// Seeds for `inbound`: corpus messages as single signed events, signed arrays, bearer
/// batches, the `{"batch"}` shape, base64 bodies, REST events and direct invocations.
pub fn inbound_seeds(count: usize) -> Vec<Vec<u8>> {
    let lines = corpus::lines(11, count * 3);
    (0..count)
        .map(|i| {
            let one = lines.get(i * 3).cloned().unwrap_or_default();
            let two = lines.get(i * 3 + 1).cloned().unwrap_or_default();
            let three = lines.get(i * 3 + 2).cloned().unwrap_or_default();
            let array = format!("[{one},{two},{three}]");
            let (flags, headers, body) = match i % 6 {
                0 => (
                    "",
                    format!("x-signature: {}", sign(SECRET, one.as_bytes())),
                    one,
                ),
                1 => (
                    "",
                    format!("X-Signature: {}", sign(SECRET, one.as_bytes())),
                    array,
                ),
                2 => ("", format!("authorization: Bearer {TOKEN}"), array),
                3 => (
                    "!base64\n",
                    format!("x-signature: {}", sign(SECRET, one.as_bytes())),
                    one,
                ),
                4 => (
                    "!rest\n",
                    format!("authorization: Bearer {TOKEN}"),
                    format!("{{\"batch\":[{one},{two}],\"context\":{{\"ip\":\"1.2.3.4\"}}}}"),
                ),
                _ => ("!direct\n", String::new(), one),
            };
            format!("{flags}{headers}\n\n{body}").into_bytes()
        })
        .collect()
}

/// A queue message body, and the same bytes read as a list of job items.
pub fn job(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Any body: a job or a refusal, never a panic; a job encodes back to itself.
    if let Ok(job) = Job::decode(text) {
        assert_eq!(Job::decode(&job.encode()).as_ref(), Ok(&job));
    }
    // Items: split into queue messages within the limit, every item once, with its messageId.
    let Ok(items) = serde_json::from_str::<Vec<JobItem>>(text) else {
        return;
    };
    let messages = items
        .iter()
        .map(|i| i.message.saturating_add(1))
        .max()
        .unwrap_or(0);
    if messages > 10_000 {
        return;
    }
    let job = Job {
        v: V1,
        route: pipeline::Route::Events,
        endpoint: mapping::Endpoint::HttpApi,
        region: mapping::Region::Standard,
        message_ids: (0..messages)
            .map(|m| (m % 7 != 3).then(|| format!("m-{m}")))
            .collect(),
        items,
        attempts: 2,
        first_seen_ms: 1_700_000_000_000,
        last_reason: "Amplitude 503".into(),
        cause: amplitude_client::RetryCause::Transient,
        dead_letter_reason: None,
    };
    let flat = |job: &Job| -> Vec<(Option<String>, JobItem)> {
        job.items
            .iter()
            .map(|i| {
                let id = job.message_ids[i.message].clone();
                (
                    id,
                    JobItem {
                        message: 0,
                        ..i.clone()
                    },
                )
            })
            .collect()
    };
    let mut carried = Vec::new();
    for body in job.clone().bodies() {
        let part = Job::decode(&body).expect("a job's message decodes");
        assert!(
            body.len() <= MAX_MESSAGE_BYTES || part.items.len() == 1,
            "a message of {} bytes with {} items",
            body.len(),
            part.items.len()
        );
        assert_eq!(
            (part.attempts, part.first_seen_ms, part.cause),
            (job.attempts, job.first_seen_ms, job.cause)
        );
        carried.extend(flat(&part));
    }
    assert_eq!(
        carried,
        flat(&job),
        "every item once, in order, with its messageId"
    );
}

/// Seeds for `job`: encoded jobs of corpus items (some large enough to be split) and their
/// item lists as JSON.
pub fn job_seeds(count: usize) -> Vec<Vec<u8>> {
    let settings = &settings_variants()[1];
    let lines = corpus::lines(13, count * 40);
    (0..count)
        .map(|i| {
            let take = if i % 5 == 4 { 12 } else { 1 + i % 4 };
            let mut items = Vec::new();
            for (m, line) in lines.iter().skip(i * 40).take(take).enumerate() {
                let value: serde_json_borrow::Value =
                    serde_json::from_str(line).expect("corpus JSON");
                if let Ok(plan) = mapping::plan(&value, settings) {
                    items.extend(encode::items(m, &plan).into_iter().map(|it| JobItem {
                        message: m,
                        wire: it.wire,
                        user_id: it.user_id,
                        device_id: it.device_id,
                    }));
                }
            }
            let list = serde_json::to_string(&items).expect("items serialise");
            if i % 2 == 0 {
                return list.into_bytes();
            }
            Job {
                v: V1,
                route: pipeline::Route::Events,
                endpoint: mapping::Endpoint::HttpApi,
                region: mapping::Region::Standard,
                message_ids: (0..take).map(|m| Some(format!("seed-{i}-{m}"))).collect(),
                items,
                attempts: 1,
                first_seen_ms: 1_700_000_000_000,
                last_reason: "Amplitude 503".into(),
                cause: amplitude_client::RetryCause::Transient,
                dead_letter_reason: None,
            }
            .encode()
            .into_bytes()
        })
        .collect()
}

/// The most bytes a reason made from an answer may have: Amplitude's text is quoted up to 200
/// bytes and one event's reason grows to about 1 KB as the lists naming it are added.
const MAX_ANSWER_REASON: usize = 2048;

/// An answer → the retry policy's verdict. The first byte picks the endpoint, the next two the
/// status (100–599), the rest is the body.
pub fn response(data: &[u8]) {
    let [e, s0, s1, body @ ..] = data else {
        return;
    };
    let endpoint = mapping::Endpoint::ALL[usize::from(*e) % mapping::Endpoint::ALL.len()];
    let status = 100 + u16::from_le_bytes([*s0, *s1]) % 500;
    let short = |reason: &str| {
        assert!(
            reason.len() < MAX_ANSWER_REASON,
            "a reason of {} bytes",
            reason.len()
        )
    };
    match classify(endpoint, status, body) {
        Verdict::CredentialsRefused { reason } => assert!(
            reason == "Amplitude 400: Invalid API key"
                || reason == "Amplitude 401: invalid API key or secret key",
            "a bad key's answer is never quoted: {reason}"
        ),
        Verdict::RequestRefused { reason }
        | Verdict::Isolate { reason }
        | Verdict::Retry { reason } => short(&reason),
        Verdict::DropListed {
            rejected,
            throttled,
        } => {
            let max_items = Limits::of(endpoint).max_items;
            assert!(
                rejected.windows(2).all(|w| w[0].0 < w[1].0),
                "in order, each once"
            );
            for (index, reason) in &rejected {
                assert!(*index < max_items, "{index} is past any request");
                assert!(!throttled.contains(index), "{index} both rejected and held");
                short(reason);
            }
            assert!(throttled.iter().all(|i| *i < max_items));
        }
        Verdict::Delivered | Verdict::TooLarge | Verdict::Throttled(_) => {}
    }
}

/// Seeds for `response`: Amplitude's documented answers on each endpoint (amplitude-api §2.7,
/// §3–§7), and a few a misbehaving server gives.
pub fn response_seeds() -> Vec<Vec<u8>> {
    let bodies: [(u16, Value); 20] = [
        (
            200,
            json!({"code": 200, "events_ingested": 3, "payload_size_bytes": 812, "server_upload_time": 1_700_000_000_000_u64}),
        ),
        (200, json!("success")),
        (
            200,
            json!([{"day": "2026-12-05", "status": "staging", "amplitude_ids": [{"amplitude_id": 1, "requester": "segment", "requested_at": "1700000000", "user_id": "user-1"}]}]),
        ),
        (200, json!({"code": 429})),
        (
            400,
            json!({"code": 400, "error": "Invalid field values on some events", "events_with_invalid_fields": {"time": [3], "user_id": [1, 3]}, "events_with_missing_fields": {"event_type": [0]}}),
        ),
        (
            400,
            json!({"code": 400, "error": "Request missing required field", "events_with_invalid_fields": {"event_type": [2]}}),
        ),
        (
            400,
            json!({"code": 400, "error": "Invalid field values on some events", "events_with_invalid_id_lengths": {"device_id": [4]}}),
        ),
        (
            400,
            json!({"code": 400, "error": "Events silenced for device_id", "silenced_events": [1], "throttled_events": [2], "silenced_devices": ["d"]}),
        ),
        (
            400,
            json!({"code": 400, "error": "Request missing required field", "missing_field": "events"}),
        ),
        (
            400,
            json!({"code": 400, "error": "Invalid API key: 0123456789abcdef"}),
        ),
        (
            400,
            json!({"code": 400, "error": "Invalid JSON request body"}),
        ),
        (
            400,
            json!({"code": 400, "error": "Invalid field values on some events", "events_with_invalid_fields": {"time": [0, 1, 70000, 4000000000_u64]}}),
        ),
        (401, json!({"code": 401, "error": "Invalid API key"})),
        (413, json!({"code": 413, "error": "Payload too large"})),
        (
            429,
            json!({"code": 429, "error": "Too many requests for some devices and users", "eps_threshold": 30, "throttled_devices": {"d1": 31}, "throttled_users": {"u1": 32}, "throttled_events": [0, 2]}),
        ),
        (
            429,
            json!({"code": 429, "error": "Too many requests", "exceeded_daily_quota_users": {"u2": 500001}, "exceeded_daily_quota_devices": {"d2": 500001}}),
        ),
        (503, json!({"code": 503, "error": "Service unavailable"})),
        (
            500,
            json!("<html><body>Internal Server Error</body></html>"),
        ),
        (301, json!("Moved Permanently")),
        (408, json!(null)),
    ];
    let mut seeds = Vec::new();
    for (n, (status, body)) in bodies.iter().enumerate() {
        let text = match body {
            Value::String(plain) => plain.clone(),
            other => other.to_string(),
        };
        // Each answer on two endpoints: the one that gives it and another.
        for endpoint in [n, n + 3] {
            let mut seed = vec![(endpoint % mapping::Endpoint::ALL.len()) as u8];
            seed.extend_from_slice(&(status - 100).to_le_bytes());
            seed.extend_from_slice(text.as_bytes());
            seeds.push(seed);
        }
    }
    seeds
}
