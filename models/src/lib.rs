//! Model manifest of Panoptes (planned; see issue "Models and analytics").
//!
//! Will describe each ONNX model: file, sha256, source registry package, licence, input
//! layout and the output decoder family. Large `.onnx` files are fetched into the cache by
//! setup, never committed.
