//! Crash consistency of the embedded default, with real processes: writers (records and
//! keys, three at a time) against `atrest serve`, which is killed with SIGKILL mid-write;
//! after each restart every acknowledged write reads back byte-identical. Then the
//! damaged-WAL campaign: after a SIGKILL (the WALs hold acknowledged commits) one bit of
//! a WAL is flipped; the server must either refuse to start (the rollback anchor) or
//! serve every acknowledged write — a silent loss fails the test.
//!
//! `ATREST_CRASH_CYCLES` sets the cycles per test (CI runs a few;
//! `scripts/crash-campaign.sh` many); `ATREST_CRASH_SEED` replays a campaign.

mod common;
use common::{Dir, Server};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn cycles(default: usize) -> usize {
    std::env::var("ATREST_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A small deterministic generator (xorshift), seeded per run and printed.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::env::var("ATREST_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            u64::from(std::process::id()) ^ std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos() as u64
        });
        eprintln!("ATREST_CRASH_SEED={seed}");
        Self(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// The bytes written under `name`: deterministic, 16 B to 2 KiB.
fn value_of(name: &str) -> Vec<u8> {
    let h = atrest_crypto::hash::sha256(&[name.as_bytes()]);
    let len = 16 + usize::from(h[0]) * 8;
    (0..len).map(|i| h[i % 32] ^ (i as u8)).collect()
}

#[derive(Default)]
struct Acked {
    records: Vec<String>,
    keys: Vec<String>,
}

/// Writes from three tasks for `run_for`, then kills the server with SIGKILL while they
/// are still writing; returns what was acknowledged.
async fn write_then_kill(server: Server, tag: &str, run_for: Duration, acked: &Arc<Mutex<Acked>>) {
    let (client, token) = server.http();
    let base = server.url.clone();
    let mut tasks = Vec::new();
    for w in 0..3 {
        let (client, token, base, acked, tag) =
            (client.clone(), token.clone(), base.clone(), acked.clone(), tag.to_string());
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let name = format!("{tag}-{w}-{n}");
                if n % 8 == 7 {
                    let url = format!("{base}/keys/{name}/create?api-version=7.5");
                    let body = serde_json::json!({"kty": "oct", "key_size": 256});
                    match client.post(url).bearer_auth(&token).json(&body).send().await {
                        Ok(r) if r.status().is_success() => acked.lock().unwrap().keys.push(name),
                        Ok(r) => panic!("key create answered {}", r.status()),
                        Err(_) => return,
                    }
                } else {
                    let url = format!("{base}/data/resources/crash/records/{name}");
                    match client.put(url).bearer_auth(&token).body(value_of(&name)).send().await {
                        Ok(r) if r.status().is_success() => acked.lock().unwrap().records.push(name),
                        Ok(r) => panic!("record put answered {}", r.status()),
                        Err(_) => return,
                    }
                }
            }
        }));
    }
    tokio::time::sleep(run_for).await;
    server.kill();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Every acknowledged write, read back; returns the names that are missing or differ.
async fn lost(server: &Server, acked: &Mutex<Acked>) -> Vec<String> {
    let (client, token) = server.http();
    let (records, keys) = {
        let a = acked.lock().unwrap();
        (a.records.clone(), a.keys.clone())
    };
    let mut lost = Vec::new();
    for name in records {
        let r = client.get(format!("{}/data/resources/crash/records/{name}", server.url)).bearer_auth(&token);
        let r = r.send().await.unwrap();
        if !r.status().is_success() || r.bytes().await.unwrap().as_ref() != value_of(&name).as_slice() {
            lost.push(name);
        }
    }
    for name in keys {
        let r = client.get(format!("{}/keys/{name}?api-version=7.5", server.url)).bearer_auth(&token);
        if !r.send().await.unwrap().status().is_success() {
            lost.push(format!("key {name}"));
        }
    }
    lost
}

fn first_start(dir: &std::path::Path) -> Server {
    let server = Server::start(dir, &[]);
    server.ok(&["resource", "create", "crash"]);
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = Dir::new("crash");
    let mut rng = Rng::new();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut server = first_start(&dir.0);
    let n = cycles(3);
    for c in 0..n {
        let ms = 300 + rng.below(1200);
        write_then_kill(server, &format!("c{c}"), Duration::from_millis(ms), &acked).await;
        server = Server::start(&dir.0, &[]);
        let missing = lost(&server, &acked).await;
        assert!(missing.is_empty(), "cycle {c}: acknowledged writes lost after SIGKILL: {missing:?}");
    }
    let a = acked.lock().unwrap();
    eprintln!("{n} SIGKILL cycles: {} records and {} keys acknowledged, none lost", a.records.len(), a.keys.len());
    drop(a);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_wal_is_never_served_silently() {
    let dir = Dir::new("crash-wal");
    let mut rng = Rng::new();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut server = first_start(&dir.0);
    let (mut refused, mut harmless) = (0, 0);
    let n = cycles(4);
    for c in 0..n {
        write_then_kill(server, &format!("w{c}"), Duration::from_millis(400 + rng.below(800)), &acked).await;
        let wals: Vec<_> = ["atrest.db-wal", "store.db-wal"]
            .iter()
            .map(|f| dir.0.join(f))
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
            .collect();
        assert!(!wals.is_empty(), "after SIGKILL the WALs hold the last commits");
        let wal = &wals[usize::try_from(rng.below(wals.len() as u64)).unwrap()];
        let original = std::fs::read(wal).unwrap();
        // The first cycle damages the first frame's page (32-byte WAL header, 24-byte
        // frame header): every commit in the WAL is then lost, and that must be refused.
        // The others pick any byte.
        let at = if c == 0 { 32 + 24 + 100 } else { usize::try_from(rng.below(original.len() as u64)).unwrap() };
        let mut damaged = original.clone();
        damaged[at] ^= 1 << rng.below(8);
        std::fs::write(wal, &damaged).unwrap();
        match Server::try_start(&dir.0, &[]) {
            Err(msg) => {
                assert!(msg.contains("rollback detected"), "cycle {c}: refused for another reason: {msg}");
                assert_eq!(std::fs::read(wal).unwrap(), damaged, "a refused start leaves the WAL as it found it");
                refused += 1;
                // Put the byte back: the WAL is whole again and nothing was lost.
                std::fs::write(wal, &original).unwrap();
                server = Server::start(&dir.0, &[]);
            }
            Ok(s) => {
                harmless += 1;
                server = s;
            }
        }
        let missing = lost(&server, &acked).await;
        assert!(
            missing.is_empty(),
            "cycle {c}: flipping byte {at} of {} lost acknowledged writes silently: {missing:?}",
            wal.display()
        );
    }
    eprintln!("{n} WAL flips: {refused} refused at start (rollback detected), {harmless} served with nothing lost");
    assert!(refused >= 1, "the damaged first frame was not refused");
    server.stop();
}

/// A256GCM uses are counted against the 2^32 limit in blocks reserved durably before any
/// encryption of the block is released: after SIGKILL mid-load, the stored count is at
/// least the encryptions answered, and a restarted server counts on from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gcm_usage_count_never_falls_behind_after_sigkill() {
    let dir = Dir::new("crash-gcm");
    let server = Server::start(&dir.0, &[]);
    let (client, token) = server.http();
    let base = server.url.clone();
    let r = client
        .post(format!("{base}/keys/gcm/create?api-version=7.5"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"kty": "oct"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let released = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (client, token, base, released) = (client.clone(), token.clone(), base.clone(), released.clone());
        tasks.push(tokio::spawn(async move {
            let body = serde_json::json!({"alg": "A256GCM", "value": "AAAAAAAAAAAAAAAAAAAAAA"});
            loop {
                let url = format!("{base}/keys/gcm//encrypt?api-version=7.5");
                match client.post(url).bearer_auth(&token).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        released.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(r) => panic!("encrypt answered {}", r.status()),
                    Err(_) => return,
                }
            }
        }));
    }
    // Past the first block of uses (1024), so a reservation happens under load.
    while released.load(std::sync::atomic::Ordering::SeqCst) < 1500 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    for t in tasks {
        t.await.unwrap();
    }
    let released = released.load(std::sync::atomic::Ordering::SeqCst);
    let count = || async {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=ro", dir.0.join("atrest.db").display());
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT gcm_count FROM key_versions WHERE name_lc = 'gcm'")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    };
    let stored = count().await;
    assert!(stored >= released, "stored count {stored} < {released} encryptions answered before SIGKILL");
    // A restarted server reserves its next block above what is stored.
    let server = Server::start(&dir.0, &[]);
    let (client, token) = server.http();
    let r = client
        .post(format!("{}/keys/gcm//encrypt?api-version=7.5", server.url))
        .bearer_auth(&token)
        .json(&serde_json::json!({"alg": "A256GCM", "value": "AAAAAAAAAAAAAAAAAAAAAA"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    server.stop();
    assert_eq!(count().await, stored + 1024, "one more block, counted from the stored mark");
}
