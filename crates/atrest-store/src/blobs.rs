//! Blobs: streamed in both directions with constant memory. The body is the stream
//! format twice — under the object's data key, then under the infrastructure key —
//! handed to the blob store (a directory or a bucket, see [`crate::blobstore`]) as
//! `<resource>/<object>.<generation>.<tag>`. A read decrypts only the
//! segments its range touches (both layers are seekable), and a long transfer re-checks
//! key access every `recheck_segments` segments, so revocation stops it mid-stream.

use crate::blobstore::{BlobSource, is_integrity_error};
use crate::cache::Slot;
use crate::commit::Outcome;
use crate::error::{Result, StoreError};
use crate::hierarchy::ObjectId;
use crate::model::{DataRole, ObjectInfo, ObjectKind, Resource};
use crate::objects::{Precondition, check_name};
use crate::repo::blobs as repo;
use crate::rows::ObjectRow;
use crate::service::StoreService;
use atrest_crypto::SecretKey;
use atrest_crypto::stream::{EncryptingWriter, SeekableReader};
use atrest_vault::Principal;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use tokio::sync::mpsc;

/// How long a body being written is protected from the orphan sweep (a week: longer
/// than any upload or re-encrypt batch).
const WRITE_PROTECTION_SECS: i64 = 7 * 86_400;

/// Plaintext bytes per chunk handed to and from the HTTP layer (one segment).
const CHUNK: usize = 64 * 1024;

/// The blob-store key of one write of a blob under its resource, from the object row's
/// id, generation and sealed name (see [`StoreService::blob_name`]); `atrest backup`
/// uses it to find the bodies a database snapshot references, without any key.
#[must_use]
pub fn blob_key(id: &str, generation: i64, name_sealed: &[u8]) -> String {
    let tag = hex::encode(&atrest_crypto::hash::sha256(&[name_sealed])[..8]);
    format!("{id}.{generation}.{tag}")
}

/// Whether `name` is one this service writes: `<object>.<generation>.<16 hex>`, or a
/// directory's temporary `.tmp-*` file.
fn is_body_name(name: &str) -> bool {
    if name.starts_with(".tmp-") {
        return true;
    }
    let parts: Vec<&str> = name.split('.').collect();
    matches!(parts.as_slice(), [id, generation, tag]
        if !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_alphanumeric())
            && !generation.is_empty()
            && generation.bytes().all(|b| b.is_ascii_digit())
            && tag.len() == 16
            && tag.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub use atrest_wire::range::ByteRange;

/// A blob being read: its metadata, the byte range served, and the plaintext chunks.
pub struct BlobRead {
    /// Metadata.
    pub info: ObjectInfo,
    /// First byte served.
    pub offset: u64,
    /// Bytes served.
    pub len: u64,
    /// Plaintext, in order; an `Err` ends the stream (tampering found mid-way, or key
    /// access lost): the HTTP layer aborts the response so it cannot pass as complete.
    pub chunks: mpsc::Receiver<std::result::Result<Bytes, std::io::Error>>,
}

type Layers = SeekableReader<SeekableReader<BlobSource>>;

/// Why a body did not open: its bytes are wrong, it is missing, or the store failed.
enum OpenFailure {
    Tampered,
    Missing,
    Store(std::io::Error),
}

fn open_layers(
    infra: &SecretKey,
    dek: &SecretKey,
    id: ObjectId<'_>,
    source: BlobSource,
) -> Result<Layers, OpenFailure> {
    let classify = |e: atrest_crypto::CryptoError| match e {
        atrest_crypto::CryptoError::Io(e) if !is_integrity_error(&e) => OpenFailure::Store(e),
        _ => OpenFailure::Tampered,
    };
    let outer = id.with_context(b"atrest/infra", |ctx| SeekableReader::new(infra, ctx, source)).map_err(classify)?;
    id.with_context(b"atrest/object", |ctx| SeekableReader::new(dek, ctx, outer)).map_err(classify)
}

/// A body being read: one file, or the parts of a multipart upload in order.
pub(crate) enum BodyReader {
    Single(Box<Layers>),
    Parts(Box<PartsReader>),
}

impl BodyReader {
    fn len(&self) -> u64 {
        match self {
            BodyReader::Single(l) => l.len(),
            BodyReader::Parts(p) => p.len,
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            BodyReader::Single(l) => l.read(buf),
            BodyReader::Parts(p) => p.read(buf),
        }
    }
}

impl Seek for BodyReader {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        match self {
            BodyReader::Single(l) => l.seek(pos),
            BodyReader::Parts(p) => p.seek(pos),
        }
    }
}

/// The parts of a multipart object, read as one body: each part is opened (both layers,
/// header and final segment authenticated) when the read reaches it, so a range read
/// opens only the parts it touches.
pub(crate) struct PartsReader {
    blobs: Arc<crate::blobstore::BlobStore>,
    infra: SecretKey,
    dek: SecretKey,
    resource: String,
    multipart: crate::s3meta::Multipart,
    /// Where each part starts in the body.
    starts: Vec<u64>,
    len: u64,
    pos: u64,
    cur: Option<(usize, Layers)>,
}

impl PartsReader {
    fn open_part(&self, i: usize) -> std::io::Result<Layers> {
        let part = &self.multipart.parts[i];
        let bad = |what: &str| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("part {} of the object: {what}", part.n))
        };
        let source = match self.blobs.open(&self.resource, &part.body) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(bad("missing")),
            Err(e) => return Err(e),
        };
        let id = ObjectId { resource: &self.resource, object: &self.multipart.upload, generation: u64::from(part.n) };
        let layers = open_layers(&self.infra, &self.dek, id, source).map_err(|f| match f {
            OpenFailure::Store(e) => e,
            OpenFailure::Missing => bad("missing"),
            OpenFailure::Tampered => bad("modified, truncated or moved"),
        })?;
        if layers.len() != part.size {
            return Err(bad("length"));
        }
        Ok(layers)
    }
}

impl Read for PartsReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let i = self.starts.partition_point(|s| *s <= self.pos) - 1;
        if self.cur.as_ref().is_none_or(|(c, _)| *c != i) {
            self.cur = Some((i, self.open_part(i)?));
        }
        let start = self.starts[i];
        let end = start + self.multipart.parts[i].size;
        let Some((_, layers)) = self.cur.as_mut() else { return Ok(0) };
        layers.seek(SeekFrom::Start(self.pos - start))?;
        let want = usize::try_from(end - self.pos).unwrap_or(usize::MAX).min(buf.len());
        let n = layers.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "a part ended early"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for PartsReader {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.pos = match pos {
            SeekFrom::Start(p) => p,
            SeekFrom::End(d) => self.len.saturating_add_signed(d),
            SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
        };
        Ok(self.pos)
    }
}

/// Reads `len` plaintext bytes from `offset` on a blocking thread, in chunks.
fn produce(
    mut reader: BodyReader,
    offset: u64,
    len: u64,
) -> mpsc::Receiver<std::result::Result<Bytes, std::io::Error>> {
    let (tx, rx) = mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        let mut left = len;
        let mut run = || -> std::io::Result<()> {
            reader.seek(SeekFrom::Start(offset))?;
            while left > 0 {
                let n = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
                let mut buf = vec![0u8; n];
                reader.read_exact(&mut buf)?;
                left -= n as u64;
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        };
        if let Err(e) = run() {
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

impl StoreService {
    /// Opens an object's body: both layers of its file (header and final segments
    /// authenticated), or, for an object made by a multipart upload, its parts.
    async fn open_blob(&self, r: &Resource, o: &ObjectRow, dek: SecretKey) -> Result<BodyReader> {
        if let Some(multipart) = self.multipart_of(r, o)? {
            let mut starts = Vec::with_capacity(multipart.parts.len());
            let mut len = 0u64;
            for p in &multipart.parts {
                starts.push(len);
                len += p.size;
            }
            if Some(len) != u64::try_from(o.size).ok() {
                return Err(self.integrity(r, &format!("the part index of object {} in resource {}", o.id, r.name)));
            }
            return Ok(BodyReader::Parts(Box::new(PartsReader {
                blobs: self.blobs.clone(),
                infra: SecretKey::from_slice(self.infra.key.expose_secret())?,
                dek,
                resource: r.id.clone(),
                multipart,
                starts,
                len,
                pos: 0,
                cur: None,
            })));
        }
        let name = Self::blob_name(o);
        let infra = SecretKey::from_slice(self.infra.key.expose_secret())?;
        let (res, obj, generation) = (r.id.clone(), o.id.clone(), u64::try_from(o.generation).unwrap_or(0));
        let blobs = self.blobs.clone();
        let reader = tokio::task::spawn_blocking(move || {
            let source = blobs.open(&res, &name).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => OpenFailure::Missing,
                _ => OpenFailure::Store(e),
            })?;
            let id = ObjectId { resource: &res, object: &obj, generation };
            open_layers(&infra, &dek, id, source)
        })
        .await
        .map_err(|e| StoreError::Storage(e.to_string()))?;
        let reader = match reader {
            Ok(reader) => reader,
            Err(OpenFailure::Missing) if self.superseded(o).await? => {
                return Err(StoreError::Conflict(format!(
                    "blob {} in resource {} was replaced or deleted while it was being opened; read it again",
                    o.id, r.name
                )));
            }
            Err(OpenFailure::Missing) => {
                return Err(self.integrity(r, &format!("the body of blob {} in resource {} (missing)", o.id, r.name)));
            }
            Err(OpenFailure::Tampered) => {
                return Err(self.integrity(r, &format!("the body of blob {} in resource {}", o.id, r.name)));
            }
            Err(OpenFailure::Store(e)) => {
                return Err(StoreError::Storage(format!("{e}; nothing was lost, retry when it is back")));
            }
        };
        if Some(reader.len()) != u64::try_from(o.size).ok() {
            return Err(self.integrity(r, &format!("the body of blob {} in resource {} (length)", o.id, r.name)));
        }
        Ok(BodyReader::Single(Box::new(reader)))
    }

    /// Whether `o` is no longer the current row of its object (replaced or deleted since
    /// it was read), so a missing body is a race, not tampering.
    async fn superseded(&self, o: &ObjectRow) -> Result<bool> {
        // The body's name comes from the generation and the sealed name (fresh per write).
        let now = crate::repo::objects::current(&self.db, &o.resource_id, o.kind, &o.name_hash).await?;
        Ok(now.is_none_or(|(g, n)| g != o.generation || n != o.name_sealed))
    }

    /// The whole plaintext of a blob as a stream (for jobs).
    pub(crate) async fn blob_reader(
        &self,
        r: &Resource,
        o: &ObjectRow,
        dek: SecretKey,
    ) -> Result<impl Stream<Item = std::result::Result<Bytes, std::io::Error>> + Unpin + use<>> {
        let reader = self.open_blob(r, o, dek).await?;
        let len = reader.len();
        let mut rx = produce(reader, 0, len);
        Ok(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }

    /// `<object>.<generation>.<tag>` (under the resource): the tag (from the sealed name,
    /// which has a fresh salt per write) makes the key unique to one write, so a write
    /// that loses its commit removes only its own body, never the winner's.
    pub(crate) fn blob_name(o: &ObjectRow) -> String {
        blob_key(&o.id, o.generation, &o.name_sealed)
    }

    /// Removes a body no row ever pointed at (a write that lost or failed) at once; a
    /// removal that fails is queued and retried by the sweeper.
    pub(crate) async fn discard_blob_body(&self, resource_id: &str, name: &str) {
        if let Err(e) = self.blobs.remove(resource_id, name).await {
            tracing::warn!(store = %self.blobs.describe(), blob = name, error = %e, "could not remove a blob body; will retry");
            self.queue_removal(resource_id, name, self.now()).await;
        }
    }

    /// Removes the body of a replaced or deleted blob (its data key is gone with its row,
    /// so it is crypto-erased already) after the retire delay, so downloads of it that
    /// are running finish; with no delay, at once (queued if that fails). An S3 object
    /// made by a multipart upload retires its parts instead.
    pub(crate) async fn retire_blob_body(&self, r: &Resource, o: &ObjectRow) {
        if self.retire_s3_parts(r, o).await {
            return;
        }
        self.retire_body_name(&r.id, &Self::blob_name(o)).await;
    }

    /// Retires the parts of a multipart object being replaced or deleted (bodies after
    /// the retire delay, rows at once). `false` for any other object.
    pub(crate) async fn retire_s3_parts(&self, r: &Resource, o: &ObjectRow) -> bool {
        let multipart = match self.multipart_of(r, o) {
            Ok(Some(m)) => m,
            Ok(None) => return false,
            Err(e) => {
                // Unreadable metadata: keep the rows (the sweep keeps bodies they name).
                tracing::error!(resource = %r.name, object = %o.id, error = %e, "cannot retire the parts of an object");
                return true;
            }
        };
        for p in &multipart.parts {
            let removed = {
                let _g = self.write_guard().await;
                async {
                    let mut tx = self.db.pool().begin().await?;
                    let object = (o.id.as_str(), o.generation);
                    let mine = crate::repo::s3parts::delete_of_object(
                        &mut tx,
                        &r.id,
                        &multipart.upload,
                        i64::from(p.n),
                        object,
                    )
                    .await?;
                    tx.commit().await?;
                    Ok::<bool, StoreError>(mine)
                }
                .await
            };
            match removed {
                // Only a body this object's row named: never one another object uses.
                Ok(true) => self.retire_body_name(&r.id, &p.body).await,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(resource = %r.name, object = %o.id, error = %e, "could not drop a part row; its body stays, listed, until the bucket is deleted");
                }
            }
        }
        true
    }

    /// Seconds a served body stays after its blob is replaced or deleted.
    fn retire_delay(&self) -> i64 {
        let d = self.cfg.blob_retire_delay.unwrap_or(match &*self.blobs {
            crate::blobstore::BlobStore::Local(_) => std::time::Duration::ZERO,
            crate::blobstore::BlobStore::S3(_) => std::time::Duration::from_secs(300),
        });
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
    }

    /// A body no longer referenced: removed after the retire delay.
    pub(crate) async fn retire_body_name(&self, resource_id: &str, name: &str) {
        let delay = self.retire_delay();
        if delay == 0 {
            self.discard_blob_body(resource_id, name).await;
        } else {
            self.queue_removal(resource_id, name, self.now().saturating_add(delay)).await;
        }
    }

    async fn queue_removal(&self, resource_id: &str, name: &str, due: i64) {
        // Every SQLite write goes under the write lock: a write outside it would make the
        // group commit's transaction (which reads, then writes) fail with SQLITE_BUSY.
        let queued = {
            let _g = self.write_guard().await;
            repo::queue_removal(&self.db, resource_id, name, due).await
        };
        if let Err(e) = queued {
            // The body stays as unreferenced ciphertext whose data key is gone.
            tracing::error!(blob = name, error = %e, "could not queue a blob body for removal");
        }
    }

    /// Removes the queued bodies that are due (at most 1,000 per pass); a removal that
    /// fails stays queued for the next pass. Returns how many went.
    ///
    /// # Errors
    /// Database errors.
    pub async fn sweep_blob_removals(&self) -> Result<u64> {
        let due = repo::removals_due(&self.db, self.now()).await?;
        let mut removed = 0;
        for (resource_id, name) in due {
            match self.blobs.remove(&resource_id, &name).await {
                Ok(()) => {
                    let _g = self.write_guard().await;
                    repo::removed(&self.db, &resource_id, &name).await?;
                    removed += 1;
                }
                Err(e) => {
                    tracing::warn!(store = %self.blobs.describe(), blob = name, error = %e, "could not remove a blob body; will retry");
                    break;
                }
            }
        }
        Ok(removed)
    }

    /// Removes blob bodies that no object row references and no queued removal names,
    /// once older than `grace`: bodies a crash left between the body's commit and its
    /// row's (or a delete that stopped half-way). A body is committed just before its
    /// row, so a younger one may be a write about to commit and is never touched; only
    /// names this service writes (`<object>.<generation>.<tag>`, and a directory's
    /// `.tmp-*` files) are considered. Returns how many went.
    ///
    /// # Errors
    /// Database and blob store errors (a removal that fails is logged and retried on the
    /// next pass).
    pub async fn sweep_orphan_blobs(&self, grace: std::time::Duration) -> Result<u64> {
        let mut removed = 0;
        for resource_id in self.blobs.resources().await? {
            let old: Vec<String> = self
                .blobs
                .list(&resource_id)
                .await?
                .into_iter()
                .filter(|b| b.age >= grace && is_body_name(&b.name))
                .map(|b| b.name)
                .collect();
            if old.is_empty() {
                continue;
            }
            // Read after the listing: a row committed meanwhile is seen.
            let referenced = self.referenced_blob_names(&resource_id).await?;
            for name in old.into_iter().filter(|n| !referenced.contains(n)) {
                match self.blobs.remove(&resource_id, &name).await {
                    Ok(()) => {
                        tracing::info!(resource = %resource_id, blob = %name, "removed a blob body no object refers to");
                        removed += 1;
                    }
                    Err(e) => {
                        tracing::warn!(store = %self.blobs.describe(), blob = %name, error = %e, "could not remove an unreferenced blob body; will retry");
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Names of the bodies a resource's blob rows and queued removals refer to.
    async fn referenced_blob_names(&self, resource_id: &str) -> Result<std::collections::HashSet<String>> {
        let mut rows = crate::repo::objects::names_of_kind(&self.db, resource_id, ObjectKind::Blob.as_str()).await?;
        rows.extend(crate::repo::objects::names_of_kind(&self.db, resource_id, ObjectKind::S3.as_str()).await?);
        let mut names: std::collections::HashSet<String> =
            rows.iter().map(|(id, generation, sealed)| blob_key(id, *generation, sealed)).collect();
        names.extend(repo::queued(&self.db, resource_id).await?);
        // Parts of multipart uploads, running or completed.
        names.extend(crate::repo::s3parts::bodies(&self.db, resource_id).await?);
        // Bodies being written (their rows commit later); entries whose row has committed,
        // or that are older than a week (a write that died), are dropped here.
        let writing = repo::writes(&self.db, resource_id).await?;
        let stale = self.now().saturating_sub(WRITE_PROTECTION_SECS);
        for (name, started) in writing {
            if names.contains(&name) || started < stale {
                let _g = self.write_guard().await;
                repo::written(&self.db, resource_id, &name).await?;
            } else {
                names.insert(name);
            }
        }
        Ok(names)
    }

    /// Seals `input` (plaintext chunks) into a new file for `row`, in constant memory,
    /// re-checking key access every `recheck_segments` chunks. Returns the plaintext size.
    pub(crate) async fn write_blob_file<S, E>(
        &self,
        r: &Resource,
        row: &ObjectRow,
        dek: SecretKey,
        input: S,
    ) -> Result<(String, u64)>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let generation = u64::try_from(row.generation).unwrap_or(0);
        self.write_body(r, r, &row.id, generation, Self::blob_name(row), dek, input).await
    }

    /// Seals `input` into body `name` with the seal context (resource, `object`,
    /// `generation`): an object's body, or a part of a multipart upload. `key` is the
    /// resource whose key access is re-checked on the way: `r`, or the key slot of an S3
    /// object under a key of its own.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn write_body<S, E>(
        &self,
        r: &Resource,
        key: &Resource,
        object: &str,
        generation: u64,
        name: String,
        dek: SecretKey,
        mut input: S,
    ) -> Result<(String, u64)>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        // Listed before the first byte goes out, so the orphan sweep leaves the body alone
        // however long the write and the commit of its row take.
        {
            let _g = self.write_guard().await;
            repo::writing(&self.db, &r.id, &name, self.now()).await?;
        }
        // `Some(chunk)`, then `None` once the input ended normally: only then does the
        // writer commit. A failed check, a broken client stream or a dropped request
        // closes the channel without `None`, and the sink goes uncommitted (nothing stored).
        let (tx, mut rx) = mpsc::channel::<Option<Bytes>>(4);
        let infra = SecretKey::from_slice(self.infra.key.expose_secret())?;
        let (res, obj) = (r.id.clone(), object.to_string());
        let (blobs, name2) = (self.blobs.clone(), name.clone());
        // The body becomes visible only at `commit`, whole; an error or a dropped sink
        // leaves nothing behind.
        let writer = tokio::task::spawn_blocking(move || -> Result<u64> {
            let id = ObjectId { resource: &res, object: &obj, generation };
            let sink = blobs.create(&res, &name2)?;
            let outer = id.with_context(b"atrest/infra", |ctx| EncryptingWriter::new(&infra, ctx, sink))?;
            let mut inner = id.with_context(b"atrest/object", |ctx| EncryptingWriter::new(&dek, ctx, outer))?;
            let mut total = 0u64;
            loop {
                match rx.blocking_recv() {
                    Some(Some(chunk)) => {
                        inner.write_all(&chunk)?;
                        total += chunk.len() as u64;
                    }
                    Some(None) => {
                        inner.finish()?.finish()?.commit()?;
                        return Ok(total);
                    }
                    None => return Err(StoreError::bad("the upload ended before its last byte; nothing was stored")),
                }
            }
        });
        // Re-checked by bytes, not by the client's frame sizes.
        let every = self.cfg.recheck_segments * CHUNK as u64;
        let mut since_check = 0u64;
        let mut failure: Option<StoreError> = None;
        while let Some(item) = input.next().await {
            match item {
                Ok(b) => {
                    since_check += b.len() as u64;
                    if since_check >= every {
                        since_check = 0;
                        if let Err(e) = self.recheck_access(key).await {
                            failure = Some(e);
                            break;
                        }
                    }
                    if tx.send(Some(b)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    failure = Some(StoreError::bad(format!("the upload was interrupted: {e}")));
                    break;
                }
            }
        }
        if failure.is_none() {
            // A writer that already stopped reports why through `writer` below.
            let _ = tx.send(None).await;
        }
        drop(tx);
        let written = writer.await.map_err(|e| StoreError::Storage(e.to_string()))?;
        match (failure, written) {
            (Some(e), _) | (None, Err(e)) => Err(e),
            (None, Ok(total)) => Ok((name, total)),
        }
    }

    /// Key access for a long stream: a fresh cached key is enough, else the vault is
    /// asked (and a refusal stops the stream).
    pub(crate) async fn recheck_access(&self, r: &Resource) -> Result<()> {
        let cur = self.resource_by_id(&r.id).await?;
        self.key(&cur, Slot::Resource(cur.rk_epoch)).await.map(|_| ())
    }

    /// Commits the row of a body already written (`body`), conditional on the object
    /// still being at `cur`'s generation. A re-key that finished during the upload: the
    /// data key is wrapped again under the current resource key and the row committed
    /// again (the file does not change). When the row does not commit, the body is removed.
    pub(crate) async fn commit_body_row(
        &self,
        r: &Resource,
        row: &mut ObjectRow,
        dek: &SecretKey,
        body: &str,
        cur: Option<&ObjectRow>,
        name: &str,
    ) -> Result<()> {
        let mut outcome = Outcome::Stale;
        for _ in 0..4 {
            let now = self.resource_by_id(&r.id).await;
            let now = match now {
                Ok(n) => n,
                Err(e) => {
                    self.discard_blob_body(&r.id, body).await;
                    return Err(e);
                }
            };
            if now.rk_epoch != row.rk_epoch && row.rk_epoch != crate::rows::NO_RESOURCE_KEY {
                let rk = match self.key(&now, crate::cache::Slot::Resource(now.rk_epoch)).await {
                    Ok(rk) => rk,
                    Err(e) => {
                        self.discard_blob_body(&r.id, body).await;
                        return Err(e);
                    }
                };
                row.rk_epoch = now.rk_epoch;
                row.wrapped_dek = crate::hierarchy::rewrap_data_key(&rk, Self::oid(&now, row), dek)?;
            }
            row.mac = self.object_mac(row);
            match self.committer.write(row.clone(), cur.map(|o| o.generation)).await {
                Ok(Outcome::Stale) => continue,
                Ok(o) => {
                    outcome = o;
                    break;
                }
                Err(e) => {
                    self.discard_blob_body(&r.id, body).await;
                    return Err(e);
                }
            }
        }
        if outcome != Outcome::Written {
            // Only this write's own body: its name is unique to this write.
            self.discard_blob_body(&r.id, body).await;
            return Err(StoreError::PreconditionFailed(format!(
                "{name}: another write of it finished first; read it again and retry"
            )));
        }
        Ok(())
    }

    /// Uploads blob `name` from a stream of chunks.
    ///
    /// # Errors
    /// `Forbidden`, `PreconditionFailed`, `KeyInaccessible`, storage errors.
    pub async fn put_blob<S, E>(
        &self,
        actor: &Principal,
        resource: &str,
        name: &str,
        cond: &Precondition,
        input: S,
    ) -> Result<ObjectInfo>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        check_name(name)?;
        let r = self.authorized(actor, resource, DataRole::Writer).await?;
        Self::check_usable(&r)?;
        let cur = self.find_object(&r, ObjectKind::Blob, name).await?;
        Self::check_precondition(name, cur.as_ref(), cond)?;
        let (mut row, dek) = self.next_row(&r, ObjectKind::Blob, name, cur.as_ref(), 0).await?;
        let dek_copy = SecretKey::from_slice(dek.expose_secret())?;
        let (body, total) = self.write_blob_file(&r, &row, dek, input).await?;
        row.size = i64::try_from(total).unwrap_or(i64::MAX);
        let info = ObjectInfo {
            name: name.to_string(),
            size: total,
            generation: row.generation,
            etag: crate::objects::etag(&row.id, row.generation),
            created: row.created,
            updated: row.updated,
        };
        let oid = row.id.clone();
        self.commit_body_row(&r, &mut row, &dek_copy, &body, cur.as_ref(), name).await?;
        if let Some(old) = &cur {
            self.retire_blob_body(&r, old).await;
        }
        if r.diagnostics {
            self.audit(&r, &actor.name, "blob-put", &oid, "ok", serde_json::json!({"size": total})).await?;
        }
        Ok(info)
    }

    /// Opens a stored body and streams `range` of it (the plaintext is `size` bytes),
    /// re-checking key access (of `key`: `r`, or an S3 object's key slot) on the way out.
    /// Returns (first byte, length, chunks).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn read_body(
        self: &Arc<Self>,
        r: &Resource,
        key: &Resource,
        o: &ObjectRow,
        dek: SecretKey,
        size: u64,
        range: Option<ByteRange>,
        name: &str,
    ) -> Result<(u64, u64, mpsc::Receiver<std::result::Result<Bytes, std::io::Error>>)> {
        let unsatisfiable = |what: String| StoreError::RangeNotSatisfiable {
            size,
            message: format!("{what}: {name} has {size} bytes; ask for a range within them"),
        };
        let (offset, len) = atrest_wire::range::resolve(range, size).map_err(|e| {
            unsatisfiable(match e {
                atrest_wire::range::Unsatisfiable::EmptySuffix => "the range asks for the last 0 bytes".into(),
                atrest_wire::range::Unsatisfiable::StartsPastEnd(start) => format!("the range starts at byte {start}"),
            })
        })?;
        let reader = self.open_blob(r, o, dek).await?;
        let mut prx = produce(reader, offset, len);
        let store = self.clone();
        let res_label = (r.clone(), key.clone(), o.id.clone());
        // Relay: counts segments and re-checks key access on the way out.
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            let (r, key, oid) = res_label;
            let mut n = 0u64;
            while let Some(item) = prx.recv().await {
                let item = match item {
                    Ok(b) => {
                        n += 1;
                        if n.is_multiple_of(store.cfg.recheck_segments)
                            && let Err(e) = store.recheck_access(&key).await
                        {
                            let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                            return;
                        }
                        Ok(b)
                    }
                    Err(e) if is_integrity_error(&e) => {
                        let _ = store.integrity(&r, &format!("a segment of blob {oid} in resource {}", r.name));
                        Err(e)
                    }
                    Err(e) => {
                        tracing::warn!(resource = %r.name, blob = %oid, error = %e, "a blob read stopped: the blob store failed");
                        Err(e)
                    }
                };
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        Ok((offset, len, rx))
    }

    /// Reads blob `name`, or a byte range of it. Header and final segment of both layers
    /// are authenticated before this returns; later segments as they are read.
    ///
    /// # Errors
    /// `NotFound`, `Integrity`, `KeyInaccessible`, `Forbidden`; `RangeNotSatisfiable`
    /// for a range starting past the end or an empty suffix.
    pub async fn get_blob(
        self: &Arc<Self>,
        actor: &Principal,
        resource: &str,
        name: &str,
        range: Option<ByteRange>,
    ) -> Result<BlobRead> {
        let r = self.authorized(actor, resource, DataRole::Reader).await?;
        Self::check_usable(&r)?;
        let o = self
            .find_object(&r, ObjectKind::Blob, name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no blob named {name} in resource {resource}")))?;
        let dek = self.data_key(&r, &o).await?;
        let info = self.info(&r, &o, &dek)?;
        let (offset, len, chunks) = self.read_body(&r, &r, &o, dek, info.size, range, name).await?;
        if r.diagnostics {
            self.audit(&r, &actor.name, "blob-get", &o.id, "ok", serde_json::json!({"offset": offset, "len": len}))
                .await?;
        }
        Ok(BlobRead { info, offset, len, chunks })
    }
}

#[cfg(test)]
mod tests {
    use super::{blob_key, is_body_name};

    #[test]
    fn only_names_this_service_writes_are_swept() {
        let name = blob_key("0a1b2c", 3, b"sealed name");
        assert!(name.starts_with("0a1b2c.3.") && is_body_name(&name), "{name}");
        assert!(is_body_name(".tmp-00112233aabbccdd"));
        for other in [
            "",
            "x",
            "a.b.c",
            "0a1b.3",
            "0a1b.3.00112233aabbccd",
            "0a1b.x.00112233aabbccdd",
            "a/b.1.00112233aabbccdd",
            "keep.txt",
        ] {
            assert!(!is_body_name(other), "{other}");
        }
    }
}
