//! The S3 front end against SeaweedFS's own S3 server: the same client (arrow-rs
//! `object_store`'s AmazonS3: SigV4, path-style, keep-alive) over TLS to both, SSE-S3 asked
//! on every put to both (`x-amz-server-side-encryption: AES256`), in the same run:
//!
//! 1. 1 KiB puts and gets at concurrency 16 and 64 (ops/s, p50, p99);
//! 2. one 256 MiB object up and down (GB/s);
//!
//! in interleaved rounds (atrest, SeaweedFS, atrest, …), reporting medians and the median
//! of the per-round ratios atrest ÷ SeaweedFS; then
//!
//! 3. atrest's latency for one ListObjectsV2 page of 1,000 keys in a bucket of 10 k and of
//!    1 M objects (seeded through the front end), at the start, the middle and the end of
//!    the key space.
//!
//! `scripts/bench-s3.sh` starts SeaweedFS with TLS and runs this. Settings:
//! `ATREST_BENCH_SEAWEED` (its HTTPS endpoint; bucket `bench`), `ATREST_BENCH_SEAWEED_CA`,
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (its credentials), `ATREST_BENCH_SECS`
//! (per cell, default 3), `ATREST_BENCH_ROUNDS` (default 3), `ATREST_BENCH_BIG_MIB`
//! (default 256), `ATREST_BENCH_LIST_MAX` (default 1000000; 0 skips the listing),
//! `ATREST_BENCH_DIR` (atrest's data directory's parent). Without `ATREST_BENCH_SEAWEED`
//! only atrest runs.

use atrest_server::ServeConfig;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn client(endpoint: &str, ca: &std::path::Path, bucket: &str, id: &str, secret: &str) -> Arc<AmazonS3> {
    let cert = object_store::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id(id)
            .with_secret_access_key(secret)
            .with_virtual_hosted_style_request(false)
            .with_config("aws_server_side_encryption".parse::<AmazonS3ConfigKey>().unwrap(), "AES256")
            .with_client_options(
                ClientOptions::new().with_root_certificate(cert).with_pool_max_idle_per_host(128).with_http1_only(),
            )
            .with_retry(object_store::RetryConfig { max_retries: 0, ..Default::default() })
            .build()
            .unwrap(),
    )
}

#[derive(Clone, Copy, Default)]
struct Cell {
    ops: f64,
    p50: f64,
    p99: f64,
    errors: u64,
}

/// `conc` tasks putting (or getting) 1 KiB objects for `secs`.
async fn drive(s: &Arc<AmazonS3>, put: bool, conc: usize, secs: f64, keys: usize, tag: &str) -> Cell {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let body = PutPayload::from(vec![0x5au8; 1024]);
    let mut tasks = Vec::new();
    for t in 0..conc {
        let (s, body, tag) = (s.clone(), body.clone(), tag.to_string());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut i) = (Vec::new(), 0u64, 0usize);
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let ok = if put {
                    s.put(&Path::from(format!("w/{tag}/{t}/{i}")), body.clone()).await.is_ok()
                } else {
                    match s.get(&Path::from(format!("r/{:07}", (t * 7919 + i) % keys))).await {
                        Ok(g) => g.bytes().await.is_ok(),
                        Err(_) => false,
                    }
                };
                i += 1;
                if ok {
                    lat.push(t0.elapsed().as_secs_f64() * 1e3);
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied();
    Cell { ops: all.len() as f64 / elapsed, p50: pct(0.5).unwrap_or(0.0), p99: pct(0.99).unwrap_or(0.0), errors }
}

/// Puts `n` objects `prefix{i:07}` of `len` bytes, 64 at a time.
async fn seed(s: &Arc<AmazonS3>, prefix: &str, from: usize, n: usize, len: usize) {
    let body = PutPayload::from(vec![0x33u8; len]);
    let errors = futures_util::stream::iter(from..from + n)
        .map(|i| {
            let (s, body) = (s.clone(), body.clone());
            let path = Path::from(format!("{prefix}{i:07}"));
            async move { s.put(&path, body).await.is_err() }
        })
        .buffer_unordered(64)
        .filter(|e| std::future::ready(*e))
        .count()
        .await;
    assert_eq!(errors, 0, "seeding failed");
}

/// One 256 MiB object up and down, GB/s each way.
async fn big(s: &Arc<AmazonS3>, mib: usize) -> (f64, f64) {
    let payload = PutPayload::from(bytes::Bytes::from(vec![0xa5u8; mib << 20]));
    let path = Path::from("big/object");
    let t = Instant::now();
    s.put(&path, payload).await.unwrap();
    let up = (mib << 20) as f64 / t.elapsed().as_secs_f64() / 1e9;
    let t = Instant::now();
    let mut stream = s.get(&path).await.unwrap().into_stream();
    let mut got = 0usize;
    while let Some(c) = stream.next().await {
        got += c.unwrap().len();
    }
    assert_eq!(got, mib << 20);
    (up, (mib << 20) as f64 / t.elapsed().as_secs_f64() / 1e9)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// What one round measured on one server: the four small-object cells, then big up/down.
#[derive(Default, Clone)]
struct Round {
    cells: Vec<Cell>,
    big: (f64, f64),
}

const CELLS: [(&str, bool, usize); 4] = [("put", true, 16), ("put", true, 64), ("get", false, 16), ("get", false, 64)];

async fn round(s: &Arc<AmazonS3>, secs: f64, keys: usize, big_mib: usize, r: usize) -> Round {
    let mut out = Round::default();
    for (name, put, conc) in CELLS {
        out.cells.push(drive(s, put, conc, secs, keys, &format!("{name}{conc}-{r}")).await);
    }
    out.big = big(s, big_mib).await;
    out
}

/// One ListObjectsV2 page of 1,000 keys starting after `after`, milliseconds (median of 5).
async fn page_ms(s: &Arc<AmazonS3>, after: &str) -> f64 {
    let mut v = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let prefix = Path::from("l");
        let mut stream = if after.is_empty() {
            s.list(Some(&prefix))
        } else {
            s.list_with_offset(Some(&prefix), &Path::from(after))
        };
        let mut n = 0;
        while n < 1000 {
            match stream.next().await {
                Some(o) => {
                    o.unwrap();
                    n += 1;
                }
                None => break,
            }
        }
        drop(stream);
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    median(v)
}

#[tokio::main]
async fn main() {
    let secs: f64 = env("ATREST_BENCH_SECS", 3.0);
    let rounds: usize = env("ATREST_BENCH_ROUNDS", 3);
    let big_mib: usize = env("ATREST_BENCH_BIG_MIB", 256);
    let list_max: usize = env("ATREST_BENCH_LIST_MAX", 1_000_000);
    let parent = std::env::var_os("ATREST_BENCH_DIR").map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let dir = parent.join(format!("atrest-s3-bench-{}", std::process::id()));
    let cfg = ServeConfig {
        data_dir: dir.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        rate_limit: 0,
        key_follow_interval_secs: 3600,
        ..ServeConfig::default()
    };
    let server = atrest_server::start(cfg).await.unwrap();
    let ca = server.ca_pem.clone().unwrap();
    let token = std::fs::read_to_string(&server.admin_token).unwrap().trim().to_string();
    let api = reqwest_client(&ca);
    let base = format!("https://localhost:{}", server.addr.port());
    let me: serde_json::Value =
        api.get(format!("{base}/admin/whoami")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let key: serde_json::Value = api
        .post(format!("{base}/admin/tenants/default/principals/{}/s3-keys", me["name"].as_str().unwrap()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for b in ["bench", "list"] {
        let r = api.put(format!("{base}/data/resources/{b}")).bearer_auth(&token).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    let (id, secret) = (key["id"].as_str().unwrap(), key["secret"].as_str().unwrap());
    let endpoint = format!("https://localhost:{}", server.s3_addr.port());
    let atrest = client(&endpoint, &ca, "bench", id, secret);
    let mut sides = vec![("atrest", atrest)];
    if let Ok(ep) = std::env::var("ATREST_BENCH_SEAWEED") {
        let ca = std::path::PathBuf::from(std::env::var("ATREST_BENCH_SEAWEED_CA").expect("ATREST_BENCH_SEAWEED_CA"));
        let (kid, ks) = (std::env::var("AWS_ACCESS_KEY_ID").unwrap(), std::env::var("AWS_SECRET_ACCESS_KEY").unwrap());
        let weed = client(&ep, &ca, "bench", &kid, &ks);
        // SSE-S3 must be what it stores: its answer to a put says so.
        let p = weed.put(&Path::from("probe"), PutPayload::from_static(b"x")).await.unwrap();
        assert!(p.e_tag.is_some());
        sides.push(("SeaweedFS", weed));
    }
    let keys = 2000;
    let list_only = std::env::var("ATREST_BENCH_SECTIONS").as_deref() == Ok("list");
    if list_only {
        sides.truncate(0);
    }
    for (_, s) in &sides {
        seed(s, "r/", 0, keys, 1024).await;
    }
    let mut results: Vec<Vec<Round>> = vec![Vec::new(); sides.len()];
    for r in 0..rounds {
        for (i, (_, s)) in sides.iter().enumerate() {
            results[i].push(round(s, secs, keys, big_mib, r).await);
        }
    }
    if !list_only {
        comparison(&results, &sides, rounds, secs, big_mib);
    }
    if list_max > 0 {
        let list = client(&endpoint, &ca, "list", id, secret);
        println!("\n### atrest: one ListObjectsV2 page of 1,000 keys\n");
        println!("| objects in the bucket | first page ms | middle page ms | last page ms | seeding s |");
        println!("|---:|---:|---:|---:|---:|");
        let mut have = 0;
        for n in [10_000usize, list_max] {
            if n < 10_000 || n <= have {
                continue;
            }
            let t = Instant::now();
            seed(&list, "l/", have, n - have, 0).await;
            have = n;
            let seeding = t.elapsed().as_secs_f64();
            let first = page_ms(&list, "").await;
            let middle = page_ms(&list, &format!("l/{:07}", n / 2)).await;
            let last = page_ms(&list, &format!("l/{:07}", n - 1001)).await;
            println!("| {n} | {first:.1} | {middle:.1} | {last:.1} | {seeding:.0} |");
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Prints the comparison table.
fn comparison(results: &[Vec<Round>], sides: &[(&str, Arc<AmazonS3>)], rounds: usize, secs: f64, big_mib: usize) {
    println!(
        "### S3: atrest vs SeaweedFS, same client (object_store), TLS, SSE-S3 ({rounds} interleaved rounds, {secs} s \
         per cell, medians)\n"
    );
    println!("| operation | concurrency | {} | ratio atrest ÷ SeaweedFS (median of rounds) |", {
        sides.iter().map(|(n, _)| format!("{n} ops/s | {n} p50 ms | {n} p99 ms")).collect::<Vec<_>>().join(" | ")
    });
    println!("|---|---:|{}---:|", "---:|".repeat(3 * sides.len()));
    for (c, (name, _, conc)) in CELLS.iter().enumerate() {
        let mut row = format!("| {name} 1 KiB | {conc} |");
        for res in results {
            let cells: Vec<Cell> = res.iter().map(|r| r.cells[c]).collect();
            let errors: u64 = cells.iter().map(|c| c.errors).sum();
            row += &format!(
                " {:.0}{} | {:.2} | {:.2} |",
                median(cells.iter().map(|c| c.ops).collect()),
                if errors > 0 { format!(" ({errors} errors)") } else { String::new() },
                median(cells.iter().map(|c| c.p50).collect()),
                median(cells.iter().map(|c| c.p99).collect()),
            );
        }
        row += &ratio(results, |r| r.cells[c].ops);
        println!("{row}");
    }
    for (label, f) in [("put", 0), ("get", 1)] {
        let pick = move |r: &Round| if f == 0 { r.big.0 } else { r.big.1 };
        let mut row = format!("| {label} {big_mib} MiB (GB/s) | 1 |");
        for res in results {
            row += &format!(" {:.3} | — | — |", median(res.iter().map(pick).collect()));
        }
        row += &ratio(results, pick);
        println!("{row}");
    }
}

/// The median of the per-round ratios of the first side to the second, as a table cell.
fn ratio(results: &[Vec<Round>], f: impl Fn(&Round) -> f64) -> String {
    if results.len() < 2 {
        return " — |".into();
    }
    let r: Vec<f64> = results[0].iter().zip(&results[1]).map(|(a, b)| f(a) / f(b)).collect();
    format!(" {:.2} |", median(r))
}

fn reqwest_client(ca: &std::path::Path) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut std::fs::read(ca).unwrap().as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder().use_preconfigured_tls(tls).build().unwrap()
}
