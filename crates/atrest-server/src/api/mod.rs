//! The HTTP surface. One handler receives every request, so that authentication runs
//! before routing and validation (the Azure SDK's first request to an origin carries no
//! token and no body, and must get the 401 challenge whatever its path), and so that the
//! AKV path quirks (`/keys/{name}/` for "latest", `/keys/{name}//decrypt`) are parsed
//! exactly. Errors are mapped to HTTP here and nowhere else.

mod admin;
mod data;
mod json;
mod keys;
mod openapi;

use atrest_vault::model::VaultInfo;
use atrest_vault::{Principal, VaultError, VaultService};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// `api-version` values the SDKs send (all treated alike).
const API_VERSIONS: &[&str] = &["2016-10-01", "7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01"];

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
    /// Warnings for `/readyz`.
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
        let inner = match &e {
            VaultError::Forbidden { reason, .. } => Some(reason.code()),
            _ => None,
        };
        Self { status, code: e.code().into(), message: e.to_string(), inner, challenge: None, retry_after: None }
    }
}

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
        resp
    }
}

/// A parsed, authenticated request, as the route handlers see it.
pub(crate) struct Ctx<'a> {
    pub svc: &'a VaultService,
    pub metrics: &'a crate::metrics::Metrics,
    pub vault: VaultInfo,
    pub principal: Principal,
    /// `https://host[:port]` as the client addressed us.
    pub origin: String,
    pub api_version: String,
    pub query: HashMap<String, String>,
    pub body: Bytes,
}

impl Ctx<'_> {
    pub(crate) async fn allow(&self, permission: atrest_vault::Permission, key: Option<&str>) -> Result<(), ApiError> {
        Ok(self.svc.authorize(&self.vault, &self.principal, permission, key).await?)
    }

    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        // serde's messages can quote the offending value, which may be key material in an
        // import: report only where and what kind of error it is.
        serde_json::from_slice(&self.body).map_err(|e| {
            let kind = match e.classify() {
                serde_json::error::Category::Data => "a member is missing or has the wrong type",
                _ => "it is not well-formed JSON",
            };
            ApiError::bad(format!(
                "the request body does not fit this operation: {kind} (line {}, column {})",
                e.line(),
                e.column()
            ))
        })
    }
}

fn host_of(headers: &HeaderMap, uri: &Uri) -> Option<String> {
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

/// Which vault a host name addresses: `NAME.D` with `--vault-domain D`, else the default.
fn vault_name(state: &AppState, host: &str) -> Option<String> {
    let bare = split_host(host).0.to_ascii_lowercase();
    if let Some(d) = &state.vault_domain
        && let Some(name) = bare.strip_suffix(&format!(".{d}"))
    {
        return (!name.contains('.')).then(|| name.to_string());
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

/// The single entry point.
pub async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
) -> Response {
    let started = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let label = route_label(&method, uri.path());
    let method_name = method.as_str().to_string();
    let probe = matches!(label.as_str(), "/healthz" | "/readyz" | "/metrics" | "/openapi.json");
    let rolled_back =
        || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", crate::anchor::PUBLIC_ROLLBACK);
    // A database went back under the server: nothing more is carried out or answered.
    if !probe && state.anchor.rolled_back().is_some() {
        let resp = rolled_back().into_response();
        state.metrics.request(&label, &method_name, resp.status().as_u16(), started.elapsed().as_secs_f64());
        return resp;
    }
    let result = if uri.path() == "/data" || uri.path().starts_with("/data/") {
        // The data API streams blob bodies; it reads other bodies itself.
        data::route(&state, &method, &uri, &headers, body).await
    } else {
        match read_body(body, MAX_BODY, "").await {
            Ok(bytes) => route(&state, method, uri, headers, bytes).await,
            Err(e) => Err(e),
        }
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    // Commit, anchor, then acknowledge: whatever this request committed is recorded in
    // the rollback anchor before its answer leaves (one shared write for concurrent ones).
    if !probe && let Err(e) = state.anchor.sync().await {
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

/// Refuses a request over the principal's rate limit with 429 and `Retry-After`.
fn rate_limit(state: &AppState, principal: &Principal) -> Result<(), ApiError> {
    state.limiter.check(&principal.id).map_err(|wait| {
        state.metrics.rate_limited();
        ApiError {
            retry_after: Some(wait),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Throttled",
                format!(
                    "principal {} is over its request rate limit; retry after {wait} s, or ask the operator to raise --rate-limit",
                    principal.name
                ),
            )
        }
    })
}

async fn route(
    state: &AppState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let path = uri.path().to_string();
    if method == Method::GET && (path == "/healthz" || path == "/readyz") {
        return Ok(health(state, &path));
    }
    if method == Method::GET && path == "/metrics" && state.metrics_enabled {
        // Metrics name vaults and keys of every tenant: a scraper's own secret, or a
        // deployment admin's token.
        let bearer = bearer_token(&headers);
        let allowed = match (&state.metrics_token, bearer) {
            (Some(secret), Some(b)) => {
                atrest_crypto::secret::constant_time_eq(secret.expose_secret(), b.trim().as_bytes())
            }
            (None, Some(_)) => {
                authenticate(state, &headers).await?.is_some_and(|p| p.role == atrest_vault::Role::DeploymentAdmin)
            }
            (_, None) => false,
        };
        if !allowed {
            state.metrics.auth_failure(if bearer.is_some() { "invalid" } else { "missing" });
            return Err(ApiError {
                challenge: Some("Bearer".into()),
                ..ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "/metrics needs the metrics token (--metrics-token-file) or a deployment admin's token",
                )
            });
        }
        let mut text = state.metrics.render(state.svc.audit_append_counts());
        text.push_str(&state.store.metrics().render());
        let mut r = (StatusCode::OK, text).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
        return Ok(r);
    }
    if method == Method::GET && path == "/openapi.json" {
        return Ok(ok(openapi::document()));
    }
    if method == Method::GET && path == "/audit/signing-key" {
        // Public: anyone holding a checkpoint must be able to verify it.
        return Ok(ok(state.svc.audit_signing_jwk().await?));
    }
    let host = host_of(&headers, &uri).ok_or_else(|| ApiError::bad("the request has no Host"))?;
    if path == "/admin" || path.starts_with("/admin/") {
        let actor = require_principal(state, &headers).await?;
        let segments: Vec<&str> = path["/admin".len()..].trim_matches('/').split('/').collect();
        let ctx = admin::AdminCtx { state, actor, host, body };
        return admin::dispatch(&ctx, &method, &segments).await;
    }
    let vault_name = vault_name(state, &host)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "VaultNotFound", format!("no vault answers at {host}")))?;
    let vault = match state.svc.vault(&vault_name).await {
        // The platform namespace answers to no customer-facing request.
        Ok(v) if atrest_vault::platform::is_platform(&v.name) => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "VaultNotFound", format!("no vault named {vault_name}")));
        }
        Ok(v) => v,
        Err(VaultError::NotFound(_)) => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "VaultNotFound", format!("no vault named {vault_name}")));
        }
        Err(e) => return Err(e.into()),
    };
    let origin = format!("https://{host}");
    // Authenticate before anything else.
    // The SDK accepts the challenge only if the vault's host ends with "." + the
    // resource's host: for NAME.D that is D (with the port); a bare host or IP needs the
    // client's verify_challenge_resource=False.
    let resource = match &state.vault_domain {
        Some(d) if vault.name != state.default_vault => format!("{d}{}", split_host(&host).1),
        _ => host.clone(),
    };
    let challenge = format!(
        "Bearer authorization=\"https://login.atrest.invalid/{}\", resource=\"https://{resource}\"",
        vault.tenant_id
    );
    let Some(principal) = authenticate(state, &headers).await? else {
        // The SDK's first request carries no token by design: count only bad ones.
        if headers.contains_key(header::AUTHORIZATION) {
            state.metrics.auth_failure("invalid");
        }
        return Err(ApiError {
            challenge: Some(challenge),
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "a valid bearer token is required: send Authorization: Bearer <token>",
            )
        });
    };
    rate_limit(state, &principal)?;
    // Another tenant's vault does not exist for this caller, as in the admin API (a 403
    // would say it does); the deployment admin knows every vault and gets the 403.
    if principal.tenant_id != vault.tenant_id && principal.role != atrest_vault::Role::DeploymentAdmin {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "VaultNotFound", format!("no vault named {vault_name}")));
    }
    let query: HashMap<String, String> =
        axum::extract::Query::<HashMap<String, String>>::try_from_uri(&uri).map(|q| q.0).unwrap_or_default();
    let api_version = query
        .get("api-version")
        .cloned()
        .ok_or_else(|| ApiError::bad("the api-version query parameter is required, e.g. ?api-version=7.5"))?;
    if !API_VERSIONS.contains(&api_version.as_str()) {
        return Err(ApiError::bad(format!(
            "unsupported api-version {api_version}; supported: {}",
            API_VERSIONS.join(", ")
        )));
    }
    let ctx = Ctx { svc: &state.svc, metrics: &state.metrics, vault, principal, origin, api_version, query, body };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    keys::dispatch(&ctx, &method, &segments).await
}

/// The `Authorization: Bearer` credential, if any.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer "))
}

/// The authenticated, rate-limited caller of the admin and data APIs (a plain `Bearer`
/// challenge when there is no valid token).
async fn require_principal(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let Some(actor) = authenticate(state, headers).await? else {
        state.metrics.auth_failure(if headers.contains_key(header::AUTHORIZATION) { "invalid" } else { "missing" });
        return Err(ApiError {
            challenge: Some("Bearer".into()),
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "a valid bearer token is required: send Authorization: Bearer <token>",
            )
        });
    };
    rate_limit(state, &actor)?;
    Ok(actor)
}

/// The principal a request's bearer token names; `None` when there is no valid one.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
    match bearer_token(headers) {
        None => Ok(None),
        Some(t) => match state.svc.authenticate(t.trim()).await {
            Ok(p) => Ok(Some(p)),
            Err(VaultError::Unauthenticated(_)) => Ok(None),
            Err(e) => Err(e.into()),
        },
    }
}

fn health(state: &AppState, path: &str) -> Response {
    if path == "/healthz" {
        return (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response();
    }
    if state.anchor.rolled_back().is_some() {
        let body = json!({"status": "rolled-back", "error": crate::anchor::PUBLIC_ROLLBACK});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    (StatusCode::OK, axum::Json(json!({"status": "ready", "warnings": state.warnings}))).into_response()
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
