//! The data service over HTTPS against the real server on loopback:
//!
//! 1. record puts and gets (1 KiB) at concurrency 1, 16 and 64, next to the rate of a
//!    raw 4 KiB append + fdatasync in the same directory (group commit must beat it);
//! 2. blob upload and download GB/s, next to one raw AES-256-GCM pass on one core;
//! 3. the time to change a resource's key (platform → customer, then to a new version)
//!    for resources holding 1 k, 100 k and 1 M objects (seeded in bulk: must be flat);
//! 4. re-key job objects/s;
//! 5. peak RSS of the process while a large blob goes up and down (client included).
//!
//! With `ATREST_BENCH_SECTIONS=backends`, instead: records and blobs on the embedded
//! default next to PostgreSQL + S3 with one and with two nodes (`ATREST_BENCH_PG`: a
//! PostgreSQL server URL allowed to create databases; `ATREST_BENCH_S3`: an S3 endpoint
//! with bucket `atrest`, credentials in the AWS environment variables).
//!
//! With `ATREST_BENCH_SECTIONS=anchor`, instead: what the rollback anchor costs — record
//! puts and gets and key creations with the anchor and without it (two servers on the
//! embedded default, interleaved rounds, medians; `ATREST_BENCH_ROUNDS`, default 5).
//!
//! `cargo bench -p atrest-server --bench data` prints Markdown tables. Settings:
//! `ATREST_BENCH_SECS` (per cell, default 3), `ATREST_BENCH_DIR`, `ATREST_BENCH_BLOB_MIB`
//! (default 512), `ATREST_BENCH_MAX_OBJECTS` (default 1000000), `ATREST_BENCH_BIG_GIB`
//! (default 4; 0 skips).

use atrest_crypto::SecretKey;
use atrest_crypto::aead::AeadKey;
use atrest_server::ServeConfig;
use futures_util::StreamExt;
use reqwest::{Client, Method};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

struct Cell {
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

/// `conc` tasks, task `t` talking to node `bases[t % bases.len()]`.
async fn drive(client: &Client, token: &str, bases: &[String], put: bool, conc: usize, secs: f64, keys: usize) -> Cell {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let body = bytes::Bytes::from(vec![0x5a; 1024]);
    let mut tasks = Vec::new();
    for t in 0..conc {
        let base = bases[t % bases.len()].clone();
        let (client, token, body) = (client.clone(), token.to_string(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = 0usize;
            while Instant::now() < deadline {
                let url = if put {
                    format!("{base}/data/resources/bench/records/c{conc}-t{t}-{i}")
                } else {
                    format!("{base}/data/resources/bench/records/k{}", (t * 7919 + i) % keys)
                };
                i += 1;
                let req = if put { client.put(url).body(body.clone()) } else { client.get(url) };
                let t0 = Instant::now();
                match req.bearer_auth(&token).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t0.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied();
    Cell {
        rps: all.len() as f64 / elapsed,
        p50: pct(0.5).unwrap_or_default(),
        p99: pct(0.99).unwrap_or_default(),
        errors,
    }
}

/// 4 KiB appends, each followed by fdatasync, per second.
fn raw_fsync_rate(dir: &std::path::Path, secs: f64) -> f64 {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
    let buf = [0u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        f.write_all(&buf).unwrap();
        f.sync_data().unwrap();
        n += 1;
    }
    let _ = std::fs::remove_file(&path);
    n as f64 / start.elapsed().as_secs_f64()
}

/// One AES-256-GCM pass over 64 KiB buffers, bytes per second, one core.
fn raw_gcm_rate(secs: f64) -> f64 {
    let key = AeadKey::new(&SecretKey::from_slice(&[7; 32]).unwrap()).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let mut n = 0u64;
    let mut nonce = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        nonce += 1;
        let mut iv = [0u8; 12];
        iv[4..].copy_from_slice(&nonce.to_be_bytes());
        std::hint::black_box(key.seal_in_place(iv, &[], &mut buf).unwrap());
        n += buf.len() as u64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A body of `len` bytes produced in 256 KiB chunks (never held whole).
fn generated(len: u64) -> reqwest::Body {
    let chunk = bytes::Bytes::from(vec![0xa5u8; 256 * 1024]);
    let n = len.div_ceil(chunk.len() as u64);
    let stream = futures_util::stream::iter((0..n).map(move |i| {
        let take = (len - i * chunk.len() as u64).min(chunk.len() as u64) as usize;
        Ok::<_, std::io::Error>(chunk.slice(..take))
    }));
    reqwest::Body::wrap_stream(stream)
}

async fn blob_round_trip(client: &Client, token: &str, base: &str, name: &str, len: u64) -> (f64, f64) {
    let url = format!("{base}/data/resources/bench/blobs/{name}");
    let t = Instant::now();
    let r = client.put(&url).bearer_auth(token).body(generated(len)).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let up = len as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let r = client.get(&url).bearer_auth(token).send().await.unwrap();
    assert!(r.status().is_success());
    let mut got = 0u64;
    let mut s = r.bytes_stream();
    while let Some(c) = s.next().await {
        got += c.unwrap().len() as u64;
    }
    assert_eq!(got, len);
    (up, len as f64 / t.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() {
    let secs: f64 = env("ATREST_BENCH_SECS", 3.0);
    let blob_mib: u64 = env("ATREST_BENCH_BLOB_MIB", 512);
    let max_objects: u64 = env("ATREST_BENCH_MAX_OBJECTS", 1_000_000);
    let big_gib: u64 = env("ATREST_BENCH_BIG_GIB", 4);
    let parent = std::env::var_os("ATREST_BENCH_DIR").map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let dir = parent.join(format!("atrest-data-bench-{}", std::process::id()));
    if std::env::var("ATREST_BENCH_SECTIONS").as_deref() == Ok("backends") {
        backends(secs, blob_mib, &dir).await;
        return;
    }
    if std::env::var("ATREST_BENCH_SECTIONS").as_deref() == Ok("anchor") {
        anchor_cost(secs, &dir).await;
        return;
    }
    let (server, client, token, base) = bench_server(bench_config(dir.clone())).await;
    let call = |m: Method, path: String, body: Option<Value>| {
        let (client, token, url) = (client.clone(), token.clone(), format!("{base}{path}"));
        async move {
            let mut r = client.request(m, url).bearer_auth(token);
            if let Some(b) = body {
                r = r.json(&b);
            }
            let r = r.send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
            r.json::<Value>().await.unwrap_or(Value::Null)
        }
    };
    call(Method::PUT, "/data/resources/bench".into(), None).await;

    // 1. Records.
    let keys = 2000;
    let seed = drive_seed(&client, &token, &base, keys).await;
    assert_eq!(seed, 0, "seeding failed");
    let fsync = raw_fsync_rate(&dir, (secs / 2.0).max(1.0));
    println!("\n### Records, 1 KiB, over HTTPS (raw 4 KiB append+fdatasync here: {fsync:.0}/s)\n");
    println!("| operation | concurrency | req/s | p50 ms | p99 ms | ÷ raw fsync rate | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for put in [true, false] {
        for conc in [1, 16, 64] {
            let c = drive(&client, &token, std::slice::from_ref(&base), put, conc, secs, keys).await;
            println!(
                "| {} | {conc} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
                if put { "put" } else { "get" },
                c.rps,
                c.p50.as_secs_f64() * 1e3,
                c.p99.as_secs_f64() * 1e3,
                c.rps / fsync,
                c.errors
            );
        }
    }

    // 2. Blobs.
    let gcm = raw_gcm_rate((secs / 2.0).max(1.0));
    let (up, down) = blob_round_trip(&client, &token, &base, "blob", blob_mib << 20).await;
    println!("\n### Blobs, {blob_mib} MiB over HTTPS (raw AES-256-GCM, one pass, one core: {:.2} GB/s)\n", gcm / 1e9);
    println!("| direction | GB/s | ÷ raw AES-256-GCM |");
    println!("|---|---:|---:|");
    println!("| upload | {:.3} | {:.2} |", up / 1e9, up / gcm);
    println!("| download | {:.3} | {:.2} |", down / 1e9, down / gcm);

    // 3. Key change time against object count.
    call(Method::PATCH, "/admin/vaults/default".into(), Some(json!({"purge_protection": true}))).await;
    let k =
        call(Method::POST, "/keys/cmk/create?api-version=7.5".into(), Some(json!({"kty": "RSA", "key_size": 2048})))
            .await;
    let v1 = k["key"]["kid"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let k2 = call(Method::POST, "/keys/cmk/rotate?api-version=7.5".into(), None).await;
    let v2 = k2["key"]["kid"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    println!("\n### Changing the key-encryption key (re-wrap only)\n");
    println!("| objects | platform → customer ms | → new key version ms | seeding s |");
    println!("|---:|---:|---:|---:|");
    let mut n = 1000u64;
    while n <= max_objects {
        let name = format!("rot{n}");
        call(Method::PUT, format!("/data/resources/{name}"), None).await;
        let t = Instant::now();
        seed_bulk(&dir, &client, &token, &base, &name, n).await;
        let seeding = t.elapsed().as_secs_f64();
        call(
            Method::PUT,
            format!("/admin/vaults/default/policies/res-{name}"),
            Some(json!({"permissions": ["get", "wrapKey", "unwrapKey"]})),
        )
        .await;
        let t = Instant::now();
        call(
            Method::PUT,
            format!("/data/resources/{name}/encryption"),
            Some(json!({"keySource": "customer", "keyUri": format!("{base}/keys/cmk/{v1}")})),
        )
        .await;
        let first = t.elapsed();
        let t = Instant::now();
        call(
            Method::PUT,
            format!("/data/resources/{name}/encryption"),
            Some(json!({"keySource": "customer", "keyUri": format!("{base}/keys/cmk/{v2}")})),
        )
        .await;
        let second = t.elapsed();
        println!("| {n} | {:.1} | {:.1} | {seeding:.1} |", first.as_secs_f64() * 1e3, second.as_secs_f64() * 1e3);
        n *= if n == 1000 { 100 } else { 10 };
    }

    // 4. Re-key job over the bench resource's records.
    let total_before = call(Method::GET, "/data/resources/bench/jobs".into(), None).await;
    drop(total_before);
    let t = Instant::now();
    let job = call(Method::POST, "/data/resources/bench/jobs".into(), Some(json!({"kind": "rekey"}))).await;
    let id = job["id"].as_str().unwrap().to_string();
    let done = loop {
        let j = call(Method::GET, format!("/data/jobs/{id}"), None).await;
        if j["state"] != "running" {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let objects = done["done"].as_f64().unwrap();
    println!("\n### Re-key job\n");
    println!("| objects | seconds | objects/s |");
    println!("|---:|---:|---:|");
    println!("| {objects:.0} | {:.2} | {:.0} |", t.elapsed().as_secs_f64(), objects / t.elapsed().as_secs_f64());

    // 5. Peak RSS for a large blob.
    if big_gib > 0 {
        reset_peak_rss();
        let before = peak_rss_mib();
        let (up, down) = blob_round_trip(&client, &token, &base, "big", big_gib << 30).await;
        println!("\n### {big_gib} GiB blob\n");
        println!("| peak RSS before MiB | peak RSS during MiB | upload GB/s | download GB/s |");
        println!("|---:|---:|---:|---:|");
        println!("| {before:.0} | {:.0} | {:.3} | {:.3} |", peak_rss_mib(), up / 1e9, down / 1e9);
    }
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `keys` records k0…k{keys-1} for the get benchmark; returns the failures.
async fn drive_seed(client: &Client, token: &str, base: &str, keys: usize) -> u64 {
    let mut tasks = Vec::new();
    for t in 0..32 {
        let (client, token, base) = (client.clone(), token.to_string(), base.to_string());
        tasks.push(tokio::spawn(async move {
            let mut errors = 0;
            for i in (t..keys).step_by(32) {
                let r = client
                    .put(format!("{base}/data/resources/bench/records/k{i}"))
                    .bearer_auth(&token)
                    .body(vec![0x5a; 1024])
                    .send()
                    .await;
                if !r.is_ok_and(|r| r.status().is_success()) {
                    errors += 1;
                }
            }
            errors
        }));
    }
    let mut e = 0;
    for t in tasks {
        e += t.await.unwrap();
    }
    e
}

/// Copies one real record row `n - 1` times under fresh ids, straight in SQLite (the
/// copies never get read: a key change does not touch objects).
async fn seed_bulk(dir: &std::path::Path, client: &Client, token: &str, base: &str, resource: &str, n: u64) {
    let r = client
        .put(format!("{base}/data/resources/{resource}/records/seed"))
        .bearer_auth(token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    use sqlx::ConnectOptions as _;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.join("store.db"))
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let rid: String = sqlx::query_scalar("SELECT id FROM store_resources WHERE name = ?")
        .bind(resource)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) \
         INSERT INTO store_objects SELECT o.resource_id, o.kind, randomblob(32), lower(hex(randomblob(16))), o.generation, \
         o.size, o.rk_epoch, o.enc_epoch, o.name_sealed, o.wrapped_dek, o.body, o.created, o.updated, o.mac \
         FROM c, (SELECT * FROM store_objects WHERE resource_id = ? LIMIT 1) o",
    )
    .bind(i64::try_from(n - 1).unwrap())
    .bind(&rid)
    .execute(&mut conn)
    .await
    .unwrap();
}

fn client_trusting(roots: rustls::RootCertStore) -> Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Client::builder().use_preconfigured_tls(tls).http1_only().pool_max_idle_per_host(128).build().unwrap()
}

async fn pg_admin(admin: &str, sql: &str) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&format!("{}/postgres", admin.trim_end_matches('/'))).await.unwrap();
    sqlx::query(sql).execute(&mut conn).await.unwrap();
}

/// The engines alone, in the same run: 1 KiB `INSERT`s each committed on its own at
/// concurrency 16 and 64, and one body of `blob_mib` MiB put and got through
/// `object_store` (no TLS, no encryption).
async fn raw_engines(pg: &str, s3: &str, secs: f64, blob_mib: u64) {
    use object_store::{ObjectStoreExt as _, WriteMultipart};
    let name = format!("bench_raw_{}", std::process::id());
    pg_admin(pg, &format!("CREATE DATABASE {name}")).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(64)
        .connect(&format!("{}/{name}", pg.trim_end_matches('/')))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY, v BYTEA)").execute(&pool).await.unwrap();
    let mut rates = Vec::new();
    for conc in [16, 64] {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let start = Instant::now();
        let tasks: Vec<_> = (0..conc)
            .map(|t| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        sqlx::query("INSERT INTO t VALUES ($1, $2)")
                            .bind(format!("c{conc}-{t}-{n}"))
                            .bind(vec![0x5au8; 1024])
                            .execute(&pool)
                            .await
                            .unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        rates.push(total as f64 / start.elapsed().as_secs_f64());
    }
    pool.close().await;
    pg_admin(pg, &format!("DROP DATABASE {name} WITH (FORCE)")).await;
    let store = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name("atrest")
        .with_region("us-east-1")
        .with_endpoint(s3)
        .with_allow_http(true)
        .build()
        .unwrap();
    let path = object_store::path::Path::from(format!("{name}/raw"));
    let len = blob_mib << 20;
    let t = Instant::now();
    let mut up = WriteMultipart::new_with_chunk_size(store.put_multipart(&path).await.unwrap(), 8 << 20);
    let chunk = vec![0xa5u8; 1 << 20];
    for _ in 0..blob_mib {
        up.wait_for_capacity(2).await.unwrap();
        up.write(&chunk);
    }
    up.finish().await.unwrap();
    let put = len as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut got = 0u64;
    let mut body = store.get(&path).await.unwrap().into_stream();
    while let Some(c) = body.next().await {
        got += c.unwrap().len() as u64;
    }
    assert_eq!(got, len);
    let get = len as f64 / t.elapsed().as_secs_f64();
    store.delete(&path).await.unwrap();
    println!(
        "\nRaw engines in this run: PostgreSQL 1 KiB INSERT+COMMIT {:.0}/s at concurrency 16, {:.0}/s at 64;",
        rates[0], rates[1]
    );
    println!(
        "S3 (SeaweedFS) {blob_mib} MiB body PUT {:.3} GB/s, GET {:.3} GB/s (plain HTTP, no encryption).\n",
        put / 1e9,
        get / 1e9
    );
}

/// Records (1 KiB) and one blob on the embedded default, then on PostgreSQL + S3 with one
/// node and with two nodes in this process (requests spread over both).
async fn backends(secs: f64, blob_mib: u64, dir: &std::path::Path) {
    let pg = std::env::var("ATREST_BENCH_PG").ok();
    let s3 = std::env::var("ATREST_BENCH_S3").ok();
    std::fs::create_dir_all(dir).unwrap();
    for f in ["root.key", "infra.key"] {
        let k = atrest_crypto::rand::bytes::<32>().unwrap();
        std::fs::write(dir.join(f), k.iter().map(|b| format!("{b:02x}")).collect::<String>()).unwrap();
    }
    let mut runs: Vec<(&str, usize)> = vec![("SQLite + directory (embedded)", 1)];
    if pg.is_some() && s3.is_some() {
        runs.extend([("PostgreSQL + S3 (SeaweedFS)", 1), ("PostgreSQL + S3 (SeaweedFS)", 2)]);
    } else {
        eprintln!("set ATREST_BENCH_PG and ATREST_BENCH_S3 for the PostgreSQL + S3 rows");
    }
    if let (Some(pg), Some(s3)) = (&pg, &s3) {
        raw_engines(pg, s3, secs, blob_mib).await;
    }
    println!("\n### Backends and nodes: records 1 KiB req/s, blob {blob_mib} MiB GB/s, over HTTPS\n");
    println!("| backend | nodes | put c16 | put c64 | get c16 | get c64 | blob up GB/s | blob down GB/s |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, (label, nodes)) in runs.into_iter().enumerate() {
        let embedded = i == 0;
        let db_name = format!("bench_{}_{i}", std::process::id());
        let (database_url, blob_store) = if embedded {
            (None, None)
        } else {
            let admin = pg.as_deref().unwrap();
            pg_admin(admin, &format!("CREATE DATABASE {db_name}")).await;
            (
                Some(format!("{}/{db_name}", admin.trim_end_matches('/'))),
                Some(format!("s3://atrest/{db_name}?endpoint={}&region=us-east-1", s3.as_deref().unwrap())),
            )
        };
        let mut servers = Vec::new();
        let mut roots = rustls::RootCertStore::empty();
        for n in 0..nodes {
            let cfg = ServeConfig {
                data_dir: dir.join(format!("run{i}-node{n}")),
                listen: "127.0.0.1:0".parse().unwrap(),
                database_url: database_url.clone(),
                blob_store: blob_store.clone(),
                root_key_file: Some(dir.join("root.key")),
                infra_root_key_file: Some(dir.join("infra.key")),
                rate_limit: 0,
                key_follow_interval_secs: 3600,
                ..ServeConfig::default()
            };
            let server = atrest_server::start(cfg).await.unwrap();
            let ca = std::fs::read(server.ca_pem.as_ref().unwrap()).unwrap();
            for c in rustls_pemfile::certs(&mut ca.as_slice()) {
                let _ = roots.add(c.unwrap());
            }
            servers.push(server);
        }
        let client = client_trusting(roots);
        let token = std::fs::read_to_string(&servers[0].admin_token).unwrap().trim().to_string();
        let bases: Vec<String> = servers.iter().map(|s| format!("https://localhost:{}", s.addr.port())).collect();
        let r = client.put(format!("{}/data/resources/bench", bases[0])).bearer_auth(&token).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let keys = 2000;
        assert_eq!(drive_seed(&client, &token, &bases[0], keys).await, 0, "seeding failed");
        let mut cells = Vec::new();
        for put in [true, false] {
            for conc in [16, 64] {
                let c = drive(&client, &token, &bases, put, conc, secs, keys).await;
                assert_eq!(c.errors, 0, "{label}: errors");
                cells.push(format!("{:.0}", c.rps));
            }
        }
        let (up, down) = if nodes == 1 {
            let (u, d) = blob_round_trip(&client, &token, &bases[0], "blob", blob_mib << 20).await;
            (format!("{:.3}", u / 1e9), format!("{:.3}", d / 1e9))
        } else {
            ("—".to_string(), "—".to_string())
        };
        println!("| {label} | {nodes} | {} | {up} | {down} |", cells.join(" | "));
        for s in servers {
            s.shutdown().await;
        }
        if !embedded {
            pg_admin(pg.as_deref().unwrap(), &format!("DROP DATABASE {db_name} WITH (FORCE)")).await;
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A server on the embedded default for a benchmark (no rate limit, no key following).
fn bench_config(data_dir: std::path::PathBuf) -> ServeConfig {
    ServeConfig {
        data_dir,
        listen: "127.0.0.1:0".parse().unwrap(),
        rate_limit: 0,
        key_follow_interval_secs: 3600,
        ..ServeConfig::default()
    }
}

/// Starts `cfg`; returns the server, a client trusting its CA, its admin token and URL.
async fn bench_server(cfg: ServeConfig) -> (atrest_server::Server, Client, String, String) {
    let server = atrest_server::start(cfg).await.unwrap();
    let ca = std::fs::read(server.ca_pem.as_ref().unwrap()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let client = client_trusting(roots);
    let token = std::fs::read_to_string(&server.admin_token).unwrap().trim().to_string();
    let base = format!("https://localhost:{}", server.addr.port());
    (server, client, token, base)
}

/// The rollback anchor's cost: the same record load against a server with the anchor and
/// one without, in interleaved rounds; medians of req/s and of the ratio.
async fn anchor_cost(secs: f64, dir: &std::path::Path) {
    let rounds: usize = env("ATREST_BENCH_ROUNDS", 5);
    let mut servers = Vec::new();
    for (i, anchor) in [true, false].into_iter().enumerate() {
        let cfg = ServeConfig { rollback_anchor: anchor, ..bench_config(dir.join(format!("n{i}"))) };
        let (server, client, token, base) = bench_server(cfg).await;
        let r = client.put(format!("{base}/data/resources/bench")).bearer_auth(&token).send().await.unwrap();
        assert!(r.status().is_success());
        assert_eq!(drive_seed(&client, &token, &base, 2000).await, 0, "seeding failed");
        servers.push((server, client, token, base));
    }
    let cells: [(&str, bool, usize); 4] =
        [("put 1 KiB", true, 1), ("put 1 KiB", true, 16), ("put 1 KiB", true, 64), ("get 1 KiB", false, 16)];
    // results[cell][server] = req/s per round
    let mut results = vec![[Vec::new(), Vec::new()]; cells.len()];
    for _ in 0..rounds {
        for (c, (_, put, conc)) in cells.iter().enumerate() {
            for (s, (_, client, token, base)) in servers.iter().enumerate() {
                let cell = drive(client, token, std::slice::from_ref(base), *put, *conc, secs, 2000).await;
                assert_eq!(cell.errors, 0);
                results[c][s].push(cell.rps);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "\n### The rollback anchor's cost (embedded default, medians of {rounds} interleaved rounds of {secs} s)\n"
    );
    println!("| operation | concurrency | with anchor req/s | without req/s | ratio |");
    println!("|---|---:|---:|---:|---:|");
    for (c, (name, _, conc)) in cells.iter().enumerate() {
        let ratios: Vec<f64> = results[c][0].iter().zip(&results[c][1]).map(|(a, b)| a / b).collect();
        let (on, off) = (median(&mut results[c][0].clone()), median(&mut results[c][1].clone()));
        println!("| {name} | {conc} | {on:.0} | {off:.0} | {:.2} |", median(&mut ratios.clone()));
    }
    for (server, ..) in servers {
        server.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(dir);
}
