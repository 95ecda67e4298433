//! Requests per second of the key operations over HTTPS against the real server on
//! loopback (TLS, keep-alive HTTP/1.1 connections, bearer auth, authorization, the audit
//! append every key use makes), at concurrency 1, 16 and 64, for RSA-2048 and oct-256
//! keys, each next to the same server's bare `/healthz` (the HTTP/TLS ceiling, measured
//! right before at the same concurrency) and the raw in-process primitive on one core;
//! then get-secret against the same server's bare `/healthz` (`ATREST_BENCH_ONLY=secrets`
//! runs only that table).
//!
//! `cargo bench -p atrest-server --bench rps` prints a Markdown table;
//! `ATREST_BENCH_SECS` sets the seconds per cell (default 3), `ATREST_BENCH_DIR` where the
//! data directory goes. The client runs on the
//! same machine as the server, so on a 2-core machine the two share the CPUs: the
//! numbers are a floor for a dedicated server, and the ratio says how much of one core's
//! raw primitive rate a request costs end to end.

use atrest_crypto::SecretKey;
use atrest_crypto::aead::AeadKey;
use atrest_crypto::rsa::{OaepHash, RsaBits, RsaPrivateKey};
use atrest_server::ServeConfig;
use reqwest::Client;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAYLOAD: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"; // 32 zero bytes

fn raw_rate(secs: f64, mut f: impl FnMut()) -> f64 {
    for _ in 0..10 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..10 {
            f();
        }
        n += 10;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

struct Cell {
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

/// `conc` loops sending `body` by POST (or GET, for `None`) to `url` for `secs`.
async fn drive(client: &Client, token: &str, url: String, body: Option<Value>, conc: usize, secs: f64) -> Cell {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, token, url, body) = (client.clone(), token.to_string(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let req = match &body {
                    Some(b) => client.post(&url).json(b),
                    None => client.get(&url),
                };
                match req.bearer_auth(&token).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
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
        p50: pct(0.50).unwrap_or_default(),
        p99: pct(0.99).unwrap_or_default(),
        errors,
    }
}

#[tokio::main]
async fn main() {
    let secs: f64 = std::env::var("ATREST_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    // ATREST_BENCH_ONLY=secrets: only the get-secret table.
    let only_secrets = std::env::var("ATREST_BENCH_ONLY").is_ok_and(|v| v == "secrets");
    // ATREST_BENCH_DIR puts the data directory elsewhere (e.g. /dev/shm, to see what the
    // database's fsyncs cost).
    let parent = std::env::var_os("ATREST_BENCH_DIR").map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let dir = parent.join(format!("atrest-rps-{}", std::process::id()));
    let cfg = ServeConfig {
        data_dir: dir.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        rate_limit: 0,
        ..ServeConfig::default()
    };
    let server = atrest_server::start(cfg).await.unwrap();
    let ca = std::fs::read(server.ca_pem.as_ref().unwrap()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client = Client::builder().use_preconfigured_tls(tls).http1_only().pool_max_idle_per_host(128).build().unwrap();
    let token = std::fs::read_to_string(&server.admin_token).unwrap();
    let base = format!("https://localhost:{}", server.addr.port());
    if only_secrets {
        secrets(&client, &token, &base, secs).await;
        server.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let call = |path: &str, body: Value| {
        let (client, token, url) = (client.clone(), token.clone(), format!("{base}{path}?api-version=7.5"));
        async move {
            let r = client.post(url).bearer_auth(token).json(&body).send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
            r.json::<Value>().await.unwrap()
        }
    };
    call("/keys/rsa/create", json!({"kty": "RSA", "key_size": 2048})).await;
    call("/keys/oct/create", json!({"kty": "oct"})).await;
    let rsa_wrapped =
        call("/keys/rsa//wrapkey", json!({"alg": "RSA-OAEP-256", "value": PAYLOAD})).await["value"].clone();
    let oct_wrapped = call("/keys/oct//wrapkey", json!({"alg": "A256KW", "value": PAYLOAD})).await["value"].clone();
    let rsa_ct = call("/keys/rsa//encrypt", json!({"alg": "RSA-OAEP-256", "value": PAYLOAD})).await["value"].clone();
    let gcm = call("/keys/oct//encrypt", json!({"alg": "A256GCM", "value": PAYLOAD})).await;

    // Raw primitives, one core, same run.
    let raw_secs = (secs / 3.0).max(0.5);
    let rsa = RsaPrivateKey::generate(RsaBits::B2048).unwrap();
    let ct = rsa.public_key().encrypt_oaep(OaepHash::Sha256, &[0; 32], None).unwrap();
    let raw_rsa_pub = raw_rate(raw_secs, || {
        std::hint::black_box(rsa.public_key().encrypt_oaep(OaepHash::Sha256, &[0; 32], None).unwrap());
    });
    let raw_rsa_priv = raw_rate(raw_secs, || {
        std::hint::black_box(rsa.decrypt_oaep(OaepHash::Sha256, &ct, None).unwrap());
    });
    let aes = SecretKey::from_slice(&[7; 32]).unwrap();
    let kw = atrest_crypto::keywrap::wrap_kw(&aes, &[0; 32]).unwrap();
    let raw_kw = raw_rate(raw_secs, || {
        std::hint::black_box(atrest_crypto::keywrap::wrap_kw(&aes, &[0; 32]).unwrap());
    });
    let raw_kuw = raw_rate(raw_secs, || {
        std::hint::black_box(atrest_crypto::keywrap::unwrap_kw(&aes, &kw).unwrap());
    });
    let gcm_key = AeadKey::new(&aes).unwrap();
    let raw_gcm = raw_rate(raw_secs, || {
        let mut buf = [0u8; 32];
        std::hint::black_box(gcm_key.seal_in_place([1; 12], &[], &mut buf).unwrap());
    });

    let cases: Vec<(&str, &str, Value, f64)> = vec![
        ("RSA-2048", "wrapKey RSA-OAEP-256", json!({"alg": "RSA-OAEP-256", "value": PAYLOAD}), raw_rsa_pub),
        ("RSA-2048", "unwrapKey RSA-OAEP-256", json!({"alg": "RSA-OAEP-256", "value": rsa_wrapped}), raw_rsa_priv),
        ("RSA-2048", "encrypt RSA-OAEP-256", json!({"alg": "RSA-OAEP-256", "value": PAYLOAD}), raw_rsa_pub),
        ("RSA-2048", "decrypt RSA-OAEP-256", json!({"alg": "RSA-OAEP-256", "value": rsa_ct}), raw_rsa_priv),
        ("oct-256", "wrapKey A256KW", json!({"alg": "A256KW", "value": PAYLOAD}), raw_kw),
        ("oct-256", "unwrapKey A256KW", json!({"alg": "A256KW", "value": oct_wrapped}), raw_kuw),
        ("oct-256", "encrypt A256GCM", json!({"alg": "A256GCM", "value": PAYLOAD}), raw_gcm),
        (
            "oct-256",
            "decrypt A256GCM",
            json!({"alg": "A256GCM", "value": gcm["value"], "iv": gcm["iv"], "tag": gcm["tag"]}),
            raw_gcm,
        ),
    ];
    println!(
        "| key | operation | concurrency | req/s | p50 ms | p99 ms | /healthz req/s | ÷ /healthz | raw op/s (1 core) | \
         ÷ raw | errors |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (kty, op, body, raw) in cases {
        let name = if kty == "RSA-2048" { "rsa" } else { "oct" };
        let path = op.split(' ').next().unwrap().to_ascii_lowercase();
        for conc in [1, 16, 64] {
            let url = format!("{base}/keys/{name}//{path}?api-version=7.5");
            // The HTTP/TLS ceiling, measured right before, at the same concurrency.
            let h = drive(&client, &token, format!("{base}/healthz"), None, conc, secs / 2.0).await;
            let c = drive(&client, &token, url, Some(body.clone()), conc, secs).await;
            println!(
                "| {kty} | {op} | {conc} | {:.0} | {:.2} | {:.2} | {:.0} | {:.3} | {:.0} | {:.3} | {} |",
                c.rps,
                c.p50.as_secs_f64() * 1e3,
                c.p99.as_secs_f64() * 1e3,
                h.rps,
                c.rps / h.rps,
                raw,
                c.rps / raw,
                c.errors + h.errors
            );
        }
    }
    println!();
    secrets(&client, &token, &base, secs).await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Get-secret (a 1 KiB value) against the same server's bare `/healthz` (TLS, HTTP, no
/// database): interleaved, three rounds per concurrency, medians.
async fn secrets(client: &Client, token: &str, base: &str, secs: f64) {
    let value = "s".repeat(1024);
    let r = client
        .put(format!("{base}/secrets/bench-secret?api-version=7.5"))
        .bearer_auth(token)
        .json(&json!({ "value": value }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    println!("| operation | concurrency | req/s | p50 ms | p99 ms | /healthz req/s (same run) | ratio | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for conc in [1, 16, 64] {
        let (mut get, mut health, mut p50, mut p99, mut errors) = (vec![], vec![], vec![], vec![], 0);
        for _ in 0..3 {
            let h = drive(client, token, format!("{base}/healthz"), None, conc, secs / 2.0).await;
            health.push(h.rps);
            let url = format!("{base}/secrets/bench-secret/?api-version=7.5");
            let c = drive(client, token, url, None, conc, secs).await;
            get.push(c.rps);
            p50.push(c.p50.as_secs_f64() * 1e3);
            p99.push(c.p99.as_secs_f64() * 1e3);
            errors += c.errors + h.errors;
        }
        let (g, h) = (median(get), median(health));
        println!(
            "| get-secret 1 KiB | {conc} | {g:.0} | {:.2} | {:.2} | {h:.0} | {:.3} | {errors} |",
            median(p50),
            median(p99),
            g / h
        );
    }
}
