//! The recorder: fragmented MP4 segments per camera stream, without transcoding, indexed
//! in PostgreSQL. Design and choices: `docs/design/recording.md`.
//!
//! - [`segmenter`] decides cut points, frame durations and gaps (pure, unit-tested);
//! - [`mp4`] and [`sps`] write and read the files (pure byte work);
//! - [`spawn`] runs one writer on a named thread per stream: it drives the segmenter with
//!   frames from the gateway's bounded queue, writes fragments, and sends index rows over a
//!   bounded channel to [`run_index`], an async task that writes them to PostgreSQL;
//! - [`recovery`] makes the index match the disk at start (after a crash): open rows and
//!   unindexed files are checked, torn last fragments truncated, complete parts indexed.
//!
//! File layout (UTC): `<data_dir>/recordings/<camera>/<YYYY-MM-DD>/<HH>/<stream>-<start>.mp4`
//! with `<start>` as `YYYYMMDDTHHMMSS.mmmZ`; index rows store the path relative to the data
//! directory.

pub mod index;
pub mod mp4;
pub mod recovery;
pub mod segmenter;
pub mod sps;
mod writer;

use std::path::PathBuf;
use std::time::SystemTime;

use chrono::{DateTime, NaiveDateTime, Utc};
use panoptes_core::{CameraId, VideoCodec};

pub use index::{IndexMessage, run_index};
pub use recovery::{RecoveryReport, recover};
pub use segmenter::{SegmenterConfig, SegmenterStats};
pub use writer::{RecorderConfig, RecorderHandle, spawn};

/// Bounded capacity of the writer → index channel (a message per segment open/close/gap).
pub const INDEX_QUEUE: usize = 256;
/// Suggested capacity of the gateway → recorder frame queue (about 10 s at 25 fps).
pub const FRAME_QUEUE: usize = 256;

/// Why recording or recovery failed.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// File system error.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Database error.
    #[error("recording index: {0}")]
    Db(#[from] sqlx::Error),
    /// A segment file is not readable.
    #[error("segment {path}: {source}")]
    Segment {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: mp4::Mp4Error,
    },
    /// A blocking task failed.
    #[error("blocking task: {0}")]
    Join(String),
}

pub(crate) fn io_err(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> RecorderError {
    let path = path.into();
    move |source| RecorderError::Io { what, path, source }
}

/// The codec's name in the index.
pub fn codec_name(codec: VideoCodec) -> &'static str {
    match codec {
        VideoCodec::H264 => "h264",
        VideoCodec::H265 => "h265",
    }
}

const NAME_TIME: &str = "%Y%m%dT%H%M%S%.3fZ";

/// The relative path of a segment starting at `start`.
pub fn segment_path(camera: &CameraId, stream: &str, start: SystemTime) -> PathBuf {
    let t: DateTime<Utc> = start.into();
    PathBuf::from("recordings")
        .join(camera.as_str())
        .join(t.format("%Y-%m-%d").to_string())
        .join(t.format("%H").to_string())
        .join(format!("{stream}-{}.mp4", t.format(NAME_TIME)))
}

/// Reads camera, stream and start back from a relative segment path.
pub fn parse_segment_path(rel: &std::path::Path) -> Option<(CameraId, String, DateTime<Utc>)> {
    let parts: Vec<&str> = rel.iter().map(|p| p.to_str()).collect::<Option<_>>()?;
    let [root, camera, _day, _hour, file] = parts.as_slice() else {
        return None;
    };
    if *root != "recordings" {
        return None;
    }
    let stem = file.strip_suffix(".mp4")?;
    let (stream, time) = stem.rsplit_once('-')?;
    let start = NaiveDateTime::parse_from_str(time, NAME_TIME).ok()?.and_utc();
    Some((CameraId::new(*camera).ok()?, stream.to_owned(), start))
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn segment_paths_round_trip() {
        let cam = CameraId::new("front-door").unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        let p = segment_path(&cam, "main-hd", t);
        assert_eq!(p, PathBuf::from("recordings/front-door/2026-11-18/11/main-hd-20261118T110640.123Z.mp4"));
        let (c, s, start) = parse_segment_path(&p).unwrap();
        assert_eq!((c, s.as_str(), SystemTime::from(start)), (cam, "main-hd", t));
    }
}
