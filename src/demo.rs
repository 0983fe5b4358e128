//! `panoptes demo`: a local GStreamer RTSP server with test clips, and Panoptes watching it.

use std::path::PathBuf;

/// Options of `panoptes demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// HTTP listen address.
    pub listen: String,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// RTSP port of the demo cameras.
    pub rtsp_port: u16,
}

/// Runs the demo until a signal.
pub async fn run(_opts: DemoOptions) -> anyhow::Result<()> {
    anyhow::bail!("the demo needs the test-camera script (coming in this change)")
}
