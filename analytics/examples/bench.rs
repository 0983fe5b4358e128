//! Per-model timings of the Rust detector on one image, as JSON (for bench/analytics.sh):
//! inference ms (session.run) and whole-frame ms (preprocess + inference + decode).
//!
//!     cargo run --release -p panoptes-analytics --example bench -- MODEL IMAGE [ITERATIONS] [THREADS]

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::time::Instant;

use panoptes_analytics::{Detector, DetectorConfig, FrameRef, OrtDetector};
use panoptes_models::{Manifest, ModelCache};

fn summary(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let pct = |q: f64| v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
    serde_json::json!({"mean": (mean * 100.0).round() / 100.0, "p50": (pct(0.5) * 100.0).round() / 100.0, "p95": (pct(0.95) * 100.0).round() / 100.0})
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (model_id, image) = (&args[1], &args[2]);
    let n: usize = args.get(3).map_or(50, |s| s.parse().unwrap());
    let threads: usize = args.get(4).map_or(1, |s| s.parse().unwrap());
    let manifest = Manifest::builtin().unwrap();
    let model = manifest.get(model_id).unwrap_or_else(|| panic!("unknown model {model_id}"));
    let path = ModelCache::from_env().path_of(model);
    let config = DetectorConfig { intra_threads: threads, ..DetectorConfig::default() };
    let mut det = OrtDetector::load(model, &path, &config).unwrap_or_else(|e| panic!("{e}"));
    let img = image::open(image).unwrap().to_rgb8();
    let (w, h) = (img.width(), img.height());
    let rgb = img.into_raw();
    let frame = FrameRef::new(w, h, &rgb).unwrap();
    for _ in 0..5 {
        det.detect(&[frame]).unwrap();
    }
    let (mut inf, mut whole, mut pre) = (Vec::new(), Vec::new(), Vec::new());
    let mut found = 0;
    for _ in 0..n {
        let t = Instant::now();
        found = det.detect(&[frame]).unwrap()[0].len();
        whole.push(t.elapsed().as_secs_f64() * 1e3);
        let s = det.last_times();
        inf.push(s.inference.as_secs_f64() * 1e3);
        pre.push(s.preprocess.as_secs_f64() * 1e3);
    }
    println!(
        "{}",
        serde_json::json!({
            "model": model_id, "image": image, "image_size": [w, h], "threads": threads, "iterations": n,
            "inference_ms": summary(inf), "frame_ms": summary(whole), "preprocess_ms": summary(pre), "detections": found,
        })
    );
}
