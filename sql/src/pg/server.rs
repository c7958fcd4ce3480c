//! The listener: accepts connections until stopped (at most `sql.max_unauthenticated`
//! of them not yet logged in), serves each one ([`super::connection`]), and routes cancel
//! requests to the statement they name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::PgWireServerHandlers;
use pgwire::messages::cancel::CancelRequest;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::auth::Security;
use super::conn::Conn;
use super::connection;
use super::frames::Limits;
use super::startup::Startup;
use crate::reader::{Reader, Stop};
use crate::service::Service;

/// What a cancel request names a connection by: its pid and secret key.
pub type CancelKey = (i32, Vec<u8>);

/// What every Postgres connection shares.
pub struct Shared {
    pub service: Arc<Service>,
    pub security: Security,
    /// Running clients by (pid, secret key), for cancel requests.
    pub(super) readers: Mutex<HashMap<CancelKey, Weak<Reader>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("service", &self.service)
            .field("security", &self.security)
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

/// Serves Postgres clients on `listener` until `stop`, secured by `security`.
pub async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    security: Security,
    stop: CancellationToken,
) {
    let tls = security.tls.clone();
    let limits = service.limits.clone();
    let unauthenticated = Arc::new(Semaphore::new(limits.max_unauthenticated));
    let shared = Arc::new(Shared {
        service,
        security,
        readers: Mutex::default(),
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
        // A place among the connections that have not logged in yet; none left: the
        // connection is closed at once, before anything is read from it.
        let Ok(pending) = unauthenticated.clone().try_acquire_owned() else {
            handlers
                .shared
                .service
                .metrics
                .unauthenticated_refused(&peer.to_string(), limits.max_unauthenticated);
            continue;
        };
        let setup = connection::Setup {
            handlers: handlers.clone(),
            tls: tls.clone(),
            conn: Arc::new(Conn::new(Some(pending))),
            limits: Limits::new(limits.max_query_size),
            auth_timeout: limits.auth_timeout,
            peer,
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                r = connection::serve(socket, setup) => {
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
        let handlers = Arc::new(Handlers {
            shared: self.shared.clone(),
        });
        Arc::new(Startup::new(handlers, &self.shared.security))
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(Handlers {
            shared: self.shared.clone(),
        })
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
