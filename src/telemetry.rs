//! Logging: `tracing` with a `RUST_LOG`-style filter, as text or JSON lines on stderr.

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use crate::config::{LogConfig, LogFormat};

/// Keeps logging set up; dropping it changes nothing today (logs are unbuffered).
#[derive(Debug)]
pub struct Guard(());

/// Installs the global subscriber. `RUST_LOG` overrides the configured filter.
pub fn init(cfg: &LogConfig) -> anyhow::Result<Guard> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => EnvFilter::try_new(&f).with_context(|| format!("RUST_LOG={f:?}"))?,
        _ => EnvFilter::try_new(&cfg.filter).with_context(|| format!("log.filter = {:?}", cfg.filter))?,
    };
    let registry = tracing_subscriber::registry().with(filter);
    let ansi = std::io::stderr().is_terminal();
    let result = match cfg.format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(std::io::stderr))
            .try_init(),
    };
    result.context("installing the log subscriber")?;
    Ok(Guard(()))
}
