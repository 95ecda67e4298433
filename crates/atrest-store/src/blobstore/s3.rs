//! An S3-compatible bucket through the `object_store` crate: `[PREFIX/]<resource>/<name>`.
//!
//! Writes buffer one part (8 MiB): a body that fits is one `PUT`, a larger one a
//! multipart upload — one part in flight while the next fills — completed on commit and
//! aborted when dropped uncommitted (an upload cut off by a crash stays incomplete and
//! invisible; a bucket lifecycle rule "abort incomplete multipart uploads" reclaims its
//! parts). Reads are ranged `GET`s: 256 KiB after a seek (opening a body reads two
//! headers and two final segments; a `Range` read starts anywhere), then 4 MiB windows
//! with the next one fetched while the current one is used, so memory per transfer stays
//! constant whatever the size (two parts up, two windows down).
//! Both run on blocking threads and drive the async client with the runtime's handle.
//!
//! Retries are bounded (3 retries within 15 s; 5 s to connect, 30 s per request) so
//! that an unreachable store becomes a clear `ServiceUnavailable` instead of a request
//! hanging for minutes.

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    BackoffConfig, Certificate, ClientOptions, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

/// Bytes buffered per upload part (S3's minimum part is 5 MiB) for the first
/// [`PARTS_PER_STEP`] parts; the size doubles every that many parts, up to 128 MiB, so
/// the 10,000 parts S3 allows hold about 880 GiB while memory stays at two 8 MiB parts
/// for bodies under 8 GiB.
const PART: usize = 8 * 1024 * 1024;
const PARTS_PER_STEP: usize = 1000;

/// The size of part `n` (0-based).
fn part_size(n: usize) -> usize {
    PART << (n / PARTS_PER_STEP).min(4)
}

/// Bytes fetched per ranged read while reading sequentially.
const WINDOW: u64 = 4 * 1024 * 1024;
/// Bytes fetched after a seek (headers, a final segment, the start of a range): a few
/// sealed segments of either layer, so opening a body costs little.
const FIRST: u64 = 256 * 1024;

/// An S3-compatible bucket (cheap to clone: the client is shared).
#[derive(Clone)]
pub struct S3Bucket {
    store: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
    endpoint: String,
}

fn other(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

impl S3Bucket {
    /// `s3://BUCKET[/PREFIX]?endpoint=URL&region=R[&ca=PEM-FILE]`; the access key, secret
    /// and session token come from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// `AWS_SESSION_TOKEN` (and the region from `AWS_REGION` when not given). With an
    /// endpoint, requests are path-style; a plain `http://` endpoint is allowed (bodies
    /// are ciphertext and requests are signed, but prefer HTTPS off loopback).
    ///
    /// # Errors
    /// A malformed location, an unknown parameter, or a CA file that does not read.
    pub fn from_url(location: &str) -> io::Result<Self> {
        let bad = |m: String| io::Error::new(io::ErrorKind::InvalidInput, format!("--blob-store {location}: {m}"));
        let url = reqwest::Url::parse(location).map_err(|e| bad(e.to_string()))?;
        let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| bad("no bucket name".into()))?.to_string();
        let prefix = url.path().trim_matches('/').to_string();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
        let mut options =
            ClientOptions::new().with_connect_timeout(Duration::from_secs(5)).with_timeout(Duration::from_secs(30));
        let mut endpoint = String::from("AWS S3");
        for (k, v) in url.query_pairs() {
            match &*k {
                "endpoint" => {
                    options = options.with_allow_http(v.starts_with("http://"));
                    builder = builder.with_endpoint(v.to_string()).with_virtual_hosted_style_request(false);
                    endpoint = v.to_string();
                }
                "region" => builder = builder.with_region(v.to_string()),
                "ca" => {
                    let pem = std::fs::read(&*v).map_err(|e| bad(format!("ca={v}: {e}")))?;
                    for c in Certificate::from_pem_bundle(&pem).map_err(|e| bad(format!("ca={v}: {e}")))? {
                        options = options.with_root_certificate(c);
                    }
                }
                other => return Err(bad(format!("unknown parameter {other} (use endpoint, region, ca)"))),
            }
        }
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 3,
            retry_timeout: Duration::from_secs(15),
        };
        let store = builder.with_client_options(options).with_retry(retry).build().map_err(|e| bad(e.to_string()))?;
        Ok(Self { store: Arc::new(store), bucket, prefix, endpoint })
    }

    pub(super) fn describe(&self) -> String {
        let p = if self.prefix.is_empty() { String::new() } else { format!("/{}", self.prefix) };
        format!("s3://{}{p} at {}", self.bucket, self.endpoint)
    }

    /// `rel` under the prefix.
    fn path(&self, rel: &str) -> Path {
        if self.prefix.is_empty() { Path::from(rel) } else { Path::from(format!("{}/{rel}", self.prefix)) }
    }

    fn key(&self, resource: &str, name: &str) -> Path {
        self.path(&format!("{resource}/{name}"))
    }

    fn fail(&self, what: &str, e: object_store::Error) -> io::Error {
        match e {
            object_store::Error::NotFound { .. } => {
                io::Error::new(io::ErrorKind::NotFound, format!("{what}: not found"))
            }
            e => other(&format!("the blob store {} failed to {what}", self.describe()), e),
        }
    }

    pub(super) async fn check(&self) -> io::Result<()> {
        // A list of the (possibly empty) prefix proves the bucket exists and the
        // credentials are accepted.
        let prefix = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()));
        let mut list = self.store.list(prefix.as_ref());
        match list.next().await {
            Some(Err(e)) => Err(self.fail("list the bucket", e)),
            _ => Ok(()),
        }
    }

    pub(super) fn create(&self, resource: &str, name: &str) -> io::Result<S3Sink> {
        Ok(S3Sink {
            rt: Handle::try_current().map_err(|e| other("no runtime", e))?,
            bucket: self.clone(),
            key: self.key(resource, name),
            buf: Vec::with_capacity(PART),
            parts: 0,
            upload: None,
            in_flight: None,
            done: false,
        })
    }

    pub(super) fn open(&self, resource: &str, name: &str) -> io::Result<S3Source> {
        let rt = Handle::try_current().map_err(|e| other("no runtime", e))?;
        let key = self.key(resource, name);
        let meta = rt.block_on(self.store.head(&key)).map_err(|e| self.fail("read a blob body", e))?;
        Ok(S3Source {
            rt,
            bucket: self.clone(),
            key,
            len: meta.size,
            pos: 0,
            window: bytes::Bytes::new(),
            start: 0,
            ahead: None,
        })
    }

    pub(super) async fn remove(&self, resource: &str, name: &str) -> io::Result<()> {
        match self.store.delete(&self.key(resource, name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail("delete a blob body", e)),
        }
    }

    pub(super) async fn resources(&self) -> io::Result<Vec<String>> {
        let prefix = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()));
        let listed =
            self.store.list_with_delimiter(prefix.as_ref()).await.map_err(|e| self.fail("list the bucket", e))?;
        Ok(listed.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect())
    }

    pub(super) async fn list(&self, resource: &str) -> io::Result<Vec<super::ListedBody>> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut list = self.store.list(Some(&self.path(resource)));
        let mut out = Vec::new();
        while let Some(meta) = list.next().await {
            let meta = meta.map_err(|e| self.fail("list a resource's blob bodies", e))?;
            let Some(name) = meta.location.filename() else { continue };
            let modified = u64::try_from(meta.last_modified.timestamp()).unwrap_or(0);
            out.push(super::ListedBody {
                name: name.to_string(),
                age: Duration::from_secs(now.saturating_sub(modified)),
            });
        }
        Ok(out)
    }

    pub(super) async fn remove_resource(&self, resource: &str) -> io::Result<()> {
        let mut list = self.store.list(Some(&self.path(resource)));
        while let Some(meta) = list.next().await {
            let meta = meta.map_err(|e| self.fail("list a resource's blob bodies", e))?;
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.fail("delete a blob body", e)),
            }
        }
        Ok(())
    }
}

/// A body being uploaded.
pub struct S3Sink {
    rt: Handle,
    bucket: S3Bucket,
    key: Path,
    buf: Vec<u8>,
    /// Parts sent so far.
    parts: usize,
    upload: Option<Box<dyn MultipartUpload>>,
    /// The part being uploaded while the next one fills (at most one in flight).
    in_flight: Option<tokio::task::JoinHandle<object_store::Result<()>>>,
    done: bool,
}

impl S3Sink {
    fn part_size(&self) -> usize {
        part_size(self.parts)
    }

    fn wait_in_flight(&mut self) -> io::Result<()> {
        if let Some(h) = self.in_flight.take() {
            let r = self.rt.block_on(h).map_err(|e| other("an upload task failed", e))?;
            r.map_err(|e| self.bucket.fail("upload a part", e))?;
        }
        Ok(())
    }

    fn send_part(&mut self) -> io::Result<()> {
        self.parts += 1;
        let next = Vec::with_capacity(self.part_size());
        let part = PutPayload::from(std::mem::replace(&mut self.buf, next));
        if self.upload.is_none() {
            let up = self.rt.block_on(self.bucket.store.put_multipart(&self.key));
            self.upload = Some(up.map_err(|e| self.bucket.fail("start an upload", e))?);
        }
        self.wait_in_flight()?;
        if let Some(fut) = self.upload.as_mut().map(|u| u.put_part(part)) {
            self.in_flight = Some(self.rt.spawn(fut));
        }
        Ok(())
    }

    pub(super) fn commit(mut self) -> io::Result<()> {
        if self.upload.is_none() {
            let body = PutPayload::from(std::mem::take(&mut self.buf));
            self.rt.block_on(self.bucket.store.put(&self.key, body)).map_err(|e| self.bucket.fail("upload", e))?;
        } else {
            if !self.buf.is_empty() {
                self.send_part()?;
            }
            self.wait_in_flight()?;
            if let Some(up) = self.upload.as_mut() {
                self.rt.block_on(up.complete()).map_err(|e| self.bucket.fail("complete an upload", e))?;
            }
        }
        self.done = true;
        Ok(())
    }
}

impl Write for S3Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let size = self.part_size();
        let n = data.len().min(size - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == size {
            self.send_part()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for S3Sink {
    fn drop(&mut self) {
        if !self.done {
            if let Some(h) = self.in_flight.take() {
                // Wait for it to stop, so no part lands after the upload is aborted.
                h.abort();
                let _ = self.rt.block_on(h);
            }
            if let Some(up) = self.upload.as_mut() {
                let _ = self.rt.block_on(up.abort());
            }
        }
    }
}

/// A stored body read through ranged GETs. A sequential reader gets the next window
/// fetched while it works on the current one (at most two windows in memory).
pub struct S3Source {
    rt: Handle,
    bucket: S3Bucket,
    key: Path,
    len: u64,
    pos: u64,
    window: bytes::Bytes,
    start: u64,
    /// The next window, being fetched.
    ahead: Option<(std::ops::Range<u64>, tokio::task::JoinHandle<object_store::Result<bytes::Bytes>>)>,
}

impl S3Source {
    fn range(&self, from: u64, size: u64) -> std::ops::Range<u64> {
        from..(from + size).min(self.len)
    }

    fn fetch(&self, range: std::ops::Range<u64>) -> tokio::task::JoinHandle<object_store::Result<bytes::Bytes>> {
        let (store, key) = (self.bucket.store.clone(), self.key.clone());
        self.rt.spawn(async move { store.get_range(&key, range).await })
    }

    /// Loads the window at `pos`: a sequential read continues with full windows and one
    /// fetched ahead; a read after a seek fetches a small window and nothing ahead.
    fn load(&mut self) -> io::Result<()> {
        let sequential = !self.window.is_empty() && self.pos == self.start + self.window.len() as u64;
        let (range, handle) = match self.ahead.take() {
            Some((r, h)) if r.start == self.pos => (r, h),
            other => {
                if let Some((_, h)) = other {
                    h.abort();
                }
                let r = self.range(self.pos, if sequential { WINDOW } else { FIRST });
                (r.clone(), self.fetch(r))
            }
        };
        let got = self.rt.block_on(handle).map_err(|e| other("a read task failed", e))?;
        self.window = got.map_err(|e| self.bucket.fail("read a blob body", e))?;
        self.start = range.start;
        if self.window.len() as u64 != range.end - range.start {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the blob body changed length while read"));
        }
        if sequential && range.end < self.len {
            let next = self.range(range.end, WINDOW);
            self.ahead = Some((next.clone(), self.fetch(next)));
        }
        Ok(())
    }
}

impl Read for S3Source {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || out.is_empty() {
            return Ok(0);
        }
        let end = self.start + self.window.len() as u64;
        if self.pos < self.start || self.pos >= end {
            self.load()?;
        }
        let at = usize::try_from(self.pos - self.start).map_err(|e| other("offset", e))?;
        let n = out.len().min(self.window.len() - at);
        out[..n].copy_from_slice(&self.window[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Drop for S3Source {
    fn drop(&mut self) {
        if let Some((_, h)) = self.ahead.take() {
            h.abort();
        }
    }
}

impl Seek for S3Source {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let to = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = to.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_cover_large_bodies_within_the_part_limit() {
        let mut total = 0u64;
        let mut largest = 0;
        for parts in 0..10_000 {
            let size = part_size(parts);
            total += size as u64;
            largest = largest.max(size);
        }
        assert!(total > 800 << 30, "{total}");
        assert_eq!(largest, 128 << 20);
        assert_eq!(part_size(999), PART, "bodies under 8 GiB keep 8 MiB parts");
    }
}
