//! The segmenter: decides, frame by frame, where segments and fragments start and end,
//! how long each frame lasts, and where the recording has gaps. No I/O: fed frames and
//! `now`, it appends [`Action`]s that the writer carries out.
//!
//! Rules:
//! - a segment starts at a key frame; it is cut at the first key frame after
//!   [`SegmenterConfig::segment`] of media time, and at once when the parameter sets (or the
//!   codec) change;
//! - a frame's duration is the pts delta to the next frame; a delta that is not positive or
//!   longer than [`SegmenterConfig::max_frame`] (a camera clock jump) is replaced by the
//!   previous frame's duration; the last frame of a segment closed without a successor
//!   gets the previous frame's duration too;
//! - a fragment is flushed once it holds [`SegmenterConfig::fragment`] of media;
//! - wall clock: a segment starts at its first frame's `received`, or, when it follows the
//!   previous one without a gap and the clocks agree within
//!   [`SegmenterConfig::wall_tolerance`], exactly where the previous one ended; it ends at
//!   start + media duration, never after the next segment's start, so rows never overlap;
//! - no frame for [`SegmenterConfig::gap_after`] of wall time (between two frames, or up to
//!   `now` in [`Segmenter::tick`]) closes the segment and records a gap.

use std::time::{Duration, SystemTime};

use panoptes_core::{Pts90k, VideoCodec};

/// Tunables, in 90 kHz ticks or wall time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmenterConfig {
    /// Target segment length (media time, 90 kHz); cut at the next key frame after it.
    pub segment: i64,
    /// Fragment length (90 kHz): at most this much is lost in a crash.
    pub fragment: i64,
    /// Longest plausible frame duration (90 kHz); longer deltas are clock jumps.
    pub max_frame: i64,
    /// Duration of a frame when nothing better is known (90 kHz).
    pub default_frame: u32,
    /// Wall-clock silence after which the segment is closed and a gap begins.
    pub gap_after: Duration,
    /// How far pts-derived and received wall times may drift before re-anchoring.
    pub wall_tolerance: Duration,
    /// A segment without a key frame for this many target lengths is closed anyway.
    pub max_segment_factor: i64,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig {
            segment: 60 * Pts90k::HZ,
            fragment: Pts90k::HZ,
            max_frame: 2 * Pts90k::HZ,
            default_frame: 3600,
            gap_after: Duration::from_secs(5),
            wall_tolerance: Duration::from_secs(1),
            max_segment_factor: 3,
        }
    }
}

/// What the segmenter needs to know about a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// Monotonic 90 kHz time.
    pub pts: Pts90k,
    /// Arrival time.
    pub received: SystemTime,
    /// Decoding can start here.
    pub keyframe: bool,
    /// Parameter set generation.
    pub params_epoch: u32,
    /// Codec.
    pub codec: VideoCodec,
}

/// Why a segment was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// Reached the target length.
    Length,
    /// Parameter sets or codec changed.
    ParamsChanged,
    /// No frame for `gap_after`.
    Stall,
    /// No key frame for too long.
    NoKeyframe,
    /// The recorder is stopping.
    Shutdown,
}

/// Why there is a gap between two segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// The stream stalled (camera or network).
    Stall,
    /// Frames were skipped until a key frame (after a parameter change or a long GOP).
    WaitingForKeyframe,
}

impl GapReason {
    /// The name stored in `recording_gaps.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Stall => "stall",
            GapReason::WaitingForKeyframe => "waiting_for_keyframe",
        }
    }
}

/// What the writer must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<F> {
    /// Start a new segment file; `first` (a key frame) carries the parameter sets.
    Open {
        /// Wall-clock start.
        start: SystemTime,
        /// The first frame (its sample follows later as [`Action::Sample`]).
        first: F,
    },
    /// Append a sample to the current fragment.
    Sample {
        /// The frame.
        frame: F,
        /// Its duration, 90 kHz.
        duration: u32,
    },
    /// Write the current fragment out.
    Flush,
    /// Flush and close the segment.
    Close {
        /// Wall-clock end.
        end: SystemTime,
        /// Media duration, 90 kHz.
        duration: i64,
        /// Frames in the segment.
        frames: u64,
        /// Why.
        reason: CloseReason,
    },
    /// Nothing was recorded between `start` and `end`.
    Gap {
        /// Where the previous segment ended.
        start: SystemTime,
        /// Where the next one starts.
        end: SystemTime,
        /// Why.
        reason: GapReason,
    },
}

#[derive(Debug)]
struct OpenSegment<F> {
    start: SystemTime,
    duration: i64,
    frames: u64,
    fragment: i64,
    epoch: u32,
    codec: VideoCodec,
    pending: (F, FrameMeta),
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmenterStats {
    /// Frames skipped while waiting for a key frame.
    pub skipped: u64,
    /// Frame durations replaced because the pts delta was implausible.
    pub clock_jumps: u64,
}

/// The per-stream segmenting state machine. See the module doc for its rules.
#[derive(Debug)]
pub struct Segmenter<F> {
    config: SegmenterConfig,
    open: Option<OpenSegment<F>>,
    last_duration: u32,
    /// End of the last closed segment and whether the next one may continue it.
    last_end: Option<SystemTime>,
    gap: Option<GapReason>,
    stats: SegmenterStats,
}

fn add_ticks(t: SystemTime, ticks: i64) -> SystemTime {
    let d = Duration::from_nanos((ticks.max(0) as u64).saturating_mul(100_000) / 9);
    t.checked_add(d).unwrap_or(t)
}

fn abs_diff(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b).or_else(|_| b.duration_since(a)).unwrap_or_default()
}

impl<F: Clone> Segmenter<F> {
    /// A segmenter with no open segment.
    pub fn new(config: SegmenterConfig) -> Self {
        Segmenter {
            config,
            open: None,
            last_duration: config.default_frame,
            last_end: None,
            gap: None,
            stats: SegmenterStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> SegmenterStats {
        self.stats
    }

    /// Whether a segment is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Feeds one frame.
    pub fn push(&mut self, meta: FrameMeta, frame: F, out: &mut Vec<Action<F>>) {
        if let Some(seg) = &self.open {
            let silence = meta.received.duration_since(seg.pending.1.received).unwrap_or_default();
            if silence > self.config.gap_after {
                self.close(CloseReason::Stall, None, out);
                self.gap = Some(GapReason::Stall);
            }
        }
        if let Some(seg) = &mut self.open {
            let delta = meta.pts.0 - seg.pending.1.pts.0;
            let duration = if delta > 0 && delta <= self.config.max_frame {
                delta as u32
            } else {
                self.stats.clock_jumps += 1;
                self.last_duration
            };
            self.last_duration = duration;
            let (prev, _) = std::mem::replace(&mut seg.pending, (frame.clone(), meta));
            seg.duration += i64::from(duration);
            seg.fragment += i64::from(duration);
            seg.frames += 1;
            out.push(Action::Sample { frame: prev, duration });

            let changed = meta.params_epoch != seg.epoch || meta.codec != seg.codec;
            let too_long = seg.duration >= self.config.segment * self.config.max_segment_factor;
            if meta.keyframe && (changed || seg.duration >= self.config.segment) {
                let reason = if changed { CloseReason::ParamsChanged } else { CloseReason::Length };
                // The new frame is not part of the closing segment: take it back out.
                self.close_before(reason, meta.received, out);
            } else if changed || too_long {
                let reason = if changed { CloseReason::ParamsChanged } else { CloseReason::NoKeyframe };
                self.close_before(reason, meta.received, out);
                self.gap = Some(GapReason::WaitingForKeyframe);
            } else {
                if seg.fragment >= self.config.fragment {
                    seg.fragment = 0;
                    out.push(Action::Flush);
                }
                return;
            }
        }
        // No segment open: start one at a key frame.
        if !meta.keyframe {
            self.stats.skipped += 1;
            if self.last_end.is_some() && self.gap.is_none() {
                self.gap = Some(GapReason::WaitingForKeyframe);
            }
            return;
        }
        let start = match (self.last_end, self.gap) {
            (Some(end), None) if abs_diff(meta.received, end) <= self.config.wall_tolerance => end,
            (Some(end), _) => meta.received.max(end),
            (None, _) => meta.received,
        };
        if let (Some(end), Some(reason)) = (self.last_end, self.gap.take())
            && start > end
        {
            out.push(Action::Gap { start: end, end: start, reason });
        }
        out.push(Action::Open { start, first: frame.clone() });
        self.open = Some(OpenSegment {
            start,
            duration: 0,
            frames: 0,
            fragment: 0,
            epoch: meta.params_epoch,
            codec: meta.codec,
            pending: (frame, meta),
        });
    }

    /// Closes the open segment whose pending frame is the one that just arrived (which
    /// starts the next segment): the pending frame is re-pushed by the caller's flow.
    fn close_before(&mut self, reason: CloseReason, next_received: SystemTime, out: &mut Vec<Action<F>>) {
        let Some(seg) = self.open.take() else {
            return;
        };
        let end = add_ticks(seg.start, seg.duration);
        // Do not run past the next segment's start when the wall clock is behind.
        let end = if end > next_received && abs_diff(end, next_received) > self.config.wall_tolerance {
            next_received.max(seg.start)
        } else {
            end
        };
        out.push(Action::Close { end, duration: seg.duration, frames: seg.frames, reason });
        self.last_end = Some(end);
        self.gap = None;
    }

    /// Closes the open segment, giving its pending frame the previous frame's duration.
    fn close(&mut self, reason: CloseReason, _now: Option<SystemTime>, out: &mut Vec<Action<F>>) {
        let Some(seg) = self.open.take() else {
            return;
        };
        let duration = self.last_duration;
        out.push(Action::Sample { frame: seg.pending.0, duration });
        let total = seg.duration + i64::from(duration);
        let end = add_ticks(seg.start, total);
        out.push(Action::Close { end, duration: total, frames: seg.frames + 1, reason });
        self.last_end = Some(end);
    }

    /// Checks for a stall at `now`.
    pub fn tick(&mut self, now: SystemTime, out: &mut Vec<Action<F>>) {
        if let Some(seg) = &self.open {
            let silence = now.duration_since(seg.pending.1.received).unwrap_or_default();
            if silence > self.config.gap_after {
                self.close(CloseReason::Stall, Some(now), out);
                self.gap = Some(GapReason::Stall);
            }
        }
    }

    /// Closes the open segment at shutdown.
    pub fn finish(&mut self, out: &mut Vec<Action<F>>) {
        self.close(CloseReason::Shutdown, None, out);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    const T0: Duration = Duration::from_secs(1_800_000_000);

    fn meta(pts: i64, key: bool) -> FrameMeta {
        FrameMeta {
            pts: Pts90k(pts),
            received: SystemTime::UNIX_EPOCH + T0 + Duration::from_millis((pts / 90) as u64),
            keyframe: key,
            params_epoch: 0,
            codec: VideoCodec::H264,
        }
    }

    fn cfg() -> SegmenterConfig {
        SegmenterConfig { segment: 10 * 90_000, ..SegmenterConfig::default() }
    }

    /// Feeds `n` frames at 25 fps with a key frame every 50; returns the actions.
    fn feed(s: &mut Segmenter<i64>, range: std::ops::Range<i64>, pts0: i64) -> Vec<Action<i64>> {
        let mut out = Vec::new();
        for i in range {
            s.push(meta(pts0 + i * 3600, i % 50 == 0), i, &mut out);
        }
        out
    }

    fn closes(a: &[Action<i64>]) -> Vec<(i64, u64, CloseReason)> {
        a.iter()
            .filter_map(|a| match a {
                Action::Close { duration, frames, reason, .. } => Some((*duration, *frames, *reason)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn cuts_at_the_first_key_frame_after_the_target_and_flushes_each_second() {
        let mut s = Segmenter::new(cfg());
        let mut out = feed(&mut s, 0..600, 0);
        s.finish(&mut out);
        // 10 s target, key frames every 2 s: 250 frames per segment, last one 100 frames.
        assert_eq!(
            closes(&out),
            vec![
                (900_000, 250, CloseReason::Length),
                (900_000, 250, CloseReason::Length),
                (360_000, 100, CloseReason::Shutdown)
            ]
        );
        let opens = out.iter().filter(|a| matches!(a, Action::Open { .. })).count();
        assert_eq!(opens, 3);
        let samples = out.iter().filter(|a| matches!(a, Action::Sample { .. })).count();
        assert_eq!(samples, 600, "every frame written once");
        // One flush per 25 frames inside segments (not at the cut itself).
        let flushes = out.iter().filter(|a| matches!(a, Action::Flush)).count();
        assert_eq!(flushes, 9 + 9 + 3);
    }

    #[test]
    fn contiguous_segments_share_their_boundary_and_do_not_overlap() {
        let mut s = Segmenter::new(cfg());
        let out = feed(&mut s, 0..600, 0);
        let mut bounds = Vec::new();
        for a in &out {
            match a {
                Action::Open { start, .. } => bounds.push(*start),
                Action::Close { end, .. } => bounds.push(*end),
                _ => {}
            }
        }
        assert_eq!(bounds[1], bounds[2], "end of first == start of second");
        assert!(!out.iter().any(|a| matches!(a, Action::Gap { .. })));
    }

    #[test]
    fn starts_at_a_key_frame_and_counts_skipped_frames() {
        let mut s = Segmenter::new(cfg());
        let out = feed(&mut s, 10..60, 0);
        match &out[0] {
            Action::Open { first, .. } => assert_eq!(*first, 50),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.stats().skipped, 40);
    }

    #[test]
    fn pts_jumps_do_not_corrupt_durations() {
        let mut s = Segmenter::new(cfg());
        let mut out = Vec::new();
        let t = |i: i64| SystemTime::UNIX_EPOCH + T0 + Duration::from_millis(40 * i as u64);
        let mut pts = 0;
        for i in 0..100 {
            // Camera clock jumps forward an hour at 30 and back at 60; arrival stays regular.
            pts = match i {
                30 => pts + 3600 * 90_000,
                60 => pts - 7200 * 90_000,
                _ => pts + 3600,
            };
            let m = FrameMeta {
                pts: Pts90k(pts),
                received: t(i),
                keyframe: i == 0,
                params_epoch: 0,
                codec: VideoCodec::H264,
            };
            s.push(m, i, &mut out);
        }
        s.finish(&mut out);
        assert_eq!(closes(&out), vec![(100 * 3600, 100, CloseReason::Shutdown)]);
        assert_eq!(s.stats().clock_jumps, 2);
        assert!(out.iter().all(|a| !matches!(a, Action::Sample { duration, .. } if *duration != 3600)));
    }

    #[test]
    fn a_stall_closes_the_segment_and_records_a_gap() {
        let mut s = Segmenter::new(cfg());
        let mut out = feed(&mut s, 0..30, 0);
        let last = SystemTime::UNIX_EPOCH + T0 + Duration::from_millis(29 * 40);
        s.tick(last + Duration::from_secs(3), &mut out);
        assert!(closes(&out).is_empty());
        s.tick(last + Duration::from_secs(6), &mut out);
        assert_eq!(closes(&out), vec![(30 * 3600, 30, CloseReason::Stall)]);
        // Frames come back 20 s later, first a P-frame, then a key frame.
        let mut out = feed(&mut s, 549..551, 0);
        let gap = out.iter().find_map(|a| match a {
            Action::Gap { start, end, reason } => Some((*start, *end, *reason)),
            _ => None,
        });
        let (start, end, reason) = gap.unwrap();
        assert_eq!(reason, GapReason::Stall);
        assert_eq!(start, SystemTime::UNIX_EPOCH + T0 + Duration::from_millis(1200));
        assert_eq!(end, SystemTime::UNIX_EPOCH + T0 + Duration::from_millis(550 * 40));
        s.finish(&mut out);
    }

    #[test]
    fn parameter_change_cuts_at_once() {
        let mut s = Segmenter::new(cfg());
        let mut out = feed(&mut s, 0..20, 0);
        let mut m = meta(20 * 3600, true);
        m.params_epoch = 1;
        s.push(m, 20, &mut out);
        assert_eq!(closes(&out), vec![(20 * 3600, 20, CloseReason::ParamsChanged)]);
        assert!(matches!(out.last(), Some(Action::Open { first: 20, .. })));
    }

    #[test]
    fn wall_clock_behind_the_camera_never_makes_segments_overlap() {
        let mut s = Segmenter::new(cfg());
        let mut out = Vec::new();
        // pts advances 3600 per frame, but frames arrive every 30 ms (camera clock fast).
        for i in 0..600i64 {
            let m = FrameMeta {
                pts: Pts90k(i * 3600),
                received: SystemTime::UNIX_EPOCH + T0 + Duration::from_millis(30 * i as u64),
                keyframe: i % 50 == 0,
                params_epoch: 0,
                codec: VideoCodec::H264,
            };
            s.push(m, i, &mut out);
        }
        s.finish(&mut out);
        let mut last_end = SystemTime::UNIX_EPOCH;
        for a in &out {
            match a {
                Action::Open { start, .. } => {
                    assert!(*start >= last_end);
                }
                Action::Close { end, .. } => last_end = *end,
                _ => {}
            }
        }
        // Wall time stays within tolerance of the arrival clock.
        let end = SystemTime::UNIX_EPOCH + T0 + Duration::from_millis(30 * 600);
        assert!(abs_diff(last_end, end) < Duration::from_secs(3), "{:?}", abs_diff(last_end, end));
    }
}
