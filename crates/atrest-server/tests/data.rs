//! The data service end to end, over real HTTPS against the real server with short key
//! cache lifetimes: the customer-key story (create, write, enable a customer key, rotate
//! it, read back, revoke → 403 within the bound, restore → intact, back to platform),
//! the same with the key on a second atrest server, transient messages, tampering with
//! the SQLite file and blob files, and data-plane authorization and tenant isolation.

mod common;

use atrest_server::ServeConfig;
use common::{TempDir, client_for, temp_dir};
use reqwest::{Client, Method as M, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

struct Api {
    client: Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(&self, m: M, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = if path.starts_with("/keys") {
            format!("{}{path}{sep}api-version=7.5", self.base)
        } else {
            format!("{}{path}", self.base)
        };
        let mut req = self.client.request(m, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let s = resp.status();
        let t = resp.text().await.unwrap();
        (s, if t.is_empty() { Value::Null } else { serde_json::from_str(&t).unwrap_or(Value::String(t)) })
    }

    async fn put_bytes(&self, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let resp =
            self.client.put(format!("{}{path}", self.base)).bearer_auth(&self.token).body(body).send().await.unwrap();
        let s = resp.status();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get_bytes(&self, path: &str) -> (StatusCode, Vec<u8>) {
        let resp = self.client.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await.unwrap();
        let s = resp.status();
        (s, resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
    }

    fn with_token(&self, token: &str) -> Api {
        Api { client: self.client.clone(), base: self.base.clone(), token: token.to_string() }
    }
}

fn fast(dir: &TempDir) -> ServeConfig {
    ServeConfig {
        data_dir: dir.0.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        key_cache_ttl_secs: 1,
        vault_grace_secs: 0,
        key_follow_interval_secs: 1,
        sweep_interval_secs: 1,
        ..ServeConfig::default()
    }
}

async fn start(cfg: ServeConfig) -> (atrest_server::Server, Api) {
    let server = atrest_server::start(cfg).await.unwrap();
    let api = Api {
        client: client_for(server.ca_pem.as_ref().unwrap()),
        base: format!("https://localhost:{}", server.addr.port()),
        token: std::fs::read_to_string(&server.admin_token).unwrap().trim().to_string(),
    };
    (server, api)
}

fn blob_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| u8::try_from((i * 7 + i / 251) % 256).unwrap()).collect()
}

/// Every record and the blob read back unchanged.
async fn read_all(api: &Api, n: usize, blob: &[u8]) {
    for i in 0..n {
        let (s, b) = api.get_bytes(&format!("/data/resources/bot/records/user%2F{i}")).await;
        assert_eq!(s, StatusCode::OK, "record {i}");
        assert_eq!(b, format!("{{\"n\":{i}}}").into_bytes());
    }
    let (s, b) = api.get_bytes("/data/resources/bot/blobs/photo.bin").await;
    assert_eq!(s, StatusCode::OK);
    assert!(b == blob, "blob differs");
}

/// Polls until `f` holds (or panics after `secs`).
async fn until<F, Fut>(secs: u64, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if f().await {
            return t.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within {secs} s");
}

#[tokio::test]
async fn customer_key_story_end_to_end() {
    let dir = temp_dir("atrest-data-e2e");
    let (server, api) = start(fast(&dir)).await;
    let (s, r) = api.call(M::PUT, "/data/resources/bot", None).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["encryption"]["keySource"], "platform");
    assert_eq!(r["identity"], "res-bot");
    let (s, _) = api.call(M::PUT, "/data/resources/bot", None).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Write: records (names with a slash), a blob of several segments, a message.
    const N: usize = 20;
    for i in 0..N {
        let (s, v) = api
            .put_bytes(&format!("/data/resources/bot/records/user%2F{i}"), format!("{{\"n\":{i}}}").into_bytes())
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let blob = blob_bytes(300_000);
    let (s, v) = api.put_bytes("/data/resources/bot/blobs/photo.bin", blob.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["size"], 300_000);
    let (s, _) = api.call(M::POST, "/data/resources/bot/messages?ttl=600", None).await;
    assert_eq!(s, StatusCode::CREATED);
    read_all(&api, N, &blob).await;
    let (_, list) = api.call(M::GET, "/data/resources/bot/records?prefix=user%2F1", None).await;
    let names: Vec<&str> = list["value"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "user/1", "user/10", "user/11", "user/12", "user/13", "user/14", "user/15", "user/16", "user/17",
            "user/18", "user/19"
        ]
    );

    // Nothing readable reaches storage: names and bodies are not in the database file.
    let db = std::fs::read(dir.0.join("store.db")).unwrap_or_default();
    let wal = std::fs::read(dir.0.join("store.db-wal")).unwrap_or_default();
    for hay in [&db, &wal] {
        assert!(!hay.windows(6).any(|w| w == b"user/1"), "a record name is stored in clear");
        assert!(!hay.windows(6).any(|w| w == b"{\"n\":1"), "a record body is stored in clear");
    }

    // A customer key, refused until the vault and the identity are set up right.
    let (s, k) = api.call(M::POST, "/keys/cmk/create", Some(json!({"kty": "RSA", "key_size": 2048}))).await;
    assert_eq!(s, StatusCode::OK, "{k}");
    let v1 = k["key"]["kid"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let uri = format!("{}/keys/cmk", api.base);
    let set_cmk = json!({"keySource": "customer", "keyUri": uri});
    let (s, e) = api.call(M::PUT, "/data/resources/bot/encryption", Some(set_cmk.clone())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["error"]["code"], "CustomerKeyRejected");
    assert!(e["error"]["message"].as_str().unwrap().contains("grant get, wrapKey and unwrapKey"), "{e}");
    let (s, e) = api
        .call(
            M::PUT,
            "/admin/vaults/default/policies/res-bot",
            Some(json!({"permissions": ["get", "wrapKey", "unwrapKey"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let (s, e) = api.call(M::PUT, "/data/resources/bot/encryption", Some(set_cmk.clone())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("purge protection"), "{e}");
    let (s, _) = api.call(M::PATCH, "/admin/vaults/default", Some(json!({"purge_protection": true}))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, e) = api.call(M::PUT, "/data/resources/bot/encryption", Some(set_cmk.clone())).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["keySource"], "customer");
    assert_eq!(e["keyVersion"], v1.as_str());
    read_all(&api, N, &blob).await;

    // Rotate the key: the versionless setting follows the new version (re-wrap only).
    let (s, k2) = api.call(M::POST, "/keys/cmk/rotate", None).await;
    assert_eq!(s, StatusCode::OK);
    let v2 = k2["key"]["kid"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    until(10, "re-wrap with the new version", || async {
        api.call(M::GET, "/data/resources/bot/encryption", None).await.1["keyVersion"] == v2.as_str()
    })
    .await;
    read_all(&api, N, &blob).await;
    let (_, usage) = api.call(M::GET, "/data/key-usage", None).await;
    let cmk = usage["value"].as_array().unwrap().iter().find(|k| k["name"] == "cmk").unwrap().clone();
    let versions = cmk["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{cmk}");
    assert_eq!(versions[0]["version"], v1.as_str());
    assert_eq!(versions[0]["needed"], false, "v1 is no longer needed: {cmk}");
    assert_eq!(versions[1]["needed"], true);
    assert_eq!(versions[1]["resources"], json!(["bot"]));

    // Revoke: the resource stops within the cache lifetime (1 s here) plus one request.
    let (s, _) = api.call(M::DELETE, "/admin/vaults/default/policies/res-bot", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let took = until(10, "403 after revocation", || async {
        api.get_bytes("/data/resources/bot/records/user%2F0").await.0 == StatusCode::FORBIDDEN
    })
    .await;
    assert!(took < Duration::from_secs(3), "revocation took {took:?}, over the 1 s cache lifetime + request");
    let (s, e) = api.call(M::GET, "/data/resources/bot/records/user%2F1", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(e["error"]["code"], "KeyInaccessible");
    assert!(e["error"]["message"].as_str().unwrap().contains("/keys/cmk"), "{e}");
    let (_, r) = api.call(M::GET, "/data/resources/bot", None).await;
    assert_eq!(r["state"], "key-inaccessible", "{r}");
    for (m, path) in [
        (M::PUT, "/data/resources/bot/diagnostics"),
        (M::POST, "/data/resources/bot/messages/receive"),
        (M::GET, "/data/resources/bot/blobs/photo.bin"),
    ] {
        let (s, e) = api.call(m, path, Some(json!({"dataAudit": true}))).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {e}");
        assert_eq!(e["error"]["code"], "KeyInaccessible", "{path}");
    }
    let (s, e) = api.call(M::PUT, "/data/resources/bot/encryption", Some(json!({"keySource": "platform"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "switching back needs the customer key: {e}");
    let metrics = api
        .client
        .get(format!("{}/metrics", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("atrest_store_resources_key_inaccessible 1"), "{metrics}");

    // Restore: the resource recovers by itself, with nothing lost.
    let (s, _) = api
        .call(
            M::PUT,
            "/admin/vaults/default/policies/res-bot",
            Some(json!({"permissions": ["get", "wrapKey", "unwrapKey"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    until(10, "recovery", || async { api.get_bytes("/data/resources/bot/records/user%2F0").await.0 == StatusCode::OK })
        .await;
    read_all(&api, N, &blob).await;
    let (_, msgs) = api.call(M::POST, "/data/resources/bot/messages/receive?max=5", None).await;
    assert_eq!(msgs["value"].as_array().unwrap().len(), 1, "{msgs}");

    // Back to platform keys; the customer key is then not needed at all.
    let (s, e) = api.call(M::PUT, "/data/resources/bot/encryption", Some(json!({"keySource": "platform"}))).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let (s, _) = api.call(M::DELETE, "/admin/vaults/default/policies/res-bot", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    read_all(&api, N, &blob).await;

    // Key uses are on the vault's audit chain, naming the resource.
    let svc = server.service().clone();
    let vault = svc.vault("default").await.unwrap();
    let entries = svc.audit_entries(&vault.id, &atrest_vault::audit::AuditFilter::default()).await.unwrap();
    assert!(
        entries.iter().any(|e| e.operation == "unwrapKey"
            && e.principal == "res-bot"
            && e.detail.contains("\"resource\":\"bot\""))
    );
    assert!(svc.verify_audit_chain(&vault.id, None).await.unwrap().ok());
    let metrics = api
        .client
        .get(format!("{}/metrics", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("atrest_store_vault_calls_total{resource="), "{metrics}");
    assert!(metrics.contains("atrest_store_resources_key_inaccessible 0"), "{metrics}");

    // Delete is crypto-erasure: rows and files are gone.
    let (s, _) = api.call(M::DELETE, "/data/resources/bot", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api.call(M::GET, "/data/resources/bot", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let blobs = std::fs::read_dir(dir.0.join("blobs")).unwrap().count();
    assert_eq!(blobs, 0, "blob files remain after delete");
    server.shutdown().await;
}
