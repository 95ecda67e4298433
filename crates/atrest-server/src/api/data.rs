//! The data service's REST API, under `/data/`: resources, their encryption settings,
//! roles and diagnostics, records, blobs (streamed, with Range), transient messages,
//! jobs and the key-usage inventory. Authenticated by bearer token like the admin API;
//! names in paths are percent-decoded.

use super::{ApiError, AppState, no_content, ok};
use atrest_store::{ByteRange, EncryptionRequest, Precondition, StoreError, model::ObjectKind, model::Resource};
use atrest_vault::Principal;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = super::status_of(e.kind());
        if matches!(e, StoreError::Storage(_)) {
            tracing::error!(error = %e, "data service storage failed");
        }
        ApiError::new(status, e.code(), e.to_string())
    }
}

/// A bounded label for metrics: the operation, never names.
pub(super) fn route_label(method: &Method, path: &str) -> String {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let what = match seg.as_slice() {
        ["data", "resources"] => "resources",
        ["data", "resources", _] => "resource",
        ["data", "resources", _, "records", ..] => "records",
        ["data", "resources", _, "blobs", ..] => "blobs",
        ["data", "resources", _, "messages", ..] => "messages",
        ["data", "resources", _, "jobs"] | ["data", "jobs", ..] => "jobs",
        ["data", "resources", _, sub, ..] => sub,
        ["data", "key-usage"] => "key-usage",
        _ => "other",
    };
    let what = match what {
        "resources" | "resource" | "records" | "blobs" | "messages" | "jobs" | "key-usage" | "encryption" | "roles"
        | "diagnostics" => what,
        _ => "other",
    };
    format!("data:{what}:{}", method.as_str().to_ascii_lowercase())
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    let if_none = header_str(headers, header::IF_NONE_MATCH);
    if if_none.is_some_and(|v| v.trim() != "*") {
        return Err(ApiError::bad("only If-None-Match: * is supported on writes"));
    }
    Ok(Precondition {
        if_match: header_str(headers, header::IF_MATCH).map(|s| s.trim().to_string()),
        if_none_match: if_none.is_some(),
    })
}

pub(super) fn resource_json(store: &atrest_store::StoreService, r: &Resource, role: Option<&str>) -> Value {
    let mut v = json!({
        "name": r.name,
        "state": r.state.as_str(),
        "stateReason": r.state_reason,
        "identity": format!("res-{}", r.name),
        "encryption": encryption_json(r),
        "dataAudit": r.diagnostics,
        "created": r.created,
        "updated": r.updated,
    });
    if let Some(w) = store.warning(r) {
        v["warning"] = json!(w);
    }
    if let Some(role) = role {
        v["role"] = json!(role);
    }
    v
}

fn encryption_json(r: &Resource) -> Value {
    json!({
        "keySource": r.key_source.as_str(),
        "keyUri": r.key_uri,
        "keyVersion": r.wrapped.version,
        "versionless": r.kek.version.is_none(),
        "remote": !r.remote_cred.is_empty(),
        "rekeyInProgress": r.old_wrapped.is_some(),
    })
}

fn object_json(i: &atrest_store::model::ObjectInfo) -> Value {
    json!({"name": i.name, "size": i.size, "generation": i.generation, "etag": i.etag, "created": i.created, "updated": i.updated})
}

fn job_json(j: &atrest_store::model::Job) -> Value {
    json!({"id": j.id, "resource": j.resource, "kind": j.kind, "state": j.state, "done": j.done, "total": j.total,
           "error": j.error, "created": j.created, "updated": j.updated})
}

fn with_status(status: StatusCode, v: Value) -> Response {
    let mut r = ok(v);
    *r.status_mut() = status;
    r
}

fn with_etag(mut r: Response, etag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n`. Returns `None` for no Range header.
fn parse_range(headers: &HeaderMap) -> Result<Option<ByteRange>, ApiError> {
    let Some(v) = header_str(headers, header::RANGE) else { return Ok(None) };
    atrest_wire::range::parse(v).map(Some).ok_or_else(|| {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "InvalidRange",
            format!("unsupported Range {v:?}: use bytes=START-END, bytes=START- or bytes=-N"),
        )
    })
}

async fn body_bytes(body: Body) -> Result<axum::body::Bytes, ApiError> {
    super::read_body(body, super::MAX_BODY, ": store large values as blobs").await
}

async fn json_body<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let b = body_bytes(body).await?;
    serde_json::from_slice(&b).map_err(|e| ApiError::bad(format!("the request body does not fit this operation: {e}")))
}

/// The data front end, nested under `/data` (behind [`super::auth::bearer`]): one route
/// per operation. Blob bodies stream; other bodies are read by the handlers, bounded.
/// Path parameters arrive percent-decoded.
pub(super) fn router() -> axum::Router<Arc<AppState>> {
    use axum::routing::{delete, get, post, put};
    axum::Router::new()
        .route("/resources", get(list_resources))
        .route("/key-usage", get(key_usage))
        .route("/jobs", get(all_jobs))
        .route("/jobs/{id}", get(one_job))
        .route("/resources/{name}", put(create_resource).get(show_resource).delete(delete_resource))
        .route("/resources/{name}/encryption", get(show_encryption).put(set_encryption))
        .route("/resources/{name}/diagnostics", put(set_diagnostics))
        .route("/resources/{name}/roles", get(list_roles))
        .route("/resources/{name}/roles/{principal}", put(set_role).delete(remove_role))
        .route("/resources/{name}/records", get(list_records))
        .route("/resources/{name}/records/{*key}", put(put_record).get(get_record).delete(delete_record))
        .route("/resources/{name}/blobs", get(list_blobs))
        .route("/resources/{name}/blobs/{*key}", put(put_blob).get(get_blob).head(get_blob).delete(delete_blob))
        .route("/resources/{name}/messages", post(send_message))
        .route("/resources/{name}/messages/receive", post(receive_messages))
        .route("/resources/{name}/messages/{id}", delete(ack_message))
        .route("/resources/{name}/jobs", post(start_job).get(resource_jobs))
        .fallback(unknown)
        .method_not_allowed_fallback(unknown)
}

type St = State<Arc<AppState>>;
type Who = Extension<Principal>;
type Params<T> = Result<Path<T>, PathRejection>;

/// Path parameters, or 400 in the API's error format.
fn params<T>(p: Params<T>) -> Result<T, ApiError> {
    p.map(|Path(t)| t).map_err(|_| ApiError::bad("a path segment is not percent-encoded UTF-8"))
}

fn query(uri: &Uri) -> HashMap<String, String> {
    axum::extract::Query::<HashMap<String, String>>::try_from_uri(uri).map(|q| q.0).unwrap_or_default()
}

async fn unknown(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("no operation {method} /data{} (see /openapi.json)", uri.path()),
    )
}

async fn list_resources(State(state): St, Extension(a): Who) -> Result<Response, ApiError> {
    let store = &state.store;
    let list = store.list_resources(&a).await?;
    let items: Vec<Value> = list.iter().map(|(r, role)| resource_json(store, r, Some(role.as_str()))).collect();
    Ok(ok(json!({"value": items})))
}

async fn key_usage(State(state): St, Extension(a): Who) -> Result<Response, ApiError> {
    Ok(ok(key_usage_json(&state.store.key_usage(&a).await?)))
}

async fn all_jobs(State(state): St, Extension(a): Who) -> Result<Response, ApiError> {
    let jobs = state.store.list_jobs(&a, None).await?;
    Ok(ok(json!({"value": jobs.iter().map(job_json).collect::<Vec<_>>()})))
}

async fn one_job(State(state): St, Extension(a): Who, id: Params<String>) -> Result<Response, ApiError> {
    Ok(ok(job_json(&state.store.job(&a, &params(id)?).await?)))
}

async fn create_resource(State(state): St, Extension(a): Who, name: Params<String>) -> Result<Response, ApiError> {
    let r = state.store.create_resource(&a, &params(name)?).await?;
    Ok(with_status(StatusCode::CREATED, resource_json(&state.store, &r, Some("owner"))))
}

async fn show_resource(State(state): St, Extension(a): Who, name: Params<String>) -> Result<Response, ApiError> {
    let store = &state.store;
    let r = store.authorized(&a, &params(name)?, atrest_store::model::DataRole::Reader).await?;
    let role = store.role_of(&a, &r).await?.map(|r| r.as_str());
    Ok(ok(resource_json(store, &r, role)))
}

async fn delete_resource(State(state): St, Extension(a): Who, name: Params<String>) -> Result<Response, ApiError> {
    state.store.delete_resource(&a, &params(name)?).await?;
    Ok(no_content())
}

async fn show_encryption(State(state): St, Extension(a): Who, name: Params<String>) -> Result<Response, ApiError> {
    let r = state.store.authorized(&a, &params(name)?, atrest_store::model::DataRole::Reader).await?;
    Ok(ok(encryption_json(&r)))
}

async fn set_encryption(
    State(state): St,
    Extension(a): Who,
    name: Params<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let name = params(name)?;
    let req = encryption_request(&state, json_body(body).await?)?;
    let r = state.store.set_encryption(&a, &name, req).await?;
    Ok(ok(encryption_json(&r)))
}

async fn set_diagnostics(
    State(state): St,
    Extension(a): Who,
    name: Params<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let name = params(name)?;
    let req: Value = json_body(body).await?;
    let on = req["dataAudit"].as_bool().ok_or_else(|| ApiError::bad("send {\"dataAudit\": true|false}"))?;
    let r = state.store.set_diagnostics(&a, &name, on).await?;
    Ok(ok(resource_json(&state.store, &r, Some("owner"))))
}

async fn list_roles(State(state): St, Extension(a): Who, name: Params<String>) -> Result<Response, ApiError> {
    let roles = state.store.roles(&a, &params(name)?).await?;
    let items: Vec<Value> = roles.iter().map(|(p, r)| json!({"principal": p, "role": r.as_str()})).collect();
    Ok(ok(json!({"value": items})))
}

async fn set_role(
    State(state): St,
    Extension(a): Who,
    p: Params<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let (name, principal) = params(p)?;
    let req: Value = json_body(body).await?;
    let role = req["role"]
        .as_str()
        .and_then(atrest_store::model::DataRole::parse)
        .ok_or_else(|| ApiError::bad("send {\"role\": \"reader\"|\"writer\"|\"owner\"}"))?;
    state.store.set_role(&a, &name, &principal, Some(role)).await?;
    Ok(ok(json!({"principal": principal, "role": role.as_str()})))
}

async fn remove_role(State(state): St, Extension(a): Who, p: Params<(String, String)>) -> Result<Response, ApiError> {
    let (name, principal) = params(p)?;
    state.store.set_role(&a, &name, &principal, None).await?;
    Ok(no_content())
}

async fn list_records(
    State(state): St,
    Extension(a): Who,
    name: Params<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    list(&state.store, &a, &params(name)?, ObjectKind::Record, &query(&uri)).await
}

async fn list_blobs(State(state): St, Extension(a): Who, name: Params<String>, uri: Uri) -> Result<Response, ApiError> {
    list(&state.store, &a, &params(name)?, ObjectKind::Blob, &query(&uri)).await
}

async fn put_record(
    State(state): St,
    Extension(a): Who,
    p: Params<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (name, key) = params(p)?;
    let cond = precondition(&headers)?;
    let b = body_bytes(body).await?;
    let info = state.store.put_record(&a, &name, &key, &b, &cond).await?;
    let status = if info.generation == 1 { StatusCode::CREATED } else { StatusCode::OK };
    Ok(with_etag(with_status(status, object_json(&info)), &info.etag))
}

async fn get_record(
    State(state): St,
    Extension(a): Who,
    p: Params<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (name, key) = params(p)?;
    let (info, value) = state.store.get_record(&a, &name, &key).await?;
    if header_str(&headers, header::IF_NONE_MATCH) == Some(info.etag.as_str()) {
        let r = Response::builder().status(StatusCode::NOT_MODIFIED).body(Body::empty()).unwrap_or_default();
        return Ok(with_etag(r, &info.etag));
    }
    let mut r = (StatusCode::OK, value).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    r.headers_mut().insert("x-atrest-generation", HeaderValue::from(info.generation));
    Ok(with_etag(r, &info.etag))
}

async fn delete_record(
    State(state): St,
    Extension(a): Who,
    p: Params<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (name, key) = params(p)?;
    state.store.delete_object(&a, &name, ObjectKind::Record, &key, &precondition(&headers)?).await?;
    Ok(no_content())
}

async fn put_blob(
    State(state): St,
    Extension(a): Who,
    p: Params<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (name, key) = params(p)?;
    let cond = precondition(&headers)?;
    let info = state.store.put_blob(&a, &name, &key, &cond, body.into_data_stream()).await?;
    let status = if info.generation == 1 { StatusCode::CREATED } else { StatusCode::OK };
    Ok(with_etag(with_status(status, object_json(&info)), &info.etag))
}

/// GET and HEAD (which reads no body from the blob store).
async fn get_blob(
    State(state): St,
    Extension(a): Who,
    method: Method,
    p: Params<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (name, key) = params(p)?;
    read_blob(&state, &a, &name, &key, &headers, method == Method::HEAD).await
}

async fn delete_blob(
    State(state): St,
    Extension(a): Who,
    p: Params<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (name, key) = params(p)?;
    state.store.delete_object(&a, &name, ObjectKind::Blob, &key, &precondition(&headers)?).await?;
    Ok(no_content())
}

async fn send_message(
    State(state): St,
    Extension(a): Who,
    name: Params<String>,
    uri: Uri,
    body: Body,
) -> Result<Response, ApiError> {
    let name = params(name)?;
    let ttl = query(&uri)
        .get("ttl")
        .map(|t| t.parse::<i64>())
        .transpose()
        .map_err(|_| ApiError::bad("ttl must be seconds"))?;
    let b = body_bytes(body).await?;
    let (id, expires) = state.store.send_message(&a, &name, &b, ttl).await?;
    Ok(with_status(StatusCode::CREATED, json!({"id": id, "expires": expires})))
}

async fn receive_messages(
    State(state): St,
    Extension(a): Who,
    name: Params<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    use base64::Engine as _;
    let name = params(name)?;
    let q = query(&uri);
    let max = q.get("max").and_then(|m| m.parse().ok()).unwrap_or(1);
    let vis = q.get("visibility").and_then(|m| m.parse().ok()).unwrap_or(30);
    let msgs = state.store.receive_messages(&a, &name, max, vis).await?;
    let items: Vec<Value> = msgs
        .iter()
        .map(|m| {
            json!({"id": m.id, "receipt": m.receipt, "deliveries": m.deliveries, "expires": m.expires,
                   "body": base64::engine::general_purpose::STANDARD.encode(&m.body)})
        })
        .collect();
    Ok(ok(json!({"value": items})))
}

async fn ack_message(
    State(state): St,
    Extension(a): Who,
    p: Params<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (name, id) = params(p)?;
    let q = query(&uri);
    let receipt = q.get("receipt").ok_or_else(|| ApiError::bad("the receipt query parameter is required"))?;
    state.store.ack_message(&a, &name, &id, receipt).await?;
    Ok(no_content())
}

async fn start_job(
    State(state): St,
    Extension(a): Who,
    name: Params<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let name = params(name)?;
    let req: Value = json_body(body).await?;
    let kind = req["kind"].as_str().ok_or_else(|| ApiError::bad("send {\"kind\": \"rekey\"|\"reencrypt\"}"))?;
    let job = state.store.start_job(&a, &name, kind).await?;
    Ok(with_status(StatusCode::ACCEPTED, job_json(&job)))
}

async fn resource_jobs(State(state): St, Extension(a): Who, name: Params<String>) -> Result<Response, ApiError> {
    let jobs = state.store.list_jobs(&a, Some(&params(name)?)).await?;
    Ok(ok(json!({"value": jobs.iter().map(job_json).collect::<Vec<_>>()})))
}

async fn list(
    store: &atrest_store::StoreService,
    a: &Principal,
    name: &str,
    kind: ObjectKind,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let limit = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(1000usize).clamp(1, 5000);
    let prefix = query.get("prefix").map_or("", String::as_str);
    let (items, more) =
        store.list_objects(a, name, kind, prefix, query.get("after").map(String::as_str), limit).await?;
    let next = if more { items.last().map(|i| i.name.clone()) } else { None };
    Ok(ok(json!({"value": items.iter().map(object_json).collect::<Vec<_>>(), "nextAfter": next})))
}

async fn read_blob(
    state: &AppState,
    a: &Principal,
    name: &str,
    key: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let range = parse_range(headers)?;
    let read = match state.store.get_blob(a, name, key, range).await {
        // 416 says how long the blob is, as HTTP requires.
        Err(StoreError::RangeNotSatisfiable { size, message }) => {
            let mut r = ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "InvalidRange", message).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
        r => r?,
    };
    let size = read.info.size;
    // A suffix of an empty blob is the whole (empty) blob: 200, no Content-Range.
    let range = range.filter(|_| read.len > 0);
    let status = if range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    let mut rx = read.chunks;
    let body =
        if head { Body::empty() } else { Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))) };
    let mut r = Response::builder().status(status).body(body).unwrap_or_default();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(read.len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert("x-atrest-generation", HeaderValue::from(read.info.generation));
    if range.is_some()
        && let Ok(v) = HeaderValue::from_str(&format!(
            "bytes {}-{}/{size}",
            read.offset,
            (read.offset + read.len).saturating_sub(1)
        ))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(with_etag(r, &read.info.etag))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EncryptionBody {
    key_source: String,
    key_uri: Option<String>,
    /// Bearer token for a vault on another server.
    credential: Option<String>,
}

fn encryption_request(state: &AppState, b: EncryptionBody) -> Result<EncryptionRequest, ApiError> {
    match (b.key_source.as_str(), b.key_uri, b.credential) {
        ("platform", None, None) => Ok(EncryptionRequest::Platform),
        ("platform", _, _) => Err(ApiError::bad("keySource platform takes no keyUri or credential")),
        ("customer", Some(uri), credential) => {
            let (origin, key, version) = atrest_store::remote::parse_key_uri(&uri)?;
            match credential {
                Some(c) => Ok(EncryptionRequest::Remote {
                    kek: atrest_store::keyvault::KeyRef { vault: origin, name: key, version },
                    uri,
                    credential: atrest_crypto::SecretBytes::new(c.trim().as_bytes().to_vec()),
                }),
                None => local_key(state, uri).map_err(ApiError::bad),
            }
        }
        ("customer", None, _) => {
            Err(ApiError::bad("keySource customer needs keyUri: https://HOST/keys/NAME[/VERSION]"))
        }
        (other, _, _) => Err(ApiError::bad(format!("keySource must be platform or customer, not {other}"))),
    }
}

/// A customer key of this deployment, by its URI (`https://HOST/keys/NAME[/VERSION]`,
/// the host naming one of this deployment's vaults).
pub(super) fn local_key(state: &AppState, uri: String) -> Result<EncryptionRequest, String> {
    let (origin, key, version) = atrest_store::remote::parse_key_uri(&uri).map_err(|e| e.to_string())?;
    let host = origin.trim_start_matches("https://");
    let port = atrest_store::remote::split_authority(host).map(|(_, p)| p);
    let vault =
        super::vault_at(state, host, port).ok_or_else(|| format!("no vault of this deployment answers at {host}"))?;
    Ok(EncryptionRequest::Customer { kek: atrest_store::keyvault::KeyRef { vault, name: key, version }, uri })
}

fn key_usage_json(usage: &[atrest_store::KeyUsage]) -> Value {
    let items: Vec<Value> = usage
        .iter()
        .map(|k| {
            json!({
                "key": k.key,
                "vault": k.vault,
                "name": k.name,
                "versions": k.versions.iter().map(|v| json!({"version": v.version, "resources": v.resources, "needed": v.needed})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"value": items})
}
