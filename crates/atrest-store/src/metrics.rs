//! Per-resource counters of the data service, rendered in the Prometheus text format by
//! the server's `/metrics`: key-cache hits and misses, vault calls (what a customer key
//! costs), integrity errors, resource state and job progress. Series are labelled with
//! `tenant/resource` names, never object names (those are customer data).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

#[derive(Debug, Default, Clone)]
struct Counters {
    cache_hits: u64,
    cache_misses: u64,
    vault_calls: BTreeMap<(String, String), u64>,
    integrity_errors: u64,
    inaccessible: bool,
    job_done: Option<(i64, i64)>,
}

/// The data service's metrics.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    by_resource: Mutex<BTreeMap<String, Counters>>,
}

impl StoreMetrics {
    fn with(&self, resource: &str, f: impl FnOnce(&mut Counters)) {
        let mut m = self.by_resource.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(m.entry(resource.to_string()).or_default());
    }

    pub(crate) fn cache(&self, resource: &str, hit: bool) {
        self.with(resource, |c| if hit { c.cache_hits += 1 } else { c.cache_misses += 1 });
    }

    pub(crate) fn vault_call(&self, resource: &str, operation: &str, ok: bool) {
        let result = if ok { "ok" } else { "refused" };
        self.with(resource, |c| *c.vault_calls.entry((operation.to_string(), result.to_string())).or_default() += 1);
    }

    pub(crate) fn integrity_error(&self, resource: &str) {
        self.with(resource, |c| c.integrity_errors += 1);
    }

    pub(crate) fn state(&self, resource: &str, inaccessible: bool) {
        self.with(resource, |c| c.inaccessible = inaccessible);
    }

    /// Marks exactly the resources in `labels` as inaccessible.
    pub(crate) fn sync_inaccessible(&self, labels: &std::collections::HashSet<String>) {
        let mut m = self.by_resource.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (label, c) in m.iter_mut() {
            c.inaccessible = labels.contains(label);
        }
        for label in labels {
            m.entry(label.clone()).or_default().inaccessible = true;
        }
    }

    pub(crate) fn job(&self, resource: &str, done: i64, total: i64) {
        self.with(resource, |c| c.job_done = Some((done, total)));
    }

    pub(crate) fn remove(&self, resource: &str) {
        self.by_resource.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(resource);
    }

    /// Resources currently `KeyInaccessible` (the alert-ready gauge).
    #[must_use]
    pub fn inaccessible(&self) -> usize {
        self.by_resource
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|c| c.inaccessible)
            .count()
    }

    /// Integrity errors since start, over all resources.
    #[must_use]
    pub fn integrity_errors(&self) -> u64 {
        self.by_resource
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(|c| c.integrity_errors)
            .sum()
    }

    /// The Prometheus text of every series.
    #[must_use]
    pub fn render(&self) -> String {
        let m = self.by_resource.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut out = String::new();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(out, "# HELP atrest_store_key_cache_total Resource-key cache lookups.");
        let _ = writeln!(out, "# TYPE atrest_store_key_cache_total counter");
        for (r, c) in &m {
            let _ = writeln!(
                out,
                "atrest_store_key_cache_total{{resource=\"{}\",result=\"hit\"}} {}",
                esc(r),
                c.cache_hits
            );
            let _ = writeln!(
                out,
                "atrest_store_key_cache_total{{resource=\"{}\",result=\"miss\"}} {}",
                esc(r),
                c.cache_misses
            );
        }
        let _ = writeln!(
            out,
            "# HELP atrest_store_vault_calls_total Vault calls made for a resource (get, wrapKey, unwrapKey)."
        );
        let _ = writeln!(out, "# TYPE atrest_store_vault_calls_total counter");
        for (r, c) in &m {
            for ((op, result), n) in &c.vault_calls {
                let _ = writeln!(
                    out,
                    "atrest_store_vault_calls_total{{resource=\"{}\",operation=\"{op}\",result=\"{result}\"}} {n}",
                    esc(r)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP atrest_store_integrity_errors_total Stored data or metadata that failed to authenticate."
        );
        let _ = writeln!(out, "# TYPE atrest_store_integrity_errors_total counter");
        for (r, c) in &m {
            let _ =
                writeln!(out, "atrest_store_integrity_errors_total{{resource=\"{}\"}} {}", esc(r), c.integrity_errors);
        }
        let _ = writeln!(out, "# HELP atrest_store_resource_key_inaccessible 1 while the resource is KeyInaccessible.");
        let _ = writeln!(out, "# TYPE atrest_store_resource_key_inaccessible gauge");
        for (r, c) in &m {
            let _ = writeln!(
                out,
                "atrest_store_resource_key_inaccessible{{resource=\"{}\"}} {}",
                esc(r),
                u8::from(c.inaccessible)
            );
        }
        let _ = writeln!(
            out,
            "# HELP atrest_store_resources_key_inaccessible Resources in KeyInaccessible (alert when > 0)."
        );
        let _ = writeln!(out, "# TYPE atrest_store_resources_key_inaccessible gauge");
        let _ =
            writeln!(out, "atrest_store_resources_key_inaccessible {}", m.values().filter(|c| c.inaccessible).count());
        let _ = writeln!(out, "# HELP atrest_store_job_objects Objects done and total of the resource's latest job.");
        let _ = writeln!(out, "# TYPE atrest_store_job_objects gauge");
        for (r, c) in &m {
            if let Some((done, total)) = c.job_done {
                let _ = writeln!(out, "atrest_store_job_objects{{resource=\"{}\",count=\"done\"}} {done}", esc(r));
                let _ = writeln!(out, "atrest_store_job_objects{{resource=\"{}\",count=\"total\"}} {total}", esc(r));
            }
        }
        out
    }
}
