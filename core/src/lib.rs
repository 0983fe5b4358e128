//! Shared vocabulary of Panoptes.
//!
//! Typed ids ([`CameraId`], [`NodeId`]), the camera/stream status model that the gateway
//! publishes and the API reads ([`StreamStatus`], [`StatusBoard`]), and URL redaction so that
//! camera credentials never reach a log line or an API response.
//!
//! This crate does no I/O and depends on no other Panoptes crate: every other crate may use it.

pub mod frame;
pub mod ids;
pub mod live;
pub mod status;
pub mod url;

pub use frame::{EncodedFrame, Pts90k, VideoCodec};
pub use ids::{CameraId, IdError, NodeId};
pub use live::{DetectRequests, LiveFeed, LiveSource};
pub use status::{StatusBoard, StreamPhase, StreamRole, StreamStatus};
pub use url::{RedactedUrl, redact};
