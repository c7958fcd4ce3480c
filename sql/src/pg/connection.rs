//! One Postgres connection, from accept to close: TLS negotiation (pgwire's), then the
//! socket wrapped in a [`Guard`] that hands pgwire only whole, checked messages, then
//! pgwire's message loop, bounded in time before login (`sql.auth_timeout`) and ended
//! when the client hangs up.
//!
//! The loop is pgwire's `process_socket` (pgwire 0.42), which takes the TCP stream
//! whole: sluice needs to stand between TLS and the framing to see each message's length
//! before it is buffered, so it runs the same steps with pgwire's public parts
//! (`negotiate_tls`, `process_message`, `process_error`).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::ErrorInfo;
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::server::{negotiate_tls, process_error, process_message, MaybeTls};
use pgwire::tokio::TlsAcceptor;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use super::conn::Conn;
use super::frames::Limits;
use super::guard::Guard;
use super::server::Handlers;
use super::startup::Startup;
use crate::gate::Vetted;
use crate::metrics::AuthFailure;

/// What a connection needs besides its socket.
pub struct Setup {
    pub handlers: Arc<Handlers>,
    pub tls: Option<TlsAcceptor>,
    pub conn: Arc<Conn>,
    pub limits: Limits,
    pub auth_timeout: Duration,
    pub peer: SocketAddr,
}

/// Serves one client until it leaves, is refused, or does not log in in time.
pub async fn serve(tcp: TcpStream, setup: Setup) -> io::Result<()> {
    // However this ends (the listener stopping drops it), the watcher ends with it.
    let _ended = setup.conn.gone.clone().drop_guard();
    let metrics = setup.handlers.shared.service.metrics.clone();
    let peer = setup.peer.to_string();
    if let Some(watch) = duplicate(&tcp) {
        tokio::spawn(watch_hang_up(watch, setup.conn.clone()));
    }
    let result = run(tcp, &setup).await;
    setup.conn.gone.cancel();
    if let Some(v) = setup.conn.violation() {
        metrics.rejected_message(v.reason, &v.message, &peer);
    }
    match result {
        Err(Ended::LoginTimeout) => {
            metrics.auth_failed("postgres", AuthFailure::Timeout, "", &peer);
            Ok(())
        }
        Err(Ended::Io(e)) => Err(e),
        Ok(()) => Ok(()),
    }
}

enum Ended {
    LoginTimeout,
    Io(io::Error),
}

impl From<io::Error> for Ended {
    fn from(e: io::Error) -> Self {
        Ended::Io(e)
    }
}

async fn run(tcp: TcpStream, setup: &Setup) -> Result<(), Ended> {
    let login = tokio::time::sleep(setup.auth_timeout);
    tokio::pin!(login);
    let negotiated = tokio::select! {
        _ = &mut login => return Err(Ended::LoginTimeout),
        s = negotiate_tls::<Vetted>(tcp, setup.tls.clone()) => s?,
    };
    // No TLS configured, yet the client opened with a TLS handshake: nothing to say.
    let Some(negotiated) = negotiated else {
        return Ok(());
    };
    let parts = negotiated.into_parts();
    if matches!(parts.io, MaybeTls::Tls(_)) && !parts.read_buf.is_empty() {
        // Bytes sent in the clear before the TLS handshake must not be read as if they
        // had come over TLS (CVE-2021-23214).
        return Ok(());
    }
    let guard = Guard::new(parts.io, parts.read_buf, setup.limits, setup.conn.clone());
    let mut guarded = FramedParts::new(guard, parts.codec);
    guarded.write_buf = parts.write_buf;
    let mut socket = Framed::from_parts(guarded);
    socket.session_extensions().insert(setup.conn.clone());
    messages(&mut socket, setup, login).await
}

type Socket = Framed<Guard<MaybeTls>, pgwire::tokio::server::PgWireMessageServerCodec<Vetted>>;

/// pgwire's message loop (its `process_socket_messages`), with the login deadline and
/// the client's hang-up.
async fn messages(
    socket: &mut Socket,
    setup: &Setup,
    mut login: std::pin::Pin<&mut tokio::time::Sleep>,
) -> Result<(), Ended> {
    // The handlers by their own types (pgwire's trait returns opaque ones, whose
    // statement type the loop cannot name).
    let shared = &setup.handlers.shared;
    let handlers = Arc::new(Handlers {
        shared: shared.clone(),
    });
    let startup = Arc::new(Startup::new(handlers.clone(), &shared.security));
    let copy = setup.handlers.copy_handler();
    let conn = &setup.conn;
    loop {
        let msg = tokio::select! {
            biased;
            msg = socket.next() => msg,
            _ = &mut login, if !conn.is_authenticated() => return Err(Ended::LoginTimeout),
            _ = conn.gone.cancelled() => return Ok(()),
        };
        let Some(Ok(msg)) = msg else {
            return refused(socket, conn).await;
        };
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        let is_extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(is_extended) => is_extended,
            _ => msg.is_extended_query(),
        };
        let is_cancel_request = matches!(msg, PgWireFrontendMessage::CancelRequest(_));
        let processed = tokio::select! {
            _ = conn.gone.cancelled() => return Ok(()),
            r = process_message(
                msg,
                socket,
                startup.clone(),
                handlers.clone(),
                handlers.clone(),
                copy.clone(),
                handlers.clone(),
            ) => r,
        };
        if let Err(e) = processed {
            let is_fatal = e.is_fatal();
            process_error(socket, e, is_extended_query).await?;
            if is_fatal {
                return Ok(());
            }
        }
        if is_cancel_request {
            return Ok(());
        }
    }
}

/// The end of a connection whose read failed: if the guard refused a message, the client
/// hears why (a `FATAL` error, after whatever pgwire had queued).
async fn refused(socket: &mut Socket, conn: &Conn) -> Result<(), Ended> {
    if let Some(v) = conn.violation() {
        let info = ErrorInfo::new("FATAL".into(), v.sqlstate.into(), v.message);
        let _ = socket
            .send(PgWireBackendMessage::ErrorResponse(info.into()))
            .await;
    }
    Ok(())
}

/// Waits for the client to hang up (its socket's read side closed, seen on a duplicate of
/// its descriptor, from which nothing is read; a client that only shuts down its writing
/// side counts as gone too, as with Postgres's `client_connection_check_interval`), then
/// stops what it runs.
async fn watch_hang_up(watch: TcpStream, conn: Arc<Conn>) {
    loop {
        tokio::select! {
            _ = conn.gone.cancelled() => return,
            ready = watch.ready(Interest::READABLE) => {
                let Ok(ready) = ready else {
                    return;
                };
                if ready.is_read_closed() {
                    conn.hung_up();
                    return;
                }
                // Data the client sent, which pgwire reads: wait for the next change.
                let _ = watch.try_io(Interest::READABLE, || {
                    Err::<(), _>(io::ErrorKind::WouldBlock.into())
                });
            }
        }
    }
}

/// A second handle on `tcp`'s socket, registered on its own.
fn duplicate(tcp: &TcpStream) -> Option<TcpStream> {
    let fd = tcp.as_fd().try_clone_to_owned().ok()?;
    let std = std::net::TcpStream::from(fd);
    std.set_nonblocking(true).ok()?;
    TcpStream::from_std(std).ok()
}
