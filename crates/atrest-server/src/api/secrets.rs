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

/// Routes an authenticated secrets request.
pub(super) async fn route(ctx: &Ctx<'_>, method: &Method, path: &[&str]) -> Result<Response, ApiError> {
    let (svc, vault) = (ctx.svc, &ctx.vault);
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
            Ok(ok(bundle(&ctx.origin, &svc.restore_secret(vault, &blob).await?)))
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
            Ok(ok(bundle(&ctx.origin, &svc.set_secret(vault, name, set).await?)))
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
            Ok(ok(bundle(&ctx.origin, &svc.recover_deleted_secret(vault, name).await?)))
        }
        (m, p) => Err(unknown_route(&m, p)),
    }
}

async fn allow(ctx: &Ctx<'_>, permission: P, secret: Option<&str>) -> Result<(), ApiError> {
    Ok(ctx.svc.authorize_secret(&ctx.vault, &ctx.principal, permission, secret).await?)
}

fn skiptoken<'a>(ctx: &'a Ctx<'_>) -> Option<&'a str> {
    ctx.query.get("$skiptoken").map(String::as_str)
}

async fn get(ctx: &Ctx<'_>, name: &str, version: Option<&str>) -> Result<Response, ApiError> {
    allow(ctx, P::Get, Some(name)).await?;
    Ok(ok(bundle(&ctx.origin, &ctx.svc.get_secret(&ctx.vault, name, version).await?)))
}

async fn update(ctx: &Ctx<'_>, name: &str, version: Option<&str>) -> Result<Response, ApiError> {
    allow(ctx, P::Set, Some(name)).await?;
    let req: SecretUpdateIn = ctx.json()?;
    let a = req.attributes.unwrap_or_default();
    let change =
        UpdateSecret { content_type: req.content_type, enabled: a.enabled, nbf: a.nbf, exp: a.exp, tags: req.tags };
    Ok(ok(bundle(&ctx.origin, &ctx.svc.update_secret(&ctx.vault, name, version, change).await?)))
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

/// A SecretBundle (with `value` where the operation released it).
fn bundle(origin: &str, b: &SecretBundle) -> Value {
    let mut m = common(id(origin, b), b);
    if let Some(v) = &b.value {
        m.insert("value".into(), Value::String(v.expose().to_string()));
    }
    Value::Object(m)
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
