//! The whole per-camera pipeline on generated clips (ffmpeg, in the test's temp dir): a bus
//! crossing a plain background gives one event and one line crossing in the right
//! direction; a static scene runs the detector only at the heartbeat.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use common::*;
use panoptes_analytics::detector::DetectorError;
use panoptes_analytics::zones::{AlertRules, LineConfig, ZoneConfig};
use panoptes_analytics::{
    CameraAnalyticsConfig, Detection, Detector, DetectorConfig, Direction, Frame, FrameRef, PipelineEvent,
    PipelineIo, PipelineStats, SharedDetector, TrackEvent, run_camera,
};
use panoptes_core::{CameraId, Pts90k};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

const W: u32 = 640;
const H: u32 = 360;

/// Counts detector calls.
struct Counting<D> {
    inner: D,
    calls: Arc<AtomicUsize>,
}

impl<D: Detector> Detector for Counting<D> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn detect(&mut self, frames: &[FrameRef<'_>]) -> Result<Vec<Vec<Detection>>, DetectorError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.detect(frames)
    }
}

fn ffmpeg(args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg not found: run scripts/setup.sh");
    assert!(status.success(), "ffmpeg {args:?} failed");
}

/// Writes an H.264 clip (GOP 50, no B-frames) of the bus of bus.jpg (cropped to its
/// ground-truth box, 240 px wide) on a grey 640x360 background. `timing` is the background's
/// `r=…:d=…`, `overlay` the filter placing the bus (and any filters after it).
fn bus_clip(out: &Path, timing: &str, overlay: &str) {
    let bus = media("bus.jpg");
    let filter = format!("[1:v]crop=788:530:17:228,scale=240:-2[b];[0:v][b]{overlay},format=yuv420p");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("color=c=0x808080:s=640x360:{timing}"),
        "-i",
        bus.to_str().unwrap(),
        "-filter_complex",
        &filter,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "50",
        "-bf",
        "0",
        out.to_str().unwrap(),
    ]);
}

/// Decodes a clip to RGB24 frames.
fn decode(clip: &Path) -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(clip)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg not found: run scripts/setup.sh");
    assert!(out.status.success());
    let size = (W * H * 3) as usize;
    assert_eq!(out.stdout.len() % size, 0);
    out.stdout.chunks_exact(size).map(<[u8]>::to_vec).collect()
}

/// Runs the pipeline over the frames (each one processed before the next is offered).
async fn run(
    frames: Vec<Vec<u8>>,
    fps: i64,
    config: CameraAnalyticsConfig,
    calls: Arc<AtomicUsize>,
) -> (Vec<PipelineEvent>, PipelineStats) {
    // vehicles only (the bus crop also shows the people walking in front of it)
    let vehicles = panoptes_models::Manifest::builtin().unwrap().group("vehicle").unwrap().to_vec();
    let config_det = DetectorConfig { keep_labels: Some(vehicles), ..DetectorConfig::default() };
    let det = Counting { inner: detector("nanodet", &config_det), calls };
    let shared: SharedDetector = Arc::new(Mutex::new(det));
    let camera = CameraId::new("cam1").unwrap();
    let (frame_tx, frame_rx) = watch::channel(None);
    let (event_tx, mut event_rx) = mpsc::channel(4096);
    let (rate_tx, _rate_rx) = watch::channel(Default::default());
    let (stats_tx, mut stats_rx) = watch::channel(PipelineStats::default());
    let io = PipelineIo {
        frames: frame_rx,
        events: event_tx,
        rate: rate_tx,
        stats: stats_tx,
        cancel: CancellationToken::new(),
    };
    let task =
        tokio::spawn(run_camera(camera.clone(), config, vec![shared], Arc::new(Semaphore::new(1)), io));
    for (i, rgb) in frames.into_iter().enumerate() {
        let frame = Frame {
            camera: camera.clone(),
            pts: Pts90k(i as i64 * Pts90k::HZ / fps),
            received: SystemTime::now(),
            width: W,
            height: H,
            keyframe: i == 0,
            rgb: rgb.into(),
        };
        frame_tx.send(Some(Arc::new(frame))).unwrap();
        stats_rx.wait_for(|s| s.frames == i as u64 + 1).await.unwrap();
    }
    drop(frame_tx);
    let stats = task.await.unwrap().unwrap();
    let mut events = Vec::new();
    while let Ok(e) = event_rx.try_recv() {
        events.push(e);
    }
    (events, stats)
}

fn started(events: &[PipelineEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            PipelineEvent::Track { event: TrackEvent::Started(s), .. } => {
                eprintln!(
                    "started {} {:?}..{:?} path {:?}",
                    s.label,
                    s.start,
                    s.end,
                    s.path
                        .iter()
                        .map(|p| (p.at.as_millis(), p.bbox.x1 as i32, p.bbox.x2 as i32, p.score))
                        .collect::<Vec<_>>()
                );
                Some(s.label.to_string())
            }
            PipelineEvent::Track { event: TrackEvent::Ended(s), .. } => {
                eprintln!(
                    "ended {} {:?}..{:?} path {:?}",
                    s.label,
                    s.start,
                    s.end,
                    s.path
                        .iter()
                        .map(|p| (p.at.as_millis(), p.bbox.x1 as i32, p.bbox.x2 as i32, p.score))
                        .collect::<Vec<_>>()
                );
                None
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_crossing_the_frame_is_one_event_crossing_the_line_forward() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("moving.mp4");
    // driving left to right across the frame in 4.5 s, 10 fps
    bus_clip(&clip, "r=10:d=5", "overlay=x='-240+t*880/4.5':y=110");
    let frames = decode(&clip);
    assert_eq!(frames.len(), 50);
    // Alerts require the right-hand third of the frame, which the bus reaches only later.
    let third = |name: &str, x0: f32, x1: f32| ZoneConfig {
        name: name.into(),
        polygon: vec![[x0, 0.0], [x1, 0.0], [x1, 1.0], [x0, 1.0]],
    };
    let config = CameraAnalyticsConfig {
        lines: vec![LineConfig { name: "middle".into(), a: [0.5, 0.0], b: [0.5, 1.0] }],
        zones: vec![third("left", 0.0, 0.33), third("right", 0.67, 1.0)],
        alerts: AlertRules { labels: vec![], required_zones: vec!["right".into()] },
        ..CameraAnalyticsConfig::default()
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let (events, stats) = run(frames, 10, config, calls.clone()).await;
    let alert_flags: Vec<(&str, bool)> = events
        .iter()
        .filter_map(|e| match e {
            PipelineEvent::Track { event: TrackEvent::Started(_), alert, .. } => Some(("started", *alert)),
            PipelineEvent::Track { event: TrackEvent::Ended(_), alert, .. } => Some(("ended", *alert)),
            _ => None,
        })
        .collect();
    assert_eq!(
        alert_flags,
        [("started", false), ("ended", true)],
        "not an alert until it entered the required zone"
    );
    // one object, one event (its label may start as "car" while only the bus's front is in
    // view; the track's label is the best-supported one, so it ends as a bus)
    assert_eq!(started(&events).len(), 1, "{events:#?}");
    let ended: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            PipelineEvent::Track { event: TrackEvent::Ended(s), snapshot, .. } => {
                Some((s.clone(), snapshot.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 1);
    let (summary, snapshot) = &ended[0];
    assert_eq!(&*summary.label, "bus");
    assert_eq!(
        summary.crossings.iter().map(|(l, d)| (l.to_string(), *d)).collect::<Vec<_>>(),
        [("middle".to_string(), Direction::Forward)]
    );
    assert!(summary.path.len() >= 10 && !summary.stationary);
    let snapshot = snapshot.as_ref().expect("best-shot frame");
    assert_eq!(snapshot.time(), summary.best.at);
    let crossings: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            PipelineEvent::LineCrossing { crossing, total, .. } => {
                Some((crossing.line.to_string(), crossing.label.to_string(), crossing.direction, *total))
            }
            _ => None,
        })
        .collect();
    assert_eq!(crossings, [("middle".to_string(), "bus".to_string(), Direction::Forward, 1)]);
    // motion ran the detector on (nearly) every frame while the bus moved
    assert!(stats.detector_runs >= 40, "{stats:?}");
    assert_eq!(calls.load(Ordering::SeqCst) as u64, stats.detector_runs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_scene_runs_the_detector_only_at_the_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("static.mp4");
    // a parked bus, 30 s at 5 fps, with sensor-like noise
    bus_clip(&clip, "r=5:d=30", "overlay=x=200:y=110,noise=alls=6:allf=t");
    let frames = decode(&clip);
    assert_eq!(frames.len(), 150);
    let calls = Arc::new(AtomicUsize::new(0));
    let (events, stats) = run(frames, 5, CameraAnalyticsConfig::default(), calls.clone()).await;
    // t = 0 (first frame), then the parked bus's new track is checked once more on the next
    // frame (a new track counts as moving until seen twice), then heartbeats at 10 s and 20 s
    let n = calls.load(Ordering::SeqCst);
    assert!((3..=4).contains(&n), "detector calls {n}, {stats:?}");
    assert_eq!(stats.frames, 150);
    // the parked bus is one event, not one per heartbeat
    assert_eq!(started(&events), ["bus"], "{events:#?}");
}
