//! Throughput of the record and stream formats against raw AES-256-GCM, measured in the
//! same run (these machines are noisy: compare ratios, not absolute numbers).
//!
//! `cargo bench -p atrest-crypto --bench throughput` prints a Markdown table;
//! add `--features fips` for the FIPS build. `-- --quick` shortens every measurement.
//! The 1 GiB stream's peak RSS is measured in a child process that streams
//! generated plaintext through a file and back, so no 1 GiB buffer is ever in memory.

use atrest_crypto::SecretKey;
use atrest_crypto::aead::Provider;
use atrest_crypto::record;
use atrest_crypto::stream::{DecryptingReader, EncryptingWriter};
use std::hint::black_box;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const GIB: usize = 1024 * MIB;
const CTX: &[&[u8]] = &[b"bench-resource", b"bench-object", b"1"];

struct Cfg {
    runs: usize,
    target: Duration,
}

/// Median GB/s of `runs` runs, each calling `f` (which processes `bytes`) for ≥ `target`.
fn measure(cfg: &Cfg, bytes: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm up caches and lazy init
    let mut rates: Vec<f64> = (0..cfg.runs)
        .map(|_| {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < cfg.target {
                f();
                n += 1;
            }
            (n as f64 * bytes as f64) / start.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn raw_aws_lc(key: &[u8]) -> aws_lc_rs::aead::LessSafeKey {
    aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, key).unwrap(),
    )
}

fn raw_ring(key: &[u8]) -> ring::aead::LessSafeKey {
    ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, key).unwrap(),
    )
}

/// Rate of an in-place open: each call restores the sealed bytes first, and the time of
/// that copy, measured on its own, is subtracted.
fn open_rate(cfg: &Cfg, size: usize, pristine: &[u8], mut open: impl FnMut(&mut [u8])) -> f64 {
    let mut work = pristine.to_vec();
    let copy = measure(cfg, size, || {
        work.copy_from_slice(pristine);
        black_box(&mut work);
    });
    let both = measure(cfg, size, || {
        work.copy_from_slice(pristine);
        open(&mut work);
    });
    1.0 / (1.0 / both - 1.0 / copy)
}

/// Raw seal and open of `size` bytes in place: [aws-lc seal, aws-lc open, ring seal, ring open].
fn raw(cfg: &Cfg, size: usize) -> [f64; 4] {
    use aws_lc_rs::aead as lc;
    use ring::aead as rg;
    let key = [7u8; 32];
    let (a, r) = (raw_aws_lc(&key), raw_ring(&key));
    let n = [0u8; 12];
    let mut buf = vec![1u8; size];
    let a_seal = measure(cfg, size, || {
        let _ = black_box(
            a.seal_in_place_separate_tag(
                lc::Nonce::assume_unique_for_key(n),
                lc::Aad::empty(),
                &mut buf,
            )
            .unwrap(),
        );
    });
    let r_seal = measure(cfg, size, || {
        let _ = black_box(
            r.seal_in_place_separate_tag(
                rg::Nonce::assume_unique_for_key(n),
                rg::Aad::empty(),
                &mut buf,
            )
            .unwrap(),
        );
    });
    let mut sealed = vec![1u8; size];
    let tag = a
        .seal_in_place_separate_tag(
            lc::Nonce::assume_unique_for_key(n),
            lc::Aad::empty(),
            &mut sealed,
        )
        .unwrap();
    let tag: [u8; 16] = tag.as_ref().try_into().unwrap();
    let a_open = open_rate(cfg, size, &sealed, |b| {
        a.open_in_place_separate_tag(
            lc::Nonce::assume_unique_for_key(n),
            lc::Aad::empty(),
            &tag,
            b,
        )
        .unwrap();
    });
    let r_open = open_rate(cfg, size, &sealed, |b| {
        r.open_in_place_separate_tag(
            rg::Nonce::assume_unique_for_key(n),
            rg::Aad::empty(),
            rg::Tag::from(tag),
            b,
            0..,
        )
        .unwrap();
    });
    [a_seal, a_open, r_seal, r_open]
}

fn record_rates(cfg: &Cfg, size: usize) -> (f64, f64) {
    let dk = SecretKey::generate().unwrap();
    let mut buf = vec![3u8; record::sealed_len(size)];
    let seal = measure(cfg, size, || {
        record::seal_in_place(&dk, CTX, &mut buf).unwrap()
    });
    record::seal_in_place(&dk, CTX, &mut buf).unwrap();
    let open = open_rate(cfg, size, &buf, |b| {
        black_box(record::open_in_place(&dk, CTX, b).unwrap());
    });
    (seal, open)
}

fn stream_rates(cfg: &Cfg) -> (f64, f64) {
    let dk = SecretKey::generate().unwrap();
    let chunk = vec![5u8; 64 * KIB];
    let runs = cfg.runs.min(3);
    let mut enc = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let mut w = EncryptingWriter::new(&dk, CTX, std::io::sink()).unwrap();
        for _ in 0..GIB / chunk.len() {
            w.write_all(&chunk).unwrap();
        }
        w.finish().unwrap();
        enc.push(GIB as f64 / start.elapsed().as_secs_f64() / 1e9);
    }
    let mut sealed = Vec::with_capacity(GIB + GIB / 64 * KIB / 1024 + 4096);
    let mut w = EncryptingWriter::new(&dk, CTX, &mut sealed).unwrap();
    for _ in 0..GIB / chunk.len() {
        w.write_all(&chunk).unwrap();
    }
    w.finish().unwrap();
    let mut dec = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let mut r = DecryptingReader::new(&dk, CTX, &sealed[..]).unwrap();
        let mut n = 0;
        while let Some(c) = r.next_chunk().unwrap() {
            n += c.len();
        }
        assert_eq!(n, GIB);
        dec.push(GIB as f64 / start.elapsed().as_secs_f64() / 1e9);
    }
    enc.sort_by(f64::total_cmp);
    dec.sort_by(f64::total_cmp);
    (enc[enc.len() / 2], dec[dec.len() / 2])
}

/// Child process: 1 GiB through a file and back; prints peak RSS in KiB.
fn rss_child() {
    let dk = SecretKey::generate().unwrap();
    let path = std::env::temp_dir().join(format!("atrest-bench-{}.stream", std::process::id()));
    let chunk = vec![9u8; 64 * KIB];
    let mut w = EncryptingWriter::new(&dk, CTX, std::fs::File::create(&path).unwrap()).unwrap();
    for _ in 0..GIB / chunk.len() {
        w.write_all(&chunk).unwrap();
    }
    w.finish().unwrap();
    let mut r = DecryptingReader::new(&dk, CTX, std::fs::File::open(&path).unwrap()).unwrap();
    let mut buf = vec![0u8; 64 * KIB];
    let mut n = 0;
    loop {
        let k = r.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        n += k;
    }
    assert_eq!(n, GIB);
    std::fs::remove_file(&path).unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    println!("{}", hwm.split_whitespace().nth(1).unwrap());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--rss-child") {
        rss_child();
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let cfg = if quick {
        Cfg {
            runs: 3,
            target: Duration::from_millis(60),
        }
    } else {
        Cfg {
            runs: 7,
            target: Duration::from_millis(250),
        }
    };
    let provider = Provider::fastest();
    let build = if atrest_crypto::is_fips_build() {
        "fips"
    } else {
        "default"
    };
    println!(
        "build: {build}; format AEAD provider: {}; CPU AVX-512: {}",
        provider.name(),
        avx512()
    );
    println!();
    println!(
        "| workload | op | raw aws-lc GB/s | raw ring GB/s | atrest GB/s | ratio vs same-provider raw | ratio vs fastest raw |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (name, size) in [
        ("record 1 KiB", KIB),
        ("record 64 KiB", 64 * KIB),
        ("record 1 MiB", MIB),
    ] {
        let [a_seal, a_open, r_seal, r_open] = raw(&cfg, size);
        let (seal, open) = record_rates(&cfg, size);
        row(name, "seal", a_seal, r_seal, seal, provider);
        row(name, "open", a_open, r_open, open, provider);
    }
    // Raw baseline for the stream: the same 64 KiB in-place operation its segments use.
    let [a_seal, a_open, r_seal, r_open] = raw(&cfg, 64 * KIB);
    let (enc, dec) = stream_rates(&cfg);
    row("stream 1 GiB", "encrypt", a_seal, r_seal, enc, provider);
    row("stream 1 GiB", "decrypt", a_open, r_open, dec, provider);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--rss-child")
        .output()
        .unwrap();
    let kib: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    println!();
    println!(
        "peak RSS of a process that streams 1 GiB to a file and back: {:.1} MiB",
        kib as f64 / 1024.0
    );
}

fn row(name: &str, op: &str, aws: f64, ring: f64, ours: f64, provider: Provider) {
    let same = match provider.name() {
        "ring" => ring,
        _ => aws,
    };
    let fastest = aws.max(ring);
    println!(
        "| {name} | {op} | {aws:.2} | {ring:.2} | {ours:.2} | {:.3} | {:.3} |",
        ours / same,
        ours / fastest
    );
}

fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
