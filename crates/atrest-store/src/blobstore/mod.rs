//! Where blob bodies live. Only ciphertext reaches a blob store: bodies arrive here
//! already sealed twice (data key, then infrastructure key), so a backend is trusted for
//! availability only — a modified, truncated or swapped body fails authentication when
//! it is read, whatever the backend returned.
//!
//! Two backends, one file each: [`local`] (a directory, the embedded default) and
//! [`s3`] (an S3-compatible bucket, for several nodes). Both are driven from blocking
//! threads, where the stream layers run: a body is written through [`BlobSink`]
//! (`Write`, then [`BlobSink::commit`]) and read through [`BlobSource`] (`Read + Seek`).
//!
//! Invariants every backend keeps:
//! - a body becomes visible under its key only when committed, whole (rename of a
//!   synced file; completion of an S3 upload); an uncommitted sink leaves nothing;
//! - keys are unique per write (the caller names them), so a backend never overwrites;
//! - errors of the backend itself (unreachable, refused) are `io::Error`s of kind other
//!   than `InvalidData`/`UnexpectedEof`, which callers report as storage unavailable,
//!   not as tampering; a missing body is `NotFound`.

pub mod conformance;
pub mod local;
pub mod s3;

use std::io::{self, Read, Seek, SeekFrom, Write};

/// A body as listed: its name under the resource and how long ago it was committed
/// (last written, for a directory's temporary file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedBody {
    /// The name under the resource.
    pub name: String,
    /// Time since it was committed (zero when its clock is ahead of ours).
    pub age: std::time::Duration,
}

/// A blob store.
pub enum BlobStore {
    /// A local directory.
    Local(local::LocalDir),
    /// An S3-compatible bucket.
    S3(s3::S3Bucket),
}

impl BlobStore {
    /// Parses `--blob-store`: a directory path (or `file://PATH`), or
    /// `s3://BUCKET[/PREFIX]?endpoint=URL&region=R` with credentials from the usual AWS
    /// environment variables.
    ///
    /// # Errors
    /// A malformed location, or an S3 client that cannot be built.
    pub fn from_location(location: &str) -> io::Result<Self> {
        if location.starts_with("s3://") {
            Ok(BlobStore::S3(s3::S3Bucket::from_url(location)?))
        } else {
            let dir = location.strip_prefix("file://").unwrap_or(location);
            Ok(BlobStore::Local(local::LocalDir::new(dir.into())))
        }
    }

    /// Where it is, for logs and messages (no credentials).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            BlobStore::Local(d) => d.describe(),
            BlobStore::S3(b) => b.describe(),
        }
    }

    /// Checks at start that the store is reachable (creates the directory; lists the
    /// bucket — credentials and bucket are then known good, write permission is not).
    ///
    /// # Errors
    /// The store cannot be reached or written.
    pub async fn check(&self) -> io::Result<()> {
        match self {
            BlobStore::Local(d) => d.check(),
            BlobStore::S3(b) => b.check().await,
        }
    }

    /// Starts a body under `resource/name`. Blocking thread only.
    ///
    /// # Errors
    /// The store refused.
    pub fn create(&self, resource: &str, name: &str) -> io::Result<BlobSink> {
        match self {
            BlobStore::Local(d) => d.create(resource, name).map(BlobSink::Local),
            BlobStore::S3(b) => Ok(BlobSink::S3(b.create(resource, name)?)),
        }
    }

    /// Opens the body under `resource/name`. Blocking thread only.
    ///
    /// # Errors
    /// `NotFound` when there is none; the store's errors.
    pub fn open(&self, resource: &str, name: &str) -> io::Result<BlobSource> {
        match self {
            BlobStore::Local(d) => d.open(resource, name).map(BlobSource::Local),
            BlobStore::S3(b) => b.open(resource, name).map(BlobSource::S3),
        }
    }

    /// Removes one body; a missing one is not an error.
    ///
    /// # Errors
    /// The store refused or could not be reached.
    pub async fn remove(&self, resource: &str, name: &str) -> io::Result<()> {
        match self {
            BlobStore::Local(d) => d.remove(resource, name),
            BlobStore::S3(b) => b.remove(resource, name).await,
        }
    }

    /// The resources that have bodies here (resource ids).
    ///
    /// # Errors
    /// The store refused or could not be reached.
    pub async fn resources(&self) -> io::Result<Vec<String>> {
        match self {
            BlobStore::Local(d) => d.resources(),
            BlobStore::S3(b) => b.resources().await,
        }
    }

    /// The bodies of a resource, each with its age (for the sweep of bodies no row
    /// references).
    ///
    /// # Errors
    /// The store refused or could not be reached.
    pub async fn list(&self, resource: &str) -> io::Result<Vec<ListedBody>> {
        match self {
            BlobStore::Local(d) => d.list(resource),
            BlobStore::S3(b) => b.list(resource).await,
        }
    }

    /// Removes every body of a resource.
    ///
    /// # Errors
    /// The store refused or could not be reached.
    pub async fn remove_resource(&self, resource: &str) -> io::Result<()> {
        match self {
            BlobStore::Local(d) => d.remove_resource(resource),
            BlobStore::S3(b) => b.remove_resource(resource).await,
        }
    }
}

/// A body being written. Dropped without [`BlobSink::commit`], it leaves nothing.
pub enum BlobSink {
    /// A temporary file, renamed on commit.
    Local(local::FileSink),
    /// A buffered (multipart, when large) upload, completed on commit.
    S3(s3::S3Sink),
}

impl BlobSink {
    /// Makes the body durable and visible under its key.
    ///
    /// # Errors
    /// The store refused; nothing is visible then.
    pub fn commit(self) -> io::Result<()> {
        match self {
            BlobSink::Local(s) => s.commit(),
            BlobSink::S3(s) => s.commit(),
        }
    }
}

impl Write for BlobSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BlobSink::Local(s) => s.write(buf),
            BlobSink::S3(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            BlobSink::Local(s) => s.flush(),
            BlobSink::S3(s) => s.flush(),
        }
    }
}

/// A stored body, readable at any offset.
pub enum BlobSource {
    /// A file.
    Local(std::fs::File),
    /// Ranged GETs through a read window.
    S3(s3::S3Source),
}

impl Read for BlobSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BlobSource::Local(f) => f.read(buf),
            BlobSource::S3(s) => s.read(buf),
        }
    }
}

impl Seek for BlobSource {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match self {
            BlobSource::Local(f) => f.seek(pos),
            BlobSource::S3(s) => s.seek(pos),
        }
    }
}

/// Whether a read error means the bytes are wrong (tampering, truncation) rather than
/// the store being unavailable.
#[must_use]
pub fn is_integrity_error(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> std::path::PathBuf {
        let d = std::env::temp_dir()
            .join(format!("atrest-blobstore-{}", hex::encode(atrest_crypto::rand::bytes::<6>().unwrap())));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_local_body_is_visible_only_once_committed() {
        let dir = temp();
        let store = BlobStore::from_location(&format!("file://{}", dir.display())).unwrap();
        let mut sink = store.create("r1", "o.1.aa").unwrap();
        sink.write_all(b"partial").unwrap();
        drop(sink);
        assert_eq!(store.open("r1", "o.1.aa").map(|_| ()).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(std::fs::read_dir(dir.join("r1")).unwrap().count(), 0, "an uncommitted body leaves nothing");
        let mut sink = store.create("r1", "o.1.aa").unwrap();
        sink.write_all(b"whole body").unwrap();
        sink.commit().unwrap();
        let mut src = store.open("r1", "o.1.aa").unwrap();
        src.seek(SeekFrom::Start(6)).unwrap();
        let mut s = String::new();
        src.read_to_string(&mut s).unwrap();
        assert_eq!(s, "body");
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(rt.block_on(store.resources()).unwrap(), vec!["r1".to_string()]);
        let listed = rt.block_on(store.list("r1")).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "o.1.aa");
        assert!(listed[0].age < std::time::Duration::from_secs(60), "{listed:?}");
        assert!(rt.block_on(store.list("r2")).unwrap().is_empty());
        rt.block_on(store.remove("r1", "o.1.aa")).unwrap();
        rt.block_on(store.remove("r1", "o.1.aa")).unwrap();
        rt.block_on(store.remove_resource("r1")).unwrap();
        assert!(!dir.join("r1").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_local_directory_passes_the_conformance_suite() {
        let dir = temp();
        let store = std::sync::Arc::new(BlobStore::from_location(&format!("file://{}", dir.display())).unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(conformance::check(store, "r-conformance"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn s3_locations_are_checked() {
        let err = |l: &str| match BlobStore::from_location(l) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{l} was accepted"),
        };
        assert!(err("s3://bucket?endpoint=http://127.0.0.1:1&regoin=x").contains("unknown parameter regoin"));
        assert!(err("s3://?region=x").contains("no bucket"));
        let ok = BlobStore::from_location("s3://b/some/prefix?endpoint=http://127.0.0.1:1&region=us-east-1").unwrap();
        assert_eq!(ok.describe(), "s3://b/some/prefix at http://127.0.0.1:1");
        assert!(matches!(BlobStore::from_location("/var/lib/atrest/blobs").unwrap(), BlobStore::Local(_)));
    }

    #[test]
    fn an_unreachable_bucket_is_a_storage_error_not_tampering() {
        let store = BlobStore::from_location("s3://b?endpoint=http://127.0.0.1:9&region=us-east-1").unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let e = rt.block_on(async {
            tokio::task::spawn_blocking(move || store.open("r", "o").map(|_| ()).err()).await.unwrap()
        });
        let e = e.expect("nothing listens on port 9");
        assert!(!is_integrity_error(&e), "{e}");
        assert_ne!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains("the blob store s3://b at http://127.0.0.1:9 failed"), "{e}");
    }
}
