//! The test vectors published in `docs/formats.md`: produced here from fixed inputs
//! (a fixed salt stands in for the random one) and checked against the document, so the
//! spec and the code cannot drift apart. On a mismatch the test prints the lines the
//! document should contain.

use crate::record::{self, HEADER_LEN, OVERHEAD};
use crate::secret::SecretKey;
use crate::stream::SegmentOpener;
use crate::stream::SegmentSealer;
use aws_lc_rs::digest;

const SPEC: &str = include_str!("../../../docs/formats.md");
const CONTEXT: &[&[u8]] = &[b"resource-1", b"object-7", b"generation-3"];

fn seq(start: u8) -> [u8; 32] {
    core::array::from_fn(|i| start + i as u8)
}

fn vectors() -> Vec<(&'static str, String)> {
    let dk = SecretKey::from_slice(&seq(0x00)).unwrap();
    let mut out = vec![
        ("data_key", hex::encode(dk.expose_secret())),
        ("context", "u32be-length-prefixed(\"resource-1\", \"object-7\", \"generation-3\")".into()),
    ];

    // Record.
    let pt = b"atrest record format v1";
    let mut buf = vec![0u8; pt.len() + OVERHEAD];
    buf[HEADER_LEN..HEADER_LEN + pt.len()].copy_from_slice(pt);
    record::seal_in_place_with_salt(&dk, CONTEXT, &mut buf, seq(0x20)).unwrap();
    assert_eq!(record::open(&dk, CONTEXT, &buf).unwrap(), pt);
    out.push(("record.salt", hex::encode(seq(0x20))));
    out.push(("record.plaintext", hex::encode(pt)));
    out.push(("record.header", hex::encode(&buf[..HEADER_LEN])));
    out.push(("record.sealed", hex::encode(&buf)));

    // Stream of 4097 bytes with 4 KiB segments: one full segment and a 1-byte final one.
    let pt: Vec<u8> = (0..4097u32).map(|i| (i % 251) as u8).collect();
    let mut sealer = SegmentSealer::with_salt(&dk, CONTEXT, 12, seq(0x40)).unwrap();
    let mut s0 = [&pt[..4096], &[0u8; 16][..]].concat();
    sealer.seal_segment(&mut s0, false).unwrap();
    let mut s1 = [&pt[4096..], &[0u8; 16][..]].concat();
    sealer.seal_segment(&mut s1, true).unwrap();
    let stream = [&sealer.header()[..], &s0, &s1].concat();
    let opener = SegmentOpener::new(&dk, CONTEXT, sealer.header()).unwrap();
    assert_eq!(opener.open_segment(1, true, &mut s1.clone()).unwrap(), &pt[4096..]);
    out.push(("stream.salt", hex::encode(seq(0x40))));
    out.push(("stream.plaintext", "bytes i mod 251 for i in 0..4097".into()));
    out.push(("stream.header", hex::encode(sealer.header())));
    out.push(("stream.segment0.tag", hex::encode(&s0[4096..])));
    out.push(("stream.segment1.sealed", hex::encode(&s1)));
    out.push(("stream.sha256", hex::encode(digest::digest(&digest::SHA256, &stream))));

    // Empty stream: a header and one empty final segment.
    let mut sealer = SegmentSealer::with_salt(&dk, CONTEXT, 16, seq(0x60)).unwrap();
    let mut tag = [0u8; 16];
    sealer.seal_segment(&mut tag, true).unwrap();
    out.push(("empty_stream.salt", hex::encode(seq(0x60))));
    out.push(("empty_stream.sealed", hex::encode([&sealer.header()[..], &tag].concat())));
    out
}

#[test]
fn published_vectors_match_the_code() {
    let vs = vectors();
    let expected: String = vs.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    let missing: Vec<_> = vs.iter().filter(|(k, v)| !SPEC.contains(&format!("{k} = {v}"))).map(|(k, _)| *k).collect();
    assert!(missing.is_empty(), "docs/formats.md is out of date ({missing:?}); it should contain:\n{expected}");
}
