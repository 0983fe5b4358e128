//! Frames as analytics sees them: packed RGB24, any size.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use panoptes_core::{CameraId, Pts90k};

/// One decoded frame (what the binary builds from the gateway's decoded frame).
#[derive(Debug, Clone)]
pub struct Frame {
    /// The camera.
    pub camera: CameraId,
    /// Presentation time on the stream's monotonic timeline: the pipeline's clock.
    pub pts: Pts90k,
    /// Wall-clock time the frame was received.
    pub received: SystemTime,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Whether it was a key frame.
    pub keyframe: bool,
    /// Packed RGB24, `width * height * 3` bytes, row-major without padding.
    pub rgb: Arc<[u8]>,
}

impl Frame {
    /// A borrowed view.
    pub fn view(&self) -> FrameRef<'_> {
        FrameRef { width: self.width, height: self.height, rgb: &self.rgb }
    }

    /// The pts as a duration from the timeline's origin (negative pts count as zero).
    pub fn time(&self) -> Duration {
        Duration::from_secs_f64(self.pts.as_secs_f64().max(0.0))
    }
}

/// A borrowed RGB24 frame: what detectors and the motion gate read.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Packed RGB24, at least `width * height * 3` bytes.
    pub rgb: &'a [u8],
}

impl<'a> FrameRef<'a> {
    /// Checks the buffer size; `None` if it is too small or a side is zero.
    pub fn new(width: u32, height: u32, rgb: &'a [u8]) -> Option<Self> {
        let need = width as usize * height as usize * 3;
        (width > 0 && height > 0 && rgb.len() >= need).then_some(Self { width, height, rgb })
    }

    /// Whether the buffer holds the whole frame.
    pub fn is_valid(&self) -> bool {
        self.width > 0 && self.height > 0 && self.rgb.len() >= self.width as usize * self.height as usize * 3
    }
}
