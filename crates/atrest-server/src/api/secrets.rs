//! The secrets routes of the AKV front end (`../shared/akv-secrets-api.md`), at each
//! vault's origin beside the keys routes, sharing their authentication, request parsing
//! and audit ([`super::keys::dispatch`]): a value is released only after its read is in
//! the audit trail. Each route checks its secret permission first.

use super::keys::Ctx;
use super::{ApiError, no_content, ok, unknown_route};
use atrest_vault::model::{DeletedSecret, SecretBundle, b64u, b64u_decode};
use atrest_vault::{SecretPermission as P, SetSecret, UpdateSecret};
use atrest_wire::akv::{SecretSetIn, SecretUpdateIn, ValueIn};
use axum::http::Method;
use axum::response::Response;
use serde_json::{Map, Value, json};

/// The secret (name, version or `""`) a read of a value names, for the request's
/// one-statement authorization read.
pub(super) fn secret_asked(method: &Method, path: &str) -> Option<(String, String)> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["secrets", name] | ["secrets", name, ""]) => Some(((*name).to_string(), String::new())),
        (&Method::GET, ["secrets", name, version]) if *version != "versions" => {
            Some(((*name).to_string(), (*version).to_string()))
        }
        _ => None,
    }
}

/// Whether a path belongs to the secrets API.
pub(super) fn owns(path: &[&str]) -> bool {
    matches!(path.first(), Some(&("secrets" | "deletedsecrets")))
}

/// What an audit entry calls a secrets request: (operation, target, whether it changes
/// state). Reads of a value (`get-secret`) are recorded like key uses.
pub(super) fn describe(method: &Method, path: &[&str]) -> (&'static str, String, bool) {
    let m = method.clone();
    match (m, path) {
        (Method::GET, ["secrets"]) => ("list-secrets", String::new(), false),
        (Method::POST, ["secrets", "restore"]) => ("restore-secret", String::new(), true),
        (Method::PUT, ["secrets", n]) => ("set-secret", (*n).to_string(), true),
        (Method::DELETE, ["secrets", n]) => ("delete-secret", (*n).to_string(), true),
        (Method::GET, ["secrets", n, "versions"]) => ("list-secret-versions", (*n).to_string(), false),
        (Method::POST, ["secrets", n, "backup"]) => ("backup-secret", (*n).to_string(), false),
        (Method::GET, ["secrets", n] | ["secrets", n, ""]) => ("get-secret", (*n).to_string(), false),
        (Method::GET, ["secrets", n, v]) => ("get-secret", format!("{n}/{v}"), false),
        (Method::PATCH, ["secrets", n] | ["secrets", n, ""]) => ("update-secret", (*n).to_string(), true),
        (Method::PATCH, ["secrets", n, v]) => ("update-secret", format!("{n}/{v}"), true),
        (Method::GET, ["deletedsecrets"]) => ("list-deleted-secrets", String::new(), false),
        (Method::GET, ["deletedsecrets", n]) => ("get-deleted-secret", (*n).to_string(), false),
        (Method::DELETE, ["deletedsecrets", n]) => ("purge-secret", (*n).to_string(), true),
        (Method::POST, ["deletedsecrets", n, "recover"]) => ("recover-secret", (*n).to_string(), true),
        _ => ("unknown", path.join("/"), false),
    }
}

/// Refuses a secret name outside `[0-9A-Za-z-]{1,127}` (400, as Azure Key Vault does),
/// on every route that names one.
fn check_name(path: &[&str]) -> Result<(), ApiError> {
    let name = match path {
        ["secrets", "restore"] | ["secrets"] | ["deletedsecrets"] => return Ok(()),
        ["secrets" | "deletedsecrets", name, ..] => *name,
        _ => return Ok(()),
    };
    if name.is_empty() || name.len() > 127 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(ApiError::bad(format!("invalid secret name {name:?}: use 1 to 127 letters, digits and '-'")));
    }
    Ok(())
}

/// Routes an authenticated secrets request.
pub(super) async fn route(ctx: &Ctx<'_>, method: &Method, path: &[&str]) -> Result<Response, ApiError> {
    let (svc, vault) = (ctx.svc, &ctx.vault);
    check_name(path)?;
    let m = method.clone();
    match (m, path) {
        (Method::GET, ["secrets"]) => {
            allow(ctx, P::List, None).await?;
            let max = super::keys::max_results(ctx)?;
            let page = svc.list_secrets(vault, max, skiptoken(ctx)).await?;
            let items: Vec<_> =
                page.items.iter().map(|b| item(format!("{}/secrets/{}", ctx.origin, b.name), b)).collect();
            Ok(ok(json!({"value": items, "nextLink": super::keys::next_link(ctx, "secrets", page.next, max)})))
        }
        (Method::POST, ["secrets", "restore"]) => {
            allow(ctx, P::Restore, None).await?;
            let req: ValueIn = ctx.json()?;
            let blob = b64u_decode(&req.value, "value")?;
            let restored = svc.restore_secret(vault, &blob).await?;
            let mut resp = released(&ctx.origin, &restored)?;
            resp.extensions_mut().insert(super::keys::AuditTarget(restored.name.clone()));
            Ok(resp)
        }
        (Method::PUT, ["secrets", name]) => {
            allow(ctx, P::Set, Some(name)).await?;
            let req: SecretSetIn = ctx.json()?;
            let a = req.attributes.unwrap_or_default();
            let set = SetSecret {
                value: req.value,
                content_type: req.content_type,
                enabled: a.enabled,
                nbf: a.nbf,
                exp: a.exp,
                tags: req.tags,
            };
            released(&ctx.origin, &svc.set_secret(vault, name, set).await?)
        }
        (Method::DELETE, ["secrets", name]) => {
            allow(ctx, P::Delete, Some(name)).await?;
            Ok(ok(deleted_bundle(&ctx.origin, &svc.delete_secret(vault, name).await?)))
        }
        (Method::GET, ["secrets", name, "versions"]) => {
            allow(ctx, P::List, Some(name)).await?;
            let max = super::keys::max_results(ctx)?;
            let page = svc.list_secret_versions(vault, name, max, skiptoken(ctx)).await?;
            let items: Vec<_> = page.items.iter().map(|b| item(id(&ctx.origin, b), b)).collect();
            let next = super::keys::next_link(ctx, &format!("secrets/{name}/versions"), page.next, max);
            Ok(ok(json!({"value": items, "nextLink": next})))
        }
        (Method::POST, ["secrets", name, "backup"]) => {
            allow(ctx, P::Backup, Some(name)).await?;
            Ok(ok(json!({"value": b64u(&svc.backup_secret(vault, name).await?)})))
        }
        (Method::GET, ["secrets", name] | ["secrets", name, ""]) => get(ctx, name, None).await,
        (Method::GET, ["secrets", name, version]) => get(ctx, name, Some(version)).await,
        (Method::PATCH, ["secrets", name] | ["secrets", name, ""]) => update(ctx, name, None).await,
        (Method::PATCH, ["secrets", name, version]) => update(ctx, name, Some(version)).await,
        (Method::GET, ["deletedsecrets"]) => {
            allow(ctx, P::List, None).await?;
            let max = super::keys::max_results(ctx)?;
            let page = svc.list_deleted_secrets(vault, max, skiptoken(ctx)).await?;
            let items: Vec<_> = page.items.iter().map(|d| deleted_item(&ctx.origin, d)).collect();
            Ok(ok(json!({"value": items, "nextLink": super::keys::next_link(ctx, "deletedsecrets", page.next, max)})))
        }
        (Method::GET, ["deletedsecrets", name]) => {
            allow(ctx, P::Get, Some(name)).await?;
            Ok(ok(deleted_bundle(&ctx.origin, &svc.get_deleted_secret(vault, name).await?)))
        }
        (Method::DELETE, ["deletedsecrets", name]) => {
            allow(ctx, P::Purge, Some(name)).await?;
            svc.purge_deleted_secret(vault, name).await?;
            Ok(no_content())
        }
        (Method::POST, ["deletedsecrets", name, "recover"]) => {
            allow(ctx, P::Recover, Some(name)).await?;
            released(&ctx.origin, &svc.recover_deleted_secret(vault, name).await?)
        }
        (m, p) => {
            let mut e = unknown_route(&m, p);
            e.code = "SecretNotFound".into();
            Err(e)
        }
    }
}

async fn allow(ctx: &Ctx<'_>, permission: P, secret: Option<&str>) -> Result<(), ApiError> {
    Ok(ctx.svc.authorize_secret_in(&ctx.auth, permission, secret)?)
}

fn skiptoken<'a>(ctx: &'a Ctx<'_>) -> Option<&'a str> {
    ctx.query.get("$skiptoken").map(String::as_str)
}

async fn get(ctx: &Ctx<'_>, name: &str, version: Option<&str>) -> Result<Response, ApiError> {
    allow(ctx, P::Get, Some(name)).await?;
    released(&ctx.origin, &ctx.svc.get_secret_in(&ctx.auth, name, version).await?)
}

async fn update(ctx: &Ctx<'_>, name: &str, version: Option<&str>) -> Result<Response, ApiError> {
    allow(ctx, P::Set, Some(name)).await?;
    let req: SecretUpdateIn = ctx.json()?;
    let a = req.attributes.unwrap_or_default();
    let change =
        UpdateSecret { content_type: req.content_type, enabled: a.enabled, nbf: a.nbf, exp: a.exp, tags: req.tags };
    released(&ctx.origin, &ctx.svc.update_secret(&ctx.vault, name, version, change).await?)
}

/// `{origin}/secrets/{name}/{version}`.
fn id(origin: &str, b: &SecretBundle) -> String {
    format!("{origin}/secrets/{}/{}", b.name, b.version)
}

/// The members every secret shape shares: `id`, `attributes`, `contentType`, `tags`.
fn common(id: String, b: &SecretBundle) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(id));
    m.insert("attributes".into(), json!(b.attributes));
    if let Some(c) = &b.content_type {
        m.insert("contentType".into(), Value::String(c.clone()));
    }
    if !b.tags.is_empty() {
        m.insert("tags".into(), json!(b.tags));
    }
    m
}

/// A SecretBundle as a response (with `value` where the operation released it),
/// serialized straight from the zeroizing value into a body buffer that is wiped when the
/// response is done with it: no other copy of the value is made.
fn released(origin: &str, b: &SecretBundle) -> Result<Response, ApiError> {
    #[derive(serde::Serialize)]
    struct Out<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<&'a str>,
        id: String,
        attributes: &'a atrest_vault::model::SecretAttributes,
        #[serde(rename = "contentType", skip_serializing_if = "Option::is_none")]
        content_type: Option<&'a str>,
        #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        tags: &'a std::collections::BTreeMap<String, String>,
    }
    let out = Out {
        value: b.value.as_ref().map(atrest_wire::akv::SecretText::expose),
        id: id(origin, b),
        attributes: &b.attributes,
        content_type: b.content_type.as_deref(),
        tags: &b.tags,
    };
    // Sized up front (JSON escapes at most 6 bytes per value byte), so it never reallocates.
    let len = b.value.as_ref().map_or(0, |v| v.expose().len());
    let mut buf = WipedOnDrop(Vec::with_capacity(len * 6 + 4096));
    serde_json::to_writer(&mut buf.0, &out).map_err(|e| ApiError::bad(e.to_string()))?;
    let mut resp = Response::new(axum::body::Body::from(axum::body::Bytes::from_owner(buf)));
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    Ok(resp)
}

/// A response body buffer zeroized when the last reference to it goes.
struct WipedOnDrop(Vec<u8>);

impl AsRef<[u8]> for WipedOnDrop {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for WipedOnDrop {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// A SecretItem with the given `id` (versionless in lists, versioned in version lists).
fn item(id: String, b: &SecretBundle) -> Value {
    Value::Object(common(id, b))
}

fn with_deletion(mut v: Value, origin: &str, d: &DeletedSecret) -> Value {
    if let Value::Object(m) = &mut v {
        m.insert("recoveryId".into(), Value::String(format!("{origin}/deletedsecrets/{}", d.secret.name)));
        m.insert("deletedDate".into(), json!(d.deleted_date));
        m.insert("scheduledPurgeDate".into(), json!(d.scheduled_purge_date));
    }
    v
}

/// A DeletedSecretBundle: the latest version's versioned id, never the value.
fn deleted_bundle(origin: &str, d: &DeletedSecret) -> Value {
    with_deletion(item(id(origin, &d.secret), &d.secret), origin, d)
}

/// A DeletedSecretItem: versionless id.
fn deleted_item(origin: &str, d: &DeletedSecret) -> Value {
    with_deletion(item(format!("{origin}/secrets/{}", d.secret.name), &d.secret), origin, d)
}
