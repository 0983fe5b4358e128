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

/// A stretch of continuous recording.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Span {
    /// Camera id.
    pub camera_id: String,
    /// First frame.
    pub start_time: DateTime<Utc>,
    /// End of the last segment.
    pub end_time: DateTime<Utc>,
}

/// The closed segments of `cameras`' stream `stream` overlapping `[start, end)`, merged into
/// spans where one segment starts within `max_gap` of the previous one's end (gaps and
/// islands, in SQL: a day of 60 s segments of 64 cameras is a few rows per camera).
pub async fn spans_between(
    pool: &PgPool,
    cameras: &[String],
    stream: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    max_gap: chrono::Duration,
) -> Result<Vec<Span>, sqlx::Error> {
    sqlx::query_as(
        "SELECT camera_id, min(start_time) AS start_time, max(end_time) AS end_time FROM (
             SELECT camera_id, start_time, end_time,
                    count(*) FILTER (WHERE new_span) OVER (PARTITION BY camera_id ORDER BY start_time) AS span
             FROM (
                 SELECT camera_id, start_time, end_time,
                        start_time > COALESCE(max(end_time) OVER (PARTITION BY camera_id ORDER BY start_time
                            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), '-infinity') + $5 AS new_span
                 FROM recording_segments
                 WHERE camera_id = ANY($1) AND stream = $2 AND state = 'closed'
                   AND start_time < $4 AND end_time > $3
             ) s
         ) t
         GROUP BY camera_id, span ORDER BY camera_id, start_time",
    )
    .bind(cameras)
    .bind(stream)
    .bind(start)
    .bind(end)
    .bind(max_gap)
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

#[cfg(test)]
mod span_tests {
    use chrono::TimeDelta;

    use super::*;

    /// Three back-to-back segments, a 10 s hole, one more; another camera; an open segment
    /// (not played back yet) ignored.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn contiguous_segments_merge_into_spans(pool: PgPool) -> Result<(), sqlx::Error> {
        let t0 = DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default();
        let add = |camera: &'static str, start: i64, end: i64, state: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query(
                    "INSERT INTO recording_segments (camera_id, stream, start_time, end_time, duration_90k, path,
                         bytes, sha256, codec, state)
                     VALUES ($1, 'main', $2, $3, 1, $4, 1, 'x', 'h264', $5)",
                )
                .bind(camera)
                .bind(t0 + TimeDelta::seconds(start))
                .bind(t0 + TimeDelta::seconds(end))
                .bind(format!("{camera}/{start}.mp4"))
                .bind(state)
                .execute(&pool)
                .await
            }
        };
        for (s, e) in [(0, 60), (60, 120), (121, 180), (190, 250)] {
            add("a", s, e, "closed").await?;
        }
        add("b", 30, 90, "closed").await?;
        add("b", 90, 150, "open").await?;
        let spans = spans_between(
            &pool,
            &["a".into(), "b".into()],
            "main",
            t0,
            t0 + TimeDelta::hours(1),
            chrono::Duration::seconds(2),
        )
        .await?;
        let got: Vec<(&str, i64, i64)> = spans
            .iter()
            .map(|s| {
                (s.camera_id.as_str(), (s.start_time - t0).num_seconds(), (s.end_time - t0).num_seconds())
            })
            .collect();
        assert_eq!(got, [("a", 0, 180), ("a", 190, 250), ("b", 30, 90)]);
        Ok(())
    }
}
