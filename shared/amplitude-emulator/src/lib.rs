//! A local Amplitude for tests and the local runner: a real HTTP server on 127.0.0.1 serving
//! `/2/httpapi`, `/batch`, `/identify`, `/groupidentify`, `/usermap` and
//! `/api/2/deletions/users` with the validations, limits and response bodies of
//! `amplitude-api.md`, plus fault injection and inspection:
//!
//! * `POST /_emulator/faults` — a JSON array of [`Fault`]s to serve next, in order;
//! * `GET /_emulator/ingested` — what was accepted ([`Ingested`]), with counts per `insert_id`;
//! * `GET|PUT /_emulator/config` — the [`EmulatorConfig`];
//! * `POST /_emulator/reset` — forget everything but the config.
//!
//! In-process, [`Emulator`] offers the same operations directly.

mod config;
mod events;
mod faults;
mod forms;
mod privacy;
mod store;
mod users;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub use config::EmulatorConfig;
pub use faults::{Chaos, Fault, FaultAction};
pub use store::{DeletionJob, Ingested, InsertIdCount, Store};
pub use users::{Groups, Users};

/// Amplitude's checks of one ingestion request, the ones the server makes before rate limits
/// (body size, required fields, the API key, each item's fields), without storing anything or
/// serving a fault: `Err` is the answer it would send. `path` is `/2/httpapi`, `/batch`,
/// `/identify`, `/groupidentify` or `/usermap`; other paths are not checked. An oracle: the
/// `map_line` fuzz target checks that every request the mapping plans passes them.
pub fn check_request(config: &EmulatorConfig, path: &str, body: &[u8]) -> Result<(), (u16, Value)> {
    let form = |kind| {
        let fields = forms::fields(None, body);
        forms::validate(config, kind, &fields, body.len()).map(drop)
    };
    match path {
        "/2/httpapi" => events::validate(config, events::Kind::HttpApi, body).map(drop),
        "/batch" => events::validate(config, events::Kind::Batch, body).map(drop),
        "/identify" => form(forms::Kind::Identify),
        "/groupidentify" => form(forms::Kind::GroupIdentify),
        "/usermap" => form(forms::Kind::UserMap),
        _ => Ok(()),
    }
}

/// Shared state of one emulator.
#[derive(Clone, Default)]
pub struct AppState {
    store: Arc<Mutex<Store>>,
}

impl AppState {
    pub fn new(config: EmulatorConfig) -> Self {
        AppState {
            store: Arc::new(Mutex::new(Store::new(config))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A handler never panics while holding the lock; recover the data if one ever did.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.lock().faults.extend(faults);
    }

    pub fn ingested(&self) -> Ingested {
        self.lock().ingested.clone()
    }

    pub fn config(&self) -> EmulatorConfig {
        (*self.lock().config).clone()
    }

    pub fn set_config(&self, config: EmulatorConfig) {
        self.lock().config = Arc::new(config);
    }

    /// The current config, without holding the lock afterwards.
    fn shared_config(&self) -> Arc<EmulatorConfig> {
        self.lock().config.clone()
    }

    pub fn reset(&self) {
        self.lock().reset();
    }

    /// Marks a user as known to Amplitude (deletions of unknown users are refused).
    pub fn add_known_user(&self, user: &str) {
        self.lock().known_users.insert(user.to_owned());
    }

    /// Counts the request and takes the next fault scripted for `route`, after its delay.
    async fn begin(&self, route: &str) -> Option<FaultAction> {
        let fault = {
            let mut store = self.lock();
            store.count_request(route);
            store.take_fault(route)
        }?;
        if fault.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
        }
        Some(fault.action)
    }
}

/// The emulator's routes, for serving on a listener of one's own (the local runner mounts it).
/// Every Amplitude route is also served under `/_host/{host}/…`, recording the host, for
/// clients whose base URL names the real host (`http://127.0.0.1:PORT/_host/{host}`).
pub fn router(state: AppState) -> Router {
    let hosted = amplitude_routes().layer(axum::middleware::from_fn_with_state(
        state.clone(),
        record_host,
    ));
    amplitude_routes()
        .nest("/_host/{host}", hosted)
        .route("/_emulator/faults", post(admin_faults))
        .route("/_emulator/ingested", get(admin_ingested))
        .route("/_emulator/config", get(admin_config).put(admin_set_config))
        .route("/_emulator/reset", post(admin_reset))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(64 << 20))
        .with_state(state)
}

fn amplitude_routes() -> Router<AppState> {
    Router::new()
        .route("/2/httpapi", post(httpapi))
        .route("/batch", post(batch))
        .route("/identify", post(identify))
        .route("/groupidentify", post(groupidentify))
        .route("/usermap", post(usermap))
        .route(
            "/api/2/deletions/users",
            post(delete_users).get(list_deletions),
        )
}

async fn record_host(
    State(s): State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let original = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.path().to_owned())
        .unwrap_or_default();
    if let Some(rest) = original.strip_prefix("/_host/") {
        *s.lock().ingested.hosts.entry(rest.to_owned()).or_default() += 1;
    }
    next.run(request).await
}

/// A running emulator on 127.0.0.1; stops when dropped.
pub struct Emulator {
    pub state: AppState,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Emulator {
    /// Starts on a free loopback port.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Self> {
        Self::start_on(config, 0).await
    }

    /// Starts on `127.0.0.1:port` (0 = any free port).
    pub async fn start_on(config: EmulatorConfig, port: u16) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let state = AppState::new(config);
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "emulator stopped");
            }
        });
        Ok(Emulator { state, addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the base URL to give the client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves until the task ends (for the command line).
    pub async fn wait(self) {
        let _ = (&mut { self }.task).await;
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn respond((status, body): (u16, Value)) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match body {
        Value::String(text) => (status, text).into_response(),
        body => (status, axum::Json(body)).into_response(),
    }
}

/// A response whose body fails after the headers: the client sees the connection cut.
fn reset() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("connection reset by the emulator"))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_LENGTH, "64")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// How a request is stored when a fault says "store, then answer something else".
#[derive(Debug, Clone, Copy)]
struct StoreThen {
    /// Only the first half of the items.
    half: bool,
    status: u16,
    after_ms: u64,
}

impl StoreThen {
    /// Waits, then answers the scripted status.
    async fn answer(self) -> Response {
        if self.after_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.after_ms)).await;
        }
        respond(events::error(self.status, "scripted by the emulator"))
    }
}

/// What a route does about the fault scripted for it.
enum Plan {
    /// Send this at once.
    Respond(Response),
    /// Store the request, then answer as scripted.
    StoreThen(StoreThen),
    /// Handle the request normally (or with a fault that needs its items).
    Normal,
}

/// The faults every route understands the same way.
fn common_fault(action: Option<FaultAction>) -> Plan {
    match action {
        Some(FaultAction::Reset) => Plan::Respond(reset()),
        Some(FaultAction::Status { status, body }) => Plan::Respond(respond((
            status,
            body.unwrap_or_else(|| json!({"code": status})),
        ))),
        Some(FaultAction::CodeInBody { code }) => Plan::Respond(respond(events::error(
            code,
            "Too many requests for some devices and users",
        ))),
        Some(FaultAction::AcceptHalf { status }) => Plan::StoreThen(StoreThen {
            half: true,
            status,
            after_ms: 0,
        }),
        Some(FaultAction::StoreThen { status, after_ms }) => Plan::StoreThen(StoreThen {
            half: false,
            status,
            after_ms,
        }),
        // Throttle, DailyQuota, InvalidIndices and IndicesPastTheRequest need the request's
        // items: the route handles them.
        _ => Plan::Normal,
    }
}

/// A fault that needs the request's items to build its answer.
enum Targeted {
    Throttle(bool, Vec<String>, Vec<String>),
    Invalid(Vec<usize>, String),
    PastTheEnd(String),
}

fn targeted(action: &Option<FaultAction>) -> Option<Targeted> {
    match action {
        Some(FaultAction::Throttle { users, devices }) => {
            Some(Targeted::Throttle(false, users.clone(), devices.clone()))
        }
        Some(FaultAction::DailyQuota { users, devices }) => {
            Some(Targeted::Throttle(true, users.clone(), devices.clone()))
        }
        Some(FaultAction::InvalidIndices { indices, field }) => {
            Some(Targeted::Invalid(indices.clone(), field.clone()))
        }
        Some(FaultAction::IndicesPastTheRequest { field }) => {
            Some(Targeted::PastTheEnd(field.clone()))
        }
        _ => None,
    }
}

/// The scripted answer for these items. For `Invalid`, listed indices past the request's end
/// are dropped (index 0 stands in when none is left), since Amplitude lists only events it
/// received, and the items named are recorded (`named_invalid`); `PastTheEnd` lists only such
/// indices, as a misbehaving server might, and names no item.
fn targeted_answer(s: &AppState, target: Targeted, items: &[Value]) -> (u16, Value) {
    match target {
        Targeted::Throttle(quota, users, devices) => targeted_429(items, quota, &users, &devices),
        Targeted::Invalid(indices, field) => {
            let mut idx: Vec<usize> = indices.into_iter().filter(|i| *i < items.len()).collect();
            if idx.is_empty() {
                idx.push(0);
            }
            let named = items.iter().enumerate().filter(|(i, _)| idx.contains(i));
            s.lock()
                .ingested
                .named_invalid
                .extend(named.map(|(_, item)| item.clone()));
            invalid_fields(field, idx)
        }
        Targeted::PastTheEnd(field) => {
            invalid_fields(field, vec![items.len(), items.len() + 70_000])
        }
    }
}

/// Amplitude's 400 listing `indices` under `events_with_invalid_fields.<field>`.
fn invalid_fields(field: String, indices: Vec<usize>) -> (u16, Value) {
    events::answer(
        400,
        amplitude_wire::ErrorBody {
            events_with_invalid_fields: Some([(field, indices)].into()),
            ..amplitude_wire::ErrorBody::new(400, "Invalid field values on some events")
        },
    )
}

async fn httpapi(State(s): State<AppState>, body: Bytes) -> Response {
    events_route(s, events::Kind::HttpApi, body).await
}

async fn batch(State(s): State<AppState>, body: Bytes) -> Response {
    events_route(s, events::Kind::Batch, body).await
}

async fn events_route(s: AppState, kind: events::Kind, body: Bytes) -> Response {
    let action = s.begin(kind.path()).await;
    let targeted = targeted(&action);
    let store_then = match common_fault(action) {
        Plan::Respond(response) => return response,
        Plan::StoreThen(then) => Some(then),
        Plan::Normal => None,
    };
    // Parsing and validation need only the config: do them outside the store's lock.
    let mut accepted = match events::validate(&s.shared_config(), kind, &body) {
        Ok(a) => a,
        Err(e) => return respond(e),
    };
    if let Some(t) = targeted {
        return respond(targeted_answer(&s, t, &accepted.events));
    }
    if let Some(then) = store_then {
        if then.half {
            accepted.events.truncate(accepted.events.len() / 2);
        }
        events::ingest(&mut s.lock(), kind, accepted, body.len());
        return then.answer().await;
    }
    let mut store = s.lock();
    if let Err(e) = events::throttle(&mut store, kind, &accepted) {
        return respond(e);
    }
    respond(events::ingest(&mut store, kind, accepted, body.len()))
}

/// A scripted 429 for the events of the named users/devices.
fn targeted_429(
    events: &[Value],
    quota: bool,
    users: &[String],
    devices: &[String],
) -> (u16, Value) {
    // Amplitude only names users and devices of the request itself: when none of the named
    // ones is in it, the user (or device) of the request's first item is named instead.
    let present = |field: &str, id: &String| {
        events
            .iter()
            .any(|e| e.get(field).and_then(Value::as_str) == Some(id.as_str()))
    };
    let mut over: Vec<((bool, String), u32)> = users
        .iter()
        .filter(|u| present("user_id", u))
        .map(|u| ((true, u.clone()), 45))
        .chain(
            devices
                .iter()
                .filter(|d| present("device_id", d))
                .map(|d| ((false, d.clone()), 45)),
        )
        .collect();
    if over.is_empty() {
        let first = events.first();
        let pick = |f: &str| {
            first
                .and_then(|e| e.get(f))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        if let Some(u) = pick("user_id") {
            over.push(((true, u), 45));
        } else if let Some(d) = pick("device_id") {
            over.push(((false, d), 45));
        }
    }
    let (status, mut body) = events::throttled_body(30, events, &over);
    if quota {
        for (from, to) in [
            ("throttled_users", "exceeded_daily_quota_users"),
            ("throttled_devices", "exceeded_daily_quota_devices"),
        ] {
            body[to] = body[from].take();
            body[from] = json!({});
        }
        body["throttled_events"] = json!([]);
    }
    (status, body)
}

async fn identify(State(s): State<AppState>, uri: Uri, body: Bytes) -> Response {
    form_route(s, forms::Kind::Identify, uri, body).await
}

async fn groupidentify(State(s): State<AppState>, uri: Uri, body: Bytes) -> Response {
    form_route(s, forms::Kind::GroupIdentify, uri, body).await
}

async fn usermap(State(s): State<AppState>, uri: Uri, body: Bytes) -> Response {
    form_route(s, forms::Kind::UserMap, uri, body).await
}

async fn form_route(s: AppState, kind: forms::Kind, uri: Uri, body: Bytes) -> Response {
    let action = s.begin(kind.path()).await;
    let targeted = targeted(&action);
    let store_then = match common_fault(action) {
        Plan::Respond(response) => return response,
        Plan::StoreThen(then) => Some(then),
        Plan::Normal => None,
    };
    let fields = forms::fields(uri.query(), &body);
    let accepted = match forms::validate(&s.shared_config(), kind, &fields, body.len()) {
        Ok(a) => a,
        Err(e) => return respond(e),
    };
    if let Some(t) = targeted {
        return respond(targeted_answer(&s, t, &accepted.items));
    }
    let mut items = accepted.items;
    if let Some(then) = store_then {
        if then.half {
            items.truncate(items.len() / 2);
        }
        forms::ingest(&mut s.lock(), kind, items);
        return then.answer().await;
    }
    respond(forms::ingest(&mut s.lock(), kind, items))
}

const DELETIONS: &str = "/api/2/deletions/users";

async fn delete_users(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    privacy_route(s, &headers, |store, key| {
        privacy::request(store, key, &body)
    })
    .await
}

async fn list_deletions(State(s): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    privacy_route(s, &headers, |store, key| {
        privacy::list(store, key, uri.query())
    })
    .await
}

/// The User Privacy API's common path: scripted faults, then Basic auth, then `op`.
async fn privacy_route(
    s: AppState,
    headers: &HeaderMap,
    op: impl FnOnce(&mut Store, &str) -> (u16, Value),
) -> Response {
    let action = s.begin(DELETIONS).await;
    let store_then = match common_fault(action) {
        Plan::Respond(response) => return response,
        Plan::StoreThen(then) => Some(then),
        Plan::Normal => None,
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    let answer = {
        let mut store = s.lock();
        match privacy::authenticate(&store, auth) {
            Ok(key) => op(&mut store, &key),
            Err(e) => e,
        }
    };
    match store_then {
        Some(then) => then.answer().await,
        None => respond(answer),
    }
}

async fn admin_faults(State(s): State<AppState>, body: Bytes) -> Response {
    match serde_json::from_slice::<Vec<Fault>>(&body) {
        Ok(faults) => {
            let n = faults.len();
            s.push_faults(faults);
            respond((200, json!({"queued": n})))
        }
        Err(e) => respond((400, json!({"error": format!("faults: {e}")}))),
    }
}

async fn admin_ingested(State(s): State<AppState>) -> Response {
    axum::Json(s.ingested()).into_response()
}

async fn admin_config(State(s): State<AppState>) -> Response {
    axum::Json(s.config()).into_response()
}

async fn admin_set_config(State(s): State<AppState>, body: Bytes) -> Response {
    match serde_json::from_slice::<EmulatorConfig>(&body) {
        Ok(c) => {
            s.set_config(c);
            respond((200, json!({"ok": true})))
        }
        Err(e) => respond((400, json!({"error": format!("config: {e}")}))),
    }
}

async fn admin_reset(State(s): State<AppState>) -> Response {
    s.reset();
    respond((200, json!({"ok": true})))
}

async fn fallback(request: Request) -> Response {
    if request.uri().path().starts_with("/2/") {
        respond((400, json!({"code": 400, "error": "Invalid request path"})))
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}
