//! Model manifest of Panoptes: which ONNX models exist, where their files are, how to feed
//! them and how to read their outputs.
//!
//! [`Manifest::builtin`] parses `models/manifest.toml` (compiled in; the single source of
//! truth shared with `scripts/models-fetch.py`); [`Manifest::with_user_file`] adds a user's
//! own models ("bring your own model") written in the same schema. [`ModelCache`] finds the
//! files in `$PANOPTES_CACHE/models` (else `${XDG_CACHE_HOME:-~/.cache}/panoptes/models`) and
//! [`ModelCache::verify`] checks their sha256.
//!
//! This crate reads files only when asked to load a user manifest or verify a model file; it
//! never downloads or converts anything (that is `scripts/models-fetch.py`'s job) and knows
//! nothing of ONNX Runtime.

mod cache;
mod manifest;

pub use cache::{ModelCache, Verification, VerifyError};
pub use manifest::{
    Colour, DecoderSpec, InputSpec, Layout, Manifest, ManifestError, Model, ModelOrigin, NanodetLevel,
    OutputSpec, Resize, Role, SourceSpec, VerifyMode,
};
