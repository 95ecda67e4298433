//! The HTTPS vault client (a customer key on another atrest server) against a real
//! `atrest serve` over TLS, through the vault-client conformance suite the in-process
//! client also runs (`atrest-store/tests/hierarchy.rs`).

use atrest_crypto::SecretBytes;
use atrest_server::ServeConfig;
use atrest_store::keyvault::KeyRef;
use atrest_store::keyvault_conformance::{Fixture, check};
use atrest_store::remote::{HttpVault, http_client};
use serde_json::{Value, json};
mod common;
use common::{client_for, temp_dir};

#[tokio::test]
async fn the_https_client_passes_the_vault_client_conformance_suite() {
    let dir = temp_dir("atrest-vault-client");
    let cfg = ServeConfig { data_dir: dir.0.clone(), listen: "127.0.0.1:0".parse().unwrap(), ..ServeConfig::default() };
    let server = atrest_server::start(cfg).await.unwrap();
    let ca = server.ca_pem.clone().unwrap();
    let token = std::fs::read_to_string(&server.admin_token).unwrap();
    let origin = format!("https://localhost:{}", server.addr.port());
    let api = client_for(&ca);
    let create = |name: &'static str, body: Value| {
        let (api, origin, token) = (api.clone(), origin.clone(), token.clone());
        async move {
            let r = api
                .post(format!("{origin}/keys/{name}/create?api-version=7.5"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
            let v: Value = r.json().await.unwrap();
            v["key"]["kid"].as_str().unwrap().rsplit('/').next().unwrap().to_string()
        }
    };
    let first = create("pmk", json!({"kty": "oct", "key_size": 256})).await;
    create("pmk", json!({"kty": "oct", "key_size": 256})).await;
    create("cmk", json!({"kty": "RSA", "key_size": 2048})).await;

    let kv = HttpVault::new(
        http_client(Some(&ca)).unwrap(),
        &format!("{origin}/keys/pmk"),
        SecretBytes::new(token.trim().as_bytes().to_vec()),
    )
    .unwrap();
    let kref = |name: &str| KeyRef { vault: "default".into(), name: name.into(), version: None };
    let fixture = Fixture { oct: kref("pmk"), oct_first: first, rsa: kref("cmk"), missing: kref("nope") };
    check(&kv, &fixture).await;
    server.shutdown().await;
}
