//! The HTTP surface: the `/sync` websocket, the facilitation API, health,
//! readiness and metrics. Handlers are small; the work happens in
//! [`crate::facilitation`] and [`crate::connection`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use klad_core::rules::{Phase, Role};
use klad_core::{MemberId, ProcessId};
use klad_sync::connect::{PUBLIC_KEY_HEADER, SYNC_PATH, SyncQuery, parse_actor};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{TokenClaims, TokenError, secrets_equal};
use crate::connection::{self, ConnectionShared};
use crate::directory::{peer_id_for, valid_device};
use crate::facilitation::{Facilitation, FacilitationError};

/// The websocket read buffer of a connection (bytes).
const READ_BUFFER: usize = 4 * 1024;

/// The most a connection's websocket write buffer may hold when the socket
/// does not take its bytes (bytes): room for a large whole-document message.
const MAX_WRITE_BUFFER: usize = 64 * 1024 * 1024;

/// Default lifetime of an invitation token.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The longest lifetime a token may have: a year (`1y`, 365.25 days).
pub const MAX_TTL: Duration = Duration::from_secs(31_557_600);

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

/// The router of the whole server.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = axum::extract::DefaultBodyLimit::max(64 * 1024);
    Router::new()
        .route(SYNC_PATH, get(sync))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/public-key", get(public_key))
        .route("/api/processes", post(create_process))
        .route("/api/processes/{pid}", get(summary))
        .route("/api/processes/{pid}/members", post(add_member))
        .route("/api/processes/{pid}/members/{member}/token", post(reissue))
        .route("/api/processes/{pid}/members/{member}/revoke", post(revoke))
        .route("/api/processes/{pid}/phase", post(set_phase))
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "There is nothing at this address. The sync endpoint is /sync; the API is under /api/processes.".into(),
            )
        })
        .layer(body_limit)
        .with_state(state)
}

fn bearer(headers: &HeaderMap) -> Option<String> {
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
    Query(q): Query<SyncQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let metrics = &state.shared.metrics;
    let token = q.token.clone().or_else(|| bearer(&headers));
    let claims = match authenticate(&state, token.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            metrics.connection_rejected(e.label());
            tracing::info!(reason = e.label(), "refused a sync connection");
            return ApiError::from(e).into_response();
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
        if let Err(e) = state
            .facilitation
            .register_device(&claims.process, &claims.member, &actor, key.as_ref())
            .await
        {
            metrics.connection_rejected("bad_actor");
            return ApiError::from(e).into_response();
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
fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("The request body is not the JSON this call expects ({e})."),
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
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let who = caller(&state, &headers)?;
    let req: CreateProcess = json_body(&body)?;
    let f = &state.facilitation;
    match who {
        Caller::Operator => {
            let created = f.create_process(&req.title).await?;
            Ok((StatusCode::CREATED, Json(json!({ "process": created }))).into_response())
        }
        Caller::Member(claims) => {
            let info = f.summary(&claims.process)?;
            let me = info
                .member(&claims.member)
                .map_err(FacilitationError::from)?;
            klad_core::may(me.role, info.phase, klad_core::Action::ManageMembers)
                .map_err(|r| ApiError(StatusCode::FORBIDDEN, r.message))?;
            let created = f.create_process(&req.title).await?;
            // The facilitator who opened it facilitates it, with a new token.
            let invitation = f
                .add_member(
                    &created.process_id,
                    None,
                    &me.name,
                    Role::Facilitator,
                    DEFAULT_TTL,
                    false,
                )
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
    Path(pid): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
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
    Path(pid): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let pid = ProcessId(pid);
    let by = acting_on(&state, &headers, &pid)?;
    let req: AddMember = json_body(&body)?;
    let role = parse_role(&req.role).map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    let ttl = ttl_or_default(req.ttl.as_deref())?;
    let inv = state
        .facilitation
        .add_member(&pid, by.as_ref(), &req.name, role, ttl, req.again)
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
    Path((pid, member)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let pid = ProcessId(pid);
    let by = acting_on(&state, &headers, &pid)?;
    let req: Reissue = if body.is_empty() {
        Reissue {
            ttl: None,
            revoke_earlier: false,
        }
    } else {
        json_body(&body)?
    };
    let ttl = ttl_or_default(req.ttl.as_deref())?;
    let out = state
        .facilitation
        .reissue(&pid, by.as_ref(), &member, ttl, req.revoke_earlier)
        .await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// Revokes every token of a member (`member`: their id, or their name).
async fn revoke(
    State(state): State<Arc<AppState>>,
    Path((pid, member)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pid = ProcessId(pid);
    let by = acting_on(&state, &headers, &pid)?;
    let out = state
        .facilitation
        .revoke(&pid, by.as_ref(), &member)
        .await?;
    Ok(Json(out).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPhase {
    phase: String,
}

async fn set_phase(
    State(state): State<Arc<AppState>>,
    Path(pid): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let pid = ProcessId(pid);
    let by = acting_on(&state, &headers, &pid)?;
    let req: SetPhase = json_body(&body)?;
    let phase = Phase::parse(req.phase.trim()).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "{:?} is not a phase; use drafting, consultation or final.",
                req.phase
            ),
        )
    })?;
    let info = state
        .facilitation
        .set_phase(&pid, by.as_ref(), phase)
        .await?;
    Ok(Json(info).into_response())
}
