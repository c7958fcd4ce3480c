//! The committer thread: the only writer of the warehouse. It batches incoming chunks,
//! commits each batch (Parquet, then one DuckDB transaction), and only then sends each
//! chunk's position back to its source.
//!
//! A commit that fails for a reason that may pass (I/O, a full disk) is retried with
//! backoff while the sources wait on the bounded channel ([`blocked`] reports it). One that
//! DuckDB refused for a value of its rows is committed again one file at a time, and the
//! file(s) it belongs to are refused: their sources quarantine them ([`isolate`]). Any other
//! failure stops the daemon with an error naming the table. Either way nothing uncommitted
//! is acknowledged, so a restart reads it again.
//!
//! Between commits the worker runs the step it was handed ([`AfterCommit`]: the models):
//! it owns the only read-write connection, so a model round never races a commit. The
//! committer knows that step only by this trait.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        mpsc::{Receiver, RecvTimeoutError, Sender},
        Arc,
    },
    time::{Duration, Instant},
};

use crossbeam_channel::{bounded, RecvTimeoutError as QueueRecvError, SendTimeoutError};
use sluice_core::{retry::Backoff, text, Position};
use sluice_sinks::{CommitReceipt, PendingBatch, SinkError, Staged, Warehouse};
use sluice_sources::SourceEvent;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use super::batcher::{Batcher, Limits};
use crate::{health::Health, telemetry};
use blocked::Blocked;
use isolate::Refused;

mod blocked;
mod isolate;

/// Longest wait for a chunk before checking ages and the stop signal again.
const IDLE_TICK: Duration = Duration::from_millis(250);
/// How soon a batch held for a full queue is looked at again (a commit takes longer).
const HOLD_TICK: Duration = Duration::from_millis(10);
/// Commit attempts allowed once a stop is requested (then uncommitted data is left for
/// the next start to read again).
const ATTEMPTS_WHILE_STOPPING: u32 = 3;
/// Pauses between attempts at a commit blocked by storage: a freed disk is noticed within
/// seconds.
const COMMIT_RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// A batch that could not be committed.
#[derive(Debug, thiserror::Error)]
#[error("committing a batch of table {table}: {cause}")]
pub struct CommitError {
    pub table: String,
    /// Boxed: DuckDB's errors are large and this travels up the stack. Part of the message
    /// rather than a `source()`, so that a printed error chain says it once.
    pub cause: Box<SinkError>,
}

/// What runs on the committer's thread between commits, with the warehouse's connection
/// (the models). It must return promptly when more batches wait.
pub trait AfterCommit: Send {
    /// After a commit; `backlog` when another batch is already queued.
    fn after_commit(&mut self, conn: &duckdb::Connection, backlog: bool);
    /// When no batch arrived for a while.
    fn idle(&mut self, conn: &duckdb::Connection);
}

/// The batching loop: receives chunks, closes batches, hands them to the commit worker.
#[derive(Debug)]
pub struct Committer<A> {
    worker: CommitWorker<A>,
    batcher: Batcher,
    health: Arc<Health>,
}

/// Owns the warehouse on its own thread and commits batches strictly in order, so the
/// next batch is read and assembled while the previous one commits. A batch already
/// queued is staged before the current one commits, so its Parquet file is written in
/// the meantime. In memory at most: the batch committing, one staged, one queued and
/// the batcher's open ones.
#[derive(Debug)]
struct CommitWorker<A> {
    warehouse: Warehouse,
    acks: HashMap<Arc<str>, Sender<Position>>,
    health: Arc<Health>,
    after: Option<A>,
    /// Files whose chunks were refused: their chunks still on their way are dropped.
    refused: Refused,
}

/// A batch whose commit failed for good, handed back uncommitted, and why (boxed where it
/// travels: a staged batch and a DuckDB error are large).
#[derive(Debug)]
struct Failed {
    staged: Staged,
    error: SinkError,
}

impl Failed {
    /// The failure as the error that stops the daemon.
    fn fatal(self) -> CommitError {
        CommitError {
            table: self.staged.batch().table.to_string(),
            cause: Box::new(self.error),
        }
    }
}

/// What the committer hands back when ingestion ends: the warehouse and the step it was
/// handed.
pub type Finished<A> = (Warehouse, Option<A>);

impl<A: AfterCommit> Committer<A> {
    /// `acks` maps each source name to the channel its acknowledgements go to.
    pub fn new(
        warehouse: Warehouse,
        limits: Limits,
        acks: HashMap<Arc<str>, Sender<Position>>,
        health: Arc<Health>,
        after: Option<A>,
    ) -> Self {
        Committer {
            worker: CommitWorker {
                warehouse,
                acks,
                health: health.clone(),
                after,
                refused: Refused::default(),
            },
            batcher: Batcher::new(limits),
            health,
        }
    }

    /// Runs until every source has hung up; returns the warehouse and the models for what
    /// comes after ingestion (`--once` runs the models a last time). On `stop`, open
    /// batches are committed at once.
    pub fn run(
        self,
        events: Receiver<SourceEvent>,
        stop: &CancellationToken,
    ) -> Result<Finished<A>, CommitError> {
        let Committer {
            worker,
            mut batcher,
            health,
        } = self;
        // One batch may wait while another commits: double buffering, bounded memory.
        let (batches, queue) = bounded::<PendingBatch>(1);
        std::thread::scope(|scope| {
            let worker = std::thread::Builder::new()
                .name("committer".into())
                .spawn_scoped(scope, move || {
                    let result = worker.run(queue, stop);
                    if let Err(e) = &result {
                        // The batch loop and the sources learn of it through `stop`: with
                        // no more input to hand over they would otherwise wait for ever.
                        let error = e.to_string();
                        error!(error = %text::bounded(&error, text::TEXT_LIMIT), "a commit failed for good; stopping");
                        stop.cancel();
                    }
                    result
                })
                .map_err(|e| CommitError {
                    table: String::new(),
                    cause: Box::new(SinkError::Io {
                        path: "committer thread".into(),
                        source: e,
                    }),
                })?;
            batch_loop(&mut batcher, &events, &batches, stop, &health);
            drop(batches);
            worker.join().unwrap_or_else(|_| {
                Err(CommitError {
                    table: String::new(),
                    cause: Box::new(SinkError::Panicked {
                        what: "the committer thread".into(),
                    }),
                })
            })
        })
    }
}

/// Receives chunks until every source hung up (or the worker failed), sending each batch
/// that closes to the worker.
///
/// A batch due by age waits, still open, while the worker's queue is full (one batch
/// committing, one staged, one queued): handed over then it would only wait behind them,
/// and holding it keeps the loop taking chunks rather than blocking (which would pause the
/// sources). Chunks arriving meanwhile join it, so under load batches grow and commits
/// get fewer and larger. The queue frees a place each time a commit starts, so a batch is
/// held for at most about one commit; one that fills up (`max_rows`, `max_bytes`) is
/// handed over at once, blocking until there is room.
fn batch_loop(
    batcher: &mut Batcher,
    events: &Receiver<SourceEvent>,
    worker: &crossbeam_channel::Sender<PendingBatch>,
    stop: &CancellationToken,
    health: &Health,
) {
    let send_all =
        |batches: Vec<PendingBatch>| batches.into_iter().all(|b| send_alive(worker, b, health));
    loop {
        health.beat();
        let now = Instant::now();
        if stop.is_cancelled() && !send_all(batcher.all()) {
            return;
        }
        let wait = match batcher.next_deadline(now) {
            Some(d) if d.is_zero() && worker.is_full() => HOLD_TICK,
            Some(d) => d.min(IDLE_TICK),
            None => IDLE_TICK,
        };
        let batches = match events.recv_timeout(wait) {
            // Ages are checked only once no chunk is waiting (below), on purpose: after a
            // stall (a long commit, a checkpoint) the chunks queued meanwhile may all be
            // past `max_age`, and closing a batch per chunk would make many small commits
            // just when the committer is behind. An aged batch waits at most for the
            // queue to drain. (Checking after every chunk was tried in the soak: no
            // measurable change in freshness, run-to-run noise is larger.)
            Ok(SourceEvent::Chunk(chunk)) => batcher.add(chunk, Instant::now()),
            Ok(SourceEvent::Revoked { source, partitions }) => {
                let dropped = batcher.drop_partitions(&source, &partitions);
                debug!(%source, dropped, "partitions revoked; their uncommitted chunks dropped");
                Vec::new()
            }
            Ok(SourceEvent::Drained { source }) => {
                debug!(%source, "source drained; committing open batches");
                batcher.all()
            }
            Err(RecvTimeoutError::Timeout) if worker.is_full() => Vec::new(),
            Err(RecvTimeoutError::Timeout) => {
                batcher.take_aged(Instant::now()).into_iter().collect()
            }
            Err(RecvTimeoutError::Disconnected) => {
                send_all(batcher.all());
                return;
            }
        };
        if !send_all(batches) {
            // The worker stopped on an error; it reports it when joined.
            return;
        }
    }
}

/// How often the batch loop beats while the worker is busy with a long commit or model.
const BUSY_BEAT: Duration = Duration::from_millis(50);

/// Hands `batch` to the worker, beating while the worker is busy: a model round or a
/// large commit may take minutes, and the batch loop waiting for it is alive, not stuck
/// (systemd's watchdog must not kill it). The hand-over happens the moment the queue has
/// room, so the worker finds the next batch queued when it starts a commit and can stage
/// it (its Parquet file is then written during that commit). False once the worker has
/// stopped.
fn send_alive<T>(worker: &crossbeam_channel::Sender<T>, mut batch: T, health: &Health) -> bool {
    loop {
        match worker.send_timeout(batch, BUSY_BEAT) {
            Ok(()) => return true,
            Err(SendTimeoutError::Disconnected(_)) => return false,
            Err(SendTimeoutError::Timeout(b)) => {
                batch = b;
                health.beat();
            }
        }
    }
}

impl<A: AfterCommit> CommitWorker<A> {
    fn run(
        mut self,
        queue: crossbeam_channel::Receiver<PendingBatch>,
        stop: &CancellationToken,
    ) -> Result<Finished<A>, CommitError> {
        let mut ahead: Option<Staged> = None;
        loop {
            let staged = match ahead.take() {
                Some(staged) => staged,
                None => match queue.recv_timeout(IDLE_TICK) {
                    Ok(batch) => match self.stage(batch)? {
                        Some(staged) => staged,
                        None => continue,
                    },
                    Err(QueueRecvError::Timeout) => {
                        if let Some(after) = self.after.as_mut().filter(|_| !stop.is_cancelled()) {
                            after.idle(self.warehouse.for_queries());
                        }
                        continue;
                    }
                    Err(QueueRecvError::Disconnected) => break,
                },
            };
            // A batch already waiting is staged now, so its Parquet file is written while
            // this one commits. A staging error is reported once this commit is done.
            let next = self.stage_waiting(&queue);
            let next = match self.commit(staged, stop) {
                Ok(()) => next?,
                Err(failed) => self.recover(failed, next, stop)?,
            };
            ahead = match next {
                Some(staged) => Some(staged),
                None => self.stage_waiting(&queue)?,
            };
            // A batch already waiting means more are coming: models may wait for it.
            if let Some(after) = self.after.as_mut().filter(|_| !stop.is_cancelled()) {
                after.after_commit(self.warehouse.for_queries(), ahead.is_some());
            }
        }
        Ok((self.warehouse, self.after))
    }

    /// The batch waiting in the queue, if any, staged.
    fn stage_waiting(
        &mut self,
        queue: &crossbeam_channel::Receiver<PendingBatch>,
    ) -> Result<Option<Staged>, CommitError> {
        match queue.try_recv() {
            Ok(batch) => self.stage(batch),
            Err(_) => Ok(None),
        }
    }

    /// Stages a batch without the chunks of files refused meanwhile (see [`isolate`]);
    /// `None` when nothing else is left of it.
    fn stage(&mut self, mut batch: PendingBatch) -> Result<Option<Staged>, CommitError> {
        let dropped = self.refused.drop_chunks(&mut batch);
        if dropped > 0 {
            debug!(table = %batch.table, dropped, "dropped chunks of refused files");
        }
        if batch.chunks.is_empty() {
            return Ok(None);
        }
        let table = batch.table.to_string();
        self.warehouse.stage(batch).map(Some).map_err(|source| {
            telemetry::commit_failed(&table);
            CommitError {
                table,
                cause: Box::new(source),
            }
        })
    }

    /// Takes back the batch staged last (see [`Warehouse::unstage`]).
    fn unstage(&mut self, staged: Staged) -> Result<PendingBatch, CommitError> {
        let table = staged.batch().table.to_string();
        self.warehouse
            .unstage(staged)
            .map_err(|source| CommitError {
                table,
                cause: Box::new(source),
            })
    }

    /// After a commit failed for good: the batch staged behind it is taken back (it holds
    /// the next id), the failed one is committed one file at a time where its failure may
    /// be tied to a file ([`isolate`]; else its error is returned), and the batch behind it
    /// is staged again, without the chunks of the files refused.
    fn recover(
        &mut self,
        failed: Box<Failed>,
        next: Result<Option<Staged>, CommitError>,
        stop: &CancellationToken,
    ) -> Result<Option<Staged>, CommitError> {
        let later = match next {
            Ok(Some(staged)) => Some(self.unstage(staged)?),
            Ok(None) => None,
            // The failed commit is the error to report.
            Err(_) => return Err(failed.fatal()),
        };
        self.isolate(failed, stop)?;
        match later {
            Some(batch) => self.stage(batch),
            None => Ok(None),
        }
    }

    /// Commits a staged batch, retrying while the failure may pass (storage, memory).
    /// A failure that retrying does not change (or that outlasts a stop) hands the batch
    /// back with its error, uncommitted.
    fn commit(&mut self, mut staged: Staged, stop: &CancellationToken) -> Result<(), Box<Failed>> {
        let mut wait = None;
        let mut attempts_while_stopping = 0;
        let mut blocked = Blocked::default();
        let mut first_attempt = true;
        loop {
            let started = Instant::now();
            let table = staged.batch().table.clone();
            // How long the batch's oldest row has waited since it reached its source.
            let age = staged
                .batch()
                .oldest()
                .map(|since| started.duration_since(since));
            match self.warehouse.commit_staged(&mut staged) {
                Ok(receipt) => {
                    blocked.passed(&self.health, table.as_str());
                    self.committed(staged.batch(), receipt, started.elapsed(), age);
                    return Ok(());
                }
                Err(e) if e.is_retryable() && first_attempt => {
                    // Tried again at once first: a batch staged while the disk was full
                    // carries that failure of its Parquet file, stale once space is back.
                    telemetry::commit_failed(table.as_str());
                    let error = e.to_string();
                    debug!(%table, error = %text::bounded(&error, text::TEXT_LIMIT), "commit failed; trying again at once");
                    first_attempt = false;
                }
                Err(e) if e.is_retryable() && attempts_while_stopping < ATTEMPTS_WHILE_STOPPING => {
                    telemetry::commit_failed(table.as_str());
                    blocked.failed(&self.health, table.as_str(), &e);
                    if stop.is_cancelled() {
                        attempts_while_stopping += 1;
                    }
                    let next = COMMIT_RETRY.after(wait);
                    std::thread::sleep(next);
                    wait = Some(next);
                }
                Err(error) => {
                    telemetry::commit_failed(table.as_str());
                    return Err(Box::new(Failed { staged, error }));
                }
            }
        }
    }

    fn committed(
        &mut self,
        batch: &PendingBatch,
        receipt: CommitReceipt,
        took: Duration,
        age: Option<Duration>,
    ) {
        let mut by_source: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for chunk in &batch.chunks {
            let e = by_source.entry(&*chunk.source).or_default();
            e.0 += chunk.rows.num_rows() as u64;
            e.1 += chunk.dead_letters.len() as u64;
        }
        let by_source: Vec<(String, u64, u64)> = by_source
            .into_iter()
            .map(|(s, (r, d))| (s.to_string(), r, d))
            .collect();
        telemetry::batch_committed(&receipt, &by_source, took, age);
        self.health.committed(&receipt, &by_source, took);
        if let Some(id) = receipt.batch_id {
            info!(table = %receipt.table, batch = id, rows = receipt.rows,
                dead_letters = receipt.dead_letters, ms = took.as_millis() as u64,
                age_ms = age.map(|a| a.as_millis() as u64), "committed");
        }
        for change in &receipt.schema_changes {
            info!(table = %receipt.table, batch = receipt.batch_id,
                column = %sluice_core::text::bounded(&change.column, 200), change = change.kind(),
                old_type = change.old.as_ref().map(|t| t.to_string()), new_type = %change.new,
                "the raw table's schema changed");
        }
        for (source, position) in receipt.positions {
            if let Some(tx) = self.acks.get(&source) {
                // A source that already stopped no longer needs its acknowledgements.
                let _ = tx.send(position);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{notify::Notifier, pipeline::batcher::tests::chunk};

    #[test]
    fn a_due_batch_keeps_growing_while_the_worker_queue_is_full() {
        let health = Health::new(Notifier::disabled());
        let stop = CancellationToken::new();
        let mut batcher = Batcher::new(Limits {
            max_rows: 1000,
            max_bytes: usize::MAX,
            // Every batch is due as soon as it opens.
            max_age: Duration::ZERO,
        });
        // The worker's queue is full: a batch waits in it.
        let (worker, queue) = bounded::<PendingBatch>(1);
        let waiting = PendingBatch {
            table: sluice_core::Ident::new("waiting").unwrap(),
            raw_columns: Default::default(),
            chunks: Vec::new(),
        };
        worker.send(waiting).unwrap();
        // A rendezvous channel: a send returns once the batch loop has taken the chunk.
        let (events_tx, events) = std::sync::mpsc::sync_channel(0);
        let (taken_tx, taken) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(move || batch_loop(&mut batcher, &events, &worker, &stop, &health));
            s.spawn(move || {
                for rows in [3, 4] {
                    events_tx
                        .send(SourceEvent::Chunk(chunk("t", rows)))
                        .unwrap();
                    taken_tx.send(rows).unwrap();
                    // Not synchronisation (the rendezvous is): a pause in which the loop
                    // finds no chunk waiting, where a loop that closed the due batch would
                    // block on the full queue and never take the second chunk.
                    std::thread::sleep(Duration::from_millis(50));
                }
                // Dropping `events_tx` ends the loop once the queue has room.
            });
            let first = taken.recv_timeout(Duration::from_secs(10));
            let second = taken.recv_timeout(Duration::from_secs(10));
            // Room in the queue: the held batch is handed over, with both chunks.
            let was_waiting = queue.recv().unwrap();
            let handed = queue.recv_timeout(Duration::from_secs(10));
            while queue.recv().is_ok() {}
            assert_eq!(
                (first, second),
                (Ok(3), Ok(4)),
                "chunks taken while the queue was full"
            );
            assert_eq!(was_waiting.table.as_str(), "waiting");
            let handed = handed.expect("the held batch is handed over");
            assert_eq!(
                (handed.table.as_str(), handed.chunks.len(), handed.rows()),
                ("t", 2, 7)
            );
        });
    }

    #[test]
    fn a_busy_worker_does_not_stop_the_heartbeat() {
        let health = Health::new(Notifier::disabled());
        let (tx, rx) = bounded::<u32>(0);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                // A worker busy for a while before it takes the next batch.
                started_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(400));
                assert_eq!(rx.recv().unwrap(), 7);
                drop(rx);
            });
            started_rx.recv().unwrap();
            let before = health.since_beat();
            assert!(send_alive(&tx, 7, &health));
            assert!(
                health.since_beat() < before + Duration::from_millis(200),
                "beat while waiting"
            );
            assert!(!send_alive(&tx, 8, &health), "a stopped worker is reported");
        });
    }
}
