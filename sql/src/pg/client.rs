//! One connection's state, kept in pgwire's per-session extensions: the DuckDB thread,
//! the session parameters, the result left open by `Describe` for the `Execute` that
//! follows, and the connection slot it holds.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, Stream};
use pgwire::api::ClientInfo;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::messages::response::TransactionStatus;
use tokio::sync::OwnedSemaphorePermit;
use tracing::info;

use super::server::Shared;
use super::settings::Settings;
use crate::gate::{Refusal, Scope};
use crate::metrics::Outcome;
use crate::reader::{Reader, Txn};

/// A connected client.
#[derive(Debug)]
pub struct Client {
    pub reader: Arc<Reader>,
    pub settings: Mutex<Settings>,
    /// The result a `Describe` of a portal started, for the `Execute` that follows.
    pub open: Mutex<Option<Open>>,
    /// The named statements it keeps, bounded.
    pub prepared: super::prepared::Prepared,
    /// The result shape each statement was described with.
    pub shapes: super::shapes::Shapes,
    /// A `ROLLBACK TO SAVEPOINT` just ended the transaction's error state (the protocol
    /// handlers then report the transaction as open again).
    pub restored: std::sync::atomic::AtomicBool,
    /// Counts the client's messages, so an idle timer knows nothing came since it was set.
    activity: std::sync::atomic::AtomicU64,
    /// The transaction was ended for idling; the next message ends the connection.
    terminated: std::sync::atomic::AtomicBool,
    pub shared: Arc<Shared>,
    /// The connection slot; given back when the client goes.
    _permit: OwnedSemaphorePermit,
    /// This connection's key in the cancel registry.
    key: super::server::CancelKey,
}

/// A result started but not yet handed to `Execute`.
#[derive(Debug, Clone)]
pub struct Open {
    /// Which portal (its name and the address of its state, so a re-bound portal of the
    /// same name does not match).
    pub portal: (String, usize),
    pub id: u64,
    pub columns: Vec<super::types::Column>,
}

impl Client {
    pub fn new(
        reader: Reader,
        settings: Settings,
        shared: Arc<Shared>,
        permit: OwnedSemaphorePermit,
        key: super::server::CancelKey,
    ) -> Self {
        // Counted here and uncounted on drop, whatever happens in between.
        shared.service.metrics.connected();
        Client {
            reader: Arc::new(reader),
            settings: Mutex::new(settings),
            open: Mutex::default(),
            shapes: Default::default(),
            prepared: Default::default(),
            restored: Default::default(),
            activity: Default::default(),
            terminated: Default::default(),
            shared,
            _permit: permit,
            key,
        }
    }

    /// The client behind a connection (set up at startup).
    pub fn of<C: ClientInfo>(client: &C) -> PgWireResult<Arc<Client>> {
        client
            .session_extensions()
            .get::<Client>()
            .ok_or_else(|| fatal("08003", "the connection was not set up"))
    }

    /// A message from the client: refused (the connection ends, 25P03 as Postgres) if its
    /// transaction was ended for idling, else noted so that idle timers set before it do
    /// nothing.
    pub fn touch(&self) -> PgWireResult<()> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.terminated.load(Relaxed) {
            return Err(fatal(
                "25P03",
                "terminating connection due to idle-in-transaction timeout",
            ));
        }
        self.activity.fetch_add(1, Relaxed);
        Ok(())
    }

    /// After a message that leaves a transaction open: if nothing comes for the session's
    /// `idle_in_transaction_session_timeout`, the transaction is rolled back (its snapshot
    /// would hold back DuckDB's checkpoints) and the connection is ended at its next
    /// message.
    pub fn arm_idle(self: &Arc<Self>, status: TransactionStatus) {
        use std::sync::atomic::Ordering::Relaxed;
        let after = self
            .settings
            .lock()
            .ok()
            .and_then(|s| s.idle_in_transaction_timeout());
        let (Some(after), false) = (after, matches!(status, TransactionStatus::Idle)) else {
            return;
        };
        let seen = self.activity.load(Relaxed);
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let Some(me) = me.upgrade() else { return };
            if me.activity.load(Relaxed) != seen {
                return;
            }
            me.terminated.store(true, Relaxed);
            let ended = me.reader.txn(Txn::Rollback).await;
            info!(ended = ended.is_ok(), after = ?after,
                "ended a SQL client's transaction idle longer than idle_in_transaction_session_timeout");
        });
    }

    /// Whether a `ROLLBACK TO SAVEPOINT` ran since the last call.
    pub fn take_restored(&self) -> bool {
        self.restored
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn scope(&self) -> Scope {
        let search_path = self
            .settings
            .lock()
            .map(|s| s.search_path(&self.shared.service.scope.schemas))
            .unwrap_or_default();
        Scope {
            schemas: self.shared.service.scope.schemas.clone(),
            search_path,
        }
    }

    pub fn statement_timeout(&self) -> Option<Duration> {
        self.settings
            .lock()
            .ok()
            .and_then(|s| s.statement_timeout())
    }

    /// Stops statement `id` when the session's statement timeout passes.
    pub fn arm_timeout(&self, id: u64) {
        if let Some(after) = self.statement_timeout() {
            self.reader.stop_after(id, after);
        }
    }

    /// The rows of result `id`, pulled chunk by chunk from the DuckDB thread as the
    /// client reads them. A failure mid-way is an error item, never a short result.
    /// The statement's outcome and duration (from `started`) are recorded when it ends.
    pub fn rows(
        &self,
        id: u64,
        started: Instant,
    ) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
        let reader = self.reader.clone();
        let shared = self.shared.clone();
        stream::unfold(
            (reader, Vec::<DataRow>::new().into_iter(), false),
            move |(reader, mut chunk, done)| {
                let shared = shared.clone();
                async move {
                    loop {
                        // Rows fetched before the statement was stopped are not sent
                        // (an ended result has already said why, once).
                        if let Some(e) = reader.stopped_result(id).filter(|_| !done) {
                            let outcome = Outcome::of(&e);
                            shared.service.metrics.statement(outcome, started.elapsed());
                            let none = Vec::new().into_iter();
                            return Some((Err(user_error(e)), (reader, none, true)));
                        }
                        if let Some(row) = chunk.next() {
                            return Some((Ok(row), (reader, chunk, done)));
                        }
                        if done {
                            return None;
                        }
                        match reader.next(id).await {
                            Ok(Some(rows)) => {
                                shared.service.metrics.rows_sent(rows.len());
                                chunk = rows.into_iter();
                            }
                            Ok(None) => {
                                shared
                                    .service
                                    .metrics
                                    .statement(Outcome::Ok, started.elapsed());
                                return None;
                            }
                            Err(e) => {
                                shared
                                    .service
                                    .metrics
                                    .statement(Outcome::of(&e), started.elapsed());
                                return Some((Err(user_error(e)), (reader, chunk, true)));
                            }
                        }
                    }
                }
            },
        )
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shared.unregister(&self.key);
        self.shared.service.metrics.disconnected();
    }
}

/// How a failed statement is counted.
/// A refusal or DuckDB error as the client sees it.
pub fn user_error(e: Refusal) -> PgWireError {
    let changed = e.message == super::shapes::CACHED_PLAN_CHANGED;
    let mut info = ErrorInfo::new("ERROR".into(), e.sqlstate.into(), e.message);
    if changed {
        info.routine = Some(super::shapes::ROUTINE.into());
    }
    PgWireError::UserError(Box::new(info))
}

/// An error that ends the connection.
pub fn fatal(code: &str, message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message.into(),
    )))
}
