//! The recording index in PostgreSQL: the async task that writes what the writers report,
//! and the queries on `recording_segments`.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What a writer reports, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexMessage {
    /// A segment file was created (row state `open`).
    Opened {
        /// Camera id.
        camera: String,
        /// Stream name.
        stream: String,
        /// Wall-clock start.
        start: SystemTime,
        /// Path relative to the data directory.
        path: String,
        /// `h264` / `h265`.
        codec: &'static str,
        /// Picture size.
        width: u16,
        /// Picture size.
        height: u16,
    },
    /// A segment was completed.
    Closed {
        /// Path relative to the data directory.
        path: String,
        /// Wall-clock end.
        end: SystemTime,
        /// Media duration, 90 kHz.
        duration_90k: i64,
        /// Frames.
        frames: i64,
        /// File size.
        bytes: i64,
        /// sha256 of the file, hex.
        sha256: String,
        /// Why it was closed.
        reason: &'static str,
    },
    /// Nothing was recorded in a range.
    Gap {
        /// Camera id.
        camera: String,
        /// Stream name.
        stream: String,
        /// Start of the gap.
        start: SystemTime,
        /// End of the gap.
        end: SystemTime,
        /// Why.
        reason: &'static str,
    },
}

fn ts(t: SystemTime) -> DateTime<Utc> {
    t.into()
}

/// Applies one message.
pub async fn apply(pool: &PgPool, node: Option<&str>, msg: &IndexMessage) -> Result<(), sqlx::Error> {
    match msg {
        IndexMessage::Opened { camera, stream, start, path, codec, width, height } => {
            sqlx::query(
                "INSERT INTO recording_segments (node_id, camera_id, stream, start_time, path, codec, width, height, state)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open')
                 ON CONFLICT (path) DO NOTHING",
            )
            .bind(node)
            .bind(camera)
            .bind(stream)
            .bind(ts(*start))
            .bind(path)
            .bind(codec)
            .bind(i32::from(*width))
            .bind(i32::from(*height))
            .execute(pool)
            .await?;
        }
        IndexMessage::Closed { path, end, duration_90k, frames, bytes, sha256, reason } => {
            sqlx::query(
                "UPDATE recording_segments SET state = 'closed', end_time = GREATEST($2, start_time),
                        duration_90k = $3, frames = $4, bytes = $5, sha256 = $6, close_reason = $7
                 WHERE path = $1 AND state = 'open'",
            )
            .bind(path)
            .bind(ts(*end))
            .bind(duration_90k)
            .bind(frames)
            .bind(bytes)
            .bind(sha256)
            .bind(reason)
            .execute(pool)
            .await?;
        }
        IndexMessage::Gap { camera, stream, start, end, reason } => {
            sqlx::query(
                "INSERT INTO recording_gaps (node_id, camera_id, stream, start_time, end_time, reason)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(node)
            .bind(camera)
            .bind(stream)
            .bind(ts(*start))
            .bind(ts(*end))
            .bind(reason)
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

/// Writes index messages in order until every sender is gone. A failed write is retried
/// with backoff (0.5 s doubling to 10 s); once `cancel` fires, a message that still fails
/// is left for [`super::recover`] at the next start (its row stays `open` or missing).
pub async fn run_index(
    pool: PgPool,
    node: Option<String>,
    mut rx: mpsc::Receiver<IndexMessage>,
    cancel: CancellationToken,
) {
    while let Some(msg) = rx.recv().await {
        let mut delay = Duration::from_millis(500);
        loop {
            match apply(&pool, node.as_deref(), &msg).await {
                Ok(()) => break,
                Err(e) if cancel.is_cancelled() => {
                    warn!(error = %e, ?msg, "recording index write failed at shutdown; recovery will redo it");
                    break;
                }
                Err(e) => {
                    warn!(error = %e, retry_in = ?delay, "recording index write failed");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cancel.cancelled() => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
    info!("recording index writer finished");
}

/// A closed segment as the index has it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SegmentRow {
    /// Row id.
    pub id: i64,
    /// Camera id.
    pub camera_id: String,
    /// Stream name.
    pub stream: String,
    /// Wall-clock start.
    pub start_time: DateTime<Utc>,
    /// Wall-clock end.
    pub end_time: Option<DateTime<Utc>>,
    /// Media duration, 90 kHz.
    pub duration_90k: Option<i64>,
    /// Path relative to the data directory.
    pub path: String,
    /// File size.
    pub bytes: Option<i64>,
    /// sha256, hex.
    pub sha256: Option<String>,
    /// `h264`/`h265`.
    pub codec: String,
    /// `open`, `closed`, `deleting`.
    pub state: String,
}

const COLUMNS: &str =
    "id, camera_id, stream, start_time, end_time, duration_90k, path, bytes, sha256, codec, state";

/// Closed segments of a camera stream overlapping `[start, end)`, in time order.
pub async fn segments_between(
    pool: &PgPool,
    camera: &str,
    stream: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<SegmentRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM recording_segments
         WHERE camera_id = $1 AND stream = $2 AND state = 'closed' AND start_time < $4 AND end_time > $3
         ORDER BY start_time"
    ))
    .bind(camera)
    .bind(stream)
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await
}

/// Every segment row in a given state (`open`, `deleting`), oldest first, at most `limit`.
pub async fn segments_in_state(
    pool: &PgPool,
    state: &str,
    limit: i64,
) -> Result<Vec<SegmentRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM recording_segments WHERE state = $1 ORDER BY start_time LIMIT $2"
    ))
    .bind(state)
    .bind(limit)
    .fetch_all(pool)
    .await
}
