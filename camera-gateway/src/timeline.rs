//! Maps a camera's RTP timestamps onto a monotonic 90 kHz timeline, pure and unit-tested.
//!
//! Cameras restart (new random RTP base), wrap, jump forwards and backwards. Within a
//! session a plausible step (0 < step ≤ `max_step`) is kept as is; anything else advances the
//! timeline by one nominal frame duration and is reported as a jump. A new session continues
//! from the last output, advanced by the wall-clock time the stream was away, so a gap in
//! the video stays a gap on the timeline.

use std::time::Instant;

use panoptes_core::Pts90k;

/// What happened at one mapped frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A normal step.
    Continuous,
    /// The first frame of a new session.
    NewSession,
    /// The camera's timestamp went backwards or leapt forwards; the timeline did not.
    Jump,
}

/// The mapping state of one stream (kept across its sessions).
#[derive(Debug, Clone)]
pub struct Timeline {
    last_rtp: Option<i64>,
    last_out: Option<(i64, Instant)>,
    frame_ticks: i64,
    max_step: i64,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new(Pts90k::HZ * 10)
    }
}

impl Timeline {
    /// A timeline accepting steps up to `max_step` ticks as genuine.
    pub fn new(max_step: i64) -> Self {
        Timeline { last_rtp: None, last_out: None, frame_ticks: Pts90k::HZ / 25, max_step }
    }

    /// Forgets the RTP reference: the next frame starts a new session.
    pub fn new_session(&mut self) {
        self.last_rtp = None;
    }

    /// The nominal frame duration learnt so far, in ticks.
    pub fn frame_ticks(&self) -> i64 {
        self.frame_ticks
    }

    /// Maps one frame's RTP timestamp (90 kHz) received at `now`.
    pub fn map(&mut self, rtp: i64, now: Instant) -> (Pts90k, Step) {
        let (out, step) = match (self.last_rtp, self.last_out) {
            (_, None) => (0, Step::NewSession),
            (None, Some((last, at))) => {
                let away = now.saturating_duration_since(at).as_secs_f64() * Pts90k::HZ as f64;
                (last + (away as i64).max(self.frame_ticks), Step::NewSession)
            }
            (Some(prev), Some((last, _))) => {
                let delta = rtp.saturating_sub(prev);
                if delta > 0 && delta <= self.max_step {
                    if delta <= Pts90k::HZ {
                        // Learn the frame duration slowly (ignores single odd frames).
                        self.frame_ticks = (self.frame_ticks * 7 + delta) / 8;
                    }
                    (last + delta, Step::Continuous)
                } else {
                    (last + self.frame_ticks.max(1), Step::Jump)
                }
            }
        };
        self.last_rtp = Some(rtp);
        self.last_out = Some((out, now));
        (Pts90k(out), step)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn keeps_steady_steps() {
        let t0 = Instant::now();
        let mut tl = Timeline::default();
        let base = 1_234_567_i64;
        let outs: Vec<i64> = (0..5).map(|i| tl.map(base + i * 3600, t0).0.0).collect();
        assert_eq!(outs, [0, 3600, 7200, 10800, 14400]);
    }

    #[test]
    fn backwards_and_huge_jumps_stay_monotonic() {
        let t0 = Instant::now();
        let mut tl = Timeline::default();
        tl.map(1_000_000, t0);
        tl.map(1_003_600, t0);
        let (p, s) = tl.map(5, t0);
        assert_eq!((p.0, s), (7200, Step::Jump));
        let (p, s) = tl.map(3605, t0);
        assert_eq!((p.0, s), (10800, Step::Continuous));
        let (p, s) = tl.map(3605 + 90_000 * 3600, t0);
        assert_eq!((p.0, s), (14400, Step::Jump));
        let (p, _) = tl.map(3605 + 90_000 * 3600, t0);
        assert!(p.0 > 14400, "equal timestamps still advance");
    }

    #[test]
    fn new_session_continues_after_the_wall_clock_gap() {
        let t0 = Instant::now();
        let mut tl = Timeline::default();
        tl.map(500, t0);
        tl.new_session();
        let (p, s) = tl.map(999_999_999, t0 + Duration::from_secs(2));
        assert_eq!(s, Step::NewSession);
        assert_eq!(p.0, 180_000);
        let (p, s) = tl.map(999_999_999 + 3600, t0 + Duration::from_secs(2));
        assert_eq!((p.0, s), (183_600, Step::Continuous));
    }

    #[test]
    fn learns_the_frame_rate() {
        let t0 = Instant::now();
        let mut tl = Timeline::default();
        for i in 0..100 {
            tl.map(i * 9000, t0); // 10 fps
        }
        assert!((tl.frame_ticks() - 9000).abs() < 50, "{}", tl.frame_ticks());
    }
}
