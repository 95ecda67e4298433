//! The S3 operations: dispatch on (method, bucket, key, sub-resource), then one thin
//! function per operation over `atrest_store::s3`.

use super::S3Error;
use super::auth::{self, S3Caller};
use super::body::{self, Algo, Expect};
use super::xml::{Xml, http_date, iso8601};
use crate::api::AppState;
use atrest_crypto::SecretKey;
use atrest_store::s3::{KmsKeyId, ListQuery, S3Object, S3Put, Sse, SseRequest};
use atrest_store::{ByteRange, EncryptionRequest, StoreError, model::DataRole};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most keys of one listing page and of one batch delete.
const MAX_KEYS: usize = 1000;
/// Most bytes of user metadata (`x-amz-meta-*` names and values), as on S3.
const MAX_USER_META: usize = 2048;
/// Largest XML request body (a batch delete of 1,000 long keys).
const MAX_XML: usize = 2 << 20;
/// Stored `Content-*` style headers, returned on GET and HEAD.
const STORED_HEADERS: [&str; 6] =
    ["content-type", "content-encoding", "content-disposition", "content-language", "cache-control", "expires"];
/// Sub-resources of features this front end does not have (docs/s3.md).
const UNSUPPORTED: [&str; 22] = [
    "acl",
    "policy",
    "policyStatus",
    "lifecycle",
    "cors",
    "website",
    "tagging",
    "logging",
    "notification",
    "object-lock",
    "retention",
    "legal-hold",
    "replication",
    "ownershipControls",
    "publicAccessBlock",
    "requestPayment",
    "accelerate",
    "analytics",
    "metrics",
    "inventory",
    "intelligent-tiering",
    "select",
];
/// What `encoding-type=url` leaves as is: unreserved characters and `/`.
const URL_KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

/// The decoded query string.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        let dec = |s: &str| percent_decode_str(&s.replace('+', "%20")).decode_utf8_lossy().into_owned();
        Self(
            q.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (dec(k), dec(v))
                })
                .collect(),
        )
    }

    fn has(&self, k: &str) -> bool {
        self.0.iter().any(|(n, _)| n == k)
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
}

/// `/BUCKET/KEY`, decoded.
struct Target {
    bucket: Option<String>,
    key: Option<String>,
}

impl Target {
    fn parse(path: &str) -> Result<Self, S3Error> {
        let dec = |s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(std::borrow::Cow::into_owned)
                .map_err(|_| S3Error::bad("InvalidURI", "the path is not percent-encoded UTF-8"))
        };
        let rest = path.strip_prefix('/').unwrap_or(path);
        let (bucket, key) = match rest.split_once('/') {
            Some((b, k)) => (b, k),
            None => (rest, ""),
        };
        Ok(Self {
            bucket: (!bucket.is_empty()).then(|| dec(bucket)).transpose()?,
            key: (!key.is_empty()).then(|| dec(key)).transpose()?,
        })
    }

    fn resource(&self) -> String {
        match (&self.bucket, &self.key) {
            (Some(b), Some(k)) => format!("{b}/{k}"),
            (Some(b), None) => b.clone(),
            _ => String::new(),
        }
    }
}

/// Every S3 request: authenticated before its body is read, then routed.
pub(crate) async fn dispatch(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let request_id = hex::encode_upper(atrest_crypto::rand::bytes::<8>().unwrap_or_default());
    let mut resp = answer(&state, req, &request_id).await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-amz-request-id", v);
    }
    resp
}

async fn answer(state: &Arc<AppState>, req: Request, request_id: &str) -> Response {
    let (parts, body) = req.into_parts();
    let head = parts.method == Method::HEAD;
    let target = match Target::parse(parts.uri.path()) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let result = async {
        let caller = auth::authenticate(state, &parts).await?;
        route(state, &parts, body, caller, &target).await
    }
    .await;
    match result {
        Ok(r) => r,
        Err(mut e) => {
            e.head = head;
            e.request_id = request_id.to_string();
            if e.resource.is_empty() {
                e.resource = target.resource();
            }
            e.into_response()
        }
    }
}

async fn route(
    state: &Arc<AppState>,
    parts: &Parts,
    body: Body,
    caller: S3Caller,
    t: &Target,
) -> Result<Response, S3Error> {
    let q = Query::parse(parts.uri.query());
    let m = &parts.method;
    if let Some(sub) = UNSUPPORTED.iter().find(|s| q.has(s)) {
        return Err(S3Error::not_implemented(&format!("the ?{sub} sub-resource")));
    }
    match (&t.bucket, &t.key) {
        (None, _) if *m == Method::GET => list_buckets(state, &caller, &q).await,
        (None, _) => Err(S3Error::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "use GET / to list buckets")),
        (Some(b), None) => match *m {
            Method::GET if q.has("uploads") => list_uploads(state, &caller, b, &q).await,
            Method::GET if q.has("location") => location(state, &caller, b).await,
            Method::GET if q.has("encryption") => get_encryption(state, &caller, b).await,
            Method::GET if q.has("versioning") => versioning(state, &caller, b).await,
            Method::GET if q.has("versions") => list_versions(state, &caller, b, &q).await,
            Method::GET if q.get("list-type") == Some("2") => list(state, &caller, b, &q, true).await,
            Method::GET => list(state, &caller, b, &q, false).await,
            Method::HEAD => head_bucket(state, &caller, b).await,
            Method::PUT if q.has("encryption") => put_encryption(state, parts, body, caller, b).await,
            Method::PUT if q.has("versioning") => Err(S3Error::not_implemented("versioning")),
            Method::PUT => create_bucket(state, parts, body, caller, b).await,
            Method::DELETE if q.has("encryption") => delete_encryption(state, &caller, b).await,
            Method::DELETE => delete_bucket(state, &caller, b).await,
            Method::POST if q.has("delete") => delete_objects(state, parts, body, caller, b).await,
            _ => Err(S3Error::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("{m} on a bucket"))),
        },
        (Some(b), Some(k)) if q.has("uploads") || q.has("uploadId") => {
            multipart(state, parts, body, caller, b, k, &q).await
        }
        // Versioning is never on: the only version of an object is "null".
        (Some(_), Some(_)) if q.get("versionId").is_some_and(|v| v != "null") => Err(S3Error::new(
            StatusCode::NOT_FOUND,
            "NoSuchVersion",
            "versioning is not enabled on this server: the only version id is null",
        )),
        // A key no object can have (control characters) is refused as S3 does.
        (Some(_), Some(k)) if k.chars().any(char::is_control) || k.len() > 1024 => {
            Err(S3Error::bad("InvalidURI", "Couldn't parse the specified URI."))
        }
        (Some(b), Some(k)) => match *m {
            Method::PUT if parts.headers.contains_key("x-amz-copy-source") => {
                copy_object(state, parts, caller, b, k).await
            }
            Method::PUT => put_object(state, parts, body, caller, b, k).await,
            Method::GET if q.has("attributes") => object_attributes(state, &parts.headers, &caller, b, k).await,
            Method::GET => get_object(state, &parts.headers, &q, &caller, b, k, false).await,
            Method::HEAD => get_object(state, &parts.headers, &q, &caller, b, k, true).await,
            Method::DELETE => {
                state.store.s3_delete(&caller.principal, b, k).await.map_err(S3Error::from_store)?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            _ => Err(S3Error::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("{m} on an object"))),
        },
    }
}

/// A continuation token as this server writes them: the last name answered, base64url.
fn continuation_token(last: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

/// The name a continuation token (from [`continuation_token`]) starts after.
fn continuation(token: Option<&str>) -> Result<Option<String>, S3Error> {
    token
        .map(|t| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| S3Error::bad("InvalidArgument", "The continuation token provided is incorrect"))
        })
        .transpose()
}

fn empty(status: StatusCode) -> Response {
    Response::builder().status(status).body(Body::empty()).unwrap_or_default()
}

fn header_str<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// The `x-amz-server-side-encryption*` headers of an object (for SSE-C, the key's MD5
/// is the one the request sent: it is not stored).
fn sse_headers(h: &mut HeaderMap, sse: &Sse, key_md5: Option<&str>) {
    match sse {
        Sse::Customer { .. } => {
            set(h, "x-amz-server-side-encryption-customer-algorithm", "AES256");
            if let Some(md5) = key_md5 {
                set(h, "x-amz-server-side-encryption-customer-key-md5", md5);
            }
        }
        Sse::S3 => set(h, "x-amz-server-side-encryption", "AES256"),
        Sse::Kms { key_id } => {
            set(h, "x-amz-server-side-encryption", "aws:kms");
            set(h, "x-amz-server-side-encryption-aws-kms-key-id", key_id);
            // The bucket's resource key is S3's "bucket key": one vault call per key
            // lifetime, not per object.
            set(h, "x-amz-server-side-encryption-bucket-key-enabled", "true");
        }
    }
}

fn owner(x: &mut Xml, caller: &S3Caller) {
    x.start("Owner").text("ID", &caller.principal.id).text("DisplayName", &caller.principal.name).end();
}

// ---- buckets ----

async fn list_buckets(state: &AppState, caller: &S3Caller, q: &Query) -> Result<Response, S3Error> {
    let max = match q.get("max-buckets") {
        None => usize::MAX,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| S3Error::bad("InvalidArgument", "max-buckets must be a number from 1 to 10000"))?,
    };
    let after = continuation(q.get("continuation-token"))?;
    let prefix = q.get("prefix").unwrap_or("");
    let buckets: Vec<_> = state
        .store
        .s3_buckets(&caller.principal)
        .await
        .map_err(S3Error::from_store)?
        .into_iter()
        .filter(|b| b.name.starts_with(prefix) && after.as_ref().is_none_or(|a| b.name > *a))
        .collect();
    let mut x = Xml::new("ListAllMyBucketsResult");
    owner(&mut x, caller);
    x.start("Buckets");
    for b in buckets.iter().take(max) {
        x.start("Bucket").text("Name", &b.name).text("CreationDate", &iso8601(b.created));
        x.text("BucketRegion", "us-east-1").end();
    }
    x.end();
    if buckets.len() > max {
        x.text("ContinuationToken", &continuation_token(&buckets[max - 1].name));
    }
    if !prefix.is_empty() {
        x.text("Prefix", prefix);
    }
    Ok(x.into_response(StatusCode::OK))
}

/// S3's bucket naming rules, within what a resource name allows (no dots).
fn check_bucket_name(name: &str) -> Result<(), S3Error> {
    let ok = (3..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(S3Error::bad(
            "InvalidBucketName",
            format!(
                "{name:?} is not a bucket name this server accepts: 3 to 63 lowercase letters, digits and '-', starting \
                 and ending with a letter or digit (no dots)"
            ),
        ))
    }
}

/// A small request body (XML), verified as any body is.
async fn small_body(headers: &HeaderMap, body: Body, caller: S3Caller) -> Result<Bytes, S3Error> {
    let expect = Expect::from_headers(headers, caller.payload, caller.signing)?;
    let (mut stream, judge) = body::take(body, expect);
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) if buf.len() + c.len() <= MAX_XML => buf.extend_from_slice(&c),
            Ok(_) => {
                return Err(S3Error::bad(
                    "MaxMessageLengthExceeded",
                    format!("the request body is over {MAX_XML} bytes"),
                ));
            }
            Err(_) => break,
        }
    }
    judge.finish(buf.len() as u64)?;
    Ok(Bytes::from(buf))
}

/// An XML request body (verified as any body is), parsed; `what` names it in the error.
/// Returns the caller too, whose signing state the body consumed.
async fn xml_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    caller: S3Caller,
    what: &str,
) -> Result<(atrest_vault::Principal, T), S3Error> {
    let actor = caller.principal.clone();
    let xml = small_body(headers, body, caller).await?;
    let parsed = quick_xml::de::from_reader(xml.as_ref())
        .map_err(|e| S3Error::bad("MalformedXML", format!("{what} does not parse: {e}")))?;
    Ok((actor, parsed))
}

async fn create_bucket(
    state: &AppState,
    parts: &Parts,
    body: Body,
    caller: S3Caller,
    b: &str,
) -> Result<Response, S3Error> {
    check_bucket_name(b)?;
    let actor = caller.principal.clone();
    // A CreateBucketConfiguration (the region) may come along; any region is this server.
    small_body(&parts.headers, body, caller).await?;
    match state.store.create_resource(&actor, b).await {
        Ok(_) => {
            let mut r = empty(StatusCode::OK);
            set(r.headers_mut(), "location", &format!("/{b}"));
            Ok(r)
        }
        // As S3 in us-east-1: creating a bucket you already own succeeds.
        Err(StoreError::Conflict(_)) if state.store.s3_bucket(&actor, b, DataRole::Owner).await.is_ok() => {
            let mut r = empty(StatusCode::OK);
            set(r.headers_mut(), "location", &format!("/{b}"));
            Ok(r)
        }
        Err(StoreError::Conflict(_)) => Err(S3Error::new(
            StatusCode::CONFLICT,
            "BucketAlreadyExists",
            format!("your tenant already has a bucket named {b}, and you do not own it"),
        )),
        Err(StoreError::Forbidden(m)) => Err(S3Error::denied(m)),
        Err(e) => Err(S3Error::from_store(e)),
    }
}

async fn head_bucket(state: &AppState, caller: &S3Caller, b: &str) -> Result<Response, S3Error> {
    state.store.s3_bucket(&caller.principal, b, DataRole::Reader).await.map_err(S3Error::from_store)?;
    let mut r = empty(StatusCode::OK);
    set(r.headers_mut(), "x-amz-bucket-region", "us-east-1");
    Ok(r)
}

async fn delete_bucket(state: &AppState, caller: &S3Caller, b: &str) -> Result<Response, S3Error> {
    match state.store.s3_delete_bucket(&caller.principal, b).await {
        Ok(()) => Ok(empty(StatusCode::NO_CONTENT)),
        Err(StoreError::Conflict(m)) => Err(S3Error::new(StatusCode::CONFLICT, "BucketNotEmpty", m)),
        Err(e) => Err(S3Error::from_store(e)),
    }
}

async fn location(state: &AppState, caller: &S3Caller, b: &str) -> Result<Response, S3Error> {
    state.store.s3_bucket(&caller.principal, b, DataRole::Reader).await.map_err(S3Error::from_store)?;
    // us-east-1 is answered as an empty constraint, as S3 does.
    Ok(Xml::new("LocationConstraint").into_response(StatusCode::OK))
}

async fn versioning(state: &AppState, caller: &S3Caller, b: &str) -> Result<Response, S3Error> {
    state.store.s3_bucket(&caller.principal, b, DataRole::Reader).await.map_err(S3Error::from_store)?;
    // Never enabled: an empty configuration, as for a bucket that never had it.
    Ok(Xml::new("VersioningConfiguration").into_response(StatusCode::OK))
}

fn bucket_sse(r: &atrest_store::model::Resource) -> Sse {
    match r.key_source {
        atrest_store::model::KeySource::Platform => Sse::S3,
        atrest_store::model::KeySource::Customer => Sse::Kms { key_id: r.key_uri.clone() },
    }
}

async fn get_encryption(state: &AppState, caller: &S3Caller, b: &str) -> Result<Response, S3Error> {
    let r = state.store.s3_bucket(&caller.principal, b, DataRole::Reader).await.map_err(S3Error::from_store)?;
    let mut x = Xml::new("ServerSideEncryptionConfiguration");
    x.start("Rule").start("ApplyServerSideEncryptionByDefault");
    match bucket_sse(&r) {
        Sse::S3 | Sse::Customer { .. } => {
            x.text("SSEAlgorithm", "AES256").end().text("BucketKeyEnabled", "false");
        }
        Sse::Kms { key_id } => {
            x.text("SSEAlgorithm", "aws:kms").text("KMSMasterKeyID", &key_id).end().text("BucketKeyEnabled", "true");
        }
    }
    Ok(x.into_response(StatusCode::OK))
}

#[derive(serde::Deserialize)]
struct SseConfig {
    #[serde(rename = "Rule", default)]
    rules: Vec<SseRule>,
}

#[derive(serde::Deserialize)]
struct SseRule {
    #[serde(rename = "ApplyServerSideEncryptionByDefault")]
    default: Option<SseDefault>,
}

#[derive(serde::Deserialize)]
struct SseDefault {
    #[serde(rename = "SSEAlgorithm")]
    algorithm: String,
    #[serde(rename = "KMSMasterKeyID")]
    key_id: Option<String>,
}

async fn put_encryption(
    state: &AppState,
    parts: &Parts,
    body: Body,
    caller: S3Caller,
    b: &str,
) -> Result<Response, S3Error> {
    let (actor, cfg): (_, SseConfig) = xml_body(&parts.headers, body, caller, "the encryption configuration").await?;
    let malformed = |why: &str| S3Error::bad("MalformedXML", format!("the encryption configuration {why}"));
    let [rule] = cfg.rules.as_slice() else { return Err(malformed("must hold exactly one Rule")) };
    let d = rule.default.as_ref().ok_or_else(|| malformed("needs ApplyServerSideEncryptionByDefault"))?;
    let req = match (d.algorithm.as_str(), d.key_id.as_deref()) {
        ("AES256", None) => EncryptionRequest::Platform,
        ("aws:kms", Some(id)) if id.starts_with("https://") => {
            crate::api::data::local_key(state, id.to_string()).map_err(|m| S3Error::bad("InvalidArgument", m))?
        }
        ("aws:kms", _) => {
            return Err(S3Error::bad(
                "InvalidArgument",
                "aws:kms needs KMSMasterKeyID set to the key's URI in a vault of your tenant, \
                 https://HOST/keys/NAME[/VERSION] (atrest key show prints it)",
            ));
        }
        (a, _) => {
            return Err(S3Error::bad(
                "InvalidArgument",
                format!("SSEAlgorithm {a} is not supported: use AES256 or aws:kms"),
            ));
        }
    };
    set_encryption(state, &actor, b, req).await
}

async fn set_encryption(
    state: &AppState,
    actor: &atrest_vault::Principal,
    b: &str,
    req: EncryptionRequest,
) -> Result<Response, S3Error> {
    match state.store.s3_set_encryption(actor, b, req).await {
        Ok(_) => Ok(empty(StatusCode::OK)),
        Err(e @ StoreError::KeyRejected(_)) => Err(S3Error::bad("InvalidArgument", e.to_string())),
        Err(e) => Err(S3Error::from_store(e)),
    }
}

async fn delete_encryption(state: &AppState, caller: &S3Caller, b: &str) -> Result<Response, S3Error> {
    set_encryption(state, &caller.principal, b, EncryptionRequest::Platform).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

// ---- listing ----

fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, URL_KEEP).to_string()
}

async fn list(state: &AppState, caller: &S3Caller, b: &str, q: &Query, v2: bool) -> Result<Response, S3Error> {
    let max = match q.get("max-keys") {
        None => MAX_KEYS,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| usize::try_from(n).unwrap_or(MAX_KEYS).min(MAX_KEYS))
            .ok_or_else(|| S3Error::bad("InvalidArgument", "max-keys must be a non-negative integer"))?,
    };
    let url = match q.get("encoding-type") {
        None => false,
        Some("url") => true,
        Some(other) => {
            return Err(S3Error::bad("InvalidArgument", format!("Invalid Encoding Method {other} specified")));
        }
    };
    let token = continuation(q.get("continuation-token").filter(|_| v2))?;
    let after = if v2 {
        token.clone().or_else(|| q.get("start-after").map(str::to_string))
    } else {
        q.get("marker").map(str::to_string)
    };
    let query = ListQuery {
        prefix: q.get("prefix").unwrap_or("").to_string(),
        delimiter: q.get("delimiter").filter(|d| !d.is_empty()).map(str::to_string),
        after,
        max,
    };
    let page = state.store.s3_list(&caller.principal, b, &query).await.map_err(S3Error::from_store)?;
    let enc = |s: &str| if url { url_encode(s) } else { s.to_string() };
    let mut x = Xml::new("ListBucketResult");
    // V1 answers the prefix as sent (the SDKs decode it only in v2).
    x.text("Name", b).text("Prefix", &if v2 { enc(&query.prefix) } else { query.prefix.clone() });
    if let Some(d) = &query.delimiter {
        x.text("Delimiter", &enc(d));
    }
    x.text("MaxKeys", &max.to_string());
    if url {
        x.text("EncodingType", "url");
    }
    x.text("IsTruncated", if page.truncated { "true" } else { "false" });
    if v2 {
        x.text("KeyCount", &(page.objects.len() + page.prefixes.len()).to_string());
        if let Some(t) = q.get("continuation-token") {
            x.text("ContinuationToken", t);
        }
        if let Some(s) = q.get("start-after") {
            x.text("StartAfter", &enc(s));
        }
        if page.truncated
            && let Some(last) = &page.last
        {
            x.text("NextContinuationToken", &continuation_token(last));
        }
    } else {
        x.text("Marker", &enc(q.get("marker").unwrap_or("")));
        if page.truncated
            && let Some(last) = &page.last
        {
            x.text("NextMarker", &enc(last));
        }
    }
    let fetch_owner = !v2 || q.get("fetch-owner") == Some("true");
    for o in &page.objects {
        x.start("Contents")
            .text("Key", &enc(&o.key))
            .text("LastModified", &iso8601(o.modified))
            .text("ETag", &format!("\"{}\"", o.etag))
            .text("Size", &o.size.to_string())
            .text("StorageClass", "STANDARD");
        if fetch_owner {
            owner(&mut x, caller);
        }
        x.end();
    }
    for p in &page.prefixes {
        x.start("CommonPrefixes").text("Prefix", &enc(p)).end();
    }
    Ok(x.into_response(StatusCode::OK))
}

/// ListObjectVersions on a bucket that never had versioning: every object once, as
/// version `null`, the latest.
async fn list_versions(state: &AppState, caller: &S3Caller, b: &str, q: &Query) -> Result<Response, S3Error> {
    let max = q.get("max-keys").and_then(|v| v.parse::<usize>().ok()).map_or(MAX_KEYS, |n| n.min(MAX_KEYS));
    let query = ListQuery {
        prefix: q.get("prefix").unwrap_or("").to_string(),
        delimiter: q.get("delimiter").filter(|d| !d.is_empty()).map(str::to_string),
        after: q.get("key-marker").filter(|k| !k.is_empty()).map(str::to_string),
        max,
    };
    let page = state.store.s3_list(&caller.principal, b, &query).await.map_err(S3Error::from_store)?;
    let mut x = Xml::new("ListVersionsResult");
    x.text("Name", b).text("Prefix", &query.prefix).text("KeyMarker", q.get("key-marker").unwrap_or(""));
    x.text("VersionIdMarker", q.get("version-id-marker").unwrap_or(""));
    if let Some(d) = &query.delimiter {
        x.text("Delimiter", d);
    }
    x.text("MaxKeys", &max.to_string()).text("IsTruncated", if page.truncated { "true" } else { "false" });
    if page.truncated
        && let Some(last) = &page.last
    {
        x.text("NextKeyMarker", last).text("NextVersionIdMarker", "null");
    }
    for o in &page.objects {
        x.start("Version")
            .text("Key", &o.key)
            .text("VersionId", "null")
            .text("IsLatest", "true")
            .text("LastModified", &iso8601(o.modified))
            .text("ETag", &format!("\"{}\"", o.etag))
            .text("Size", &o.size.to_string())
            .text("StorageClass", "STANDARD");
        owner(&mut x, caller);
        x.end();
    }
    for p in &page.prefixes {
        x.start("CommonPrefixes").text("Prefix", p).end();
    }
    Ok(x.into_response(StatusCode::OK))
}

// ---- objects ----

/// A customer-provided key (SSE-C) and its MD5 as sent: from the
/// `x-amz-server-side-encryption-customer-*` headers, or with `copy_source` the
/// `x-amz-copy-source-server-side-encryption-customer-*` ones. The key goes straight into
/// a zeroizing type.
fn customer_key(h: &HeaderMap, copy_source: bool) -> Result<Option<(SecretKey, String)>, S3Error> {
    let prefix = if copy_source {
        "x-amz-copy-source-server-side-encryption-customer-"
    } else {
        "x-amz-server-side-encryption-customer-"
    };
    let get = |s: &str| header_str(h, &format!("{prefix}{s}"));
    let (alg, key, md5) = (get("algorithm"), get("key"), get("key-md5"));
    if alg.is_none() && key.is_none() && md5.is_none() {
        return Ok(None);
    }
    let invalid = |m: &str| S3Error::bad("InvalidArgument", format!("{m} ({prefix}*)"));
    match alg {
        Some("AES256") => {}
        Some(_) => {
            return Err(S3Error::bad("InvalidEncryptionAlgorithmError", "the SSE-C algorithm must be AES256"));
        }
        None => {
            return Err(invalid(
                "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm",
            ));
        }
    }
    let bytes = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(key.ok_or_else(|| invalid("Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key"))?)
            .map_err(|_| invalid("The secret key was invalid for the specified algorithm"))?,
    );
    let secret =
        SecretKey::from_slice(&bytes).map_err(|_| invalid("The secret key was invalid for the specified algorithm"))?;
    let sent_md5 = md5.ok_or_else(|| {
        invalid("Requests specifying Server Side Encryption with Customer provided keys must provide the key's MD5")
    })?;
    let computed: [u8; 16] = <md5::Md5 as md5::Digest>::digest(&bytes[..]).into();
    let computed = base64::engine::general_purpose::STANDARD.encode(computed);
    if computed != sent_md5 {
        return Err(invalid("The calculated MD5 hash of the key did not match the hash that was provided"));
    }
    Ok(Some((secret, computed)))
}

/// The encryption a request asks for, and an SSE-C key's MD5 to echo.
fn sse_request(state: &AppState, h: &HeaderMap) -> Result<(Option<SseRequest>, Option<String>), S3Error> {
    if let Some((key, md5)) = customer_key(h, false)? {
        if h.contains_key("x-amz-server-side-encryption") {
            return Err(S3Error::bad(
                "InvalidArgument",
                "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
            ));
        }
        return Ok((Some(SseRequest::Customer(key)), Some(md5)));
    }
    Ok((sse_managed(state, h)?, None))
}

fn sse_managed(state: &AppState, h: &HeaderMap) -> Result<Option<SseRequest>, S3Error> {
    let key_id = header_str(h, "x-amz-server-side-encryption-aws-kms-key-id").map(str::to_string);
    match header_str(h, "x-amz-server-side-encryption") {
        None if key_id.is_some() => Err(S3Error::bad(
            "InvalidArgument",
            "x-amz-server-side-encryption-aws-kms-key-id needs x-amz-server-side-encryption: aws:kms",
        )),
        None => Ok(None),
        Some("AES256") if key_id.is_some() => Err(S3Error::bad(
            "InvalidArgument",
            "x-amz-server-side-encryption-aws-kms-key-id goes with aws:kms, not AES256",
        )),
        Some("AES256") => Ok(Some(SseRequest::S3)),
        Some("aws:kms") => Ok(Some(SseRequest::Kms(key_id.map(|id| kms_key_id(state, id)).transpose()?))),
        Some(other) => Err(S3Error::bad(
            "InvalidArgument",
            format!("x-amz-server-side-encryption {other} is not supported: use AES256 or aws:kms"),
        )),
    }
}

/// An SSE-KMS key id: a key URI of a vault of this deployment, or a bare key name (in
/// the vault of the bucket's own key).
fn kms_key_id(state: &AppState, id: String) -> Result<KmsKeyId, S3Error> {
    if id.starts_with("https://") {
        return match crate::api::data::local_key(state, id) {
            Ok(EncryptionRequest::Customer { uri, kek }) => Ok(KmsKeyId::Uri { uri, kek }),
            Ok(_) => Err(S3Error::bad("KMS.NotFoundException", "the key id is not a key URI of this deployment")),
            Err(m) => Err(S3Error::bad("KMS.NotFoundException", format!("{m}: name a key of a vault here"))),
        };
    }
    if id.is_empty() || id.len() > 127 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(S3Error::bad(
            "KMS.NotFoundException",
            format!("key id {id:?} is neither a key URI (https://HOST/keys/NAME[/VERSION]) nor a key name"),
        ));
    }
    Ok(KmsKeyId::Name(id))
}

/// `Content-*` headers and `x-amz-meta-*` of a put.
/// Header or metadata name → value.
type Fields = BTreeMap<String, String>;

/// A header value as stored: its bytes one character each (ISO-8859-1, which HTTP header
/// values are), so whatever bytes a client sent come back unchanged.
fn header_text(v: &HeaderValue) -> String {
    v.as_bytes().iter().map(|&b| char::from(b)).collect()
}

/// The inverse of [`header_text`].
fn header_value(s: &str) -> Option<HeaderValue> {
    let bytes: Option<Vec<u8>> = s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect();
    HeaderValue::from_bytes(&bytes?).ok()
}

fn put_metadata(h: &HeaderMap) -> Result<(Fields, Fields), S3Error> {
    let mut stored = BTreeMap::new();
    for name in STORED_HEADERS {
        if let Some(v) = h.get(name) {
            let mut v = header_text(v);
            if name == "content-encoding" {
                // aws-chunked describes the request's framing, not the object.
                v = v
                    .split(',')
                    .filter(|e| !e.trim().eq_ignore_ascii_case("aws-chunked"))
                    .collect::<Vec<_>>()
                    .join(",");
                if v.is_empty() {
                    continue;
                }
            }
            stored.insert(name.to_string(), v);
        }
    }
    let mut user = BTreeMap::new();
    let mut total = 0;
    for (n, v) in h {
        if let Some(k) = n.as_str().strip_prefix("x-amz-meta-") {
            let v = header_text(v);
            total += k.len() + v.len();
            user.insert(k.to_string(), v);
        }
    }
    if total > MAX_USER_META {
        return Err(S3Error::bad(
            "MetadataTooLarge",
            format!("user metadata is {total} bytes; at most {MAX_USER_META} are allowed"),
        ));
    }
    Ok((stored, user))
}

/// Headers of a stored object (GET, HEAD).
fn object_headers(h: &mut HeaderMap, o: &S3Object) {
    set(h, "etag", &format!("\"{}\"", o.meta.etag));
    set(h, "last-modified", &http_date(o.modified));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    for (n, v) in &o.meta.headers {
        if let (Ok(n), Some(v)) = (axum::http::HeaderName::from_bytes(n.as_bytes()), header_value(v)) {
            h.insert(n, v);
        }
    }
    if !h.contains_key(header::CONTENT_TYPE) {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("binary/octet-stream"));
    }
    for (k, v) in &o.meta.user {
        if let (Ok(n), Some(v)) =
            (axum::http::HeaderName::from_bytes(format!("x-amz-meta-{k}").as_bytes()), header_value(v))
        {
            h.insert(n, v);
        }
    }
}

async fn put_object(
    state: &AppState,
    parts: &Parts,
    body: Body,
    caller: S3Caller,
    b: &str,
    k: &str,
) -> Result<Response, S3Error> {
    let h = &parts.headers;
    let (headers, user) = put_metadata(h)?;
    let if_none_match = header_str(h, "if-none-match").map(str::to_string);
    let conditional = if_none_match.is_some() || h.contains_key("if-match");
    let (sse, key_md5) = sse_request(state, h)?;
    let put = S3Put {
        headers,
        user,
        sse,
        if_match: header_str(h, "if-match").map(str::to_string),
        if_none_match,
        checksum: None,
    };
    let expect = Expect::from_headers(h, caller.payload, caller.signing)?;
    let (stream, judge) = body::take(body, expect);
    let checksum_header = judge_checksum_header(h);
    let result = state.store.s3_put(&caller.principal, b, k, put, stream, |size| judge.finish(size)).await;
    let o = match result {
        Ok(Ok(o)) => o,
        Ok(Err(refused)) => return Err(refused),
        Err(e) => {
            if let Some(f) = judge.failure() {
                return Err(f);
            }
            return Err(match e {
                // Unconditional: another write of the key won the race; the SDK retries.
                StoreError::PreconditionFailed(m) if !conditional => {
                    S3Error::new(StatusCode::SERVICE_UNAVAILABLE, "SlowDown", m)
                }
                e => S3Error::from_store(e),
            });
        }
    };
    let mut r = empty(StatusCode::OK);
    let rh = r.headers_mut();
    set(rh, "etag", &format!("\"{}\"", o.meta.etag));
    sse_headers(rh, &o.meta.sse, key_md5.as_deref());
    if let Some(name) = checksum_header {
        for a in Algo::ALL {
            if a.header() == name
                && let Some(v) = o.meta.checksums.get(a.name())
            {
                set(rh, a.header(), v);
            }
        }
    }
    Ok(r)
}

/// The checksum header a put names (as a header or a trailer), to echo.
fn judge_checksum_header(h: &HeaderMap) -> Option<&'static str> {
    Algo::ALL
        .into_iter()
        .map(Algo::header)
        .find(|n| h.contains_key(*n) || header_str(h, "x-amz-trailer").is_some_and(|t| t.eq_ignore_ascii_case(n)))
}

/// `If-Match`, `If-Unmodified-Since` (412) and `If-None-Match`, `If-Modified-Since` (304),
/// in S3's order.
fn preconditions(h: &HeaderMap, o: &S3Object) -> Result<(), Box<Response>> {
    let matches = |list: &str| list.split(',').map(str::trim).any(|t| t == "*" || t.trim_matches('"') == o.meta.etag);
    let since = |name: &str| {
        header_str(h, name)
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok().and_then(|d| i64::try_from(d.as_secs()).ok()))
    };
    let failed = || {
        S3Error::new(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            "at least one of the preconditions you specified did not hold",
        )
    };
    if let Some(m) = header_str(h, "if-match") {
        if !matches(m) {
            return Err(Box::new(failed().into_response()));
        }
    } else if since("if-unmodified-since").is_some_and(|t| o.modified > t) {
        return Err(Box::new(failed().into_response()));
    }
    let not_modified = || {
        let mut r = empty(StatusCode::NOT_MODIFIED);
        set(r.headers_mut(), "etag", &format!("\"{}\"", o.meta.etag));
        set(r.headers_mut(), "last-modified", &http_date(o.modified));
        r
    };
    if let Some(m) = header_str(h, "if-none-match") {
        if matches(m) {
            return Err(Box::new(not_modified()));
        }
    } else if since("if-modified-since").is_some_and(|t| o.modified <= t) {
        return Err(Box::new(not_modified()));
    }
    Ok(())
}

async fn get_object(
    state: &Arc<AppState>,
    h: &HeaderMap,
    q: &Query,
    caller: &S3Caller,
    b: &str,
    k: &str,
    head: bool,
) -> Result<Response, S3Error> {
    let ck = customer_key(h, false)?;
    let (key, key_md5) = (ck.as_ref().map(|(k, _)| k), ck.as_ref().map(|(_, m)| m.as_str()));
    if h.contains_key("x-amz-server-side-encryption") || h.contains_key("x-amz-server-side-encryption-aws-kms-key-id") {
        return Err(S3Error::bad(
            "InvalidArgument",
            "x-amz-server-side-encryption headers go with writes; a read needs none (SSE-C: the customer key headers)",
        ));
    }
    // A Range S3 does not understand (several ranges, other units) is ignored: the whole
    // object is answered.
    let mut range: Option<ByteRange> = header_str(h, "range").and_then(atrest_wire::range::parse);
    let mut parts_count = None;
    // A part's own checksums, for a read by part number, and the ETag of the object whose
    // part index was read (the read below must be of that same object).
    let mut part_sums = None;
    let mut indexed_etag = None;
    if let Some(n) = q.get("partNumber") {
        if range.is_some() {
            return Err(S3Error::bad(
                "InvalidRequest",
                "Cannot specify both Range header and partNumber query parameter",
            ));
        }
        let n: u64 = n
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| S3Error::bad("InvalidArgument", "partNumber must be a number from 1 to 10000"))?;
        // The part index before the key: a part number out of range is InvalidPart, with
        // or without the SSE-C key (the read below checks the key).
        let o = state.store.s3_stat(&caller.principal, b, k).await.map_err(S3Error::from_store)?;
        indexed_etag = Some(o.meta.etag.clone());
        let sizes: Vec<u64> = match &o.meta.multipart {
            Some(mp) => mp.parts.iter().map(|p| p.size).collect(),
            None => vec![o.size],
        };
        let i = usize::try_from(n - 1).unwrap_or(usize::MAX);
        let Some(size) = sizes.get(i) else {
            return Err(S3Error::bad("InvalidPart", format!("the object has {} parts, not {n}", sizes.len())));
        };
        let start: u64 = sizes[..i].iter().sum();
        range = (*size > 0).then(|| ByteRange::From(start, Some(start + size)));
        if let Some(mp) = &o.meta.multipart {
            parts_count = Some(sizes.len());
            part_sums = mp.parts.get(i).map(|p| p.checksums.clone());
        } else {
            part_sums = Some(o.meta.checksums.clone());
        }
    }
    // Preconditions come before the range (a failed If-Match is 412 even when the range
    // could not be served).
    let conditional =
        ["if-match", "if-none-match", "if-modified-since", "if-unmodified-since"].iter().any(|n| h.contains_key(*n));
    if conditional && !head {
        let o = state.store.s3_head(&caller.principal, b, k, key).await.map_err(S3Error::from_store)?;
        if let Err(r) = preconditions(h, &o) {
            return Ok(*r);
        }
    }
    let (object, offset, len, chunks) = if head {
        let o = state.store.s3_head(&caller.principal, b, k, key).await.map_err(S3Error::from_store)?;
        let size = o.size;
        let resolved = atrest_wire::range::resolve(range, size);
        match resolved {
            Ok((off, len)) => (o, off, len, None),
            Err(_) => return Err(unsatisfiable(size)),
        }
    } else {
        match state.store.s3_get(&caller.principal, b, k, range, key).await {
            Ok(read) => (read.object, read.offset, read.len, Some(read.chunks)),
            Err(StoreError::RangeNotSatisfiable { size, .. }) => return Err(unsatisfiable(size)),
            Err(e) => return Err(S3Error::from_store(e)),
        }
    };
    if indexed_etag.as_ref().is_some_and(|e| *e != object.meta.etag) {
        // Overwritten between the part index and the read: its range would be another object's.
        return Err(S3Error::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "the object was replaced while its part was read; retry",
        ));
    }
    if let Err(r) = preconditions(h, &object) {
        return Ok(*r);
    }
    // A suffix of an empty object is the whole (empty) object: 200.
    let partial = range.is_some() && len > 0;
    let status = if partial { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    let body = match chunks {
        Some(mut rx) => Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))),
        None => Body::empty(),
    };
    let mut r = Response::builder().status(status).body(body).unwrap_or_default();
    let rh = r.headers_mut();
    object_headers(rh, &object);
    sse_headers(rh, &object.meta.sse, key_md5);
    if let Some(n) = parts_count {
        rh.insert("x-amz-mp-parts-count", HeaderValue::from(n));
    }
    rh.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if partial {
        set(rh, "content-range", &format!("bytes {offset}-{}/{}", offset + len - 1, object.size));
    }
    // Checksums of what is answered: the object's, or a part's when read by number (a
    // range has none), when asked for with x-amz-checksum-mode.
    let sums = match &part_sums {
        Some(p) => Some(p),
        None if !partial => Some(&object.meta.checksums),
        None => None,
    };
    if let Some(sums) = sums
        && header_str(h, "x-amz-checksum-mode").is_some_and(|m| m.eq_ignore_ascii_case("ENABLED"))
    {
        for a in Algo::ALL {
            if let Some(v) = sums.get(a.name()) {
                set(rh, a.header(), v);
                set(rh, "x-amz-checksum-type", object.meta.checksum_type.as_deref().unwrap_or("FULL_OBJECT"));
            }
        }
    }
    for (param, name) in [
        ("response-content-type", header::CONTENT_TYPE),
        ("response-content-language", header::CONTENT_LANGUAGE),
        ("response-expires", header::EXPIRES),
        ("response-cache-control", header::CACHE_CONTROL),
        ("response-content-disposition", header::CONTENT_DISPOSITION),
        ("response-content-encoding", header::CONTENT_ENCODING),
    ] {
        if let Some(v) = q.get(param).and_then(|v| HeaderValue::from_str(v).ok()) {
            rh.insert(name, v);
        }
    }
    Ok(r)
}

/// GetObjectAttributes: what `x-amz-object-attributes` asks for, without the body.
async fn object_attributes(
    state: &AppState,
    h: &HeaderMap,
    caller: &S3Caller,
    b: &str,
    k: &str,
) -> Result<Response, S3Error> {
    let ck = customer_key(h, false)?;
    let o =
        state.store.s3_head(&caller.principal, b, k, ck.as_ref().map(|(k, _)| k)).await.map_err(S3Error::from_store)?;
    let asked: Vec<String> = header_str(h, "x-amz-object-attributes")
        .unwrap_or_default()
        .split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    let mut x = Xml::new("GetObjectAttributesResponse");
    for a in &asked {
        match a.as_str() {
            "ETag" => {
                x.text("ETag", &o.meta.etag);
            }
            "StorageClass" => {
                x.text("StorageClass", "STANDARD");
            }
            "ObjectSize" => {
                x.text("ObjectSize", &o.size.to_string());
            }
            "Checksum" if !o.meta.checksums.is_empty() => {
                x.start("Checksum");
                for alg in Algo::ALL {
                    if let Some(v) = o.meta.checksums.get(alg.name()) {
                        x.text(&format!("Checksum{}", alg.name()), v);
                    }
                }
                x.text("ChecksumType", o.meta.checksum_type.as_deref().unwrap_or("FULL_OBJECT"));
                x.end();
            }
            "ObjectParts" => {
                if let Some(mp) = &o.meta.multipart {
                    let marker: usize =
                        header_str(h, "x-amz-part-number-marker").and_then(|v| v.parse().ok()).unwrap_or(0);
                    let max: usize =
                        header_str(h, "x-amz-max-parts").and_then(|v| v.parse().ok()).unwrap_or(MAX_KEYS).min(MAX_KEYS);
                    let after: Vec<_> = mp.parts.iter().filter(|p| p.n as usize > marker).collect();
                    let page: Vec<_> = after.iter().take(max).copied().collect();
                    let truncated = after.len() > page.len();
                    // botocore reads PartsCount (its TotalPartsCount).
                    x.start("ObjectParts").text("PartsCount", &mp.parts.len().to_string());
                    x.text("PartNumberMarker", &marker.to_string());
                    if let Some(last) = page.last() {
                        x.text("NextPartNumberMarker", &last.n.to_string());
                    }
                    x.text("MaxParts", &max.to_string()).text("IsTruncated", if truncated { "true" } else { "false" });
                    for p in page {
                        x.start("Part").text("PartNumber", &p.n.to_string()).text("Size", &p.size.to_string());
                        for alg in Algo::ALL {
                            if let Some(v) = p.checksums.get(alg.name()) {
                                x.text(&format!("Checksum{}", alg.name()), v);
                            }
                        }
                        x.end();
                    }
                    x.end();
                }
            }
            _ => {}
        }
    }
    let mut r = x.into_response(StatusCode::OK);
    set(r.headers_mut(), "last-modified", &http_date(o.modified));
    Ok(r)
}

fn unsatisfiable(size: u64) -> S3Error {
    S3Error::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "InvalidRange",
        format!("the requested range is not satisfiable: the object has {size} bytes"),
    )
}

async fn copy_object(
    state: &Arc<AppState>,
    parts: &Parts,
    caller: S3Caller,
    b: &str,
    k: &str,
) -> Result<Response, S3Error> {
    let h = &parts.headers;
    let source = header_str(h, "x-amz-copy-source").unwrap_or_default();
    let source = source.split_once("?versionId=").map_or(source, |(s, _)| s);
    let decoded = percent_decode_str(source.trim_start_matches('/'))
        .decode_utf8()
        .map_err(|_| S3Error::bad("InvalidArgument", "x-amz-copy-source is not percent-encoded UTF-8"))?;
    let (sb, sk) = decoded
        .split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
        .ok_or_else(|| S3Error::bad("InvalidArgument", "x-amz-copy-source must be BUCKET/KEY"))?;
    let replace = match header_str(h, "x-amz-metadata-directive") {
        None | Some("COPY") => false,
        Some("REPLACE") => true,
        Some(other) => {
            return Err(S3Error::bad("InvalidArgument", format!("unknown x-amz-metadata-directive {other}")));
        }
    };
    let (sse, key_md5) = sse_request(state, h)?;
    let source_key = customer_key(h, true)?;
    if sb == b && sk == k && !replace && sse.is_none() {
        return Err(S3Error::bad(
            "InvalidRequest",
            "This copy request is illegal because it is trying to copy an object to itself without changing the \
             object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    let read = state
        .store
        .s3_get(&caller.principal, sb, sk, None, source_key.as_ref().map(|(k, _)| k))
        .await
        .map_err(|e| S3Error::from_store(e).on(format!("{sb}/{sk}")))?;
    for (cond, want_match) in [("x-amz-copy-source-if-match", true), ("x-amz-copy-source-if-none-match", false)] {
        if let Some(v) = header_str(h, cond) {
            let m = v.split(',').map(str::trim).any(|t| t == "*" || t.trim_matches('"') == read.object.meta.etag);
            if m != want_match {
                return Err(S3Error::new(
                    StatusCode::PRECONDITION_FAILED,
                    "PreconditionFailed",
                    format!("{cond} did not hold"),
                ));
            }
        }
    }
    let (headers, user) =
        if replace { put_metadata(h)? } else { (read.object.meta.headers.clone(), read.object.meta.user.clone()) };
    let put = S3Put { headers, user, sse, if_match: None, if_none_match: None, checksum: None };
    let md5 = Arc::new(std::sync::Mutex::new(<md5::Md5 as md5::Digest>::new()));
    let hasher = md5.clone();
    let mut rx = read.chunks;
    let stream = Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(move |c| {
        c.inspect(|b| md5::Digest::update(&mut *hasher.lock().unwrap_or_else(std::sync::PoisonError::into_inner), b))
    }));
    let o = state
        .store
        .s3_put(&caller.principal, b, k, put, stream, |_| {
            let h = std::mem::replace(
                &mut *md5.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
                <md5::Md5 as md5::Digest>::new(),
            );
            Ok::<_, S3Error>(atrest_store::s3::BodyDigest {
                md5: md5::Digest::finalize(h).into(),
                checksums: BTreeMap::new(),
            })
        })
        .await
        .map_err(S3Error::from_store)??;
    let mut x = Xml::new("CopyObjectResult");
    x.text("LastModified", &iso8601(o.modified)).text("ETag", &format!("\"{}\"", o.meta.etag));
    let mut r = x.into_response(StatusCode::OK);
    sse_headers(r.headers_mut(), &o.meta.sse, key_md5.as_deref());
    Ok(r)
}

// ---- multipart uploads ----

/// A multipart operation's error: an upload that is not there is `NoSuchUpload`.
fn upload_error(e: StoreError) -> S3Error {
    match e {
        StoreError::ObjectNotFound(m) => S3Error::new(StatusCode::NOT_FOUND, "NoSuchUpload", m),
        e => S3Error::from_store(e),
    }
}

#[derive(serde::Deserialize)]
struct CompleteRequest {
    #[serde(rename = "Part", default)]
    parts: Vec<CompletePart>,
}

#[derive(serde::Deserialize)]
struct CompletePart {
    #[serde(rename = "PartNumber")]
    number: u32,
    #[serde(rename = "ETag")]
    etag: String,
    #[serde(rename = "ChecksumCRC32")]
    crc32: Option<String>,
    #[serde(rename = "ChecksumCRC32C")]
    crc32c: Option<String>,
    #[serde(rename = "ChecksumCRC64NVME")]
    crc64nvme: Option<String>,
    #[serde(rename = "ChecksumSHA1")]
    sha1: Option<String>,
    #[serde(rename = "ChecksumSHA256")]
    sha256: Option<String>,
}

async fn multipart(
    state: &AppState,
    parts: &Parts,
    body: Body,
    caller: S3Caller,
    b: &str,
    k: &str,
    q: &Query,
) -> Result<Response, S3Error> {
    let m = &parts.method;
    let upload = q.get("uploadId").unwrap_or_default();
    match *m {
        Method::POST if q.has("uploads") => {
            let (headers, user) = put_metadata(&parts.headers)?;
            let (sse, key_md5) = sse_request(state, &parts.headers)?;
            let checksum = upload_checksum(&parts.headers)?;
            let put = S3Put {
                headers,
                user,
                sse,
                if_match: None,
                if_none_match: None,
                checksum: checksum.map(|(a, full)| (a.name().to_string(), full)),
            };
            let (id, upload_sse) =
                state.store.s3_create_upload(&caller.principal, b, k, put).await.map_err(S3Error::from_store)?;
            let mut x = Xml::new("InitiateMultipartUploadResult");
            x.text("Bucket", b).text("Key", k).text("UploadId", &id);
            let mut r = x.into_response(StatusCode::OK);
            if let Some((a, full)) = checksum {
                set(r.headers_mut(), "x-amz-checksum-algorithm", a.name());
                set(r.headers_mut(), "x-amz-checksum-type", checksum_type(full));
            }
            sse_headers(r.headers_mut(), &upload_sse, key_md5.as_deref());
            Ok(r)
        }
        Method::PUT if parts.headers.contains_key("x-amz-copy-source") => {
            Err(S3Error::not_implemented("UploadPartCopy"))
        }
        Method::PUT => {
            let n: u32 = q
                .get("partNumber")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| S3Error::bad("InvalidArgument", "partNumber must be a number from 1 to 10000"))?;
            let ck = customer_key(&parts.headers, false)?;
            let actor = caller.principal.clone();
            let expect = Expect::from_headers(&parts.headers, caller.payload, caller.signing)?;
            let (stream, judge) = body::take(body, expect);
            let checksum_header = judge_checksum_header(&parts.headers);
            let key = ck.as_ref().map(|(k, _)| k);
            let result =
                state.store.s3_upload_part(&actor, b, k, upload, n, key, stream, |size| judge.finish(size)).await;
            let part = match result {
                Ok(Ok(p)) => p,
                Ok(Err(refused)) => return Err(refused),
                Err(e) => return Err(judge.failure().unwrap_or_else(|| upload_error(e))),
            };
            let mut r = empty(StatusCode::OK);
            let rh = r.headers_mut();
            set(rh, "etag", &format!("\"{}\"", part.etag));
            if let Some(name) = checksum_header {
                for a in Algo::ALL {
                    if a.header() == name
                        && let Some(v) = part.checksums.get(a.name())
                    {
                        set(rh, a.header(), v);
                    }
                }
            }
            if let Some(sse) = &part.sse {
                sse_headers(rh, sse, ck.as_ref().map(|(_, m)| m.as_str()));
            }
            Ok(r)
        }
        Method::GET => {
            let after: u32 = q.get("part-number-marker").and_then(|v| v.parse().ok()).unwrap_or(0);
            let max = q.get("max-parts").and_then(|v| v.parse::<usize>().ok()).unwrap_or(MAX_KEYS).min(MAX_KEYS);
            let (list, truncated) =
                state.store.s3_list_parts(&caller.principal, b, k, upload, after, max).await.map_err(upload_error)?;
            let mut x = Xml::new("ListPartsResult");
            x.text("Bucket", b).text("Key", k).text("UploadId", upload);
            x.text("PartNumberMarker", &after.to_string());
            if let Some(last) = list.last() {
                x.text("NextPartNumberMarker", &last.number.to_string());
            }
            x.text("MaxParts", &max.to_string()).text("IsTruncated", if truncated { "true" } else { "false" });
            x.text("StorageClass", "STANDARD");
            owner(&mut x, &caller);
            for p in &list {
                x.start("Part")
                    .text("PartNumber", &p.number.to_string())
                    .text("LastModified", &iso8601(p.modified))
                    .text("ETag", &format!("\"{}\"", p.etag))
                    .text("Size", &p.size.to_string());
                for a in Algo::ALL {
                    if let Some(v) = p.checksums.get(a.name()) {
                        x.text(&format!("Checksum{}", a.name()), v);
                    }
                }
                x.end();
            }
            Ok(x.into_response(StatusCode::OK))
        }
        Method::DELETE => {
            state.store.s3_abort_upload(&caller.principal, b, k, upload).await.map_err(upload_error)?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Method::POST => {
            let ck = customer_key(&parts.headers, false)?;
            // An x-amz-checksum-* header of Complete is the object's checksum, not the
            // part list's.
            let mut list_headers = parts.headers.clone();
            let mut sent = None;
            for a in Algo::ALL {
                if let Some(v) = list_headers.remove(a.header()) {
                    if sent.is_some() {
                        return Err(S3Error::bad("InvalidRequest", "expecting a single x-amz-checksum- header"));
                    }
                    sent = Some((a, String::from_utf8_lossy(v.as_bytes()).into_owned()));
                }
            }
            let sent_name = sent.as_ref().map(|(a, _)| a.name());
            let (actor, req): (_, CompleteRequest) = xml_body(&list_headers, body, caller, "the part list").await?;
            let listed_sums: BTreeMap<u32, [Option<String>; 5]> = req
                .parts
                .iter()
                .map(|p| {
                    (
                        p.number,
                        [p.crc32.clone(), p.crc32c.clone(), p.crc64nvme.clone(), p.sha1.clone(), p.sha256.clone()],
                    )
                })
                .collect();
            let listed: Vec<(u32, String)> = req.parts.into_iter().map(|p| (p.number, p.etag)).collect();
            let key = ck.as_ref().map(|(k, _)| k);
            let combine = move |algorithm: &str, full: bool, parts: &[(u32, u64, Option<&str>)]| {
                let a = Algo::ALL.into_iter().find(|a| a.name() == algorithm).ok_or("unknown checksum algorithm")?;
                let i = Algo::ALL.iter().position(|x| *x == a).unwrap_or(0);
                for (n, _, stored) in parts {
                    let listed = listed_sums.get(n).and_then(|s| s[i].as_deref());
                    if let (Some(l), Some(st)) = (listed, stored)
                        && l != *st
                    {
                        return Err(format!("part {n}'s {algorithm} checksum is not {l}"));
                    }
                }
                let value = body::combine_checksums(a, full, parts)?;
                match &sent {
                    Some((sa, sv)) if *sa == a && *sv != value => {
                        Err(format!("the object's {algorithm} checksum is {value}, not {sv}"))
                    }
                    Some((sa, _)) if *sa != a => {
                        Err(format!("the upload's checksum algorithm is {algorithm}, not {}", sa.name()))
                    }
                    _ => Ok(value),
                }
            };
            let req = atrest_store::s3::CompleteRequest {
                parts: &listed,
                customer_key: key,
                if_match: header_str(&parts.headers, "if-match"),
                if_none_match: header_str(&parts.headers, "if-none-match"),
                combine: Some(&combine),
                checksum_sent: sent_name,
            };
            let conditional = req.if_match.is_some() || req.if_none_match.is_some();
            let o = match state.store.s3_complete_upload(&actor, b, k, upload, &req).await {
                Ok(Ok(o)) => o,
                Ok(Err(refusal)) => {
                    use atrest_store::s3::CompleteRefusal as C;
                    return Err(match refusal {
                        C::InvalidPart(m) => S3Error::bad("InvalidPart", m),
                        C::InvalidPartOrder(m) => S3Error::bad("InvalidPartOrder", m),
                        C::EntityTooSmall(m) => S3Error::bad("EntityTooSmall", m),
                        C::NoSuchKey(m) => S3Error::new(StatusCode::NOT_FOUND, "NoSuchKey", m),
                        C::BadDigest(m) => S3Error::bad("BadDigest", m),
                        C::InvalidRequest(m) => S3Error::bad("InvalidRequest", m),
                    });
                }
                Err(StoreError::PreconditionFailed(m)) if !conditional => {
                    return Err(S3Error::new(StatusCode::SERVICE_UNAVAILABLE, "SlowDown", m));
                }
                Err(e @ StoreError::PreconditionFailed(_)) => return Err(S3Error::from_store(e)),
                Err(e) => return Err(upload_error(e)),
            };
            let mut x = Xml::new("CompleteMultipartUploadResult");
            x.text("Location", &format!("/{b}/{k}")).text("Bucket", b).text("Key", k);
            x.text("ETag", &format!("\"{}\"", o.meta.etag));
            for a in Algo::ALL {
                if let Some(v) = o.meta.checksums.get(a.name()) {
                    x.text(&format!("Checksum{}", a.name()), v);
                    x.text("ChecksumType", o.meta.checksum_type.as_deref().unwrap_or("FULL_OBJECT"));
                }
            }
            let mut r = x.into_response(StatusCode::OK);
            sse_headers(r.headers_mut(), &o.meta.sse, ck.as_ref().map(|(_, m)| m.as_str()));
            Ok(r)
        }
        _ => Err(S3Error::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("{m} on an upload"))),
    }
}

/// CreateMultipartUpload's `x-amz-checksum-algorithm` and `x-amz-checksum-type`: the
/// algorithm, and whether the object's checksum covers the full object (the default for
/// CRC64NVME, and possible for the CRCs) or is composite (the default for the others).
fn upload_checksum(h: &HeaderMap) -> Result<Option<(Algo, bool)>, S3Error> {
    let Some(name) = header_str(h, "x-amz-checksum-algorithm") else {
        return match header_str(h, "x-amz-checksum-type") {
            Some(_) => Err(S3Error::bad("InvalidRequest", "x-amz-checksum-type needs x-amz-checksum-algorithm")),
            None => Ok(None),
        };
    };
    let a = Algo::ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(name)).ok_or_else(|| {
        S3Error::bad(
            "InvalidRequest",
            format!("checksum algorithm {name} is not CRC32, CRC32C, CRC64NVME, SHA1 or SHA256"),
        )
    })?;
    let crc = matches!(a, Algo::Crc32 | Algo::Crc32c | Algo::Crc64Nvme);
    let full = match header_str(h, "x-amz-checksum-type").map(str::to_ascii_uppercase).as_deref() {
        None => a == Algo::Crc64Nvme,
        Some("FULL_OBJECT") if crc => true,
        Some("COMPOSITE") if a != Algo::Crc64Nvme => false,
        Some(t) => {
            return Err(S3Error::bad(
                "InvalidRequest",
                format!(
                    "checksum type {t} does not go with {}: FULL_OBJECT needs a CRC, CRC64NVME is FULL_OBJECT only",
                    a.name()
                ),
            ));
        }
    };
    Ok(Some((a, full)))
}

fn checksum_type(full: bool) -> &'static str {
    if full { "FULL_OBJECT" } else { "COMPOSITE" }
}

async fn list_uploads(state: &AppState, caller: &S3Caller, b: &str, q: &Query) -> Result<Response, S3Error> {
    let prefix = q.get("prefix").unwrap_or("");
    let max = q.get("max-uploads").and_then(|v| v.parse::<usize>().ok()).unwrap_or(MAX_KEYS).min(MAX_KEYS);
    let (list, truncated) = state
        .store
        .s3_list_uploads(&caller.principal, b, prefix, q.get("key-marker"), q.get("upload-id-marker"), max)
        .await
        .map_err(S3Error::from_store)?;
    let mut x = Xml::new("ListMultipartUploadsResult");
    x.text("Bucket", b).text("KeyMarker", q.get("key-marker").unwrap_or(""));
    x.text("UploadIdMarker", q.get("upload-id-marker").unwrap_or("")).text("Prefix", prefix);
    if let Some(last) = list.last() {
        x.text("NextKeyMarker", &last.key).text("NextUploadIdMarker", &last.upload_id);
    }
    x.text("MaxUploads", &max.to_string()).text("IsTruncated", if truncated { "true" } else { "false" });
    for u in &list {
        x.start("Upload").text("Key", &u.key).text("UploadId", &u.upload_id);
        x.start("Initiator").text("ID", &caller.principal.id).text("DisplayName", &caller.principal.name).end();
        owner(&mut x, caller);
        x.text("StorageClass", "STANDARD").text("Initiated", &iso8601(u.initiated)).end();
    }
    Ok(x.into_response(StatusCode::OK))
}

#[derive(serde::Deserialize)]
struct DeleteRequest {
    #[serde(rename = "Quiet", default)]
    quiet: bool,
    #[serde(rename = "Object", default)]
    objects: Vec<DeleteKey>,
}

#[derive(serde::Deserialize)]
struct DeleteKey {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "VersionId")]
    version: Option<String>,
}

async fn delete_objects(
    state: &AppState,
    parts: &Parts,
    body: Body,
    caller: S3Caller,
    b: &str,
) -> Result<Response, S3Error> {
    let (actor, req): (_, DeleteRequest) = xml_body(&parts.headers, body, caller, "the Delete request").await?;
    if req.objects.len() > MAX_KEYS {
        return Err(S3Error::bad("MalformedXML", format!("at most {MAX_KEYS} keys per request")));
    }
    // The bucket first: a missing bucket is the request's error, not each key's.
    state.store.s3_bucket(&actor, b, DataRole::Writer).await.map_err(S3Error::from_store)?;
    let mut x = Xml::new("DeleteResult");
    for o in &req.objects {
        if o.version.as_deref().is_some_and(|v| v != "null") {
            x.start("Error").text("Key", &o.key).text("Code", "NoSuchVersion");
            x.text("Message", "versioning is not enabled on this server: the only version id is null").end();
            continue;
        }
        match state.store.s3_delete(&actor, b, &o.key).await {
            Ok(()) if req.quiet => {}
            Ok(()) => {
                x.start("Deleted").text("Key", &o.key).end();
            }
            Err(e) => {
                let e = S3Error::from_store(e);
                x.start("Error").text("Key", &o.key).text("Code", e.code).text("Message", &e.message).end();
            }
        }
    }
    Ok(x.into_response(StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries_decode() {
        let t = Target::parse("/bucket/a%20b/c%2Bd").unwrap();
        assert_eq!((t.bucket.as_deref(), t.key.as_deref()), (Some("bucket"), Some("a b/c+d")));
        let t = Target::parse("/bucket/").unwrap();
        assert_eq!((t.bucket.as_deref(), t.key), (Some("bucket"), None));
        let t = Target::parse("/").unwrap();
        assert!(t.bucket.is_none() && t.key.is_none());
        assert!(Target::parse("/b/%FF").is_err());
        let q = Query::parse(Some("list-type=2&prefix=a%2Fb&delimiter=%2F&uploads"));
        assert_eq!((q.get("prefix"), q.get("delimiter"), q.has("uploads")), (Some("a/b"), Some("/"), true));
        assert_eq!(url_encode("a b+c/d~é"), "a%20b%2Bc/d~%C3%A9");
    }

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket-1", "a".repeat(63).as_str()] {
            assert!(check_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "-abc", "abc-", "ABC", "a.b.c", "a_b", &"a".repeat(64)] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }
}
