//! JSON shapes of the AKV keys API (`../shared/akv-keys-api.md` §2), built from the
//! vault's model. Bytes are base64url without padding; times are Unix seconds.

use atrest_vault::model::{DeletedKey, KeyBundle, b64u};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// `attributes` in create and update requests.
#[derive(Debug, Default, Deserialize)]
pub struct AttributesIn {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

/// Body of `POST /keys/{name}/create`.
#[derive(Debug, Deserialize)]
pub struct CreateIn {
    pub kty: String,
    pub key_size: Option<u32>,
    pub crv: Option<String>,
    pub key_ops: Option<Vec<String>>,
    pub attributes: Option<AttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
}

/// Body of `PUT /keys/{name}` (import).
#[derive(Deserialize)]
pub struct ImportIn {
    pub key: atrest_vault::ImportJwk,
    #[serde(rename = "Hsm")]
    pub hsm: Option<bool>,
    pub attributes: Option<AttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
}

/// Body of `PATCH /keys/{name}/{version}`.
#[derive(Debug, Default, Deserialize)]
pub struct UpdateIn {
    pub key_ops: Option<Vec<String>>,
    pub attributes: Option<AttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
}

/// Body of the wrap/unwrap/encrypt/decrypt/sign operations.
#[derive(Debug, Deserialize)]
pub struct OpIn {
    pub alg: String,
    pub value: String,
    pub iv: Option<String>,
    pub aad: Option<String>,
    pub tag: Option<String>,
}

/// Body of verify.
#[derive(Debug, Deserialize)]
pub struct VerifyIn {
    pub alg: String,
    pub digest: String,
    pub value: String,
}

/// Body of `POST /keys/restore`.
#[derive(Debug, Deserialize)]
pub struct ValueIn {
    pub value: String,
}

/// Body of `POST /rng`.
#[derive(Debug, Deserialize)]
pub struct RngIn {
    pub count: i64,
}

/// `{origin}/keys/{name}/{version}`.
pub fn kid(origin: &str, b: &KeyBundle) -> String {
    format!("{origin}/keys/{}/{}", b.name, b.version)
}

fn jwk(origin: &str, b: &KeyBundle) -> Value {
    let mut m = Map::new();
    m.insert("kid".into(), Value::String(kid(origin, b)));
    m.insert("kty".into(), Value::String(b.kty.as_str().into()));
    m.insert("key_ops".into(), json!(b.key_ops));
    if let Value::Object(public) = serde_json::to_value(&b.public).unwrap_or(Value::Null) {
        m.extend(public);
    }
    Value::Object(m)
}

fn with_tags(mut m: Map<String, Value>, b: &KeyBundle) -> Value {
    if !b.tags.is_empty() {
        m.insert("tags".into(), json!(b.tags));
    }
    Value::Object(m)
}

/// A KeyBundle.
pub fn bundle(origin: &str, b: &KeyBundle) -> Value {
    let mut m = Map::new();
    m.insert("key".into(), jwk(origin, b));
    m.insert("attributes".into(), json!(b.attributes));
    with_tags(m, b)
}

/// A DeletedKeyBundle.
pub fn deleted_bundle(origin: &str, d: &DeletedKey) -> Value {
    let mut v = bundle(origin, &d.key);
    if let Value::Object(m) = &mut v {
        m.insert("recoveryId".into(), Value::String(format!("{origin}/deletedkeys/{}", d.key.name)));
        m.insert("deletedDate".into(), json!(d.deleted_date));
        m.insert("scheduledPurgeDate".into(), json!(d.scheduled_purge_date));
    }
    v
}

/// A KeyItem with the given `kid`.
pub fn item(kid: String, b: &KeyBundle) -> Value {
    let mut m = Map::new();
    m.insert("kid".into(), Value::String(kid));
    m.insert("attributes".into(), json!(b.attributes));
    with_tags(m, b)
}

/// A DeletedKeyItem.
pub fn deleted_item(origin: &str, d: &DeletedKey) -> Value {
    let mut v = item(format!("{origin}/keys/{}", d.key.name), &d.key);
    if let Value::Object(m) = &mut v {
        m.insert("recoveryId".into(), Value::String(format!("{origin}/deletedkeys/{}", d.key.name)));
        m.insert("deletedDate".into(), json!(d.deleted_date));
        m.insert("scheduledPurgeDate".into(), json!(d.scheduled_purge_date));
    }
    v
}

/// Base64url for responses.
pub fn b64(bytes: &[u8]) -> Value {
    Value::String(b64u(bytes))
}
