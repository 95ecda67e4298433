//! Prometheus metrics, rendered in the text exposition format at `/metrics`.
//!
//! Hand-kept counters and one latency histogram behind a mutex: a scrape every few
//! seconds and a few map updates per request cost far less than a metrics framework's
//! dependency tree. Labels are bounded: routes are operation names (never raw paths),
//! keys are `vault/name` (operators asked for per-key counts; key names are chosen by
//! tenants, so `/metrics` can be turned off with `--metrics false`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The server's metrics.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect::<Vec<_>>().join(",")
}

const HELP: &[(&str, &str, &str)] = &[
    ("atrest_http_requests_total", "counter", "HTTP requests by route, method and status."),
    ("atrest_key_operations_total", "counter", "Key operations by vault/key, operation and result."),
    ("atrest_secret_operations_total", "counter", "Secrets API operations by vault, operation and result."),
    ("atrest_auth_failures_total", "counter", "Requests refused for a missing or invalid credential, by reason."),
    ("atrest_rate_limited_total", "counter", "Requests answered 429 by the per-principal rate limit."),
];

impl Metrics {
    fn inc(&self, name: &'static str, l: String) {
        if let Ok(mut c) = self.counters.lock() {
            *c.entry((name, l)).or_default() += 1;
        }
    }

    /// One HTTP request finished.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.inc(
            "atrest_http_requests_total",
            labels(&[("route", route), ("method", method), ("status", &status.to_string())]),
        );
        if let Ok(mut h) = self.latency.lock() {
            let h = h.entry(labels(&[("route", route)])).or_default();
            for (i, b) in BUCKETS.iter().enumerate() {
                if seconds <= *b {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        }
    }

    /// One key operation (or lifecycle change) finished with `result` (`ok` or an error code).
    pub fn key_operation(&self, vault: &str, key: &str, operation: &str, result: &str) {
        let key = format!("{vault}/{}", key.split('/').next().unwrap_or(key));
        self.inc("atrest_key_operations_total", labels(&[("key", &key), ("operation", operation), ("result", result)]));
    }

    /// A secrets API operation, per vault (never per secret name).
    pub fn secret_operation(&self, vault: &str, operation: &str, result: &str) {
        self.inc(
            "atrest_secret_operations_total",
            labels(&[("vault", vault), ("operation", operation), ("result", result)]),
        );
    }

    /// A request without a valid credential.
    pub fn auth_failure(&self, reason: &str) {
        self.inc("atrest_auth_failures_total", labels(&[("reason", reason)]));
    }

    /// A request refused by the rate limit.
    pub fn rate_limited(&self) {
        self.inc("atrest_rate_limited_total", String::new());
    }

    /// The text exposition; `audit` is (appended, failed) as the vault counts them.
    #[must_use]
    pub fn render(&self, audit: (u64, u64)) -> String {
        let mut out = String::new();
        let a = "atrest_audit_appends_total";
        let _ = writeln!(out, "# HELP {a} Audit trail appends by result.\n# TYPE {a} counter");
        let _ = writeln!(out, "{a}{{result=\"ok\"}} {}\n{a}{{result=\"error\"}} {}", audit.0, audit.1);
        let counters = self.counters.lock().map(|c| c.clone()).unwrap_or_default();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((n, l), v) in &counters {
                if n == name {
                    let _ = if l.is_empty() { writeln!(out, "{n} {v}") } else { writeln!(out, "{n}{{{l}}} {v}") };
                }
            }
        }
        let name = "atrest_http_request_duration_seconds";
        let _ = writeln!(out, "# HELP {name} HTTP request latency by route.\n# TYPE {name} histogram");
        if let Ok(hs) = self.latency.lock() {
            for (l, h) in hs.iter() {
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(out, "{name}_bucket{{{l},le=\"{b}\"}} {}", h.counts[i]);
                }
                let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "{name}_sum{{{l}}} {}", h.sum);
                let _ = writeln!(out, "{name}_count{{{l}}} {}", h.count);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn exposition() {
        let m = Metrics::default();
        m.request("wrapKey", "POST", 200, 0.003);
        m.request("wrapKey", "POST", 200, 0.3);
        m.key_operation("default", "k1/abc", "wrapKey", "ok");
        m.auth_failure("missing");
        m.rate_limited();
        let t = m.render((7, 1));
        assert!(t.contains("atrest_http_requests_total{route=\"wrapKey\",method=\"POST\",status=\"200\"} 2"), "{t}");
        assert!(t.contains("atrest_key_operations_total{key=\"default/k1\",operation=\"wrapKey\",result=\"ok\"} 1"));
        assert!(t.contains("atrest_http_request_duration_seconds_bucket{route=\"wrapKey\",le=\"0.005\"} 1"));
        assert!(t.contains("atrest_http_request_duration_seconds_bucket{route=\"wrapKey\",le=\"+Inf\"} 2"));
        assert!(t.contains("atrest_rate_limited_total 1"));
        assert!(t.contains("atrest_audit_appends_total{result=\"error\"} 1"));
        assert!(t.contains("atrest_auth_failures_total{reason=\"missing\"} 1"));
    }
}
