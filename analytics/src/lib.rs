//! Detection pipeline of Panoptes: from decoded frames to track events.
//!
//! - [`preprocess`]: letterbox/resize a frame straight into a model's input tensor, and map
//!   boxes back ([`Letterbox`]).
//! - [`decode`]: output decoders per family (CenterFace, NanoDet, CenterNet, YOLOv5,
//!   YOLOv8/v11) as pure functions on ndarray views, and per-class [`nms`].
//! - [`detector`]: the [`Detector`] trait and its ONNX Runtime backend ([`OrtDetector`]),
//!   with the execution provider chosen by configuration and a logged CPU fallback.
//! - [`motion`]: the motion gate (when to run the detector, when to ask for full-rate decode).
//! - [`tracker`]: one object = one track = one event.
//! - [`zones`]: zones (polygons) and counting lines.
//! - [`pipeline`]: the per-camera task tying these together.
//!
//! Everything but the ort backend and the pipeline task is plain data in, data out (time is
//! passed in). This crate must not open sockets or the database, nor decode video: frames
//! come in through a latest-frame slot and events leave through a channel of plain values.
//! It reads model files only through [`OrtDetector::load`].

pub mod batch;
pub mod decode;
pub mod detector;
pub mod frame;
pub mod geometry;
pub mod motion;
pub mod nms;
pub mod pipeline;
pub mod preprocess;
pub mod tracker;
pub mod zones;

pub use decode::Detection;
pub use detector::{Detector, DetectorConfig, DetectorError, ExecutionProviderKind, OrtDetector};
pub use frame::{Frame, FrameRef};
pub use geometry::{BBox, Point};
pub use motion::{DecodeRate, MotionConfig, MotionGate};
pub use pipeline::{
    CameraAnalytics, CameraAnalyticsConfig, PipelineEvent, PipelineIo, PipelineStats, SharedDetector,
    run_camera,
};
pub use preprocess::Letterbox;
pub use tracker::{TrackEvent, TrackSummary, Tracker, TrackerConfig};
pub use zones::{Direction, LineCounts, Zones};
