//! Signals: the first SIGINT/SIGTERM starts a graceful shutdown, the second exits at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Returns the root token, cancelled on the first SIGINT or SIGTERM. A second signal ends
/// the process immediately with status 130.
pub fn on_signals() -> CancellationToken {
    let root = CancellationToken::new();
    let token = root.clone();
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
        else {
            error!("cannot install signal handlers; stop the process with SIGKILL");
            return;
        };
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        info!(signal = name, "shutting down (send the signal again to exit at once)");
        token.cancel();
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        error!("second signal: exiting immediately");
        std::process::exit(130);
    });
    root
}
