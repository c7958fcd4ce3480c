//! The HTTP listener's connections, bounded: at most `http.max_connections` open at once
//! (more are closed as they arrive), and each closed when a request's headers have not
//! all arrived [`HEADER_TIMEOUT`] after it started waiting for them, which also ends
//! connections left idle between requests. (`axum::serve` sets neither bound: a client
//! sending half a header could hold a connection, and a descriptor, forever.) A request
//! body is read within [`super::query::BODY_TIMEOUT`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use sluice_core::text::LogLimit;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::telemetry;

/// Time a connection has to send a request's headers, from when sluice starts waiting
/// for them (a new connection, or the previous response sent).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Time connections have to finish their request at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    stop: CancellationToken,
) {
    telemetry::http_listening();
    let slots = Arc::new(Semaphore::new(max_connections));
    // Clients can make this happen at will: one line per interval, with a count.
    let refusals = LogLimit::new(Duration::from_secs(10));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, most likely: wait instead of spinning.
                    warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            telemetry::http_connection_refused();
            if let Some(others) = refusals.due() {
                warn!(%peer, max_connections, others_since_last_log = others,
                    "HTTP connection closed: http.max_connections are open");
            }
            continue;
        };
        // Handlers see who is asking (for the failed-login log), as with axum::serve's
        // `into_make_service_with_connect_info`.
        let service = TowerToHyperService::new(router.clone().layer(Extension(ConnectInfo(peer))));
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(tcp), service);
            tokio::pin!(conn);
            let ended = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    tokio::time::timeout(DRAIN, conn.as_mut()).await.unwrap_or(Ok(()))
                }
            };
            if let Err(e) = ended {
                debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
            drop(slot);
        });
    }
}
