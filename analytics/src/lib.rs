//! Detection pipeline of Panoptes (planned; see issue "Models and analytics").
//!
//! Will hold pre/post-processing as pure functions, the `Detector` trait and its ONNX
//! Runtime backend, NMS, the tracker, zones and counting lines, and the motion gate.
//! It must not open sockets, files or the database: frames come in through a latest-frame
//! slot and events leave through a channel of plain values.
