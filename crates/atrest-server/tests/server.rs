//! The real server on loopback with real TLS, driven over HTTPS: bootstrap files, the
//! bearer challenge, the AKV keys routes, permissions, and errors.

use atrest_server::{ServeConfig, Server};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
mod common;
use common::{TempDir, client_for};

struct Env {
    server: Server,
    client: Client,
    token: String,
    base: String,
    _dir: TempDir,
}

async fn start() -> Env {
    let dir = std::env::temp_dir()
        .join(format!("atrest-server-test-{}", hex::encode(atrest_crypto::rand::bytes::<6>().unwrap())));
    let cfg = ServeConfig { data_dir: dir.clone(), listen: "127.0.0.1:0".parse().unwrap(), ..ServeConfig::default() };
    let server = atrest_server::start(cfg).await.unwrap();
    let ca = server.ca_pem.clone().unwrap();
    let token = std::fs::read_to_string(&server.admin_token).unwrap();
    let base = format!("https://localhost:{}", server.addr.port());
    Env { client: client_for(&ca), server, token, base, _dir: TempDir(dir) }
}

impl Env {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut req =
            self.client.request(method, format!("{}{path}{sep}api-version=7.5", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    }
}

#[tokio::test]
async fn bootstrap_files_and_the_bearer_challenge() {
    let e = start().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&e.server.admin_token).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir = e.server.admin_token.parent().unwrap();
        let root = std::fs::metadata(dir.join("root.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(root, 0o600);
        // The CA private key is not on disk in plaintext.
        let sealed = std::fs::read(dir.join("tls/ca.key.sealed")).unwrap();
        assert_eq!(sealed[0], b'R');
        assert!(!String::from_utf8_lossy(&sealed).contains("PRIVATE KEY"));
    }
    assert!(e.server.warnings[0].contains("a copy of the data directory is a copy of every key"));
    // The SDK's first request: no token, no body, any path → 401 with the challenge.
    let resp = e.client.post(format!("{}/keys/k/create?api-version=7.5", e.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.starts_with("Bearer authorization=\"https://login.atrest.invalid/"), "{challenge}");
    assert!(challenge.contains(&format!("resource=\"https://localhost:{}\"", e.server.addr.port())), "{challenge}");
    let resp = e
        .client
        .get(format!("{}/keys?api-version=7.5", e.base))
        .bearer_auth("atr1.0000000000000000.AAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
    // Health endpoints need no token; readiness repeats the warning.
    let r: Value = e.client.get(format!("{}/readyz", e.base)).send().await.unwrap().json().await.unwrap();
    assert!(r["warnings"][0].as_str().unwrap().contains("root key"));
    // api-version is required.
    let resp = e.client.get(format!("{}/keys", e.base)).bearer_auth(&e.token).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    e.server.shutdown().await;
}

#[tokio::test]
async fn keys_api_end_to_end() {
    let e = start().await;
    use reqwest::Method as M;
    let (s, b) = e.call(M::POST, "/keys/app-key/create", Some(json!({"kty": "oct", "tags": {"team": "a"}}))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let kid = b["key"]["kid"].as_str().unwrap().to_string();
    assert!(kid.starts_with(&format!("{}/keys/app-key/", e.base)), "{kid}");
    assert!(b["key"].get("k").is_none(), "symmetric key material is never returned");
    assert_eq!(b["attributes"]["recoveryLevel"], "Recoverable+Purgeable");
    assert_eq!(b["tags"]["team"], "a");
    // Latest via the SDK's trailing slash, and by version.
    let version = kid.rsplit('/').next().unwrap();
    assert_eq!(e.call(M::GET, "/keys/app-key/", None).await.1["key"]["kid"], kid);
    assert_eq!(e.call(M::GET, &format!("/keys/app-key/{version}"), None).await.1["key"]["kid"], kid);
    // Wrap and unwrap on the server, with the empty-version path the SDK uses.
    let (s, w) = e
        .call(
            M::POST,
            "/keys/app-key//wrapkey",
            Some(json!({"alg": "A256KW", "value": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{w}");
    assert_eq!(w["kid"], kid);
    let (_, u) = e
        .call(
            M::POST,
            &format!("/keys/app-key/{version}/unwrapkey"),
            Some(json!({"alg": "A256KW", "value": w["value"]})),
        )
        .await;
    assert_eq!(u["value"], "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    // A256GCM.
    let (_, c) = e.call(M::POST, "/keys/app-key//encrypt", Some(json!({"alg": "A256GCM", "value": "aGVsbG8"}))).await;
    let (_, p) = e
        .call(
            M::POST,
            "/keys/app-key//decrypt",
            Some(json!({"alg": "A256GCM", "value": c["value"], "iv": c["iv"], "tag": c["tag"]})),
        )
        .await;
    assert_eq!(p["value"], "aGVsbG8");
    // Disable: operations refused with the inner code; get still works.
    let (s, _) = e.call(M::PATCH, "/keys/app-key/", Some(json!({"attributes": {"enabled": false}}))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, err) = e
        .call(
            M::POST,
            "/keys/app-key//wrapkey",
            Some(json!({"alg": "A256KW", "value": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(err["error"]["innererror"]["code"], "KeyDisabled");
    assert_eq!(e.call(M::GET, "/keys/app-key", None).await.0, StatusCode::OK);
    // RSA: versions, sign/verify, rotate.
    let (s, r) = e.call(M::POST, "/keys/signer/create", Some(json!({"kty": "RSA", "key_size": 2048}))).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["key"]["e"], "AQAB");
    let digest = "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg"; // 32 bytes
    let (_, sig) = e.call(M::POST, "/keys/signer//sign", Some(json!({"alg": "RS256", "value": digest}))).await;
    let (_, v) = e
        .call(M::POST, "/keys/signer//verify", Some(json!({"alg": "RS256", "digest": digest, "value": sig["value"]})))
        .await;
    assert_eq!(v["value"], true);
    let (s, rot) = e.call(M::POST, "/keys/signer/rotate", None).await;
    assert_eq!(s, StatusCode::OK, "{rot}");
    let (_, versions) = e.call(M::GET, "/keys/signer/versions", None).await;
    assert_eq!(versions["value"].as_array().unwrap().len(), 2);
    // Listing with paging.
    for i in 0..26 {
        e.call(M::POST, &format!("/keys/p{i:02}/create"), Some(json!({"kty": "EC"}))).await;
    }
    let (_, page) = e.call(M::GET, "/keys?maxresults=25", None).await;
    assert_eq!(page["value"].as_array().unwrap().len(), 25);
    let next = page["nextLink"].as_str().unwrap().to_string();
    assert!(next.starts_with(&format!("{}/keys?api-version=", e.base)) && next.contains("maxresults=25"), "{next}");
    let resp: Value = e.client.get(next).bearer_auth(&e.token).send().await.unwrap().json().await.unwrap();
    assert_eq!(resp["value"].as_array().unwrap().len(), 3);
    assert!(resp["nextLink"].is_null());
    // Soft delete, get deleted, recover, delete again, purge.
    let (s, d) = e.call(M::DELETE, "/keys/p00", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["recoveryId"], format!("{}/deletedkeys/p00", e.base));
    assert_eq!(e.call(M::GET, "/keys/p00/", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(e.call(M::GET, "/deletedkeys/p00", None).await.0, StatusCode::OK);
    assert_eq!(e.call(M::POST, "/keys/p00/create", Some(json!({"kty": "EC"}))).await.0, StatusCode::CONFLICT);
    assert_eq!(e.call(M::POST, "/deletedkeys/p00/recover", None).await.0, StatusCode::OK);
    e.call(M::DELETE, "/keys/p00", None).await;
    let (s, b) = e.call(M::DELETE, "/deletedkeys/p00", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(b.is_null());
    assert_eq!(e.call(M::GET, "/deletedkeys/p00", None).await.0, StatusCode::NOT_FOUND);
    // Errors: bad JSON, HSM types, unknown routes, rng.
    let (s, err) = e.call(M::POST, "/keys/x/create", Some(json!({"kty": "RSA-HSM"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(err["error"]["message"].as_str().unwrap().contains("HSM backend"));
    assert_eq!(e.call(M::GET, "/nothing", None).await.0, StatusCode::NOT_FOUND);
    let (s, err) = e.call(M::PUT, "/keys/leak", Some(json!({"key": {"kty": "oct", "k": 987654321}}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(!err.to_string().contains("987654321"), "errors never echo request values: {err}");
    let (_, rng) = e.call(M::POST, "/rng", Some(json!({"count": 16}))).await;
    assert_eq!(atrest_vault::model::b64u_decode(rng["value"].as_str().unwrap(), "v").unwrap().len(), 16);
    // The checkpoint-signing public key is published.
    let jwk: Value = e.client.get(format!("{}/audit/signing-key", e.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwk["crv"], "P-256");
    e.server.shutdown().await;

    // Every call above is in the default vault's audit chain, which verifies.
    let cfg = ServeConfig { data_dir: e._dir.0.clone(), ..ServeConfig::default() };
    let (svc, _) = atrest_server::bootstrap::open_service(&cfg).await.unwrap();
    let vault = svc.vault("default").await.unwrap();
    let f = |op: &str| atrest_vault::audit::AuditFilter { operation: Some(op.into()), ..Default::default() };
    let wraps = svc.audit_entries(&vault.id, &f("wrapKey")).await.unwrap();
    assert_eq!(
        wraps.iter().map(|e| e.result.as_str()).collect::<Vec<_>>(),
        ["ok", "Forbidden"],
        "the refused wrap is recorded too"
    );
    assert_eq!(wraps[0].principal, "admin");
    assert!(wraps[0].detail.contains("A256KW"));
    let creates = svc.audit_entries(&vault.id, &f("create")).await.unwrap();
    assert_eq!(creates[0].result, "attempt", "changes are recorded before they run");
    assert_eq!(creates[1].result, "ok");
    assert!(svc.verify_audit_chain(&vault.id, None).await.unwrap().ok());
}

#[tokio::test]
async fn secrets_api_shapes_challenge_and_audit_before_release() {
    let e = start().await;
    use reqwest::Method as M;
    // The SDK's first request: no token, no body — the challenge, not "body required".
    let r = e
        .client
        .put(format!("{}/secrets/db?api-version=2026-04-01", e.base))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"].to_str().unwrap().contains("authorization=\"https://login.atrest.invalid/")
    );
    // Set: the bundle with its value, a versioned id at this origin, no contentType or tags
    // when unset, the vault's recovery settings.
    let (s, b) = e.call(M::PUT, "/secrets/db?api-version=2026-04-01", Some(json!({"value": "s3cr3t"}))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    assert!(id.starts_with(&format!("{}/secrets/db/", e.base)) && id.len() == e.base.len() + 12 + 32, "{id}");
    assert_eq!(b["value"], "s3cr3t");
    assert!(b.get("contentType").is_none() && b.get("tags").is_none() && b.get("kid").is_none(), "{b}");
    assert_eq!(b["attributes"]["recoverableDays"], 90);
    assert_eq!(e.call(M::GET, "/secrets/db/", None).await.1["value"], "s3cr3t");
    // Update answers without the value.
    let (s, u) = e.call(M::PATCH, "/secrets/db/", Some(json!({"contentType": "text/plain", "value": "ignored"}))).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert!(u.get("value").is_none() && u["contentType"] == "text/plain", "{u}");
    assert_eq!(e.call(M::GET, "/secrets/db", None).await.1["value"], "s3cr3t", "PATCH never sets a value");
    // Errors: SecretNotFound, a missing value, an unknown api-version.
    let (s, b) = e.call(M::GET, "/secrets/nope", None).await;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("SecretNotFound")));
    let (s, b) = e.call(M::PUT, "/secrets/db", Some(json!({"contentType": "x"}))).await;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("BadParameter")));
    let r = e.client.get(format!("{}/secrets/db?api-version=1999-01-01", e.base)).bearer_auth(&e.token).send().await;
    assert_eq!(r.unwrap().status(), StatusCode::BAD_REQUEST);
    // A value is released only once its read is in the audit trail: with audit appends
    // failing, get-secret answers 503 without the value; then it works again.
    let db =
        atrest_infra::db::Db::connect(&format!("sqlite://{}", e._dir.0.join("atrest.db").display())).await.unwrap();
    sqlx::query("CREATE TRIGGER no_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit down'); END")
        .execute(db.pool())
        .await
        .unwrap();
    let (s, b) = e.call(M::GET, "/secrets/db", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert!(!b.to_string().contains("s3cr3t"), "{b}");
    let (s, _) = e.call(M::PUT, "/secrets/db2", Some(json!({"value": "x"}))).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "a change whose attempt cannot be recorded does not run");
    sqlx::query("DROP TRIGGER no_audit").execute(db.pool()).await.unwrap();
    assert_eq!(e.call(M::GET, "/secrets/db2", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(e.call(M::GET, "/secrets/db", None).await.1["value"], "s3cr3t");
    e.server.shutdown().await;
}

/// Authorization is read when a request's headers arrive, and read again when its body
/// took longer to arrive: a policy removed while the body trickles in refuses the request.
#[tokio::test]
async fn a_policy_removed_while_the_body_arrives_refuses_the_request() {
    let e = start().await;
    use reqwest::Method as M;
    assert_eq!(e.call(M::POST, "/keys/k/create", Some(json!({"kty": "oct"}))).await.0, StatusCode::OK);
    let (s, _) = e.call(M::POST, "/admin/tenants/default/principals", Some(json!({"name": "app"}))).await;
    assert!(s.is_success());
    let (_, t) = e.call(M::POST, "/admin/tenants/default/principals/app/tokens", Some(json!({}))).await;
    let app = t["token"].as_str().unwrap().to_string();
    let grant = json!({"permissions": ["get", "wrapKey"]});
    assert!(e.call(M::PUT, "/admin/vaults/default/policies/app", Some(grant)).await.0.is_success());
    let body = r#"{"alg":"A256KW","value":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#;
    let wrap = |chunks: futures_util::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>| {
        e.client
            .post(format!("{}/keys/k//wrapkey?api-version=7.5", e.base))
            .bearer_auth(&app)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
    };
    use futures_util::StreamExt as _;
    let whole = futures_util::stream::iter([Ok(bytes::Bytes::from_static(body.as_bytes()))]).boxed();
    assert_eq!(wrap(whole).await.unwrap().status(), StatusCode::OK);
    // The body's second half comes after the policy is gone.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(2);
    let trickled = futures_util::stream::unfold(rx, |mut rx| async { rx.recv().await.map(|c| (c, rx)) }).boxed();
    let sent = tokio::spawn(wrap(trickled));
    tx.send(Ok(bytes::Bytes::from_static(&body.as_bytes()[..20]))).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(e.call(M::DELETE, "/admin/vaults/default/policies/app", None).await.0, StatusCode::NO_CONTENT);
    tx.send(Ok(bytes::Bytes::from_static(&body.as_bytes()[20..]))).await.unwrap();
    drop(tx);
    let r = sent.await.unwrap().unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{}", r.text().await.unwrap());
    e.server.shutdown().await;
}

#[tokio::test]
async fn a_second_start_reuses_everything() {
    let e = start().await;
    let dir = e.server.admin_token.parent().unwrap().to_path_buf();
    let ca_before = std::fs::read(e.server.ca_pem.as_ref().unwrap()).unwrap();
    e.server.shutdown().await;
    let cfg = ServeConfig { data_dir: dir.clone(), listen: "127.0.0.1:0".parse().unwrap(), ..ServeConfig::default() };
    let again = atrest_server::start(cfg).await.unwrap();
    assert_eq!(std::fs::read(again.ca_pem.as_ref().unwrap()).unwrap(), ca_before, "the CA survives restarts");
    assert_eq!(std::fs::read_to_string(&again.admin_token).unwrap(), e.token);
    again.shutdown().await;
    // Another root key cannot open this data directory.
    std::fs::write(dir.join("root.key"), "11".repeat(32)).unwrap();
    let cfg = ServeConfig { data_dir: dir, listen: "127.0.0.1:0".parse().unwrap(), ..ServeConfig::default() };
    let err = atrest_server::start(cfg).await.err().expect("must refuse");
    assert!(err.to_string().contains("root key"), "{err}");
}

#[tokio::test]
async fn a_passphrase_root_key() {
    let dir =
        std::env::temp_dir().join(format!("atrest-pass-{}", hex::encode(atrest_crypto::rand::bytes::<6>().unwrap())));
    let _cleanup = TempDir(dir.clone());
    std::fs::create_dir_all(&dir).unwrap();
    let pass = dir.join("pass.txt");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let cfg = ServeConfig {
        data_dir: dir.join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        root_passphrase_file: Some(pass.clone()),
        ..ServeConfig::default()
    };
    let s = atrest_server::start(cfg.clone()).await.unwrap();
    assert!(
        !s.warnings.iter().any(|w| w.contains("root key is stored")),
        "no root key file next to the data: {:?}",
        s.warnings
    );
    assert!(!dir.join("data/root.key").exists());
    assert!(std::fs::read_to_string(dir.join("data/root.salt")).unwrap().starts_with("argon2id$v=19$m=65536,t=3,p=1$"));
    s.shutdown().await;
    atrest_server::start(cfg.clone()).await.unwrap().shutdown().await;
    std::fs::write(&pass, "a different passphrase").unwrap();
    assert!(atrest_server::start(cfg.clone()).await.is_err(), "a wrong passphrase opens nothing");
    std::fs::write(&pass, "short").unwrap();
    let err = atrest_server::start(cfg).await.err().unwrap();
    assert!(err.to_string().contains("at least 12"), "{err}");
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish() {
    let e = start().await;
    // RSA-4096 generation takes a while: the request is still running when shutdown begins.
    let client = e.client.clone();
    let url = format!("{}/keys/slow/create?api-version=7.5", e.base);
    let token = e.token.clone();
    let req = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(token)
            .json(&json!({"kty": "RSA", "key_size": 4096}))
            .send()
            .await
            .map(|r| r.status())
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    e.server.shutdown().await;
    assert_eq!(req.await.unwrap().unwrap(), StatusCode::OK, "the request in flight completed");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // New connections are refused after shutdown.
    assert!(e.client.get(format!("{}/healthz", e.base)).send().await.is_err());
}
