//! What every client of the live SQL shares, whichever protocol it speaks (Postgres or
//! HTTP): the warehouse connection each client's connection is cloned from, what may be
//! read, the limits, the connection slots, the metrics.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use duckdb::Connection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::gate::{Refusal, Scope};
use crate::metrics::Metrics;
use crate::pg::auth::Users;
use crate::reader::Reader;

/// The limits every client runs under.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Clients connected (Postgres) or queries running (HTTP) at once.
    pub max_connections: usize,
    /// A statement's `statement_timeout` until its session sets its own (`None`: none).
    pub statement_timeout: Option<Duration>,
    /// A session's `idle_in_transaction_session_timeout` until it sets its own.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// Rows one result may have; a longer one ends with an error (`54000`) after this
    /// many were sent (`None`: no limit).
    pub max_result_rows: Option<u64>,
    /// Bytes a query's text may have (with its parameters, over Postgres); a longer one
    /// is refused before it is buffered.
    pub max_query_size: usize,
    /// Postgres connections that may be open at once before logging in; more are closed
    /// at once.
    pub max_unauthenticated: usize,
    /// A Postgres connection not logged in by then is closed (`sql.auth_timeout`).
    pub auth_timeout: Duration,
}

impl Limits {
    /// Limits for one local client (`sluice sql` without a daemon): no timeouts, one
    /// connection.
    pub fn local(max_query_size: usize) -> Limits {
        Limits {
            max_connections: 1,
            statement_timeout: None,
            idle_in_transaction_timeout: None,
            max_result_rows: None,
            max_query_size,
            max_unauthenticated: 1,
            auth_timeout: Duration::from_secs(60),
        }
    }
}

/// The live SQL service: one per daemon.
pub struct Service {
    base: Mutex<Connection>,
    pub scope: Scope,
    pub limits: Limits,
    /// Reported as Postgres's `server_version` (`16.6 (sluice 0.1.0)`).
    pub server_version: String,
    slots: Arc<Semaphore>,
    /// Turns to vet a large query ([`crate::reader::LARGE_VETS`]).
    large_vets: Arc<Semaphore>,
    pub metrics: Metrics,
    /// Who may read (`None`: anyone who can connect; the listeners are loopback then).
    pub users: Option<Arc<Users>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("scope", &self.scope)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Clients read through clones of `base` (a connection to the warehouse).
    pub fn new(
        base: Connection,
        scope: Scope,
        limits: Limits,
        server_version: String,
        users: Option<Arc<Users>>,
    ) -> Self {
        Service {
            users,
            base: Mutex::new(base),
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            large_vets: Arc::new(Semaphore::new(crate::reader::LARGE_VETS)),
            scope,
            limits,
            server_version,
            metrics: Metrics::new(),
        }
    }

    /// A slot under `max_connections`, held while the client is connected (or the HTTP
    /// query runs); `53300`, like Postgres, when every one is taken.
    pub fn slot(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            self.metrics.refused();
            Refusal {
                sqlstate: "53300",
                message: format!(
                    "sorry, too many clients already (sql.max_connections = {})",
                    self.limits.max_connections
                ),
            }
        })
    }

    /// A client's own connection and query thread, named `name`.
    pub fn reader(&self, name: String) -> Result<Reader, Refusal> {
        let base = self.base.lock().map_err(|_| Refusal {
            sqlstate: "XX000",
            message: "the warehouse connection is unusable".into(),
        })?;
        let version = format!("PostgreSQL {}", self.server_version);
        Reader::start(
            &base,
            name,
            &version,
            self.limits.max_result_rows,
            self.large_vets.clone(),
        )
    }
}
