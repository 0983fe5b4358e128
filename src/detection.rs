//! Analytics wired into the process: each camera's decoded detect frames go to its
//! analytics pipeline (motion gate → detectors → tracker → zones), the pipeline's wish for
//! full-rate or key-frame-only decoding goes back to the decoder, and its track events and
//! line counts go to the event writer, with a JPEG snapshot of each event's best frame.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use chrono::{DateTime, Utc};
use panoptes_analytics::batch::DetectBatcher;
use panoptes_analytics::pipeline::{
    CameraAnalyticsConfig, PipelineEvent, PipelineIo, SharedDetector, run_camera_with,
};
use panoptes_analytics::{DecodeRate, DetectorConfig, ExecutionProviderKind, Frame, OrtDetector, TrackEvent};
use panoptes_camera_gateway::decode::{DecodeMode, DecoderHandle};
use panoptes_core::{CameraId, DetectRequests, NodeId, Pts90k};
use panoptes_storage::events::{self as ev, EventSink};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::AnalyticsSettings;

/// Loaded detectors and what every camera pipeline shares.
#[derive(Clone)]
pub struct Analytics {
    /// One batcher for every camera: frames that arrive together share an inference.
    batcher: DetectBatcher,
    models: usize,
    events: EventSink,
    node: NodeId,
    snapshots: PathBuf,
    /// Distinguishes this run's track ids (trackers count from 1 at every start).
    run: i64,
    /// Full-rate decoding asked for, per camera, until when.
    requests: Arc<Mutex<HashMap<CameraId, Instant>>>,
}

impl DetectRequests for Analytics {
    fn request_full_rate(&self, camera: &CameraId, duration: Duration) -> bool {
        let Ok(mut map) = self.requests.lock() else { return false };
        match map.get_mut(camera) {
            Some(until) => {
                *until = (*until).max(Instant::now() + duration);
                true
            }
            None => false,
        }
    }
}

impl std::fmt::Debug for Analytics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analytics").field("models", &self.models).finish_non_exhaustive()
    }
}

/// Loads the configured models. `Ok(None)` when analytics is switched off.
pub fn load(
    settings: &AnalyticsSettings,
    events: EventSink,
    node: NodeId,
    data_dir: &Path,
) -> anyhow::Result<Option<Analytics>> {
    if !settings.enabled {
        info!("analytics disabled by configuration");
        return Ok(None);
    }
    let mut manifest = panoptes_models::Manifest::builtin().context("reading the model manifest")?;
    if let Some(file) = &settings.manifest_file {
        manifest = manifest
            .with_user_file(file)
            .with_context(|| format!("analytics.manifest_file {}", file.display()))?;
    }
    let cache = panoptes_models::ModelCache::from_env();
    let config = DetectorConfig {
        provider: match settings.provider.as_str() {
            "cuda" => ExecutionProviderKind::Cuda,
            "tensorrt" => ExecutionProviderKind::Tensorrt,
            "auto" => ExecutionProviderKind::Auto,
            _ => ExecutionProviderKind::Cpu,
        },
        intra_threads: settings.threads,
        keep_labels: (!settings.labels.is_empty()).then(|| settings.labels.clone()),
        ..DetectorConfig::default()
    };
    let mut detectors: Vec<SharedDetector> = Vec::new();
    for id in &settings.models {
        let model =
            manifest.get(id).with_context(|| format!("analytics.models: no model {id:?} in the manifest"))?;
        let path = cache.path_of(model);
        cache
            .verify(model)
            .with_context(|| format!("model {id} at {} (run scripts/setup.sh)", path.display()))?;
        let d = OrtDetector::load(model, &path, &config).with_context(|| format!("loading model {id}"))?;
        info!(model = %id, "detector loaded");
        detectors.push(Arc::new(Mutex::new(d)));
    }
    let run = Utc::now().timestamp_millis();
    let models = detectors.len();
    Ok(Some(Analytics {
        batcher: DetectBatcher::start(detectors, Arc::new(Semaphore::new(settings.parallel.max(1))), 8),
        models,
        events,
        node,
        snapshots: data_dir.join("snapshots"),
        run,
        requests: Arc::default(),
    }))
}

impl Analytics {
    /// Starts a camera's pipeline on its decoder's output; it ends with `cancel` or when
    /// the decoder goes away.
    pub fn start_camera(
        &self,
        camera: CameraId,
        config: CameraAnalyticsConfig,
        decoder: &DecoderHandle,
        cancel: CancellationToken,
    ) {
        let (frames_tx, frames_rx) = watch::channel(None::<Arc<Frame>>);
        let (rate_tx, mut rate_rx) = watch::channel(DecodeRate::KeyframesOnly);
        let (stats_tx, _stats_rx) = watch::channel(Default::default());
        let (events_tx, mut events_rx) = mpsc::channel(256);
        let clock: Arc<Mutex<Option<(Pts90k, SystemTime)>>> = Arc::default();

        // Decoder → pipeline frames; pipeline (or a request) → decoder rate.
        let mut decoded = decoder.frames.clone();
        let control = decoder.control.clone();
        let (bridge_cancel, bridge_clock) = (cancel.clone(), clock.clone());
        let requests = self.requests.clone();
        if let Ok(mut map) = requests.lock() {
            map.insert(camera.clone(), Instant::now());
        }
        let bridge_camera = camera.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut wanted = DecodeRate::KeyframesOnly;
            let mut applied = None;
            loop {
                tokio::select! {
                    _ = bridge_cancel.cancelled() => break,
                    changed = decoded.changed() => {
                        if changed.is_err() { break }
                        let Some(f) = decoded.borrow_and_update().clone() else { continue };
                        if let Ok(mut c) = bridge_clock.lock() { *c = Some((f.pts, f.received)); }
                        // The same frame, shared: no copy between decoder and analytics.
                        frames_tx.send_replace(Some(f));
                        continue;
                    }
                    changed = rate_rx.changed() => {
                        if changed.is_err() { break }
                        wanted = *rate_rx.borrow_and_update();
                    }
                    _ = tick.tick() => {}
                }
                let asked = requests
                    .lock()
                    .ok()
                    .and_then(|m| m.get(&bridge_camera).copied())
                    .is_some_and(|u| u > Instant::now());
                let mode = if wanted == DecodeRate::Full || asked {
                    DecodeMode::Full
                } else {
                    DecodeMode::KeyframesOnly
                };
                if applied != Some(mode) {
                    control.set_mode(mode);
                    applied = Some(mode);
                }
            }
        });

        let io = PipelineIo { frames: frames_rx, events: events_tx, rate: rate_tx, stats: stats_tx, cancel };
        let (batcher, cam) = (self.batcher.clone(), camera.clone());
        tokio::spawn(async move {
            match run_camera_with(cam.clone(), config, batcher, io).await {
                Ok(stats) => info!(camera = %cam, ?stats, "analytics stopped"),
                Err(e) => error!(camera = %cam, error = %e, "analytics stopped"),
            }
        });

        let this = self.clone();
        tokio::spawn(async move {
            while let Some(e) = events_rx.recv().await {
                this.store(e, &clock).await;
            }
        });
    }

    async fn store(&self, event: PipelineEvent, clock: &Mutex<Option<(Pts90k, SystemTime)>>) {
        // Pipeline times are stream times (pts); map them to wall time through the newest
        // frame seen.
        let wall = |t: Duration| -> DateTime<Utc> {
            let anchor = clock.lock().ok().and_then(|c| *c);
            let at = match anchor {
                Some((pts, received)) => {
                    let pts = Duration::from_secs_f64(pts.as_secs_f64().max(0.0));
                    received.checked_sub(pts.saturating_sub(t)).unwrap_or(received)
                }
                None => SystemTime::now(),
            };
            DateTime::<Utc>::from(at)
        };
        match event {
            PipelineEvent::Track { camera, event, snapshot, alert } => {
                let s = event.summary();
                let key = format!("{}/{}/{}/{}", self.node, camera, self.run, s.id);
                let Ok(label) = ev::Label::new(s.label.to_string()) else {
                    warn!(label = %s.label, "event label not storable; dropped");
                    return;
                };
                let (w, h) =
                    snapshot.as_ref().map(|f| (f.width as f32, f.height as f32)).unwrap_or((1.0, 1.0));
                let norm = |b: panoptes_analytics::BBox| ev::BBox {
                    x: (b.x1 / w).clamp(0.0, 1.0),
                    y: (b.y1 / h).clamp(0.0, 1.0),
                    w: ((b.x2 - b.x1) / w).clamp(0.0, 1.0),
                    h: ((b.y2 - b.y1) / h).clamp(0.0, 1.0),
                };
                let start = wall(s.start);
                let snapshot_path = match &snapshot {
                    Some(f) => self.write_snapshot(&camera, &key, f.clone(), s.best.bbox).await,
                    None => None,
                };
                let path: Vec<ev::PathPoint> = s
                    .path
                    .iter()
                    .map(|p| ev::PathPoint {
                        ms: u32::try_from(p.at.saturating_sub(s.start).as_millis()).unwrap_or(u32::MAX),
                        bbox: norm(p.bbox),
                    })
                    .collect();
                let update = ev::EventUpdate {
                    idempotency_key: key.clone(),
                    camera: camera.clone(),
                    end_time: matches!(event, TrackEvent::Ended(_)).then(|| wall(s.end)),
                    sub_label: None,
                    score_max: s.max_score.clamp(0.0, 1.0),
                    score_median: s.median_score.clamp(0.0, s.max_score.clamp(0.0, 1.0)),
                    bbox: norm(s.best.bbox),
                    path,
                    zones: s.zones.iter().map(|z| z.to_string()).collect(),
                    alert,
                    snapshot_path,
                };
                let result = if let TrackEvent::Started(_) = event {
                    let mut e = ev::NewEvent::new(
                        key,
                        camera.clone(),
                        label,
                        start,
                        s.max_score.clamp(0.0, 1.0),
                        norm(s.best.bbox),
                    );
                    e.node = Some(self.node.clone());
                    e.alert = alert;
                    self.events.start(e).and_then(|()| self.events.update(update))
                } else {
                    self.events.update(update)
                };
                if let Err(e) = result {
                    warn!(camera = %camera, error = %e, "event not queued");
                }
            }
            PipelineEvent::LineCrossing { camera, crossing, total } => {
                let Ok(label) = ev::Label::new(crossing.label.to_string()) else { return };
                let direction = match crossing.direction {
                    panoptes_analytics::Direction::Forward => ev::Direction::In,
                    panoptes_analytics::Direction::Backward => ev::Direction::Out,
                };
                let mut count = ev::LineCount::new(
                    camera.clone(),
                    crossing.line.to_string(),
                    label,
                    direction,
                    wall(crossing.at),
                    total,
                );
                count.node = Some(self.node.clone());
                if let Err(e) = self.events.line_count(count) {
                    warn!(camera = %camera, error = %e, "line count not queued");
                }
            }
        }
    }

    /// Encodes the frame, and a crop around the object, as JPEG under
    /// `snapshots/<camera>/<date>/` (`<name>.jpg`, `<name>-crop.jpg`); returns the full
    /// frame's path relative to the snapshot directory.
    async fn write_snapshot(
        &self,
        camera: &CameraId,
        key: &str,
        frame: Arc<Frame>,
        bbox: panoptes_analytics::BBox,
    ) -> Option<String> {
        let date = DateTime::<Utc>::from(frame.received).format("%Y-%m-%d").to_string();
        let name = format!("{}.jpg", key.replace('/', "_"));
        let rel = format!("{camera}/{date}/{name}");
        let full = self.snapshots.join(&rel);
        let result = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            if let Some(dir) = full.parent() {
                std::fs::create_dir_all(dir)?;
            }
            // Encode straight from the shared frame buffer (no copy of the pixels).
            let img = image::ImageBuffer::<image::Rgb<u8>, &[u8]>::from_raw(
                frame.width,
                frame.height,
                &frame.rgb[..],
            )
            .context("frame size does not match its pixels")?;
            let mut out = std::io::BufWriter::new(std::fs::File::create(&full)?);
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85).encode_image(&img)?;
            let (x, y, w, h) =
                panoptes_analytics::pipeline::snapshot_crop(bbox, frame.width, frame.height, 0.2);
            if w > 0 && h > 0 {
                let crop = image::RgbImage::from_fn(w, h, |cx, cy| *img.get_pixel(x + cx, y + cy));
                let crop_path = full.with_file_name(crop_name(&full));
                let mut out = std::io::BufWriter::new(std::fs::File::create(crop_path)?);
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&crop)?;
            }
            Ok(())
        })
        .await;
        match result {
            Ok(Ok(())) => Some(rel),
            Ok(Err(e)) => {
                warn!(camera = %camera, error = %e, "snapshot not written");
                None
            }
            Err(e) => {
                warn!(camera = %camera, error = %e, "snapshot task failed");
                None
            }
        }
    }
}

/// `x.jpg` → `x-crop.jpg`.
pub fn crop_name(full: &Path) -> String {
    let stem = full.file_stem().and_then(|s| s.to_str()).unwrap_or("snapshot");
    format!("{stem}-crop.jpg")
}
