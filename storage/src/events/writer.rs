//! The event writer task: drives the [`Batcher`] with a pool, a spool file and a clock.
//!
//! Producers hold an [`EventSink`] (cheap to clone). Sending never waits: the input
//! channel is bounded, and a record that finds it full is dropped and counted
//! (`panoptes_events_dropped_total{camera, reason="queue_full"}`). The task writes batches
//! to PostgreSQL; when the database is unreachable it appends to the spool file (fsynced,
//! on a blocking thread) and replays it in order when the database answers again. When
//! even the spool fails (disk full), records are dropped, counted
//! (`reason="spool_failed"`) and logged as an error that says so, and the task keeps
//! running.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use super::batcher::{Action, Batcher, BatcherConfig, ReplayOutcome, Stats, WriteOutcome};
use super::spool::{Spool, SpoolError};
use super::store::{self, StoreResult};
use super::{EventError, EventUpdate, LineCount, NewEvent, Record};

/// Configuration of the writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The spool file, e.g. `<data_dir>/spool/events.spool`.
    pub spool_path: PathBuf,
    /// Largest spool file in bytes; beyond it records are dropped (and counted).
    pub spool_limit_bytes: u64,
    /// Capacity of the input channel.
    pub channel_capacity: usize,
    /// Longest a single database write may take before it counts as unavailable.
    pub write_timeout: Duration,
    /// Longest the shutdown flush waits for the database before spooling the rest.
    pub shutdown_flush: Duration,
    /// Batching and retry tuning.
    pub batcher: BatcherConfig,
}

impl WriterConfig {
    /// Defaults with the given spool path: 1 GiB spool, 4096-record channel.
    pub fn new(spool_path: impl Into<PathBuf>) -> Self {
        WriterConfig {
            spool_path: spool_path.into(),
            spool_limit_bytes: 1 << 30,
            channel_capacity: 4096,
            write_timeout: Duration::from_secs(10),
            shutdown_flush: Duration::from_secs(5),
            batcher: BatcherConfig::default(),
        }
    }
}

/// Why a record was not accepted by [`EventSink::send`].
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// A field is invalid; the record was not queued.
    #[error("invalid event record: {0}")]
    Invalid(#[from] EventError),
    /// The writer's queue is full; the record was dropped and counted.
    #[error("event queue full; record dropped")]
    QueueFull,
    /// The writer has stopped.
    #[error("event writer stopped")]
    Closed,
}

/// The producers' handle: validates and queues records without waiting.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Record>,
    dropped: Arc<AtomicU64>,
}

impl EventSink {
    /// Queues a record. Never waits; a full queue drops the record (counted).
    pub fn send(&self, record: Record) -> Result<(), SendError> {
        if let Err(e) = record.validate() {
            metrics::counter!("panoptes_events_dropped_total", "camera" => record.camera().to_string(), "reason" => "invalid").increment(1);
            return Err(e.into());
        }
        match self.tx.try_send(record) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(r)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("panoptes_events_dropped_total", "camera" => r.camera().to_string(), "reason" => "queue_full").increment(1);
                Err(SendError::QueueFull)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed),
        }
    }

    /// A track started.
    pub fn start(&self, event: NewEvent) -> Result<(), SendError> {
        self.send(Record::Start(event))
    }

    /// A track ended or changed.
    pub fn update(&self, update: EventUpdate) -> Result<(), SendError> {
        self.send(Record::Update(update))
    }

    /// A line counter's total for an hour.
    pub fn line_count(&self, count: LineCount) -> Result<(), SendError> {
        self.send(Record::LineCount(count))
    }

    /// Records dropped at this sink because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// What the writer reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStatus {
    /// Counters since start.
    pub stats: Stats,
    /// Whether records are going to the spool (the database was unreachable).
    pub spooling: bool,
    /// Records in memory.
    pub queued: usize,
}

/// The running writer: its status and its end.
#[derive(Debug)]
pub struct WriterHandle {
    join: JoinHandle<WriterStatus>,
    status: watch::Receiver<WriterStatus>,
}

impl WriterHandle {
    /// The latest status.
    pub fn status(&self) -> WriterStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch(&self) -> watch::Receiver<WriterStatus> {
        self.status.clone()
    }

    /// Waits for the task to end (after cancellation, or when every sink is dropped):
    /// queued records are flushed to the database, or to the spool.
    pub async fn finished(self) -> WriterStatus {
        match self.join.await {
            Ok(s) => s,
            Err(e) => {
                error!(error = %e, "event writer task failed");
                self.status.borrow().clone()
            }
        }
    }
}

/// The writer. See the module documentation.
#[derive(Debug)]
pub struct EventWriter;

impl EventWriter {
    /// Opens the spool (replaying it first if it holds records) and starts the task. It
    /// runs until `cancel` fires or every [`EventSink`] is dropped, then flushes.
    pub async fn start(
        pool: PgPool,
        config: WriterConfig,
        cancel: CancellationToken,
    ) -> (EventSink, WriterHandle) {
        let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
        let mut slot = None;
        let backlog = match open_spool(&config).await {
            Ok((spool, n)) => {
                slot = Some(spool);
                n > 0
            }
            Err(e) => {
                error!(error = %e, path = %config.spool_path.display(), "cannot open the event spool; events will be lost while PostgreSQL is unreachable");
                false
            }
        };
        let batcher = Batcher::new(config.batcher.clone(), backlog);
        let (status_tx, status) =
            watch::channel(WriterStatus { spooling: backlog, ..WriterStatus::default() });
        let driver =
            Driver { pool, config, batcher, spool: slot, rx, cancel, status: status_tx, closed: false };
        let join = tokio::spawn(driver.run().instrument(info_span!("event_writer")));
        (EventSink { tx, dropped: Arc::new(AtomicU64::new(0)) }, WriterHandle { join, status })
    }
}

async fn open_spool(config: &WriterConfig) -> Result<(Spool, usize), SpoolError> {
    let (path, limit) = (config.spool_path.clone(), config.spool_limit_bytes);
    let (spool, report) = tokio::task::spawn_blocking(move || Spool::open(&path, limit))
        .await
        .map_err(|e| join_error(&config.spool_path, e))??;
    if report.torn_bytes > 0 {
        warn!(path = %spool.path().display(), bytes = report.torn_bytes, "spool ended with a torn line (crash during a write); ignored it");
    }
    if report.corrupt > 0 {
        warn!(path = %spool.path().display(), lines = report.corrupt, "spool has damaged lines; they will be skipped");
    }
    if report.records > 0 {
        info!(path = %spool.path().display(), records = report.records, "spool holds events from before; replaying them first");
    }
    Ok((spool, report.records))
}

fn join_error(path: &std::path::Path, e: tokio::task::JoinError) -> SpoolError {
    SpoolError::Io {
        what: "blocking thread for",
        path: path.to_owned(),
        source: std::io::Error::other(e.to_string()),
    }
}

struct Driver {
    pool: PgPool,
    config: WriterConfig,
    batcher: Batcher,
    spool: Option<Spool>,
    rx: mpsc::Receiver<Record>,
    cancel: CancellationToken,
    status: watch::Sender<WriterStatus>,
    closed: bool,
}

impl Driver {
    async fn run(mut self) -> WriterStatus {
        let mut flush_deadline: Option<Instant> = None;
        loop {
            self.take_input();
            if flush_deadline.is_none() && (self.cancel.is_cancelled() || self.closed) {
                info!(queued = self.batcher.queued(), "event writer flushing");
                self.batcher.begin_shutdown();
                flush_deadline = Some(Instant::now() + self.config.shutdown_flush);
            }
            if flush_deadline.is_some_and(|d| Instant::now() >= d) && !self.batcher.is_spooling() {
                warn!(
                    queued = self.batcher.queued(),
                    "database flush took too long at shutdown; spooling the rest"
                );
                self.batcher.force_spool();
            }
            let now = Instant::now();
            match self.batcher.poll(now) {
                Action::Write(batch) => self.write(batch).await,
                Action::Spool(batch) => self.spool(batch).await,
                Action::Replay { max } => self.replay(max).await,
                Action::Wait(until) => {
                    if flush_deadline.is_some() {
                        // Shutting down and the database is away: what is left is spooled.
                        if self.batcher.is_spooling() {
                            break;
                        }
                    }
                    self.wait(Some(until)).await;
                }
                Action::Idle => {
                    if flush_deadline.is_some() {
                        self.take_input();
                        if self.batcher.queued() == 0 {
                            break;
                        }
                        continue;
                    }
                    self.wait(None).await;
                }
            }
            self.publish();
        }
        self.publish();
        let status = self.status.borrow().clone();
        info!(?status, "event writer stopped");
        status
    }

    fn take_input(&mut self) {
        while !self.closed && self.batcher.has_room() {
            match self.rx.try_recv() {
                Ok(r) => self.batcher.push(r, Instant::now()),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => self.closed = true,
            }
        }
    }

    async fn wait(&mut self, until: Option<Instant>) {
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(
            until.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
        ));
        let room = self.batcher.has_room() && !self.closed;
        tokio::select! {
            r = self.rx.recv(), if room => match r {
                Some(r) => self.batcher.push(r, Instant::now()),
                None => self.closed = true,
            },
            _ = sleep => {}
            _ = self.cancel.cancelled(), if !self.cancel.is_cancelled() => {}
        }
    }

    fn publish(&self) {
        let status = WriterStatus {
            stats: self.batcher.stats().clone(),
            spooling: self.batcher.is_spooling(),
            queued: self.batcher.queued(),
        };
        metrics::gauge!("panoptes_events_spooling").set(if status.spooling { 1.0 } else { 0.0 });
        metrics::gauge!("panoptes_events_queued").set(status.queued as f64);
        self.status.send_if_modified(|s| {
            if *s == status {
                false
            } else {
                *s = status;
                true
            }
        });
    }

    async fn store(&self, records: &[Record]) -> StoreResult {
        match tokio::time::timeout(self.config.write_timeout, store::write(&self.pool, records)).await {
            Ok(r) => r,
            Err(_) => StoreResult::Unavailable(sqlx::Error::PoolTimedOut),
        }
    }

    async fn write(&mut self, batch: Vec<Record>) {
        let n = batch.len();
        match self.store(&batch).await {
            StoreResult::Stored { rejected } => {
                metrics::counter!("panoptes_events_written_total").increment((n - rejected) as u64);
                self.batcher.on_written(n, WriteOutcome::Written { rejected }, Instant::now());
            }
            StoreResult::Unavailable(e) => {
                if !self.batcher.is_spooling() {
                    warn!(error = %e, records = n, spool = %self.config.spool_path.display(), "PostgreSQL unreachable; spooling events to disk");
                }
                self.batcher.on_written(n, WriteOutcome::Unavailable(batch), Instant::now());
            }
        }
    }

    /// Runs `f` on the spool on a blocking thread, reopening the spool if it is not open.
    async fn with_spool<T, F>(&mut self, f: F) -> Result<T, SpoolError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
    {
        let taken = self.spool.take();
        let (path, limit) = (self.config.spool_path.clone(), self.config.spool_limit_bytes);
        let joined = tokio::task::spawn_blocking(move || {
            let mut spool = match taken {
                Some(s) => s,
                None => match Spool::open(&path, limit) {
                    Ok((s, _)) => s,
                    Err(e) => return (None, Err(e)),
                },
            };
            let r = f(&mut spool);
            (Some(spool), r)
        })
        .await;
        match joined {
            Ok((back, r)) => {
                self.spool = back;
                r
            }
            Err(e) => Err(join_error(&self.config.spool_path, e)),
        }
    }

    async fn spool(&mut self, batch: Vec<Record>) {
        let n = batch.len();
        let cameras: Vec<String> = batch.iter().map(|r| r.camera().to_string()).collect();
        match self.with_spool(move |s| s.append(&batch)).await {
            Ok(()) => {
                metrics::counter!("panoptes_events_spooled_total").increment(n as u64);
                self.batcher.on_spooled(n, true);
            }
            Err(e) => {
                if e.is_full() {
                    error!(error = %e, records = n, "DISK FULL: the event spool cannot grow and PostgreSQL is unreachable; these events are lost (panoptes_events_dropped_total{{reason=\"spool_failed\"}}); Panoptes keeps running");
                } else {
                    error!(error = %e, records = n, "the event spool failed and PostgreSQL is unreachable; these events are lost; Panoptes keeps running");
                }
                for c in cameras {
                    metrics::counter!("panoptes_events_dropped_total", "camera" => c, "reason" => "spool_failed").increment(1);
                }
                self.batcher.on_spooled(n, false);
            }
        }
    }

    async fn replay(&mut self, max: usize) {
        let now = Instant::now;
        let chunk = match self.with_spool(move |s| s.read_next(max)).await {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "reading the event spool failed; will retry");
                self.batcher.on_replayed(ReplayOutcome::Unavailable, now());
                return;
            }
        };
        for (offset, e) in &chunk.corrupt {
            warn!(offset, error = %e, "skipping a damaged spool line");
        }
        if chunk.records.is_empty() && chunk.corrupt.is_empty() {
            if let Err(e) = self.with_spool(|s| s.reset()).await {
                error!(error = %e, "emptying the replayed spool failed");
            }
            info!(
                replayed = self.batcher.stats().replayed,
                "spool replayed; writing to PostgreSQL directly again"
            );
            self.batcher.on_replayed(ReplayOutcome::Drained, now());
            return;
        }
        let corrupt = chunk.corrupt.len();
        let rejected = if chunk.records.is_empty() {
            0
        } else {
            match self.store(&chunk.records).await {
                StoreResult::Stored { rejected } => rejected,
                StoreResult::Unavailable(e) => {
                    warn!(error = %e, "PostgreSQL still unreachable; spool replay waits");
                    self.batcher.on_replayed(ReplayOutcome::Unavailable, now());
                    return;
                }
            }
        };
        if let Some(s) = self.spool.as_mut() {
            s.commit(chunk.next);
        }
        let written = chunk.records.len() - rejected;
        metrics::counter!("panoptes_events_replayed_total").increment(written as u64);
        self.batcher.on_replayed(ReplayOutcome::Progress { written, rejected: rejected + corrupt }, now());
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
