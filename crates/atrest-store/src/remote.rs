//! A vault on another server, reached over HTTPS with the Azure Key Vault keys API
//! (`get`, `wrapkey`, `unwrapkey`): another atrest deployment, or any AKV-compatible
//! vault. The resource holds that vault's bearer credential, sealed at rest.

use crate::error::{Result, StoreError};
use crate::keyvault::{BoxFuture, KeyInfo, KeyRef, KeyVault, WrappedKey};
use atrest_crypto::{SecretBytes, SecretKey};
use base64::Engine as _;
use serde_json::Value;

const API: &str = "api-version=7.5";

/// Builds the HTTPS client remote vaults are reached with, trusting the PEM bundle
/// `ca` (or the system bundle).
///
/// # Errors
/// An unreadable or empty bundle.
pub fn http_client(ca: Option<&std::path::Path>) -> Result<reqwest::Client> {
    let path = ca.map_or_else(|| std::path::PathBuf::from("/etc/ssl/certs/ca-certificates.crt"), |p| p.to_path_buf());
    let mut roots = rustls::RootCertStore::empty();
    if let Ok(pem) = std::fs::read(&path) {
        for c in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
            let _ = roots.add(c);
        }
    } else if ca.is_some() {
        return Err(StoreError::bad(format!("cannot read the remote-vault CA bundle {}", path.display())));
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        // A redirect would take the credential to a host nobody checked.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| StoreError::bad(format!("HTTPS client: {e}")))
}

/// Splits `https://HOST[:PORT]/keys/NAME[/VERSION]` into (origin, name, version).
///
/// # Errors
/// `BadParameter` for anything else.
pub fn parse_key_uri(uri: &str) -> Result<(String, String, Option<String>)> {
    let bad = || {
        StoreError::bad(format!("{uri} is not a key URI: use https://HOST/keys/NAME or https://HOST/keys/NAME/VERSION"))
    };
    let rest = uri.strip_prefix("https://").ok_or_else(bad)?;
    let (host, path) = rest.split_once('/').ok_or_else(bad)?;
    // A plain authority: no user info, query or fragment that would make the host
    // checked differ from the host reached.
    if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) {
        return Err(bad());
    }
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    match parts.as_slice() {
        ["keys", name] if ok(name) && !host.is_empty() => Ok((format!("https://{host}"), (*name).to_string(), None)),
        ["keys", name, version] if ok(name) && ok(version) && !host.is_empty() => {
            Ok((format!("https://{host}"), (*name).to_string(), Some((*version).to_string())))
        }
        _ => Err(bad()),
    }
}

/// Splits an authority (`HOST[:PORT]`, `[V6]:PORT`) into its lowercase host and port
/// (443 when absent); `None` for a port that is not a number.
#[must_use]
pub fn split_authority(authority: &str) -> Option<(String, u16)> {
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 443,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// Whether `authority` (`HOST[:PORT]`) is allowed by `allowed` (entries `HOST[:PORT]` or
/// `*.DOMAIN[:PORT]`; a missing port means 443, the port of a URI without one).
#[must_use]
pub fn host_allowed(allowed: &[String], authority: &str) -> bool {
    let Some((host, port)) = split_authority(authority) else { return false };
    allowed.iter().filter_map(|a| split_authority(a.trim())).any(|(h, p)| {
        p == port
            && match h.strip_prefix("*.") {
                Some(domain) => host.strip_suffix(domain).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                None => h == host,
            }
    })
}

/// A remote vault.
pub struct HttpVault {
    client: reqwest::Client,
    origin: String,
    token: SecretBytes,
}

impl HttpVault {
    /// A vault at the origin of `uri`, called with bearer `token`.
    ///
    /// # Errors
    /// `BadParameter` for a URI that is not a key URI.
    pub fn new(client: reqwest::Client, uri: &str, token: SecretBytes) -> Result<Self> {
        let (origin, _, _) = parse_key_uri(uri)?;
        Ok(Self { client, origin, token })
    }

    fn fail(kek: &KeyRef, op: &str, reason: String, transient: bool) -> StoreError {
        let fix = if transient {
            "check that the remote vault is reachable; cached keys stay usable for the grace period".to_string()
        } else {
            "grant get, wrapKey and unwrapKey on the key to the credential's principal at the remote vault, enable or \
             recover the key, or configure a valid credential"
                .to_string()
        };
        StoreError::KeyInaccessible { key: kek.to_string(), operation: op.into(), reason, fix, transient }
    }

    async fn call(
        &self,
        kek: &KeyRef,
        op: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let token = std::str::from_utf8(self.token.expose_secret())
            .map_err(|_| Self::fail(kek, op, "the stored credential is not text".into(), false))?;
        let url = format!("{}/keys/{}{path}?{API}", self.origin, kek.name);
        let mut req = self.client.request(method, &url).bearer_auth(token.trim());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp =
            req.send().await.map_err(|e| Self::fail(kek, op, format!("{} is unreachable: {e}", self.origin), true))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(v);
        }
        let msg = v["error"]["message"].as_str().unwrap_or("no message").to_string();
        let transient = status.is_server_error() || status.as_u16() == 429;
        Err(Self::fail(kek, op, format!("HTTP {status}: {msg}"), transient))
    }

    async fn info(&self, kek: &KeyRef, version: Option<&str>) -> Result<KeyInfo> {
        let path = format!("/{}", version.unwrap_or(""));
        let v = self.call(kek, "get", reqwest::Method::GET, &path, None).await?;
        let kid = v["key"]["kid"].as_str().unwrap_or_default();
        let kty = v["key"]["kty"].as_str().unwrap_or_default().trim_end_matches("-HSM").to_string();
        let size_bits = match kty.as_str() {
            "RSA" => crate::keyvault::rsa_bits(v["key"]["n"].as_str()),
            "oct" => 256,
            _ => 0,
        };
        let attrs = &v["attributes"];
        Ok(KeyInfo {
            version: kid.rsplit('/').next().unwrap_or_default().to_string(),
            kty,
            size_bits,
            enabled: attrs["enabled"].as_bool().unwrap_or(false),
            nbf: attrs["nbf"].as_i64(),
            exp: attrs["exp"].as_i64(),
            recovery_level: attrs["recoveryLevel"].as_str().unwrap_or_default().to_string(),
            key_ops: v["key"]["key_ops"]
                .as_array()
                .map(|a| a.iter().filter_map(|o| o.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
        })
    }
}

/// The base64url `value` member of an answer.
fn value_of(v: &Value) -> Option<Vec<u8>> {
    v["value"]
        .as_str()
        .and_then(|s| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl KeyVault for HttpVault {
    fn get<'a>(&'a self, kek: &'a KeyRef) -> BoxFuture<'a, Result<KeyInfo>> {
        Box::pin(self.info(kek, kek.version.as_deref()))
    }

    fn wrap<'a>(&'a self, kek: &'a KeyRef, key: &'a SecretKey) -> BoxFuture<'a, Result<WrappedKey>> {
        Box::pin(async move {
            let info = self.info(kek, kek.version.as_deref()).await?;
            let alg = info
                .wrap_alg()
                .ok_or_else(|| Self::fail(kek, "wrapKey", format!("{} keys cannot wrap", info.kty), false))?;
            let body = serde_json::json!({"alg": alg, "value": b64(key.expose_secret())});
            let v = self
                .call(kek, "wrapKey", reqwest::Method::POST, &format!("/{}/wrapkey", info.version), Some(body))
                .await?;
            let bytes = value_of(&v)
                .ok_or_else(|| Self::fail(kek, "wrapKey", "the vault's answer has no value".into(), true))?;
            Ok(WrappedKey { version: info.version, alg: alg.into(), bytes })
        })
    }

    fn unwrap<'a>(&'a self, kek: &'a KeyRef, wrapped: &'a WrappedKey) -> BoxFuture<'a, Result<SecretBytes>> {
        Box::pin(async move {
            let body = serde_json::json!({"alg": wrapped.alg, "value": b64(&wrapped.bytes)});
            let v = self
                .call(kek, "unwrapKey", reqwest::Method::POST, &format!("/{}/unwrapkey", wrapped.version), Some(body))
                .await?;
            let bytes = value_of(&v)
                .ok_or_else(|| Self::fail(kek, "unwrapKey", "the vault's answer has no value".into(), true))?;
            Ok(SecretBytes::new(bytes))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_key_uri;

    #[test]
    fn key_uris() {
        assert_eq!(
            parse_key_uri("https://v.example:8443/keys/cmk").unwrap(),
            ("https://v.example:8443".into(), "cmk".into(), None)
        );
        assert_eq!(
            parse_key_uri("https://v.example/keys/cmk/0a1b/").unwrap(),
            ("https://v.example".into(), "cmk".into(), Some("0a1b".into()))
        );
        for bad in [
            "http://v/keys/k",
            "https://v/secrets/k",
            "https:///keys/k",
            "https://v/keys/",
            "https://v/keys/k/v/x",
            "https://v/keys/k%2F",
            "https://good.example@evil.example/keys/k",
            "https://evil.example?good.example/keys/k",
            "https://evil.example#x/keys/k",
        ] {
            assert!(parse_key_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn remote_host_allow_list() {
        use super::{host_allowed, split_authority};
        assert_eq!(split_authority("V.Example"), Some(("v.example".into(), 443)));
        assert_eq!(split_authority("v.example:8443"), Some(("v.example".into(), 8443)));
        assert_eq!(split_authority("[::1]:8443"), Some(("[::1]".into(), 8443)));
        assert_eq!(split_authority("[::1]"), Some(("[::1]".into(), 443)));
        assert_eq!(split_authority("v:x"), None);
        let allowed = vec!["kv.example.com".to_string(), "other.example:8443".into(), "*.vault.example".into()];
        for ok in ["kv.example.com", "KV.example.com:443", "other.example:8443", "a.vault.example", "b.a.vault.example"]
        {
            assert!(host_allowed(&allowed, ok), "{ok}");
        }
        for no in [
            "kv.example.com:8443",
            "other.example",
            "vault.example",
            "xvault.example",
            "evil.example",
            "169.254.169.254",
            "localhost:1",
            "kv.example.com.evil.example",
        ] {
            assert!(!host_allowed(&allowed, no), "{no}");
        }
        assert!(!host_allowed(&[], "kv.example.com"));
    }

    #[test]
    fn rsa_modulus_bits() {
        use base64::Engine as _;
        let n = |bytes: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(crate::keyvault::rsa_bits(Some(&n([vec![0x80], vec![0; 255]].concat()))), 2048);
        assert_eq!(crate::keyvault::rsa_bits(Some(&n([vec![0, 0x80], vec![0; 255]].concat()))), 2048);
        assert_eq!(crate::keyvault::rsa_bits(Some(&n([vec![0x7f], vec![0; 255]].concat()))), 2047);
        assert_eq!(crate::keyvault::rsa_bits(None), 0);
    }
}
