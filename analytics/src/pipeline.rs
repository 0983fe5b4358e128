//! The per-camera detect pipeline: motion gate → detectors → tracker → zones and lines.
//!
//! [`CameraAnalytics`] is the synchronous core (no I/O; time is the frame's pts).
//! [`run_camera`] drives it as an async task: it reads the latest frame from a
//! `tokio::sync::watch` slot (stale frames are skipped, never queued), gates it inline (a
//! grey-grid difference, well under a millisecond), runs the detectors on the blocking pool
//! behind a shared semaphore, and sends plain [`PipelineEvent`]s on an mpsc channel. The
//! decode rate it wants goes out on a `watch` for the binary to pass to the decoder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use panoptes_core::CameraId;
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::batch::{BatchError, DetectBatcher};
use crate::decode::Detection;
use crate::detector::Detector;
use crate::frame::Frame;
use crate::geometry::BBox;
use crate::motion::{DecodeRate, GateDecision, MotionConfig, MotionGate};
use crate::tracker::{Crossing, TrackEvent, Tracker, TrackerConfig};
use crate::zones::{AlertRules, LineConfig, LineCounts, ZoneConfig, ZoneError, Zones};

/// A detector shared by the cameras (one ONNX Runtime session; calls are serialised).
pub type SharedDetector = Arc<Mutex<dyn Detector>>;

/// Analytics settings of one camera.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CameraAnalyticsConfig {
    /// Motion gate.
    pub motion: MotionConfig,
    /// Tracker.
    pub tracker: TrackerConfig,
    /// Zones (events record the zones a track entered).
    pub zones: Vec<ZoneConfig>,
    /// Counting lines.
    pub lines: Vec<LineConfig>,
    /// Which events are alerts (labels, required zones).
    pub alerts: AlertRules,
}

impl CameraAnalyticsConfig {
    /// Checks zones, lines and alert rules (also done when a pipeline starts).
    pub fn validate(&self) -> Result<(), ZoneError> {
        Zones::new(&self.zones, &self.lines)?;
        self.alerts.check(&self.zones)
    }
}

/// What the pipeline reports.
#[derive(Debug, Clone)]
pub enum PipelineEvent {
    /// A track started, changed or ended. `snapshot` is the frame of the track's best shot
    /// (encode it, and the crop [`snapshot_crop`] of it, as JPEG where events are stored).
    Track {
        /// The camera.
        camera: CameraId,
        /// The event.
        event: TrackEvent,
        /// The best-shot frame, if still held.
        snapshot: Option<Arc<Frame>>,
        /// Whether the camera's alert rules accept it (so far: entering a required zone
        /// later turns it into one).
        alert: bool,
    },
    /// A started track crossed a counting line.
    LineCrossing {
        /// The camera.
        camera: CameraId,
        /// The crossing.
        crossing: Crossing,
        /// Count so far for this line, label and direction.
        total: u64,
    },
}

/// Counters of a camera pipeline (also published on a `watch`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// Frames looked at.
    pub frames: u64,
    /// Frames the detectors ran on.
    pub detector_runs: u64,
    /// Detector failures (logged; the frame is skipped).
    pub detector_errors: u64,
    /// Events dropped because the receiver was gone.
    pub events_dropped: u64,
}

/// The synchronous core of one camera's pipeline.
#[derive(Debug)]
pub struct CameraAnalytics {
    camera: CameraId,
    gate: MotionGate,
    tracker: Tracker,
    zones: Zones,
    alerts: AlertRules,
    counts: LineCounts,
    shots: HashMap<u64, Arc<Frame>>,
}

impl CameraAnalytics {
    /// Builds it; fails on a bad zone or line.
    pub fn new(camera: CameraId, config: &CameraAnalyticsConfig) -> Result<Self, ZoneError> {
        Ok(Self {
            camera,
            gate: MotionGate::new(config.motion.clone()),
            tracker: Tracker::new(config.tracker.clone()),
            zones: Zones::new(&config.zones, &config.lines)?,
            alerts: {
                config.alerts.check(&config.zones)?;
                config.alerts.clone()
            },
            counts: LineCounts::default(),
            shots: HashMap::new(),
        })
    }

    /// The gate's decision for a frame.
    pub fn gate(&mut self, frame: &Frame) -> GateDecision {
        let moving = self.tracker.has_moving_tracks();
        self.gate.observe(frame.view(), frame.time(), moving)
    }

    /// Feeds the detections of a frame; returns the events.
    pub fn track(&mut self, frame: &Arc<Frame>, detections: &[Detection]) -> Vec<PipelineEvent> {
        let now = frame.time();
        let (events, crossings) =
            self.tracker.update(now, detections, frame.width, frame.height, &self.zones);
        let mut live = Vec::new();
        for (id, at) in self.tracker.best_shots() {
            if at == now {
                self.shots.insert(id, frame.clone());
            }
            live.push(id);
        }
        let mut out = Vec::with_capacity(events.len() + crossings.len());
        for event in events {
            out.push(self.track_event(event));
        }
        for crossing in crossings {
            let total = self.counts.add(&crossing.line, &crossing.label, crossing.direction);
            out.push(PipelineEvent::LineCrossing { camera: self.camera.clone(), crossing, total });
        }
        self.shots.retain(|id, _| live.contains(id));
        out
    }

    /// Ends every track (shutdown).
    pub fn finish(&mut self) -> Vec<PipelineEvent> {
        let events = self.tracker.finish();
        let out = events.into_iter().map(|event| self.track_event(event)).collect();
        self.shots.clear();
        out
    }

    fn track_event(&self, event: TrackEvent) -> PipelineEvent {
        let s = event.summary();
        let snapshot = self.shots.get(&s.id).cloned();
        let alert = self.alerts.is_alert(&s.label, &s.zones);
        PipelineEvent::Track { camera: self.camera.clone(), event, snapshot, alert }
    }

    /// Line counts so far.
    pub fn counts(&self) -> &LineCounts {
        &self.counts
    }
}

/// The crop of a snapshot: the box grown by `margin` (fraction of its size) on each side,
/// clipped to the frame, as whole pixels `(x, y, width, height)`.
pub fn snapshot_crop(bbox: BBox, frame_w: u32, frame_h: u32, margin: f32) -> (u32, u32, u32, u32) {
    let (mw, mh) = (bbox.width() * margin, bbox.height() * margin);
    let b = BBox::new(bbox.x1 - mw, bbox.y1 - mh, bbox.x2 + mw, bbox.y2 + mh)
        .clip(frame_w as f32, frame_h as f32);
    let (fw, fh) = (frame_w.max(1), frame_h.max(1));
    let x = (b.x1.floor() as u32).min(fw - 1);
    let y = (b.y1.floor() as u32).min(fh - 1);
    let x2 = (b.x2.ceil() as u32).clamp(x + 1, fw);
    let y2 = (b.y2.ceil() as u32).clamp(y + 1, fh);
    (x, y, x2 - x, y2 - y)
}

/// Why a camera pipeline stopped early.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The zone/line configuration is wrong.
    #[error("camera {camera}: {source}")]
    Zones {
        /// The camera.
        camera: CameraId,
        /// Cause.
        source: ZoneError,
    },
}

/// The channels of one camera pipeline.
#[derive(Debug)]
pub struct PipelineIo {
    /// Latest decoded frame (the binary converts the gateway's frames into it).
    pub frames: watch::Receiver<Option<Arc<Frame>>>,
    /// Events out.
    pub events: mpsc::Sender<PipelineEvent>,
    /// The decode rate the pipeline wants (connect to the decoder's control).
    pub rate: watch::Sender<DecodeRate>,
    /// Counters.
    pub stats: watch::Sender<PipelineStats>,
    /// Stops the task (it then ends its tracks and returns).
    pub cancel: CancellationToken,
}

/// Runs one camera's pipeline with its own detectors (no batching with other cameras).
pub async fn run_camera(
    camera: CameraId,
    config: CameraAnalyticsConfig,
    detectors: Vec<SharedDetector>,
    permits: Arc<Semaphore>,
    io: PipelineIo,
) -> Result<PipelineStats, PipelineError> {
    run_camera_with(camera, config, DetectBatcher::start(detectors, permits, 1), io).await
}

/// Runs one camera's pipeline until the frame slot closes or `io.cancel` fires, sending
/// frames through `batcher` (share one batcher between cameras to batch their frames).
pub async fn run_camera_with(
    camera: CameraId,
    config: CameraAnalyticsConfig,
    batcher: DetectBatcher,
    mut io: PipelineIo,
) -> Result<PipelineStats, PipelineError> {
    let mut core = CameraAnalytics::new(camera.clone(), &config)
        .map_err(|source| PipelineError::Zones { camera: camera.clone(), source })?;
    let mut stats = PipelineStats::default();
    loop {
        tokio::select! {
            biased;
            () = io.cancel.cancelled() => break,
            changed = io.frames.changed() => if changed.is_err() { break },
        }
        let Some(frame) = io.frames.borrow_and_update().clone() else { continue };
        stats.frames += 1;
        let decision = core.gate(&frame);
        io.rate.send_if_modified(|r| std::mem::replace(r, decision.rate) != decision.rate);
        if decision.run_detector.is_some() {
            let result = batcher.detect(frame.clone()).await;
            stats.detector_runs += 1;
            match result {
                Ok(detections) => {
                    for event in core.track(&frame, &detections) {
                        if io.events.send(event).await.is_err() {
                            stats.events_dropped += 1;
                        }
                    }
                }
                Err(BatchError::Stopped) => break,
                Err(e) => {
                    stats.detector_errors += 1;
                    tracing::warn!(camera = %camera, error = %e, "detector failed; frame skipped");
                }
            }
        }
        io.stats.send_replace(stats);
    }
    for event in core.finish() {
        if io.events.send(event).await.is_err() {
            stats.events_dropped += 1;
        }
    }
    io.stats.send_replace(stats);
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_grows_and_clips() {
        assert_eq!(snapshot_crop(BBox::new(100.0, 100.0, 200.0, 150.0), 640, 360, 0.1), (90, 95, 120, 60));
        assert_eq!(snapshot_crop(BBox::new(-10.0, 300.0, 50.0, 400.0), 640, 360, 0.0), (0, 300, 50, 60));
        let (x, y, w, h) = snapshot_crop(BBox::new(639.5, 359.5, 700.0, 400.0), 640, 360, 0.0);
        assert!(x + w <= 640 && y + h <= 360 && w >= 1 && h >= 1);
    }
}
