//! The deployment's own routes, on every origin and outside any vault: health and
//! readiness, Prometheus metrics, the OpenAPI document and the audit signing key.

use super::auth::{authenticate, bearer_token};
use super::{ApiError, AppState, ok, openapi};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::sync::Arc;

/// Paths this router serves (they skip the rollback refusal and the anchor update).
pub(crate) const PATHS: &[&str] = &["/healthz", "/readyz", "/metrics", "/openapi.json"];

/// The probe routes; `/metrics` only when metrics are enabled.
pub(crate) fn router(metrics_enabled: bool) -> axum::Router<Arc<AppState>> {
    let r = axum::Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, axum::Json(json!({"status": "ok"}))) }))
        .route("/readyz", get(ready))
        .route("/openapi.json", get(|| async { ok(openapi::document()) }))
        .route("/audit/signing-key", get(signing_key));
    if metrics_enabled { r.route("/metrics", get(metrics)) } else { r }
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.anchor.rolled_back().is_some() {
        let body = json!({"status": "rolled-back", "error": crate::anchor::PUBLIC_ROLLBACK});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    (StatusCode::OK, axum::Json(json!({"status": "ready", "warnings": state.warnings()}))).into_response()
}

/// Public: anyone holding a checkpoint must be able to verify it.
async fn signing_key(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    Ok(ok(state.svc.audit_signing_jwk().await?))
}

/// Metrics name vaults and keys of every tenant: a scraper's own secret, or a deployment
/// admin's token.
async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let bearer = bearer_token(&headers);
    let allowed = match (&state.metrics_token, bearer) {
        (Some(secret), Some(b)) => atrest_crypto::secret::constant_time_eq(secret.expose_secret(), b.trim().as_bytes()),
        (None, Some(_)) => {
            authenticate(&state, &headers).await?.is_some_and(|p| p.role == atrest_vault::Role::DeploymentAdmin)
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
    Ok(r)
}
