//! The HTTP surface: the `/sync` websocket, the facilitation API, health,
//! readiness and metrics. Handlers are small; the work happens in
//! [`crate::facilitation`] and [`crate::connection`].
//!
//! Every route is in one table ([`routes`]), which `docs/openapi.yaml`
//! describes (a test holds them together) and the server serves at
//! [`OPENAPI_PATH`]. Every error, of every route, is a JSON sentence
//! `{"error": ...}`: the handlers say what is wrong and what to do, and an
//! outer layer ([`guard`]) turns anything else (a panic, one of axum's own
//! refusals) into one too. Facilitation calls run to their end in a task of
//! their own ([`complete`]), whatever the client does meanwhile.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use futures::FutureExt as _;
use klad_core::rules::{Phase, Role};
use klad_core::{MemberId, ProcessId};
use klad_sync::connect::{PUBLIC_KEY_HEADER, SYNC_PATH, SyncQuery, parse_actor};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{TokenClaims, TokenError, secrets_equal};
use crate::connection::{self, ConnectionShared};
use crate::desk::ServerDesk;
use crate::directory::{peer_id_for, valid_device};
use crate::facilitation::{Facilitation, FacilitationError, Opener};
use crate::metrics::Metrics;

/// The websocket read buffer of a connection (bytes).
const READ_BUFFER: usize = 4 * 1024;

/// The most a connection's websocket write buffer may hold when the socket
/// does not take its bytes (bytes): room for a large whole-document message.
const MAX_WRITE_BUFFER: usize = 64 * 1024 * 1024;

/// Default lifetime of an invitation token.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The longest lifetime a token may have: a year (`1y`, 365.25 days).
pub const MAX_TTL: Duration = Duration::from_secs(31_557_600);

/// The largest request body a call takes (bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The OpenAPI description of this HTTP API, `docs/openapi.yaml`, compiled
/// in: the document served and the one in the repository are one file.
pub const OPENAPI_YAML: &str = include_str!("../../docs/openapi.yaml");

/// Where the server serves [`OPENAPI_YAML`].
pub const OPENAPI_PATH: &str = "/api/openapi.yaml";

/// Everything the handlers share.
pub struct AppState {
    /// What connections share (directory, metrics, ...).
    pub shared: Arc<ConnectionShared>,
    /// Facilitation (process documents, tokens).
    pub facilitation: Arc<Facilitation>,
    /// The operator's secret for the admin API.
    pub admin_secret: String,
    /// Most websocket connections open at once.
    pub max_connections: usize,
    /// How the web desk (klad-web, under `/desk`) runs.
    pub desk: klad_web::DeskConfig,
    /// With several nodes: relays requests for processes another node serves.
    pub relay: Option<Arc<crate::relay::Relay>>,
}

/// An error response: a status and a JSON body `{"error": sentence}`.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<FacilitationError> for ApiError {
    fn from(e: FacilitationError) -> Self {
        let status = match &e {
            FacilitationError::BadRequest(_) => StatusCode::BAD_REQUEST,
            FacilitationError::Forbidden(_) => StatusCode::FORBIDDEN,
            FacilitationError::NotFound(_) => StatusCode::NOT_FOUND,
            FacilitationError::Conflict(_) => StatusCode::CONFLICT,
            FacilitationError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            FacilitationError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        ApiError(StatusCode::UNAUTHORIZED, e.to_string())
    }
}

/// The methods routes answer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// GET (and HEAD).
    Get,
    /// POST.
    Post,
}

impl Verb {
    /// The method's name as OpenAPI writes it (`get`, `post`).
    pub fn openapi_name(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
        }
    }
}

/// One route: a method, a path (`{name}` is a path parameter, written as
/// OpenAPI and axum both write it) and its handler.
struct Route {
    verb: Verb,
    path: &'static str,
    handler: MethodRouter<Arc<AppState>>,
}

fn route<H, T>(verb: Verb, path: &'static str, handler: H) -> Route
where
    H: axum::handler::Handler<T, Arc<AppState>>,
    T: 'static,
{
    Route {
        verb,
        path,
        handler: on(verb.filter(), handler),
    }
}

/// The one table of the server's routes: [`router`] serves it, and
/// `docs/openapi.yaml` describes every entry (a test checks it).
fn route_table() -> Vec<Route> {
    use Verb::{Get, Post};
    vec![
        route(Get, SYNC_PATH, sync),
        route(Get, "/healthz", || async { "ok\n" }),
        route(Get, "/readyz", readyz),
        route(Get, "/metrics", metrics),
        route(Get, "/public-key", public_key),
        route(Get, OPENAPI_PATH, openapi),
        route(Post, "/api/processes", create_process),
        route(Get, "/api/processes/{pid}", summary),
        route(Post, "/api/processes/{pid}/members", add_member),
        route(Post, "/api/processes/{pid}/members/{member}/token", reissue),
        route(Post, "/api/processes/{pid}/members/{member}/revoke", revoke),
        route(Post, "/api/processes/{pid}/phase", set_phase),
    ]
}

/// Every route the server registers: method and path.
pub fn routes() -> Vec<(Verb, &'static str)> {
    route_table()
        .into_iter()
        .map(|r| (r.verb, r.path))
        .collect()
}

/// The router of the whole server.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES);
    let metrics = state.shared.metrics.clone();
    let relay = state.relay.clone();
    let mut app = Router::new();
    for r in route_table() {
        app = app.route(r.path, r.handler);
    }
    // The web desk: its own pages under /desk, over the same facilitation.
    let desk = klad_web::router(
        Arc::new(ServerDesk::new(state.facilitation.clone())),
        state.desk.clone(),
    );
    let mut app = app
        .with_state(state)
        .merge(desk)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("There is nothing at this address. The sync endpoint is {SYNC_PATH}; the API is under /api/processes, described at {OPENAPI_PATH}."),
            )
        })
        .layer(body_limit);
    if let Some(relay) = relay {
        app = app.layer(axum::middleware::from_fn_with_state(
            relay,
            crate::relay::layer,
        ));
    }
    app.layer(axum::middleware::from_fn_with_state(metrics, guard))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} does not take {method} requests (the Allow header lists those it takes); {OPENAPI_PATH} describes every call.",
            uri.path()
        ),
    )
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML).into_response()
}

/// The outermost layer. A panic while a request is handled becomes a 500
/// with a sentence (logged, and counted in `klad_http_panics_total`)
/// instead of a dropped connection; an error answer that is not JSON yet
/// (one of axum's own refusals) becomes a JSON sentence.
async fn guard(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(response) => as_json_error(response).await,
        Err(panic) => {
            metrics.http_panic();
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(%method, %path, panic = %what, "a request panicked; it was answered with 500");
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server failed while handling this request (an internal error, logged on the server). A facilitation call that fails this way has changed nothing; read the process (GET /api/processes/{process}) to be sure, then try again, and report the error if it happens again.".into(),
            )
            .into_response()
        }
    }
}

/// An error answer whose body is not JSON, with a JSON sentence instead
/// (status and headers kept); every other answer as it is, and so are the
/// web desk's HTML pages, which say what went wrong in the reader's language.
async fn as_json_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let detail = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let detail = if detail.is_empty() {
        status.canonical_reason().unwrap_or("").to_owned()
    } else {
        detail
    };
    let sentence = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "The request is too large ({detail}); a call takes at most {} KiB.",
            MAX_BODY_BYTES / 1024
        ),
        s if s.is_server_error() => format!(
            "The server could not handle this request ({detail}). Try again; if it keeps failing, check the server log."
        ),
        _ => format!(
            "The request was refused ({detail}). {OPENAPI_PATH} describes every call and what it takes."
        ),
    };
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    let (json_parts, json_body) = ApiError(status, sentence).into_response().into_parts();
    parts.headers.extend(json_parts.headers);
    Response::from_parts(parts, json_body)
}

/// Runs a facilitation call to its end in a task of its own. axum drops a
/// handler when its client hangs up; an act that had written a member's
/// contributions but not yet the process document would stop halfway. A
/// panic inside is raised again here, for [`guard`] to answer.
async fn complete<T, F>(call: F) -> Result<T, ApiError>
where
    F: Future<Output = Result<T, FacilitationError>> + Send + 'static,
    T: Send + 'static,
{
    match tokio::spawn(call).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is shutting down; try again when it is back.".into(),
            )),
        },
    }
}

/// A path that could not be read (not UTF-8 once percent-decoded).
fn path_error(e: PathRejection) -> ApiError {
    ApiError(
        StatusCode::BAD_REQUEST,
        format!(
            "The address could not be read ({}). Percent-encode process ids and member names as UTF-8.",
            e.body_text()
        ),
    )
}

/// A body that could not be read (too large, or cut off).
fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "The request body is larger than {} KiB, more than any call takes; send only the fields of the call.",
                MAX_BODY_BYTES / 1024
            ),
        );
    }
    ApiError(
        StatusCode::BAD_REQUEST,
        format!(
            "The request body could not be read ({}); send it again, whole.",
            e.body_text()
        ),
    )
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// Verifies a member token, checks the member is (still) in the process and
/// that the token has not been revoked.
fn authenticate(state: &AppState, token: Option<&str>) -> Result<TokenClaims, TokenError> {
    let token = token.ok_or(TokenError::Missing)?;
    let claims = state.facilitation.keys().verify(token)?;
    match state.facilitation.directory().membership(&claims.member) {
        Some((pid, _)) if pid == claims.process => {}
        _ => return Err(TokenError::UnknownMember),
    }
    if state
        .facilitation
        .is_revoked(&claims.member, claims.generation)
    {
        return Err(TokenError::Revoked);
    }
    Ok(claims)
}

async fn sync(
    State(state): State<Arc<AppState>>,
    query: Result<Query<SyncQuery>, QueryRejection>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let metrics = &state.shared.metrics;
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            metrics.connection_rejected("bad_query");
            return ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "The sync address's query could not be read ({}). It takes token, device, actor and key, each at most once.",
                    e.body_text()
                ),
            )
            .into_response();
        }
    };
    let token = q.token.clone().or_else(|| bearer(&headers));
    let claims = match authenticate(&state, token.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            metrics.connection_rejected(e.label());
            tracing::info!(reason = e.label(), "refused a sync connection");
            return ApiError::from(e).into_response();
        }
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            metrics.connection_rejected("not_websocket");
            return ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "{SYNC_PATH} is a websocket; open it with a websocket client (an HTTP GET with Connection: upgrade and Upgrade: websocket). This request is not one ({}).",
                    e.body_text()
                ),
            )
            .into_response();
        }
    };
    if let Some(d) = &q.device
        && !valid_device(d)
    {
        metrics.connection_rejected("bad_device");
        return ApiError(
            StatusCode::BAD_REQUEST,
            "The device name must be 1 to 64 letters, digits, '-' or '_'.".into(),
        )
        .into_response();
    }
    if state.shared.shutting_down.load(Ordering::Relaxed) {
        metrics.connection_rejected("shutting_down");
        return ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is shutting down; reconnect in a moment.".into(),
        )
        .into_response();
    }
    if metrics.open_connections() >= state.max_connections as i64 {
        metrics.connection_rejected("too_many_connections");
        tracing::warn!(member = %claims.member, "refused a sync connection: connection limit reached");
        return ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "The server has reached its limit of {} open connections; try again in a moment.",
                state.max_connections
            ),
        )
        .into_response();
    }
    let key = match q.key.as_deref().map(klad_sync::authorship::parse_key) {
        None => None,
        Some(Some(k)) if q.actor.is_some() => Some(k),
        Some(_) => {
            metrics.connection_rejected("bad_key");
            return ApiError(
                StatusCode::BAD_REQUEST,
                "The key must be the device's Ed25519 public key as 64 hexadecimal digits, given together with its actor (&actor=...).".into(),
            )
            .into_response();
        }
    };
    if let Some(hex) = &q.actor {
        let actor = match parse_actor(hex) {
            Some(a) => a,
            None => {
                metrics.connection_rejected("bad_actor");
                return ApiError(
                    StatusCode::BAD_REQUEST,
                    "The actor must be an Automerge actor id: 2 to 64 hexadecimal digits.".into(),
                )
                .into_response();
            }
        };
        let f = state.facilitation.clone();
        let (pid, member) = (claims.process.clone(), claims.member.clone());
        if let Err(e) =
            complete(async move { f.register_device(&pid, &member, &actor, key.as_ref()).await })
                .await
        {
            metrics.connection_rejected("bad_actor");
            return e.into_response();
        }
    }
    // After a start, the first use of a process checks its record against
    // its document (which wins), before any access is decided for it.
    if let Err(e) = state.facilitation.verify(&claims.process).await {
        tracing::error!(process = %claims.process, error = %e, "could not read a process document");
        return ApiError::from(e).into_response();
    }
    // The connection holds its process's hub (starting it if it is not
    // running) until it closes.
    let Ok(lease) = state.shared.hubs.lease(&claims.process) else {
        metrics.connection_rejected("shutting_down");
        return ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is shutting down; reconnect in a moment.".into(),
        )
        .into_response();
    };
    let peer_id = peer_id_for(&claims.member, q.device.as_deref());
    let shared = state.shared.clone();
    // Our own check closes oversized frames with a reason; axum's limit is
    // only a safety net above it.
    let hard_limit = shared
        .max_message_bytes
        .saturating_mul(2)
        .saturating_add(64 * 1024);
    // Small buffers, so an idle connection costs a few KiB: tungstenite
    // reads in 4 KiB steps (a larger frame grows the buffer while it is
    // read) and writes every frame straight through (the hub already sends
    // one coalesced message per document and window).
    let mut response = ws
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| {
            connection::run(
                shared,
                lease,
                socket,
                claims.member,
                claims.generation,
                peer_id,
            )
        });
    // Phones cache the key that verifies tokens, for peer links without a server.
    if let Ok(v) = header::HeaderValue::from_str(&state.facilitation.keys().public_paserk()) {
        response.headers_mut().insert(PUBLIC_KEY_HEADER, v);
    }
    response
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.shared.shutting_down.load(Ordering::Relaxed) {
        return ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is shutting down.".into(),
        )
        .into_response();
    }
    Json(json!({
        "ready": true,
        "processes": state.facilitation.directory().process_ids().len(),
        "open_connections": state.shared.metrics.open_connections(),
        "processes_loaded": state.shared.hubs.loaded(),
        "storage_errors": state.shared.metrics.storage_errors(),
    }))
    .into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.shared.metrics.render(),
    )
        .into_response()
}

async fn public_key(State(state): State<Arc<AppState>>) -> String {
    state.facilitation.keys().public_paserk()
}

/// Who is calling the API.
enum Caller {
    /// The operator (admin secret): acts as `by: None`.
    Operator,
    /// A member, with their token's claims.
    Member(TokenClaims),
}

fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = bearer(headers).ok_or(TokenError::Missing)?;
    if secrets_equal(&token, &state.admin_secret) {
        return Ok(Caller::Operator);
    }
    Ok(Caller::Member(authenticate(state, Some(&token))?))
}

fn forbidden_other_process() -> ApiError {
    ApiError(
        StatusCode::FORBIDDEN,
        "Your token is for another process; use the token you were given for this process.".into(),
    )
}

/// Reads a request body. Every body type refuses unknown fields
/// (`deny_unknown_fields`): a misspelt field is an error naming it rather
/// than silently ignored, and a value the call does not expect is not read
/// any further (development builds of the workspace have serde_json without
/// its nesting limit, turned on by the bindings tooling).
fn json_body<T: for<'de> Deserialize<'de>>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(body_error)?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "The request body is not the JSON this call expects ({e}). Send a JSON object with the fields {OPENAPI_PATH} lists for this call."
            ),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProcess {
    title: String,
}

async fn create_process(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = caller(&state, &headers)?;
    let req: CreateProcess = json_body(body)?;
    let f = state.facilitation.clone();
    match who {
        Caller::Operator => {
            let created = complete(async move { f.create_process(&req.title).await }).await?;
            Ok((StatusCode::CREATED, Json(json!({ "process": created }))).into_response())
        }
        Caller::Member(claims) => {
            let info = f.summary(&claims.process)?;
            let me = info
                .member(&claims.member)
                .map_err(FacilitationError::from)?;
            klad_core::may(me.role, info.phase, klad_core::Action::ManageMembers)
                .map_err(|r| ApiError(StatusCode::FORBIDDEN, r.to_string()))?;
            // The facilitator who opened it facilitates it, with a new token,
            // written together with the process.
            let name = me.name.clone();
            let (created, invitation) = complete(async move {
                let opener = Opener {
                    name: &name,
                    ttl: DEFAULT_TTL,
                };
                f.create_process_for(&req.title, opener).await
            })
            .await?;
            Ok((
                StatusCode::CREATED,
                Json(json!({ "process": created, "you": invitation })),
            )
                .into_response())
        }
    }
}

async fn summary(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(pid) = path.map_err(path_error)?;
    let pid = ProcessId(pid);
    if let Caller::Member(c) = caller(&state, &headers)?
        && c.process != pid
    {
        return Err(forbidden_other_process());
    }
    Ok(Json(state.facilitation.summary(&pid)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMember {
    name: String,
    role: String,
    /// Token lifetime, e.g. "30d" or "12h".
    ttl: Option<String>,
    /// Invite even though a member of that name exists (another person).
    #[serde(default)]
    again: bool,
}

/// Parses a token lifetime such as `30d`, `12h` or `90m`: more than zero,
/// at most [`MAX_TTL`].
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        format!("The lifetime {s:?} is not understood ({e}); write it like 30d, 12h or 90m.")
    })?;
    if d.is_zero() {
        return Err("A token lifetime must be longer than zero.".into());
    }
    if d > MAX_TTL {
        return Err(format!(
            "A token may be valid for at most a year (1y); {s:?} is longer. Give a shorter lifetime, and a new token when it runs out (klad-server members reissue)."
        ));
    }
    Ok(d)
}

/// The lifetime in a request, or the default.
fn ttl_or_default(ttl: Option<&str>) -> Result<Duration, ApiError> {
    match ttl {
        Some(t) => parse_ttl(t).map_err(|m| ApiError(StatusCode::BAD_REQUEST, m)),
        None => Ok(DEFAULT_TTL),
    }
}

/// The member a request acts as on process `pid`: `None` for the operator.
fn acting_on(
    state: &AppState,
    headers: &HeaderMap,
    pid: &ProcessId,
) -> Result<Option<MemberId>, ApiError> {
    match caller(state, headers)? {
        Caller::Operator => Ok(None),
        Caller::Member(c) if &c.process == pid => Ok(Some(c.member)),
        Caller::Member(_) => Err(forbidden_other_process()),
    }
}

/// Parses a role name with a sentence on failure.
pub fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s.trim()).ok_or_else(|| {
        format!("{s:?} is not a role; use drafter, official, facilitator or observer.")
    })
}

async fn add_member(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(pid) = path.map_err(path_error)?;
    let pid = ProcessId(pid);
    let by = acting_on(&state, &headers, &pid)?;
    let req: AddMember = json_body(body)?;
    let role = parse_role(&req.role).map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    let ttl = ttl_or_default(req.ttl.as_deref())?;
    let f = state.facilitation.clone();
    let inv = complete(async move {
        f.add_member(&pid, by.as_ref(), &req.name, role, ttl, req.again)
            .await
    })
    .await?;
    Ok((StatusCode::CREATED, Json(inv)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reissue {
    /// Token lifetime, e.g. "30d" or "12h".
    ttl: Option<String>,
    /// Revoke every earlier token of the member.
    #[serde(default)]
    revoke_earlier: bool,
}

/// A new token for a member (`member`: their id, or their name).
async fn reissue(
    State(state): State<Arc<AppState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path((pid, member)) = path.map_err(path_error)?;
    let pid = ProcessId(pid);
    let by = acting_on(&state, &headers, &pid)?;
    let req: Reissue = match body {
        Ok(b) if b.is_empty() => Reissue {
            ttl: None,
            revoke_earlier: false,
        },
        body => json_body(body)?,
    };
    let ttl = ttl_or_default(req.ttl.as_deref())?;
    let f = state.facilitation.clone();
    let out = complete(async move {
        f.reissue(&pid, by.as_ref(), &member, ttl, req.revoke_earlier)
            .await
    })
    .await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// Revokes every token of a member (`member`: their id, or their name).
async fn revoke(
    State(state): State<Arc<AppState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path((pid, member)) = path.map_err(path_error)?;
    let pid = ProcessId(pid);
    let by = acting_on(&state, &headers, &pid)?;
    let f = state.facilitation.clone();
    let out = complete(async move { f.revoke(&pid, by.as_ref(), &member).await }).await?;
    Ok(Json(out).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPhase {
    phase: String,
}

async fn set_phase(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(pid) = path.map_err(path_error)?;
    let pid = ProcessId(pid);
    let by = acting_on(&state, &headers, &pid)?;
    let req: SetPhase = json_body(body)?;
    let phase = Phase::parse(req.phase.trim()).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "{:?} is not a phase; use drafting, consultation or final.",
                req.phase
            ),
        )
    })?;
    let f = state.facilitation.clone();
    let info = complete(async move { f.set_phase(&pid, by.as_ref(), phase).await }).await?;
    Ok(Json(info).into_response())
}
