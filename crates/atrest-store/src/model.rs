//! The data service's nouns: resources, their encryption settings and state, roles,
//! objects, messages and jobs.

use crate::keyvault::{KeyRef, WrappedKey};

/// Who holds the key-encryption key of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The deployment's platform key (`atrest-platform/keys/platform-kek`, follows its
    /// latest version).
    Platform,
    /// The customer's key, in a vault of the resource's tenant (or on another server).
    Customer,
}

impl KeySource {
    /// Stored and wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::Platform => "platform",
            KeySource::Customer => "customer",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "platform" => Some(KeySource::Platform),
            "customer" => Some(KeySource::Customer),
            _ => None,
        }
    }
}

/// Whether a resource's key can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceState {
    /// Normal.
    Active,
    /// The vault refused (or stayed unreachable past the grace period): every data and
    /// configuration call fails with `KeyInaccessible` until access comes back.
    KeyInaccessible,
}

impl ResourceState {
    /// Stored and wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceState::Active => "active",
            ResourceState::KeyInaccessible => "key-inaccessible",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(ResourceState::Active),
            "key-inaccessible" => Some(ResourceState::KeyInaccessible),
            _ => None,
        }
    }
}

/// A principal's role on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DataRole {
    /// Reads records and blobs, lists them.
    Reader,
    /// Also writes and deletes objects, sends, receives and acknowledges messages.
    Writer,
    /// Also changes encryption, roles and diagnostics, runs jobs, deletes the resource.
    Owner,
}

impl DataRole {
    /// Stored and wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DataRole::Reader => "reader",
            DataRole::Writer => "writer",
            DataRole::Owner => "owner",
        }
    }

    /// Parses [`Self::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reader" => Some(DataRole::Reader),
            "writer" => Some(DataRole::Writer),
            "owner" => Some(DataRole::Owner),
            _ => None,
        }
    }
}

/// A resource, as stored (row verified).
#[derive(Debug, Clone)]
pub struct Resource {
    /// Stable id (bound into every seal).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Name, unique in the tenant.
    pub name: String,
    /// Its identity: the principal the vault sees (like a managed identity).
    pub identity_id: String,
    /// Usable or not.
    pub state: ResourceState,
    /// Why it is not (the last `KeyInaccessible` message), or empty.
    pub state_reason: String,
    /// Platform or customer key.
    pub key_source: KeySource,
    /// The key URI as configured (`https://HOST/keys/NAME[/VERSION]`, or `platform`).
    pub key_uri: String,
    /// The key-encryption key.
    pub kek: KeyRef,
    /// A remote vault's bearer credential, sealed (empty for the vault in this process).
    pub remote_cred: Vec<u8>,
    /// The resource key, wrapped by `kek` (with the exact version that wrapped it).
    pub wrapped: WrappedKey,
    /// Which resource key wraps new data keys (bumped by a re-key job).
    pub rk_epoch: i64,
    /// The previous resource key, still wrapping some data keys while a re-key job runs.
    pub old_wrapped: Option<WrappedKey>,
    /// Bumped by a re-encrypt job; objects sealed under an older epoch get rewritten.
    pub enc_epoch: i64,
    /// The message key, always wrapped by the platform key.
    pub msg_wrapped: WrappedKey,
    /// Data reads and writes go to the audit trail too.
    pub diagnostics: bool,
    /// Created (Unix seconds).
    pub created: i64,
    /// Updated (Unix seconds).
    pub updated: i64,
    /// The MAC the row had when read: a save is a compare-and-swap on it, so concurrent
    /// read-modify-writes (several nodes) cannot silently undo each other.
    pub(crate) loaded_mac: Vec<u8>,
}

/// Kinds of stored objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// Key → bytes, stored in the database row.
    Record,
    /// Streamed, any size, stored as a file (or object-store object).
    Blob,
    /// An S3 object: a blob whose key is stored readable (for ordered listings) and that
    /// carries S3 metadata; only the S3 front end reads and writes these.
    S3,
    /// An S3 multipart upload in progress: its key, its data key (which seals every
    /// part) and the metadata the object will get. No body of its own.
    S3Upload,
}

impl ObjectKind {
    /// Stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Record => "record",
            ObjectKind::Blob => "blob",
            ObjectKind::S3 => "s3",
            ObjectKind::S3Upload => "s3upload",
        }
    }

    /// Whether its body is a file in the blob store (blobs and S3 objects).
    #[must_use]
    pub fn is_streamed(self) -> bool {
        matches!(self, ObjectKind::Blob | ObjectKind::S3)
    }

    /// [`Self::is_streamed`] for a stored kind name.
    pub(crate) fn stored_is_streamed(kind: &str) -> bool {
        kind == "blob" || kind == "s3"
    }
}

/// What is readable about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The customer's name for it (decrypted).
    pub name: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Bumps on every overwrite.
    pub generation: i64,
    /// Entity tag: changes with every overwrite.
    pub etag: String,
    /// Created.
    pub created: i64,
    /// Last written.
    pub updated: i64,
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Message id.
    pub id: String,
    /// Pass to acknowledge; valid until the visibility timeout ends.
    pub receipt: String,
    /// The body.
    pub body: Vec<u8>,
    /// How many times it was received.
    pub deliveries: i64,
    /// When it expires (never returned after).
    pub expires: i64,
}

/// A re-key or re-encrypt job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Id.
    pub id: String,
    /// Resource name.
    pub resource: String,
    /// `rekey` or `reencrypt`.
    pub kind: String,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    /// Objects done.
    pub done: i64,
    /// Objects to do, when the job started.
    pub total: i64,
    /// Why it failed (or is waiting), else empty.
    pub error: String,
    /// Created.
    pub created: i64,
    /// Last progress.
    pub updated: i64,
}
