//! The event writer's decisions, without I/O: when to write a batch, when to spool, when
//! to replay the spool, how long to wait.
//!
//! The driver ([`super::writer`]) feeds it records with [`Batcher::push`], asks
//! [`Batcher::poll`] what to do next, does it, and reports the result. At most one action
//! is under way at a time, so order is kept: while the spool holds records, new records go
//! behind them into the spool too, and the spool is replayed oldest first; only when it is
//! drained do records go straight to the database again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Record;

/// Tuning of the batcher.
#[derive(Debug, Clone)]
pub struct BatcherConfig {
    /// Most records in one database write.
    pub max_batch: usize,
    /// Longest a record waits in memory for a fuller batch.
    pub max_delay: Duration,
    /// Most records held in memory; the driver stops taking input beyond it.
    pub max_queue: usize,
    /// First wait before retrying the database.
    pub retry_min: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        BatcherConfig {
            max_batch: 256,
            max_delay: Duration::from_millis(100),
            max_queue: 8192,
            retry_min: Duration::from_millis(250),
            retry_max: Duration::from_secs(10),
        }
    }
}

/// What the driver should do next.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Write these records to the database; report with [`Batcher::on_written`].
    Write(Vec<Record>),
    /// Append these records to the spool; report with [`Batcher::on_spooled`].
    Spool(Vec<Record>),
    /// Read up to `max` records from the spool and write them; report with
    /// [`Batcher::on_replayed`].
    Replay {
        /// Most records to replay in this step.
        max: usize,
    },
    /// Nothing to do before this instant (or new input).
    Wait(Instant),
    /// Nothing to do until new input.
    Idle,
}

/// Result of a database write.
#[derive(Debug, PartialEq)]
pub enum WriteOutcome {
    /// Stored; `rejected` records were refused by the database as invalid and dropped.
    Written {
        /// Records refused (constraint violations); they are never retried.
        rejected: usize,
    },
    /// The database could not be reached; the records come back to be spooled.
    Unavailable(Vec<Record>),
}

/// Result of a replay step.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Some records were replayed (and committed in the spool).
    Progress {
        /// Records stored.
        written: usize,
        /// Records refused by the database, or damaged in the spool.
        rejected: usize,
    },
    /// The spool is empty and has been reset.
    Drained,
    /// The database could not be reached; nothing was committed.
    Unavailable,
}

/// Counters since start.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Records stored directly.
    pub written: u64,
    /// Records appended to the spool.
    pub spooled: u64,
    /// Records stored from the spool.
    pub replayed: u64,
    /// Records refused by the database or damaged in the spool.
    pub rejected: u64,
    /// Records lost because the spool failed too.
    pub dropped: u64,
}

/// The writer's state machine.
#[derive(Debug)]
pub struct Batcher {
    config: BatcherConfig,
    queue: VecDeque<Record>,
    /// When the oldest record still in `queue` arrived.
    oldest: Option<Instant>,
    /// The spool holds records not yet in the database: new records go behind them.
    spooling: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
    busy: bool,
    shutting_down: bool,
    stats: Stats,
}

impl Batcher {
    /// A batcher; `spool_has_records` when the spool file was not empty at start.
    pub fn new(config: BatcherConfig, spool_has_records: bool) -> Self {
        let backoff = config.retry_min;
        Batcher {
            config,
            queue: VecDeque::new(),
            oldest: None,
            spooling: spool_has_records,
            retry_at: None,
            backoff,
            busy: false,
            shutting_down: false,
            stats: Stats::default(),
        }
    }

    /// Whether more input may be taken (the in-memory queue is below its bound).
    pub fn has_room(&self) -> bool {
        self.queue.len() < self.config.max_queue
    }

    /// Whether records are going to the spool rather than to the database.
    pub fn is_spooling(&self) -> bool {
        self.spooling
    }

    /// Records waiting in memory.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Counters since start.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Sends everything to the spool from now on (a shutdown whose flush took too long).
    pub fn force_spool(&mut self) {
        self.spooling = true;
    }

    /// Takes one record.
    pub fn push(&mut self, record: Record, now: Instant) {
        if self.queue.is_empty() {
            self.oldest = Some(now);
        }
        self.queue.push_back(record);
    }

    /// From now on, write whatever is queued without waiting for fuller batches, and do
    /// not wait for the database: leave the spool for the next start.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
    }

    fn take(&mut self, n: usize) -> Vec<Record> {
        let n = n.min(self.queue.len());
        let batch: Vec<Record> = self.queue.drain(..n).collect();
        if self.queue.is_empty() {
            self.oldest = None;
        }
        batch
    }

    /// The next thing to do. While an action is under way, returns [`Action::Idle`].
    pub fn poll(&mut self, now: Instant) -> Action {
        if self.busy {
            return Action::Idle;
        }
        if self.spooling {
            if !self.queue.is_empty() {
                self.busy = true;
                let all = self.queue.len();
                return Action::Spool(self.take(all));
            }
            if self.shutting_down {
                return Action::Idle;
            }
            return match self.retry_at {
                Some(t) if t > now => Action::Wait(t),
                _ => {
                    self.busy = true;
                    Action::Replay { max: self.config.max_batch }
                }
            };
        }
        let Some(oldest) = self.oldest else {
            return Action::Idle;
        };
        let deadline = oldest + self.config.max_delay;
        if self.shutting_down || self.queue.len() >= self.config.max_batch || deadline <= now {
            self.busy = true;
            return Action::Write(self.take(self.config.max_batch));
        }
        Action::Wait(deadline)
    }

    fn fail(&mut self, now: Instant) {
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(self.config.retry_max);
    }

    fn succeed(&mut self) {
        self.retry_at = None;
        self.backoff = self.config.retry_min;
    }

    /// Reports a [`Action::Write`] of `len` records.
    pub fn on_written(&mut self, len: usize, outcome: WriteOutcome, now: Instant) {
        self.busy = false;
        match outcome {
            WriteOutcome::Written { rejected } => {
                self.succeed();
                self.stats.written += len.saturating_sub(rejected) as u64;
                self.stats.rejected += rejected as u64;
            }
            WriteOutcome::Unavailable(records) => {
                self.fail(now);
                self.spooling = true;
                for r in records.into_iter().rev() {
                    self.queue.push_front(r);
                }
                if self.oldest.is_none() && !self.queue.is_empty() {
                    self.oldest = Some(now);
                }
            }
        }
    }

    /// Reports a [`Action::Spool`] of `len` records; `ok` false when the spool failed and
    /// they were lost.
    pub fn on_spooled(&mut self, len: usize, ok: bool) {
        self.busy = false;
        if ok {
            self.stats.spooled += len as u64;
        } else {
            self.stats.dropped += len as u64;
        }
    }

    /// Reports a [`Action::Replay`].
    pub fn on_replayed(&mut self, outcome: ReplayOutcome, now: Instant) {
        self.busy = false;
        match outcome {
            ReplayOutcome::Progress { written, rejected } => {
                self.succeed();
                self.stats.replayed += written as u64;
                self.stats.rejected += rejected as u64;
            }
            ReplayOutcome::Drained => {
                self.succeed();
                self.spooling = false;
            }
            ReplayOutcome::Unavailable => self.fail(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::tests::sample;

    fn rec(i: i64) -> Record {
        Record::Start(sample(&format!("k{i}"), "cam", i))
    }

    fn config() -> BatcherConfig {
        BatcherConfig {
            max_batch: 3,
            max_delay: Duration::from_millis(100),
            max_queue: 10,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(4),
        }
    }

    #[test]
    fn batches_fill_or_time_out() {
        let t0 = Instant::now();
        let mut b = Batcher::new(config(), false);
        assert_eq!(b.poll(t0), Action::Idle);
        b.push(rec(1), t0);
        assert_eq!(b.poll(t0), Action::Wait(t0 + Duration::from_millis(100)));
        b.push(rec(2), t0);
        b.push(rec(3), t0);
        b.push(rec(4), t0);
        assert_eq!(b.poll(t0), Action::Write(vec![rec(1), rec(2), rec(3)]));
        assert_eq!(b.poll(t0), Action::Idle, "one action at a time");
        b.on_written(3, WriteOutcome::Written { rejected: 0 }, t0);
        let later = t0 + Duration::from_millis(100);
        assert_eq!(b.poll(later), Action::Write(vec![rec(4)]));
        b.on_written(1, WriteOutcome::Written { rejected: 0 }, later);
        assert_eq!(b.stats().written, 4);
    }

    #[test]
    fn an_outage_spools_in_order_and_replays_before_new_writes() {
        let t0 = Instant::now();
        let mut b = Batcher::new(config(), false);
        for i in 1..=3 {
            b.push(rec(i), t0);
        }
        let Action::Write(batch) = b.poll(t0) else { panic!() };
        b.push(rec(4), t0);
        b.on_written(3, WriteOutcome::Unavailable(batch), t0);
        assert!(b.is_spooling());
        // The failed batch and the newer record go to the spool, oldest first.
        assert_eq!(b.poll(t0), Action::Spool(vec![rec(1), rec(2), rec(3), rec(4)]));
        b.on_spooled(4, true);
        // Retry after the backoff.
        assert_eq!(b.poll(t0), Action::Wait(t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.poll(t1), Action::Replay { max: 3 });
        b.on_replayed(ReplayOutcome::Unavailable, t1);
        // Backoff doubles.
        assert_eq!(b.poll(t1), Action::Wait(t1 + Duration::from_secs(2)));
        let t2 = t1 + Duration::from_secs(2);
        // New input while spooling goes behind the spool, even with the database back.
        b.push(rec(5), t2);
        assert_eq!(b.poll(t2), Action::Spool(vec![rec(5)]));
        b.on_spooled(1, true);
        assert_eq!(b.poll(t2), Action::Replay { max: 3 });
        b.on_replayed(ReplayOutcome::Progress { written: 3, rejected: 0 }, t2);
        assert_eq!(b.poll(t2), Action::Replay { max: 3 });
        b.on_replayed(ReplayOutcome::Progress { written: 2, rejected: 0 }, t2);
        assert_eq!(b.poll(t2), Action::Replay { max: 3 });
        b.on_replayed(ReplayOutcome::Drained, t2);
        assert!(!b.is_spooling());
        b.push(rec(6), t2);
        assert_eq!(b.poll(t2 + Duration::from_secs(1)), Action::Write(vec![rec(6)]));
        assert_eq!(b.stats().replayed, 5);
        assert_eq!(b.stats().spooled, 5);
    }

    #[test]
    fn backoff_is_capped() {
        let t0 = Instant::now();
        let mut b = Batcher::new(config(), true);
        let mut now = t0;
        for _ in 0..5 {
            assert_eq!(b.poll(now), Action::Replay { max: 3 });
            b.on_replayed(ReplayOutcome::Unavailable, now);
            let Action::Wait(t) = b.poll(now) else { panic!() };
            assert!(t - now <= Duration::from_secs(4));
            now = t;
        }
    }

    #[test]
    fn a_failed_spool_counts_drops_and_keeps_going() {
        let t0 = Instant::now();
        let mut b = Batcher::new(config(), true);
        b.push(rec(1), t0);
        assert_eq!(b.poll(t0), Action::Spool(vec![rec(1)]));
        b.on_spooled(1, false);
        assert_eq!(b.stats().dropped, 1);
        assert_eq!(b.poll(t0), Action::Replay { max: 3 });
    }

    #[test]
    fn shutdown_flushes_without_waiting_and_leaves_the_spool() {
        let t0 = Instant::now();
        let mut b = Batcher::new(config(), false);
        b.push(rec(1), t0);
        b.begin_shutdown();
        assert_eq!(b.poll(t0), Action::Write(vec![rec(1)]));
        b.on_written(1, WriteOutcome::Unavailable(vec![rec(1)]), t0);
        assert_eq!(b.poll(t0), Action::Spool(vec![rec(1)]));
        b.on_spooled(1, true);
        assert_eq!(b.poll(t0), Action::Idle);
    }

    #[test]
    fn the_queue_is_bounded() {
        let t0 = Instant::now();
        let mut b = Batcher::new(config(), false);
        for i in 0..10 {
            assert!(b.has_room());
            b.push(rec(i), t0);
        }
        assert!(!b.has_room());
    }
}
