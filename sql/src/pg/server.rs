//! The listener: accepts connections until stopped, sets each one up at startup (a slot
//! under `max_connections`, a DuckDB thread), and routes cancel requests to the
//! statement they name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use duckdb::Connection;
use futures::Sink;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ClientInfo, PgWireServerHandlers};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::client::{fatal, Client};
use super::settings::Settings;
use crate::gate::Scope;
use crate::metrics::Metrics;
use crate::reader::{Reader, Stop};

/// How the listener serves.
#[derive(Debug, Clone)]
pub struct Options {
    /// What clients may read, and where unqualified names resolve by default.
    pub scope: Scope,
    pub max_connections: usize,
    /// A session's `statement_timeout` until it sets its own (`None`: no limit).
    pub statement_timeout: Option<Duration>,
    /// A session's `idle_in_transaction_session_timeout` until it sets its own.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// Reported to clients as `server_version` (`SHOW server_version`).
    pub server_version: String,
}

/// What a cancel request names a connection by: its pid and secret key.
pub type CancelKey = (i32, Vec<u8>);

/// What every connection shares.
pub struct Shared {
    /// The warehouse connection each client's connection is cloned from.
    base: Mutex<Connection>,
    pub scope: Scope,
    pub options: Options,
    slots: Arc<Semaphore>,
    /// Running clients by (pid, secret key), for cancel requests.
    readers: Mutex<HashMap<CancelKey, Weak<Reader>>>,
    pub metrics: Metrics,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub fn unregister(&self, key: &CancelKey) {
        if let Ok(mut readers) = self.readers.lock() {
            readers.remove(key);
        }
    }
}

/// Serves Postgres clients on `listener` until `stop`; each client reads through its own
/// clone of `base`.
pub async fn serve(
    listener: TcpListener,
    base: Connection,
    options: Options,
    stop: CancellationToken,
) {
    let shared = Arc::new(Shared {
        base: Mutex::new(base),
        scope: options.scope.clone(),
        slots: Arc::new(Semaphore::new(options.max_connections)),
        options,
        readers: Mutex::default(),
        metrics: Metrics::new(),
    });
    let handlers = Arc::new(Handlers { shared });
    loop {
        let (socket, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accepting a SQL connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let handlers = handlers.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                r = pgwire::tokio::process_socket(socket, None, handlers) => {
                    if let Err(e) = r {
                        debug!(peer = %peer, error = %e, "SQL connection ended with an error");
                    }
                }
            }
        });
    }
    info!("SQL listener stopped");
}

/// pgwire's handlers, all backed by the same shared state.
#[derive(Debug)]
pub struct Handlers {
    pub shared: Arc<Shared>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::new(Handlers {
            shared: self.shared.clone(),
        })
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(Handlers {
            shared: self.shared.clone(),
        })
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::new(Handlers {
            shared: self.shared.clone(),
        })
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(Handlers {
            shared: self.shared.clone(),
        })
    }
}

#[async_trait]
impl NoopStartupHandler for Handlers {
    /// Takes a connection slot and starts the client's DuckDB thread; refuses the
    /// connection (53300, like Postgres) when every slot is taken.
    async fn post_startup<C>(
        &self,
        client: &mut C,
        _message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let shared = &self.shared;
        let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
            shared.metrics.refused();
            return Err(fatal(
                "53300",
                &format!(
                    "sorry, too many clients already (sql.max_connections = {})",
                    shared.options.max_connections
                ),
            ));
        };
        let (pid, secret) = client.pid_and_secret_key();
        let key = (pid, secret.to_bytes().to_vec());
        let reader = {
            let base = shared
                .base
                .lock()
                .map_err(|_| fatal("XX000", "the warehouse connection is unusable"))?;
            let version = format!("PostgreSQL {}", shared.options.server_version);
            Reader::start(&base, format!("sql-{pid}"), &version)
                .map_err(|e| fatal(e.sqlstate, &e.message))?
        };
        let mut settings = Settings::new(
            shared.options.statement_timeout,
            shared.options.idle_in_transaction_timeout,
            &shared.options.server_version,
        );
        settings.apply_startup(client.metadata());
        let search_path = settings.search_path(&shared.scope.schemas);
        let values = settings.all();
        let new = Client::new(reader, settings, shared.clone(), permit, key.clone());
        new.reader
            .session(search_path, values)
            .await
            .map_err(|e| fatal(e.sqlstate, &e.message))?;
        if let Ok(mut readers) = shared.readers.lock() {
            readers.insert(key, Arc::downgrade(&new.reader));
        }
        client.session_extensions().insert(new);
        Ok(())
    }
}

#[async_trait]
impl CancelHandler for Handlers {
    /// Interrupts what the named connection is running (its DuckDB query stops with
    /// 57014); an unknown key is ignored, as Postgres does.
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes().to_vec());
        let reader = self
            .shared
            .readers
            .lock()
            .ok()
            .and_then(|r| r.get(&key).and_then(Weak::upgrade));
        match reader {
            Some(reader) => reader.stop(None, Stop::Cancel),
            None => debug!(
                pid = request.pid,
                "cancel request for no running connection"
            ),
        }
    }
}
