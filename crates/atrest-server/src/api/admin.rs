//! The admin API under `/admin/`: tenants, principals, tokens, vaults and access
//! policies, as JSON. It answers on every origin (it names vaults in its paths) and needs
//! a bearer token like the keys API. Scope rules live in `atrest_vault::admin`: the
//! deployment admin manages everything, a tenant admin only its own tenant (other tenants
//! answer 404), members only their own tokens.
//!
//! Every change is written to the audit trail before it runs ("attempt") and after
//! (its outcome): vault settings and policies on that vault's chain, everything else on
//! the deployment chain. If the attempt cannot be written, nothing runs.

use super::{ApiError, AppState, no_content, ok, split_host};
use atrest_vault::audit::DEPLOYMENT_CHAIN;
use atrest_vault::model::{VaultInfo, VaultSettings};
use atrest_vault::{
    IssuedToken, Permission, Principal, PrincipalKind, Role, SecretPermission, Tenant, TokenInfo, VaultService,
};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// An authenticated admin request: the caller and the host it addressed (for vault
/// URLs). Extracted from the request the [`super::auth::bearer`] layer let through.
pub(super) struct AdminCtx {
    pub state: Arc<AppState>,
    pub actor: Principal,
    /// The host the client addressed, for vault URLs.
    pub host: String,
}

impl axum::extract::FromRequestParts<Arc<AppState>> for AdminCtx {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let actor = parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", "a valid bearer token is required")
        })?;
        let host =
            super::host_of(&parts.headers, &parts.uri).ok_or_else(|| ApiError::bad("the request has no Host"))?;
        Ok(Self { state: state.clone(), actor, host })
    }
}

impl AdminCtx {
    fn svc(&self) -> &VaultService {
        &self.state.svc
    }

    /// The URL a vault answers at, as seen from the host the client used: `NAME.D` under
    /// a vault domain, else the vault's own port, else (the default vault) the host.
    fn vault_url(&self, v: &VaultInfo) -> String {
        let (bare, port) = split_host(&self.host);
        match (&self.state.vault_domain, self.state.vault_ports.port_of(&v.name)) {
            (Some(d), _) if v.name != self.state.default_vault => format!("https://{}.{d}{port}", v.name),
            (Some(d), _) if bare.ends_with(&format!(".{d}")) => format!("https://{d}{port}"),
            (None, Some(own)) => format!("https://{bare}:{own}"),
            _ => format!("https://{}", self.host),
        }
    }

    fn vault_json(&self, v: &VaultInfo, tenant: &str) -> Value {
        json!({
            "id": v.id,
            "name": v.name,
            "tenant": tenant,
            "url": self.vault_url(v),
            "retention_days": v.settings.retention_days,
            "purge_protection": v.settings.purge_protection,
            "allow_rsa1_5": v.settings.allow_rsa1_5,
        })
    }
}

fn tenant_json(t: &Tenant) -> Value {
    json!({"id": t.id, "name": t.name})
}

fn principal_json(p: &Principal, tenant: &str) -> Value {
    json!({
        "id": p.id,
        "tenant": tenant,
        "name": p.name,
        "kind": p.kind.as_str(),
        "role": p.role.as_str(),
        "disabled": p.disabled,
    })
}

fn token_json(t: &TokenInfo) -> Value {
    json!({"id": t.id, "created": t.created, "expires": t.expires, "revoked": t.revoked})
}

fn issued_json(t: &IssuedToken, principal: &str) -> Result<Value, ApiError> {
    let token = std::str::from_utf8(t.token.expose_secret())
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "token encoding"))?;
    Ok(json!({"id": t.id, "principal": principal, "token": token, "expires": t.expires}))
}

fn created(v: Value) -> Response {
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameIn {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalIn {
    name: String,
    #[serde(default = "default_kind")]
    kind: String,
    #[serde(default = "default_role")]
    role: String,
}

fn default_kind() -> String {
    "service".into()
}

fn default_role() -> String {
    "member".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalPatch {
    disabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenIn {
    /// Lifetime in seconds; none = until revoked.
    ttl_seconds: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VaultIn {
    name: String,
    retention_days: Option<i64>,
    purge_protection: Option<bool>,
    allow_rsa1_5: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VaultPatch {
    retention_days: Option<i64>,
    purge_protection: Option<bool>,
    allow_rsa1_5: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyIn {
    #[serde(default)]
    permissions: Vec<String>,
    /// A list of its own: key permissions never imply one.
    #[serde(default)]
    secret_permissions: Vec<String>,
}

/// What the audit trail calls a request: (chain selector, operation, target). `None`
/// for reads, which change nothing and are not recorded.
fn describe<'p>(method: &Method, path: &[&'p str]) -> Option<(Option<&'p str>, &'static str, String)> {
    let m = method.clone();
    Some(match (m, path) {
        (Method::POST, ["tenants"]) => (None, "create-tenant", String::new()),
        (Method::POST, ["tenants", t, "principals"]) => (None, "create-principal", (*t).to_string()),
        (Method::PATCH, ["tenants", t, "principals", p]) => (None, "update-principal", format!("{t}/{p}")),
        (Method::POST, ["tenants", t, "principals", p, "tokens"]) => (None, "issue-token", format!("{t}/{p}")),
        (Method::DELETE, ["tenants", t, "principals", p, "tokens", id]) => {
            (None, "revoke-token", format!("{t}/{p}/{id}"))
        }
        (Method::POST, ["tenants", t, "principals", p, "tokens", id, "rotate"]) => {
            (None, "rotate-token", format!("{t}/{p}/{id}"))
        }
        (Method::POST, ["tenants", t, "principals", p, "s3-keys"]) => (None, "issue-s3-key", format!("{t}/{p}")),
        (Method::DELETE, ["tenants", t, "principals", p, "s3-keys", id]) => {
            (None, "revoke-s3-key", format!("{t}/{p}/{id}"))
        }
        (Method::POST, ["tenants", t, "vaults"]) => (None, "create-vault", (*t).to_string()),
        (Method::PATCH, ["vaults", v]) => (Some(*v), "update-vault", (*v).to_string()),
        (Method::PUT, ["vaults", v, "policies", p]) => (Some(*v), "set-policy", (*p).to_string()),
        (Method::DELETE, ["vaults", v, "policies", p]) => (Some(*v), "remove-policy", (*p).to_string()),
        _ => return None,
    })
}

/// The admin front end, nested under `/admin` (behind [`super::auth::bearer`]), every
/// change audited by [`audited`].
pub(super) fn router(state: &Arc<AppState>) -> axum::Router<Arc<AppState>> {
    use axum::routing::{get, post, put};
    axum::Router::new()
        .route("/whoami", get(whoami))
        .route("/verify", post(verify))
        .route("/tenants", get(list_tenants).post(create_tenant))
        .route("/tenants/{t}", get(show_tenant))
        .route("/tenants/{t}/principals", get(list_principals).post(create_principal))
        .route("/tenants/{t}/principals/{p}", get(show_principal).patch(update_principal))
        .route("/tenants/{t}/principals/{p}/tokens", get(list_tokens).post(issue_token))
        .route("/tenants/{t}/principals/{p}/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/tenants/{t}/principals/{p}/tokens/{id}/rotate", post(rotate_token))
        .route("/tenants/{t}/principals/{p}/s3-keys", get(list_s3_keys).post(issue_s3_key))
        .route("/tenants/{t}/principals/{p}/s3-keys/{id}", axum::routing::delete(revoke_s3_key))
        .route("/tenants/{t}/vaults", get(list_vaults).post(create_vault))
        .route("/vaults/{v}", get(show_vault).patch(update_vault))
        .route("/vaults/{v}/policies", get(list_policies))
        .route("/vaults/{v}/policies/{p}", put(set_policy).delete(remove_policy))
        .fallback(unknown)
        .method_not_allowed_fallback(unknown)
        .layer(axum::middleware::from_fn_with_state(state.clone(), audited))
}

async fn unknown(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("no admin operation {method} /admin{}; see /openapi.json", uri.path().trim_end_matches('/')),
    )
}

/// Audits every change (see [`describe`]) around its handler: the attempt before (if it
/// cannot be written nothing runs), the outcome after. A change to a vault goes on that
/// vault's chain once the actor may see it, else on the deployment chain.
async fn audited(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().trim_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').collect();
    let Some((vault, op, target)) = describe(req.method(), &segments) else {
        return next.run(req).await;
    };
    let Some(actor) = req.extensions().get::<Principal>().cloned() else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    // Admin bodies hold names, roles, flags, settings, permissions and lifetimes, never
    // secrets (a token is only ever in a response).
    let body = match super::read_body(body, super::MAX_BODY, "").await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let target = match (op, request.get("name").and_then(Value::as_str)) {
        ("create-tenant", Some(n)) => n.to_string(),
        ("create-principal" | "create-vault", Some(n)) => format!("{target}/{n}"),
        _ => target,
    };
    let detail = json!({"tenant_of_actor": actor.tenant_id, "request": request});
    let svc = &state.svc;
    let chain = match vault {
        Some(v) => match svc.administered_vault(&actor, v, op).await {
            Ok(v) => v.id,
            Err(e) => {
                // Refused before the vault's chain could be chosen (not visible to the
                // caller, or not its admin): recorded on the deployment chain.
                let e = not_found_code(e);
                let target = format!("{v}/{target}");
                if let Err(a) = svc.audit(DEPLOYMENT_CHAIN, &actor.name, op, &target, &e.code, &detail).await {
                    return super::keys::audit_failed(&a).into_response();
                }
                return e.into_response();
            }
        },
        None => DEPLOYMENT_CHAIN.to_string(),
    };
    if let Err(e) = svc.audit(&chain, &actor.name, op, &target, "attempt", &detail).await {
        return super::keys::audit_failed(&e).into_response();
    }
    let resp = next.run(axum::extract::Request::from_parts(parts, Body::from(body))).await;
    let outcome = match resp.extensions().get::<super::ErrorCode>() {
        Some(code) => code.0.clone(),
        None => "ok".to_string(),
    };
    if let Err(e) = svc.audit(&chain, &actor.name, op, &target, &outcome, &detail).await {
        tracing::error!(error = %e, operation = op, "the outcome of a committed admin change could not be audited (its attempt was)");
    }
    resp
}

/// An admin API error: a missing tenant, principal or vault is `NotFound`, not the keys
/// API's `KeyNotFound`.
pub(super) struct AdminError(ApiError);

impl<E: Into<ApiError>> From<E> for AdminError {
    fn from(e: E) -> Self {
        Self(not_found_code(e))
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

type Answer = Result<Response, AdminError>;
type Params<T> = Result<Path<T>, PathRejection>;

/// Path parameters, or 400 in the API's error format.
fn params<T>(p: Params<T>) -> Result<T, ApiError> {
    p.map(|Path(t)| t).map_err(|_| ApiError::bad("a path segment is not percent-encoded UTF-8"))
}

/// A JSON request body (an empty one reads as `{}`).
async fn body_json<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let body = super::read_body(body, super::MAX_BODY, "").await?;
    let body: &[u8] = if body.is_empty() { b"{}" } else { &body };
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("the request body does not fit: {e}")))
}

async fn whoami(ctx: AdminCtx) -> Answer {
    let t = ctx.svc().tenant_by_id(&ctx.actor.tenant_id).await?;
    Ok(ok(principal_json(&ctx.actor, &t.name)))
}

async fn verify(ctx: AdminCtx) -> Answer {
    deployment_admin_only(&ctx.actor, "scan the deployment")?;
    let r = ctx.state.store.verify_rows().await?;
    Ok(ok(json!({"resources": r.resources, "objects": r.objects, "problems": r.problems})))
}

async fn list_tenants(ctx: AdminCtx) -> Answer {
    let list: Vec<Value> = ctx.svc().list_tenants(&ctx.actor).await?.iter().map(tenant_json).collect();
    Ok(ok(json!({"value": list})))
}

async fn create_tenant(ctx: AdminCtx, body: Body) -> Answer {
    deployment_admin_only(&ctx.actor, "create tenants")?;
    let req: NameIn = body_json(body).await?;
    Ok(created(tenant_json(&ctx.svc().create_tenant(&req.name).await?)))
}

async fn show_tenant(ctx: AdminCtx, t: Params<String>) -> Answer {
    Ok(ok(tenant_json(&ctx.svc().visible_tenant(&ctx.actor, &params(t)?).await?)))
}

async fn list_principals(ctx: AdminCtx, t: Params<String>) -> Answer {
    let svc = ctx.svc();
    let tenant = svc.administered_tenant(&ctx.actor, &params(t)?, "list principals").await?;
    let list: Vec<Value> =
        svc.list_principals(&tenant).await?.iter().map(|p| principal_json(p, &tenant.name)).collect();
    Ok(ok(json!({"value": list})))
}

async fn create_principal(ctx: AdminCtx, t: Params<String>, body: Body) -> Answer {
    let svc = ctx.svc();
    let tenant = svc.administered_tenant(&ctx.actor, &params(t)?, "create principals").await?;
    let req: PrincipalIn = body_json(body).await?;
    VaultService::check_principal_name(&req.name)?;
    let kind = PrincipalKind::parse(&req.kind).ok_or_else(|| ApiError::bad("kind must be \"user\" or \"service\""))?;
    let role = Role::parse(&req.role)
        .ok_or_else(|| ApiError::bad("role must be \"member\", \"tenant-admin\" or \"deployment-admin\""))?;
    VaultService::check_grantable(&ctx.actor, role)?;
    let p = svc.create_principal(&tenant, &req.name, kind, role).await?;
    Ok(created(principal_json(&p, &tenant.name)))
}

async fn show_principal(ctx: AdminCtx, tp: Params<(String, String)>) -> Answer {
    let (t, p) = params(tp)?;
    let (tenant, p) = principal_in_scope(&ctx, &t, &p, "read principals").await?;
    Ok(ok(principal_json(&p, &tenant.name)))
}

async fn update_principal(ctx: AdminCtx, tp: Params<(String, String)>, body: Body) -> Answer {
    let (t, p) = params(tp)?;
    let svc = ctx.svc();
    let tenant = svc.administered_tenant(&ctx.actor, &t, "update principals").await?;
    let p = svc.principal_by_name(&tenant, &p).await?;
    let req: PrincipalPatch = body_json(body).await?;
    // Only a deployment admin may disable a deployment admin.
    VaultService::check_grantable(&ctx.actor, p.role)?;
    let p = match req.disabled {
        Some(d) => svc.set_principal_disabled(&p, d).await?,
        None => p,
    };
    Ok(ok(principal_json(&p, &tenant.name)))
}

async fn list_tokens(ctx: AdminCtx, tp: Params<(String, String)>) -> Answer {
    let (t, p) = params(tp)?;
    let (_, p) = principal_in_scope(&ctx, &t, &p, "list tokens").await?;
    let list: Vec<Value> = ctx.svc().list_tokens(&p).await?.iter().map(token_json).collect();
    Ok(ok(json!({"value": list})))
}

async fn issue_token(ctx: AdminCtx, tp: Params<(String, String)>, body: Body) -> Answer {
    let (t, p) = params(tp)?;
    let svc = ctx.svc();
    let tenant = svc.administered_tenant(&ctx.actor, &t, "issue tokens").await?;
    let p = svc.principal_by_name(&tenant, &p).await?;
    // A token is the principal's power: only a deployment admin mints one for a
    // deployment admin.
    VaultService::check_grantable(&ctx.actor, p.role)?;
    let req: TokenIn = body_json(body).await?;
    check_ttl(req.ttl_seconds)?;
    let issued = svc.issue_token(&p, req.ttl_seconds).await?;
    Ok(created(issued_json(&issued, &p.name)?))
}

async fn revoke_token(ctx: AdminCtx, tpi: Params<(String, String, String)>) -> Answer {
    let (t, p, id) = params(tpi)?;
    let (_, p) = principal_in_scope(&ctx, &t, &p, "revoke tokens").await?;
    token_of(ctx.svc(), &p, &id).await?;
    ctx.svc().revoke_token(&id).await?;
    Ok(no_content())
}

async fn rotate_token(ctx: AdminCtx, tpi: Params<(String, String, String)>, body: Body) -> Answer {
    let (t, p, id) = params(tpi)?;
    let (tenant, p) = principal_in_scope(&ctx, &t, &p, "rotate tokens").await?;
    token_of(ctx.svc(), &p, &id).await?;
    let req: TokenIn = body_json(body).await?;
    check_ttl(req.ttl_seconds)?;
    // Rotating one's own token never extends what an admin granted.
    if !VaultService::administers(&ctx.actor, &tenant.id) && req.ttl_seconds.is_some() {
        return Err(ApiError::bad(
            "only an admin of the tenant can choose a new token's lifetime; omit ttl_seconds to keep the old one",
        )
        .into());
    }
    let issued = ctx.svc().rotate_token(&id, req.ttl_seconds).await?;
    Ok(created(issued_json(&issued, &p.name)?))
}

fn s3_key_json(k: &atrest_vault::S3KeyInfo, principal: &str) -> Value {
    json!({"id": k.id, "principal": principal, "created": k.created, "revoked": k.revoked})
}

async fn list_s3_keys(ctx: AdminCtx, tp: Params<(String, String)>) -> Answer {
    let (t, p) = params(tp)?;
    let (_, p) = principal_in_scope(&ctx, &t, &p, "list S3 keys").await?;
    let list: Vec<Value> = ctx.svc().s3_keys(&p).await?.iter().map(|k| s3_key_json(k, &p.name)).collect();
    Ok(ok(json!({"value": list})))
}

/// Issued like a token (by an admin of the tenant): the key acts as the principal.
async fn issue_s3_key(ctx: AdminCtx, tp: Params<(String, String)>) -> Answer {
    let (t, p) = params(tp)?;
    let svc = ctx.svc();
    let tenant = svc.administered_tenant(&ctx.actor, &t, "issue S3 keys").await?;
    let p = svc.principal_by_name(&tenant, &p).await?;
    VaultService::check_grantable(&ctx.actor, p.role)?;
    let issued = svc.issue_s3_key(&p).await?;
    let secret = std::str::from_utf8(issued.secret.expose_secret())
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "secret encoding"))?;
    Ok(created(json!({"id": issued.id, "principal": p.name, "secret": secret})))
}

async fn revoke_s3_key(ctx: AdminCtx, tpi: Params<(String, String, String)>) -> Answer {
    let (t, p, id) = params(tpi)?;
    let (_, p) = principal_in_scope(&ctx, &t, &p, "revoke S3 keys").await?;
    // One answer for "no such key" and "not this principal's".
    match ctx.svc().s3_key(&id).await {
        Ok(k) if k.principal_id == p.id => {}
        Ok(_) | Err(atrest_vault::VaultError::NotFound(_)) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("principal {} has no S3 key {id}", p.name),
            )
            .into());
        }
        Err(e) => return Err(e.into()),
    }
    ctx.svc().revoke_s3_key(&id).await?;
    Ok(no_content())
}

async fn list_vaults(ctx: AdminCtx, t: Params<String>) -> Answer {
    let svc = ctx.svc();
    let tenant = svc.administered_tenant(&ctx.actor, &params(t)?, "list vaults").await?;
    let list: Vec<Value> = svc.list_vaults(&tenant).await?.iter().map(|v| ctx.vault_json(v, &tenant.name)).collect();
    Ok(ok(json!({"value": list})))
}

async fn create_vault(ctx: AdminCtx, t: Params<String>, body: Body) -> Answer {
    let svc = ctx.svc();
    let tenant = svc.administered_tenant(&ctx.actor, &params(t)?, "create vaults").await?;
    let req: VaultIn = body_json(body).await?;
    let d = VaultSettings::default();
    let settings = VaultSettings {
        retention_days: req.retention_days.unwrap_or(d.retention_days),
        purge_protection: req.purge_protection.unwrap_or(d.purge_protection),
        allow_rsa1_5: req.allow_rsa1_5.unwrap_or(d.allow_rsa1_5),
    };
    let v = svc.create_vault(&tenant.id, &req.name, settings).await?;
    // Its own origin, before its URL is answered.
    if let Err(e) = ctx.state.listeners.assign(&v.name).await {
        tracing::error!(error = %e, vault = %v.name, "vault created without a port of its own");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            format!("vault {} was created, but it has no origin of its own yet: {e}", v.name),
        )
        .into());
    }
    svc.audit(
        &v.id,
        &ctx.actor.name,
        "create-vault",
        &v.name,
        "ok",
        &json!({"settings": ctx.vault_json(&v, &tenant.name)}),
    )
    .await
    .map_err(|e| super::keys::audit_failed(&e))?;
    Ok(created(ctx.vault_json(&v, &tenant.name)))
}

async fn show_vault(ctx: AdminCtx, v: Params<String>) -> Answer {
    let svc = ctx.svc();
    let v = svc.administered_vault(&ctx.actor, &params(v)?, "read vault settings").await?;
    let t = svc.tenant_by_id(&v.tenant_id).await?;
    Ok(ok(ctx.vault_json(&v, &t.name)))
}

async fn update_vault(ctx: AdminCtx, v: Params<String>, body: Body) -> Answer {
    let svc = ctx.svc();
    let current = svc.administered_vault(&ctx.actor, &params(v)?, "change vault settings").await?;
    let req: VaultPatch = body_json(body).await?;
    let s = current.settings;
    let settings = VaultSettings {
        retention_days: req.retention_days.unwrap_or(s.retention_days),
        purge_protection: req.purge_protection.unwrap_or(s.purge_protection),
        allow_rsa1_5: req.allow_rsa1_5.unwrap_or(s.allow_rsa1_5),
    };
    let v = svc.update_vault_settings(&current.name, settings).await?;
    let t = svc.tenant_by_id(&v.tenant_id).await?;
    Ok(ok(ctx.vault_json(&v, &t.name)))
}

async fn list_policies(ctx: AdminCtx, v: Params<String>) -> Answer {
    let svc = ctx.svc();
    let v = svc.administered_vault(&ctx.actor, &params(v)?, "read access policies").await?;
    let list: Vec<Value> = svc
        .list_policies(&v)
        .await?
        .iter()
        .map(|(p, perms, secrets)| {
            json!({
                "principal": p.name,
                "permissions": Permission::names(perms),
                "secret_permissions": SecretPermission::names(secrets),
            })
        })
        .collect();
    Ok(ok(json!({"value": list})))
}

async fn set_policy(ctx: AdminCtx, vp: Params<(String, String)>, body: Body) -> Answer {
    let (v, p) = params(vp)?;
    let svc = ctx.svc();
    let v = svc.administered_vault(&ctx.actor, &v, "set access policies").await?;
    let t = svc.tenant_by_id(&v.tenant_id).await?;
    let p = svc.principal_by_name(&t, &p).await?;
    let req: PolicyIn = body_json(body).await?;
    let perms = Permission::parse_list(&req.permissions)?;
    let secrets = SecretPermission::parse_list(&req.secret_permissions)?;
    svc.set_policy_with(&v, &p, &perms, &secrets).await?;
    Ok(ok(json!({
        "principal": p.name,
        "permissions": Permission::names(&perms),
        "secret_permissions": SecretPermission::names(&secrets),
    })))
}

async fn remove_policy(ctx: AdminCtx, vp: Params<(String, String)>) -> Answer {
    let (v, p) = params(vp)?;
    let svc = ctx.svc();
    let v = svc.administered_vault(&ctx.actor, &v, "remove access policies").await?;
    let t = svc.tenant_by_id(&v.tenant_id).await?;
    let p = svc.principal_by_name(&t, &p).await?;
    svc.remove_policy(&v, &p).await?;
    Ok(no_content())
}

/// Admin lookups report a missing tenant, principal or vault as `NotFound`, not the keys
/// API's `KeyNotFound`.
fn not_found_code(e: impl Into<ApiError>) -> ApiError {
    let mut a = e.into();
    if a.code == "KeyNotFound" {
        a.code = "NotFound".into();
    }
    a
}

/// 403 `AdminRoleRequired` unless `actor` is the deployment admin.
fn deployment_admin_only(actor: &Principal, what: &str) -> Result<(), ApiError> {
    if actor.role == Role::DeploymentAdmin {
        return Ok(());
    }
    Err(ApiError {
        inner: Some("AdminRoleRequired"),
        ..ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("principal {} may not {what}: only the deployment admin can", actor.name),
        )
    })
}

fn check_ttl(ttl: Option<i64>) -> Result<(), ApiError> {
    match ttl {
        Some(t) if t <= 0 => {
            Err(ApiError::bad("ttl_seconds must be positive (omit it for a token valid until revoked)"))
        }
        Some(t) if t > atrest_vault::MAX_TOKEN_TTL => Err(ApiError::bad(format!(
            "ttl_seconds is at most {} (10 years), not {t} (omit it for a token valid until revoked)",
            atrest_vault::MAX_TOKEN_TTL
        ))),
        _ => Ok(()),
    }
}

/// A principal the actor may manage tokens of: any in a tenant it administers, or itself.
async fn principal_in_scope(ctx: &AdminCtx, t: &str, p: &str, what: &str) -> Result<(Tenant, Principal), ApiError> {
    let svc = ctx.svc();
    let tenant = svc.visible_tenant(&ctx.actor, t).await?;
    let principal = svc.principal_by_name(&tenant, p).await?;
    if principal.id != ctx.actor.id {
        svc.administered_tenant(&ctx.actor, t, what).await?;
        VaultService::check_grantable(&ctx.actor, principal.role)?;
    }
    Ok((tenant, principal))
}

/// Checks that token `id` belongs to `p` (so a path cannot reach another's token).
async fn token_of(svc: &VaultService, p: &Principal, id: &str) -> Result<(), ApiError> {
    // One answer for "no such token" and "not this principal's".
    match svc.token_owner(id).await {
        Ok(owner) if owner == p.id => Ok(()),
        Ok(_) | Err(atrest_vault::VaultError::NotFound(_)) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "NotFound", format!("principal {} has no token {id}", p.name)))
        }
        Err(e) => Err(e.into()),
    }
}
