//! The writer against an unreachable and a returning PostgreSQL.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use panoptes_core::CameraId;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::cluster::{ClusterOptions, EmbeddedCluster};
use crate::events::{BBox, EventUpdate, Label, NewEvent};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn config(spool: &std::path::Path) -> WriterConfig {
    let mut c = WriterConfig::new(spool);
    c.write_timeout = Duration::from_secs(3);
    c.batcher.max_delay = Duration::from_millis(20);
    c.batcher.max_batch = 16;
    c.batcher.retry_min = Duration::from_millis(100);
    c.batcher.retry_max = Duration::from_millis(400);
    c
}

fn start(i: usize) -> NewEvent {
    let t = DateTime::<Utc>::from_timestamp(1_764_000_000, 0).unwrap() + TimeDelta::seconds(i as i64);
    let bbox = BBox { x: 0.1, y: 0.1, w: 0.2, h: 0.2 };
    NewEvent::new(
        format!("n1/cam/{i:05}"),
        CameraId::new("cam").unwrap(),
        Label::new("person").unwrap(),
        t,
        0.6,
        bbox,
    )
}

fn update(e: &NewEvent, v: usize) -> EventUpdate {
    EventUpdate {
        idempotency_key: e.idempotency_key.clone(),
        camera: e.camera.clone(),
        end_time: Some(e.start_time + TimeDelta::seconds(5)),
        sub_label: Some(format!("v{v:05}")),
        score_max: 0.9,
        score_median: 0.6,
        bbox: e.bbox,
        path: Vec::new(),
        zones: Vec::new(),
        alert: true,
        snapshot_path: None,
    }
}

async fn wait_for(handle: &WriterHandle, what: &str, f: impl Fn(&WriterStatus) -> bool) {
    let mut rx = handle.watch();
    let ok = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if f(&rx.borrow_and_update()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(ok.is_ok(), "timed out waiting for {what}: {:?}", handle.status());
}

/// Keys in the order the rows were inserted (transaction id, then position in the heap).
async fn keys_in_insert_order(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT idempotency_key FROM events ORDER BY xmin::text::bigint, ctid")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|(k,)| k).collect())
}

#[tokio::test]
async fn an_outage_of_a_real_server_loses_nothing_and_keeps_order() -> TestResult {
    let tmp = tempfile::tempdir()?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))?;
    let options =
        ClusterOptions { dir: tmp.path().join("pg"), bin_dir: None, system_user: "postgres".into() };
    let cluster = EmbeddedCluster::start(&options).await?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(1))
        .connect_with(cluster.connect_options())
        .await?;
    crate::migrate(&pool).await?;

    let cancel = CancellationToken::new();
    let spool_path = tmp.path().join("spool").join("events.spool");
    let (sink, handle) = EventWriter::start(pool.clone(), config(&spool_path), cancel.clone()).await;
    let events: Vec<NewEvent> = (0..150).map(start).collect();
    let mut expected = Vec::new();

    // 1. Up: 50 events straight to the database.
    for e in &events[..50] {
        sink.start(e.clone())?;
        expected.push(e.idempotency_key.clone());
    }
    wait_for(&handle, "50 written", |s| s.stats.written == 50).await;

    // 2. Down: 60 events and 10 updates of one of them go to the spool.
    cluster.stop().await?;
    for e in &events[50..110] {
        sink.start(e.clone())?;
        expected.push(e.idempotency_key.clone());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for v in 0..10 {
        sink.update(update(&events[60], v))?;
    }
    wait_for(&handle, "70 spooled", |s| s.spooling && s.stats.spooled == 70 && s.queued == 0).await;
    assert!(std::fs::metadata(&spool_path)?.len() > 0);

    // 3. Back: the spool is replayed in order, then new events go straight in.
    let cluster = EmbeddedCluster::start(&options).await?;
    wait_for(&handle, "replay", |s| !s.spooling && s.stats.replayed == 70).await;
    for e in &events[110..] {
        sink.start(e.clone())?;
        expected.push(e.idempotency_key.clone());
    }
    cancel.cancel();
    let status = handle.finished().await;
    assert_eq!(status.stats.dropped, 0);
    assert_eq!(status.stats.rejected, 0);
    assert_eq!(std::fs::metadata(&spool_path)?.len(), 0, "spool emptied after replay");

    // The updated event has a newer row version (a later xmin): check it apart.
    let updated = &events[60].idempotency_key;
    let keys = keys_in_insert_order(&pool).await?;
    assert_eq!(keys.len(), 150);
    assert_eq!(keys.iter().filter(|k| *k == updated).count(), 1);
    let keys: Vec<&String> = keys.iter().filter(|k| *k != updated).collect();
    let expected: Vec<&String> = expected.iter().filter(|k| *k != updated).collect();
    assert_eq!(keys, expected, "every event exactly once, in order");
    let (sub,): (Option<String>,) = sqlx::query_as("SELECT sub_label FROM events WHERE idempotency_key = $1")
        .bind(&events[60].idempotency_key)
        .fetch_one(&pool)
        .await?;
    assert_eq!(sub.as_deref(), Some("v00009"), "updates applied in order");
    pool.close().await;
    cluster.stop().await?;
    Ok(())
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn a_closed_port_spools_and_a_later_start_replays_once(pool: PgPool) -> TestResult {
    let tmp = tempfile::tempdir()?;
    let spool_path = tmp.path().join("events.spool");
    // A pool that points at a closed port.
    let closed = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy_with(PgConnectOptions::new().host("127.0.0.1").port(1).username("postgres"));
    let events: Vec<NewEvent> = (0..40).map(start).collect();
    let cancel = CancellationToken::new();
    let (sink, handle) = EventWriter::start(closed, config(&spool_path), cancel.clone()).await;
    for e in &events {
        sink.start(e.clone())?;
    }
    wait_for(&handle, "40 spooled", |s| s.stats.spooled == 40 && s.queued == 0).await;
    cancel.cancel();
    let status = handle.finished().await;
    assert!(status.spooling);
    assert_eq!(status.stats.written, 0);

    // A crash tore the last line of the spool.
    let mut bytes = std::fs::read(&spool_path)?;
    bytes.extend_from_slice(b"1234abcd {\"v\":1,\"r\":{\"t\":\"sta");
    std::fs::write(&spool_path, &bytes)?;

    // Started again with the database reachable: the spool is replayed, the torn line
    // ignored. Started twice (as after a crash in the middle of a replay): no duplicates.
    for _ in 0..2 {
        std::fs::write(&spool_path, &bytes)?;
        let cancel = CancellationToken::new();
        let (_sink, handle) = EventWriter::start(pool.clone(), config(&spool_path), cancel.clone()).await;
        wait_for(&handle, "replay", |s| !s.spooling).await;
        cancel.cancel();
        let status = handle.finished().await;
        assert_eq!(status.stats.replayed, 40);
    }
    let keys = keys_in_insert_order(&pool).await?;
    let expected: Vec<String> = events.iter().map(|e| e.idempotency_key.clone()).collect();
    assert_eq!(keys, expected);
    Ok(())
}

#[tokio::test]
async fn a_full_spool_drops_counts_and_keeps_running() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let closed = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(200))
        .connect_lazy_with(PgConnectOptions::new().host("127.0.0.1").port(1).username("postgres"));
    let mut c = config(&tmp.path().join("events.spool"));
    c.spool_limit_bytes = 2000; // room for a few lines only
    let cancel = CancellationToken::new();
    let (sink, handle) = EventWriter::start(closed, c, cancel.clone()).await;
    for i in 0..30 {
        sink.start(start(i))?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_for(&handle, "all handled", |s| s.stats.spooled + s.stats.dropped == 30 && s.queued == 0).await;
    let s = handle.status();
    assert!(s.stats.dropped > 0 && s.stats.spooled > 0, "{s:?}");
    // Still accepting input.
    sink.start(start(99))?;
    cancel.cancel();
    handle.finished().await;
    Ok(())
}

#[tokio::test]
async fn invalid_input_and_a_full_queue_are_refused_at_the_sink() -> TestResult {
    let closed = PgPoolOptions::new()
        .connect_lazy_with(PgConnectOptions::new().host("127.0.0.1").port(1).username("postgres"));
    let tmp = tempfile::tempdir()?;
    let mut c = config(&tmp.path().join("s"));
    c.channel_capacity = 2;
    // A cancelled token: the task flushes and stops, so nothing drains the channel later.
    let cancel = CancellationToken::new();
    let (sink, handle) = EventWriter::start(closed, c, cancel.clone()).await;
    let mut bad = start(1);
    bad.bbox.x = -1.0;
    assert!(matches!(sink.start(bad), Err(SendError::Invalid(e)) if e.field == "bbox.x"));
    cancel.cancel();
    handle.finished().await;
    // The task is gone: the channel fills and then reports closed.
    let mut results = Vec::new();
    for i in 0..4 {
        results.push(sink.start(start(i)));
    }
    assert!(results.iter().all(|r| matches!(r, Err(SendError::Closed))), "{results:?}");
    Ok(())
}
