//! Throughput of the record and stream formats against raw AES-256-GCM, measured in the
//! same run. These machines are noisy (CPU speed drifts by tens of percent within a
//! minute), so every row runs its contenders **interleaved**: one burst of raw AWS-LC,
//! one of raw *ring*, one of atrest, repeated; each repetition gives a ratio, and the
//! table shows medians. Compare ratios, not absolute numbers.
//!
//! `cargo bench -p atrest-crypto --bench throughput` prints a Markdown table; add
//! `--features fips` for the FIPS build, `-- --quick` for a short run. In-place opens
//! destroy their input, so an open burst restores the sealed bytes before each call and
//! the time of that copy, measured in the same burst sequence, is subtracted. The 1 GiB
//! stream's peak RSS is measured in a child process that streams generated plaintext to
//! a file and back, so no 1 GiB buffer is ever in memory there.

use atrest_crypto::SecretKey;
use atrest_crypto::aead::Provider;
use atrest_crypto::record;
use atrest_crypto::stream::{DecryptingReader, EncryptingWriter, HEADER_LEN, SegmentOpener};
use aws_lc_rs::aead as lc;
use ring::aead as rg;
use std::hint::black_box;
use std::io::{Read, Write};
use std::time::Instant;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const GIB: usize = 1024 * MIB;
const CTX: &[&[u8]] = &[b"bench-resource", b"bench-object", b"1"];
const NONCE: [u8; 12] = [0; 12];

/// Seconds per call of each closure: `runs` rounds, each round running every closure
/// `iters` times in turn.
fn interleaved(runs: usize, iters: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<Vec<f64>> {
    for f in fs.iter_mut() {
        f(); // warm-up
    }
    let mut out = vec![Vec::new(); fs.len()];
    for _ in 0..runs {
        for (i, f) in fs.iter_mut().enumerate() {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            out[i].push(start.elapsed().as_secs_f64() / iters as f64);
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One table row: median rates (GB/s) and median per-round ratios.
struct Row {
    aws: f64,
    ring: f64,
    ours: f64,
    vs_same: f64,
    vs_fastest: f64,
}

/// Builds a row from per-call times (seconds) of [aws, ring, ours] over `bytes`.
fn row_from(bytes: usize, t: &[Vec<f64>; 3], provider: Provider) -> Row {
    let rate = |s: f64| bytes as f64 / s / 1e9;
    let same = if provider.name() == "ring" { 1 } else { 0 };
    let rounds = t[0].len();
    let vs_same = median((0..rounds).map(|r| t[same][r] / t[2][r]).collect());
    let vs_fastest = median((0..rounds).map(|r| t[0][r].min(t[1][r]) / t[2][r]).collect());
    Row {
        aws: rate(median(t[0].clone())),
        ring: rate(median(t[1].clone())),
        ours: rate(median(t[2].clone())),
        vs_same,
        vs_fastest,
    }
}

fn keys() -> (lc::LessSafeKey, rg::LessSafeKey) {
    let k = [7u8; 32];
    (
        lc::LessSafeKey::new(lc::UnboundKey::new(&lc::AES_256_GCM, &k).unwrap()),
        rg::LessSafeKey::new(rg::UnboundKey::new(&rg::AES_256_GCM, &k).unwrap()),
    )
}

fn lc_seal(a: &lc::LessSafeKey, buf: &mut [u8]) {
    let _ = black_box(a.seal_in_place_separate_tag(lc::Nonce::assume_unique_for_key(NONCE), lc::Aad::empty(), buf));
}

fn rg_seal(r: &rg::LessSafeKey, buf: &mut [u8]) {
    let _ = black_box(r.seal_in_place_separate_tag(rg::Nonce::assume_unique_for_key(NONCE), rg::Aad::empty(), buf));
}

fn lc_open(a: &lc::LessSafeKey, tag: &[u8; 16], buf: &mut [u8]) {
    a.open_in_place_separate_tag(lc::Nonce::assume_unique_for_key(NONCE), lc::Aad::empty(), tag, buf).unwrap();
}

fn rg_open(r: &rg::LessSafeKey, tag: &[u8; 16], buf: &mut [u8]) {
    let t = rg::Tag::from(*tag);
    r.open_in_place_separate_tag(rg::Nonce::assume_unique_for_key(NONCE), rg::Aad::empty(), t, buf, 0..).unwrap();
}

/// Seals `size` bytes with AWS-LC and returns the ciphertext and tag.
fn raw_sealed(a: &lc::LessSafeKey, size: usize) -> (Vec<u8>, [u8; 16]) {
    let mut buf = vec![1u8; size];
    let tag =
        a.seal_in_place_separate_tag(lc::Nonce::assume_unique_for_key(NONCE), lc::Aad::empty(), &mut buf).unwrap();
    (buf, tag.as_ref().try_into().unwrap())
}

fn iters_for(size: usize, quick: bool) -> usize {
    let per_burst = if quick { 16 * MIB } else { 64 * MIB };
    (per_burst / size).max(1)
}

fn record_seal(size: usize, runs: usize, quick: bool, p: Provider) -> Row {
    let (a, r) = keys();
    let dk = SecretKey::generate().unwrap();
    let (mut b1, mut b2, mut b3) = (vec![1u8; size], vec![1u8; size], vec![1u8; record::sealed_len(size)]);
    let t = interleaved(
        runs,
        iters_for(size, quick),
        &mut [&mut || lc_seal(&a, &mut b1), &mut || rg_seal(&r, &mut b2), &mut || {
            record::seal_in_place(&dk, CTX, &mut b3).unwrap()
        }],
    );
    row_from(size, &[t[0].clone(), t[1].clone(), t[2].clone()], p)
}

/// A row for opening `pieces` × `size` bytes: raw opens (AWS-LC, ring) against `ours`,
/// with the time of restoring the raw inputs (measured as a fourth contender) subtracted
/// from the raw rows. `ours` restores its own input when it opens in place, and
/// `ours_copies` says so, so that copy is subtracted from it too.
fn open_rows(
    size: usize,
    pieces: usize,
    runs: usize,
    iters: usize,
    ours_copies: bool,
    ours: &mut dyn FnMut(),
    p: Provider,
) -> Row {
    let (a, r) = keys();
    let (sealed, tag) = raw_sealed(&a, size);
    let (mut w1, mut w2, mut w4) = (sealed.clone(), sealed.clone(), sealed.clone());
    let t = interleaved(
        runs,
        iters,
        &mut [
            &mut || {
                for _ in 0..pieces {
                    w1.copy_from_slice(&sealed);
                    lc_open(&a, &tag, &mut w1);
                }
            },
            &mut || {
                for _ in 0..pieces {
                    w2.copy_from_slice(&sealed);
                    rg_open(&r, &tag, &mut w2);
                }
            },
            ours,
            &mut || {
                for _ in 0..pieces {
                    w4.copy_from_slice(&sealed);
                    black_box(&mut w4);
                }
            },
        ],
    );
    let minus_copy = |v: &Vec<f64>| v.iter().zip(&t[3]).map(|(x, c)| (x - c).max(1e-12)).collect::<Vec<_>>();
    let ours = if ours_copies { minus_copy(&t[2]) } else { t[2].clone() };
    row_from(size * pieces, &[minus_copy(&t[0]), minus_copy(&t[1]), ours], p)
}

fn record_open(size: usize, runs: usize, quick: bool, p: Provider) -> Row {
    let dk = SecretKey::generate().unwrap();
    let ours_sealed = record::seal(&dk, CTX, &vec![1u8; size]).unwrap();
    let mut w3 = ours_sealed.clone();
    let mut ours = || {
        w3.copy_from_slice(&ours_sealed);
        black_box(record::open_in_place(&dk, CTX, &mut w3).unwrap());
    };
    // The record copy is OVERHEAD bytes longer than the raw one: negligible from 1 KiB up.
    open_rows(size, 1, runs, iters_for(size, quick), true, &mut ours, p)
}

/// 1 GiB through `EncryptingWriter` into a sink in writes of `write_size`, against raw
/// seals of the same 1 GiB in 64 KiB pieces.
fn stream_encrypt(write_size: usize, runs: usize, p: Provider) -> Row {
    let (a, r) = keys();
    let dk = SecretKey::generate().unwrap();
    let chunk = vec![5u8; write_size];
    let (mut b1, mut b2) = (vec![1u8; 64 * KIB], vec![1u8; 64 * KIB]);
    let t = interleaved(
        runs,
        1,
        &mut [
            &mut || (0..GIB / (64 * KIB)).for_each(|_| lc_seal(&a, &mut b1)),
            &mut || (0..GIB / (64 * KIB)).for_each(|_| rg_seal(&r, &mut b2)),
            &mut || {
                let mut w = EncryptingWriter::new(&dk, CTX, std::io::sink()).unwrap();
                for _ in 0..GIB / write_size {
                    w.write_all(&chunk).unwrap();
                }
                w.finish().unwrap();
            },
        ],
    );
    row_from(GIB, &[t[0].clone(), t[1].clone(), t[2].clone()], p)
}

/// Decrypts a 1 GiB stream held in memory, against raw opens of 1 GiB in 64 KiB pieces.
/// `segment_api`: open each segment out of place into one reused buffer; otherwise
/// `DecryptingReader::next_chunk`, which copies each sealed segment into its buffer as a
/// read from a file or socket would.
fn stream_decrypt(sealed: &[u8], dk: &SecretKey, segment_api: bool, runs: usize, p: Provider) -> Row {
    let mut ours = || {
        if segment_api {
            let opener = SegmentOpener::new(dk, CTX, &sealed[..HEADER_LEN]).unwrap();
            let mut out = vec![0u8; 64 * KIB];
            let body = &sealed[HEADER_LEN..];
            let count = body.len().div_ceil(64 * KIB + 16);
            for (i, seg) in body.chunks(64 * KIB + 16).enumerate() {
                let n = seg.len() - 16;
                opener.open_segment_to(i as u64, i + 1 == count, seg, &mut out[..n]).unwrap();
                black_box(&out);
            }
        } else {
            let mut rd = DecryptingReader::new(dk, CTX, sealed).unwrap();
            let mut n = 0;
            while let Some(c) = rd.next_chunk().unwrap() {
                n += c.len();
            }
            assert_eq!(n, GIB);
        }
    };
    open_rows(64 * KIB, GIB / (64 * KIB), runs, 1, false, &mut ours, p)
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

fn print(name: &str, op: &str, r: &Row) {
    println!(
        "| {name} | {op} | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} |",
        r.aws, r.ring, r.ours, r.vs_same, r.vs_fastest
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--rss-child") {
        rss_child();
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let (runs, stream_runs) = if quick { (5, 3) } else { (11, 5) };
    let p = Provider::fastest();
    let build = if atrest_crypto::is_fips_build() { "fips" } else { "default" };
    println!("build: {build}; format AEAD provider: {}; rounds per row: {runs} (streams {stream_runs})", p.name());
    println!();
    println!(
        "| workload | op | raw aws-lc GB/s | raw ring GB/s | atrest GB/s | ratio vs same-provider raw | ratio vs fastest raw |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (name, size) in [("record 1 KiB", KIB), ("record 64 KiB", 64 * KIB), ("record 1 MiB", MIB)] {
        print(name, "seal", &record_seal(size, runs, quick, p));
        print(name, "open", &record_open(size, runs, quick, p));
    }
    print("stream 1 GiB, 64 KiB writes", "encrypt", &stream_encrypt(64 * KIB, stream_runs, p));
    print("stream 1 GiB, 1 MiB writes", "encrypt", &stream_encrypt(MIB, stream_runs, p));
    let dk = SecretKey::generate().unwrap();
    let mut sealed = Vec::with_capacity(GIB + GIB / 1024 + 4096);
    let mut w = EncryptingWriter::new(&dk, CTX, &mut sealed).unwrap();
    let chunk = vec![5u8; MIB];
    for _ in 0..GIB / MIB {
        w.write_all(&chunk).unwrap();
    }
    w.finish().unwrap();
    print("stream 1 GiB, Read adapter", "decrypt", &stream_decrypt(&sealed, &dk, false, stream_runs, p));
    print("stream 1 GiB, segment API", "decrypt", &stream_decrypt(&sealed, &dk, true, stream_runs, p));
    drop(sealed);
    let out = std::process::Command::new(std::env::current_exe().unwrap()).arg("--rss-child").output().unwrap();
    let kib: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    println!();
    println!("peak RSS of a process streaming 1 GiB to a file and back: {:.1} MiB", kib as f64 / 1024.0);
}
