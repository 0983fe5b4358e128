//! Frames as analytics sees them: packed RGB24, any size. The type is shared with the
//! decoder (in `panoptes-core`), so frames reach analytics without a copy.

pub use panoptes_core::frame::{FrameRef, RgbFrame as Frame};
