//! Reconnect schedule: exponential backoff with jitter, pure and unit-tested.

use std::time::Duration;

/// The parameters of one schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
    /// Factor between successive delays.
    pub factor: f64,
}

impl BackoffPolicy {
    /// After connection errors: 0.5 s doubling up to 30 s.
    pub const NETWORK: BackoffPolicy =
        BackoffPolicy { initial: Duration::from_millis(500), max: Duration::from_secs(30), factor: 2.0 };

    /// After the camera rejected the credentials: 30 s doubling up to 5 min, so that a wrong
    /// password does not hammer the camera (many lock the account after a few failures).
    pub const AUTH: BackoffPolicy =
        BackoffPolicy { initial: Duration::from_secs(30), max: Duration::from_secs(300), factor: 2.0 };
}

/// The state of a schedule: how many failures in a row.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
}

impl Backoff {
    /// A fresh schedule.
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff { policy, failures: 0 }
    }

    /// Forgets past failures (call after a session streamed successfully).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure and returns the delay before the next attempt.
    ///
    /// `jitter` is a number in `[0, 1)`; the delay is drawn from `[d/2, d)` where `d` is the
    /// exponential delay ("equal jitter"), so that cameras that failed together do not
    /// retry together, while the delay never collapses to zero.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let exp = self.policy.factor.powi(i32::try_from(self.failures).unwrap_or(i32::MAX));
        self.failures = self.failures.saturating_add(1);
        let base = (self.policy.initial.as_secs_f64() * exp).min(self.policy.max.as_secs_f64());
        let jitter = jitter.clamp(0.0, 1.0);
        Duration::from_secs_f64(base * (0.5 + 0.5 * jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_and_caps() {
        let mut b = Backoff::new(BackoffPolicy::NETWORK);
        let d: Vec<f64> = (0..10).map(|_| b.next_delay(0.999_999).as_secs_f64()).collect();
        assert!((d[0] - 0.5).abs() < 1e-3, "{d:?}");
        assert!((d[1] - 1.0).abs() < 1e-3, "{d:?}");
        assert!((d[2] - 2.0).abs() < 1e-3, "{d:?}");
        assert!((d[9] - 30.0).abs() < 1e-3, "{d:?}");
        assert_eq!(b.failures(), 10);
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        let mut lo = Backoff::new(BackoffPolicy::NETWORK);
        let mut hi = Backoff::new(BackoffPolicy::NETWORK);
        for _ in 0..20 {
            let a = lo.next_delay(0.0);
            let b = hi.next_delay(1.0);
            assert!(a * 2 >= b - Duration::from_micros(1) && a <= b, "{a:?} {b:?}");
        }
    }

    #[test]
    fn reset_starts_over_and_auth_is_slower() {
        let mut b = Backoff::new(BackoffPolicy::NETWORK);
        for _ in 0..5 {
            b.next_delay(0.5);
        }
        b.reset();
        assert!(b.next_delay(1.0) <= Duration::from_millis(500));
        let mut a = Backoff::new(BackoffPolicy::AUTH);
        assert!(a.next_delay(0.0) >= Duration::from_secs(15));
    }
}
