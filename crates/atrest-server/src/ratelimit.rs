//! Per-principal rate limits: a token bucket per principal id, refilled continuously at
//! `rate` requests per second up to `burst`. In memory and per node: with several nodes
//! each enforces its own share, which bounds a runaway client without a shared store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The limiter; `rate == 0` turns it off.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `rate` requests per second with bursts of `burst` (at least 1).
    #[must_use]
    pub fn new(rate: u32, burst: u32) -> Self {
        Self { rate: f64::from(rate), burst: f64::from(burst.max(1)), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request from `principal`'s bucket; `Err(seconds)` to wait when empty.
    pub fn check(&self, principal: &str) -> Result<(), u64> {
        self.check_at(principal, Instant::now())
    }

    fn check_at(&self, principal: &str, now: Instant) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let Ok(mut map) = self.buckets.lock() else { return Ok(()) };
        let b = map.entry(principal.to_string()).or_insert(Bucket { tokens: self.burst, last: now });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        // Whole seconds until one token is back (Retry-After has second resolution).
        let wait = ((1.0 - b.tokens) / self.rate).ceil();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Err((wait as u64).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::RateLimiter;
    use std::time::{Duration, Instant};

    #[test]
    fn bursts_then_refills() {
        let l = RateLimiter::new(2, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at("a", t0).is_ok());
        }
        assert_eq!(l.check_at("a", t0), Err(1));
        assert!(l.check_at("b", t0).is_ok(), "buckets are per principal");
        assert!(l.check_at("a", t0 + Duration::from_millis(500)).is_ok(), "one token after 1/rate");
        assert!(l.check_at("a", t0 + Duration::from_millis(500)).is_err());
        assert!(RateLimiter::new(0, 0).check("x").is_ok(), "0 turns it off");
    }
}
