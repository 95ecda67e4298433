//! Authentication as middleware, one layer per kind of front end. Each runs before the
//! body is read or parsed: the Azure SDK's first request to an origin carries no token
//! (and `Content-Length: 0`) and must get the 401 challenge whatever its path, before any
//! 404. A layer that lets a request through leaves the caller in its extensions.

use super::{ApiError, AppState, host_of, split_host};
use atrest_vault::model::VaultInfo;
use atrest_vault::{Principal, VaultError};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The caller of an AKV request, as [`akv`] found it.
#[derive(Clone)]
pub(crate) struct AkvCaller {
    /// The vault this origin serves.
    pub vault: VaultInfo,
    pub principal: Principal,
    /// What the request may do, read with the vault and the token in one statement.
    pub auth: Arc<atrest_vault::RequestAuth>,
    /// `https://host[:port]` as the client addressed us (ids in answers use it).
    pub origin: String,
}

/// The `Authorization: Bearer` credential, if any.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer "))
}

/// The principal a request's bearer token names; `None` when there is no valid one.
pub(crate) async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
    match bearer_token(headers) {
        None => Ok(None),
        Some(t) => match state.svc.authenticate(t.trim()).await {
            Ok(p) => Ok(Some(p)),
            Err(VaultError::Unauthenticated(_)) => Ok(None),
            Err(e) => Err(e.into()),
        },
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

fn unauthorized(challenge: String) -> ApiError {
    ApiError {
        challenge: Some(challenge),
        ..ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "a valid bearer token is required: send Authorization: Bearer <token>",
        )
    }
}

/// The admin and data APIs: a valid bearer token (else a plain `Bearer` challenge), within
/// its rate limit; the [`Principal`] goes into the request's extensions.
pub(crate) async fn bearer(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let actor = match authenticate(&state, req.headers()).await {
        Ok(Some(actor)) => actor,
        Ok(None) => {
            let why = if req.headers().contains_key(header::AUTHORIZATION) { "invalid" } else { "missing" };
            state.metrics.auth_failure(why);
            return unauthorized("Bearer".into()).into_response();
        }
        Err(e) => return e.into_response(),
    };
    if let Err(e) = rate_limit(&state, &actor) {
        return e.into_response();
    }
    req.extensions_mut().insert(actor);
    next.run(req).await
}

/// The AKV front end: the vault the origin serves, then the AKV challenge for a request
/// without a valid token (naming the vault's tenant, as the SDK expects), the rate limit,
/// and the tenant rule; the [`AkvCaller`] goes into the request's extensions.
pub(crate) async fn akv(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let local_port = req.extensions().get::<crate::conn::LocalPort>().map(|p| p.0);
    let key = super::keys::key_asked(req.method(), req.uri().path());
    let secret = super::secrets::secret_asked(req.method(), req.uri().path());
    let asked = |x: &Option<(String, String)>| x.as_ref().map(|(n, v)| (n.clone(), v.clone()));
    let (key, secret) = (asked(&key), asked(&secret));
    let named = [key.as_ref(), secret.as_ref()].map(|x| x.map(|(n, v)| (n.as_str(), v.as_str())));
    match akv_caller(&state, req.headers(), req.uri(), local_port, named).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Reads a request's authorization again (its body took long to arrive): the same read as
/// at its start, and the same refusals.
pub(crate) async fn reauthorize(
    state: &AppState,
    headers: &HeaderMap,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    caller: AkvCaller,
) -> Result<AkvCaller, ApiError> {
    let key = super::keys::key_asked(method, uri.path());
    let secret = super::secrets::secret_asked(method, uri.path());
    let named = [key.as_ref(), secret.as_ref()].map(|x| x.map(|(n, v)| (n.as_str(), v.as_str())));
    let auth =
        state.svc.request_auth(&caller.vault.name, bearer_token(headers).map(str::trim), named[0], named[1]).await?;
    let Some(principal) = auth.principal.clone() else {
        return Err(unauthorized(format!(
            "Bearer authorization=\"https://login.atrest.invalid/{}\"",
            auth.vault.tenant_id
        )));
    };
    if principal.tenant_id != auth.vault.tenant_id && principal.role != atrest_vault::Role::DeploymentAdmin {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "VaultNotFound",
            format!("no vault named {}", auth.vault.name),
        ));
    }
    Ok(AkvCaller { vault: auth.vault.clone(), principal, auth: Arc::new(auth), origin: caller.origin })
}

async fn akv_caller(
    state: &AppState,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    local_port: Option<u16>,
    [key, secret]: [Option<(&str, &str)>; 2],
) -> Result<AkvCaller, ApiError> {
    let host = host_of(headers, uri).ok_or_else(|| ApiError::bad("the request has no Host"))?;
    let vault_name = super::vault_at(state, &host, local_port)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "VaultNotFound", format!("no vault answers at {host}")))?;
    let no_vault = || ApiError::new(StatusCode::NOT_FOUND, "VaultNotFound", format!("no vault named {vault_name}"));
    // The vault, the token's principal and its policy (and the key a key operation
    // names) in one read.
    let bearer = bearer_token(headers).map(str::trim);
    let auth = match state.svc.request_auth(&vault_name, bearer, key, secret).await {
        // The platform namespace answers to no customer-facing request.
        Ok(a) if atrest_vault::platform::is_platform(&a.vault.name) => return Err(no_vault()),
        Ok(a) => a,
        Err(VaultError::NotFound(_)) => return Err(no_vault()),
        Err(e) => return Err(e.into()),
    };
    let vault = auth.vault.clone();
    // The SDK accepts the challenge only if the vault's host ends with "." + the
    // resource's host: for NAME.D that is D (with the port); a bare host or IP needs the
    // client's verify_challenge_resource=False.
    let resource = match &state.vault_domain {
        Some(d) if vault.name != state.default_vault => format!("{d}{}", split_host(&host).1),
        _ => host.clone(),
    };
    let Some(principal) = auth.principal.clone() else {
        // The SDK's first request carries no token by design: count only bad ones.
        if headers.contains_key(header::AUTHORIZATION) {
            state.metrics.auth_failure("invalid");
        }
        return Err(unauthorized(format!(
            "Bearer authorization=\"https://login.atrest.invalid/{}\", resource=\"https://{resource}\"",
            vault.tenant_id
        )));
    };
    rate_limit(state, &principal)?;
    // Another tenant's vault does not exist for this caller, as in the admin API (a 403
    // would say it does); the deployment admin knows every vault and gets the 403.
    if principal.tenant_id != vault.tenant_id && principal.role != atrest_vault::Role::DeploymentAdmin {
        return Err(no_vault());
    }
    Ok(AkvCaller { vault, principal, auth: Arc::new(auth), origin: format!("https://{host}") })
}
