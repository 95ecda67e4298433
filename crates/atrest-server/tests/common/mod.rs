//! Helpers shared by the integration tests: a self-removing temporary directory and an
//! HTTPS client that trusts a server's generated CA.
#![allow(dead_code)]

use reqwest::Client;
use std::path::PathBuf;
use std::sync::Arc;

/// Removes the directory when dropped.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn client_for(ca_pem: &std::path::Path) -> Client {
    client_builder(ca_pem).build().unwrap()
}

/// A client builder trusting `ca_pem` (add `resolve` for vault host names).
pub fn client_builder(ca_pem: &std::path::Path) -> reqwest::ClientBuilder {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca_pem).unwrap();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Client::builder().use_preconfigured_tls(tls)
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(prefix: &str) -> TempDir {
    TempDir(std::env::temp_dir().join(format!("{prefix}-{}", hex::encode(atrest_crypto::rand::bytes::<6>().unwrap()))))
}
