//! Frame and bit rates over a sliding window, pure and unit-tested.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Frames and bytes seen over the last `window`.
#[derive(Debug, Clone)]
pub struct RateWindow {
    window: Duration,
    samples: VecDeque<(Instant, usize)>,
    bytes: usize,
}

impl RateWindow {
    /// A window of the given length.
    pub fn new(window: Duration) -> Self {
        RateWindow { window, samples: VecDeque::new(), bytes: 0 }
    }

    /// Records a frame of `bytes` bytes at `now`.
    pub fn push(&mut self, now: Instant, bytes: usize) {
        self.samples.push_back((now, bytes));
        self.bytes += bytes;
        self.expire(now);
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(t, b)) = self.samples.front() {
            if now.duration_since(t) <= self.window {
                break;
            }
            self.samples.pop_front();
            self.bytes -= b;
        }
    }

    /// `(frames per second, bits per second)` at `now`. The rate is measured between the
    /// first and last frame in the window, so it is right from the second frame on.
    pub fn rates(&mut self, now: Instant) -> (f64, f64) {
        self.expire(now);
        let (Some(&(first, first_bytes)), Some(&(last, _))) = (self.samples.front(), self.samples.back())
        else {
            return (0.0, 0.0);
        };
        let span = last.duration_since(first).as_secs_f64();
        if self.samples.len() < 2 || span <= 0.0 {
            return (0.0, 0.0);
        }
        // n frames span n-1 intervals; the first frame's bytes arrived before the span.
        let intervals = (self.samples.len() - 1) as f64;
        let bytes = (self.bytes - first_bytes) as f64;
        (intervals / span, bytes * 8.0 / span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_steady_stream() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(Duration::from_secs(5));
        for i in 0..250u64 {
            w.push(t0 + Duration::from_millis(40 * i), 10_000);
        }
        let (fps, bps) = w.rates(t0 + Duration::from_millis(40 * 249));
        assert!((fps - 25.0).abs() < 0.01, "{fps}");
        assert!((bps - 2_000_000.0).abs() < 1.0, "{bps}");
    }

    #[test]
    fn empty_and_single_frame_give_zero() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(Duration::from_secs(5));
        assert_eq!(w.rates(t0), (0.0, 0.0));
        w.push(t0, 100);
        assert_eq!(w.rates(t0), (0.0, 0.0));
    }

    #[test]
    fn old_frames_expire() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(Duration::from_secs(1));
        w.push(t0, 100);
        w.push(t0 + Duration::from_millis(100), 100);
        assert_eq!(w.rates(t0 + Duration::from_secs(10)), (0.0, 0.0));
    }
}
