//! Encryption settings of a resource: switching between platform and customer keys,
//! validating a customer key before use, and following the latest version of a
//! versionless key. Every change re-wraps the 32-byte resource key and nothing else.

use crate::cache::Slot;
use crate::error::{Result, StoreError};
use crate::keyvault::{KeyInfo, KeyRef, KeyVault, WrappedKey};
use crate::model::{DataRole, KeySource, Resource, ResourceState};
use crate::service::StoreService;
use atrest_crypto::SecretKey;
use atrest_vault::Principal;

/// A resource key wrapped under the key a request named, with what the resource row records.
pub(crate) struct Wrapping {
    pub(crate) source: KeySource,
    pub(crate) uri: String,
    pub(crate) kek: KeyRef,
    pub(crate) remote_cred: Vec<u8>,
    pub(crate) wrapped: WrappedKey,
}

/// What the caller asks for.
#[derive(Debug, Clone)]
pub enum EncryptionRequest {
    /// Back to the platform key.
    Platform,
    /// A key in a vault of this deployment.
    Customer {
        /// The URI as given (`https://HOST/keys/NAME[/VERSION]`).
        uri: String,
        /// The key it names (the vault resolved from the host by the caller).
        kek: KeyRef,
    },
    /// A key in a vault on another server (atrest or AKV-compatible), reached over HTTPS
    /// with the given bearer credential (stored sealed).
    Remote {
        /// The URI as given.
        uri: String,
        /// The key it names (vault is the URI's origin).
        kek: KeyRef,
        /// Bearer token for that vault.
        credential: atrest_crypto::SecretBytes,
    },
}

/// Whether an authority's host is a link-local or unspecified IP address.
fn is_link_local(authority: &str) -> bool {
    let Some((host, _)) = crate::remote::split_authority(authority) else { return false };
    match host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_link_local() || ip.is_unspecified(),
        Ok(std::net::IpAddr::V6(ip)) => (ip.segments()[0] & 0xffc0) == 0xfe80 || ip.is_unspecified(),
        Err(_) => false,
    }
}

fn reject(what: impl Into<String>) -> StoreError {
    StoreError::KeyRejected(what.into())
}

/// Checks a key against the rules for a customer key, saying what to fix.
fn validate(uri: &str, info: &KeyInfo, now: i64) -> Result<()> {
    if !info.enabled {
        return Err(reject(format!("key {uri} is disabled: enable it (atrest key update NAME --enable) first")));
    }
    if info.nbf.is_some_and(|nbf| nbf > now) {
        return Err(reject(format!("key {uri} is not valid yet (nbf is in the future): wait, or change nbf")));
    }
    if info.exp.is_some_and(|exp| exp <= now) {
        return Err(reject(format!("key {uri} has expired: rotate it or extend exp")));
    }
    match (info.kty.as_str(), info.size_bits) {
        ("RSA", bits) if bits >= 2048 => {}
        ("oct", 256) => {}
        ("EC", _) => {
            return Err(reject(format!(
                "key {uri} is an EC key, which cannot wrap: a customer key must be RSA of 2048 bits or more, or oct-256"
            )));
        }
        (kty, 0) => {
            return Err(reject(format!(
                "key {uri} is {kty}: a customer key must be RSA of 2048 bits or more, or oct-256"
            )));
        }
        (kty, bits) => {
            return Err(reject(format!(
                "key {uri} is {kty} of {bits} bits: a customer key must be RSA of 2048 bits or more, or oct-256"
            )));
        }
    }
    for op in ["wrapKey", "unwrapKey"] {
        if !info.key_ops.iter().any(|o| o == op) {
            return Err(reject(format!("key {uri} does not permit {op}: add it to the key's key_ops")));
        }
    }
    if info.recovery_level != "Recoverable" && info.recovery_level != "CustomizedRecoverable" {
        return Err(reject(format!(
            "the vault of key {uri} does not have purge protection on (recovery level {}): turn on soft delete and purge \
             protection on that vault (`atrest vault update VAULT --purge-protection`, run by its tenant admin), so the \
             key cannot be destroyed by mistake",
            info.recovery_level
        )));
    }
    Ok(())
}

impl StoreService {
    /// Changes a resource's key-encryption key: validates the new key as the resource's
    /// identity (for a customer key: enabled, in date, RSA ≥ 2048 or oct-256, purge
    /// protection on, same tenant, and get/wrapKey/unwrapKey granted, proven by wrapping
    /// and unwrapping the resource key), then stores the resource key re-wrapped. Data
    /// is not touched; the old key is needed to unwrap, so the resource must be usable.
    ///
    /// # Errors
    /// `CustomerKeyRejected` with what to fix; `KeyInaccessible`.
    pub async fn set_encryption(&self, actor: &Principal, name: &str, req: EncryptionRequest) -> Result<Resource> {
        let r = self.authorized(actor, name, DataRole::Owner).await?;
        if r.state == ResourceState::KeyInaccessible {
            return Err(StoreError::KeyInaccessible {
                key: r.key_uri.clone(),
                operation: "unwrapKey".into(),
                reason: format!("resource {} is KeyInaccessible: its current key is needed to re-wrap", r.name),
                fix: "restore access to the current key first; without it the resource key cannot be re-wrapped \
                      (data stays unreadable until access returns, or delete the resource)"
                    .into(),
                transient: false,
            });
        }
        let rk = self.key(&r, Slot::Resource(r.rk_epoch)).await?;
        let Wrapping { source, uri, kek, remote_cred, wrapped } = self.wrap_under(&r, req, &rk).await?;
        let old_uri = r.key_uri.clone();
        let new = self.store_wrapping(&r, source, &uri, &kek, remote_cred, wrapped).await?;
        self.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&r.id);
        self.audit(
            &new,
            &actor.name,
            "set-encryption",
            &new.name,
            "ok",
            serde_json::json!({"from": old_uri, "to": uri, "version": new.wrapped.version}),
        )
        .await?;
        Ok(new)
    }

    /// Validates the key `req` names as `r`'s identity (for a customer key: enabled, in
    /// date, RSA ≥ 2048 or oct-256, purge protection on, same tenant, get/wrapKey/unwrapKey
    /// granted) and wraps `rk` under it, proving the unwrap too.
    pub(crate) async fn wrap_under(&self, r: &Resource, req: EncryptionRequest, rk: &SecretKey) -> Result<Wrapping> {
        self.check_key_host(&req)?;
        // A bucket's key slots share its identity (`s3::keyslots`): name the principal.
        let identity_name = match self.vault.principal(&r.identity_id).await {
            Ok(p) => p.name,
            Err(_) => atrest_vault::resource_identity_name(&r.name),
        };
        let (source, uri, kek, remote_cred, vault): (KeySource, String, KeyRef, Vec<u8>, Box<dyn KeyVault>) = match req
        {
            EncryptionRequest::Platform => {
                (KeySource::Platform, "platform".into(), Self::platform_kek(), Vec::new(), self.platform_vault(&r.name))
            }
            EncryptionRequest::Customer { uri, kek } => {
                let v = match self.vault.vault(&kek.vault).await {
                    Ok(v) if !atrest_vault::platform::is_platform(&v.name) && v.tenant_id == r.tenant_id => v,
                    Ok(_) => {
                        return Err(reject(format!(
                            "key {uri} is in a vault of another tenant: use a vault of the resource's tenant"
                        )));
                    }
                    Err(atrest_vault::VaultError::NotFound(_)) => {
                        return Err(reject(format!("no vault answers for {uri}: check the host in the key URI")));
                    }
                    Err(e) => return Err(e.into()),
                };
                let identity = self.vault.principal(&r.identity_id).await?;
                let vault = self.vaults.local(identity, &r.name);
                let _ = v;
                (KeySource::Customer, uri, kek, Vec::new(), vault)
            }
            EncryptionRequest::Remote { uri, kek, credential } => {
                let sealed = self.seal_credential(&r.id, credential.expose_secret())?;
                let vault = self.vaults.remote(&uri, credential)?;
                (KeySource::Customer, uri, kek, sealed, vault)
            }
        };
        let label = Self::label(r);
        let explain = |e: StoreError| match e {
            StoreError::KeyInaccessible { operation, reason, transient: false, .. } => reject(format!(
                "the resource identity {identity_name} cannot {operation} with key {uri}: {reason}; grant get, wrapKey \
                 and unwrapKey on the key to principal {identity_name}"
            )),
            e => e,
        };
        if source == KeySource::Customer {
            let info = vault.get(&kek).await.map_err(explain)?;
            self.metrics.vault_call(&label, "get", true);
            validate(&uri, &info, self.now())?;
        }
        let wrapped = vault.wrap(&kek, rk).await.map_err(explain)?;
        self.metrics.vault_call(&label, "wrapKey", true);
        // Prove unwrapKey now, not at the first read after the change.
        let back = crate::hierarchy::open_resource_key(vault.as_ref(), &kek, &wrapped).await.map_err(explain)?;
        self.metrics.vault_call(&label, "unwrapKey", true);
        if back.expose_secret() != rk.expose_secret() {
            return Err(reject(format!("key {uri} did not give back what it wrapped")));
        }
        Ok(Wrapping { source, uri, kek, remote_cred, wrapped })
    }

    /// A key URI without a credential must name this deployment (else it would be
    /// reported under a foreign host while a local vault's key is used); a remote vault
    /// must be on a host `--remote-vault-hosts` allows, when that is set.
    fn check_key_host(&self, req: &EncryptionRequest) -> Result<()> {
        let authority = |uri: &str| -> Result<String> {
            let (origin, _, _) = crate::remote::parse_key_uri(uri)?;
            Ok(origin.trim_start_matches("https://").to_string())
        };
        match req {
            EncryptionRequest::Platform => Ok(()),
            EncryptionRequest::Customer { uri, .. } => {
                let host = authority(uri)?;
                if self.cfg.origins.is_local(&host) {
                    return Ok(());
                }
                Err(reject(format!(
                    "{host} in key URI {uri} is not this deployment: for a key in a vault here use this deployment's \
                     vault URL (e.g. {}/keys/NAME), or, if {host} does reach this deployment, start it with \
                     --hostname for that name; for a key in a vault on another server, give that vault's credential \
                     too (\"credential\": a bearer token; atrest resource encryption set --credential-file)",
                    self.cfg.origins.example()
                )))
            }
            EncryptionRequest::Remote { uri, .. } => {
                let host = authority(uri)?;
                let allowed = &self.cfg.remote_vault_hosts;
                if crate::remote::host_allowed(allowed, &host) {
                    return Ok(());
                }
                // Link-local addresses are where cloud metadata services answer: never a
                // vault unless the operator names one.
                if is_link_local(&host) {
                    return Err(reject(format!(
                        "{host} is a link-local address (cloud metadata services live there), not a vault: \
                         use the remote vault's real host name, or ask the operator to add it to --remote-vault-hosts"
                    )));
                }
                if allowed.is_empty() {
                    return Ok(());
                }
                Err(reject(format!(
                    "remote vaults on {host} are not allowed here (allowed: {}): use a vault on one of those hosts, or \
                     ask the operator to add {host} to --remote-vault-hosts",
                    allowed.join(", ")
                )))
            }
        }
    }

    /// Writes a new wrapping of the resource key (the re-wrap's one write).
    async fn store_wrapping(
        &self,
        r: &Resource,
        source: KeySource,
        uri: &str,
        kek: &KeyRef,
        remote_cred: Vec<u8>,
        wrapped: WrappedKey,
    ) -> Result<Resource> {
        let _g = self.write_guard().await;
        let mut cur = self.resource_by_id(&r.id).await?;
        if cur.rk_epoch != r.rk_epoch {
            return Err(StoreError::Conflict(format!("resource {} was re-keyed meanwhile: retry", r.name)));
        }
        if cur.old_wrapped.is_some() {
            return Err(StoreError::Conflict(format!(
                "resource {} has a re-key job running: change the key after it finishes (atrest job watch)",
                r.name
            )));
        }
        // The new wrapping was computed from `r`: if the key settings moved meanwhile (an
        // owner's change racing the follower), this one must not undo that one.
        if cur.key_uri != r.key_uri || cur.kek != r.kek || cur.wrapped != r.wrapped {
            return Err(StoreError::Conflict(format!(
                "the encryption settings of resource {} changed meanwhile; read them again and retry",
                r.name
            )));
        }
        cur.key_source = source;
        cur.key_uri = uri.to_string();
        cur.kek = kek.clone();
        cur.remote_cred = remote_cred;
        cur.wrapped = wrapped;
        cur.updated = self.now();
        self.save_resource(self.db.pool(), &cur).await?;
        Ok(cur)
    }

    /// One pass over resources with a versionless key (including every platform-managed
    /// one): when the key's latest version changed and is enabled, the resource key is
    /// re-wrapped with it; when the latest is disabled, the current wrapping stays and a
    /// warning is raised. Returns `(resource, new version)` for each re-wrap.
    ///
    /// # Errors
    /// Database errors (a resource that fails is logged and skipped).
    pub async fn follow_latest(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for r in self.all_resources().await? {
            if r.state != ResourceState::Active || r.old_wrapped.is_some() {
                continue;
            }
            match self.follow_one(&r).await {
                Ok(Some(v)) => out.push((r.name.clone(), v)),
                Ok(None) => {}
                Err(e) => tracing::warn!(resource = %r.name, error = %e, "could not check the key's latest version"),
            }
        }
        Ok(out)
    }

    /// Raises (or clears) the resource's warning about its key version's expiry: after
    /// `exp` the key still unwraps, so the resource keeps working, but it wraps nothing
    /// new (no re-key, no rotation onto it).
    fn expiry_warning(&self, r: &Resource, version: &str, exp: Option<i64>) -> bool {
        let mut warnings = self.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match exp.filter(|&e| e <= self.now()) {
            Some(e) => {
                let w = format!(
                    "key {} version {version} expired (exp {e}, Unix seconds): the resource keeps reading and \
                     writing, but a re-key is refused until the key is rotated or its exp extended",
                    r.key_uri
                );
                if warnings.get(&r.id) != Some(&w) {
                    tracing::warn!(resource = %r.name, "{w}");
                    warnings.insert(r.id.clone(), w);
                }
                true
            }
            None => {
                warnings.remove(&r.id);
                false
            }
        }
    }

    async fn follow_one(&self, r: &Resource) -> Result<Option<String>> {
        let label = Self::label(r);
        let vault = self.kek_vault(r).await?;
        let info = vault.get(&r.kek).await.map_err(|e| Self::named_by_uri(r, e));
        self.metrics.vault_call(&label, "get", info.is_ok());
        let info = match info {
            Ok(i) => i,
            Err(e @ StoreError::KeyInaccessible { transient: false, .. }) => {
                self.mark_inaccessible(r, &e).await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        // A pinned version is only watched for its expiry.
        if info.version == r.wrapped.version || r.kek.version.is_some() {
            self.expiry_warning(r, &info.version, info.exp);
            return Ok(None);
        }
        if !info.enabled {
            let w = format!(
                "the latest version {} of key {} is disabled; the resource stays on version {}",
                info.version, r.key_uri, r.wrapped.version
            );
            tracing::warn!(resource = %r.name, "{w}");
            self.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(r.id.clone(), w);
            return Ok(None);
        }
        let rk = self.key(r, Slot::Resource(r.rk_epoch)).await?;
        let pinned = KeyRef { version: Some(info.version.clone()), ..r.kek.clone() };
        let wrapped = vault.wrap(&pinned, &rk).await;
        self.metrics.vault_call(&label, "wrapKey", wrapped.is_ok());
        let wrapped = wrapped?;
        let new = self.store_wrapping(r, r.key_source, &r.key_uri, &r.kek, r.remote_cred.clone(), wrapped).await?;
        self.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&r.id);
        self.audit(
            &new,
            "system",
            "rewrap",
            &new.name,
            "ok",
            serde_json::json!({"key": r.key_uri, "from": r.wrapped.version, "to": new.wrapped.version}),
        )
        .await?;
        tracing::info!(resource = %r.name, from = %r.wrapped.version, to = %new.wrapped.version, "resource key re-wrapped with the latest key version");
        Ok(Some(new.wrapped.version))
    }
}

#[cfg(test)]
mod tests {
    use crate::origins::Origins;

    #[test]
    fn only_this_deployments_hosts_are_local() {
        let o = Origins::new("127.0.0.1:8443".parse().unwrap(), &["Vault.Example.com".into()], Some("kv.example"));
        for local in [
            "127.0.0.1:8443",
            "localhost:8443",
            "LOCALHOST:8443",
            "vault.example.com",
            "vault.example.com:443",
            "vault.example.com:8443",
            "kv.example",
            "team.kv.example:8443",
        ] {
            assert!(o.is_local(local), "{local}");
        }
        for foreign in [
            "evil.example",
            "169.254.169.254",
            "169.254.169.254:8443",
            "localhost:1",
            "localhost",
            "127.0.0.1:8444",
            "127.0.0.1",
            "vault.example.com:1",
            "a.b.kv.example",
            "xkv.example",
            "kv.example.evil.example",
            "0.0.0.0:8443",
            "127.0.0.1:x",
        ] {
            assert!(!o.is_local(foreign), "{foreign}");
        }
        let any = Origins::new("0.0.0.0:9000".parse().unwrap(), &[], None);
        assert!(any.is_local("127.0.0.1:9000") && !any.is_local("0.0.0.0:9000"));
        let v6 = Origins::new("[::1]:9000".parse().unwrap(), &[], None);
        assert!(v6.is_local("[::1]:9000") && !v6.is_local("[::1]:9001"));
        for meta in ["169.254.169.254", "169.254.169.254:443", "[fe80::1]:443", "0.0.0.0:443"] {
            assert!(super::is_link_local(meta), "{meta}");
        }
        for fine in ["vault.example.com", "10.0.0.5:443", "127.0.0.1:9000", "[::1]:443"] {
            assert!(!super::is_link_local(fine), "{fine}");
        }
        // A vault's own port is this deployment under its names, and no other port is.
        o.vault_ports.insert(8444, "payments");
        for local in ["127.0.0.1:8444", "localhost:8444", "vault.example.com:8444"] {
            assert!(o.is_local(local), "{local}");
        }
        for foreign in ["127.0.0.1:8445", "evil.example:8444", "team.kv.example:8444"] {
            assert!(!o.is_local(foreign), "{foreign}");
        }
        let all6 = Origins::new("[::]:9000".parse().unwrap(), &[], None);
        assert!(all6.is_local("[::1]:9000") && all6.is_local("localhost:9000") && !all6.is_local("[::]:9000"));
    }
}
