//! `segment-amplitude serve` over real HTTP: the functions behind a local server, the emulator
//! as Amplitude, fail-closed authentication with the local bearer token.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

#[test]
fn serve_runs_every_route_against_the_emulator() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_segment-amplitude"))
        .args(["serve", "--port", "0", "--emulator-port", "0"])
        .env_remove("AMPLITUDE_API_KEY")
        .env_remove("BEARER_TOKEN")
        .env_remove("WEBHOOK_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = None;
    let mut emulator = None;
    let mut metrics_url = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(u) = line.strip_prefix("Segment → Amplitude destination listening on ") {
            url = Some(u.to_owned());
        }
        if let Some(u) = line.strip_prefix("Metrics (Prometheus text format): ") {
            metrics_url = Some(u.to_owned());
        }
        if let Some(rest) = line.strip_prefix("Amplitude emulator on ") {
            emulator = rest.split_whitespace().next().map(str::to_owned);
            break;
        }
    }
    let (url, emulator) = (
        url.expect("prints its URL"),
        emulator.expect("prints the emulator URL"),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let results = runtime.block_on(async {
        amplitude_client::install_crypto_provider();
        let c = reqwest::Client::new();
        let post = |path: &str, auth: Option<&str>, body: Value| {
            let mut r = c
                .post(format!("{url}{path}"))
                .header("content-type", "application/json")
                .body(body.to_string());
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            r.send()
        };
        let track =
            json!({"type": "track", "event": "Signed Up", "userId": "user-1", "messageId": "m-1"});
        let ok = post("/events", Some("Bearer local-token"), track.clone())
            .await
            .unwrap();
        let ok_status = ok.status().as_u16();
        let ok_body: Value = serde_json::from_slice(&ok.bytes().await.unwrap()).unwrap();
        let unauth = post("/events", None, track.clone())
            .await
            .unwrap()
            .status()
            .as_u16();
        let alias = post(
            "/alias",
            Some("Bearer local-token"),
            json!({"type": "alias", "previousId": "a", "userId": "b"}),
        )
        .await
        .unwrap()
        .status()
        .as_u16();
        let ingested: Value = serde_json::from_slice(
            &c.get(format!("{emulator}/_emulator/ingested"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        )
        .unwrap();
        let metrics = c
            .get(metrics_url.expect("the banner names /_metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (ok_status, ok_body, unauth, alias, ingested, metrics)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let (ok_status, ok_body, unauth, alias, ingested, metrics) = results;
    assert_eq!(ok_status, 200);
    assert_eq!(ok_body["results"], json!([]));
    assert_eq!(unauth, 401);
    assert_eq!(alias, 501, "alias is off in the default settings");
    assert_eq!(ingested["events"][0]["insert_id"], "m-1");
    assert_eq!(ingested["events"][0]["_api_key"], "local-api-key");
    // Issue "metrics": the same counters the deployed functions write as EMF, summed over the
    // three requests (the unauthenticated one counts as an invocation with no message).
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.ends_with(" 0") && !l.contains("seconds"))
        .collect();
    assert_eq!(
        lines,
        [
            r#"segment_amplitude_invocations_total{route="alias"} 1"#,
            r#"segment_amplitude_invocations_total{route="events"} 2"#,
            r#"segment_amplitude_requests_total{route="alias",status="501",refused="true"} 1"#,
            r#"segment_amplitude_requests_total{route="events",status="200",refused="false"} 1"#,
            r#"segment_amplitude_requests_total{route="events",status="401",refused="true"} 1"#,
            r#"segment_amplitude_messages_total{route="alias",outcome="received"} 1"#,
            r#"segment_amplitude_messages_total{route="alias",outcome="unsupported"} 1"#,
            r#"segment_amplitude_messages_total{route="events",outcome="delivered"} 1"#,
            r#"segment_amplitude_messages_total{route="events",outcome="received"} 1"#,
            r#"segment_amplitude_amplitude_requests_total{route="events",endpoint="httpapi",status="2xx"} 1"#,
            r#"segment_amplitude_events_per_request_sum{route="events",endpoint="httpapi"} 1"#,
            r#"segment_amplitude_events_per_request_count{route="events",endpoint="httpapi"} 1"#,
        ],
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE segment_amplitude_invocation_seconds summary\n"));
}

/// Starts `serve` with these environment variables; its URL and the child.
fn serve_with(env: &[(&str, &str)]) -> (String, std::process::Child) {
    serve_logging_to(env, Stdio::null())
}

/// [`serve_with`], its log (standard error) going to `log`.
fn serve_logging_to(env: &[(&str, &str)], log: Stdio) -> (String, std::process::Child) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_segment-amplitude"));
    command
        .args(["serve", "--port", "0", "--emulator-port", "0", "--direct"])
        .env_remove("ALLOW_SIGNED_BATCHES")
        .stdout(Stdio::piped())
        .stderr(log);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Read every line, so serve's banner never writes to a closed pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(u) = line.strip_prefix("Segment → Amplitude destination listening on ") {
                let _ = tx.send(u.to_owned());
            }
        }
    });
    (rx.recv().expect("prints its URL"), child)
}

/// Issue "first deploy" §11: serve passes every function variable on, under its own name:
/// `ALLOW_SIGNED_BATCHES=true` lets a batch vouched for by its first event's signature in.
#[test]
fn serve_takes_the_functions_variables_from_its_environment() {
    use pipeline::ingest::auth::sign;
    let first =
        json!({"type": "track", "event": "A", "userId": "user-1", "messageId": "s-1"}).to_string();
    let body = format!(
        r#"[{first},{}]"#,
        json!({"type": "track", "event": "B", "userId": "user-2", "messageId": "s-2"})
    );
    let signature = sign("whsec-local", first.as_bytes());
    let status = |url: &str| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            amplitude_client::install_crypto_provider();
            reqwest::Client::new()
                .post(format!("{url}/events"))
                .header("x-signature", &signature)
                .body(body.clone())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let signature_only = [("WEBHOOK_SECRET", "whsec-local"), ("BEARER_TOKEN", "")];
    let (url, mut child) = serve_with(&signature_only);
    assert_eq!(
        status(&url),
        401,
        "a signature alone cannot vouch for a batch"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let mut opted_in = signature_only.to_vec();
    opted_in.push(("ALLOW_SIGNED_BATCHES", "true"));
    let (url, mut child) = serve_with(&opted_in);
    assert_eq!(status(&url), 200, "unless the operator opts in");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Issue "bounded" §6, as a user of `serve` sees it: a method a route does not take is answered
/// 405 with the function's `Allow` header (API Gateway passes the function's headers on, and so
/// does `serve`); a path with no function, 404; each with a JSON body.
#[test]
fn serve_answers_other_methods_405_with_the_functions_allow_header() {
    let (url, mut child) = serve_with(&[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answers = runtime.block_on(async {
        amplitude_client::install_crypto_provider();
        let c = reqwest::Client::new();
        let track =
            json!({"type": "track", "event": "A", "userId": "user-1", "messageId": "m-405"});
        let mut answers = Vec::new();
        for (method, path) in [
            (reqwest::Method::GET, "/events"),
            (reqwest::Method::PUT, "/alias"),
            (reqwest::Method::DELETE, "/deletions"),
            (reqwest::Method::POST, "/event"),
        ] {
            let r = c
                .request(method.clone(), format!("{url}{path}"))
                .header("authorization", "Bearer local-token")
                .body(track.to_string())
                .send()
                .await
                .unwrap();
            let header = |name: &str| {
                r.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let (status, allow, content_type) =
                (r.status().as_u16(), header("allow"), header("content-type"));
            let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            answers.push((
                format!("{method} {path}"),
                status,
                allow,
                content_type,
                body,
            ));
        }
        answers
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let expected = |what: &str, status: u16, allow: Option<&str>, error: &str| {
        (
            what.to_owned(),
            status,
            allow.map(str::to_owned),
            Some("application/json".to_owned()),
            json!({"status": status, "error": error}),
        )
    };
    assert_eq!(
        answers,
        [
            expected(
                "GET /events",
                405,
                Some("POST"),
                "method: /events takes POST"
            ),
            expected("PUT /alias", 405, Some("POST"), "method: /alias takes POST"),
            expected(
                "DELETE /deletions",
                405,
                Some("POST, GET"),
                "method: /deletions takes POST, GET"
            ),
            // A path with no function: a JSON 404 naming the routes, not an empty body.
            expected(
                "POST /event",
                404,
                None,
                "route: not one of /events, /alias, /deletions, /engage"
            ),
        ]
    );
}

/// `serve` takes the bodies Lambda takes (up to 6 MB, where axum's own default would stop at
/// 2 MB with a text answer), and a larger one is refused by the function itself: 413 with its
/// JSON body, as the README's table of answers says.
#[test]
fn serve_takes_bodies_up_to_lambdas_6_mb_and_the_function_refuses_larger_ones() {
    let (url, mut child) = serve_with(&[]);
    // 100 events of 30 KB: 3 MB, within Lambda's limit and over axum's default.
    let batch = |events: usize| {
        let batch: Vec<Value> = (0..events)
            .map(|i| {
                json!({"type": "track", "event": "A", "userId": "user-1",
                       "messageId": format!("big-{i}"), "properties": {"pad": "p".repeat(30_000)}})
            })
            .collect();
        json!({ "batch": batch }).to_string()
    };
    let (within, over) = (batch(100), batch(240));
    assert!(within.len() > 3_000_000 && over.len() > pipeline::MAX_BODY_BYTES);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answers = runtime.block_on(async {
        amplitude_client::install_crypto_provider();
        let c = reqwest::Client::new();
        let mut answers = Vec::new();
        for body in [within, over] {
            let r = c
                .post(format!("{url}/events"))
                .header("authorization", "Bearer local-token")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            answers.push((status, body));
        }
        answers
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(answers[0].0, 200, "{}", answers[0].1);
    assert_eq!(answers[0].1["counts"]["delivered"], 100);
    assert_eq!(
        answers[1],
        (
            413,
            json!({"status": 413, "error": "body: larger than 6 MB; lower the batch size in Segment"})
        )
    );
}

/// Issue "bounded" §5, for `serve`: at `RUST_LOG=trace` no crate but this project's logs
/// below WARN (hyper's client logs each connection at TRACE when let through), and neither the
/// bearer token of a request nor the API key of a request to Amplitude reaches the log.
#[test]
fn serve_at_trace_logs_no_dependency_below_warn_and_no_key() {
    let (token, api_key) = ("tok-serve-trace-5f1c", "key-serve-trace-9a2e");
    let log = std::env::temp_dir().join(format!("serve-trace-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    let (url, mut child) = serve_logging_to(
        &[
            ("RUST_LOG", "trace"),
            ("BEARER_TOKEN", token),
            ("AMPLITUDE_API_KEY", api_key),
        ],
        Stdio::from(file),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let statuses = runtime.block_on(async {
        amplitude_client::install_crypto_provider();
        let c = reqwest::Client::new();
        let mut statuses = Vec::new();
        for bearer in [token, "forged-token"] {
            let status = c
                .post(format!("{url}/events"))
                .header("authorization", format!("Bearer {bearer}"))
                .body(json!({"type": "track", "event": "A", "userId": "user-1", "messageId": "m-trace"}).to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            statuses.push(status);
        }
        statuses
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert_eq!(statuses, [200, 401], "{text}");
    assert!(
        text.contains(" INFO pipeline::function: request handled"),
        "{text}"
    );
    assert!(!text.contains(token) && !text.contains(api_key), "{text}");
    let own = [
        "pipeline",
        "amplitude_client",
        "amplitude_wire",
        "mapping",
        "segment_amplitude",
        "amplitude_emulator",
    ];
    for line in text.lines() {
        let mut words = line.split_whitespace().skip(1);
        let (Some(level), Some(target)) = (words.next(), words.next()) else {
            continue;
        };
        if ["TRACE", "DEBUG", "INFO"].contains(&level) {
            let crate_name = target
                .split("::")
                .next()
                .unwrap_or_default()
                .trim_end_matches(':');
            assert!(
                own.contains(&crate_name),
                "a dependency's line below WARN: {line}"
            );
        }
    }
}
