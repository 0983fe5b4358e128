//! CPU cost of ingest + full-rate analytics decoding, for `bench/gateway.sh`.
//!
//! Starts N camera streams through the [`Gateway`] (RTSP over TCP, as `panoptes serve`
//! does), each feeding a CPU decoder from [`decode::spawn`] in [`DecodeMode::Full`]: every
//! frame is decoded and `--fps` frames per second are scaled to `--width`×`--height` RGB.
//! The decoder is fed through a [`KeyframeQueue`] of the same depth as in `panoptes serve`.
//! `panoptes serve` starts its decoders in key-frame-only mode and offers no switch to full
//! mode, which is why this example exists.
//!
//! After `--warmup` seconds it measures `--window` seconds and prints one line with the
//! process's CPU time (summed over its threads from `/proc/self/task/*/schedstat`) and the
//! frames each decoder delivered, goes on for `--linger` seconds, then stops.
//!
//! ```text
//! cargo run --release -p panoptes-camera-gateway --example decode_bench -- \
//!     --url rtsp://127.0.0.1:8554/h264-1080p --cameras 8 --warmup 5 --window 30
//! ```

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use panoptes_camera_gateway::decode::{self, DecodeMode, DecodeSettings, DecoderChoice};
use panoptes_camera_gateway::{Gateway, KeyframeQueue, StreamSinks, StreamSpec, Timeouts, Transport};
use panoptes_core::{CameraId, StatusBoard, StreamRole};
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error>;

/// Same as `DECODER_QUEUE` in `src/serve.rs`.
const DECODER_QUEUE: usize = 128;

struct Args {
    url: url::Url,
    cameras: usize,
    warmup: f64,
    window: f64,
    fps: f64,
    width: u32,
    height: u32,
    linger: f64,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut url = None;
    let mut a = Args {
        url: url::Url::parse("rtsp://127.0.0.1:8554/h264-1080p")?,
        cameras: 1,
        warmup: 5.0,
        window: 30.0,
        fps: 5.0,
        width: 640,
        height: 360,
        linger: 0.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = Some(url::Url::parse(&value()?)?),
            "--cameras" => a.cameras = value()?.parse()?,
            "--warmup" => a.warmup = value()?.parse()?,
            "--window" => a.window = value()?.parse()?,
            "--fps" => a.fps = value()?.parse()?,
            "--width" => a.width = value()?.parse()?,
            "--height" => a.height = value()?.parse()?,
            "--linger" => a.linger = value()?.parse()?,
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: decode_bench --url RTSP_URL [--cameras N] \
                     [--warmup S] [--window S] [--fps F] [--width W] [--height H] [--linger S]"
                )
                .into());
            }
        }
    }
    a.url = url.ok_or("--url is required")?;
    if a.cameras == 0 || a.window <= 0.0 || a.warmup < 0.0 || a.linger < 0.0 {
        return Err("--cameras must be > 0, --window > 0, --warmup and --linger >= 0".into());
    }
    Ok(a)
}

/// CPU time of the whole process so far, in seconds: the sum of every live thread's run
/// time (`/proc/self/task/*/schedstat`, nanoseconds).
fn process_cpu_seconds() -> Result<f64, BoxError> {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let path = task?.path().join("schedstat");
        // A thread may end between listing and reading.
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let first = text.split_whitespace().next().ok_or("empty schedstat")?;
        ns += first.parse::<u64>()?;
    }
    Ok(ns as f64 / 1e9)
}

fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<(), BoxError> {
    let mut gateway = Gateway::new(StatusBoard::default(), CancellationToken::new());
    let delivered: Vec<Arc<AtomicU64>> = (0..args.cameras).map(|_| Arc::new(AtomicU64::new(0))).collect();
    for (i, count) in delivered.iter().enumerate() {
        let camera = CameraId::new(format!("bench-{i}"))?;
        let spec = StreamSpec {
            camera: camera.clone(),
            stream: "main".to_owned(),
            url: args.url.clone(),
            credentials: None,
            transport: Transport::Tcp,
            roles: vec![StreamRole::Detect],
            timeouts: Timeouts::default(),
        };
        let settings = DecodeSettings {
            choice: DecoderChoice::Cpu,
            width: args.width,
            height: args.height,
            fps: args.fps,
            mode: DecodeMode::Full,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(DECODER_QUEUE);
        let handle = decode::spawn(camera.clone(), &spec.stream, settings, rx)?;
        // Count delivered frames (what analytics would read from the latest-frame slot).
        let mut frames = handle.frames;
        let count = count.clone();
        tokio::spawn(async move {
            while frames.changed().await.is_ok() {
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
        let sinks = StreamSinks { queues: vec![KeyframeQueue::new("decoder", tx)] };
        gateway.set_camera(camera, true, vec![(spec, sinks)]).await;
    }

    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let (cpu0, t0) = (process_cpu_seconds()?, Instant::now());
    let frames0: Vec<u64> = delivered.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    tokio::time::sleep(Duration::from_secs_f64(args.window)).await;
    let (cpu1, elapsed) = (process_cpu_seconds()?, t0.elapsed().as_secs_f64());
    let per_camera: Vec<f64> = delivered
        .iter()
        .zip(&frames0)
        .map(|(c, f0)| (c.load(Ordering::Relaxed) - f0) as f64 / elapsed)
        .collect();
    let n = args.cameras as f64;
    let min_fps = per_camera.iter().copied().fold(f64::INFINITY, f64::min);
    let mean_fps = per_camera.iter().sum::<f64>() / n;
    let cpu_pct = (cpu1 - cpu0) / elapsed * 100.0;
    writeln!(
        std::io::stdout().lock(),
        "decode_bench cameras={} window_s={elapsed:.1} cpu_pct_total={cpu_pct:.1} \
         cpu_pct_per_camera={:.2} delivered_fps_mean={mean_fps:.2} delivered_fps_min={min_fps:.2}",
        args.cameras,
        cpu_pct / n,
    )?;
    // Keeps running while an outside observer (bench/gateway.sh) takes its last sample.
    tokio::time::sleep(Duration::from_secs_f64(args.linger)).await;
    gateway.shutdown().await;
    Ok(())
}
