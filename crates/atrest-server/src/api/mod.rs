//! The HTTP surface: one axum router per front end (probes, admin, data, the AKV keys
//! API), each behind its authentication layer (`auth.rs`: answered before the body is
//! read, since the Azure SDK's first request to an origin carries no token and no body
//! and must get the 401 challenge whatever its path), all under the `answer` layer
//! (rollback refusal, anchor update, metrics). Each front end maps domain errors to its
//! wire format; the JSON ones share [`status_of`].

mod admin;
mod auth;
mod data;
mod json;
mod keys;
mod openapi;
mod probes;
mod s3;
mod secrets;

use atrest_vault::commit_mark::Mark;
use atrest_vault::{VaultError, VaultService};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

/// Shared state of the handlers.
pub struct AppState {
    /// The vault service.
    pub svc: Arc<VaultService>,
    /// The data service.
    pub store: Arc<atrest_store::StoreService>,
    /// Vault answering at the bare host.
    pub default_vault: String,
    /// With `D`, vault `NAME` answers at `NAME.D`.
    pub vault_domain: Option<String>,
    /// Warnings for `/readyz` found at start.
    pub warnings: Vec<String>,
    /// Prometheus metrics.
    pub metrics: crate::metrics::Metrics,
    /// Serve `/metrics`.
    pub metrics_enabled: bool,
    /// The scraper's bearer secret for `/metrics` (else a deployment admin's token).
    pub metrics_token: Option<atrest_crypto::SecretBytes>,
    /// Per-principal rate limit.
    pub limiter: crate::ratelimit::RateLimiter,
    /// The rollback anchor, brought up to date before an answer leaves.
    pub anchor: Arc<crate::anchor::Anchor>,
    /// Which vault answers on which port of its own.
    pub vault_ports: atrest_store::VaultPorts,
    /// This node's listeners of the vault ports.
    pub(crate) listeners: Arc<crate::vault_ports::PortListeners>,
}

impl AppState {
    /// Warnings for `/readyz`.
    pub(crate) fn warnings(&self) -> Vec<String> {
        self.warnings.iter().cloned().chain(self.listeners.warnings()).collect()
    }
}

/// An error on its way to becoming a response.
pub(crate) struct ApiError {
    status: StatusCode,
    pub(crate) code: String,
    message: String,
    inner: Option<&'static str>,
    challenge: Option<String>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "BadParameter".into(),
            message: message.into(),
            inner: None,
            challenge: None,
            retry_after: None,
        }
    }

    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: message.into(), inner: None, challenge: None, retry_after: None }
    }
}

/// The HTTP status of an error kind, for the AKV, admin and data front ends.
pub(crate) fn status_of(kind: atrest_vault::ErrorKind) -> StatusCode {
    use atrest_vault::ErrorKind as K;
    match kind {
        K::InvalidInput => StatusCode::BAD_REQUEST,
        K::NotFound => StatusCode::NOT_FOUND,
        K::Conflict => StatusCode::CONFLICT,
        K::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        K::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        K::Forbidden => StatusCode::FORBIDDEN,
        K::Unauthenticated => StatusCode::UNAUTHORIZED,
        K::Corrupted | K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        K::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        let status = status_of(e.kind());
        if matches!(e, VaultError::Integrity { .. } | VaultError::Storage(_)) {
            tracing::error!(error = %e, "request failed on stored state");
        }
        let inner = e.inner_code();
        Self { status, code: e.code().into(), message: e.to_string(), inner, challenge: None, retry_after: None }
    }
}

/// The error code of an answer (a response extension), for the layers that record
/// outcomes (the admin audit).
#[derive(Clone)]
pub(crate) struct ErrorCode(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut err = json!({"code": self.code, "message": self.message});
        if let Some(i) = self.inner {
            err["innererror"] = json!({"code": i});
        }
        let mut resp = (self.status, axum::Json(json!({"error": err}))).into_response();
        if let Some(c) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        if let Some(s) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp.extensions_mut().insert(ErrorCode(self.code));
        resp
    }
}

pub(crate) fn host_of(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.as_str().to_string()))
}

/// Splits a Host header into (host, ":port" or "").
fn split_host(host: &str) -> (&str, &str) {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => host.split_at(i + 1),
            None => (host, ""),
        };
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => host.split_at(i),
        _ => (host, ""),
    }
}

/// Which vault a request (or a key URI) addresses: `NAME.D` with `--vault-domain D`,
/// else the vault whose own port `port` is (the port the request arrived on, or the key
/// URI names), else the default. (`None` for a host under the vault domain that cannot be
/// a vault name.)
fn vault_at(state: &AppState, host: &str, port: Option<u16>) -> Option<String> {
    let bare = split_host(host).0.to_ascii_lowercase();
    if let Some(d) = &state.vault_domain
        && let Some(name) = bare.strip_suffix(&format!(".{d}"))
    {
        return (!name.contains('.')).then(|| name.to_string());
    }
    if let Some(v) = port.and_then(|p| state.vault_ports.vault(p)) {
        return Some(v);
    }
    Some(state.default_vault.clone())
}

/// Largest request body outside blob uploads (records are at most 4 MiB).
const MAX_BODY: usize = atrest_store::MAX_RECORD + 64 * 1024;

/// The most a body outside blob uploads (at most [`MAX_BODY`]) may take to arrive.
const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// How much of an over-long body is read and thrown away before answering 413: closing a
/// connection with unread bytes makes the peer's TCP reset it, and most clients then
/// report the reset instead of the answer.
const DRAIN_MAX: usize = 64 * 1024 * 1024;

/// Reads a request body of at most `limit` bytes; a longer one is answered 413 after the
/// rest was drained (up to [`DRAIN_MAX`], within 10 s) so the client can read the answer.
/// A stalled body is the connection's idle timeout's business, not a total-time limit.
pub(crate) async fn read_body(body: Body, limit: usize, hint: &str) -> Result<Bytes, ApiError> {
    use futures_util::StreamExt as _;
    let unreadable = |e: axum::Error| ApiError::bad(format!("the request body could not be read: {e}"));
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    // A small body that trickles (a byte a minute keeps the connection's idle timeout
    // away) would hold a connection slot for ever: it has BODY_DEADLINE in all.
    let read = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(unreadable)?;
            seen = seen.saturating_add(chunk.len());
            if seen > limit {
                break;
            }
            buf.extend_from_slice(&chunk);
        }
        Ok::<(), ApiError>(())
    };
    tokio::time::timeout(BODY_DEADLINE, read).await.map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            format!("the request body did not arrive within {} s", BODY_DEADLINE.as_secs()),
        )
    })??;
    if seen <= limit {
        return Ok(Bytes::from(buf));
    }
    drop(buf);
    let drain = async {
        while let Some(Ok(chunk)) = stream.next().await {
            seen = seen.saturating_add(chunk.len());
            if seen > limit.saturating_add(DRAIN_MAX) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
    Err(ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestTooLarge",
        format!("the request body is over {limit} bytes{hint}"),
    ))
}

/// The HTTP surface: one router per front end, each behind the authentication it needs,
/// under the layer every answer passes (the rollback refusal, the anchor update, metrics).
///
/// A new front end is a module with a `router()` nested here (by path prefix, or by
/// listener as the S3 API will be) behind its own authentication layer, mapping domain
/// errors to its wire format in its own `From` impls.
pub fn router(state: Arc<AppState>) -> axum::Router {
    use axum::middleware::from_fn_with_state;
    let bearer = from_fn_with_state(state.clone(), auth::bearer);
    let admin = admin::router(&state).layer(bearer.clone()).with_state(state.clone());
    let data = data::router().layer(bearer).with_state(state.clone());
    let keys = keys::router().layer(from_fn_with_state(state.clone(), auth::akv)).with_state(state.clone());
    axum::Router::new()
        .merge(probes::router(state.metrics_enabled))
        .nest_service("/admin", admin)
        .nest_service("/data", data)
        .fallback_service(keys)
        .layer(from_fn_with_state(state.clone(), answer))
        .with_state(state)
}

/// The S3 front end, served on its own listener: the same outer layer as [`router`],
/// its authentication (SigV4) inside.
pub fn s3_router(state: Arc<AppState>) -> axum::Router {
    use axum::middleware::{from_fn, from_fn_with_state};
    s3::router(state.clone()).layer(from_fn_with_state(state, answer)).layer(from_fn(mark_s3))
}

/// Marks a request as the S3 front end's (for its metrics label).
#[derive(Clone, Copy)]
struct S3Request;

async fn mark_s3(mut req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    req.extensions_mut().insert(S3Request);
    next.run(req).await
}

/// The outer layer: nothing is carried out or answered once a database went back under
/// the server; whatever a request committed is in the rollback anchor before its answer
/// leaves (one shared write for concurrent requests); every answer is counted.
async fn answer(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let label = if req.extensions().get::<S3Request>().is_some() {
        s3::route_label(req.method(), req.uri().path())
    } else {
        route_label(req.method(), req.uri().path())
    };
    let method_name = req.method().as_str().to_string();
    let probe = probes::PATHS.contains(&label.as_str());
    // The Key Vault front end (the fallback router: not a probe, admin, data or S3): its
    // last write is always the request's audit entry, whose batch tells what to cover.
    let akv = !probe
        && req.extensions().get::<S3Request>().is_none()
        && !["/admin", "/data", "/audit/"].iter().any(|p| req.uri().path().starts_with(p));
    let rolled_back =
        || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", crate::anchor::PUBLIC_ROLLBACK);
    let (mut resp, mark) = if !probe && state.anchor.rolled_back().is_some() {
        (rolled_back().into_response(), Mark::Unknown)
    } else if akv {
        atrest_vault::commit_mark::scope(next.run(req)).await
    } else {
        (next.run(req).await, Mark::Unknown)
    };
    let synced = match mark {
        _ if probe => Ok(()),
        Mark::Seq(vault) => state.anchor.sync_to([vault, 0]).await,
        Mark::Nothing | Mark::Unknown => state.anchor.sync().await,
    };
    if let Err(e) = synced {
        resp = match e {
            // The details (files, sequences) are in the log, not for any client.
            crate::ServerError::Rollback(_) => rolled_back().into_response(),
            e => {
                tracing::error!(error = %e, "could not update the rollback anchor");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "the request was carried out but could not be recorded in the rollback anchor, so its answer is \
                     withheld; the operator must check the data directory's disk",
                )
                .into_response()
            }
        };
    }
    state.metrics.request(&label, &method_name, resp.status().as_u16(), started.elapsed().as_secs_f64());
    resp
}

/// A bounded name for a request's route (operation names, never raw paths).
fn route_label(method: &Method, path: &str) -> String {
    match path {
        "/healthz" | "/readyz" | "/metrics" | "/openapi.json" | "/audit/signing-key" => path.to_string(),
        p if p == "/admin" || p.starts_with("/admin/") => "admin".into(),
        p if p == "/data" || p.starts_with("/data/") => data::route_label(method, p),
        p => {
            let segments: Vec<&str> = p.trim_start_matches('/').split('/').collect();
            keys::describe(method, &segments).0
        }
    }
}

/// 200 with a JSON body.
pub(crate) fn ok(v: Value) -> Response {
    let mut r = (StatusCode::OK, axum::Json(v)).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    r
}

/// 204 without a body.
pub(crate) fn no_content() -> Response {
    Response::builder().status(StatusCode::NO_CONTENT).body(Body::empty()).unwrap_or_default()
}

/// 404 for a path that names nothing.
pub(crate) fn unknown_route(method: &Method, path: &[&str]) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "KeyNotFound", format!("no operation {method} /{}", path.join("/")))
}
