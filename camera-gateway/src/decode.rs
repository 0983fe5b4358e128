//! Decoding for analytics: FFmpeg on a named thread per stream, GPU first where asked,
//! CPU otherwise, frames scaled by swscale straight to the analytics input size at the
//! detect frame rate, published to a latest-frame slot (stale frames are overwritten, never
//! queued).
//!
//! Idle cameras decode key frames only; [`DecodeControl::set_mode`] switches to every frame
//! (on motion, an active track, or a request) and back.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use ffmpeg_next as ffmpeg;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling;
use panoptes_core::{CameraId, Pts90k, VideoCodec};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::fanout::SharedFrame;

/// Which decoder to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecoderChoice {
    /// CUDA, then VA-API, then CPU.
    #[default]
    Auto,
    /// NVIDIA NVDEC (falls back to CPU when unavailable).
    Cuda,
    /// VA-API (falls back to CPU when unavailable).
    Vaapi,
    /// Software.
    Cpu,
}

impl DecoderChoice {
    /// The backends to try, in order.
    fn candidates(self) -> &'static [Backend] {
        match self {
            DecoderChoice::Auto => &[Backend::Cuda, Backend::Vaapi, Backend::Cpu],
            DecoderChoice::Cuda => &[Backend::Cuda, Backend::Cpu],
            DecoderChoice::Vaapi => &[Backend::Vaapi, Backend::Cpu],
            DecoderChoice::Cpu => &[Backend::Cpu],
        }
    }
}

/// A decoder backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// NVDEC through FFmpeg's CUDA hwaccel.
    Cuda,
    /// VA-API.
    Vaapi,
    /// Software.
    Cpu,
}

impl Backend {
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cuda => "cuda",
            Backend::Vaapi => "vaapi",
            Backend::Cpu => "cpu",
        }
    }
}

/// Decode every frame, or key frames only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DecodeMode {
    /// Key frames only: a few percent of the cost, for idle scenes.
    KeyframesOnly = 0,
    /// Every frame, output at the detect frame rate.
    Full = 1,
}

/// Settings of one stream's decoder.
#[derive(Debug, Clone)]
pub struct DecodeSettings {
    /// Backend choice.
    pub choice: DecoderChoice,
    /// Output width (the analytics input size).
    pub width: u32,
    /// Output height.
    pub height: u32,
    /// Frames per second delivered in full mode.
    pub fps: f64,
    /// Mode at start.
    pub mode: DecodeMode,
}

/// A decoded, scaled frame: packed RGB24, `width * height * 3` bytes.
pub use panoptes_core::frame::RgbFrame as DecodedFrame;

/// Switches a running decoder between modes.
#[derive(Debug, Clone)]
pub struct DecodeControl(Arc<AtomicU8>);

impl DecodeControl {
    /// Sets the mode; takes effect at the next frame (full mode at the next key frame).
    pub fn set_mode(&self, mode: DecodeMode) {
        self.0.store(mode as u8, Ordering::Relaxed);
    }

    /// The current mode.
    pub fn mode(&self) -> DecodeMode {
        if self.0.load(Ordering::Relaxed) == DecodeMode::Full as u8 {
            DecodeMode::Full
        } else {
            DecodeMode::KeyframesOnly
        }
    }
}

/// A running decoder: its output slot, its control and which backend it uses.
#[derive(Debug)]
pub struct DecoderHandle {
    /// The latest decoded frame.
    pub frames: watch::Receiver<Option<Arc<DecodedFrame>>>,
    /// Mode switch.
    pub control: DecodeControl,
    /// The chosen backend, once the first frame is decoded.
    pub backend: watch::Receiver<Option<Backend>>,
}

/// Why a decoder could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// FFmpeg has no decoder for the codec.
    #[error("FFmpeg has no {0:?} decoder")]
    NoCodec(VideoCodec),
    /// FFmpeg failed.
    #[error("{0}")]
    Ffmpeg(#[from] ffmpeg::Error),
    /// The decoder thread could not start.
    #[error("starting the decoder thread: {0}")]
    Thread(std::io::Error),
}

/// Starts a decoder thread reading `input` until it closes.
pub fn spawn(
    camera: CameraId,
    stream: &str,
    settings: DecodeSettings,
    input: mpsc::Receiver<SharedFrame>,
) -> Result<DecoderHandle, DecodeError> {
    ffmpeg::init()?;
    // FFmpeg's own messages would bypass our logs; errors are reported through tracing.
    ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    let (frames_tx, frames) = watch::channel(None);
    let (backend_tx, backend) = watch::channel(None);
    let control = DecodeControl(Arc::new(AtomicU8::new(settings.mode as u8)));
    let ctl = control.clone();
    let name = format!("decode-{camera}");
    let stream = stream.to_owned();
    std::thread::Builder::new()
        .name(name.chars().take(15).collect())
        .spawn(move || {
            let span = tracing::info_span!("decode", camera = %camera, stream = %stream);
            let _enter = span.enter();
            let mut worker = Worker::new(camera, &stream, settings, frames_tx, backend_tx, ctl);
            worker.run(input);
        })
        .map_err(DecodeError::Thread)?;
    Ok(DecoderHandle { frames, control, backend })
}

struct Open {
    decoder: ffmpeg::decoder::Video,
    backend: Backend,
    codec: VideoCodec,
    epoch: u32,
}

struct Worker {
    camera: CameraId,
    settings: DecodeSettings,
    out: watch::Sender<Option<Arc<DecodedFrame>>>,
    backend_tx: watch::Sender<Option<Backend>>,
    control: DecodeControl,
    open: Option<Open>,
    scaler: Option<(scaling::Context, Pixel, u32, u32)>,
    next_out: Option<i64>,
    need_key: bool,
    last_mode: DecodeMode,
    logged_choice: bool,
    decoded: metrics::Counter,
    delivered: metrics::Counter,
    errors: metrics::Counter,
}

impl Worker {
    fn new(
        camera: CameraId,
        stream: &str,
        settings: DecodeSettings,
        out: watch::Sender<Option<Arc<DecodedFrame>>>,
        backend_tx: watch::Sender<Option<Backend>>,
        control: DecodeControl,
    ) -> Self {
        let labels = [("camera", camera.to_string()), ("stream", stream.to_owned())];
        Worker {
            last_mode: control.mode(),
            camera,
            settings,
            out,
            backend_tx,
            control,
            open: None,
            scaler: None,
            next_out: None,
            need_key: true,
            logged_choice: false,
            decoded: metrics::counter!("panoptes_decode_frames_total", &labels),
            delivered: metrics::counter!("panoptes_decode_delivered_total", &labels),
            errors: metrics::counter!("panoptes_decode_errors_total", &labels),
        }
    }

    fn run(&mut self, mut input: mpsc::Receiver<SharedFrame>) {
        while let Some(frame) = input.blocking_recv() {
            let mode = self.control.mode();
            if mode != self.last_mode {
                debug!(?mode, "decode mode changed");
                self.last_mode = mode;
                self.need_key = true;
            }
            if self.need_key && !frame.keyframe {
                continue;
            }
            if mode == DecodeMode::KeyframesOnly && !frame.keyframe {
                continue;
            }
            if let Err(e) = self.decode(&frame) {
                self.errors.increment(1);
                debug!(error = %e, "decode error; waiting for the next key frame");
                self.need_key = true;
                if let Some(open) = self.open.as_mut() {
                    open.decoder.flush();
                }
            }
        }
        debug!("decoder input closed");
    }

    fn ensure_open(&mut self, frame: &SharedFrame) -> Result<(), DecodeError> {
        let current = self.open.as_ref().map(|o| (o.codec, o.epoch));
        if current == Some((frame.codec, frame.params_epoch)) {
            return Ok(());
        }
        // New stream parameters: a fresh decoder on the same backend as before if we have
        // one, else the first that opens.
        let mut reasons = Vec::new();
        let mut opened = None;
        let prior = self.open.as_ref().map(|o| o.backend);
        let candidates: Vec<Backend> = match prior {
            Some(b) => vec![b, Backend::Cpu],
            None => self.settings.choice.candidates().to_vec(),
        };
        for backend in candidates {
            match open_decoder(frame.codec, backend) {
                Ok(d) => {
                    opened =
                        Some(Open { decoder: d, backend, codec: frame.codec, epoch: frame.params_epoch });
                    break;
                }
                Err(e) => reasons.push(format!("{} unavailable ({e})", backend.name())),
            }
        }
        let open = opened.ok_or(DecodeError::NoCodec(frame.codec))?;
        if !self.logged_choice {
            self.logged_choice = true;
            let why = if reasons.is_empty() { String::new() } else { format!("; {}", reasons.join("; ")) };
            let msg = format!("decoder: using {} for {:?}{why}", open.backend.name(), frame.codec);
            // Falling back is news only when a GPU was asked for explicitly.
            if reasons.is_empty() || self.settings.choice == DecoderChoice::Auto {
                info!("{msg}");
            } else {
                warn!("{msg}");
            }
            metrics::gauge!("panoptes_decoder_backend", "camera" => self.camera.to_string(), "backend" => open.backend.name()).set(1.0);
        }
        self.backend_tx.send_replace(Some(open.backend));
        self.open = Some(open);
        self.scaler = None;
        Ok(())
    }

    fn decode(&mut self, frame: &SharedFrame) -> Result<(), DecodeError> {
        self.ensure_open(frame)?;
        let Some(open) = self.open.as_mut() else { return Ok(()) };
        let mut packet = ffmpeg::Packet::copy(&frame.data);
        packet.set_pts(Some(frame.pts.0));
        packet.set_dts(Some(frame.pts.0));
        if frame.keyframe {
            packet.set_flags(ffmpeg::packet::Flags::KEY);
        }
        open.decoder.send_packet(&packet)?;
        self.need_key = false;
        let mut decoded = ffmpeg::frame::Video::empty();
        while open.decoder.receive_frame(&mut decoded).is_ok() {
            self.decoded.increment(1);
            let pts = decoded.pts().unwrap_or(frame.pts.0);
            if !due(&mut self.next_out, pts, self.settings.fps, self.last_mode) {
                continue;
            }
            let sw = if is_hw(decoded.format()) { transfer(&decoded)? } else { decoded.clone() };
            let rgb = scale(&mut self.scaler, &sw, self.settings.width, self.settings.height)?;
            self.delivered.increment(1);
            self.out.send_replace(Some(Arc::new(DecodedFrame {
                camera: self.camera.clone(),
                pts: Pts90k(pts),
                received: frame.received,
                width: self.settings.width,
                height: self.settings.height,
                keyframe: frame.keyframe,
                rgb: rgb.into(),
            })));
        }
        Ok(())
    }
}

/// Whether a frame at `pts` is due for output at `fps`; advances the schedule. In key-frame
/// mode every decoded frame is due (there are few of them).
fn due(next: &mut Option<i64>, pts: i64, fps: f64, mode: DecodeMode) -> bool {
    if mode == DecodeMode::KeyframesOnly {
        *next = None;
        return true;
    }
    let interval = (Pts90k::HZ as f64 / fps.max(0.01)) as i64;
    match *next {
        // Allow a little early (timestamps jitter), and resynchronise after a jump.
        Some(n) if pts + interval / 10 < n && n - pts < interval * 2 => false,
        Some(n) if pts < n + interval * 2 => {
            *next = Some(n.max(pts - interval / 10) + interval);
            true
        }
        _ => {
            *next = Some(pts + interval);
            true
        }
    }
}

fn is_hw(p: Pixel) -> bool {
    matches!(p, Pixel::CUDA | Pixel::VAAPI)
}

fn codec_id(c: VideoCodec) -> ffmpeg::codec::Id {
    match c {
        VideoCodec::H264 => ffmpeg::codec::Id::H264,
        VideoCodec::H265 => ffmpeg::codec::Id::HEVC,
    }
}

fn open_decoder(codec: VideoCodec, backend: Backend) -> Result<ffmpeg::decoder::Video, String> {
    let c = ffmpeg::decoder::find(codec_id(codec)).ok_or_else(|| format!("no {codec:?} decoder"))?;
    let mut ctx = ffmpeg::codec::context::Context::new_with_codec(c);
    // One thread per stream: many cameras share few cores; frame threads would add latency.
    ctx.set_threading(ffmpeg::threading::Config {
        count: 1,
        ..ffmpeg::threading::Config::kind(ffmpeg::threading::Type::Slice)
    });
    match backend {
        Backend::Cpu => {}
        Backend::Cuda => {
            if !Path::new("/dev/nvidiactl").exists() {
                return Err("no NVIDIA device (/dev/nvidiactl is missing)".into());
            }
            attach_hw_device(&mut ctx, ffmpeg::ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_CUDA).map_err(|e| {
                format!("CUDA device did not open: {e}; is the NVIDIA driver (libcuda.so.1) installed?")
            })?
        }
        Backend::Vaapi => {
            if !has_render_node() {
                return Err("no GPU render node in /dev/dri".into());
            }
            attach_hw_device(&mut ctx, ffmpeg::ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_VAAPI)
                .map_err(|e| format!("VA-API device did not open: {e}; is a VA driver installed?"))?
        }
    }
    ctx.decoder().video().map_err(|e| e.to_string())
}

fn has_render_node() -> bool {
    std::fs::read_dir("/dev/dri")
        .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("renderD")))
        .unwrap_or(false)
}

/// Creates a hardware device and attaches it to the codec context; FFmpeg's default
/// `get_format` then picks the device's pixel format.
#[allow(unsafe_code)]
fn attach_hw_device(
    ctx: &mut ffmpeg::codec::context::Context,
    kind: ffmpeg::ffi::AVHWDeviceType,
) -> Result<(), String> {
    let mut device: *mut ffmpeg::ffi::AVBufferRef = std::ptr::null_mut();
    // SAFETY: `device` is a valid out-pointer; a null device name and options ask for the
    // default device. On success FFmpeg stores a new reference we own.
    let rc = unsafe {
        ffmpeg::ffi::av_hwdevice_ctx_create(&mut device, kind, std::ptr::null(), std::ptr::null_mut(), 0)
    };
    if rc < 0 || device.is_null() {
        return Err(ffmpeg::Error::from(rc).to_string());
    }
    // SAFETY: the context is not opened yet, so setting `hw_device_ctx` is allowed; it takes
    // over our reference and frees it with the context.
    unsafe {
        (*ctx.as_mut_ptr()).hw_device_ctx = device;
    }
    Ok(())
}

/// Copies a hardware frame into system memory.
#[allow(unsafe_code)]
fn transfer(hw: &ffmpeg::frame::Video) -> Result<ffmpeg::frame::Video, DecodeError> {
    let mut sw = ffmpeg::frame::Video::empty();
    // SAFETY: both frames are valid; `sw` is empty, so FFmpeg allocates its buffers.
    let rc = unsafe { ffmpeg::ffi::av_hwframe_transfer_data(sw.as_mut_ptr(), hw.as_ptr(), 0) };
    if rc < 0 {
        return Err(ffmpeg::Error::from(rc).into());
    }
    sw.set_pts(hw.pts());
    Ok(sw)
}

/// Scales to RGB24 at `w`×`h`, reusing the scaler while the input shape holds.
fn scale(
    scaler: &mut Option<(scaling::Context, Pixel, u32, u32)>,
    src: &ffmpeg::frame::Video,
    w: u32,
    h: u32,
) -> Result<Vec<u8>, DecodeError> {
    let key = (src.format(), src.width(), src.height());
    if scaler.as_ref().map(|(_, f, sw, sh)| (*f, *sw, *sh)) != Some(key) {
        let ctx = scaling::Context::get(key.0, key.1, key.2, Pixel::RGB24, w, h, scaling::Flags::BILINEAR)?;
        *scaler = Some((ctx, key.0, key.1, key.2));
    }
    let Some((ctx, ..)) = scaler.as_mut() else { return Ok(Vec::new()) };
    let mut out = ffmpeg::frame::Video::empty();
    ctx.run(src, &mut out)?;
    let (row, stride) = (w as usize * 3, out.stride(0));
    let data = out.data(0);
    let mut rgb = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        let start = y * stride;
        rgb.extend_from_slice(data.get(start..start + row).unwrap_or(&[]));
    }
    Ok(rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_mode_delivers_at_the_detect_rate() {
        let mut next = None;
        let n = (0..250).filter(|i| due(&mut next, i * 3600, 5.0, DecodeMode::Full)).count();
        assert_eq!(n, 50, "10 s of 25 fps at 5 fps");
        let mut next = None;
        let n = (0..250).filter(|i| due(&mut next, i * 3600, 30.0, DecodeMode::Full)).count();
        assert_eq!(n, 250, "asking for more than the camera gives every frame");
    }

    #[test]
    fn schedule_recovers_after_a_jump() {
        let mut next = None;
        assert!(due(&mut next, 0, 5.0, DecodeMode::Full));
        assert!(due(&mut next, 90_000 * 100, 5.0, DecodeMode::Full), "far ahead: resync");
        assert!(!due(&mut next, 90_000 * 100 + 3600, 5.0, DecodeMode::Full));
    }

    #[test]
    fn keyframe_mode_delivers_every_decoded_frame() {
        let mut next = None;
        assert!(due(&mut next, 0, 5.0, DecodeMode::KeyframesOnly));
        assert!(due(&mut next, 3600, 5.0, DecodeMode::KeyframesOnly));
    }

    #[test]
    fn auto_tries_gpus_then_cpu() {
        assert_eq!(DecoderChoice::Auto.candidates(), [Backend::Cuda, Backend::Vaapi, Backend::Cpu]);
        assert_eq!(DecoderChoice::Cuda.candidates().last(), Some(&Backend::Cpu));
    }

    #[test]
    fn gpu_backends_fall_back_to_cpu_without_a_gpu() {
        // On a machine without a GPU both hardware devices fail to open, with a reason.
        if std::path::Path::new("/dev/dri").exists() || std::path::Path::new("/dev/nvidia0").exists() {
            return;
        }
        ffmpeg::init().ok();
        assert!(open_decoder(VideoCodec::H264, Backend::Cuda).is_err());
        assert!(open_decoder(VideoCodec::H264, Backend::Vaapi).is_err());
        assert!(open_decoder(VideoCodec::H264, Backend::Cpu).is_ok());
        assert!(open_decoder(VideoCodec::H265, Backend::Cpu).is_ok());
    }
}
