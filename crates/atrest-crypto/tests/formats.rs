//! Property and failure tests of the record and stream formats through the public API:
//! round trips, single-bit flips anywhere, truncation at and between segment
//! boundaries, reordering, duplication, splicing between streams, wrong context and
//! wrong key. They run on the AEAD provider `Provider::fastest()` picks; CI runs them a
//! second time with `ATREST_AEAD=ring` so both providers' format paths are covered.

use atrest_crypto::stream::{DecryptingReader, EncryptingWriter, HEADER_LEN, SeekableReader};
use atrest_crypto::{CryptoError, SecretKey, record};
use proptest::prelude::*;
use std::io::{Cursor, Read, Write};

const LOG2: u8 = 12; // 4 KiB segments keep the property tests fast
const SEG: usize = 1 << LOG2;
const SEALED: usize = SEG + 16;
const CTX: &[&[u8]] = &[b"resource-1", b"object-7", b"generation-3"];

fn key(b: u8) -> SecretKey {
    SecretKey::from_slice(&[b; 32]).unwrap()
}

#[test]
fn reports_which_provider_it_runs_on() {
    let p = atrest_crypto::aead::Provider::fastest();
    if let Ok(want) = std::env::var("ATREST_AEAD")
        && !atrest_crypto::is_fips_build()
    {
        assert_eq!(p.name(), want);
    }
    println!("format tests on AEAD provider {}", p.name());
}

fn seal_stream(k: &SecretKey, ctx: &[&[u8]], data: &[u8], chunk: usize) -> Vec<u8> {
    let mut w = EncryptingWriter::with_segment_size(k, ctx, Vec::new(), LOG2).unwrap();
    for c in data.chunks(chunk.max(1)) {
        w.write_all(c).unwrap();
    }
    w.finish().unwrap()
}

fn open_stream(k: &SecretKey, ctx: &[&[u8]], sealed: &[u8]) -> Result<Vec<u8>, String> {
    let mut r = DecryptingReader::new(k, ctx, sealed).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn record_round_trip(len in 0usize..20_000, seed in any::<u8>()) {
        let pt = data(len, seed);
        let r = record::seal(&key(1), CTX, &pt).unwrap();
        prop_assert_eq!(r.len(), len + record::OVERHEAD);
        prop_assert_eq!(record::open(&key(1), CTX, &r).unwrap(), pt);
    }

    #[test]
    fn record_any_bit_flip_detected(len in 0usize..300, bit in any::<prop::sample::Index>()) {
        let mut r = record::seal(&key(1), CTX, &data(len, 0)).unwrap();
        let i = bit.index(r.len() * 8);
        r[i / 8] ^= 1 << (i % 8);
        prop_assert!(record::open(&key(1), CTX, &r).is_err());
    }

    #[test]
    fn record_any_truncation_detected(len in 0usize..300, cut in any::<prop::sample::Index>()) {
        let r = record::seal(&key(1), CTX, &data(len, 0)).unwrap();
        let at = cut.index(r.len());
        prop_assert!(record::open(&key(1), CTX, &r[..at]).is_err());
    }

    #[test]
    fn record_wrong_context_or_key_rejected(len in 0usize..100, which in 0usize..3) {
        let r = record::seal(&key(1), CTX, &data(len, 0)).unwrap();
        let mut ctx = CTX.to_vec();
        ctx[which] = b"other";
        prop_assert!(matches!(record::open(&key(1), &ctx, &r), Err(CryptoError::CommitmentMismatch)));
        prop_assert!(matches!(record::open(&key(2), CTX, &r), Err(CryptoError::CommitmentMismatch)));
    }

    #[test]
    fn stream_round_trip_any_size_any_chunking(len in 0usize..40_000, chunk in 1usize..9_000, seed in any::<u8>()) {
        let pt = data(len, seed);
        let s = seal_stream(&key(1), CTX, &pt, chunk);
        let layout = atrest_crypto::stream::StreamLayout::new(LOG2).unwrap();
        prop_assert_eq!(s.len() as u64, layout.ciphertext_len(len as u64).unwrap());
        prop_assert_eq!(open_stream(&key(1), CTX, &s).unwrap(), pt);
    }

    #[test]
    fn stream_any_bit_flip_detected(len in 0usize..12_000, bit in any::<prop::sample::Index>()) {
        let mut s = seal_stream(&key(1), CTX, &data(len, 0), 1000);
        let i = bit.index(s.len() * 8);
        s[i / 8] ^= 1 << (i % 8);
        prop_assert!(open_stream(&key(1), CTX, &s).is_err());
        // The seekable reader authenticates the final segment up front; a flip in an
        // earlier segment is caught when that segment is read.
        let seek_detects = match SeekableReader::new(&key(1), CTX, Cursor::new(&s)) {
            Err(_) => true,
            Ok(mut r) => r.read_to_end(&mut Vec::new()).is_err(),
        };
        prop_assert!(seek_detects);
    }

    #[test]
    fn stream_any_truncation_detected(len in 0usize..12_000, cut in any::<prop::sample::Index>()) {
        let s = seal_stream(&key(1), CTX, &data(len, 0), 4096);
        let at = cut.index(s.len());
        prop_assert!(open_stream(&key(1), CTX, &s[..at]).is_err());
        prop_assert!(SeekableReader::new(&key(1), CTX, Cursor::new(&s[..at])).is_err());
    }

    #[test]
    fn stream_never_opens_under_second_key_or_context(len in 0usize..9_000) {
        let s = seal_stream(&key(1), CTX, &data(len, 0), 512);
        prop_assert!(open_stream(&key(2), CTX, &s).unwrap_err().contains("key commitment mismatch"));
        prop_assert!(open_stream(&key(1), &[b"resource-1"], &s).unwrap_err().contains("key commitment mismatch"));
    }

    #[test]
    fn seekable_ranges_match_and_touch_only_needed_segments(len in 1usize..40_000, a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        let pt = data(len, 9);
        let s = seal_stream(&key(1), CTX, &pt, 7000);
        let mut r = SeekableReader::new(&key(1), CTX, Cursor::new(&s)).unwrap();
        prop_assert_eq!(r.len(), len as u64);
        let (x, y) = (a.index(len), b.index(len));
        let (start, end) = (x.min(y), x.max(y) + 1);
        let before = r.segments_opened();
        let mut out = vec![0u8; end - start];
        r.read_at(start as u64, &mut out).unwrap();
        prop_assert_eq!(&out[..], &pt[start..end]);
        let needed = ((end - 1) / SEG - start / SEG + 1) as u64;
        prop_assert!(r.segments_opened() - before <= needed);
    }
}

/// Splits a sealed stream into its header and sealed segments.
fn segments(s: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    (s[..HEADER_LEN].to_vec(), s[HEADER_LEN..].chunks(SEALED).map(<[u8]>::to_vec).collect())
}

#[test]
fn truncation_at_every_segment_boundary_and_between() {
    let s = seal_stream(&key(1), CTX, &data(5 * SEG + 100, 0), SEG);
    let mut cut_points: Vec<usize> = (0..=6).map(|i| HEADER_LEN + i * SEALED).filter(|&c| c < s.len()).collect();
    cut_points.extend((0..6).map(|i| HEADER_LEN + i * SEALED + SEALED / 2).filter(|&c| c < s.len()));
    cut_points.extend([0, 1, HEADER_LEN - 1, s.len() - 1, s.len() - 16, s.len() - 17]);
    for cut in cut_points {
        assert!(open_stream(&key(1), CTX, &s[..cut]).is_err(), "cut at {cut} not detected");
        assert!(SeekableReader::new(&key(1), CTX, Cursor::new(&s[..cut])).is_err(), "cut at {cut}");
    }
    assert!(open_stream(&key(1), CTX, &s).is_ok());
}

#[test]
fn reordered_duplicated_and_spliced_segments_are_detected() {
    let pt = data(4 * SEG, 0);
    let s = seal_stream(&key(1), CTX, &pt, SEG);
    let (h, segs) = segments(&s);
    let join = |h: &[u8], segs: &[Vec<u8>]| [h.to_vec(), segs.concat()].concat();

    let mut swapped = segs.clone();
    swapped.swap(1, 2);
    assert!(open_stream(&key(1), CTX, &join(&h, &swapped)).is_err(), "reorder");

    let mut dup = segs.clone();
    dup[2] = dup[1].clone();
    assert!(open_stream(&key(1), CTX, &join(&h, &dup)).is_err(), "duplicate");

    let mut extra = segs.clone();
    extra.insert(1, segs[1].clone());
    assert!(open_stream(&key(1), CTX, &join(&h, &extra)).is_err(), "inserted copy");

    // Same key, same context, same plaintext: only the salt differs, yet a segment
    // from the other stream does not fit.
    let other = seal_stream(&key(1), CTX, &pt, SEG);
    let (h2, segs2) = segments(&other);
    let mut spliced = segs.clone();
    spliced[1] = segs2[1].clone();
    assert!(open_stream(&key(1), CTX, &join(&h, &spliced)).is_err(), "splice");
    assert!(open_stream(&key(1), CTX, &join(&h2, &segs)).is_err(), "header swap");

    // Dropping the final segment leaves a stream that ends in a non-final segment.
    assert!(open_stream(&key(1), CTX, &join(&h, &segs[..3])).is_err(), "drop last");
}

#[test]
fn streaming_reader_reports_failure_before_eof() {
    let mut s = seal_stream(&key(1), CTX, &data(3 * SEG, 0), SEG);
    let n = s.len();
    s[n - 5] ^= 0x80; // in the final tag
    let mut r = DecryptingReader::new(&key(1), CTX, &s[..]).unwrap();
    let mut got = 0;
    let mut buf = [0u8; 1000];
    let err = loop {
        match r.read(&mut buf) {
            Ok(0) => panic!("EOF reported for a tampered stream"),
            Ok(k) => got += k,
            Err(e) => break e,
        }
    };
    assert_eq!(got, 2 * SEG, "only the authentic segments were released");
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<CryptoError>()).unwrap();
    assert_eq!(inner.code(), "IntegrityCheckFailed");
}

#[test]
fn next_chunk_yields_whole_segments() {
    let pt = data(2 * SEG + 10, 3);
    let s = seal_stream(&key(1), CTX, &pt, 999);
    let mut r = DecryptingReader::new(&key(1), CTX, &s[..]).unwrap();
    let mut out = Vec::new();
    let mut sizes = Vec::new();
    while let Some(c) = r.next_chunk().unwrap() {
        sizes.push(c.len());
        out.extend_from_slice(c);
    }
    assert_eq!(sizes, vec![SEG, SEG, 10]);
    assert_eq!(out, pt);
}

#[test]
fn seekable_reader_implements_seek() {
    use std::io::{Seek, SeekFrom};
    let pt = data(3 * SEG + 1, 5);
    let s = seal_stream(&key(1), CTX, &pt, SEG);
    let mut r = SeekableReader::new(&key(1), CTX, Cursor::new(s)).unwrap();
    r.seek(SeekFrom::Start(SEG as u64 - 3)).unwrap();
    let mut b = [0u8; 10];
    r.read_exact(&mut b).unwrap();
    assert_eq!(&b, &pt[SEG - 3..SEG + 7]);
    r.seek(SeekFrom::End(-1)).unwrap();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, &pt[pt.len() - 1..]);
    assert!(r.read_at(pt.len() as u64 - 1, &mut [0u8; 2]).is_err());
}

#[test]
fn empty_stream_and_header_errors() {
    let s = seal_stream(&key(1), CTX, b"", 1);
    assert_eq!(s.len(), HEADER_LEN + 16);
    assert_eq!(open_stream(&key(1), CTX, &s).unwrap(), b"");
    assert!(SeekableReader::new(&key(1), CTX, Cursor::new(&s)).unwrap().is_empty());
    // A header alone (no final segment) is a cut stream.
    assert!(open_stream(&key(1), CTX, &s[..HEADER_LEN]).is_err());
    // A record is not a stream.
    let rec = record::seal(&key(1), CTX, b"x").unwrap();
    assert!(open_stream(&key(1), CTX, &rec).unwrap_err().contains("not an atrest Stream"));
}

#[test]
fn dropped_writer_leaves_a_stream_that_does_not_open() {
    let mut out = Vec::new();
    {
        let mut w = EncryptingWriter::with_segment_size(&key(1), CTX, &mut out, LOG2).unwrap();
        w.write_all(&data(3 * SEG, 0)).unwrap();
        w.flush().unwrap();
        // dropped without finish()
    }
    assert!(open_stream(&key(1), CTX, &out).is_err());
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_adapters_round_trip_and_interoperate() {
    use atrest_crypto::stream::tokio::{AsyncDecryptingReader, AsyncEncryptingWriter};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for len in [0usize, 1, SEG - 1, SEG, SEG + 1, 5 * SEG + 77] {
        let pt = data(len, 4);
        let mut w = AsyncEncryptingWriter::with_segment_size(&key(1), CTX, Vec::new(), LOG2).unwrap();
        for c in pt.chunks(3000) {
            w.write_all(c).await.unwrap();
        }
        w.shutdown().await.unwrap();
        let sealed = w.into_inner();
        // Async output reads back with the blocking reader and vice versa.
        assert_eq!(open_stream(&key(1), CTX, &sealed).unwrap(), pt);
        let blocking = seal_stream(&key(1), CTX, &pt, 777);
        let mut r = AsyncDecryptingReader::new(&key(1), CTX, &blocking[..]).await.unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, pt);
        if len > 0 {
            let mut bad = blocking.clone();
            bad[HEADER_LEN + 3] ^= 1;
            let mut r = AsyncDecryptingReader::new(&key(1), CTX, &bad[..]).await.unwrap();
            assert!(r.read_to_end(&mut Vec::new()).await.is_err());
        }
    }
}

#[test]
fn segment_api_in_place_and_out_of_place_agree_with_the_adapters() {
    use atrest_crypto::stream::{SegmentOpener, SegmentSealer};
    let pt = data(2 * SEG + 5, 8);
    let mut sealer = SegmentSealer::new(&key(1), CTX, LOG2).unwrap();
    let mut stream = sealer.header().to_vec();
    let mut seg = vec![0u8; SEALED];
    sealer.seal_segment_from(&pt[..SEG], &mut seg, false).unwrap();
    stream.extend_from_slice(&seg);
    let mut seg2 = [&pt[SEG..2 * SEG], &[0u8; 16][..]].concat();
    sealer.seal_segment(&mut seg2, false).unwrap();
    stream.extend_from_slice(&seg2);
    let mut last = vec![0u8; 5 + 16];
    sealer.seal_segment_from(&pt[2 * SEG..], &mut last, true).unwrap();
    stream.extend_from_slice(&last);
    // After the final segment nothing more can be sealed.
    assert!(sealer.seal_segment(&mut [0u8; 17], true).is_err());
    assert_eq!(open_stream(&key(1), CTX, &stream).unwrap(), pt);

    let opener = SegmentOpener::new(&key(1), CTX, &stream[..HEADER_LEN]).unwrap();
    let mut out = vec![0u8; SEG];
    opener.open_segment_to(1, false, &stream[HEADER_LEN + SEALED..HEADER_LEN + 2 * SEALED], &mut out).unwrap();
    assert_eq!(&out[..], &pt[SEG..2 * SEG]);
    // Wrong index, wrong final flag, or a short output buffer all fail.
    assert!(opener.open_segment_to(0, false, &stream[HEADER_LEN + SEALED..HEADER_LEN + 2 * SEALED], &mut out).is_err());
    assert!(opener.open_segment_to(1, true, &stream[HEADER_LEN + SEALED..HEADER_LEN + 2 * SEALED], &mut out).is_err());
    assert!(
        opener
            .open_segment_to(1, false, &stream[HEADER_LEN + SEALED..HEADER_LEN + 2 * SEALED], &mut out[..10])
            .is_err()
    );
    let mut in_place = stream[HEADER_LEN + 2 * SEALED..].to_vec();
    assert_eq!(opener.open_segment(2, true, &mut in_place).unwrap(), &pt[2 * SEG..]);
}

/// An inner writer that fails its `fail_at`-th write call once.
struct FlakyWriter {
    out: Vec<u8>,
    calls: usize,
    fail_at: usize,
}

impl Write for FlakyWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.calls += 1;
        if self.calls == self.fail_at {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        self.out.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_write_changes_nothing_and_the_stream_still_finishes() {
    let inner = FlakyWriter { out: Vec::new(), calls: 0, fail_at: 2 };
    let mut w = EncryptingWriter::with_segment_size(&key(1), CTX, inner, LOG2).unwrap();
    w.write_all(&data(SEG, 1)).unwrap(); // header written (call 1); one full segment buffered
    assert_eq!(w.write(&[0xAA, 0xBB]).unwrap(), 1); // seals the full segment, takes one byte
    // Writing the sealed segment out fails: the caller is told nothing more was taken...
    assert_eq!(w.write(&[0xBB]).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    // ...gives up on the rest, and finishes: the stream holds exactly what was accepted.
    let inner = w.finish().unwrap();
    let mut want = data(SEG, 1);
    want.push(0xAA);
    assert_eq!(open_stream(&key(1), CTX, &inner.out).unwrap(), want);
}
