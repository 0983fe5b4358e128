//! Connecting to PostgreSQL: a pool, with retries at start that name the server.

use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Why no pool could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Every attempt failed until the deadline.
    #[error("PostgreSQL at {target} unreachable after {attempts} attempts over {waited:?}: {last_error}")]
    Unreachable {
        /// Host and port (or socket) and database, without password.
        target: String,
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        waited: Duration,
        /// The last attempt's error.
        last_error: String,
    },
    /// Shutdown was requested while connecting.
    #[error("shutdown requested while connecting to PostgreSQL at {0}")]
    Cancelled(String),
}

/// Describes where `options` points, without the password: `host:port/database` or
/// `socket-dir/database`.
pub fn describe(options: &PgConnectOptions) -> String {
    let db = options.get_database().unwrap_or("(default)");
    match options.get_socket() {
        Some(dir) => format!("socket {}/.s.PGSQL.{} database {db}", dir.display(), options.get_port()),
        None => format!("{}:{} database {db}", options.get_host(), options.get_port()),
    }
}

/// Connects with a pool of `max_connections`, retrying with backoff (0.25 s doubling to 5 s)
/// until `deadline` has passed. Each failure is logged with the server it tried.
pub async fn connect(
    options: PgConnectOptions,
    max_connections: u32,
    deadline: Duration,
    cancel: &CancellationToken,
) -> Result<PgPool, ConnectError> {
    let target = describe(&options);
    let start = Instant::now();
    let mut delay = Duration::from_millis(250);
    let mut attempts = 0;
    loop {
        attempts += 1;
        // One plain connection first: its error says what is wrong (refused, unknown host,
        // bad password), where the pool would only report a timeout.
        let result = match options.connect().await {
            Ok(conn) => {
                let _ = conn.close().await;
                PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options.clone())
                    .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(pool) => {
                info!(server = %target, attempts, "connected to PostgreSQL");
                return Ok(pool);
            }
            Err(e) => {
                let waited = start.elapsed();
                if waited + delay > deadline {
                    return Err(ConnectError::Unreachable {
                        target,
                        attempts,
                        waited,
                        last_error: e.to_string(),
                    });
                }
                warn!(server = %target, error = %e, retry_in = ?delay, "PostgreSQL not reachable yet");
                tokio::select! {
                    _ = cancel.cancelled() => return Err(ConnectError::Cancelled(target)),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Whether the database answers a trivial query within `limit`.
pub async fn ping(pool: &PgPool, limit: Duration) -> Result<(), String> {
    match tokio::time::timeout(limit, sqlx::query("SELECT 1").execute(pool)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_server_is_named_with_the_real_error() {
        // Port 1 on loopback: nothing listens there.
        let Ok(options) = "postgres://panoptes@127.0.0.1:1/panoptes".parse::<PgConnectOptions>() else {
            panic!("bad test URL")
        };
        let cancel = CancellationToken::new();
        let err = connect(options, 2, Duration::from_millis(800), &cancel).await.err();
        let Some(ConnectError::Unreachable { target, attempts, last_error, .. }) = err else {
            panic!("expected Unreachable, got {err:?}")
        };
        assert_eq!(target, "127.0.0.1:1 database panoptes");
        assert!(attempts >= 2, "retried: {attempts}");
        assert!(last_error.contains("refused"), "{last_error}");
    }

    #[tokio::test]
    async fn shutdown_interrupts_the_retries() {
        let Ok(options) = "postgres://panoptes@127.0.0.1:1/panoptes".parse::<PgConnectOptions>() else {
            panic!("bad test URL")
        };
        let cancel = CancellationToken::new();
        cancel.cancel();
        let err = connect(options, 2, Duration::from_secs(60), &cancel).await.err();
        assert!(matches!(err, Some(ConnectError::Cancelled(_))), "{err:?}");
    }
}
