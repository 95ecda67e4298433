//! The AKV front end: request parsing, audit and the keys routes (`../shared/akv-keys-api.md`
//! §3), each checking its permission first; the secrets routes are in `secrets.rs`.

use super::auth::AkvCaller;
use super::json::{self as j, AttributesIn};
use super::{ApiError, AppState, no_content, ok, unknown_route};
use atrest_crypto::SecretBytes;
use atrest_vault::model::VaultInfo;
use atrest_vault::model::{b64u, b64u_decode};
use atrest_vault::{CreateKey, KeyOp, OpInput, Permission, UpdateKey};
use atrest_vault::{Principal, VaultService};
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{Method, Uri};
use axum::response::Response;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// How old a request's authorization may be when its body has arrived.
const AUTH_FRESH: std::time::Duration = std::time::Duration::from_millis(50);

/// `api-version` values the SDKs send (all treated alike).
const API_VERSIONS: &[&str] =
    &["2016-10-01", "7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01", "2026-04-01"];

/// The AKV keys front end, at each vault's origin (behind [`super::auth::akv`]).
pub(super) fn router() -> axum::Router<Arc<AppState>> {
    axum::Router::new().fallback(handle)
}

/// The AKV paths keep their quirks (`/keys/{name}/` for "latest", `/keys/{name}//decrypt`),
/// so they are parsed here rather than by the path router.
async fn handle(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<AkvCaller>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = super::read_body(body, super::MAX_BODY, "").await?;
    // Authorization was read when the headers arrived; a body that took longer than this
    // has it read again, so a revocation made meanwhile applies to this request too.
    let caller = if caller.auth.age() > AUTH_FRESH {
        super::auth::reauthorize(&state, &headers, &method, &uri, caller).await?
    } else {
        caller
    };
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
    let AkvCaller { vault, principal, auth, origin } = caller;
    let ctx =
        Ctx { svc: &state.svc, metrics: &state.metrics, vault, principal, auth, origin, api_version, query, body };
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let answer = dispatch(&ctx, &method, &segments).await;
    // The body may hold a secret value or key material: wipe it (when nothing else holds it).
    if let Ok(mut b) = ctx.body.try_into_mut() {
        zeroize::Zeroize::zeroize(&mut b[..]);
    }
    answer
}

/// The target an audit entry records for a request's outcome when the path does not name
/// it (a restore names what it restored), as a response extension.
#[derive(Clone)]
pub(crate) struct AuditTarget(pub String);

/// A parsed, authenticated request, as the route handlers see it.
pub(crate) struct Ctx<'a> {
    pub svc: &'a VaultService,
    pub metrics: &'a crate::metrics::Metrics,
    pub vault: VaultInfo,
    pub principal: Principal,
    /// What the request may do, as read at its start (one statement).
    pub auth: Arc<atrest_vault::RequestAuth>,
    /// `https://host[:port]` as the client addressed us.
    pub origin: String,
    pub api_version: String,
    pub query: HashMap<String, String>,
    pub body: Bytes,
}

impl Ctx<'_> {
    pub(crate) async fn allow(&self, permission: atrest_vault::Permission, key: Option<&str>) -> Result<(), ApiError> {
        Ok(self.svc.authorize_in(&self.auth, permission, key)?)
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

/// The key (name, version or `""`) a key operation's path names, for the request's
/// one-statement authorization read.
pub(super) fn key_asked(method: &Method, path: &str) -> Option<(String, String)> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::POST, ["keys", name, version, op]) if op_of(op).is_some() => {
            Some(((*name).to_string(), (*version).to_string()))
        }
        _ => None,
    }
}

fn op_of(segment: &str) -> Option<KeyOp> {
    Some(match segment {
        "encrypt" => KeyOp::Encrypt,
        "decrypt" => KeyOp::Decrypt,
        "sign" => KeyOp::Sign,
        "verify" => KeyOp::Verify,
        "wrapkey" => KeyOp::WrapKey,
        "unwrapkey" => KeyOp::UnwrapKey,
        _ => return None,
    })
}

pub(super) fn max_results(ctx: &Ctx<'_>) -> Result<Option<usize>, ApiError> {
    ctx.query
        .get("maxresults")
        .map(|m| m.parse::<usize>().map_err(|_| ApiError::bad("maxresults must be a number from 1 to 25")))
        .transpose()
}

pub(super) fn next_link(ctx: &Ctx<'_>, path: &str, token: Option<String>, max: Option<usize>) -> serde_json::Value {
    match token {
        Some(t) => json!(format!(
            "{}/{path}?api-version={}&$skiptoken={t}&maxresults={}",
            ctx.origin,
            ctx.api_version,
            max.unwrap_or(atrest_vault::model::MAX_PAGE)
        )),
        None => serde_json::Value::Null,
    }
}

/// What an audit entry calls a request: (operation, target, whether it changes state).
pub(super) fn describe(method: &Method, path: &[&str]) -> (String, String, bool) {
    if super::secrets::owns(path) {
        let (op, target, mutating) = super::secrets::describe(method, path);
        return (op.to_string(), target.trim_end_matches('/').to_string(), mutating);
    }
    let m = method.clone();
    let (op, target, mutating) = match (m, path) {
        (Method::GET, ["keys"]) => ("list", String::new(), false),
        (Method::POST, ["keys", n, "create"]) => ("create", (*n).to_string(), true),
        (Method::PUT, ["keys", n]) => ("import", (*n).to_string(), true),
        (Method::DELETE, ["keys", n]) => ("delete", (*n).to_string(), true),
        (Method::GET, ["keys", n, "versions"]) => ("list-versions", (*n).to_string(), false),
        (Method::POST, ["keys", n, "rotate"]) => ("rotate", (*n).to_string(), true),
        (Method::POST, ["keys", "restore"]) => ("restore", String::new(), true),
        (Method::POST, ["keys", n, "backup"]) => ("backup", (*n).to_string(), false),
        (Method::GET, ["keys", n, "rotationpolicy"]) => ("getrotationpolicy", (*n).to_string(), false),
        (Method::PUT, ["keys", n, "rotationpolicy"]) => ("setrotationpolicy", (*n).to_string(), true),
        (Method::GET, ["keys", n]) => ("get", (*n).to_string(), false),
        (Method::GET, ["keys", n, v]) => ("get", format!("{n}/{v}"), false),
        (Method::PATCH, ["keys", n]) => ("update", (*n).to_string(), true),
        (Method::PATCH, ["keys", n, v]) => ("update", format!("{n}/{v}"), true),
        (Method::POST, ["keys", n, v, op]) => match op_of(op) {
            Some(o) => (o.name(), format!("{n}/{v}"), false),
            None => ("unknown", path.join("/"), false),
        },
        (Method::GET, ["deletedkeys"]) => ("list-deleted", String::new(), false),
        (Method::GET, ["deletedkeys", n]) => ("get-deleted", (*n).to_string(), false),
        (Method::DELETE, ["deletedkeys", n]) => ("purge", (*n).to_string(), true),
        (Method::POST, ["deletedkeys", n, "recover"]) => ("recover", (*n).to_string(), true),
        (Method::POST, ["rng"]) => ("rng", String::new(), false),
        _ => ("unknown", path.join("/"), false),
    };
    (op.to_string(), target.trim_end_matches('/').to_string(), mutating)
}

/// Routes an authenticated request and writes it to the vault's audit chain. A change of
/// state is recorded as attempted before it runs (if that fails, nothing runs) and with
/// its outcome after; a key use or read is recorded after, and if that fails its result
/// is withheld: no key use leaves the vault unrecorded.
pub(super) async fn dispatch(ctx: &Ctx<'_>, method: &Method, path: &[&str]) -> Result<Response, ApiError> {
    let (op, target, mutating) = describe(method, path);
    // Only key operations carry an algorithm; a secret's body (its value) is not parsed twice.
    let alg = if super::secrets::owns(path) {
        None
    } else {
        #[derive(serde::Deserialize)]
        struct Alg {
            alg: Option<serde_json::Value>,
        }
        serde_json::from_slice::<Alg>(&ctx.body).ok().and_then(|a| a.alg)
    };
    let detail = json!({"alg": alg, "api-version": ctx.api_version});
    let chain = ctx.vault.id.clone();
    let who = ctx.principal.name.clone();
    if mutating {
        ctx.svc.audit(&chain, &who, &op, &target, "attempt", &detail).await.map_err(|e| audit_failed(&e))?;
    }
    let result = route(ctx, method, path).await;
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => e.code.clone(),
    };
    // Per-key series only for operations that succeeded (so refusals and unknown names
    // cannot grow the series without bound); the rest are counted per vault.
    if super::secrets::owns(path) {
        // Secrets are counted per vault only: a secret's name is nobody's metric label.
        ctx.metrics.secret_operation(&ctx.vault.name, &op, &outcome);
    } else if !target.is_empty() && op != "unknown" {
        let key = if outcome == "ok" { target.as_str() } else { "-" };
        ctx.metrics.key_operation(&ctx.vault.name, key, &op, &outcome);
    }
    let target = match &result {
        Ok(r) => r.extensions().get::<AuditTarget>().map_or(target, |t| t.0.clone()),
        Err(_) => target,
    };
    if let Err(e) = ctx.svc.audit(&chain, &who, &op, &target, &outcome, &detail).await {
        if !mutating {
            return Err(audit_failed(&e));
        }
        tracing::error!(error = %e, operation = %op, target = %target, "the outcome of a committed change could not be audited (its attempt was)");
    }
    result
}

pub(super) fn audit_failed(e: &atrest_vault::VaultError) -> ApiError {
    tracing::error!(error = %e, "audit append failed; refusing the operation");
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        "the audit trail could not be written, so the operation was refused; retry, and check the server's database",
    )
}

/// Routes an authenticated request.
async fn route(ctx: &Ctx<'_>, method: &Method, path: &[&str]) -> Result<Response, ApiError> {
    if super::secrets::owns(path) {
        return super::secrets::route(ctx, method, path).await;
    }
    let m = method.clone();
    match (m, path) {
        (Method::GET, ["keys"]) => {
            ctx.allow(Permission::List, None).await?;
            let max = max_results(ctx)?;
            let page = ctx.svc.list_keys(&ctx.vault, max, ctx.query.get("$skiptoken").map(String::as_str)).await?;
            let items: Vec<_> =
                page.items.iter().map(|b| j::item(format!("{}/keys/{}", ctx.origin, b.name), b)).collect();
            Ok(ok(json!({"value": items, "nextLink": next_link(ctx, "keys", page.next, max)})))
        }
        (Method::POST, ["keys", "restore"]) => {
            ctx.allow(Permission::Restore, None).await?;
            let req: j::ValueIn = ctx.json()?;
            let blob = b64u_decode(&req.value, "value")?;
            let key = ctx.svc.restore_key(&ctx.vault, &blob).await?;
            let mut resp = ok(j::bundle(&ctx.origin, &key));
            resp.extensions_mut().insert(AuditTarget(key.name));
            Ok(resp)
        }
        (Method::POST, ["keys", name, "create"]) => create(ctx, name).await,
        (Method::PUT, ["keys", name]) => import(ctx, name).await,
        (Method::DELETE, ["keys", name]) => {
            ctx.allow(Permission::Delete, Some(name)).await?;
            let d = ctx.svc.delete_key(&ctx.vault, name).await?;
            Ok(ok(j::deleted_bundle(&ctx.origin, &d)))
        }
        (Method::GET, ["keys", name, "versions"]) => {
            ctx.allow(Permission::List, Some(name)).await?;
            let max = max_results(ctx)?;
            let page =
                ctx.svc.list_versions(&ctx.vault, name, max, ctx.query.get("$skiptoken").map(String::as_str)).await?;
            let items: Vec<_> = page.items.iter().map(|b| j::item(j::kid(&ctx.origin, b), b)).collect();
            Ok(ok(
                json!({"value": items, "nextLink": next_link(ctx, &format!("keys/{name}/versions"), page.next, max)}),
            ))
        }
        (Method::POST, ["keys", name, "rotate"]) => {
            ctx.allow(Permission::Rotate, Some(name)).await?;
            Ok(ok(j::bundle(&ctx.origin, &ctx.svc.rotate_key(&ctx.vault, name).await?)))
        }
        (Method::POST, ["keys", name, "backup"]) => {
            ctx.allow(Permission::Backup, Some(name)).await?;
            Ok(ok(json!({"value": b64u(&ctx.svc.backup_key(&ctx.vault, name).await?)})))
        }
        (Method::GET, ["keys", name, "rotationpolicy"]) => {
            ctx.allow(Permission::GetRotationPolicy, Some(name)).await?;
            let p = ctx.svc.get_rotation_policy(&ctx.vault, name).await?;
            Ok(ok(policy_json(ctx, name, &p)))
        }
        (Method::PUT, ["keys", name, "rotationpolicy"]) => {
            ctx.allow(Permission::SetRotationPolicy, Some(name)).await?;
            let p: atrest_vault::RotationPolicy = ctx.json()?;
            let p = ctx.svc.set_rotation_policy(&ctx.vault, name, p).await?;
            Ok(ok(policy_json(ctx, name, &p)))
        }
        (Method::GET, ["keys", name] | ["keys", name, ""]) => get(ctx, name, None).await,
        (Method::GET, ["keys", name, version]) => get(ctx, name, Some(version)).await,
        (Method::PATCH, ["keys", name] | ["keys", name, ""]) => update(ctx, name, None).await,
        (Method::PATCH, ["keys", name, version]) => update(ctx, name, Some(version)).await,
        (Method::POST, ["keys", name, version, op]) if op_of(op).is_some() => {
            operate(ctx, name, version, op_of(op).unwrap_or(KeyOp::Verify)).await
        }
        (Method::GET, ["deletedkeys"]) => {
            ctx.allow(Permission::List, None).await?;
            let max = max_results(ctx)?;
            let page =
                ctx.svc.list_deleted_keys(&ctx.vault, max, ctx.query.get("$skiptoken").map(String::as_str)).await?;
            let items: Vec<_> = page.items.iter().map(|d| j::deleted_item(&ctx.origin, d)).collect();
            Ok(ok(json!({"value": items, "nextLink": next_link(ctx, "deletedkeys", page.next, max)})))
        }
        (Method::GET, ["deletedkeys", name]) => {
            ctx.allow(Permission::Get, Some(name)).await?;
            Ok(ok(j::deleted_bundle(&ctx.origin, &ctx.svc.get_deleted_key(&ctx.vault, name).await?)))
        }
        (Method::DELETE, ["deletedkeys", name]) => {
            ctx.allow(Permission::Purge, Some(name)).await?;
            ctx.svc.purge_deleted_key(&ctx.vault, name).await?;
            Ok(no_content())
        }
        (Method::POST, ["deletedkeys", name, "recover"]) => {
            ctx.allow(Permission::Recover, Some(name)).await?;
            Ok(ok(j::bundle(&ctx.origin, &ctx.svc.recover_deleted_key(&ctx.vault, name).await?)))
        }
        (Method::POST, ["rng"]) => {
            if ctx.principal.tenant_id != ctx.vault.tenant_id {
                return Err(atrest_vault::VaultError::forbidden(
                    atrest_vault::Refusal::AccessDenied,
                    format!(
                        "principal {} does not belong to the tenant of vault {}",
                        ctx.principal.name, ctx.vault.name
                    ),
                )
                .into());
            }
            let req: j::RngIn = ctx.json()?;
            if !(1..=128).contains(&req.count) {
                return Err(ApiError::bad("count must be between 1 and 128"));
            }
            let mut buf = vec![0u8; req.count as usize];
            atrest_crypto::rand::fill(&mut buf).map_err(|e| ApiError::bad(e.to_string()))?;
            Ok(ok(json!({"value": b64u(&buf)})))
        }
        (m, p) => Err(unknown_route(&m, p)),
    }
}

fn policy_json(ctx: &Ctx<'_>, name: &str, p: &atrest_vault::RotationPolicy) -> serde_json::Value {
    let mut v = serde_json::to_value(p).unwrap_or_else(|_| json!({}));
    v["id"] = json!(format!("{}/keys/{name}/rotationpolicy", ctx.origin));
    v
}

fn attrs(a: Option<AttributesIn>) -> AttributesIn {
    a.unwrap_or_default()
}

async fn create(ctx: &Ctx<'_>, name: &str) -> Result<Response, ApiError> {
    ctx.allow(Permission::Create, Some(name)).await?;
    let req: j::CreateIn = ctx.json()?;
    let a = attrs(req.attributes);
    let b = ctx
        .svc
        .create_key(
            &ctx.vault,
            name,
            CreateKey {
                kty: req.kty,
                key_size: req.key_size,
                crv: req.crv,
                key_ops: req.key_ops,
                enabled: a.enabled,
                nbf: a.nbf,
                exp: a.exp,
                tags: req.tags,
            },
        )
        .await?;
    Ok(ok(j::bundle(&ctx.origin, &b)))
}

async fn import(ctx: &Ctx<'_>, name: &str) -> Result<Response, ApiError> {
    ctx.allow(Permission::Import, Some(name)).await?;
    let req: j::ImportIn = ctx.json()?;
    if req.hsm == Some(true) {
        return Err(ApiError::bad(
            "Hsm: true needs an HSM backend and this vault has none (software keys only); import without Hsm",
        ));
    }
    let a = attrs(req.attributes);
    let attrs = atrest_vault::NewKeyAttributes { enabled: a.enabled, nbf: a.nbf, exp: a.exp, tags: req.tags };
    let b = ctx.svc.import_key(&ctx.vault, name, req.key, attrs).await?;
    Ok(ok(j::bundle(&ctx.origin, &b)))
}

async fn get(ctx: &Ctx<'_>, name: &str, version: Option<&str>) -> Result<Response, ApiError> {
    ctx.allow(Permission::Get, Some(name)).await?;
    Ok(ok(j::bundle(&ctx.origin, &ctx.svc.get_key(&ctx.vault, name, version).await?)))
}

async fn update(ctx: &Ctx<'_>, name: &str, version: Option<&str>) -> Result<Response, ApiError> {
    ctx.allow(Permission::Update, Some(name)).await?;
    let req: j::UpdateIn = if ctx.body.is_empty() { j::UpdateIn::default() } else { ctx.json()? };
    let a = req.attributes.unwrap_or_default();
    let b = ctx
        .svc
        .update_key(
            &ctx.vault,
            name,
            version,
            UpdateKey { key_ops: req.key_ops, enabled: a.enabled, nbf: a.nbf, exp: a.exp, tags: req.tags },
        )
        .await?;
    Ok(ok(j::bundle(&ctx.origin, &b)))
}

async fn operate(ctx: &Ctx<'_>, name: &str, version: &str, op: KeyOp) -> Result<Response, ApiError> {
    ctx.allow(op.permission(), Some(name)).await?;
    let version = Some(version).filter(|v| !v.is_empty());
    let dec = |s: &Option<String>, what: &str| s.as_deref().map(|v| b64u_decode(v, what)).transpose();
    let input = if op == KeyOp::Verify {
        let req: j::VerifyIn = ctx.json()?;
        OpInput {
            alg: req.alg,
            value: SecretBytes::new(b64u_decode(&req.value, "value")?),
            digest: Some(b64u_decode(&req.digest, "digest")?),
            ..OpInput::default()
        }
    } else {
        let req: j::OpIn = ctx.json()?;
        OpInput {
            alg: req.alg,
            value: SecretBytes::new(b64u_decode(&req.value, "value")?),
            iv: dec(&req.iv, "iv")?,
            aad: dec(&req.aad, "aad")?,
            tag: dec(&req.tag, "tag")?,
            digest: None,
        }
    };
    let out = ctx.svc.operate_in(&ctx.auth, name, version, op, input).await?;
    if let Some(v) = out.verified {
        return Ok(ok(json!({"value": v})));
    }
    let kid = format!("{}/keys/{}/{}", ctx.origin, out.name, out.version);
    let mut body = json!({"kid": kid, "value": j::b64(out.value.expose_secret())});
    if let Some(iv) = &out.iv {
        body["iv"] = j::b64(iv);
    }
    if let Some(tag) = &out.tag {
        body["tag"] = j::b64(tag);
    }
    if let Some(aad) = &out.aad {
        body["aad"] = j::b64(aad);
    }
    Ok(ok(body))
}
