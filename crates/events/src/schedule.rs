//! The retry schedule: a pure function of (attempt, now, randomness).
//!
//! After a failed attempt `n` (1-based), the next one waits `first_delay × 2^(n−1)`, capped at
//! `max_delay`, spread by ± `jitter_percent` so that deliveries failing together do not retry
//! together. After `max_attempts` attempts the delivery fails (the endpoint is marked failing and
//! an event says so); it stays listed, and a manual retry or a replay sends it again.
//!
//! The defaults reach from seconds to days: 30 s, 1 min, 2 min … 8.5 h, then every 12 h, for 18
//! attempts over about 3.7 days — long enough to ride out a receiver that is down for a weekend,
//! as receivers behind an air gap often are. `docs/events.md` shows the schedule in full.

use portcullis_core::{Random, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    pub first_delay_seconds: i64,
    pub max_delay_seconds: i64,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// 0–50.
    pub jitter_percent: u32,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self {
            first_delay_seconds: 30,
            max_delay_seconds: 12 * 3600,
            max_attempts: 18,
            jitter_percent: 20,
        }
    }
}

impl RetrySchedule {
    /// The delay after failed attempt `attempt` before jitter, or `None` when it was the last.
    pub fn nominal_delay(&self, attempt: u32) -> Option<i64> {
        if attempt == 0 || attempt >= self.max_attempts {
            return None;
        }
        let doublings = (attempt - 1).min(40);
        let d = self
            .first_delay_seconds
            .max(1)
            .saturating_mul(1i64 << doublings);
        Some(d.min(self.max_delay_seconds.max(1)))
    }

    /// When to make the next attempt after `attempt` attempts have failed, the last one at `now`;
    /// `None` once the schedule is exhausted.
    pub fn next_attempt(
        &self,
        attempt: u32,
        now: Timestamp,
        rng: &dyn Random,
    ) -> Option<Timestamp> {
        let base_ms = self.nominal_delay(attempt)?.saturating_mul(1000);
        let spread = base_ms.saturating_mul(i64::from(self.jitter_percent.min(50))) / 100;
        let mut b = [0u8; 8];
        rng.fill(&mut b);
        let r = i64::try_from(u64::from_le_bytes(b) % 1_000_001).unwrap_or(0); // 0..=1e6
        let jitter = if spread == 0 {
            0
        } else {
            (r * 2 * spread) / 1_000_000 - spread
        };
        Some(Timestamp(
            now.millis().saturating_add((base_ms + jitter).max(1000)),
        ))
    }

    /// (attempt, delay after it, time since the first attempt) for the documentation.
    pub fn table(&self) -> Vec<(u32, i64, i64)> {
        let mut total = 0;
        (1..self.max_attempts)
            .filter_map(|a| {
                let d = self.nominal_delay(a)?;
                total += d;
                Some((a, d, total))
            })
            .collect()
    }
}

/// `90` → `1 min 30 s`, `93600` → `1 d 2 h`.
pub fn human_duration(seconds: i64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "min"), (s, "s")]
        .iter()
        .filter(|(v, _)| *v > 0)
        .take(2)
        .map(|(v, u)| format!("{v} {u}"))
        .collect();
    if parts.is_empty() {
        "0 s".into()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(u8);
    impl Random for Fixed {
        fn fill(&self, buf: &mut [u8]) {
            buf.fill(self.0);
        }
    }

    #[test]
    fn grows_exponentially_with_bounded_jitter_then_gives_up() {
        let s = RetrySchedule::default();
        let now = Timestamp(1_000_000);
        for a in 1..s.max_attempts {
            let base = s.nominal_delay(a).unwrap() * 1000;
            for r in [0u8, 128, 255] {
                let t = s.next_attempt(a, now, &Fixed(r)).unwrap().millis() - now.millis();
                assert!(
                    t >= base * 8 / 10 && t <= base * 12 / 10,
                    "attempt {a}: {t} vs {base}"
                );
            }
        }
        assert_eq!(s.nominal_delay(1), Some(30));
        assert_eq!(s.nominal_delay(2), Some(60));
        assert_eq!(s.nominal_delay(14), Some(43_200));
        assert!(s.next_attempt(s.max_attempts, now, &Fixed(0)).is_none());
        let total = s.table().last().unwrap().2;
        assert!(total > 3 * 86_400 && total < 4 * 86_400, "{total}");
        let none = RetrySchedule {
            jitter_percent: 0,
            ..s
        };
        assert_eq!(
            none.next_attempt(1, now, &Fixed(9)),
            Some(now.plus_seconds(30))
        );
        assert_eq!(human_duration(93_600), "1 d 2 h");
    }
}
