//! Retention: per camera a byte quota and a day limit (whichever comes first), a global
//! free-disk floor, and protection of what unreviewed alerts and legal holds need.
//!
//! [`planner`] decides (pure, unit-tested); [`run_once`] gathers its input from PostgreSQL
//! and `statvfs`, and deletes so that files and index stay in step across a crash: the
//! row is marked `deleting`, the file unlinked, then the row deleted; [`finish_deletions`]
//! completes whatever a crash interrupted. Only the disk floor may delete a protected
//! segment, and it logs each such deletion at error level.

pub mod planner;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use planner::{
    CameraLimits, Deletion, DeletionReason, DiskSpace, Plan, PlanSegment, Protection, ProtectionKind,
};

use crate::recorder::RecorderError;

/// Retention settings.
#[derive(Debug, Clone, Default)]
pub struct RetentionPolicy {
    /// Limits per camera id.
    pub cameras: HashMap<String, CameraLimits>,
    /// Limits of cameras not listed.
    pub default: CameraLimits,
    /// Bytes that must stay free on the recordings' file system.
    pub free_floor: u64,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments deleted.
    pub deleted: usize,
    /// Bytes freed.
    pub bytes: u64,
    /// Of which protected segments deleted to keep the disk floor.
    pub overrode_protection: usize,
    /// The plan's leftovers (cameras over quota because of protection, floor shortfall).
    pub plan: Plan,
}

/// Free bytes (for unprivileged users) on the file system holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    #[allow(clippy::useless_conversion)] // c_ulong widths differ by target
    let free = u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size()));
    Ok(free)
}

/// The most segments and protections one pass reads.
const MAX_ROWS: i64 = 1_000_000;

type SegmentTuple = (i64, String, DateTime<Utc>, DateTime<Utc>, i64);

/// Closed segments, for the planner.
pub async fn load_segments(pool: &PgPool) -> Result<Vec<PlanSegment>, sqlx::Error> {
    let rows: Vec<SegmentTuple> = sqlx::query_as(
        "SELECT id, camera_id, start_time, end_time, bytes FROM recording_segments
         WHERE state = 'closed' ORDER BY start_time LIMIT $1",
    )
    .bind(MAX_ROWS)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, camera, start, end, bytes)| PlanSegment {
            id,
            camera,
            start,
            end,
            bytes: bytes.max(0) as u64,
        })
        .collect())
}

/// Active legal holds and unreviewed alerts (`events.review_state = 'new' AND alert`, if the events
/// table exists yet).
pub async fn load_protections(pool: &PgPool) -> Result<Vec<Protection>, sqlx::Error> {
    let mut out = Vec::new();
    let holds: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT camera_id, start_time, end_time FROM legal_holds WHERE released_at IS NULL LIMIT $1",
    )
    .bind(MAX_ROWS)
    .fetch_all(pool)
    .await?;
    out.extend(holds.into_iter().map(|(camera, start, end)| Protection {
        camera,
        start,
        end,
        kind: ProtectionKind::LegalHold,
    }));
    let (has_events,): (bool,) =
        sqlx::query_as("SELECT to_regclass('events') IS NOT NULL").fetch_one(pool).await?;
    if has_events {
        let alerts: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT camera_id::text, start_time, COALESCE(end_time, now()) FROM events
             WHERE review_state = 'new' AND alert LIMIT $1",
        )
        .bind(MAX_ROWS)
        .fetch_all(pool)
        .await?;
        out.extend(alerts.into_iter().map(|(camera, start, end)| Protection {
            camera,
            start,
            end,
            kind: ProtectionKind::UnreviewedAlert,
        }));
    }
    Ok(out)
}

async fn unlink_all(paths: Vec<PathBuf>) -> Result<(), RecorderError> {
    tokio::task::spawn_blocking(move || {
        for p in paths {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(RecorderError::Io { what: "deleting", path: p, source }),
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| RecorderError::Join(e.to_string()))?
}

/// Deletes segment rows and files in step: mark `deleting`, unlink, delete the row.
/// Returns the rows actually deleted (a row no longer `closed` is skipped).
pub async fn delete_segments(
    pool: &PgPool,
    data_dir: &Path,
    ids: &[i64],
) -> Result<Vec<(i64, String)>, RecorderError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marked: Vec<(i64, String)> = sqlx::query_as(
        "UPDATE recording_segments SET state = 'deleting' WHERE id = ANY($1) AND state = 'closed' RETURNING id, path",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    unlink_all(marked.iter().map(|(_, p)| data_dir.join(p)).collect()).await?;
    let done: Vec<i64> = marked.iter().map(|(id, _)| *id).collect();
    sqlx::query("DELETE FROM recording_segments WHERE id = ANY($1)").bind(&done).execute(pool).await?;
    Ok(marked)
}

/// Finishes deletions a crash interrupted (rows still `deleting`). Returns how many.
pub async fn finish_deletions(pool: &PgPool, data_dir: &Path) -> Result<usize, RecorderError> {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, path FROM recording_segments WHERE state = 'deleting'")
            .fetch_all(pool)
            .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    unlink_all(rows.iter().map(|(_, p)| data_dir.join(p)).collect()).await?;
    let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
    sqlx::query("DELETE FROM recording_segments WHERE id = ANY($1)").bind(&ids).execute(pool).await?;
    warn!(count = rows.len(), "finished segment deletions interrupted by a crash");
    Ok(rows.len())
}

/// One retention pass at `now`.
pub async fn run_once(
    pool: &PgPool,
    data_dir: &Path,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> Result<RetentionReport, RecorderError> {
    let segments = load_segments(pool).await?;
    let protections = load_protections(pool).await?;
    let free = free_bytes(data_dir).map_err(crate::recorder::io_err("statvfs", data_dir))?;
    let mut limits = policy.cameras.clone();
    for s in &segments {
        limits.entry(s.camera.clone()).or_insert(policy.default);
    }
    let plan =
        planner::plan(&segments, &protections, &limits, now, DiskSpace { free, floor: policy.free_floor });
    let ids: Vec<i64> = plan.deletions.iter().map(|d| d.id).collect();
    let deleted = delete_segments(pool, data_dir, &ids).await?;
    let paths: HashMap<i64, &str> = deleted.iter().map(|(id, p)| (*id, p.as_str())).collect();
    let mut report = RetentionReport::default();
    for d in &plan.deletions {
        let Some(path) = paths.get(&d.id) else {
            continue;
        };
        report.deleted += 1;
        report.bytes += d.bytes;
        if let Some(kind) = d.overrode {
            report.overrode_protection += 1;
            error!(camera = %d.camera, path, bytes = d.bytes, protection = ?kind, free, floor = policy.free_floor,
                   "DISK FLOOR: deleted a protected recording to keep free space");
        }
    }
    for (camera, over) in &plan.over_quota_protected {
        warn!(camera, over_bytes = over, "camera over its quota: the rest is held by alerts or legal holds");
    }
    if plan.floor_shortfall > 0 {
        error!(
            shortfall = plan.floor_shortfall,
            "disk under its free-space floor with no recording left to delete"
        );
    }
    if report.deleted > 0 {
        info!(deleted = report.deleted, bytes = report.bytes, "retention pass");
    }
    report.plan = plan;
    Ok(report)
}

/// Runs a pass every `interval` until cancelled.
pub async fn run(
    pool: PgPool,
    data_dir: PathBuf,
    policy: RetentionPolicy,
    interval: Duration,
    cancel: CancellationToken,
) {
    loop {
        if let Err(e) = run_once(&pool, &data_dir, &policy, Utc::now()).await {
            warn!(error = %e, "retention pass failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod db_tests {
    use chrono::TimeDelta;
    use panoptes_core::CameraId;

    use super::*;
    use crate::events::store::{self, StoreResult};
    use crate::events::{BBox, Label, NewEvent, Record};

    /// Only unreviewed alerts hold recordings: an event its camera's alert rules did not
    /// accept (outside the required zones) and a reviewed alert do not.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn only_unreviewed_alerts_protect(pool: PgPool) -> Result<(), Box<dyn std::error::Error>> {
        // Whole seconds: PostgreSQL keeps microseconds.
        let t0 = DateTime::from_timestamp(Utc::now().timestamp() - 3600, 0).unwrap();
        let bbox = BBox { x: 0.1, y: 0.1, w: 0.2, h: 0.2 };
        let make = |i: i64, alert: bool| {
            let mut e = NewEvent::new(
                format!("n/cam/{i}"),
                CameraId::new("cam").unwrap(),
                Label::new("car").unwrap(),
                t0 + TimeDelta::minutes(i),
                0.8,
                bbox,
            );
            e.alert = alert;
            e
        };
        let (alert, quiet, reviewed) = (make(0, true), make(1, false), make(2, true));
        let records = [&alert, &quiet, &reviewed].map(|e| Record::Start(e.clone())).to_vec();
        assert!(matches!(store::write(&pool, &records).await, StoreResult::Stored { rejected: 0 }));
        sqlx::query("UPDATE events SET review_state = 'acknowledged', reviewed_at = now() WHERE id = $1")
            .bind(reviewed.id)
            .execute(&pool)
            .await?;
        let held: Vec<DateTime<Utc>> = load_protections(&pool)
            .await?
            .into_iter()
            .filter(|p| p.kind == ProtectionKind::UnreviewedAlert)
            .map(|p| p.start)
            .collect();
        assert_eq!(held, [alert.start_time]);
        Ok(())
    }
}
