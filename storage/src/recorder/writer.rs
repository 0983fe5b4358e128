//! The segment writer: one named thread per camera stream, driving the [`Segmenter`] and
//! writing its decisions to disk. Never runs on the async runtime.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use panoptes_core::{CameraId, EncodedFrame, VideoCodec};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::{error, info, info_span, warn};

use super::index::IndexMessage;
use super::mp4::{self, SampleInfo, TrackConfig};
use super::segmenter::{Action, CloseReason, FrameMeta, Segmenter, SegmenterConfig};
use super::{codec_name, hex, segment_path};

/// How often the writer checks for a stalled stream when no frame arrives.
const TICK: Duration = Duration::from_millis(500);
/// A fragment is written early if its data grows past this (bounded memory).
const MAX_FRAGMENT_BYTES: usize = 32 << 20;

/// Recorder settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecorderConfig {
    /// Segmenting rules (60 s segments, 1 s fragments by default).
    pub segmenter: SegmenterConfig,
}

/// A running writer thread. It finishes its segment and exits when the frame queue closes.
#[derive(Debug)]
pub struct RecorderHandle {
    thread: JoinHandle<()>,
}

impl RecorderHandle {
    /// Waits for the writer to close its segment and exit.
    pub fn join(self) {
        if self.thread.join().is_err() {
            error!("recorder thread panicked");
        }
    }

    /// Whether the thread has exited.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }
}

/// Starts the writer for one stream on a thread named `rec-<camera>`.
pub fn spawn(
    camera: CameraId,
    stream: &str,
    data_dir: &Path,
    config: RecorderConfig,
    frames: mpsc::Receiver<Arc<EncodedFrame>>,
    index: mpsc::Sender<IndexMessage>,
) -> std::io::Result<RecorderHandle> {
    let name: String = format!("rec-{camera}").chars().take(15).collect();
    let mut writer =
        Writer { camera, stream: stream.to_owned(), data_dir: data_dir.to_owned(), index, file: None };
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        let span = info_span!("recorder", camera = %writer.camera, stream = %writer.stream);
        let _enter = span.enter();
        writer.run(config, frames);
    })?;
    Ok(RecorderHandle { thread })
}

struct SegmentFile {
    file: File,
    rel: String,
    abs: PathBuf,
    codec: VideoCodec,
    hasher: Sha256,
    bytes: u64,
    sequence: u32,
    decode_time: u64,
    samples: Vec<SampleInfo>,
    data: Vec<u8>,
}

struct Writer {
    camera: CameraId,
    stream: String,
    data_dir: PathBuf,
    index: mpsc::Sender<IndexMessage>,
    /// The open segment; `None` also when it could not be written (samples are then
    /// skipped until the next segment opens).
    file: Option<SegmentFile>,
}

impl Writer {
    fn run(&mut self, config: RecorderConfig, mut frames: mpsc::Receiver<Arc<EncodedFrame>>) {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(rt) => rt,
            Err(e) => {
                error!(error = %e, "recorder cannot start its timer");
                return;
            }
        };
        info!("recorder started");
        let mut segmenter: Segmenter<Arc<EncodedFrame>> = Segmenter::new(config.segmenter);
        let mut actions = Vec::new();
        loop {
            match rt.block_on(async { tokio::time::timeout(TICK, frames.recv()).await }) {
                Ok(Some(frame)) => {
                    let meta = FrameMeta {
                        pts: frame.pts,
                        received: frame.received,
                        keyframe: frame.keyframe,
                        params_epoch: frame.params_epoch,
                        codec: frame.codec,
                    };
                    segmenter.push(meta, frame, &mut actions);
                }
                Ok(None) => {
                    segmenter.finish(&mut actions);
                    self.apply_all(&mut actions);
                    break;
                }
                Err(_) => segmenter.tick(SystemTime::now(), &mut actions),
            }
            self.apply_all(&mut actions);
        }
        let stats = segmenter.stats();
        info!(skipped = stats.skipped, clock_jumps = stats.clock_jumps, "recorder stopped");
    }

    fn apply_all(&mut self, actions: &mut Vec<Action<Arc<EncodedFrame>>>) {
        for a in actions.drain(..) {
            if let Err(e) = self.apply(a) {
                error!(error = %e, "recording write failed; segment abandoned (recovery indexes what was written)");
                self.file = None;
            }
        }
    }

    fn send(&self, msg: IndexMessage) {
        if self.index.blocking_send(msg).is_err() {
            warn!("recording index task is gone; recovery will index this segment at the next start");
        }
    }

    fn apply(&mut self, action: Action<Arc<EncodedFrame>>) -> std::io::Result<()> {
        match action {
            Action::Open { start, first } => {
                let track = match TrackConfig::from_keyframe(first.codec, &first.data) {
                    Ok(t) => t,
                    Err(e) => {
                        warn!(pts = first.pts.0, error = %e, "key frame without usable parameter sets; segment skipped");
                        return Ok(());
                    }
                };
                let rel = segment_path(&self.camera, &self.stream, start);
                let abs = self.data_dir.join(&rel);
                if let Some(dir) = abs.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut file = File::options().write(true).create_new(true).open(&abs)?;
                let init = mp4::init_segment(&track);
                file.write_all(&init)?;
                let mut hasher = Sha256::new();
                hasher.update(&init);
                let rel = rel.to_string_lossy().into_owned();
                self.send(IndexMessage::Opened {
                    camera: self.camera.to_string(),
                    stream: self.stream.clone(),
                    start,
                    path: rel.clone(),
                    codec: codec_name(track.codec),
                    width: track.width,
                    height: track.height,
                });
                self.file = Some(SegmentFile {
                    file,
                    rel,
                    abs,
                    codec: track.codec,
                    hasher,
                    bytes: init.len() as u64,
                    sequence: 1,
                    decode_time: 0,
                    samples: Vec::new(),
                    data: Vec::new(),
                });
            }
            Action::Sample { frame, duration } => {
                let Some(f) = &mut self.file else {
                    return Ok(());
                };
                if frame.codec != f.codec {
                    return Ok(());
                }
                let size = mp4::append_sample(f.codec, &frame.data, &mut f.data);
                f.samples.push(SampleInfo { duration, size: size as u32, key: frame.keyframe });
                if f.data.len() > MAX_FRAGMENT_BYTES {
                    Self::flush(f)?;
                }
            }
            Action::Flush => {
                if let Some(f) = &mut self.file {
                    Self::flush(f)?;
                }
            }
            Action::Close { end, duration, frames, reason } => {
                let Some(mut f) = self.file.take() else {
                    return Ok(());
                };
                Self::flush(&mut f)?;
                f.file.sync_data()?;
                let sha256 = hex(&f.hasher.finalize());
                self.send(IndexMessage::Closed {
                    path: f.rel,
                    end,
                    duration_90k: duration,
                    frames: frames as i64,
                    bytes: f.bytes as i64,
                    sha256,
                    reason: close_reason(reason),
                });
                tracing::debug!(path = %f.abs.display(), bytes = f.bytes, "segment closed");
            }
            Action::Gap { start, end, reason } => {
                self.send(IndexMessage::Gap {
                    camera: self.camera.to_string(),
                    stream: self.stream.clone(),
                    start,
                    end,
                    reason: reason.as_str(),
                });
            }
        }
        Ok(())
    }

    fn flush(f: &mut SegmentFile) -> std::io::Result<()> {
        if f.samples.is_empty() {
            return Ok(());
        }
        let frag = mp4::fragment(f.sequence, f.decode_time, &f.samples, &f.data);
        f.file.write_all(&frag)?;
        f.hasher.update(&frag);
        f.bytes += frag.len() as u64;
        f.sequence += 1;
        f.decode_time += f.samples.iter().map(|s| u64::from(s.duration)).sum::<u64>();
        f.samples.clear();
        f.data.clear();
        Ok(())
    }
}

fn close_reason(r: CloseReason) -> &'static str {
    match r {
        CloseReason::Length => "length",
        CloseReason::ParamsChanged => "params_changed",
        CloseReason::Stall => "stall",
        CloseReason::NoKeyframe => "no_keyframe",
        CloseReason::Shutdown => "shutdown",
    }
}
