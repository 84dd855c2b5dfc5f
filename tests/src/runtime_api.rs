//! A Lambda Runtime API emulator on loopback (lambda-toolchain §3b) that drives the real
//! function binaries: it hands out invocations on `/next` and collects their responses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc, oneshot};

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    Response(Value),
    Error(Value),
}

#[derive(Clone)]
struct Shared {
    first_next: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    next: Arc<Mutex<mpsc::Receiver<(String, Value, u64)>>>,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Invocation>>>>,
    init_errors: Arc<Mutex<Vec<Value>>>,
}

pub struct RuntimeApi {
    pub addr: SocketAddr,
    queue: mpsc::Sender<(String, Value, u64)>,
    shared: Shared,
    counter: std::sync::atomic::AtomicUsize,
}

impl RuntimeApi {
    pub async fn start() -> RuntimeApi {
        let (queue, rx) = mpsc::channel(64);
        let shared = Shared {
            first_next: Arc::new(std::sync::Mutex::new(None)),
            next: Arc::new(Mutex::new(rx)),
            waiting: Arc::new(Mutex::new(HashMap::new())),
            init_errors: Arc::new(Mutex::new(Vec::new())),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        RuntimeApi {
            addr,
            queue,
            shared,
            counter: Default::default(),
        }
    }

    /// Invokes the function with `payload` and a deadline `timeout` from now.
    pub async fn invoke(&self, payload: Value, timeout: Duration) -> Invocation {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("req-{n}");
        let (tx, rx) = oneshot::channel();
        self.shared.waiting.lock().await.insert(id.clone(), tx);
        let deadline_ms = pipeline::ops::now_ms() + timeout.as_millis() as u64;
        self.queue
            .send((id.clone(), payload, deadline_ms))
            .await
            .unwrap();
        tokio::time::timeout(timeout + Duration::from_secs(20), rx)
            .await
            .unwrap_or_else(|_| panic!("invocation {id} got no answer"))
            .unwrap()
    }

    /// When the function first asked for work (the end of its cold start).
    pub fn first_next(&self) -> Option<std::time::Instant> {
        *self.shared.first_next.lock().unwrap()
    }

    pub async fn init_errors(&self) -> Vec<Value> {
        self.shared.init_errors.lock().await.clone()
    }
}

async fn next(State(s): State<Shared>) -> (HeaderMap, String) {
    s.first_next
        .lock()
        .unwrap()
        .get_or_insert_with(std::time::Instant::now);
    let Some((id, payload, deadline)) = s.next.lock().await.recv().await else {
        // The test is over: leave the function waiting, as Lambda does between invocations.
        return std::future::pending().await;
    };
    let mut h = HeaderMap::new();
    h.insert(
        "lambda-runtime-aws-request-id",
        HeaderValue::from_str(&id).unwrap(),
    );
    h.insert(
        "lambda-runtime-deadline-ms",
        HeaderValue::from_str(&deadline.to_string()).unwrap(),
    );
    h.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:under-test"),
    );
    h.insert(
        "lambda-runtime-trace-id",
        HeaderValue::from_static("Root=1-00000000-000000000000000000000000"),
    );
    h.insert("content-type", HeaderValue::from_static("application/json"));
    (h, payload.to_string())
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()))
}

async fn response(State(s): State<Shared>, Path(id): Path<String>, body: String) -> StatusCode {
    if let Some(tx) = s.waiting.lock().await.remove(&id) {
        let _ = tx.send(Invocation::Response(parse(&body)));
    }
    StatusCode::ACCEPTED
}

async fn error(State(s): State<Shared>, Path(id): Path<String>, body: String) -> StatusCode {
    if let Some(tx) = s.waiting.lock().await.remove(&id) {
        let _ = tx.send(Invocation::Error(parse(&body)));
    }
    StatusCode::ACCEPTED
}

async fn init_error(State(s): State<Shared>, body: String) -> StatusCode {
    s.init_errors.lock().await.push(parse(&body));
    StatusCode::ACCEPTED
}
