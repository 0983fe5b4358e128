//! The `panoptes` binary's library: command line, configuration, and the wiring that connects
//! the camera gateway, storage and the API into one process with one shutdown tree.
//!
//! `anyhow` lives here only; the library crates return typed errors.

pub mod cameras;
pub mod cli;
pub mod config;
pub mod database;
pub mod demo;
pub mod detection;
pub mod serve;
pub mod shutdown;
pub mod telemetry;
