//! The seam through which the API reaches live video: it never holds a camera itself, so a
//! node serving HTTP need not be the node that holds the camera (scale-out).

use std::pin::Pin;
use std::sync::Arc;

use futures_core::Stream;

use crate::{CameraId, EncodedFrame};

/// A live viewer's feed: frames since the last key frame (send at once for a fast start),
/// then every new frame. After falling behind, the feed skips to the next key frame.
pub struct LiveFeed {
    /// Frames since the last key frame, starting with it (empty before the first one).
    pub backlog: Vec<Arc<EncodedFrame>>,
    /// New frames; ends when the stream stops.
    pub frames: Pin<Box<dyn Stream<Item = Arc<EncodedFrame>> + Send>>,
}

impl std::fmt::Debug for LiveFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveFeed").field("backlog", &self.backlog.len()).finish_non_exhaustive()
    }
}

/// Where live feeds come from.
pub trait LiveSource: Send + Sync + 'static {
    /// Subscribes to a running stream; `None` if this node does not hold it.
    fn subscribe(&self, camera: &CameraId, stream: &str) -> Option<LiveFeed>;
}

/// Requests to analyse a camera at the full detect rate for a while ("when asked"), on top
/// of what motion and active tracks ask for.
pub trait DetectRequests: Send + Sync + 'static {
    /// Asks for full-rate decoding of `camera` for `duration`; `false` if this node runs no
    /// analytics for it.
    fn request_full_rate(&self, camera: &CameraId, duration: std::time::Duration) -> bool;
}
