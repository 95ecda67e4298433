//! The resource-key cache: unwrapped resource keys (and message keys) held in memory for
//! a bounded lifetime, after which the next use asks the vault again — which is how a
//! revoked key takes effect. Entries are `Arc<SecretKey>`: the key bytes are zeroized
//! when the last user drops them (a request in flight keeps its copy until it ends).

use atrest_crypto::SecretKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which key of a resource: a resource-key epoch, or the message key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// The resource key of this epoch.
    Resource(i64),
    /// The message key (always under the platform key).
    Messages,
}

struct Entry {
    key: Arc<SecretKey>,
    fetched: Instant,
}

/// How a lookup went.
pub(crate) enum Lookup {
    /// Younger than the lifetime.
    Fresh(Arc<SecretKey>),
    /// Older than the lifetime but within lifetime + grace: usable only if the vault is
    /// unreachable (not if it refuses).
    Stale(Arc<SecretKey>),
    /// Nothing usable.
    Miss,
}

/// Resource id and slot → key.
#[derive(Default)]
pub(crate) struct KeyCache {
    entries: Mutex<HashMap<(String, Slot), Entry>>,
}

impl KeyCache {
    pub(crate) fn get(&self, resource: &str, slot: Slot, ttl: Duration, grace: Duration) -> Lookup {
        let map = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(&(resource.to_string(), slot)) {
            Some(e) if e.fetched.elapsed() < ttl => Lookup::Fresh(e.key.clone()),
            Some(e) if e.fetched.elapsed() < ttl + grace => Lookup::Stale(e.key.clone()),
            _ => Lookup::Miss,
        }
    }

    pub(crate) fn put(&self, resource: &str, slot: Slot, key: Arc<SecretKey>) {
        let mut map = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.insert((resource.to_string(), slot), Entry { key, fetched: Instant::now() });
    }

    /// Drops every key of a resource (zeroized once no request holds it).
    pub(crate) fn forget(&self, resource: &str) {
        let mut map = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|(r, _), _| r != resource);
    }

    /// Drops one slot.
    pub(crate) fn forget_slot(&self, resource: &str, slot: Slot) {
        let mut map = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(&(resource.to_string(), slot));
    }

    /// Drops entries past lifetime + grace, so unused keys do not linger in memory.
    pub(crate) fn expire(&self, ttl: Duration, grace: Duration) {
        let mut map = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, e| e.fetched.elapsed() < ttl + grace);
    }
}
