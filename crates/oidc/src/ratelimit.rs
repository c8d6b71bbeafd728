//! Sign-in attempt limits per account and per client address: a sliding window of failures,
//! driven by the caller's `now` so that tests move time instead of sleeping.
//!
//! Only failures count; a success clears the account's record. The map is pruned as it is used,
//! so an attacker cycling keys cannot grow it without bound (entries older than the window go,
//! and the map is capped).

use std::collections::HashMap;
use std::sync::Mutex;

use portcullis_core::Timestamp;

pub struct Limiter {
    max_failures: usize,
    window_ms: i64,
    cap: usize,
    entries: Mutex<HashMap<String, Vec<i64>>>,
}

impl Limiter {
    pub fn new(max_failures: usize, window_seconds: i64) -> Self {
        Self {
            max_failures,
            window_ms: window_seconds * 1000,
            cap: 100_000,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` may try now.
    pub fn allowed(&self, key: &str, now: Timestamp) -> bool {
        let Ok(mut m) = self.entries.lock() else {
            return false;
        };
        let since = now.millis() - self.window_ms;
        match m.get_mut(key) {
            Some(v) => {
                v.retain(|t| *t > since);
                v.len() < self.max_failures
            }
            None => true,
        }
    }

    pub fn failed(&self, key: &str, now: Timestamp) {
        let Ok(mut m) = self.entries.lock() else {
            return;
        };
        if m.len() >= self.cap {
            let since = now.millis() - self.window_ms;
            m.retain(|_, v| v.iter().any(|t| *t > since));
        }
        m.entry(key.to_owned()).or_default().push(now.millis());
    }

    pub fn succeeded(&self, key: &str) {
        if let Ok(mut m) = self.entries.lock() {
            m.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slides() {
        let l = Limiter::new(3, 60);
        let t = Timestamp(1_000_000);
        for _ in 0..3 {
            assert!(l.allowed("a", t));
            l.failed("a", t);
        }
        assert!(!l.allowed("a", t));
        assert!(l.allowed("b", t), "other keys are not affected");
        assert!(l.allowed("a", t.plus_seconds(61)), "failures age out");
        l.failed("a", t);
        l.succeeded("a");
        assert!(l.allowed("a", t));
    }
}
