//! The emulator's own validations, against the examples and rules of amplitude-api.md, over
//! real HTTP on loopback.

use amplitude_emulator::{Emulator, EmulatorConfig, Fault, FaultAction};
use base64::Engine;
use serde_json::{Value, json};

async fn start(tune: impl FnOnce(&mut EmulatorConfig)) -> (Emulator, reqwest::Client) {
    let mut config = EmulatorConfig::default();
    tune(&mut config);
    // The workspace's one TLS stack: rustls with ring, installed before any client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    (
        Emulator::start(config).await.unwrap(),
        reqwest::Client::new(),
    )
}

async fn post_json(c: &reqwest::Client, url: String, body: &str) -> (u16, Value) {
    let r = c
        .post(url)
        .header("content-type", "application/json; charset=UTF-8")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn event(user: &str, insert: &str) -> Value {
    json!({"user_id": user, "event_type": "Played", "insert_id": insert, "time": 1_700_000_000_000i64})
}

#[tokio::test]
async fn s2_6_success_body_and_dedup_by_insert_id() {
    let (emu, c) = start(|_| {}).await;
    let body = json!({"api_key": "k", "events": [event("user-1", "a"), event("user-1", "a"), event("user-2", "b")]}).to_string();
    let (status, resp) = post_json(&c, format!("{}/2/httpapi", emu.url()), &body).await;
    assert_eq!(status, 200);
    assert_eq!(resp["code"], 200);
    assert_eq!(resp["events_ingested"], 3);
    assert_eq!(resp["payload_size_bytes"], body.len());
    assert!(resp["server_upload_time"].as_u64().unwrap() > 1_700_000_000_000);
    let got = emu.state.ingested();
    assert_eq!(
        got.events.len(),
        2,
        "the repeated insert_id is not stored twice"
    );
    assert_eq!(
        (got.insert_ids["a"].received, got.insert_ids["a"].stored),
        (2, 1)
    );
}

#[tokio::test]
async fn s2_6_request_level_400s() {
    let (emu, c) = start(|c| c.api_keys = ["good-key".to_string()].into()).await;
    let url = || format!("{}/2/httpapi", emu.url());
    assert_eq!(
        post_json(&c, url(), "").await,
        (400, json!({"code": 400, "error": "Missing request body"}))
    );
    assert_eq!(
        post_json(&c, url(), "{nope").await,
        (
            400,
            json!({"code": 400, "error": "Invalid JSON request body"})
        )
    );
    assert_eq!(
        post_json(&c, url(), r#"{"api_key": "good-key", "Events": []}"#).await,
        (
            400,
            json!({"code": 400, "error": "Request missing required field", "missing_field": "events"})
        )
    );
    assert_eq!(
        post_json(&c, url(), r#"{"events": []}"#).await,
        (
            400,
            json!({"code": 400, "error": "Request missing required field", "missing_field": "api_key"})
        )
    );
    assert_eq!(
        post_json(&c, url(), r#"{"api_key": "bad", "events": []}"#).await,
        (400, json!({"code": 400, "error": "Invalid API key: bad"}))
    );
    assert_eq!(
        post_json(&c, format!("{}/2/nothing", emu.url()), "{}").await,
        (400, json!({"code": 400, "error": "Invalid request path"}))
    );
    assert_eq!(
        post_json(&c, url(), r#"{"api_key": "good-key", "events": []}"#)
            .await
            .0,
        200,
        "an empty batch is accepted"
    );
}

#[tokio::test]
async fn s2_3_per_event_checks_list_every_bad_index() {
    let (emu, c) = start(|_| {}).await;
    let events = json!([
        event("user-1", "ok"),
        {"user_id": "user-2", "insert_id": "x"},
        {"event_type": "e"},
        {"user_id": "abc", "event_type": "e"},
        {"user_id": "null", "event_type": "e"},
        {"user_id": "user-3", "event_type": "e", "time": "2020-01-01"},
        {"device_id": "dev-123", "event_type": "[Amplitude] Revenue"},
        {"user_id": "user-4", "event_type": "e", "time": 1.5},
    ]);
    let (status, body) = post_json(
        &c,
        format!("{}/batch", emu.url()),
        &json!({"api_key": "k", "events": events}).to_string(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"code": 400, "error": "Invalid field values on some events",
            "events_with_missing_fields": {"event_type": [1], "user_id": [2]},
            "events_with_invalid_fields": {"user_id": [4], "time": [5, 7], "event_type": [6]},
            "events_with_invalid_id_lengths": {"user_id": [3]}})
    );
    assert!(
        emu.state.ingested().events.is_empty(),
        "nothing of a 400 request is ingested"
    );
}

#[tokio::test]
async fn s2_3_short_ids_alone_and_min_id_length_option() {
    let (emu, c) = start(|_| {}).await;
    let url = format!("{}/2/httpapi", emu.url());
    let short = json!({"api_key": "k", "events": [event("ab", "1")]}).to_string();
    assert_eq!(
        post_json(&c, url.clone(), &short).await,
        (
            400,
            json!({"code": 400, "error": "Invalid id length for user_id or device_id",
            "events_with_invalid_id_lengths": {"user_id": [0]}})
        )
    );
    let lowered =
        json!({"api_key": "k", "events": [event("ab", "1")], "options": {"min_id_length": 2}})
            .to_string();
    assert_eq!(post_json(&c, url, &lowered).await.0, 200);
}

/// §2.2 and §4: `$unset` and `$clearAll` change the user's properties,
/// `$skip_user_properties_sync` stores the event and leaves them alone, `user_agent` is a
/// string and `$skip_user_properties_sync` a bool.
#[tokio::test]
async fn s2_2_user_property_operations_skip_sync_and_user_agent() {
    let (emu, c) = start(|_| {}).await;
    let url = format!("{}/2/httpapi", emu.url());
    let with = |insert: &str, extra: Value| {
        let mut e = event("user-1", insert);
        e.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        e
    };
    let events = json!({"api_key": "k", "events": [
        with("1", json!({"user_properties": {"$set": {"plan": "pro", "seat": 1, "old": true}}})),
        with("2", json!({"user_properties": {"$unset": {"old": "-"}}, "user_agent": "curl/8.5.0"})),
        with("3", json!({"user_properties": {"$set": {"plan": "free"}}, "$skip_user_properties_sync": true})),
    ]});
    assert_eq!(post_json(&c, url.clone(), &events.to_string()).await.0, 200);
    let got = emu.state.ingested();
    assert_eq!(got.events.len(), 3, "the backfilled event is stored");
    assert_eq!(got.events[1]["user_agent"], "curl/8.5.0");
    assert_eq!(
        Value::Object(got.users["user-1"].clone()),
        json!({"plan": "pro", "seat": 1})
    );
    let clear = json!({"api_key": "k", "events": [
        with("4", json!({"event_type": "$identify", "user_properties": {"$clearAll": "-"}})),
        with("5", json!({"event_type": "$identify", "user_properties": {"$set": {"seat": 2}}})),
    ]});
    assert_eq!(post_json(&c, url.clone(), &clear.to_string()).await.0, 200);
    assert_eq!(
        Value::Object(emu.state.ingested().users["user-1"].clone()),
        json!({"seat": 2})
    );
    let wrong = json!({"api_key": "k", "events": [
        with("6", json!({"user_agent": 7})),
        with("7", json!({"$skip_user_properties_sync": "yes"})),
    ]});
    assert_eq!(
        post_json(&c, url, &wrong.to_string()).await,
        (
            400,
            json!({"code": 400, "error": "Invalid field values on some events",
                "events_with_invalid_fields": {"$skip_user_properties_sync": [1], "user_agent": [0]}})
        )
    );
}

#[tokio::test]
async fn s2_5_limits_answer_413() {
    let (emu, c) = start(|c| c.httpapi_max_bytes = 500).await;
    let url = format!("{}/2/httpapi", emu.url());
    let big =
        json!({"api_key": "k", "events": [{"user_id": "user-1", "event_type": "x".repeat(600)}]})
            .to_string();
    assert_eq!(
        post_json(&c, url.clone(), &big).await,
        (413, json!({"code": 413, "error": "Payload too large"}))
    );
    let many: Vec<Value> = (0..2001).map(|i| event("user-1", &i.to_string())).collect();
    let body = json!({"api_key": "k", "events": many}).to_string();
    assert_eq!(
        post_json(&c, format!("{}/batch", emu.url()), &body).await.0,
        413,
        "more than 2000 events"
    );
}

#[tokio::test]
async fn s2_5_rate_model_answers_the_documented_429() {
    let (emu, c) = start(|c| c.httpapi_eps = 1).await;
    let events: Vec<Value> = (0..31)
        .map(|i| event("busy-user", &i.to_string()))
        .chain([event("calm-user", "c")])
        .collect();
    let (status, body) = post_json(
        &c,
        format!("{}/2/httpapi", emu.url()),
        &json!({"api_key": "k", "events": events}).to_string(),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(
        body["error"],
        "Too many requests for some devices and users"
    );
    assert_eq!(body["eps_threshold"], 1);
    assert_eq!(body["throttled_users"], json!({"busy-user": 1}));
    assert_eq!(body["throttled_events"], json!((0..31).collect::<Vec<_>>()));
    assert!(emu.state.ingested().events.is_empty());
}

#[tokio::test]
async fn s2_6_silenced_devices_get_the_silenced_400() {
    let (emu, c) = start(|c| c.silenced_devices = ["spam-device".to_string()].into()).await;
    let events = json!([event("user-1", "a"), {"device_id": "spam-device", "event_type": "e"}]);
    let (status, body) = post_json(
        &c,
        format!("{}/2/httpapi", emu.url()),
        &json!({"api_key": "k", "events": events}).to_string(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "Events silenced for device_id");
    assert_eq!(body["silenced_events"], json!([1]));
}

#[tokio::test]
async fn s4_to_s6_form_endpoints() {
    let (emu, c) = start(|_| {}).await;
    let form = |pairs: &[(&str, &str)]| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            s.append_pair(k, v);
        }
        s.finish()
    };
    let post = |path: &str, body: String| {
        c.post(format!("{}{path}", emu.url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let r = post(
        "/identify",
        form(&[
            ("api_key", "k"),
            (
                "identification",
                r#"{"user_id": "user-1", "user_properties": {"a": 1}}"#,
            ),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "success".to_string())
    );
    let r = post("/identify", form(&[("api_key", "k")])).await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("missing_event"));
    let r = post(
        "/groupidentify",
        form(&[
            ("api_key", "k"),
            (
                "identification",
                r#"[{"group_type": "org", "group_value": "acme", "group_properties": {}}]"#,
            ),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // §5: `group_value` is one string; an array (what an earlier mapping sent) is refused.
    let r = post(
        "/groupidentify",
        form(&[
            ("api_key", "k"),
            (
                "identification",
                r#"[{"group_type": "org", "group_value": ["a", "b"], "group_properties": {}}]"#,
            ),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (
            400,
            "missing_event: `identification` is missing or malformed".to_string()
        )
    );
    // User mapping in the query string, as Amplitude's docs show it.
    let r = c
        .post(format!(
            "{}/usermap?{}",
            emu.url(),
            form(&[
                ("api_key", "k"),
                ("mapping", r#"[{"user_id": "a", "unmap": true}]"#)
            ])
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let got = emu.state.ingested();
    assert_eq!(
        got.identifies,
        vec![json!({"user_id": "user-1", "user_properties": {"a": 1}})]
    );
    assert_eq!(got.group_identifies.len(), 1);
    assert_eq!(got.mappings, vec![json!({"user_id": "a", "unmap": true})]);
}

#[tokio::test]
async fn s7_deletions_auth_limits_and_job_listing() {
    let (emu, c) = start(|c| c.secret_keys = [("k".to_string(), "s".to_string())].into()).await;
    emu.state.add_known_user("user-1");
    let url = format!("{}/api/2/deletions/users", emu.url());
    let basic = |k: &str, s: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{k}:{s}"))
        )
    };
    let post = |auth: String, body: Value| {
        c.post(url.clone())
            .header("authorization", auth)
            .json_body(body)
    };
    let r = post(basic("k", "wrong"), json!({"user_ids": ["user-1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let ids: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let r = post(basic("k", "s"), json!({"user_ids": ids}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = post(basic("k", "s"), json!({"user_ids": ["user-1", "ghost"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        400,
        "an unknown user without ignore_invalid_ids"
    );
    let r = post(basic("k", "s"), json!({"user_ids": ["user-1", "ghost"], "requester": "dpo@example.com", "ignore_invalid_ids": "true"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let job: Value = r.json_value().await;
    assert_eq!(job["status"], "staging");
    assert_eq!(job["invalid_ids"], json!(["ghost"]));
    assert_eq!(job["amplitude_ids"][0]["user_id"], "user-1");
    assert_eq!(job["amplitude_ids"][0]["requester"], "dpo@example.com");
    let day = job["day"].as_str().unwrap().to_owned();
    let list = |q: String| {
        c.get(format!("{url}?{q}"))
            .header("authorization", basic("k", "s"))
            .send()
    };
    let r = list(format!("start_day={day}&end_day={day}"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let jobs: Value = r.json_value().await;
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    assert_eq!(
        list("start_day=2024-01-01&end_day=2025-01-01".into())
            .await
            .unwrap()
            .status()
            .as_u16(),
        400,
        "over 6 months"
    );
    assert_eq!(
        list("start_day=20240101&end_day=2024-01-02".into())
            .await
            .unwrap()
            .status()
            .as_u16(),
        400,
        "bad date"
    );
}

#[tokio::test]
async fn admin_routes_script_faults_and_show_what_was_ingested() {
    let (emu, c) = start(|_| {}).await;
    let faults = json!([{"route": "/2/httpapi", "kind": "status", "status": 503},
                        {"kind": "throttle", "users": ["user-1"]},
                        {"kind": "indices_past_the_request", "field": "time"}]);
    let r = c
        .post(format!("{}/_emulator/faults", emu.url()))
        .body(faults.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body =
        json!({"api_key": "k", "events": [event("user-1", "a"), event("user-2", "b")]}).to_string();
    let url = format!("{}/2/httpapi", emu.url());
    assert_eq!(
        post_json(&c, url.clone(), &body).await,
        (503, json!({"code": 503}))
    );
    let (status, throttled) = post_json(&c, url.clone(), &body).await;
    assert_eq!((status, &throttled["throttled_events"]), (429, &json!([0])));
    // A misbehaving server's 400: it lists only indices past the request's two events.
    assert_eq!(
        post_json(&c, url.clone(), &body).await,
        (
            400,
            json!({"code": 400, "error": "Invalid field values on some events",
                   "events_with_invalid_fields": {"time": [2, 70_002]}})
        )
    );
    assert_eq!(post_json(&c, url, &body).await.0, 200);
    let ingested: Value = c
        .get(format!("{}/_emulator/ingested", emu.url()))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(ingested["events"].as_array().unwrap().len(), 2);
    assert_eq!(
        ingested["insert_ids"]["a"],
        json!({"received": 1, "stored": 1})
    );
    assert_eq!(ingested["requests"]["/2/httpapi"], 4);
    emu.state.push_faults([Fault {
        route: None,
        delay_ms: 0,
        action: FaultAction::Reset,
    }]);
    let cut = match c
        .post(format!("{}/2/httpapi", emu.url()))
        .body(body)
        .send()
        .await
    {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(cut, "reset cuts the response");
    c.post(format!("{}/_emulator/reset", emu.url()))
        .send()
        .await
        .unwrap();
    assert!(emu.state.ingested().events.is_empty());
}

/// Small helpers so the tests read as HTTP exchanges.
trait JsonBody {
    fn json_body(self, body: Value) -> Self;
}
impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: Value) -> Self {
        self.header("content-type", "application/json")
            .body(body.to_string())
    }
}
trait JsonValue {
    async fn json_value(self) -> Value;
}
impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

/// `check_request` (the oracle the `map_line` fuzz target uses) answers what the server would
/// answer for the same body, without storing anything.
#[tokio::test]
async fn check_request_answers_as_the_server_does() {
    let (emu, c) = start(|_| {}).await;
    let config = EmulatorConfig::default();
    let ok = json!({"api_key": "k", "events": [event("user-1", "c1")]}).to_string();
    let no_id = json!({"api_key": "k", "events": [{"event_type": "e"}]}).to_string();
    for body in [&ok, &no_id] {
        let served = post_json(&c, format!("{}/2/httpapi", emu.url()), body).await;
        let checked = amplitude_emulator::check_request(&config, "/2/httpapi", body.as_bytes());
        match checked {
            Ok(()) => assert_eq!(served.0, 200),
            Err((status, answer)) => assert_eq!((status, answer), served),
        }
    }
    assert_eq!(
        amplitude_emulator::check_request(&config, "/2/httpapi", no_id.as_bytes()).unwrap_err(),
        (
            400,
            json!({"code": 400, "error": "Invalid field values on some events",
                "events_with_missing_fields": {"user_id": [0]}})
        )
    );
    assert_eq!(
        amplitude_emulator::check_request(
            &config,
            "/groupidentify",
            b"api_key=k&identification=%5B%7B%22group_type%22%3A%22t%22%7D%5D"
        )
        .unwrap_err()
        .0,
        400
    );
    assert!(
        emu.state.ingested().insert_ids.len() == 1,
        "checking stores nothing"
    );
}
