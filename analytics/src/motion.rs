//! The motion gate: decides, per frame, whether to run the detector and at which rate the
//! decoder should run. Pure: frames and time (the frame's pts) in, decisions out.
//!
//! Each frame is reduced to a small grey grid (block averages, `grid_width` cells wide),
//! compared with a slowly adapting background; a cell changed when its grey level differs by
//! more than `pixel_threshold`. Motion = changed fraction of the unmasked cells ≥
//! `min_changed_fraction`. The detector runs on motion, while tracks are moving, and as a
//! heartbeat every `heartbeat_secs` in a static scene. The decoder is asked for full rate on
//! motion or moving tracks, and back to key frames only `hold_secs` after the last of them.

use std::time::Duration;

use serde::Deserialize;

use crate::frame::FrameRef;
use crate::geometry::Point;
use crate::zones::polygon_contains;

/// Motion gate settings (per camera).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MotionConfig {
    /// Grey-level difference (0–255) for a cell to count as changed. Default 18.
    pub pixel_threshold: u8,
    /// Fraction of unmasked cells that must change for motion. Default 0.003.
    pub min_changed_fraction: f32,
    /// Run the detector at least this often in a static scene, seconds. Default 10.
    pub heartbeat_secs: f32,
    /// Stay at full decode rate this long after the last motion or moving track, seconds.
    /// Default 3.
    pub hold_secs: f32,
    /// Width of the grey grid in cells (height follows the aspect ratio). Default 64.
    pub grid_width: u32,
    /// Background adaptation per frame, 0..1. Default 0.1.
    pub background_rate: f32,
    /// Polygons in frame units (`[[x, y], …]`, 0..1) where motion is ignored. Default none.
    pub masks: Vec<Vec<[f32; 2]>>,
}

impl Default for MotionConfig {
    fn default() -> Self {
        Self {
            pixel_threshold: 18,
            min_changed_fraction: 0.003,
            heartbeat_secs: 10.0,
            hold_secs: 3.0,
            grid_width: 64,
            background_rate: 0.1,
            masks: Vec::new(),
        }
    }
}

/// Why the detector should run on this frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunReason {
    /// The scene moved.
    Motion,
    /// Tracked objects are moving.
    Tracks,
    /// Periodic check of a static scene.
    Heartbeat,
}

/// The decode rate the gate wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecodeRate {
    /// Key frames only (idle).
    #[default]
    KeyframesOnly,
    /// Every frame at the detect fps.
    Full,
}

/// The gate's decision for one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateDecision {
    /// Changed fraction of the unmasked cells.
    pub changed: f32,
    /// Whether that is motion.
    pub motion: bool,
    /// Run the detector, and why.
    pub run_detector: Option<RunReason>,
    /// The decode rate to ask for.
    pub rate: DecodeRate,
}

/// Per-camera motion gate state.
#[derive(Debug, Clone)]
pub struct MotionGate {
    config: MotionConfig,
    grid: (u32, u32),
    frame_size: (u32, u32),
    background: Vec<f32>,
    mask: Vec<bool>,
    current: Vec<f32>,
    last_run: Option<Duration>,
    last_active: Option<Duration>,
}

impl MotionGate {
    /// A gate; the background starts with the first frame.
    pub fn new(config: MotionConfig) -> Self {
        Self {
            config,
            grid: (0, 0),
            frame_size: (0, 0),
            background: Vec::new(),
            mask: Vec::new(),
            current: Vec::new(),
            last_run: None,
            last_active: None,
        }
    }

    /// Looks at a frame taken at `now`; `moving_tracks` is the tracker's view.
    pub fn observe(&mut self, frame: FrameRef<'_>, now: Duration, moving_tracks: bool) -> GateDecision {
        let changed = if frame.is_valid() { self.difference(frame) } else { 0.0 };
        let motion = changed >= self.config.min_changed_fraction;
        if motion || moving_tracks {
            self.last_active = Some(now);
        }
        let heartbeat = Duration::from_secs_f32(self.config.heartbeat_secs.max(0.0));
        let run_detector = if motion {
            Some(RunReason::Motion)
        } else if moving_tracks {
            Some(RunReason::Tracks)
        } else if self.last_run.is_none_or(|t| now.saturating_sub(t) >= heartbeat) {
            Some(RunReason::Heartbeat)
        } else {
            None
        };
        if run_detector.is_some() {
            self.last_run = Some(now);
        }
        let hold = Duration::from_secs_f32(self.config.hold_secs.max(0.0));
        let rate = match self.last_active {
            Some(t) if now.saturating_sub(t) <= hold => DecodeRate::Full,
            _ => DecodeRate::KeyframesOnly,
        };
        GateDecision { changed, motion, run_detector, rate }
    }

    /// Builds the grey grid of `frame`, compares it with the background, updates it.
    fn difference(&mut self, frame: FrameRef<'_>) -> f32 {
        let (fw, fh) = (frame.width, frame.height);
        if self.frame_size != (fw, fh) {
            self.reset(fw, fh);
        }
        let (gw, gh) = self.grid;
        let (gw_us, gh_us) = (gw as usize, gh as usize);
        self.current.iter_mut().for_each(|v| *v = 0.0);
        let mut counts = vec![0u32; gw_us * gh_us];
        // block average, sampling every other pixel in both directions (cheap, enough)
        for y in (0..fh as usize).step_by(2) {
            let gy = y * gh_us / fh as usize;
            let row = &frame.rgb[y * fw as usize * 3..(y + 1) * fw as usize * 3];
            for x in (0..fw as usize).step_by(2) {
                let gx = x * gw_us / fw as usize;
                let p = &row[x * 3..x * 3 + 3];
                let grey = (77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2])) >> 8;
                self.current[gy * gw_us + gx] += grey as f32;
                counts[gy * gw_us + gx] += 1;
            }
        }
        for (v, n) in self.current.iter_mut().zip(&counts) {
            *v /= (*n).max(1) as f32;
        }
        if self.background.is_empty() {
            self.background = self.current.clone();
            return 0.0;
        }
        let thr = f32::from(self.config.pixel_threshold);
        let rate = self.config.background_rate.clamp(0.0, 1.0);
        let (mut changed, mut total) = (0u32, 0u32);
        for ((bg, cur), masked) in self.background.iter_mut().zip(&self.current).zip(&self.mask) {
            if !masked {
                total += 1;
                if (cur - *bg).abs() > thr {
                    changed += 1;
                }
            }
            *bg += (cur - *bg) * rate;
        }
        if total == 0 { 0.0 } else { changed as f32 / total as f32 }
    }

    fn reset(&mut self, fw: u32, fh: u32) {
        let gw = self.config.grid_width.clamp(4, fw.max(4));
        let gh = ((u64::from(gw) * u64::from(fh) / u64::from(fw.max(1))) as u32).max(2);
        self.grid = (gw, gh);
        self.frame_size = (fw, fh);
        self.background.clear();
        self.current = vec![0.0; (gw * gh) as usize];
        let polygons: Vec<Vec<Point>> =
            self.config.masks.iter().map(|m| m.iter().map(|&[x, y]| Point { x, y }).collect()).collect();
        self.mask = (0..gh)
            .flat_map(|y| (0..gw).map(move |x| (x, y)))
            .map(|(x, y)| {
                let c = Point { x: (x as f32 + 0.5) / gw as f32, y: (y as f32 + 0.5) / gh as f32 };
                polygons.iter().any(|p| polygon_contains(p, c))
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u32, h: u32, square: Option<(u32, u32)>) -> Vec<u8> {
        let mut v = vec![90u8; (w * h * 3) as usize];
        if let Some((sx, sy)) = square {
            for y in sy..(sy + 40).min(h) {
                for x in sx..(sx + 40).min(w) {
                    let i = ((y * w + x) * 3) as usize;
                    v[i..i + 3].copy_from_slice(&[250, 250, 250]);
                }
            }
        }
        v
    }

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn static_scene_runs_only_on_the_heartbeat() {
        let mut gate = MotionGate::new(MotionConfig::default());
        let still = frame(320, 180, None);
        let f = FrameRef::new(320, 180, &still).unwrap();
        let mut runs = Vec::new();
        for i in 0..150u64 {
            // 5 fps for 30 s
            let d = gate.observe(f, at(i * 200), false);
            assert!(!d.motion);
            assert_eq!(d.rate, DecodeRate::KeyframesOnly);
            if let Some(r) = d.run_detector {
                assert_eq!(r, RunReason::Heartbeat);
                runs.push(i * 200);
            }
        }
        assert_eq!(runs, [0, 10_000, 20_000]);
    }

    #[test]
    fn motion_runs_the_detector_and_asks_for_full_rate_then_idles() {
        let mut gate = MotionGate::new(MotionConfig::default());
        let still = frame(320, 180, None);
        gate.observe(FrameRef::new(320, 180, &still).unwrap(), at(0), false);
        let moved = frame(320, 180, Some((100, 60)));
        let d = gate.observe(FrameRef::new(320, 180, &moved).unwrap(), at(200), false);
        assert!(d.motion && d.changed > 0.01);
        assert_eq!(d.run_detector, Some(RunReason::Motion));
        assert_eq!(d.rate, DecodeRate::Full);
        // back to still: full rate is held for hold_secs, then key frames only
        let f = FrameRef::new(320, 180, &still).unwrap();
        let mut last = d;
        for i in 2..40u64 {
            last = gate.observe(f, at(i * 200), false);
        }
        assert_eq!(last.rate, DecodeRate::KeyframesOnly);
        // moving tracks keep the detector and full rate on
        let d = gate.observe(f, at(8200), true);
        assert_eq!((d.run_detector, d.rate), (Some(RunReason::Tracks), DecodeRate::Full));
    }

    #[test]
    fn masked_motion_is_ignored() {
        let config = MotionConfig {
            masks: vec![vec![[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]],
            ..MotionConfig::default()
        };
        let mut gate = MotionGate::new(config);
        let still = frame(320, 180, None);
        gate.observe(FrameRef::new(320, 180, &still).unwrap(), at(0), false);
        let left = frame(320, 180, Some((20, 60)));
        assert!(!gate.observe(FrameRef::new(320, 180, &left).unwrap(), at(200), false).motion);
        let right = frame(320, 180, Some((240, 60)));
        assert!(gate.observe(FrameRef::new(320, 180, &right).unwrap(), at(400), false).motion);
    }

    #[test]
    fn a_bad_frame_is_no_motion() {
        let mut gate = MotionGate::new(MotionConfig::default());
        let d = gate.observe(FrameRef { width: 10, height: 10, rgb: &[] }, at(0), false);
        assert!(!d.motion);
    }
}
