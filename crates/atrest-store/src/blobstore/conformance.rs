//! The blob-store conformance suite: the invariants of [`super`] checked against any
//! backend. The local directory runs it in the unit tests; the S3 bucket in
//! `tests/blobstore.rs` when `ATREST_TEST_S3` names a server (CI runs it on SeaweedFS).
//!
//! The suite panics with a message naming the failed property; call it from a test.

use super::BlobStore;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Writes `body` under `resource/name`, committing only when `commit`.
async fn put(store: &Arc<BlobStore>, resource: &str, name: &str, body: Vec<u8>, commit: bool) {
    let (s, r, n) = (store.clone(), resource.to_string(), name.to_string());
    tokio::task::spawn_blocking(move || {
        let mut sink = s.create(&r, &n).expect("create");
        for chunk in body.chunks(1 << 20) {
            sink.write_all(chunk).expect("write");
        }
        if commit {
            sink.commit().expect("commit");
        }
    })
    .await
    .expect("writer");
}

/// Reads `len` bytes at `offset` of `resource/name`.
async fn read_at(
    store: &Arc<BlobStore>,
    resource: &str,
    name: &str,
    offset: u64,
    len: usize,
) -> std::io::Result<Vec<u8>> {
    let (s, r, n) = (store.clone(), resource.to_string(), name.to_string());
    tokio::task::spawn_blocking(move || {
        let mut src = s.open(&r, &n)?;
        src.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0; len];
        src.read_exact(&mut buf)?;
        Ok(buf)
    })
    .await
    .expect("reader")
}

/// Runs every check under `resource`, which it leaves empty.
///
/// # Panics
/// On the first property that does not hold.
pub async fn check(store: Arc<BlobStore>, resource: &str) {
    let what = store.describe();

    // Nothing is visible until committed, and an uncommitted write leaves nothing.
    put(&store, resource, "o1.1.00112233aabbccdd", pattern(1000, 1), false).await;
    let missing = read_at(&store, resource, "o1.1.00112233aabbccdd", 0, 1).await.map(|_| ());
    assert_eq!(missing.unwrap_err().kind(), ErrorKind::NotFound, "{what}: an uncommitted body is visible");
    assert!(
        store.list(resource).await.expect("list").iter().all(|b| b.name != "o1.1.00112233aabbccdd"),
        "{what}: an uncommitted body is listed"
    );

    // A committed body reads back whole and at any offset; a large one spans several
    // parts on S3 (8 MiB each).
    let small = pattern(70_000, 2);
    put(&store, resource, "o2.1.00112233aabbccdd", small.clone(), true).await;
    assert_eq!(read_at(&store, resource, "o2.1.00112233aabbccdd", 0, small.len()).await.expect("read"), small);
    assert_eq!(
        read_at(&store, resource, "o2.1.00112233aabbccdd", 65_000, 5_000).await.expect("ranged read"),
        &small[65_000..]
    );
    let large = pattern(9 * 1024 * 1024 + 17, 3);
    put(&store, resource, "o3.1.00112233aabbccdd", large.clone(), true).await;
    for offset in [0usize, 8 * 1024 * 1024 - 3, large.len() - 100] {
        let got = read_at(&store, resource, "o3.1.00112233aabbccdd", offset as u64, 100).await.expect("read");
        assert_eq!(got, &large[offset..offset + 100], "{what}: bytes at {offset}");
    }
    let past = read_at(&store, resource, "o2.1.00112233aabbccdd", 69_990, 100).await;
    assert!(past.is_err(), "{what}: reading past the end must fail, not invent bytes");

    // Listing: the resource and its bodies, young.
    assert!(store.resources().await.expect("resources").iter().any(|r| r == resource), "{what}: resource not listed");
    let listed = store.list(resource).await.expect("list");
    for name in ["o2.1.00112233aabbccdd", "o3.1.00112233aabbccdd"] {
        let b = listed.iter().find(|b| b.name == name).unwrap_or_else(|| panic!("{what}: {name} not listed"));
        assert!(b.age < std::time::Duration::from_secs(600), "{what}: {name} listed as {:?} old", b.age);
    }

    // Removal: gone, idempotent; a whole resource at once.
    store.remove(resource, "o2.1.00112233aabbccdd").await.expect("remove");
    store.remove(resource, "o2.1.00112233aabbccdd").await.expect("a second removal is not an error");
    let gone = read_at(&store, resource, "o2.1.00112233aabbccdd", 0, 1).await.map(|_| ());
    assert_eq!(gone.unwrap_err().kind(), ErrorKind::NotFound, "{what}: a removed body still opens");
    store.remove_resource(resource).await.expect("remove resource");
    assert!(store.list(resource).await.expect("list").is_empty(), "{what}: bodies left after removing the resource");
}
