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

    async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    fn with_token(&self, token: &str) -> Api {
        Api { client: self.client.clone(), base: self.base.clone(), token: token.to_string() }
    }
}

/// With `ATREST_TEST_PG=postgres://USER@HOST:PORT` the suite runs on PostgreSQL: each
/// data directory gets its own database (the vault and the data service share it).
fn database_for(dir: &TempDir) -> Option<String> {
    let admin = std::env::var("ATREST_TEST_PG").ok()?;
    let digest = hex::encode(atrest_crypto::hash::sha256(&[dir.0.to_string_lossy().as_bytes()]));
    let name = format!("t_{}", &digest[..16]);
    let create = format!("CREATE DATABASE {name}");
    let url = format!("{}/postgres", admin.trim_end_matches('/'));
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async move {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            // Several restarts of one data directory reuse its database.
            let _ = sqlx::query(&create).execute(&mut conn).await;
        });
    })
    .join()
    .unwrap();
    Some(format!("{}/{name}", admin.trim_end_matches('/')))
}

/// A connection to the data service's database of `dir` (SQLite file or PostgreSQL).
async fn store_conn(dir: &TempDir) -> sqlx::AnyConnection {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let url = database_for(dir).unwrap_or_else(|| format!("sqlite://{}", dir.0.join("store.db").display()));
    sqlx::AnyConnection::connect(&url).await.unwrap()
}

/// With `ATREST_TEST_S3=http://HOST:PORT` (credentials in `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY`) blob bodies go to bucket `atrest` of that S3 server, under a
/// prefix per data directory.
fn blob_store_for(dir: &TempDir) -> Option<String> {
    let endpoint = std::env::var("ATREST_TEST_S3").ok()?;
    Some(format!("s3://atrest/{}?endpoint={endpoint}&region=us-east-1", prefix_for(dir)))
}

fn prefix_for(dir: &TempDir) -> String {
    let digest = hex::encode(atrest_crypto::hash::sha256(&[dir.0.to_string_lossy().as_bytes()]));
    format!("t_{}", &digest[..16])
}

fn s3() -> Option<object_store::aws::AmazonS3> {
    let endpoint = std::env::var("ATREST_TEST_S3").ok()?;
    Some(
        object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name("atrest")
            .with_region("us-east-1")
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .build()
            .unwrap(),
    )
}

/// The stored blob bodies of `dir`'s deployment, as `resource/name`, wherever they are.
async fn blob_bodies(dir: &TempDir) -> Vec<String> {
    use futures_util::StreamExt as _;
    let mut out = Vec::new();
    if let Some(s3) = s3() {
        use object_store::ObjectStore as _;
        let prefix = object_store::path::Path::from(prefix_for(dir));
        let mut list = s3.list(Some(&prefix));
        while let Some(m) = list.next().await {
            let key = m.unwrap().location.to_string();
            out.push(key.split_once('/').unwrap().1.to_string());
        }
    } else if let Ok(resources) = std::fs::read_dir(dir.0.join("blobs")) {
        for r in resources {
            let r = r.unwrap();
            for f in std::fs::read_dir(r.path()).unwrap() {
                let f = f.unwrap();
                out.push(format!("{}/{}", r.file_name().to_string_lossy(), f.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

async fn read_body(dir: &TempDir, key: &str) -> Vec<u8> {
    if let Some(s3) = s3() {
        use object_store::ObjectStoreExt as _;
        let path = object_store::path::Path::from(format!("{}/{key}", prefix_for(dir)));
        s3.get(&path).await.unwrap().bytes().await.unwrap().to_vec()
    } else {
        std::fs::read(dir.0.join("blobs").join(key)).unwrap()
    }
}

async fn write_body(dir: &TempDir, key: &str, bytes: &[u8]) {
    if let Some(s3) = s3() {
        use object_store::ObjectStoreExt as _;
        let path = object_store::path::Path::from(format!("{}/{key}", prefix_for(dir)));
        s3.put(&path, bytes.to_vec().into()).await.unwrap();
    } else {
        std::fs::write(dir.0.join("blobs").join(key), bytes).unwrap();
    }
}

fn on_postgres() -> bool {
    std::env::var_os("ATREST_TEST_PG").is_some()
}

fn fast(dir: &TempDir) -> ServeConfig {
    ServeConfig {
        database_url: database_for(dir),
        blob_store: blob_store_for(dir),
        blob_retire_delay_secs: Some(2),
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
    // The rows hold no name or body in clear; on SQLite, neither do the files (WAL too).
    let mut conn = store_conn(&dir).await;
    let rows: Vec<(Vec<u8>, Vec<u8>)> =
        sqlx::query_as("SELECT name_sealed, COALESCE(body, name_sealed) FROM store_objects")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(rows.len(), N + 1);
    let mut hays: Vec<Vec<u8>> = rows.into_iter().flat_map(|(a, b)| [a, b]).collect();
    if !on_postgres() {
        hays.push(std::fs::read(dir.0.join("store.db")).unwrap());
        hays.push(std::fs::read(dir.0.join("store.db-wal")).unwrap_or_default());
    }
    for hay in &hays {
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
    let m = e["error"]["message"].as_str().unwrap();
    assert!(m.contains("purge protection") && m.contains("atrest vault update VAULT --purge-protection`"), "{e}");
    assert!(!m.contains("--purge-protection true"), "the flag takes no value: {e}");
    // An EC key cannot wrap, and the refusal says so (not "EC (0 bits)").
    let (s, _) = api.call(M::POST, "/keys/eck/create", Some(json!({"kty": "EC"}))).await;
    assert_eq!(s, StatusCode::OK);
    let set_ec = json!({"keySource": "customer", "keyUri": format!("{}/keys/eck", api.base)});
    let (s, e) = api.call(M::PUT, "/data/resources/bot/encryption", Some(set_ec)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let m = e["error"]["message"].as_str().unwrap();
    assert!(m.contains("is an EC key, which cannot wrap") && !m.contains("(0 bits)"), "{e}");
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
    eprintln!("revocation took effect after {took:?} (cache lifetime 1 s)");
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
    let metrics = api.metrics().await;
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
    let metrics = api.metrics().await;
    assert!(metrics.contains("atrest_store_vault_calls_total{resource="), "{metrics}");
    assert!(metrics.contains("atrest_store_resources_key_inaccessible 0"), "{metrics}");

    // Delete is crypto-erasure: rows and files are gone.
    assert!(!blob_bodies(&dir).await.is_empty(), "the blob's body is stored before the delete");
    let (s, _) = api.call(M::DELETE, "/data/resources/bot", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api.call(M::GET, "/data/resources/bot", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(blob_bodies(&dir).await, Vec::<String>::new(), "blob bodies remain after delete");
    server.shutdown().await;
}

/// A second atrest server holding oct key `key`, with purge protection on and a
/// principal `server-a` allowed get/wrapKey/unwrapKey; returns it and that principal's token.
async fn key_server(dir: &TempDir, key: &str) -> (atrest_server::Server, Api, String) {
    let (server, b) = start(fast(dir)).await;
    let (s, _) = b.call(M::PATCH, "/admin/vaults/default", Some(json!({"purge_protection": true}))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = b.call(M::POST, &format!("/keys/{key}/create"), Some(json!({"kty": "oct", "key_size": 256}))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = b.call(M::POST, "/admin/tenants/default/principals", Some(json!({"name": "server-a"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, tok) = b.call(M::POST, "/admin/tenants/default/principals/server-a/tokens", None).await;
    let grant = json!({"permissions": ["get", "wrapKey", "unwrapKey"]});
    let (s, _) = b.call(M::PUT, "/admin/vaults/default/policies/server-a", Some(grant)).await;
    assert_eq!(s, StatusCode::OK);
    (server, b, tok["token"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn customer_key_on_a_second_atrest_server() {
    // Server B holds the key; server A's resource reaches it over HTTPS with a token of B.
    let dir_b = temp_dir("atrest-data-remote-b");
    let (server_b, b, credential) = key_server(&dir_b, "remote-cmk").await;
    let grant = json!({"permissions": ["get", "wrapKey", "unwrapKey"]});

    let dir_a = temp_dir("atrest-data-remote-a");
    let cfg = ServeConfig { remote_vault_ca: server_b.ca_pem.clone(), ..fast(&dir_a) };
    let (server_a, a) = start(cfg).await;
    let (s, _) = a.call(M::PUT, "/data/resources/bot", None).await;
    assert_eq!(s, StatusCode::CREATED);
    let blob = blob_bytes(70_000);
    for i in 0..3 {
        a.put_bytes(&format!("/data/resources/bot/records/user%2F{i}"), format!("{{\"n\":{i}}}").into_bytes()).await;
    }
    a.put_bytes("/data/resources/bot/blobs/photo.bin", blob.clone()).await;
    let set =
        json!({"keySource": "customer", "keyUri": format!("{}/keys/remote-cmk", b.base), "credential": credential});
    let (s, e) = a.call(M::PUT, "/data/resources/bot/encryption", Some(set)).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["remote"], true);
    read_all(&a, 3, &blob).await;
    // The credential is stored sealed, not in clear.
    let db = std::fs::read(dir_a.0.join("store.db")).unwrap_or_default();
    let wal = std::fs::read(dir_a.0.join("store.db-wal")).unwrap_or_default();
    let cred = credential.as_bytes();
    assert!(!db.windows(cred.len()).any(|w| w == cred) && !wal.windows(cred.len()).any(|w| w == cred));

    // Revoked at B → A refuses within the bound; restored → A recovers.
    let (s, _) = b.call(M::DELETE, "/admin/vaults/default/policies/server-a", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let took = until(10, "403 after remote revocation", || async {
        a.get_bytes("/data/resources/bot/records/user%2F0").await.0 == StatusCode::FORBIDDEN
    })
    .await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    let (_, e) = a.call(M::GET, "/data/resources/bot/records/user%2F0", None).await;
    assert_eq!(e["error"]["code"], "KeyInaccessible");
    let (s, _) = b.call(M::PUT, "/admin/vaults/default/policies/server-a", Some(grant)).await;
    assert_eq!(s, StatusCode::OK);
    until(10, "recovery", || async { a.get_bytes("/data/resources/bot/records/user%2F0").await.0 == StatusCode::OK })
        .await;
    read_all(&a, 3, &blob).await;
    // B's audit trail shows A's key uses.
    let svc = server_b.service().clone();
    let vault = svc.vault("default").await.unwrap();
    let entries = svc.audit_entries(&vault.id, &atrest_vault::audit::AuditFilter::default()).await.unwrap();
    assert!(entries.iter().any(|e| e.operation == "unwrapKey" && e.principal == "server-a"));
    server_a.shutdown().await;
    server_b.shutdown().await;
}

#[tokio::test]
async fn transient_messages_expire_and_are_acknowledged_once() {
    let dir = temp_dir("atrest-data-messages");
    let (server, api) = start(fast(&dir)).await;
    api.call(M::PUT, "/data/resources/q", None).await;
    let (s, e) = api.call(M::POST, "/data/resources/q/messages?ttl=90000", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a TTL over 24 h is refused: {e}");
    let send = |body: &'static str, ttl: u32| {
        let api = &api;
        async move {
            let resp = api
                .client
                .post(format!("{}/data/resources/q/messages?ttl={ttl}", api.base))
                .bearer_auth(&api.token)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::CREATED);
        }
    };
    // TTLs are whole seconds: 2 s leaves at least one whole second to receive it.
    send("short-lived", 2).await;
    send("durable", 600).await;
    // Receive hides a message for the visibility timeout; a stale receipt cannot ack it.
    // Times are whole seconds: a 2 s timeout hides it for at least one whole second.
    let (_, got) = api.call(M::POST, "/data/resources/q/messages/receive?max=10&visibility=2", None).await;
    let got = got["value"].as_array().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    let (_, again) = api.call(M::POST, "/data/resources/q/messages/receive?max=10", None).await;
    assert!(again["value"].as_array().unwrap().is_empty(), "invisible during the timeout");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    // After its TTL a message is never returned (and the sweeper deletes it).
    let (_, got2) = api.call(M::POST, "/data/resources/q/messages/receive?max=10&visibility=30", None).await;
    let got2 = got2["value"].as_array().unwrap().clone();
    assert_eq!(got2.len(), 1, "{got2:?}");
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD.decode(got2[0]["body"].as_str().unwrap()).unwrap(),
        b"durable"
    );
    assert_eq!(got2[0]["deliveries"], 2);
    let id = got2[0]["id"].as_str().unwrap();
    let stale = got.iter().find(|m| m["id"] == id).unwrap()["receipt"].as_str().unwrap();
    let (s, _) = api.call(M::DELETE, &format!("/data/resources/q/messages/{id}?receipt={stale}"), None).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let receipt = got2[0]["receipt"].as_str().unwrap();
    let (s, _) = api.call(M::DELETE, &format!("/data/resources/q/messages/{id}?receipt={receipt}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api.call(M::DELETE, &format!("/data/resources/q/messages/{id}?receipt={receipt}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The acknowledged one is gone; the sweeper (every second here) removes the expired one.
    until(5, "the sweeper to delete the expired message", || async {
        let mut conn = store_conn(&dir).await;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM store_messages").fetch_one(&mut conn).await.unwrap();
        n == 0
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn data_plane_roles_and_tenant_isolation() {
    let dir = temp_dir("atrest-data-authz");
    let (server, admin) = start(fast(&dir)).await;
    admin.call(M::PUT, "/data/resources/bot", None).await;
    admin.put_bytes("/data/resources/bot/records/k", b"v".to_vec()).await;
    let mut tokens = Vec::new();
    for p in ["reader1", "writer1", "nobody"] {
        let (s, _) = admin.call(M::POST, "/admin/tenants/default/principals", Some(json!({"name": p}))).await;
        assert_eq!(s, StatusCode::CREATED);
        let (_, t) = admin.call(M::POST, &format!("/admin/tenants/default/principals/{p}/tokens"), None).await;
        tokens.push(admin.with_token(t["token"].as_str().unwrap()));
    }
    let [reader, writer, nobody] = <[Api; 3]>::try_from(tokens).ok().unwrap();
    admin.call(M::PUT, "/data/resources/bot/roles/reader1", Some(json!({"role": "reader"}))).await;
    let (s, _) = admin.call(M::PUT, "/data/resources/bot/roles/writer1", Some(json!({"role": "writer"}))).await;
    assert_eq!(s, StatusCode::OK);

    assert_eq!(reader.get_bytes("/data/resources/bot/records/k").await, (StatusCode::OK, b"v".to_vec()));
    let (s, e) = reader.put_bytes("/data/resources/bot/records/k", b"x".to_vec()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("needs writer"), "{e}");
    let (s, _) = writer.put_bytes("/data/resources/bot/records/k", b"w".to_vec()).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = writer.call(M::PUT, "/data/resources/bot/encryption", Some(json!({"keySource": "platform"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "only owners change encryption");
    let (s, _) = writer.call(M::DELETE, "/data/resources/bot", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // No role: the resource does not exist for that principal.
    let (s, _) = nobody.call(M::GET, "/data/resources/bot/records/k", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, e) = nobody.call(M::GET, "/data/resources/bot/jobs", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (s, e) = reader.call(M::GET, "/data/resources/bot/jobs", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "jobs are the owners': {e}");
    let (s, _) = nobody.call(M::PUT, "/data/resources/other", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "members cannot create resources");
    let (_, list) = nobody.call(M::GET, "/data/resources", None).await;
    assert!(list["value"].as_array().unwrap().is_empty());

    // ETags: If-Match with a stale tag fails, with the current one succeeds.
    let resp = writer
        .client
        .get(format!("{}/data/resources/bot/records/k", writer.base))
        .bearer_auth(&writer.token)
        .send()
        .await
        .unwrap();
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    let put_if = |tag: &str| {
        writer
            .client
            .put(format!("{}/data/resources/bot/records/k", writer.base))
            .bearer_auth(&writer.token)
            .header("if-match", tag)
            .body("z")
            .send()
    };
    assert_eq!(put_if("\"0.0\"").await.unwrap().status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(put_if(&etag).await.unwrap().status(), StatusCode::OK);
    assert_eq!(put_if(&etag).await.unwrap().status(), StatusCode::PRECONDITION_FAILED, "the ETag changed");
    let create_only = writer
        .client
        .put(format!("{}/data/resources/bot/records/k", writer.base))
        .bearer_auth(&writer.token)
        .header("if-none-match", "*")
        .body("n")
        .send()
        .await
        .unwrap();
    assert_eq!(create_only.status(), StatusCode::PRECONDITION_FAILED);

    // Another tenant's admin sees nothing of it, and its resources are its own.
    let (s, _) = admin.call(M::POST, "/admin/tenants", Some(json!({"name": "acme"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    admin.call(M::POST, "/admin/tenants/acme/principals", Some(json!({"name": "boss", "role": "tenant-admin"}))).await;
    let (_, t) = admin.call(M::POST, "/admin/tenants/acme/principals/boss/tokens", None).await;
    let boss = admin.with_token(t["token"].as_str().unwrap());
    let (s, _) = boss.call(M::GET, "/data/resources/bot/records/k", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = boss.call(M::DELETE, "/data/resources/bot", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = boss.call(M::PUT, "/data/resources/bot", None).await;
    assert_eq!(s, StatusCode::CREATED, "names are per tenant");
    let (_, b) = boss.get_bytes("/data/resources/bot/records/k").await;
    assert_ne!(b, b"z".to_vec());
    // A tenant's resource cannot use another tenant's key.
    let (s, e) = boss
        .call(
            M::PUT,
            "/data/resources/bot/encryption",
            Some(json!({"keySource": "customer", "keyUri": format!("{}/keys/anything", admin.base)})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("another tenant"), "{e}");
    // The res- names are reserved for resource identities...
    let (s, e) = admin
        .call(M::POST, "/admin/tenants/default/principals", Some(json!({"name": "res-clash", "kind": "user"})))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert_eq!(e["error"]["innererror"]["code"], "DataServiceIdentity", "{e}");
    // ...and a resource never takes over a user's principal (from before that) as its identity.
    let svc = server.service();
    svc.create_principal(
        &svc.tenant("default").await.unwrap(),
        "res-clash",
        atrest_vault::PrincipalKind::User,
        atrest_vault::Role::Member,
    )
    .await
    .unwrap();
    let (s, e) = admin.call(M::PUT, "/data/resources/clash", None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("not a service identity"), "{e}");
    // The platform namespace is invisible.
    let (s, _) = admin.call(M::GET, "/admin/tenants/atrest-platform", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, ts) = admin.call(M::GET, "/admin/tenants", None).await;
    assert!(!ts.to_string().contains("atrest-platform"), "{ts}");
    server.shutdown().await;
}

/// Flips a byte of a column of one object row, straight in the database.
async fn tamper_row(dir: &TempDir, column: &str, resource_name: &str) {
    let mut conn = store_conn(dir).await;
    let rid: String = sqlx::query_scalar("SELECT id FROM store_resources WHERE name = $1")
        .bind(resource_name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let (hash, mut value): (Vec<u8>, Vec<u8>) = sqlx::query_as(&format!(
        "SELECT name_hash, {column} FROM store_objects WHERE resource_id = $1 AND kind = 'record' ORDER BY name_hash LIMIT 1"
    ))
    .bind(&rid)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let i = value.len() / 2;
    value[i] ^= 1;
    sqlx::query(&format!("UPDATE store_objects SET {column} = $1 WHERE name_hash = $2"))
        .bind(value)
        .bind(hash)
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn tampering_is_detected_never_served() {
    let dir = temp_dir("atrest-data-tamper");
    let (server, api) = start(fast(&dir)).await;
    api.call(M::PUT, "/data/resources/bot", None).await;
    api.put_bytes("/data/resources/bot/records/a", b"alpha".to_vec()).await;
    api.put_bytes("/data/resources/bot/records/b", b"bravo".to_vec()).await;
    let blob = blob_bytes(1_000_000);
    api.put_bytes("/data/resources/bot/blobs/big", blob.clone()).await;
    let integrity = |path: &'static str| {
        let api = &api;
        async move {
            let (s, e) = api.call(M::GET, path, None).await;
            (s, e["error"]["code"].as_str().unwrap_or_default().to_string())
        }
    };

    // Each column of a record row, one at a time.
    for column in ["body", "wrapped_dek", "name_sealed"] {
        let before =
            [integrity("/data/resources/bot/records/a").await, integrity("/data/resources/bot/records/b").await];
        assert!(before.iter().all(|(s, _)| *s == StatusCode::OK), "{before:?}");
        tamper_row(&dir, column, "bot").await;
        let after =
            [integrity("/data/resources/bot/records/a").await, integrity("/data/resources/bot/records/b").await];
        assert!(
            after.iter().any(|(s, c)| *s == StatusCode::INTERNAL_SERVER_ERROR && c == "IntegrityCheckFailed"),
            "{column}: {after:?}"
        );
        tamper_row(&dir, column, "bot").await; // flip back
    }
    // Readable metadata (size) and moving one record's body onto another.
    {
        let mut conn = store_conn(&dir).await;
        sqlx::query("UPDATE store_objects SET size = size + 1 WHERE kind = 'record'").execute(&mut conn).await.unwrap();
        drop(conn);
        let (s, c) = integrity("/data/resources/bot/records/a").await;
        assert_eq!((s, c.as_str()), (StatusCode::INTERNAL_SERVER_ERROR, "IntegrityCheckFailed"));
        let mut conn = store_conn(&dir).await;
        sqlx::query("UPDATE store_objects SET size = size - 1 WHERE kind = 'record'").execute(&mut conn).await.unwrap();
        let bodies: Vec<(Vec<u8>, Vec<u8>)> =
            sqlx::query_as("SELECT name_hash, body FROM store_objects WHERE kind = 'record' ORDER BY name_hash")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        sqlx::query("UPDATE store_objects SET body = $1 WHERE name_hash = $2")
            .bind(&bodies[1].1)
            .bind(&bodies[0].0)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let results = [integrity("/data/resources/bot/records/a").await, integrity("/data/resources/bot/records/b").await];
    assert!(
        results.iter().any(|(s, c)| *s == StatusCode::INTERNAL_SERVER_ERROR && c == "IntegrityCheckFailed"),
        "{results:?}"
    );

    // A blob file: a byte in the middle fails the stream (never wrong bytes), one in the
    // header fails the request up front.
    let file = blob_bodies(&dir).await.remove(0);
    let mut bytes = read_body(&dir, &file).await;
    // Only ciphertext reaches the blob store (directory or bucket).
    assert!(!bytes.windows(32).any(|w| w == &blob[1000..1032]), "plaintext in the stored body");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    write_body(&dir, &file, &bytes).await;
    let resp = api
        .client
        .get(format!("{}/data/resources/bot/blobs/big", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    let got = resp.bytes().await;
    assert!(got.is_err() || got.as_ref().unwrap().len() < blob.len(), "a tampered blob was served in full");
    if let Ok(b) = got {
        assert_eq!(&blob[..b.len()], &b[..], "only authentic prefix bytes");
    }
    // A range that avoids the damaged segments still reads.
    let resp = api
        .client
        .get(format!("{}/data/resources/bot/blobs/big", api.base))
        .bearer_auth(&api.token)
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.headers()["content-range"], "bytes 0-99/1000000");
    assert_eq!(&resp.bytes().await.unwrap()[..], &blob[..100]);
    bytes[mid] ^= 1;
    bytes[10] ^= 1;
    write_body(&dir, &file, &bytes).await;
    let (s, c) = integrity("/data/resources/bot/blobs/big").await;
    assert_eq!((s, c.as_str()), (StatusCode::INTERNAL_SERVER_ERROR, "IntegrityCheckFailed"));
    let metrics = api.metrics().await;
    let line = metrics.lines().find(|l| l.starts_with("atrest_store_integrity_errors_total{")).unwrap();
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 5, "{line}");
    server.shutdown().await;
}

#[tokio::test]
async fn platform_rotation_rewraps_and_a_disabled_latest_version_warns() {
    let dir = temp_dir("atrest-data-follow");
    let cfg = ServeConfig { key_follow_interval_secs: 3600, ..fast(&dir) };
    let (server, api) = start(cfg).await;
    api.call(M::PUT, "/data/resources/bot", None).await;
    api.put_bytes("/data/resources/bot/records/k", b"v".to_vec()).await;
    let (_, before) = api.call(M::GET, "/data/resources/bot/encryption", None).await;

    // The platform key rotates (as its 90-day policy would): resources follow, data intact.
    let svc = server.service().clone();
    let platform = svc.vault(atrest_vault::platform::PLATFORM).await.unwrap();
    let rotated = svc.rotate_key(&platform, atrest_vault::platform::PLATFORM_KEK).await.unwrap();
    let moved = server.store().follow_latest().await.unwrap();
    assert_eq!(moved, vec![("bot".to_string(), rotated.version.clone())]);
    let (_, after) = api.call(M::GET, "/data/resources/bot/encryption", None).await;
    assert_ne!(before["keyVersion"], after["keyVersion"]);
    assert_eq!(after["keyVersion"], rotated.version.as_str());
    assert_eq!(api.get_bytes("/data/resources/bot/records/k").await, (StatusCode::OK, b"v".to_vec()));
    let policy = svc.get_rotation_policy(&platform, atrest_vault::platform::PLATFORM_KEK).await.unwrap();
    assert_eq!(policy.lifetime_actions[0].trigger.time_after_create.as_deref(), Some("P90D"));

    // A customer key whose latest version is disabled: stay on the current one, warn.
    api.call(M::PATCH, "/admin/vaults/default", Some(json!({"purge_protection": true}))).await;
    api.call(M::POST, "/keys/cmk/create", Some(json!({"kty": "oct", "key_size": 256}))).await;
    api.call(
        M::PUT,
        "/admin/vaults/default/policies/res-bot",
        Some(json!({"permissions": ["get", "wrapKey", "unwrapKey"]})),
    )
    .await;
    let (s, e) = api
        .call(
            M::PUT,
            "/data/resources/bot/encryption",
            Some(json!({"keySource": "customer", "keyUri": format!("{}/keys/cmk", api.base)})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let v1 = e["keyVersion"].as_str().unwrap().to_string();
    let (_, k2) = api.call(M::POST, "/keys/cmk/rotate", None).await;
    let v2 = k2["key"]["kid"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let (s, _) = api.call(M::PATCH, &format!("/keys/cmk/{v2}"), Some(json!({"attributes": {"enabled": false}}))).await;
    assert_eq!(s, StatusCode::OK);
    assert!(server.store().follow_latest().await.unwrap().is_empty());
    let (_, r) = api.call(M::GET, "/data/resources/bot", None).await;
    assert_eq!(r["encryption"]["keyVersion"], v1.as_str());
    assert!(r["warning"].as_str().unwrap().contains("disabled"), "{r}");
    assert_eq!(api.get_bytes("/data/resources/bot/records/k").await.0, StatusCode::OK);

    // Data reads and writes reach the resource's audit chain only when asked.
    let chain = |svc: std::sync::Arc<atrest_vault::VaultService>| async move {
        let chains = svc.audit_chains().await.unwrap();
        let c = chains.iter().find(|c| c.starts_with("resource:")).unwrap().clone();
        svc.audit_entries(&c, &atrest_vault::audit::AuditFilter::default()).await.unwrap()
    };
    let n = chain(svc.clone()).await.iter().filter(|e| e.operation == "record-get").count();
    assert_eq!(n, 0);
    api.call(M::PUT, "/data/resources/bot/diagnostics", Some(json!({"dataAudit": true}))).await;
    api.get_bytes("/data/resources/bot/records/k").await;
    let entries = chain(svc.clone()).await;
    assert!(entries.iter().any(|e| e.operation == "record-get" && e.principal == "admin"));
    assert!(entries.iter().any(|e| e.operation == "set-encryption"));
    server.shutdown().await;
}

#[tokio::test]
async fn the_infrastructure_root_rotates_without_touching_data() {
    let dir = temp_dir("atrest-data-infra-rotation");
    std::fs::create_dir_all(&dir.0).unwrap();
    let key = |name: &str| {
        let p = dir.0.join(name);
        std::fs::write(&p, hex::encode(atrest_crypto::rand::bytes::<32>().unwrap())).unwrap();
        p
    };
    let (old, new) = (key("infra-old.key"), key("infra-new.key"));
    let cfg = |current: &std::path::Path, previous: Option<&std::path::Path>| ServeConfig {
        infra_root_key_file: Some(current.to_path_buf()),
        infra_root_previous_key_file: previous.map(std::path::Path::to_path_buf),
        ..fast(&dir)
    };
    let (server, api) = start(cfg(&old, None)).await;
    api.call(M::PUT, "/data/resources/bot", None).await;
    api.put_bytes("/data/resources/bot/records/k", b"kept".to_vec()).await;
    api.put_bytes("/data/resources/bot/blobs/b", blob_bytes(200_000)).await;
    let blob_file = blob_bodies(&dir).await.remove(0);
    let blob_before = read_body(&dir, &blob_file).await;
    server.shutdown().await;

    // A new root alone does not open the store: the error says how to rotate.
    let err = atrest_server::start(cfg(&new, None)).await.err().expect("a wrong infrastructure root must be refused");
    assert!(err.to_string().contains("--infra-root-previous-key-file"), "{err}");
    // New root plus the previous one: re-sealed at start, everything reads.
    let (server, api) = start(cfg(&new, Some(&old))).await;
    assert_eq!(api.get_bytes("/data/resources/bot/records/k").await, (StatusCode::OK, b"kept".to_vec()));
    server.shutdown().await;
    // From now on the new root alone is enough, and the old one no longer opens it.
    let (server, api) = start(cfg(&new, None)).await;
    assert_eq!(api.get_bytes("/data/resources/bot/blobs/b").await, (StatusCode::OK, blob_bytes(200_000)));
    server.shutdown().await;
    assert!(atrest_server::start(cfg(&old, None)).await.is_err());
    // No data was rewritten.
    let blob_after = read_body(&dir, &blob_file).await;
    assert!(blob_before == blob_after);
}

#[tokio::test]
async fn an_unreachable_vault_is_bridged_for_the_grace_period_only() {
    let dir_b = temp_dir("atrest-data-grace-b");
    let (server_b, b, credential) = key_server(&dir_b, "k").await;
    let port_b = server_b.addr.port();

    let dir_a = temp_dir("atrest-data-grace-a");
    let cfg = ServeConfig { remote_vault_ca: server_b.ca_pem.clone(), vault_grace_secs: 3, ..fast(&dir_a) };
    let (server_a, a) = start(cfg).await;
    a.call(M::PUT, "/data/resources/bot", None).await;
    a.put_bytes("/data/resources/bot/records/k", b"v".to_vec()).await;
    let set = json!({"keySource": "customer", "keyUri": format!("{}/keys/k", b.base), "credential": credential});
    let (s, e) = a.call(M::PUT, "/data/resources/bot/encryption", Some(set)).await;
    assert_eq!(s, StatusCode::OK, "{e}");

    // B goes away: past the 1 s lifetime the cached key still serves (grace 3 s)...
    server_b.shutdown().await;
    let down = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(a.get_bytes("/data/resources/bot/records/k").await.0, StatusCode::OK, "within the grace period");
    // ...then the resource becomes KeyInaccessible, saying the vault is unreachable.
    until(10, "403 after the grace period", || async {
        a.get_bytes("/data/resources/bot/records/k").await.0 == StatusCode::FORBIDDEN
    })
    .await;
    let after = down.elapsed();
    assert!(after >= Duration::from_secs(3), "refused after {after:?}, before lifetime + grace");
    let (_, e) = a.call(M::GET, "/data/resources/bot/records/k", None).await;
    assert!(e["error"]["message"].as_str().unwrap().contains("unreachable"), "{e}");

    // B comes back on the same address: A recovers by itself.
    let cfg_b = ServeConfig { listen: format!("127.0.0.1:{port_b}").parse().unwrap(), ..fast(&dir_b) };
    let server_b = atrest_server::start(cfg_b).await.unwrap();
    until(10, "recovery", || async { a.get_bytes("/data/resources/bot/records/k").await.0 == StatusCode::OK }).await;
    server_a.shutdown().await;
    server_b.shutdown().await;
}

/// An upload cut off mid-way (the client's body fails after 12 MiB: past the first 8 MiB
/// part, so on S3 a multipart upload was under way) stores nothing, and the previous
/// version of the blob stays readable.
#[tokio::test]
async fn an_interrupted_upload_stores_nothing() {
    let dir = temp_dir("atrest-data-interrupted");
    let (server, api) = start(fast(&dir)).await;
    api.call(M::PUT, "/data/resources/bot", None).await;
    let (s, _) = api.put_bytes("/data/resources/bot/blobs/b", blob_bytes(100_000)).await;
    assert_eq!(s, StatusCode::CREATED);
    let before = blob_bodies(&dir).await;
    assert_eq!(before.len(), 1, "{before:?}");
    let chunk = bytes::Bytes::from(vec![7u8; 1 << 20]);
    let body = futures_util::stream::iter(
        (0..13).map(move |i| if i < 12 { Ok(chunk.clone()) } else { Err(std::io::Error::other("the client gave up")) }),
    );
    let sent = api
        .client
        .put(format!("{}/data/resources/bot/blobs/b", api.base))
        .bearer_auth(&api.token)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    assert!(sent.is_err() || !sent.unwrap().status().is_success(), "a cut-off upload was accepted");
    let t = Instant::now();
    while blob_bodies(&dir).await != before {
        assert!(t.elapsed() < Duration::from_secs(10), "left behind: {:?}", blob_bodies(&dir).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And nothing appears later (a commit of the partial body would).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(blob_bodies(&dir).await, before);
    assert_eq!(api.get_bytes("/data/resources/bot/blobs/b").await, (StatusCode::OK, blob_bytes(100_000)));
    server.shutdown().await;
}

/// A download running while its blob is replaced (or deleted) reads the old version to
/// the end — on S3 too, where the old body stays for the retire delay (2 s here) — and
/// then the old body goes.
#[tokio::test]
async fn a_replaced_blob_keeps_serving_running_downloads_then_goes() {
    use futures_util::StreamExt as _;
    let dir = temp_dir("atrest-data-retire");
    let (server, api) = start(fast(&dir)).await;
    api.call(M::PUT, "/data/resources/bot", None).await;
    let old = blob_bytes(6 << 20);
    api.put_bytes("/data/resources/bot/blobs/b", old.clone()).await;
    let resp = api
        .client
        .get(format!("{}/data/resources/bot/blobs/b", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = resp.bytes_stream();
    let mut got = stream.next().await.unwrap().unwrap().to_vec();
    assert!(got.len() < old.len() / 2, "the download is still running");
    let (s, _) = api.put_bytes("/data/resources/bot/blobs/b", b"new".to_vec()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(blob_bodies(&dir).await.len(), 2, "the old body waits for the retire delay");
    while let Some(c) = stream.next().await {
        got.extend_from_slice(&c.expect("the running download was cut off"));
    }
    assert!(got == old, "the running download read the old version whole");
    assert_eq!(api.get_bytes("/data/resources/bot/blobs/b").await, (StatusCode::OK, b"new".to_vec()));
    let t = Instant::now();
    while blob_bodies(&dir).await.len() != 1 {
        assert!(t.elapsed() < Duration::from_secs(15), "the old body was not removed: {:?}", blob_bodies(&dir).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.shutdown().await;
}

/// A re-encrypt job that meets a tampered blob reports the tampering (and counts it),
/// not a generic failure, and leaves the blob as it was.
#[tokio::test]
async fn a_reencrypt_job_reports_a_tampered_blob_as_tampering() {
    let dir = temp_dir("atrest-data-job-tamper");
    let (server, api) = start(fast(&dir)).await;
    api.call(M::PUT, "/data/resources/bot", None).await;
    api.put_bytes("/data/resources/bot/blobs/b", blob_bytes(300_000)).await;
    let file = blob_bodies(&dir).await.remove(0);
    let mut bytes = read_body(&dir, &file).await;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    write_body(&dir, &file, &bytes).await;
    let (s, job) = api.call(M::POST, "/data/resources/bot/jobs", Some(json!({"kind": "reencrypt"}))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let t = Instant::now();
    let error = loop {
        let (_, j) = api.call(M::GET, &format!("/data/jobs/{id}"), None).await;
        let e = j["error"].as_str().unwrap_or_default().to_string();
        if !e.is_empty() {
            break e;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "the job never reported the tampered blob: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(error.contains("IntegrityCheckFailed"), "{error}");
    assert_eq!(blob_bodies(&dir).await, vec![file], "the job wrote nothing");
    server.shutdown().await;
}

#[tokio::test]
async fn a_customer_key_uri_must_name_this_deployment_or_come_with_a_credential() {
    let dir = temp_dir("atrest-data-key-hosts");
    let cfg = ServeConfig { remote_vault_hosts: vec!["kv.example".into()], ..fast(&dir) };
    let (server, api) = start(cfg).await;
    let port = server.addr.port();
    let (s, _) = api.call(M::PUT, "/data/resources/bot", None).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, k) = api.call(M::POST, "/keys/cmk/create", Some(json!({"kty": "RSA", "key_size": 2048}))).await;
    assert_eq!(s, StatusCode::OK, "{k}");
    let grant = json!({"permissions": ["get", "wrapKey", "unwrapKey"]});
    let (s, _) = api.call(M::PUT, "/admin/vaults/default/policies/res-bot", Some(grant)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api.call(M::PATCH, "/admin/vaults/default", Some(json!({"purge_protection": true}))).await;
    assert_eq!(s, StatusCode::OK);
    let other_port = if port == 1 { 2 } else { port - 1 };
    for host in [
        "evil.example".to_string(),
        "169.254.169.254".into(),
        "localhost:1".into(),
        format!("127.0.0.1:{other_port}"),
        "localhost".into(),
    ] {
        let set = json!({"keySource": "customer", "keyUri": format!("https://{host}/keys/cmk")});
        let (s, e) = api.call(M::PUT, "/data/resources/bot/encryption", Some(set)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{host}: {e}");
        assert_eq!(e["error"]["code"], "CustomerKeyRejected", "{host}");
        let m = e["error"]["message"].as_str().unwrap();
        assert!(m.contains("not this deployment") && m.contains("credential") && !m.contains("  "), "{m}");
    }
    let (_, r) = api.call(M::GET, "/data/resources/bot", None).await;
    assert_eq!(r["encryption"]["keySource"], "platform", "{r}");
    // A remote vault (with a credential) must be on an allowed host.
    let set = json!({"keySource": "customer", "keyUri": "https://evil.example/keys/cmk", "credential": "t"});
    let (s, e) = api.call(M::PUT, "/data/resources/bot/encryption", Some(set)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("--remote-vault-hosts"), "{e}");
    // A metadata address is never a vault, with a credential or not.
    for uri in ["https://169.254.169.254/keys/cmk", "https://[fe80::1]/keys/cmk"] {
        let set = json!({"keySource": "customer", "keyUri": uri, "credential": "t"});
        let (s, e) = api.call(M::PUT, "/data/resources/bot/encryption", Some(set)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {e}");
        assert!(e["error"]["message"].as_str().unwrap().contains("link-local"), "{e}");
    }
    // This deployment's own URLs, on the port served, work and are what is reported.
    for uri in [format!("https://127.0.0.1:{port}/keys/cmk"), format!("https://localhost:{port}/keys/cmk")] {
        let set = json!({"keySource": "customer", "keyUri": uri});
        let (s, r) = api.call(M::PUT, "/data/resources/bot/encryption", Some(set)).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {r}");
        assert_eq!(r["keyUri"], uri.as_str(), "{r}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_resource_identity_acts_only_for_the_data_service_and_dies_with_its_resource() {
    let dir = temp_dir("atrest-data-identity");
    let (server, api) = start(fast(&dir)).await;
    let (s, _) = api.call(M::PUT, "/data/resources/res1", None).await;
    assert_eq!(s, StatusCode::CREATED);
    // No token for it, from anyone.
    let (s, e) = api.call(M::POST, "/admin/tenants/default/principals/res-res1/tokens", Some(json!({}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert_eq!(e["error"]["innererror"]["code"], "DataServiceIdentity", "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("data-service resource identity"), "{e}");
    let (_, list) = api.call(M::GET, "/admin/tenants/default/principals/res-res1/tokens", None).await;
    assert_eq!(list["value"].as_array().map(Vec::len), Some(0), "{list}");

    // Granted a customer key, then deleted: the grant goes with the resource.
    let (s, _) = api.call(M::POST, "/keys/cmk/create", Some(json!({"kty": "RSA", "key_size": 2048}))).await;
    assert_eq!(s, StatusCode::OK);
    let grant = json!({"permissions": ["get", "wrapKey", "unwrapKey"]});
    let (s, _) = api.call(M::PUT, "/admin/vaults/default/policies/res-res1", Some(grant)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api.call(M::PATCH, "/admin/vaults/default", Some(json!({"purge_protection": true}))).await;
    assert_eq!(s, StatusCode::OK);
    let set_cmk = json!({"keySource": "customer", "keyUri": format!("{}/keys/cmk", api.base)});
    let (s, e) = api.call(M::PUT, "/data/resources/res1/encryption", Some(set_cmk.clone())).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let (s, _) = api.call(M::DELETE, "/data/resources/res1", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, pols) = api.call(M::GET, "/admin/vaults/default/policies", None).await;
    assert!(!pols.to_string().contains("res-res1"), "{pols}");
    // A new resource of that name starts with no grant of its own.
    let (s, _) = api.call(M::PUT, "/data/resources/res1", None).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, e) = api.call(M::PUT, "/data/resources/res1/encryption", Some(set_cmk)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("grant get, wrapKey and unwrapKey"), "{e}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_range_outside_the_blob_answers_416_with_its_size() {
    let dir = temp_dir("atrest-data-ranges");
    let (server, api) = start(fast(&dir)).await;
    api.call(M::PUT, "/data/resources/bot", None).await;
    let blob = blob_bytes(1000);
    let (s, _) = api.put_bytes("/data/resources/bot/blobs/b", blob.clone()).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = api.put_bytes("/data/resources/bot/blobs/empty", Vec::new()).await;
    assert_eq!(s, StatusCode::CREATED);
    let get = |name: &'static str, range: &'static str| {
        let req = api.client.get(format!("{}/data/resources/bot/blobs/{name}", api.base)).bearer_auth(&api.token);
        async move {
            let resp = req.header("range", range).send().await.unwrap();
            let cr = resp.headers().get("content-range").map(|v| v.to_str().unwrap().to_string());
            (resp.status(), cr, resp.bytes().await.unwrap().to_vec())
        }
    };
    for (name, range, size) in
        [("b", "bytes=1000-", 1000), ("b", "bytes=2000-3000", 1000), ("b", "bytes=-0", 1000), ("empty", "bytes=0-", 0)]
    {
        let (s, cr, body) = get(name, range).await;
        assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(cr.as_deref(), Some(format!("bytes */{size}").as_str()), "{range}");
        let e: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(e["error"]["code"], "InvalidRange", "{e}");
    }
    let (s, cr, body) = get("b", "bytes=990-").await;
    assert_eq!((s, cr.as_deref()), (StatusCode::PARTIAL_CONTENT, Some("bytes 990-999/1000")));
    assert_eq!(body, blob[990..]);
    let (s, cr, body) = get("b", "bytes=-2000").await;
    assert_eq!((s, cr.as_deref()), (StatusCode::PARTIAL_CONTENT, Some("bytes 0-999/1000")), "a long suffix is all");
    assert_eq!(body, blob);
    let (s, cr, body) = get("empty", "bytes=-5").await;
    assert_eq!((s, cr, body.len()), (StatusCode::OK, None, 0));
    server.shutdown().await;
}

#[tokio::test]
async fn blob_bodies_no_row_refers_to_are_swept_after_a_grace_period() {
    let dir = temp_dir("atrest-data-orphans");
    // Replaced bodies wait 10 minutes in the removal queue: the sweep must leave them.
    let (server, api) = start(ServeConfig { blob_retire_delay_secs: Some(600), ..fast(&dir) }).await;
    api.call(M::PUT, "/data/resources/bot", None).await;
    let blob = blob_bytes(70_000);
    assert_eq!(api.put_bytes("/data/resources/bot/blobs/kept", blob.clone()).await.0, StatusCode::CREATED);
    assert_eq!(api.put_bytes("/data/resources/bot/blobs/replaced", b"v1".to_vec()).await.0, StatusCode::CREATED);
    assert_eq!(api.put_bytes("/data/resources/bot/blobs/replaced", b"v2".to_vec()).await.0, StatusCode::OK);
    let before = blob_bodies(&dir).await;
    assert_eq!(before.len(), 3, "two live bodies and a retired one: {before:?}");
    let mut conn = store_conn(&dir).await;
    let rid: String =
        sqlx::query_scalar("SELECT id FROM store_resources WHERE name = 'bot'").fetch_one(&mut conn).await.unwrap();
    // What a crash between a body's commit and its row's leaves, and a file not ours.
    let orphan = format!("{rid}/{}.1.{}", "ab".repeat(16), "cd".repeat(8));
    write_body(&dir, &orphan, b"left by a crash").await;
    let foreign = format!("{rid}/not-ours.txt");
    write_body(&dir, &foreign, b"x").await;
    // A body still being written (a long upload, or a re-encrypt batch whose rows commit
    // at its end): no row yet, older than any grace, listed as being written.
    let writing_name = format!("{}.1.{}", "ef".repeat(16), "01".repeat(8));
    let writing = format!("{rid}/{writing_name}");
    write_body(&dir, &writing, b"being written").await;
    let now = i64::try_from(std::time::UNIX_EPOCH.elapsed().unwrap().as_secs()).unwrap();
    sqlx::query("INSERT INTO store_blob_writes (resource_id, name, started) VALUES ($1, $2, $3)")
        .bind(&rid)
        .bind(&writing_name)
        .bind(now - 7200)
        .execute(&mut conn)
        .await
        .unwrap();
    let store = server.store();
    assert_eq!(store.sweep_orphan_blobs(Duration::from_secs(3600)).await.unwrap(), 0, "younger than the grace");
    assert!(blob_bodies(&dir).await.contains(&orphan));
    assert_eq!(store.sweep_orphan_blobs(Duration::ZERO).await.unwrap(), 1);
    let after = blob_bodies(&dir).await;
    assert!(!after.contains(&orphan), "{after:?}");
    assert!(after.contains(&writing), "a body being written is never swept: {after:?}");
    // A write that died a week ago protects its body no longer.
    sqlx::query("UPDATE store_blob_writes SET started = $1 WHERE name = $2")
        .bind(now - 8 * 86_400)
        .bind(&writing_name)
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(store.sweep_orphan_blobs(Duration::ZERO).await.unwrap(), 1);
    assert!(!blob_bodies(&dir).await.contains(&writing));
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM store_blob_writes").fetch_one(&mut conn).await.unwrap();
    assert_eq!(left, 0, "entries of committed and of dead writes are dropped");
    let after = blob_bodies(&dir).await;
    assert!(after.contains(&foreign), "{after:?}");
    for b in &before {
        assert!(after.contains(b), "{b} was referenced: {after:?}");
    }
    assert_eq!(api.get_bytes("/data/resources/bot/blobs/kept").await, (StatusCode::OK, blob));
    assert_eq!(api.get_bytes("/data/resources/bot/blobs/replaced").await, (StatusCode::OK, b"v2".to_vec()));
    server.shutdown().await;
}
