//! Secure import (BYOK): a key arrives wrapped under one of the vault's **import keys**,
//! so its private material never travels in plaintext, not even inside TLS.
//!
//! - An import key is an RSA key of the vault whose `key_ops` are exactly `["import"]`
//!   (create it like any key); it can do nothing else, and its public JWK is what the
//!   vault publishes (`GET /keys/NAME`).
//! - The blob follows Azure Key Vault's BYOK file: JSON
//!   `{"schema_version": "1.0.0", "header": {"kid": KEK, "alg": "dir",
//!   "enc": "CKM_RSA_AES_KEY_WRAP"}, "ciphertext": B64URL}`, sent base64url-encoded in the
//!   imported JWK's `key_hsm` member.
//! - `ciphertext` is CKM_RSA_AES_KEY_WRAP: RSA-OAEP-256 (SHA-256, MGF1-SHA-256) of an
//!   ephemeral AES-256 key, followed by AES-KWP (RFC 5649) of the key material under it.
//!   The material is PKCS#8 DER for RSA and EC keys and the raw 32 bytes for `oct`.
//!
//! Every way a blob can fail to open gives the same error, so the import is no oracle.

use crate::error::{Result, VaultError};
use crate::model::{Kty, VaultInfo, b64u_decode};
use crate::service::VaultService;
use atrest_crypto::backend::{ImportKey, PublicKey, WrapAlg};
use atrest_crypto::ec::{EcCurve, EcPrivateKey};
use atrest_crypto::rsa::RsaPrivateKey;
use atrest_crypto::{SecretKey, keywrap};

pub use crate::model::IMPORT_OP;

/// The only wrapping scheme accepted.
const ENC: &str = "CKM_RSA_AES_KEY_WRAP";

#[derive(serde::Deserialize)]
struct Blob {
    header: Header,
    ciphertext: String,
}

#[derive(serde::Deserialize)]
struct Header {
    kid: String,
    #[serde(default)]
    alg: Option<String>,
    enc: String,
}

/// `(name, version)` from a kid: a full key URL, `NAME/VERSION` or `NAME`.
fn kid_parts(kid: &str) -> (String, Option<String>) {
    let path = kid.split_once("://").map_or(kid, |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let segs = match segs.as_slice() {
        ["keys", rest @ ..] => rest.to_vec(),
        other => other.to_vec(),
    };
    (segs.first().map_or_else(String::new, |s| (*s).to_string()), segs.get(1).map(|s| (*s).to_string()))
}

impl VaultService {
    /// Opens a secure-import blob with the vault's import key it names, returning the key
    /// material of type `kty` and the import key's id.
    ///
    /// # Errors
    /// `BadParameter` for a malformed blob, a kid that is not an import key of this vault,
    /// or a blob that does not open (one message for every such failure).
    pub(crate) async fn open_byok(&self, vault: &VaultInfo, kty: Kty, key_hsm: &str) -> Result<(ImportKey, String)> {
        let raw = b64u_decode(key_hsm, "key_hsm")?;
        let blob: Blob = serde_json::from_slice(&raw).map_err(|_| {
            VaultError::bad(
                "key_hsm is not a secure-import blob: expected base64url of JSON {header: {kid, enc}, ciphertext}",
            )
        })?;
        if blob.header.enc != ENC || blob.header.alg.as_deref().is_some_and(|a| a != "dir") {
            return Err(VaultError::bad(format!("secure import supports only enc {ENC} with alg dir")));
        }
        let (name, version) = kid_parts(&blob.header.kid);
        let (k, v) = self.live_version(vault, &name, version.as_deref()).await.map_err(|_| {
            VaultError::bad(format!(
                "the blob names import key {}, which this vault does not hold; wrap under one of this vault's import keys",
                blob.header.kid
            ))
        })?;
        let kek_id = format!("{}/{}", k.name, v.version);
        if v.kty != "RSA" || v.ops() != [IMPORT_OP] {
            return Err(VaultError::bad(format!(
                "key {kek_id} is not an import key: create an RSA key with key_ops [\"import\"] and wrap under it"
            )));
        }
        let now = self.now();
        if !v.enabled || v.nbf.is_some_and(|nbf| now < nbf) || v.exp.is_some_and(|exp| now >= exp) {
            return Err(VaultError::bad(format!("import key {kek_id} is disabled, expired or not yet valid")));
        }
        let key = v.backend_key()?;
        let modulus_len = match &key.public {
            Some(PublicKey::Rsa(p)) => p.bits() / 8,
            _ => return Err(VaultError::Integrity { what: format!("import key {kek_id}") }),
        };
        let refused = || {
            VaultError::bad(format!(
                "the secure-import blob does not open with import key {kek_id}: it was wrapped under another key, \
                 or damaged, or its content is not a {} key (PKCS#8 DER for RSA and EC, 32 raw bytes for oct)",
                kty.as_str()
            ))
        };
        let ct = b64u_decode(&blob.ciphertext, "ciphertext").map_err(|_| refused())?;
        if ct.len() <= modulus_len {
            return Err(refused());
        }
        let (wrapped_aes, wrapped_key) = ct.split_at(modulus_len);
        let aes = self
            .custody(|be| be.unwrap_key(&key, &v.binding(), WrapAlg::RsaOaep256, wrapped_aes))
            .map_err(|_| refused())?;
        let aes = SecretKey::from_slice(aes.expose_secret()).map_err(|_| refused())?;
        let material = keywrap::unwrap_kwp(&aes, wrapped_key).map_err(|_| refused())?;
        let der = material.expose_secret();
        let import = match kty {
            Kty::Rsa => ImportKey::Rsa(RsaPrivateKey::from_pkcs8(der).map_err(|_| refused())?),
            Kty::Ec => ImportKey::Ec(
                EcPrivateKey::from_pkcs8(EcCurve::P256, der)
                    .or_else(|_| EcPrivateKey::from_pkcs8(EcCurve::P384, der))
                    .map_err(|_| refused())?,
            ),
            Kty::Oct => ImportKey::Aes256(SecretKey::from_slice(der).map_err(|_| refused())?),
        };
        Ok((import, kek_id))
    }
}

#[cfg(test)]
mod tests {
    use super::kid_parts;

    #[test]
    fn kids() {
        assert_eq!(kid_parts("https://h:1/keys/kek/abc"), ("kek".into(), Some("abc".into())));
        assert_eq!(kid_parts("https://h/keys/kek"), ("kek".into(), None));
        assert_eq!(kid_parts("kek/abc"), ("kek".into(), Some("abc".into())));
        assert_eq!(kid_parts("kek"), ("kek".into(), None));
    }
}
