//! Login rate limiting: failures per key (client address, user name) in a sliding window.
//! Pure: time is passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Failed attempts allowed per key within the window.
pub const MAX_FAILURES: usize = 5;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Keys kept at most (oldest forgotten first), so a flood cannot exhaust memory.
const MAX_KEYS: usize = 100_000;

/// Failed login attempts by key.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: HashMap<String, Vec<Instant>>,
}

impl LoginLimiter {
    /// How long `key` must wait before another attempt, if it must.
    pub fn blocked_for(&mut self, key: &str, now: Instant) -> Option<Duration> {
        let list = self.failures.get_mut(key)?;
        list.retain(|t| now.duration_since(*t) < WINDOW);
        if list.len() < MAX_FAILURES {
            return None;
        }
        let oldest = list.first().copied()?;
        Some(WINDOW.saturating_sub(now.duration_since(oldest)).max(Duration::from_secs(1)))
    }

    /// Records a failed attempt.
    pub fn failed(&mut self, key: &str, now: Instant) {
        if self.failures.len() >= MAX_KEYS && !self.failures.contains_key(key) {
            self.failures.retain(|_, v| v.last().is_some_and(|t| now.duration_since(*t) < WINDOW));
            if self.failures.len() >= MAX_KEYS {
                return;
            }
        }
        self.failures.entry(key.to_owned()).or_default().push(now);
    }

    /// Forgets a key's failures (after a successful login).
    pub fn succeeded(&mut self, key: &str) {
        self.failures.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_five_failures_until_the_window_passes() {
        let t0 = Instant::now();
        let mut l = LoginLimiter::default();
        for i in 0..MAX_FAILURES {
            assert_eq!(l.blocked_for("ip:1", t0), None, "attempt {i}");
            l.failed("ip:1", t0 + Duration::from_secs(i as u64));
        }
        let wait = l.blocked_for("ip:1", t0 + Duration::from_secs(10)).unwrap_or_default();
        assert!(wait > Duration::from_secs(800) && wait <= WINDOW, "{wait:?}");
        assert_eq!(l.blocked_for("ip:2", t0), None, "other keys are not affected");
        assert_eq!(l.blocked_for("ip:1", t0 + WINDOW + Duration::from_secs(5)), None);
    }

    #[test]
    fn success_clears() {
        let t0 = Instant::now();
        let mut l = LoginLimiter::default();
        for _ in 0..MAX_FAILURES {
            l.failed("u", t0);
        }
        l.succeeded("u");
        assert_eq!(l.blocked_for("u", t0), None);
    }
}
