//! JSON shapes of the AKV keys API (`../shared/akv-keys-api.md` §2), built from the
//! vault's model. Bytes are base64url without padding; times are Unix seconds.

use atrest_vault::model::{DeletedKey, KeyBundle, b64u};
pub use atrest_wire::akv::{AttributesIn, CreateIn, ImportIn, OpIn, RngIn, UpdateIn, ValueIn, VerifyIn};
use serde_json::{Map, Value, json};

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
