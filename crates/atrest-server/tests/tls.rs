//! TLS operations over real connections: a user-supplied certificate replaced on disk is
//! picked up without a restart, client certificates are required when a client CA is
//! configured, TLS 1.2 without forward secrecy is impossible, and the operational
//! endpoints (metrics, OpenAPI, rate limit) answer.

mod common;

use atrest_server::ServeConfig;
use common::temp_dir;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use reqwest::{Client, StatusCode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::Path;
use std::sync::Arc;

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca { pem: cert.pem(), issuer: Issuer::new(p, key) }
}

/// A leaf for `names` signed by `ca`: (cert PEM, key PEM, cert DER, key DER).
fn leaf(ca: &Ca, names: &[&str]) -> (String, String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let p = CertificateParams::new(names.iter().map(|s| (*s).to_string()).collect::<Vec<_>>()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    let der = cert.der().clone();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (cert.pem(), key.serialize_pem(), der, key_der)
}

fn roots(pem: &str) -> rustls::RootCertStore {
    let mut r = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
        r.add(c.unwrap()).unwrap();
    }
    r
}

fn client(ca_pem: &str, identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>) -> Client {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca_pem));
    let tls = match identity {
        Some((c, k)) => b.with_client_auth_cert(vec![c], k).unwrap(),
        None => b.with_no_client_auth(),
    };
    Client::builder().use_preconfigured_tls(tls).build().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test]
async fn certificate_reload_and_client_certificates() {
    let dir = temp_dir("atrest-tls-test");
    std::fs::create_dir_all(&dir.0).unwrap();
    let (server_ca, other_ca, client_ca) = (ca("server CA 1"), ca("server CA 2"), ca("client CA"));
    let (cert, key, _, _) = leaf(&server_ca, &["localhost"]);
    let cert_file = write(&dir.0, "server.pem", &cert);
    let key_file = write(&dir.0, "server.key", &key);
    let client_ca_file = write(&dir.0, "client-ca.pem", &client_ca.pem);
    let cfg = ServeConfig {
        data_dir: dir.0.join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: Some(cert_file.clone()),
        tls_key: Some(key_file.clone()),
        client_ca: Some(client_ca_file),
        tls_reload_interval_secs: 1,
        rate_limit: 2,
        rate_burst: 3,
        ..ServeConfig::default()
    };
    let server = atrest_server::start(cfg).await.unwrap();
    assert!(server.ca_pem.is_none(), "no CA is generated with a user certificate");
    let url = format!("https://localhost:{}/healthz", server.addr.port());
    let (_, _, id_der, id_key) = leaf(&client_ca, &["app.example"]);
    let identity = || Some((id_der.clone(), id_key.clone_key()));

    // Without a client certificate the handshake fails; with one from the CA it works.
    assert!(client(&server_ca.pem, None).get(&url).send().await.is_err());
    let (_, _, stranger_der, stranger_key) = leaf(&other_ca, &["x"]);
    assert!(client(&server_ca.pem, Some((stranger_der, stranger_key))).get(&url).send().await.is_err());
    let r = client(&server_ca.pem, identity()).get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Replace the certificate on disk: new connections get it without a restart.
    let (cert2, key2, _, _) = leaf(&other_ca, &["localhost"]);
    std::fs::write(&key_file, key2).unwrap();
    std::fs::write(&cert_file, cert2).unwrap();
    let mut reloaded = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        if client(&other_ca.pem, identity()).get(&url).send().await.is_ok() {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "the new certificate is served within the reload interval");
    assert!(client(&server_ca.pem, identity()).get(&url).send().await.is_err(), "the old one is gone");

    // A broken file keeps the current certificate.
    std::fs::write(&cert_file, "not a certificate").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(client(&other_ca.pem, identity()).get(&url).send().await.is_ok());

    // Operational endpoints, and the per-principal rate limit (2/s, burst 3).
    let c = client(&other_ca.pem, identity());
    let base = format!("https://localhost:{}", server.addr.port());
    let token = std::fs::read_to_string(&server.admin_token).unwrap();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let r = c.get(format!("{base}/keys?api-version=7.5")).bearer_auth(&token).send().await.unwrap();
        statuses.push(r.status());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=2).contains(&retry), "{retry}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "Throttled");
        }
    }
    assert_eq!(&statuses[..3], &[StatusCode::OK; 3], "{statuses:?}");
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let r =
        c.get(format!("{base}/keys?api-version=7.5")).bearer_auth("atr1.0000000000000000.AAAA").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(c.get(format!("{base}/metrics")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let metrics = c.get(format!("{base}/metrics")).bearer_auth(&token).send().await.unwrap().text().await.unwrap();
    // The bucket refills at 2/s while the loop runs, so a slow machine may see a 4th OK:
    // the metric must match what the client saw.
    let oks = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let line = format!("atrest_http_requests_total{{route=\"list\",method=\"GET\",status=\"200\"}} {oks}");
    assert!(metrics.contains(&line), "{line} in {metrics}");
    assert!(metrics.contains("atrest_rate_limited_total "), "{metrics}");
    assert!(metrics.contains("atrest_auth_failures_total{reason=\"invalid\"} 1"), "{metrics}");
    assert!(metrics.contains("atrest_auth_failures_total{reason=\"missing\"} 1"), "{metrics}");
    assert!(metrics.contains("atrest_audit_appends_total{result=\"ok\"}"), "{metrics}");
    assert!(metrics.contains("atrest_http_request_duration_seconds_bucket{route=\"list\",le=\"+Inf\"} "), "{metrics}");
    assert!(!metrics.contains(&token), "metrics never show tokens");
    let api: serde_json::Value = c.get(format!("{base}/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(api["openapi"], "3.0.3");
    assert!(api["paths"]["/admin/vaults/{vault}/policies/{principal}"]["put"].is_object());
    server.shutdown().await;
}

#[tokio::test]
async fn only_forward_secret_suites() {
    // rustls offers only ECDHE suites; a client limited to TLS 1.2 still negotiates one.
    let dir = temp_dir("atrest-tls12-test");
    let cfg = ServeConfig { data_dir: dir.0.clone(), listen: "127.0.0.1:0".parse().unwrap(), ..ServeConfig::default() };
    let server = atrest_server::start(cfg).await.unwrap();
    let pem = std::fs::read_to_string(server.ca_pem.as_ref().unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots(&pem))
        .with_no_client_auth();
    let c = Client::builder().use_preconfigured_tls(tls).build().unwrap();
    let r = c.get(format!("https://localhost:{}/healthz", server.addr.port())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for s in rustls::crypto::aws_lc_rs::default_provider().cipher_suites {
        let name = format!("{:?}", s.suite());
        assert!(name.starts_with("TLS13_") || name.contains("ECDHE"), "{name}");
    }
    server.shutdown().await;
}
