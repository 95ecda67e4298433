//! TLS for every listener: rustls on AWS-LC, TLS 1.2 and 1.3, forward-secret AEAD suites
//! only (rustls offers nothing else: ECDHE key exchange with AES-GCM or ChaCha20-Poly1305),
//! and the generated local CA for the embedded default.
//!
//! The generated CA and server private keys are never written in plaintext: they are
//! sealed (record format) under a key derived from the root key, with the file's role as
//! context. A user-supplied certificate and key replace the generated pair.

use crate::ServerError;
use atrest_crypto::{SecretKey, kdf::hkdf_sha256, record};
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use time::{Duration, OffsetDateTime};

/// Where the generated TLS material lives.
pub struct TlsPaths {
    /// The CA certificate clients trust (`<data-dir>/tls/ca.pem`).
    pub ca_pem: PathBuf,
    ca_key: PathBuf,
    server_pem: PathBuf,
    server_key: PathBuf,
}

impl TlsPaths {
    /// Paths under `<data_dir>/tls`.
    #[must_use]
    pub fn new(data_dir: &Path) -> Self {
        let d = data_dir.join("tls");
        Self {
            ca_pem: d.join("ca.pem"),
            ca_key: d.join("ca.key.sealed"),
            server_pem: d.join("server.pem"),
            server_key: d.join("server.key.sealed"),
        }
    }
}

fn sealing_key(root: &SecretKey) -> Result<SecretKey, ServerError> {
    let mut k = zeroize::Zeroizing::new([0u8; 32]);
    hkdf_sha256(root.expose_secret(), b"atrest/v1/root", &[b"tls-private-keys"], &mut k[..])?;
    Ok(SecretKey::from_slice(&k[..])?)
}

fn ca_params() -> Result<CertificateParams, ServerError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "atrest local CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::days(1);
    p.not_after = now + Duration::days(3650);
    Ok(p)
}

fn write_sealed(path: &Path, root: &SecretKey, role: &[u8], plain: &[u8]) -> Result<(), ServerError> {
    let sealed = record::seal(&sealing_key(root)?, &[b"atrest/tls", role], plain)?;
    crate::files::write_private(path, &sealed)
}

fn read_sealed(path: &Path, root: &SecretKey, role: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, ServerError> {
    let sealed = std::fs::read(path).map_err(|e| ServerError::io(path, e))?;
    let plain = record::open(&sealing_key(root)?, &[b"atrest/tls", role], &sealed).map_err(|_| {
        ServerError::Config(format!(
            "{} does not open with this root key: it was sealed under another root key or modified; \
             restore it, or delete the tls directory to generate a new CA (clients must then trust the new ca.pem)",
            path.display()
        ))
    })?;
    Ok(zeroize::Zeroizing::new(plain))
}

/// Makes sure a CA and a server certificate covering `names` exist under `paths`,
/// generating or re-issuing as needed. Returns the server chain and key.
pub fn ensure_generated(
    paths: &TlsPaths,
    root: &SecretKey,
    names: &[String],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ServerError> {
    if let Some(dir) = paths.ca_pem.parent() {
        crate::files::create_private_dir(dir)?;
    }
    let ca_key = if paths.ca_key.exists() && paths.ca_pem.exists() {
        let der = read_sealed(&paths.ca_key, root, b"ca")?;
        KeyPair::try_from(der.as_slice())?
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write_sealed(&paths.ca_key, root, b"ca", &zeroize::Zeroizing::new(key.serialize_der()))?;
        std::fs::write(&paths.ca_pem, cert.pem()).map_err(|e| ServerError::io(&paths.ca_pem, e))?;
        key
    };
    let names_file = paths.server_pem.with_extension("names");
    let wanted = names.join(",");
    let current = std::fs::read_to_string(&names_file).unwrap_or_default();
    if current != wanted || !paths.server_pem.exists() || !paths.server_key.exists() {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(names.to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, names.first().map_or("localhost", String::as_str));
        p.distinguished_name = dn;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        p.not_before = now - Duration::days(1);
        p.not_after = now + Duration::days(397);
        let issuer = Issuer::new(ca_params()?, &ca_key);
        let cert = p.signed_by(&key, &issuer)?;
        write_sealed(&paths.server_key, root, b"server", &zeroize::Zeroizing::new(key.serialize_der()))?;
        std::fs::write(&paths.server_pem, cert.pem()).map_err(|e| ServerError::io(&paths.server_pem, e))?;
        std::fs::write(&names_file, &wanted).map_err(|e| ServerError::io(&names_file, e))?;
    }
    let chain = load_certs(&paths.server_pem)?;
    let key_der = read_sealed(&paths.server_key, root, b"server")?;
    Ok((chain, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.to_vec()))))
}

/// Loads a PEM certificate chain.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let pem = std::fs::read(path).map_err(|e| ServerError::io(path, e))?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut pem.as_slice()).collect();
    let certs = certs.map_err(|e| ServerError::io(path, e))?;
    if certs.is_empty() {
        return Err(ServerError::Config(format!("{} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

/// Loads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ServerError> {
    let pem = std::fs::read(path).map_err(|e| ServerError::io(path, e))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| ServerError::io(path, e))?
        .ok_or_else(|| ServerError::Config(format!("{} holds no PEM private key", path.display())))
}

/// The server's rustls configuration: TLS 1.2 and 1.3 with rustls' AEAD, ECDHE-only
/// suites. With `client_ca`, every client must present a certificate issued by one of
/// those CAs (checked in the handshake, before any HTTP), in addition to its bearer token.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, ServerError> {
    let leaf = chain.first().cloned();
    let mut cfg = builder(client_ca)?
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Config(format!("TLS certificate and key do not match or are unusable: {e}")))?;
    if let Some(leaf) = leaf {
        cfg.cert_resolver = Arc::new(SniCheck { inner: cfg.cert_resolver.clone(), leaf, seen: Mutex::default() });
    }
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Logs (once per name) a client asking, by SNI, for a host name the certificate does
/// not cover: that client's handshake fails on its side, so the server's log is where an
/// operator can see which name to add (`--hostname`, `--vault-domain`).
#[derive(Debug)]
struct SniCheck {
    inner: Arc<dyn rustls::server::ResolvesServerCert>,
    leaf: CertificateDer<'static>,
    /// Names already judged: bounded, so a scanner cannot grow it.
    seen: Mutex<std::collections::HashSet<String>>,
}

impl rustls::server::ResolvesServerCert for SniCheck {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        if let Some(sni) = hello.server_name() {
            let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if seen.len() < 1024 && seen.insert(sni.to_ascii_lowercase()) {
                let covered = webpki::EndEntityCert::try_from(&self.leaf).is_ok_and(|c| {
                    rustls::pki_types::ServerName::try_from(sni)
                        .is_ok_and(|n| c.verify_is_valid_for_subject_name(&n).is_ok())
                });
                if !covered {
                    tracing::warn!(
                        sni,
                        "a client asked for a host name the TLS certificate does not cover (its handshake fails): \
                         add it with --hostname, serve vault names under --vault-domain, or have the client use a \
                         name the certificate has"
                    );
                }
            }
        }
        self.inner.resolve(hello)
    }
}

/// Like [`server_config`], keeping the certificate of `current` (a client CA change
/// with the generated certificate).
pub fn with_current_cert(current: &ServerConfig, client_ca: Option<&Path>) -> Result<Arc<ServerConfig>, ServerError> {
    let mut cfg = builder(client_ca)?.with_cert_resolver(current.cert_resolver.clone());
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn builder(
    client_ca: Option<&Path>,
) -> Result<rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>, ServerError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ServerError::Config(format!("TLS configuration: {e}")))?;
    Ok(match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(path)? {
                roots.add(c).map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    })
}

/// The files a user-supplied TLS configuration is read from, watched for changes.
#[derive(Clone)]
pub struct TlsFiles {
    /// Certificate chain (PEM); `None` with the generated certificate.
    pub cert: Option<PathBuf>,
    /// Private key (PEM).
    pub key: Option<PathBuf>,
    /// Client CA (PEM).
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Modification times of the watched files (a change of any triggers a reload).
    #[must_use]
    pub fn stamp(&self) -> Vec<Option<std::time::SystemTime>> {
        [&self.cert, &self.key, &self.client_ca]
            .iter()
            .map(|p| p.as_ref().and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()))
            .collect()
    }
}

/// The configuration in use, swapped whole on reload; each new connection takes the
/// current one, connections already open keep theirs.
pub type LiveConfig = Arc<std::sync::RwLock<Arc<ServerConfig>>>;
