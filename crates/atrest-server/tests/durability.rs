//! Nothing lost, nothing silent: a graceful stop leaves database files that hold
//! everything (a copy without the WAL restores whole), a database older than what was
//! acknowledged is refused (rollback anchor), a data directory with the leftovers of a
//! deployment never becomes a new one, and the connection limits (handshake, header and
//! idle timeouts, connection cap, 413 for an over-long body).

use atrest_server::{ServeConfig, Server};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
mod common;
use common::{TempDir, client_for, temp_dir};

fn config(dir: &Path) -> ServeConfig {
    ServeConfig { data_dir: dir.to_path_buf(), listen: "127.0.0.1:0".parse().unwrap(), ..ServeConfig::default() }
}

struct Api {
    client: Client,
    token: String,
    base: String,
}

impl Api {
    fn new(server: &Server, dir: &Path) -> Self {
        let token = std::fs::read_to_string(dir.join("admin.token")).unwrap();
        Self {
            client: client_for(&dir.join("tls/ca.pem")),
            token,
            base: format!("https://localhost:{}", server.addr.port()),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> (StatusCode, Vec<u8>) {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut req =
            self.client.request(method, format!("{}{path}{sep}api-version=7.5", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        (resp.status(), resp.bytes().await.unwrap().to_vec())
    }

    async fn create_key(&self, name: &str) {
        let body = serde_json::to_vec(&json!({"kty": "oct", "key_size": 256})).unwrap();
        let (s, b) = self.send(reqwest::Method::POST, &format!("/keys/{name}/create"), Some(body)).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    }

    async fn key_status(&self, name: &str) -> StatusCode {
        self.send(reqwest::Method::GET, &format!("/keys/{name}"), None).await.0
    }

    async fn put_record(&self, name: &str, value: &[u8]) {
        let (s, b) =
            self.send(reqwest::Method::PUT, &format!("/data/resources/r1/records/{name}"), Some(value.into())).await;
        assert!(s.is_success(), "{s} {}", String::from_utf8_lossy(&b));
    }

    async fn record(&self, name: &str) -> (StatusCode, Vec<u8>) {
        self.send(reqwest::Method::GET, &format!("/data/resources/r1/records/{name}"), None).await
    }
}

/// Copies the files of a data directory, leaving out SQLite's `-wal` and `-shm` files:
/// what the README's "copy while stopped" needs to be whole.
fn copy_without_wal(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with("-wal") || name.ends_with("-shm") {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_without_wal(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

async fn fill(api: &Api, tag: &str) {
    api.create_key(&format!("key-{tag}")).await;
    let (s, _) = api.send(reqwest::Method::PUT, "/data/resources/r1", None).await;
    assert!(s.is_success() || s == StatusCode::CONFLICT, "{s}");
    api.put_record(&format!("rec-{tag}"), format!("value {tag}").as_bytes()).await;
}

#[tokio::test]
async fn a_graceful_stop_leaves_whole_database_files() {
    let dir = temp_dir("atrest-durable");
    let server = atrest_server::start(config(&dir.0)).await.unwrap();
    let api = Api::new(&server, &dir.0);
    for i in 0..20 {
        fill(&api, &i.to_string()).await;
    }
    server.shutdown().await;
    for db in ["atrest.db", "store.db"] {
        let wal = dir.0.join(format!("{db}-wal"));
        assert!(std::fs::metadata(&wal).map_or(true, |m| m.len() == 0), "{db}: the WAL was left behind");
    }
    // The files a stopped data directory holds, without any WAL, are the whole deployment.
    let copy = temp_dir("atrest-durable-copy");
    copy_without_wal(&dir.0, &copy.0);
    let server = atrest_server::start(config(&copy.0)).await.unwrap();
    let api = Api::new(&server, &copy.0);
    for i in 0..20 {
        assert_eq!(api.key_status(&format!("key-{i}")).await, StatusCode::OK);
        let (s, b) = api.record(&format!("rec-{i}")).await;
        assert_eq!((s, b), (StatusCode::OK, format!("value {i}").into_bytes()));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_database_older_than_acknowledged_is_refused() {
    let dir = temp_dir("atrest-rollback");
    let server = atrest_server::start(config(&dir.0)).await.unwrap();
    fill(&Api::new(&server, &dir.0), "a").await;
    server.shutdown().await;
    let old = temp_dir("atrest-rollback-old");
    copy_without_wal(&dir.0, &old.0);

    let server = atrest_server::start(config(&dir.0)).await.unwrap();
    fill(&Api::new(&server, &dir.0), "b").await;
    server.shutdown().await;

    for (db, what) in [("store.db", "data-service database"), ("atrest.db", "vault database")] {
        let current = std::fs::read(dir.0.join(db)).unwrap();
        std::fs::copy(old.0.join(db), dir.0.join(db)).unwrap();
        let err = atrest_server::start(config(&dir.0)).await.err().expect("an old database must be refused");
        let msg = err.to_string();
        assert!(matches!(err, atrest_server::ServerError::Rollback(_)), "{msg}");
        assert!(msg.contains("rollback detected") && msg.contains(what) && msg.contains("atrest restore"), "{msg}");
        std::fs::write(dir.0.join(db), current).unwrap();
    }
    // With the current files back, it starts and serves everything.
    let server = atrest_server::start(config(&dir.0)).await.unwrap();
    let api = Api::new(&server, &dir.0);
    assert_eq!(api.key_status("key-b").await, StatusCode::OK);
    assert_eq!(api.record("rec-b").await.0, StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test]
async fn leftovers_of_a_deployment_are_never_bootstrapped_over() {
    let dir = temp_dir("atrest-leftovers");
    let server = atrest_server::start(config(&dir.0)).await.unwrap();
    fill(&Api::new(&server, &dir.0), "a").await;
    server.shutdown().await;
    let token = std::fs::read(dir.0.join("admin.token")).unwrap();

    // The anchor deleted: the databases have commits it should cover.
    let anchor = std::fs::read(dir.0.join("anchor")).unwrap();
    std::fs::remove_file(dir.0.join("anchor")).unwrap();
    let msg = atrest_server::start(config(&dir.0)).await.err().expect("refused").to_string();
    assert!(msg.contains("anchor") && msg.contains("missing"), "{msg}");
    // An anchor edited (or from another deployment) does not verify.
    let mut bad = anchor.clone();
    bad[20] ^= 1;
    bad[84] ^= 1;
    std::fs::write(dir.0.join("anchor"), &bad).unwrap();
    let msg = atrest_server::start(config(&dir.0)).await.err().expect("refused").to_string();
    assert!(msg.contains("does not verify"), "{msg}");
    std::fs::write(dir.0.join("anchor"), &anchor).unwrap();

    // The vault database lost: never a new, empty deployment beside the old token.
    std::fs::rename(dir.0.join("atrest.db"), dir.0.join("atrest.db.moved")).unwrap();
    let msg = atrest_server::start(config(&dir.0)).await.err().expect("refused").to_string();
    assert!(msg.contains("signs of one") && msg.contains("admin.token"), "{msg}");
    assert_eq!(std::fs::read(dir.0.join("admin.token")).unwrap(), token, "the old token is untouched");
    std::fs::rename(dir.0.join("atrest.db.moved"), dir.0.join("atrest.db")).unwrap();
    let server = atrest_server::start(config(&dir.0)).await.unwrap();
    assert_eq!(Api::new(&server, &dir.0).key_status("key-a").await, StatusCode::OK);
    server.shutdown().await;
}

/// Reads until the server closes the connection; returns how long that took.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(s: &mut S, limit: Duration) -> Duration {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(t.elapsed()), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return t.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the connection was still open after {limit:?}"),
        }
    }
}

async fn tls_connect(server: &Server, dir: &Path) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(dir.join("tls/ca.pem")).unwrap();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn connection_limits_measure_inactivity() {
    let dir = temp_dir("atrest-limits");
    let cfg = ServeConfig {
        handshake_timeout_secs: 1,
        header_timeout_secs: 1,
        idle_timeout_secs: 2,
        max_connections: 3,
        ..config(&dir.0)
    };
    let server = atrest_server::start(cfg).await.unwrap();
    let api = Api::new(&server, &dir.0);

    // No handshake at all.
    let mut raw = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_within(&mut raw, Duration::from_secs(4)).await >= Duration::from_millis(900));
    // Headers started, never finished.
    let mut half = tls_connect(&server, &dir.0).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
    closed_within(&mut half, Duration::from_secs(4)).await;
    // A kept-alive connection left idle (hyper's header deadline covers the wait for
    // the next request too, so the shorter of the two closes it).
    let mut idle = tls_connect(&server, &dir.0).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    closed_within(&mut idle, Duration::from_secs(4)).await;

    // An upload that stalls after its headers and a first chunk: closed once nothing has
    // moved for the idle timeout.
    let (s, _) = api.send(reqwest::Method::PUT, "/data/resources/r1", None).await;
    assert!(s.is_success(), "{s}");
    let mut stalled = tls_connect(&server, &dir.0).await;
    let head = format!(
        "PUT /data/resources/r1/blobs/stalled.bin HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 10000000\r\n\r\n",
        api.token
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&vec![b'x'; 64 * 1024]).await.unwrap();
    stalled.flush().await.unwrap();
    let took = closed_within(&mut stalled, Duration::from_secs(6)).await;
    assert!(took >= Duration::from_millis(1500), "closed after {took:?}, before the idle timeout");
    assert_eq!(
        api.send(reqwest::Method::GET, "/data/resources/r1/blobs/stalled.bin", None).await.0,
        StatusCode::NOT_FOUND
    );

    // An upload that keeps moving for three idle timeouts is never cut.
    let chunks = futures_util::stream::unfold(0u32, |i| async move {
        if i == 12 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 64 * 1024])), i + 1))
    });
    let resp = api
        .client
        .put(format!("{}/data/resources/r1/blobs/slow.bin", api.base))
        .bearer_auth(&api.token)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let (s, b) = api.send(reqwest::Method::GET, "/data/resources/r1/blobs/slow.bin", None).await;
    assert_eq!((s, b.len()), (StatusCode::OK, 12 * 64 * 1024));

    server.shutdown().await;
}

#[tokio::test]
async fn connections_past_the_cap_wait_in_the_backlog() {
    let dir = temp_dir("atrest-cap");
    // A long handshake timeout: the held connections keep their slots for the whole test.
    let cfg = ServeConfig { handshake_timeout_secs: 30, max_connections: 3, ..config(&dir.0) };
    let server = atrest_server::start(cfg).await.unwrap();
    let base = format!("https://localhost:{}", server.addr.port());
    let client = client_for(&dir.0.join("tls/ca.pem"));
    assert_eq!(client.get(format!("{base}/healthz")).send().await.unwrap().status(), StatusCode::OK);
    // That connection is idle in the client's pool; a fresh client for the rest.
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held: Vec<_> = futures_util::future::join_all((0..3).map(|_| tokio::net::TcpStream::connect(server.addr)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = client_for(&dir.0.join("tls/ca.pem"));
    let quick = fresh.get(format!("{base}/healthz")).timeout(Duration::from_secs(2)).send().await;
    assert!(quick.is_err(), "a fourth connection was served past the cap");
    drop(held);
    let resp = fresh.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test]
async fn an_over_long_body_gets_413_not_a_reset() {
    let dir = temp_dir("atrest-413");
    let server = atrest_server::start(config(&dir.0)).await.unwrap();
    let api = Api::new(&server, &dir.0);
    let big = vec![b'a'; 6 * 1024 * 1024];
    let (s, b) = api.send(reqwest::Method::POST, "/keys/k/create", Some(big.clone())).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{}", String::from_utf8_lossy(&b));
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["error"]["code"], "RequestTooLarge");
    let (s, _) = api.send(reqwest::Method::PUT, "/data/resources/r1", None).await;
    assert!(s.is_success());
    let (s, b) = api.send(reqwest::Method::PUT, "/data/resources/r1/records/big", Some(big)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{}", String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&b).contains("store large values as blobs"));
    // The server is still fine.
    assert_eq!(api.record("big").await.0, StatusCode::NOT_FOUND);
    server.shutdown().await;
    let _keep: &TempDir = &dir;
}

#[tokio::test]
async fn rows_with_edited_lookup_columns_are_found_by_listing_and_by_the_full_scan() {
    use sqlx::Connection as _;
    let dir = temp_dir("atrest-verify");
    let server = atrest_server::start(config(&dir.0)).await.unwrap();
    let api = Api::new(&server, &dir.0);
    let (s, _) = api.send(reqwest::Method::PUT, "/data/resources/r1", None).await;
    assert!(s.is_success());
    for n in ["a", "b", "c", "d"] {
        api.put_record(n, n.as_bytes()).await;
    }
    let (s, b) = api.send(reqwest::Method::POST, "/admin/verify", None).await;
    let clean: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(
        (s, clean["objects"].as_u64(), clean["problems"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(4), Some(0))
    );

    // Three rows moved by hand: to another resource id, to the other kind, to another name.
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", dir.0.join("store.db").display());
    let mut db = sqlx::AnyConnection::connect(&url).await.unwrap();
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM store_objects ORDER BY id").fetch_all(&mut db).await.unwrap();
    for (id, edit) in ids.iter().zip([
        "UPDATE store_objects SET resource_id = 'elsewhere' WHERE id = $1",
        "UPDATE store_objects SET kind = 'blob' WHERE id = $1",
        "UPDATE store_objects SET name_hash = X'00' WHERE id = $1",
    ]) {
        sqlx::query(edit).bind(id).execute(&mut db).await.unwrap();
    }
    db.close().await.unwrap();

    // A point read finds nothing under the original names ...
    let missing = futures_util::future::join_all(["a", "b", "c", "d"].map(|n| api.record(n))).await;
    assert_eq!(missing.iter().filter(|(s, _)| *s == StatusCode::NOT_FOUND).count(), 3);
    // ... listing the resource's records or blobs reports the edited rows it meets ...
    for kind in ["records", "blobs"] {
        let (s, b) = api.send(reqwest::Method::GET, &format!("/data/resources/r1/{kind}"), None).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{kind}: {}", String::from_utf8_lossy(&b));
        assert!(String::from_utf8_lossy(&b).contains("IntegrityCheckFailed"));
    }
    // ... and the full scan names all three.
    let (s, b) = api.send(reqwest::Method::POST, "/admin/verify", None).await;
    assert_eq!(s, StatusCode::OK);
    let report: Value = serde_json::from_slice(&b).unwrap();
    let problems: Vec<&str> = report["problems"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("names resource elsewhere, which does not exist")), "{problems:?}");
    assert_eq!(problems.iter().filter(|p| p.contains("in resource r1")).count(), 2, "{problems:?}");
    server.shutdown().await;
}

/// What a data-service database put back under a running server looks like from inside:
/// fewer commits.
async fn set_store_seq(dir: &Path, seq: i64) {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", dir.join("store.db").display());
    let mut db = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE atrest_commit_seq SET seq = $1").bind(seq).execute(&mut db).await.unwrap();
    db.close().await.unwrap();
}

#[tokio::test]
async fn a_database_going_back_under_the_running_server_stops_its_answers() {
    let dir = temp_dir("atrest-rollback-live");
    let server = atrest_server::start(config(&dir.0)).await.unwrap();
    let api = Api::new(&server, &dir.0);
    fill(&api, "a").await;
    set_store_seq(&dir.0, 1).await;
    // Nothing writes: the periodic check notices (within its 5 s period) and the node
    // reports itself not ready ...
    let t = Instant::now();
    loop {
        let ready = api.client.get(format!("{}/readyz", api.base)).send().await.unwrap();
        if ready.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert!(ready.text().await.unwrap().contains("rollback detected"));
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(12), "the rollback was not noticed while serving");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // ... and carries out and answers nothing more; the details are for the log only.
    let (s, b) = api.send(reqwest::Method::GET, "/keys/key-a", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let text = String::from_utf8_lossy(&b).to_string();
    assert!(text.contains("rollback detected") && !text.contains("store.db") && !text.contains("anchor "), "{text}");
    server.shutdown().await;
    // The anchor was tripped: background writes since cannot make the next start pass.
    let msg = atrest_server::start(config(&dir.0)).await.err().expect("refused").to_string();
    assert!(msg.contains("rollback detected while serving"), "{msg}");
    // The operator accepts the state (audited); then it starts.
    atrest_server::backup::accept_rollback(&config(&dir.0)).await.unwrap();
    let server = atrest_server::start(config(&dir.0)).await.unwrap();
    assert_eq!(Api::new(&server, &dir.0).key_status("key-a").await, StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test]
async fn one_server_per_data_directory() {
    let dir = temp_dir("atrest-one-server");
    let server = atrest_server::start(config(&dir.0)).await.unwrap();
    let msg = atrest_server::start(config(&dir.0)).await.err().expect("a second server is refused").to_string();
    assert!(msg.contains("another atrest process"), "{msg}");
    let msg = atrest_server::backup::accept_rollback(&config(&dir.0)).await.unwrap_err().to_string();
    assert!(msg.contains("another atrest process"), "{msg}");
    server.shutdown().await;
    // Released at shutdown: the next start takes it at once.
    let server = atrest_server::start(config(&dir.0)).await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn a_write_never_lowers_the_anchor() {
    let dir = temp_dir("atrest-rollback-write");
    let server = atrest_server::start(config(&dir.0)).await.unwrap();
    let api = Api::new(&server, &dir.0);
    fill(&api, "a").await;
    set_store_seq(&dir.0, 1).await;
    // The next write (to the other database) is refused rather than anchoring the lower
    // sequence.
    let body = serde_json::to_vec(&json!({"kty": "oct", "key_size": 256})).unwrap();
    let (s, b) = api.send(reqwest::Method::POST, "/keys/late/create", Some(body)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{}", String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&b).contains("rollback detected"));
    server.shutdown().await;
    let msg = atrest_server::start(config(&dir.0)).await.err().expect("still refused at start").to_string();
    assert!(msg.contains("rollback detected while serving"), "{msg}");
}
