//! The SQL that stores a batch of records, in one transaction:
//!
//! 1. cameras named by the batch are created if missing (so an event never fails on the
//!    cameras foreign key when the configuration sync has not run yet);
//! 2. track starts: one multi-row `INSERT … ON CONFLICT (idempotency_key) DO NOTHING`;
//!    each row actually inserted is announced with `NOTIFY panoptes_events`;
//! 3. track updates: one `UPDATE … FROM (VALUES …)`, keyed by idempotency key, that only
//!    touches rows whose values change (a replay neither rewrites nor re-announces);
//! 4. line counts: one upsert keeping the larger total.
//!
//! When the batch fails for a reason other than connectivity (a constraint), each record
//! is retried alone and the ones the database refuses are dropped and counted.

use std::collections::HashMap;

use sqlx::{PgPool, Postgres, QueryBuilder};
use tracing::warn;

use super::{EventUpdate, LineCount, NewEvent, Record};

/// The notification channel for new and changed events.
pub const CHANNEL: &str = "panoptes_events";

/// How a write ended.
#[derive(Debug)]
pub enum StoreResult {
    /// Stored; `rejected` records were refused and dropped.
    Stored {
        /// Records refused by the database.
        rejected: usize,
    },
    /// The database could not be reached (or refused service for now): retry later.
    Unavailable(sqlx::Error),
}

/// Whether an error means "try again later" rather than "this data is bad".
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 08: connection exception; 53: insufficient resources; 57P0x: shutdown,
            // crash, cannot connect now; 40001/40P01: serialization failure, deadlock;
            // 25006: read-only transaction (a standby during failover).
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P0")
                || code == "40001"
                || code == "40P01"
                || code == "25006"
        }
        _ => false,
    }
}

/// Writes `records` in one transaction; on a data error, one by one.
pub async fn write(pool: &PgPool, records: &[Record]) -> StoreResult {
    match write_tx(pool, records).await {
        Ok(()) => StoreResult::Stored { rejected: 0 },
        Err(e) if is_unavailable(&e) => StoreResult::Unavailable(e),
        Err(e) if records.len() == 1 => {
            warn!(error = %e, camera = %records[0].camera(), "event record refused by the database; dropped");
            metrics::counter!("panoptes_events_dropped_total", "camera" => records[0].camera().to_string(), "reason" => "rejected").increment(1);
            StoreResult::Stored { rejected: 1 }
        }
        Err(e) => {
            warn!(error = %e, records = records.len(), "event batch refused; retrying record by record");
            let mut rejected = 0;
            for r in records {
                match write_tx(pool, std::slice::from_ref(r)).await {
                    Ok(()) => {}
                    Err(e) if is_unavailable(&e) => return StoreResult::Unavailable(e),
                    Err(e) => {
                        warn!(error = %e, camera = %r.camera(), "event record refused by the database; dropped");
                        metrics::counter!("panoptes_events_dropped_total", "camera" => r.camera().to_string(), "reason" => "rejected").increment(1);
                        rejected += 1;
                    }
                }
            }
            StoreResult::Stored { rejected }
        }
    }
}

async fn write_tx(pool: &PgPool, records: &[Record]) -> Result<(), sqlx::Error> {
    let mut starts: Vec<&NewEvent> = Vec::new();
    // Updates and counts coalesced by key, keeping the order of first appearance.
    let mut updates: Vec<&EventUpdate> = Vec::new();
    let mut update_at: HashMap<&str, usize> = HashMap::new();
    let mut counts: Vec<&LineCount> = Vec::new();
    let mut count_at: HashMap<(&str, &str, &str, &str, i64), usize> = HashMap::new();
    let mut cameras: Vec<&str> = Vec::new();
    for r in records {
        let cam = r.camera().as_str();
        if !cameras.contains(&cam) {
            cameras.push(cam);
        }
        match r {
            Record::Start(e) => starts.push(e),
            Record::Update(u) => match update_at.get(u.idempotency_key.as_str()) {
                Some(&i) => updates[i] = u,
                None => {
                    update_at.insert(&u.idempotency_key, updates.len());
                    updates.push(u);
                }
            },
            Record::LineCount(c) => {
                let key = (
                    c.camera.as_str(),
                    c.line_id.as_str(),
                    c.label.as_str(),
                    c.direction.as_str(),
                    c.bucket_start.timestamp(),
                );
                match count_at.get(&key) {
                    Some(&i) => {
                        if c.total > counts[i].total {
                            counts[i] = c;
                        }
                    }
                    None => {
                        count_at.insert(key, counts.len());
                        counts.push(c);
                    }
                }
            }
        }
    }

    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO cameras (id, name) SELECT c, c FROM unnest($1::text[]) AS c ON CONFLICT (id) DO NOTHING",
    )
    .bind(&cameras)
    .execute(&mut *tx)
    .await?;

    if !starts.is_empty() {
        let mut q = QueryBuilder::<Postgres>::new(
            "WITH ins AS (INSERT INTO events (id, idempotency_key, camera_id, node_id, label, sub_label, \
             score_max, score_median, bbox, bbox_path, zones, alert, start_time, snapshot_path) ",
        );
        q.push_values(&starts, |mut b, e| {
            b.push_bind(e.id)
                .push_bind(&e.idempotency_key)
                .push_bind(e.camera.as_str())
                .push_bind(e.node.as_ref().map(|n| n.as_str()))
                .push_bind(e.label.as_str())
                .push_bind(e.sub_label.as_deref())
                .push_bind(e.score_max)
                .push_bind(e.score_median)
                .push_bind(e.bbox.to_vec())
                .push_bind(e.path_json())
                .push_bind(&e.zones)
                .push_bind(e.alert)
                .push_bind(e.start_time)
                .push_bind(e.snapshot_path.as_deref());
        });
        q.push(
            " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, camera_id, label, review_state, alert) \
             SELECT count(pg_notify('panoptes_events', json_build_object('id', id, 'camera', camera_id, \
             'label', label, 'state', review_state, 'alert', alert, 'kind', 'start')::text)) FROM ins",
        );
        q.build().execute(&mut *tx).await?;
    }

    if !updates.is_empty() {
        let mut q = QueryBuilder::<Postgres>::new(
            "WITH upd AS (UPDATE events e SET end_time = v.end_time, sub_label = v.sub_label, \
             score_max = v.score_max, score_median = v.score_median, bbox = v.bbox, bbox_path = v.bbox_path, \
             zones = v.zones, alert = v.alert, snapshot_path = v.snapshot_path, updated_at = now() FROM (",
        );
        q.push_values(&updates, |mut b, u| {
            b.push_bind(&u.idempotency_key)
                .push_bind(u.end_time)
                .push_bind(u.sub_label.as_deref())
                .push_bind(u.score_max)
                .push_bind(u.score_median)
                .push_bind(u.bbox.to_vec())
                .push_bind(u.path_json())
                .push_bind(&u.zones)
                .push_bind(u.alert)
                .push_bind(u.snapshot_path.as_deref());
        });
        q.push(
            ") AS v (key, end_time, sub_label, score_max, score_median, bbox, bbox_path, zones, alert, \
             snapshot_path) \
             WHERE e.idempotency_key = v.key AND (e.end_time, e.sub_label, e.score_max, e.score_median, e.bbox, \
             e.bbox_path, e.zones, e.alert, e.snapshot_path) IS DISTINCT FROM (v.end_time, v.sub_label, \
             v.score_max, v.score_median, v.bbox, v.bbox_path, v.zones, v.alert, v.snapshot_path) \
             RETURNING e.id, e.camera_id, e.label, e.review_state, e.alert, e.end_time) \
             SELECT count(pg_notify('panoptes_events', json_build_object('id', id, 'camera', camera_id, \
             'label', label, 'state', review_state, 'alert', alert, \
             'kind', CASE WHEN end_time IS NULL THEN 'update' ELSE 'end' END)::text)) FROM upd",
        );
        q.build().execute(&mut *tx).await?;
    }

    if !counts.is_empty() {
        let mut q = QueryBuilder::<Postgres>::new(
            "INSERT INTO line_counts (camera_id, line_id, label, direction, bucket_start, count, node_id) ",
        );
        q.push_values(&counts, |mut b, c| {
            b.push_bind(c.camera.as_str())
                .push_bind(&c.line_id)
                .push_bind(c.label.as_str())
                .push_bind(c.direction.as_str())
                .push_bind(c.bucket_start)
                .push_bind(i64::try_from(c.total).unwrap_or(i64::MAX))
                .push_bind(c.node.as_ref().map(|n| n.as_str()));
        });
        q.push(
            " ON CONFLICT (camera_id, line_id, label, direction, bucket_start) DO UPDATE \
             SET count = GREATEST(line_counts.count, EXCLUDED.count), node_id = EXCLUDED.node_id, updated_at = now() \
             WHERE EXCLUDED.count > line_counts.count",
        );
        q.build().execute(&mut *tx).await?;
    }
    tx.commit().await
}
