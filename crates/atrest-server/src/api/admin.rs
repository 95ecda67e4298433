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
use atrest_vault::{IssuedToken, Permission, Principal, PrincipalKind, Role, Tenant, TokenInfo, VaultService};
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// An authenticated admin request.
pub(super) struct AdminCtx<'a> {
    pub state: &'a AppState,
    pub actor: Principal,
    /// The host the client addressed, for vault URLs.
    pub host: String,
    pub body: Bytes,
}

impl AdminCtx<'_> {
    fn svc(&self) -> &VaultService {
        &self.state.svc
    }

    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        let body: &[u8] = if self.body.is_empty() { b"{}" } else { &self.body };
        serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("the request body does not fit: {e}")))
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
    permissions: Vec<String>,
}

/// The admin front end, nested under `/admin` (behind [`super::auth::bearer`]).
pub(super) fn router() -> axum::Router<Arc<AppState>> {
    axum::Router::new().fallback(handle)
}

async fn handle(
    State(state): State<Arc<AppState>>,
    Extension(actor): Extension<Principal>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let host = super::host_of(&headers, &uri).ok_or_else(|| ApiError::bad("the request has no Host"))?;
    let body = super::read_body(body, super::MAX_BODY, "").await?;
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    dispatch(&AdminCtx { state: &state, actor, host, body }, &method, &segments).await
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
        (Method::POST, ["tenants", t, "vaults"]) => (None, "create-vault", (*t).to_string()),
        (Method::PATCH, ["vaults", v]) => (Some(*v), "update-vault", (*v).to_string()),
        (Method::PUT, ["vaults", v, "policies", p]) => (Some(*v), "set-policy", (*p).to_string()),
        (Method::DELETE, ["vaults", v, "policies", p]) => (Some(*v), "remove-policy", (*p).to_string()),
        _ => return None,
    })
}

/// Routes an admin request (path without the leading `admin`) and audits changes.
async fn dispatch(ctx: &AdminCtx<'_>, method: &Method, path: &[&str]) -> Result<Response, ApiError> {
    let Some((vault, op, target)) = describe(method, path) else {
        return route(ctx, method, path).await;
    };
    // A change to a vault is recorded on that vault's chain, once the actor may see it.
    let who = ctx.actor.name.clone();
    // What was asked for: admin bodies hold names, roles, flags, settings, permissions
    // and lifetimes, never secrets (a token is only ever in a response).
    let request: Value = serde_json::from_slice(&ctx.body).unwrap_or(Value::Null);
    let target = match (op, request.get("name").and_then(Value::as_str)) {
        ("create-tenant", Some(n)) => n.to_string(),
        ("create-principal" | "create-vault", Some(n)) => format!("{target}/{n}"),
        _ => target,
    };
    let detail = json!({"tenant_of_actor": ctx.actor.tenant_id, "request": request});
    let chain = match vault {
        Some(v) => match ctx.svc().administered_vault(&ctx.actor, v, op).await {
            Ok(v) => v.id,
            Err(e) => {
                // Refused before the vault's chain could be chosen (not visible to the
                // caller, or not its admin): recorded on the deployment chain.
                let e = not_found_code(e);
                let target = format!("{v}/{target}");
                if let Err(a) = ctx.svc().audit(DEPLOYMENT_CHAIN, &who, op, &target, &e.code, &detail).await {
                    return Err(super::keys::audit_failed(&a));
                }
                return Err(e);
            }
        },
        None => DEPLOYMENT_CHAIN.to_string(),
    };
    ctx.svc().audit(&chain, &who, op, &target, "attempt", &detail).await.map_err(|e| super::keys::audit_failed(&e))?;
    let result = route(ctx, method, path).await;
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => e.code.clone(),
    };
    if let Err(e) = ctx.svc().audit(&chain, &who, op, &target, &outcome, &detail).await {
        tracing::error!(error = %e, operation = op, "the outcome of a committed admin change could not be audited (its attempt was)");
    }
    result
}

/// Admin lookups report a missing tenant, principal or vault as `NotFound`, not the
/// keys API's `KeyNotFound`.
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

async fn route(ctx: &AdminCtx<'_>, method: &Method, path: &[&str]) -> Result<Response, ApiError> {
    route_inner(ctx, method, path).await.map_err(not_found_code)
}

async fn route_inner(ctx: &AdminCtx<'_>, method: &Method, path: &[&str]) -> Result<Response, ApiError> {
    let svc = ctx.svc();
    let actor = &ctx.actor;
    let m = method.clone();
    match (m, path) {
        (Method::GET, ["whoami"]) => {
            let t = svc.tenant_by_id(&actor.tenant_id).await?;
            Ok(ok(principal_json(actor, &t.name)))
        }
        (Method::POST, ["verify"]) => {
            deployment_admin_only(actor, "scan the deployment")?;
            let r = ctx.state.store.verify_rows().await?;
            Ok(ok(json!({"resources": r.resources, "objects": r.objects, "problems": r.problems})))
        }
        (Method::GET, ["tenants"]) => {
            let list: Vec<Value> = svc.list_tenants(actor).await?.iter().map(tenant_json).collect();
            Ok(ok(json!({"value": list})))
        }
        (Method::POST, ["tenants"]) => {
            deployment_admin_only(actor, "create tenants")?;
            let req: NameIn = ctx.json()?;
            Ok(created(tenant_json(&svc.create_tenant(&req.name).await?)))
        }
        (Method::GET, ["tenants", t]) => Ok(ok(tenant_json(&svc.visible_tenant(actor, t).await?))),
        (Method::GET, ["tenants", t, "principals"]) => {
            let tenant = svc.administered_tenant(actor, t, "list principals").await?;
            let list: Vec<Value> =
                svc.list_principals(&tenant).await?.iter().map(|p| principal_json(p, &tenant.name)).collect();
            Ok(ok(json!({"value": list})))
        }
        (Method::POST, ["tenants", t, "principals"]) => {
            let tenant = svc.administered_tenant(actor, t, "create principals").await?;
            let req: PrincipalIn = ctx.json()?;
            VaultService::check_principal_name(&req.name)?;
            let kind =
                PrincipalKind::parse(&req.kind).ok_or_else(|| ApiError::bad("kind must be \"user\" or \"service\""))?;
            let role = Role::parse(&req.role)
                .ok_or_else(|| ApiError::bad("role must be \"member\", \"tenant-admin\" or \"deployment-admin\""))?;
            VaultService::check_grantable(actor, role)?;
            let p = svc.create_principal(&tenant, &req.name, kind, role).await?;
            Ok(created(principal_json(&p, &tenant.name)))
        }
        (Method::GET, ["tenants", t, "principals", p]) => {
            let (tenant, p) = principal_in_scope(ctx, t, p, "read principals").await?;
            Ok(ok(principal_json(&p, &tenant.name)))
        }
        (Method::PATCH, ["tenants", t, "principals", p]) => {
            let tenant = svc.administered_tenant(actor, t, "update principals").await?;
            let p = svc.principal_by_name(&tenant, p).await?;
            let req: PrincipalPatch = ctx.json()?;
            // Only a deployment admin may disable a deployment admin.
            VaultService::check_grantable(actor, p.role)?;
            let p = match req.disabled {
                Some(d) => svc.set_principal_disabled(&p, d).await?,
                None => p,
            };
            Ok(ok(principal_json(&p, &tenant.name)))
        }
        (Method::GET, ["tenants", t, "principals", p, "tokens"]) => {
            let (_, p) = principal_in_scope(ctx, t, p, "list tokens").await?;
            let list: Vec<Value> = svc.list_tokens(&p).await?.iter().map(token_json).collect();
            Ok(ok(json!({"value": list})))
        }
        (Method::POST, ["tenants", t, "principals", p, "tokens"]) => {
            let tenant = svc.administered_tenant(actor, t, "issue tokens").await?;
            let p = svc.principal_by_name(&tenant, p).await?;
            // A token is the principal's power: only a deployment admin mints one for a
            // deployment admin.
            VaultService::check_grantable(actor, p.role)?;
            let req: TokenIn = ctx.json()?;
            check_ttl(req.ttl_seconds)?;
            let issued = svc.issue_token(&p, req.ttl_seconds).await?;
            Ok(created(issued_json(&issued, &p.name)?))
        }
        (Method::DELETE, ["tenants", t, "principals", p, "tokens", id]) => {
            let (_, p) = principal_in_scope(ctx, t, p, "revoke tokens").await?;
            token_of(svc, &p, id).await?;
            svc.revoke_token(id).await?;
            Ok(no_content())
        }
        (Method::POST, ["tenants", t, "principals", p, "tokens", id, "rotate"]) => {
            let (tenant, p) = principal_in_scope(ctx, t, p, "rotate tokens").await?;
            token_of(svc, &p, id).await?;
            let req: TokenIn = ctx.json()?;
            check_ttl(req.ttl_seconds)?;
            // Rotating one's own token never extends what an admin granted.
            if !VaultService::administers(actor, &tenant.id) && req.ttl_seconds.is_some() {
                return Err(ApiError::bad(
                    "only an admin of the tenant can choose a new token's lifetime; omit ttl_seconds to keep the old one",
                ));
            }
            let issued = svc.rotate_token(id, req.ttl_seconds).await?;
            Ok(created(issued_json(&issued, &p.name)?))
        }
        (Method::GET, ["tenants", t, "vaults"]) => {
            let tenant = svc.administered_tenant(actor, t, "list vaults").await?;
            let list: Vec<Value> =
                svc.list_vaults(&tenant).await?.iter().map(|v| ctx.vault_json(v, &tenant.name)).collect();
            Ok(ok(json!({"value": list})))
        }
        (Method::POST, ["tenants", t, "vaults"]) => {
            let tenant = svc.administered_tenant(actor, t, "create vaults").await?;
            let req: VaultIn = ctx.json()?;
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
                ));
            }
            svc.audit(
                &v.id,
                &actor.name,
                "create-vault",
                &v.name,
                "ok",
                &json!({"settings": ctx.vault_json(&v, &tenant.name)}),
            )
            .await
            .map_err(|e| super::keys::audit_failed(&e))?;
            Ok(created(ctx.vault_json(&v, &tenant.name)))
        }
        (Method::GET, ["vaults", v]) => {
            let v = svc.administered_vault(actor, v, "read vault settings").await?;
            let t = svc.tenant_by_id(&v.tenant_id).await?;
            Ok(ok(ctx.vault_json(&v, &t.name)))
        }
        (Method::PATCH, ["vaults", v]) => {
            let current = svc.administered_vault(actor, v, "change vault settings").await?;
            let req: VaultPatch = ctx.json()?;
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
        (Method::GET, ["vaults", v, "policies"]) => {
            let v = svc.administered_vault(actor, v, "read access policies").await?;
            let list: Vec<Value> = svc
                .list_policies(&v)
                .await?
                .iter()
                .map(|(p, perms)| json!({"principal": p.name, "permissions": Permission::names(perms)}))
                .collect();
            Ok(ok(json!({"value": list})))
        }
        (Method::PUT, ["vaults", v, "policies", p]) => {
            let v = svc.administered_vault(actor, v, "set access policies").await?;
            let t = svc.tenant_by_id(&v.tenant_id).await?;
            let p = svc.principal_by_name(&t, p).await?;
            let req: PolicyIn = ctx.json()?;
            let perms = Permission::parse_list(&req.permissions)?;
            svc.set_policy(&v, &p, &perms).await?;
            Ok(ok(json!({"principal": p.name, "permissions": Permission::names(&perms)})))
        }
        (Method::DELETE, ["vaults", v, "policies", p]) => {
            let v = svc.administered_vault(actor, v, "remove access policies").await?;
            let t = svc.tenant_by_id(&v.tenant_id).await?;
            let p = svc.principal_by_name(&t, p).await?;
            svc.remove_policy(&v, &p).await?;
            Ok(no_content())
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no admin operation {method} /admin/{}; see /openapi.json", path.join("/")),
        )),
    }
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
async fn principal_in_scope(ctx: &AdminCtx<'_>, t: &str, p: &str, what: &str) -> Result<(Tenant, Principal), ApiError> {
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
