//! The live status of every camera stream, written by the gateway and read by the API,
//! the readiness check and the metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{CameraId, RedactedUrl};

/// What a stream is used for. One stream may serve several roles.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StreamRole {
    /// Written to disk by the recorder.
    Record,
    /// Sent to browsers in the focused (full-size) live view.
    Live,
    /// Sent to browsers in camera-wall tiles.
    Grid,
    /// Decoded for analytics.
    Detect,
}

/// Where a stream's session is in its life cycle.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StreamPhase {
    /// Disabled by configuration: no session is attempted.
    Disabled,
    /// Connecting (DESCRIBE/SETUP/PLAY under way).
    Connecting,
    /// Frames are arriving.
    Streaming {
        /// Codec as an RFC 6381 string, e.g. `avc1.4d0028`.
        codec: String,
        /// Picture width in pixels.
        width: u32,
        /// Picture height in pixels.
        height: u32,
        /// Frames per second over the last few seconds.
        fps: f64,
        /// Bits per second over the last few seconds.
        bitrate_bps: f64,
        /// Wall time of the last frame, Unix milliseconds.
        last_frame_unix_ms: u64,
    },
    /// The last attempt failed; another follows.
    Retrying {
        /// The last error, without credentials.
        last_error: String,
        /// When the next attempt starts, Unix milliseconds.
        next_attempt_unix_ms: u64,
    },
    /// The camera rejected the credentials; retries are spaced out.
    AuthFailed {
        /// The camera's answer, without credentials.
        last_error: String,
        /// When the next attempt starts, Unix milliseconds.
        next_attempt_unix_ms: u64,
    },
}

impl StreamPhase {
    /// The phase's name as used in the API and the metrics' `state` label.
    pub fn name(&self) -> &'static str {
        match self {
            StreamPhase::Disabled => "disabled",
            StreamPhase::Connecting => "connecting",
            StreamPhase::Streaming { .. } => "streaming",
            StreamPhase::Retrying { .. } => "retrying",
            StreamPhase::AuthFailed { .. } => "auth_failed",
        }
    }

    /// Every phase name, for metrics that export one series per state.
    pub const NAMES: [&'static str; 5] = ["disabled", "connecting", "streaming", "retrying", "auth_failed"];
}

/// The status of one camera stream.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StreamStatus {
    /// The camera.
    #[schema(value_type = String)]
    pub camera: CameraId,
    /// The stream's name within the camera (e.g. `main`, `sub`).
    pub stream: String,
    /// The roles this stream serves.
    pub roles: Vec<StreamRole>,
    /// The stream's URL without credentials.
    #[serde(serialize_with = "ser_redacted")]
    #[schema(value_type = String)]
    pub url: RedactedUrl,
    /// The current phase.
    #[serde(flatten)]
    pub phase: StreamPhase,
    /// Sessions started after the first one.
    pub reconnects: u64,
    /// Frames received since the process started.
    pub frames: u64,
    /// Frames dropped (by any consumer, any reason) since the process started.
    pub dropped_frames: u64,
}

fn ser_redacted<S: serde::Serializer>(u: &RedactedUrl, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(u.as_str())
}

/// Milliseconds since the Unix epoch for `t` (0 for times before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// The shared table of stream statuses, keyed by camera and stream name.
///
/// Cheap to clone; writers replace a stream's entry, readers take a snapshot.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    inner: Arc<RwLock<BTreeMap<(CameraId, String), StreamStatus>>>,
}

impl StatusBoard {
    /// Sets (inserts or replaces) one stream's status.
    pub fn set(&self, status: StreamStatus) {
        let key = (status.camera.clone(), status.stream.clone());
        self.inner.write().unwrap_or_else(PoisonError::into_inner).insert(key, status);
    }

    /// Applies `f` to one stream's status, if present.
    pub fn update(&self, camera: &CameraId, stream: &str, f: impl FnOnce(&mut StreamStatus)) {
        let mut map = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = map.get_mut(&(camera.clone(), stream.to_owned())) {
            f(s);
        }
    }

    /// Removes every stream of `camera`.
    pub fn remove_camera(&self, camera: &CameraId) {
        self.inner.write().unwrap_or_else(PoisonError::into_inner).retain(|(c, _), _| c != camera);
    }

    /// A copy of every stream's status, ordered by camera and stream.
    pub fn snapshot(&self) -> Vec<StreamStatus> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(cam: &str, stream: &str) -> Result<StreamStatus, crate::IdError> {
        Ok(StreamStatus {
            camera: CameraId::new(cam)?,
            stream: stream.into(),
            roles: vec![StreamRole::Record],
            url: crate::redact(&url::Url::parse("rtsp://u:p@h/x").map_err(|_| crate::IdError::Empty)?),
            phase: StreamPhase::Connecting,
            reconnects: 0,
            frames: 0,
            dropped_frames: 0,
        })
    }

    #[test]
    fn board_sets_updates_and_removes() -> Result<(), crate::IdError> {
        let board = StatusBoard::default();
        board.set(status("b", "main")?);
        board.set(status("a", "sub")?);
        board.set(status("a", "main")?);
        let names: Vec<_> = board.snapshot().iter().map(|s| format!("{}/{}", s.camera, s.stream)).collect();
        assert_eq!(names, ["a/main", "a/sub", "b/main"]);
        board.update(&CameraId::new("a")?, "sub", |s| s.frames = 7);
        assert_eq!(board.snapshot()[1].frames, 7);
        board.remove_camera(&CameraId::new("a")?);
        assert_eq!(board.snapshot().len(), 1);
        Ok(())
    }

    #[test]
    fn serialises_without_credentials() -> Result<(), Box<dyn std::error::Error>> {
        let s = status("a", "main")?;
        let json = format!("{:?}", s.url);
        assert!(!json.contains("u:p"));
        Ok(())
    }
}
