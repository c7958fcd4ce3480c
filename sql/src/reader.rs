//! One client's DuckDB connection, on a thread of its own.
//!
//! DuckDB calls block, and a query may run for minutes, so each client gets an OS thread
//! that owns a connection to the warehouse (a clone of sluice's own: same database, its
//! own transactions and snapshots). The async side sends [`Job`]s and awaits replies.
//!
//! Results are pulled, not pushed: [`Reader::run`] executes a statement and answers with
//! its columns; each [`Reader::next`] then fetches and encodes one DuckDB chunk (2,048
//! rows), so a 10M-row result never sits in memory, and a client that reads slowly holds
//! back only its own thread. A new statement on the same connection while a result is
//! still open ends that result (fetching from it again is an error, never a short
//! result).
//!
//! Every statement runs in a `READ ONLY` transaction: the client's own (`BEGIN`), or one
//! around the statement, so it sees one snapshot of whole commits whatever the committer
//! does meanwhile. [`Reader::stop`] interrupts the running statement (a cancel request
//! or the statement timeout).

use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use duckdb::types::Value;
use duckdb::Connection;
use pgwire::api::portal::Format;
use pgwire::messages::data::DataRow;
use tokio::sync::{oneshot, Semaphore};
use tracing::debug;

use crate::gate::{self, sqlstate, Refusal, Scope, Vetted};
use crate::pg::types::Column;

mod stops;
mod stream;
use stops::{stopped, Shared};
use stream::{stream, Want};

/// Why a running statement was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Cancel,
    Timeout,
}

/// The async side's handle on a client's DuckDB thread.
#[derive(Debug)]
pub struct Reader {
    jobs: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    next_id: std::sync::atomic::AtomicU64,
    /// Turns to vet a large query, shared by every client ([`LARGE_QUERY`]).
    large_vets: Arc<Semaphore>,
}

/// A query longer than this takes a turn to be vetted: parsing it makes DuckDB and the
/// gate hold over a thousand times its size for a moment (a 250 KB `IN` list: about
/// 450 MB for 2 s), so at most [`LARGE_VETS`] are vetted at once; shorter ones never wait.
pub const LARGE_QUERY: usize = 64 * 1024;

/// A client thread's stack. DuckDB serializes and binds a statement's tree recursively on
/// the calling thread, and sluice walks it recursively: a long chain (`FROM t, t, t, ...`
/// or `a + b + c + ...` within `sql.max_query_size`) goes thousands of frames deep, and
/// an overflow aborts the whole daemon. Address space only: pages are used as touched.
const STACK: usize = 256 << 20;

/// Large queries vetted at once, by all clients together.
pub const LARGE_VETS: usize = 2;

/// Transaction control, run on the client's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Txn {
    Begin,
    Commit,
    Rollback,
    /// `ROLLBACK TO SAVEPOINT` after a failed statement: the transaction goes on, on a
    /// fresh snapshot if DuckDB had aborted it.
    Restore,
}

enum Job {
    Vet {
        id: u64,
        text: String,
        scope: Scope,
        reply: oneshot::Sender<Result<Vec<Vetted>, Refusal>>,
    },
    Run {
        id: u64,
        statement: Statement,
        reply: oneshot::Sender<Result<Described, Refusal>>,
    },
    Next {
        id: u64,
        reply: oneshot::Sender<Result<Option<Vec<DataRow>>, Refusal>>,
    },
    /// The next chunk as DuckDB's Arrow batch (for Arrow output), not encoded rows.
    NextBatch {
        id: u64,
        reply: oneshot::Sender<Result<Option<RecordBatch>, Refusal>>,
    },
    Txn {
        txn: Txn,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    Session {
        schemas: Vec<String>,
        settings: Vec<(String, String)>,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
}

/// What a statement returns, known once it runs.
#[derive(Debug, Clone)]
pub struct Described {
    pub columns: Vec<Column>,
    /// The result's Arrow schema (what [`Reader::next_batch`] returns).
    pub schema: arrow::datatypes::SchemaRef,
    /// How many parameters it takes.
    pub params: usize,
}

/// A query to run: vetted SQL, parameter values, result formats.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
    pub formats: Format,
    /// Only the columns are wanted: the result is dropped unread.
    pub describe_only: bool,
    /// The shape the client was told the result has ([`crate::pg::shapes`]); a result of
    /// another shape is refused before any row.
    pub expect: Option<u64>,
}

impl Statement {
    /// A query whose rows the client reads.
    pub fn query(sql: String, params: Vec<Value>, formats: Format) -> Self {
        Statement {
            sql,
            params,
            formats,
            describe_only: false,
            expect: None,
        }
    }

    /// The query, refused unless its result has the shape the client was told.
    pub fn expecting(self, expect: Option<u64>) -> Self {
        Statement { expect, ..self }
    }

    /// A query run only for its columns (its result is dropped unread).
    pub fn describe(sql: String) -> Self {
        Statement {
            sql,
            params: Vec::new(),
            formats: Format::UnifiedText,
            describe_only: true,
            expect: None,
        }
    }
}

impl Reader {
    /// Starts the thread for a client, on a clone of `base`; `version` is what
    /// `version()` answers.
    /// Results longer than `max_rows` end with an error (`54000`) after that many rows.
    pub fn start(
        base: &Connection,
        name: String,
        version: &str,
        max_rows: Option<u64>,
        large_vets: Arc<Semaphore>,
    ) -> Result<Reader, Refusal> {
        let conn = base.try_clone().map_err(|e| internal(&e))?;
        let gate = base.try_clone().map_err(|e| internal(&e))?;
        crate::shims::create(&conn, version).map_err(|e| internal(&e))?;
        let shared = Arc::new(Shared {
            interrupt: conn.interrupt_handle(),
            ended_id: 0.into(),
            gate_interrupt: gate.interrupt_handle(),
            running: Mutex::default(),
            max_rows,
        });
        let (jobs, rx) = mpsc::channel();
        let thread_shared = shared.clone();
        thread::Builder::new()
            .name(name)
            .stack_size(STACK)
            .spawn(move || {
                // A client's query yields the CPU to ingestion (sluice_core::priority):
                // ingestion keeps its pace under heavy queries.
                if let Err(e) = sluice_core::priority::yield_to_ingestion() {
                    debug!(error = %e, "could not lower the query thread's priority");
                }
                Thread::new(conn, gate, thread_shared).serve(rx)
            })
            .map_err(|e| internal(&e))?;
        Ok(Reader {
            jobs,
            shared,
            next_id: 1.into(),
            large_vets,
        })
    }

    /// The statements of `text` the gate lets run. Vetting is a statement of its own:
    /// stopped by a cancel, by the client hanging up, and after `timeout` (57014).
    pub async fn vet(
        self: &Arc<Self>,
        text: &str,
        scope: &Scope,
        timeout: Option<Duration>,
    ) -> Result<Vec<Vetted>, Refusal> {
        let started = std::time::Instant::now();
        let _turn = match text.len() > LARGE_QUERY {
            true => Some(self.turn_to_vet(timeout).await?),
            false => None,
        };
        let id = self.new_id();
        if let Some(after) = timeout {
            // The wait for a turn counts.
            self.stop_after(id, after.saturating_sub(started.elapsed()));
        }
        let (reply, rx) = oneshot::channel();
        let job = Job::Vet {
            id,
            text: text.to_string(),
            scope: scope.clone(),
            reply,
        };
        self.send(job, rx).await
    }

    /// A turn to vet a large query, waited for at most `timeout`.
    async fn turn_to_vet(
        &self,
        timeout: Option<Duration>,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Refusal> {
        let turn = self.large_vets.clone().acquire_owned();
        let turn = match timeout {
            Some(t) => tokio::time::timeout(t, turn)
                .await
                .map_err(|_| stopped(Stop::Timeout))?,
            None => turn.await,
        };
        turn.map_err(|e| internal(&e))
    }

    /// A new statement id (for [`Reader::run`], [`Reader::next`] and [`Reader::stop`]).
    pub fn new_id(&self) -> u64 {
        self.next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Executes `statement` as statement `id`: what it returns.
    pub async fn run(&self, id: u64, statement: Statement) -> Result<Described, Refusal> {
        let (reply, rx) = oneshot::channel();
        self.send(
            Job::Run {
                id,
                statement,
                reply,
            },
            rx,
        )
        .await
    }

    /// The next rows of result `id`; `None` at its end.
    pub async fn next(&self, id: u64) -> Result<Option<Vec<DataRow>>, Refusal> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Next { id, reply }, rx).await
    }

    /// The next chunk of result `id` as an Arrow batch; `None` at its end.
    pub async fn next_batch(&self, id: u64) -> Result<Option<RecordBatch>, Refusal> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::NextBatch { id, reply }, rx).await
    }

    pub async fn txn(&self, txn: Txn) -> Result<(), Refusal> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Txn { txn, reply }, rx).await
    }

    /// Sets where the connection resolves unqualified names (schemas already vetted).
    /// Applies the session's parameters to its connection: `search_path` (the schemas
    /// unqualified names resolve in) and every parameter's value, which the
    /// `current_setting()` shim reads ([`crate::shims`]).
    pub async fn session(
        &self,
        schemas: Vec<String>,
        settings: Vec<(String, String)>,
    ) -> Result<(), Refusal> {
        let (reply, rx) = oneshot::channel();
        let job = Job::Session {
            schemas,
            settings,
            reply,
        };
        self.send(job, rx).await
    }

    /// Interrupts statement `id` with a timeout once `after` has passed, if it is still
    /// running (or streaming) and the reader still exists.
    pub fn stop_after(self: &Arc<Self>, id: u64, after: Duration) {
        let reader = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(reader) = reader.upgrade() {
                reader.stop(Some(id), Stop::Timeout);
            }
        });
    }

    /// Why the rows of result `id` the async side still holds must not be sent: the
    /// statement was stopped (its timeout passed while a slow client, or a suspended
    /// portal, held them); `None` otherwise. Cheap: checked for every row.
    pub fn stopped_result(&self, id: u64) -> Option<Refusal> {
        let ended = self
            .shared
            .ended_id
            .load(std::sync::atomic::Ordering::Acquire);
        (ended == id).then(|| self.shared.ended(id))
    }

    /// Interrupts statement `id` if it is still running (or streaming).
    pub fn stop(&self, id: Option<u64>, why: Stop) {
        self.shared.stop(id, why);
    }

    async fn send<T>(
        &self,
        job: Job,
        rx: oneshot::Receiver<Result<T, Refusal>>,
    ) -> Result<T, Refusal> {
        let gone = || Refusal {
            sqlstate: sqlstate::INTERNAL,
            message: "the connection's query thread has stopped".into(),
        };
        self.jobs.send(job).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// A reader dropped (its client gone) stops what its thread runs.
impl Drop for Reader {
    fn drop(&mut self) {
        self.shared.stop(None, Stop::Cancel);
    }
}

/// The thread's side.
struct Thread {
    conn: Connection,
    /// Where the gate parses and looks names up: outside the client's transaction, which
    /// may have failed (DuckDB then refuses every statement on that connection).
    gate: Connection,
    shared: Arc<Shared>,
    /// The client opened a transaction (`BEGIN`).
    in_txn: bool,
}

impl Thread {
    fn new(conn: Connection, gate: Connection, shared: Arc<Shared>) -> Self {
        Thread {
            conn,
            gate,
            shared,
            in_txn: false,
        }
    }

    fn serve(mut self, jobs: mpsc::Receiver<Job>) {
        let mut pending = None;
        while let Some(job) = pending.take().or_else(|| jobs.recv().ok()) {
            pending = self.job(job, &jobs);
        }
        debug!("client gone; its query thread ends");
    }

    /// Does `job`; a job that arrived while a result was open (and ended it) is returned.
    fn job(&mut self, job: Job, jobs: &mpsc::Receiver<Job>) -> Option<Job> {
        match job {
            Job::Vet {
                id,
                text,
                scope,
                reply,
            } => {
                self.shared.set_running(id);
                let shared = &self.shared;
                let vetted =
                    gate::vet_until(&self.gate, &text, &scope, &|| shared.stopped().is_some());
                let vetted = match self.shared.stopped() {
                    Some(why) => Err(stopped(why)),
                    None => vetted,
                };
                self.shared.set_running(0);
                let _ = reply.send(vetted);
            }
            Job::Run {
                id,
                statement,
                reply,
            } => return self.run(id, statement, reply, jobs),
            Job::Next { id, reply } => Want::Rows(reply).fail(self.shared.ended(id)),
            Job::NextBatch { id, reply } => Want::Batch(reply).fail(self.shared.ended(id)),
            Job::Txn { txn, reply } => {
                let _ = reply.send(self.txn(txn));
            }
            Job::Session {
                schemas,
                settings,
                reply,
            } => {
                let text = |v: &str| format!("'{}'", v.replace('\'', "''"));
                let map: Vec<String> = settings
                    .iter()
                    .map(|(k, v)| format!("{}: {}", text(k), text(v)))
                    .collect();
                let sql = format!(
                    "SET search_path = {}; SET VARIABLE {} = MAP {{{}}}::MAP(VARCHAR, VARCHAR);",
                    text(&schemas.join(",")),
                    crate::shims::SETTINGS_VARIABLE,
                    map.join(", ")
                );
                let r = self.conn.execute_batch(&sql).map_err(|e| error(&e, None));
                let _ = reply.send(r);
            }
        }
        None
    }

    fn txn(&mut self, txn: Txn) -> Result<(), Refusal> {
        if txn == Txn::Restore {
            if !self.in_txn || self.conn.execute_batch("SELECT 1").is_ok() {
                return Ok(());
            }
            let _ = self.conn.execute_batch("ROLLBACK");
            let r = self
                .conn
                .execute_batch("BEGIN TRANSACTION READ ONLY")
                .map_err(|e| error(&e, None));
            self.in_txn = r.is_ok();
            return r;
        }
        let sql = match (txn, self.in_txn) {
            (Txn::Begin, false) => "BEGIN TRANSACTION READ ONLY",
            (Txn::Commit, true) => "COMMIT",
            (Txn::Rollback, true) => "ROLLBACK",
            // Postgres warns and carries on: nothing to do here either.
            _ => return Ok(()),
        };
        let r = self.conn.execute_batch(sql).map_err(|e| error(&e, None));
        self.in_txn = match txn {
            Txn::Begin => r.is_ok(),
            Txn::Commit | Txn::Rollback | Txn::Restore => false,
        };
        r
    }

    /// Runs a statement and serves its chunks until it ends or another job arrives.
    fn run(
        &mut self,
        id: u64,
        statement: Statement,
        reply: oneshot::Sender<Result<Described, Refusal>>,
        jobs: &mpsc::Receiver<Job>,
    ) -> Option<Job> {
        let own_txn = !self.in_txn;
        if own_txn {
            if let Err(e) = self.conn.execute_batch("BEGIN TRANSACTION READ ONLY") {
                let _ = reply.send(Err(error(&e, None)));
                return None;
            }
        }
        self.shared.set_running(id);
        if let Some(why) = self.shared.stopped() {
            // Stopped before it could start (its timeout passed while it waited).
            self.shared.set_running(0);
            let _ = reply.send(Err(stopped(why)));
            if own_txn {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            return None;
        }
        let (pending, ok) = stream(&self.conn, &self.shared, id, statement, reply, jobs);
        self.shared.set_running(0);
        if own_txn {
            let end = if ok { "COMMIT" } else { "ROLLBACK" };
            if let Err(e) = self.conn.execute_batch(end) {
                debug!(error = %e, "ending a statement's transaction");
            }
        }
        pending
    }
}

/// Postgres's `out_of_memory`.
pub const OUT_OF_MEMORY: &str = "53200";

/// A DuckDB error as the Postgres error closest to it.
pub fn error(e: &duckdb::Error, stopped_for: Option<Stop>) -> Refusal {
    let message = e.to_string();
    if let Some(why) = stopped_for.filter(|_| message.contains("nterrupt")) {
        return stopped(why);
    }
    if message.contains("Out of Memory Error") {
        // DuckDB's message names its memory_limit, its temporary directory and how to
        // change them: the server's business, not the client's.
        return Refusal {
            sqlstate: OUT_OF_MEMORY,
            message: "out of memory: the query needs more than the warehouse's memory limit allows; aggregate or filter it".into(),
        };
    }
    let sqlstate = [
        ("Parser Error", "42601"),
        ("Catalog Error", "42P01"),
        ("Binder Error", "42703"),
        ("Conversion Error", "22P02"),
        ("Invalid Input Error", "22023"),
        ("Out of Range Error", "22003"),
        ("Out of Memory Error", "53200"),
        ("Constraint Error", "23000"),
        ("Permission Error", "42501"),
        ("TransactionContext Error", "25000"),
        ("INTERRUPT Error", "57014"),
    ]
    .iter()
    .find(|(prefix, _)| message.contains(prefix))
    .map_or("XX000", |(_, state)| state);
    Refusal { sqlstate, message }
}

fn internal(e: &dyn std::fmt::Display) -> Refusal {
    Refusal {
        sqlstate: sqlstate::INTERNAL,
        message: format!("starting the connection's query thread: {e}"),
    }
}
