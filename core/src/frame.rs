//! Encoded video frames as they leave the gateway: shared, never copied per consumer.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;

use crate::CameraId;

/// Video codec of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    H265,
}

/// A presentation time on a stream's monotonic 90 kHz timeline.
///
/// RTP timestamps jump and wrap (camera restarts, reconnects, bugs); the gateway maps them
/// onto this timeline, which only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pts90k(pub i64);

impl Pts90k {
    /// Ticks per second.
    pub const HZ: i64 = 90_000;

    /// Seconds as a float.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / Self::HZ as f64
    }
}

/// One encoded access unit (a picture) in Annex B framing. Key frames carry their
/// parameter sets (SPS/PPS, plus VPS for H.265) in front, so any consumer can start at any
/// key frame without out-of-band data.
#[derive(Clone)]
pub struct EncodedFrame {
    /// The camera.
    pub camera: CameraId,
    /// The stream's name within the camera.
    pub stream: Arc<str>,
    /// Codec.
    pub codec: VideoCodec,
    /// Presentation time on the stream's monotonic timeline.
    pub pts: Pts90k,
    /// The camera's RTP timestamp (90 kHz, as received, unwrapped within one session).
    pub rtp_timestamp: i64,
    /// When the frame's last packet arrived.
    pub received: SystemTime,
    /// Whether decoding can start here (H.264 IDR; H.265 IDR, CRA or BLA).
    pub keyframe: bool,
    /// Increments whenever the parameter sets change (new decoder, new recording segment).
    pub params_epoch: u32,
    /// Annex B access unit.
    pub data: Bytes,
}

impl fmt::Debug for EncodedFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedFrame")
            .field("camera", &self.camera)
            .field("stream", &self.stream)
            .field("codec", &self.codec)
            .field("pts", &self.pts)
            .field("keyframe", &self.keyframe)
            .field("params_epoch", &self.params_epoch)
            .field("len", &self.data.len())
            .finish()
    }
}

/// A decoded frame scaled for analytics: packed RGB24, shared between the decoder's
/// latest-frame slot and every reader without copies.
#[derive(Debug, Clone)]
pub struct RgbFrame {
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

impl RgbFrame {
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

/// Iterates over the NAL units of an Annex B buffer (without their start codes).
pub fn annex_b_nals(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        // Skip to the byte after the next start code (00 00 01 or 00 00 00 01).
        let start = find_start_code(rest)?;
        let body = &rest[start..];
        let end = find_start_code_begin(body).unwrap_or(body.len());
        rest = &body[end..];
        let mut nal = &body[..end];
        // Trailing zero bytes belong to the next start code (00 00 00 01).
        while let [head @ .., 0] = nal {
            nal = head;
        }
        Some(nal)
    })
    .filter(|n| !n.is_empty())
}

/// Index of the first byte after a start code.
fn find_start_code(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1]).map(|i| i + 3)
}

/// Index where the next start code begins.
fn find_start_code_begin(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1])
}

/// Whether an Annex B H.265 access unit contains an IRAP picture (BLA, IDR or CRA:
/// NAL types 16–21), where decoding can start.
pub fn h265_is_irap(data: &[u8]) -> bool {
    annex_b_nals(data).any(|n| (16..=21).contains(&((n[0] >> 1) & 0x3f)))
}

/// Whether an Annex B H.264 access unit contains an IDR slice (NAL type 5).
pub fn h264_is_idr(data: &[u8]) -> bool {
    annex_b_nals(data).any(|n| n[0] & 0x1f == 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_nals_with_both_start_codes() {
        let data = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5];
        let nals: Vec<&[u8]> = annex_b_nals(&data).collect();
        assert_eq!(nals, [&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]);
        assert!(h264_is_idr(&data));
        assert!(!h264_is_idr(&[0, 0, 1, 0x41, 9]));
    }

    #[test]
    fn finds_h265_cra_and_idr_but_not_trail() {
        // NAL header: type in bits 1..6 of the first byte.
        let nal = |t: u8| [0, 0, 0, 1, t << 1, 1, 0xaa];
        assert!(h265_is_irap(&nal(21)), "CRA");
        assert!(h265_is_irap(&nal(19)), "IDR_W_RADL");
        assert!(h265_is_irap(&nal(16)), "BLA");
        assert!(!h265_is_irap(&nal(1)), "TRAIL_R");
        assert!(!h265_is_irap(&nal(32)), "VPS only");
        let mut au = nal(32).to_vec();
        au.extend_from_slice(&nal(21));
        assert!(h265_is_irap(&au));
    }

    #[test]
    fn garbage_does_not_panic() {
        for data in [&[][..], &[0], &[0, 0], &[0, 0, 1], &[0, 0, 1, 0], &[1, 2, 3, 0, 0]] {
            let _ = annex_b_nals(data).count();
            let _ = h265_is_irap(data);
            let _ = h264_is_idr(data);
        }
    }
}
