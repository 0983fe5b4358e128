//! Shared helpers of the tests that need ONNX Runtime, the models and the test media
//! (all provided by scripts/setup.sh). Missing assets FAIL the test with a message saying
//! how to get them: these tests never pass silently.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use panoptes_analytics::{BBox, DetectorConfig, OrtDetector};
use panoptes_models::{Manifest, ModelCache};

/// `$PANOPTES_CACHE` (or the XDG default), checked.
pub fn cache_dir() -> PathBuf {
    ModelCache::from_env().dir().parent().map(Path::to_owned).unwrap_or_default()
}

/// Fails the test with a setup hint unless `path` exists.
pub fn need(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what} not found at {}: run scripts/setup.sh (make test does) and `source $PANOPTES_CACHE/env.sh`",
        path.display()
    );
}

pub fn media(name: &str) -> PathBuf {
    let p = cache_dir().join("media").join(name);
    need(&p, "test media");
    p
}

/// Checks ONNX Runtime's library is there.
pub fn need_runtime() {
    let dylib = std::env::var_os("ORT_DYLIB_PATH").unwrap_or_else(|| {
        panic!("ORT_DYLIB_PATH is not set: run scripts/setup.sh and `source $PANOPTES_CACHE/env.sh`")
    });
    need(Path::new(&dylib), "ONNX Runtime (ORT_DYLIB_PATH)");
}

pub fn detector(id: &str, config: &DetectorConfig) -> OrtDetector {
    need_runtime();
    let manifest = Manifest::builtin().unwrap();
    let model = manifest.get(id).unwrap();
    let cache = ModelCache::from_env();
    let path = cache.path_of(model);
    need(&path, &format!("model `{id}`"));
    if let Err(e) = cache.verify(model) {
        panic!("{e}");
    }
    OrtDetector::load(model, &path, config).unwrap_or_else(|e| panic!("{e}"))
}

/// Decodes an image file to packed RGB24.
pub fn load_rgb(path: &Path) -> (u32, u32, Vec<u8>) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    (img.width(), img.height(), img.into_raw())
}

/// Frame `n` (0-based decode order) of a video, as an RGB24 image, via the ffmpeg CLI.
pub fn video_frame(video: &Path, n: u32, dir: &Path) -> (u32, u32, Vec<u8>) {
    let out = dir.join(format!("frame-{n}.png"));
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(video)
        .args(["-vf", &format!("select=eq(n\\,{n})"), "-vframes", "1"])
        .arg(&out)
        .status()
        .expect("ffmpeg not found: run scripts/setup.sh (it installs ffmpeg)");
    assert!(status.success(), "ffmpeg failed extracting frame {n} of {}", video.display());
    load_rgb(&out)
}

pub fn bbox(b: [f32; 4]) -> BBox {
    BBox::new(b[0], b[1], b[2], b[3])
}
