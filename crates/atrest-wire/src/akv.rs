//! The JSON bodies of the AKV keys API that atrest reads (`../shared/akv-keys-api.md`
//! §2): byte members are base64url strings, decoded by their users with
//! [`crate::b64::decode`]; unknown members are ignored, as Azure does.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// A secret string from a request body (a JWK's private member): zeroized on drop,
/// redacted in `Debug`.
#[derive(Clone, Default)]
pub struct SecretText(zeroize::Zeroizing<String>);

impl SecretText {
    /// The text.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretText {
    fn from(s: String) -> Self {
        Self(zeroize::Zeroizing::new(s))
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::from)
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText([REDACTED])")
    }
}

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
    pub key: ImportJwk,
    #[serde(rename = "Hsm")]
    pub hsm: Option<bool>,
    pub attributes: Option<AttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
}

/// Body of `PATCH /keys/{name}/{version}`.
#[derive(Debug, Default, Deserialize)]
pub struct UpdateIn {
    pub key_ops: Option<Vec<String>>,
    pub attributes: Option<AttributesPatch>,
    pub tags: Option<BTreeMap<String, String>>,
}

/// `attributes` in an update: a date absent is left alone, a date sent as `null` is
/// cleared (an atrest extension: Azure Key Vault has no way to clear `exp` or `nbf`).
#[derive(Debug, Default, Deserialize)]
pub struct AttributesPatch {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub nbf: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub exp: Option<Option<i64>>,
}

/// A field that is there: `Some(value)`, `Some(None)` for `null` (absent: `None`, by
/// `#[serde(default)]`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// Body of `PUT /secrets/{name}` (set: a new version). `value` is redacted in `Debug`.
#[derive(Debug, Deserialize)]
pub struct SecretSetIn {
    pub value: SecretText,
    #[serde(rename = "contentType")]
    pub content_type: Option<String>,
    pub attributes: Option<AttributesIn>,
    pub tags: Option<BTreeMap<String, String>>,
}

/// Body of `PATCH /secrets/{name}/{version}`: never a value.
#[derive(Debug, Default, Deserialize)]
pub struct SecretUpdateIn {
    #[serde(rename = "contentType")]
    pub content_type: Option<String>,
    pub attributes: Option<AttributesPatch>,
    pub tags: Option<BTreeMap<String, String>>,
}

/// Body of the wrap/unwrap/encrypt/decrypt/sign operations (no `Debug`: `value` is
/// plaintext for wrapKey and encrypt).
#[derive(Deserialize)]
pub struct OpIn {
    pub alg: String,
    pub value: String,
    pub iv: Option<String>,
    pub aad: Option<String>,
    pub tag: Option<String>,
}

/// Body of verify.
#[derive(Deserialize)]
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

/// A JWK to import (BYOK), with private members, as base64url strings. Unknown JWK
/// members are ignored.
#[derive(Default, Clone, Deserialize)]
pub struct ImportJwk {
    /// `RSA`, `EC` or `oct` (`-HSM` refused without an HSM backend).
    pub kty: String,
    /// RSA members.
    pub n: Option<String>,
    /// RSA public exponent.
    pub e: Option<String>,
    /// RSA/EC private exponent.
    pub d: Option<SecretText>,
    /// RSA prime p.
    pub p: Option<SecretText>,
    /// RSA prime q.
    pub q: Option<SecretText>,
    /// RSA CRT exponent dp.
    pub dp: Option<SecretText>,
    /// RSA CRT exponent dq.
    pub dq: Option<SecretText>,
    /// RSA CRT coefficient qi.
    pub qi: Option<SecretText>,
    /// EC curve.
    pub crv: Option<String>,
    /// EC x.
    pub x: Option<String>,
    /// EC y.
    pub y: Option<String>,
    /// Symmetric key.
    pub k: Option<SecretText>,
    /// Permitted operations (default: all the type allows).
    pub key_ops: Option<Vec<String>>,
    /// Secure import: the base64url blob wrapped under one of the vault's import keys
    /// (see `byok`); replaces the private members.
    pub key_hsm: Option<String>,
}

impl core::fmt::Debug for ImportJwk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ImportJwk({}, [REDACTED])", self.kty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_tells_a_date_left_alone_from_one_cleared() {
        let u: UpdateIn = serde_json::from_str(r#"{"attributes": {"exp": null, "nbf": 5}}"#).unwrap();
        let a = u.attributes.unwrap();
        assert_eq!((a.exp, a.nbf, a.enabled), (Some(None), Some(Some(5)), None));
        let u: UpdateIn = serde_json::from_str(r#"{"attributes": {"enabled": true}}"#).unwrap();
        let a = u.attributes.unwrap();
        assert_eq!((a.exp, a.nbf, a.enabled), (None, None, Some(true)));
    }
}
