//! The socket as pgwire sees it: one whole, checked message at a time.
//!
//! [`Guard`] sits between the connection (TLS or plain) and pgwire's framing. It reads a
//! message's header first and refuses a length the connection's phase does not allow
//! before buffering the body (so an unauthenticated client cannot make sluice hold a
//! 1 GiB `Query`), then reads the body and checks its fields ([`super::frames`]), and
//! only then hands the message on. pgwire never sees the next message before it has
//! handled this one, so the phase a message is checked in is exact: the startup packet,
//! then password messages until the connection's [`Conn`] says the password is proven,
//! then queries.
//!
//! A refused message ends the connection: the read fails, and the connection's loop
//! ([`super::connection`]) sends the client a `FATAL` error response naming why, through
//! pgwire's sink after whatever pgwire had queued, then closes the socket.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::conn::Conn;
use super::frames::{self, Limits, Phase, Violation};

/// How much is read from the socket at once.
const CHUNK: usize = 8192;

/// A connection's socket, handing on whole checked messages.
#[derive(Debug)]
pub struct Guard<S> {
    inner: S,
    /// Read from the socket, not yet handed on.
    buf: BytesMut,
    /// The first bytes of `buf` are a checked message (or its rest) to hand on.
    release: usize,
    /// The next message is the startup packet (or SSL/GSS/cancel request).
    startup: bool,
    /// The next password message opens SASL.
    sasl_initial: bool,
    limits: Limits,
    conn: Arc<Conn>,
    /// The connection was refused: every later read fails with this.
    refused: Option<String>,
}

impl<S> Guard<S> {
    /// Guards `inner`; `read` holds bytes already read from it (they are checked too).
    pub fn new(inner: S, read: BytesMut, limits: Limits, conn: Arc<Conn>) -> Self {
        Guard {
            inner,
            buf: read,
            release: 0,
            startup: true,
            sasl_initial: true,
            limits,
            conn,
            refused: None,
        }
    }

    fn phase(&self) -> Phase {
        if self.startup {
            Phase::Startup
        } else if self.conn.is_authenticated() {
            Phase::Session
        } else {
            Phase::Login {
                sasl_initial: self.sasl_initial,
            }
        }
    }

    /// The next whole message in `buf`, checked: its size; `None` while incomplete.
    fn next_message(&mut self) -> Result<Option<usize>, Violation> {
        let phase = self.phase();
        let head = frames::header_len(phase);
        if self.buf.len() < head {
            return Ok(None);
        }
        let tag = (phase != Phase::Startup).then(|| self.buf[0]);
        let at = head - 4;
        let b = &self.buf[at..head];
        let length = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let total = frames::size(phase, tag, length, &self.limits)?;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        frames::check(phase, tag, &self.buf[head..total])?;
        match phase {
            Phase::Startup if is_protocol(&self.buf[4..8]) => self.startup = false,
            Phase::Login { .. } if tag == Some(b'p') => self.sasl_initial = false,
            _ => {}
        }
        Ok(Some(total))
    }

    fn refuse(&mut self, v: Violation) {
        self.conn.violated(&v);
        self.refused = Some(v.message);
        self.buf.clear();
        self.release = 0;
    }
}

/// A startup packet that starts a session (not an SSL, GSS or cancel request).
fn is_protocol(code: &[u8]) -> bool {
    code.first() == Some(&0) && code.get(1) == Some(&3)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if let Some(message) = &this.refused {
                let e = io::Error::new(io::ErrorKind::InvalidData, message.clone());
                return Poll::Ready(Err(e));
            }
            if this.release > 0 {
                let n = this.release.min(out.remaining());
                out.put_slice(&this.buf[..n]);
                this.buf.advance(n);
                this.release -= n;
                return Poll::Ready(Ok(()));
            }
            match this.next_message() {
                Ok(Some(total)) => {
                    this.release = total;
                    continue;
                }
                Ok(None) => {}
                Err(v) => {
                    this.refuse(v);
                    continue;
                }
            }
            let mut chunk = [0u8; CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The client is gone; a message it left half-sent is dropped with it.
                return Poll::Ready(Ok(()));
            }
            this.buf.extend_from_slice(read.filled());
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use pgwire::messages::{DecodeContext, PgWireFrontendMessage};
    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn startup() -> Vec<u8> {
        let mut m = vec![0, 0, 0, 0, 0, 3, 0, 0];
        m.extend_from_slice(b"user\0sluice\0\0");
        let len = m.len() as i32;
        m[..4].copy_from_slice(&len.to_be_bytes());
        m
    }

    fn typed(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    /// What the guard hands on, and what it writes back, for `sent`.
    async fn through(sent: Vec<u8>, authenticated: bool) -> (Vec<u8>, Vec<u8>, io::Result<()>) {
        let (got, back, result, _) = through_with(sent, authenticated).await;
        (got, back, result)
    }

    /// [`through`], and the connection's state after.
    async fn through_with(
        sent: Vec<u8>,
        authenticated: bool,
    ) -> (Vec<u8>, Vec<u8>, io::Result<()>, Arc<Conn>) {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let conn = Arc::new(Conn::new(None));
        if authenticated {
            conn.authenticated();
        }
        let mut guard = Guard::new(server, BytesMut::new(), Limits::new(64), conn.clone());
        client.write_all(&sent).await.expect("write");
        client.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        let result = guard.read_to_end(&mut got).await.map(|_| ());
        drop(guard);
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.expect("read back");
        (got, back, result, conn)
    }

    #[tokio::test]
    async fn whole_checked_messages_pass_unchanged() {
        let mut sent = startup();
        sent.extend(typed(b'Q', b"SELECT 1\0"));
        sent.extend(typed(b'X', b""));
        let (got, back, result) = through(sent.clone(), true).await;
        result.expect("no refusal");
        assert_eq!(got, sent);
        assert!(back.is_empty());
    }

    #[tokio::test]
    async fn a_refused_message_is_never_handed_on_and_the_client_hears_why() {
        let mut sent = startup();
        let ok = sent.len();
        // Longer than the 64-byte query limit: refused at its header.
        sent.extend(typed(b'Q', &[b'x'; 2000]));
        let (got, back, result) = through(sent.clone(), true).await;
        assert_eq!(got, sent[..ok], "only the startup packet is handed on");
        let e = result.expect_err("refused");
        assert!(e.to_string().contains("sql.max_query_size"), "{e}");
        // The guard writes nothing itself: the loop sends the error after pgwire's queue.
        assert!(back.is_empty());
    }

    #[tokio::test]
    async fn before_login_only_password_messages_pass() {
        let mut sent = startup();
        let ok = sent.len();
        sent.extend(typed(b'Q', b"SELECT 1\0"));
        let (got, _, result, conn) = through_with(sent.clone(), false).await;
        assert_eq!(got, sent[..ok]);
        assert!(result.is_err());
        let v = conn
            .violation()
            .expect("the violation is kept for the loop");
        assert_eq!((v.sqlstate, v.reason), ("08P01", "unexpected"));
    }

    /// A session's start and then messages of any shape, with lengths a little off.
    fn stream() -> impl Strategy<Value = (bool, Vec<u8>)> {
        let message = (frames::tests::tag(), frames::tests::pieces(), -3i32..4).prop_map(
            |(tag, body, off)| {
                let mut m = vec![tag];
                m.extend_from_slice(&(body.len() as i32 + 4 + off).to_be_bytes());
                m.extend_from_slice(&body);
                m
            },
        );
        (any::<bool>(), proptest::collection::vec(message, 1..6)).prop_map(|(auth, ms)| {
            let mut sent = startup();
            sent.extend(ms.concat());
            (auth, sent)
        })
    }

    /// pgwire decodes, message by message, what the guard handed on, as it would on a
    /// connection: it must not panic, and must find whole messages only.
    fn pgwire_takes(handed: &[u8], authenticated: bool) {
        let mut ctx = DecodeContext::default();
        ctx.awaiting_frontend_ssl = false;
        let mut buf = BytesMut::from(handed);
        let mut first_password = true;
        while !buf.is_empty() {
            let decoded = PgWireFrontendMessage::decode(&mut buf, &ctx);
            ctx.awaiting_frontend_startup = false;
            let Ok(Some(message)) = decoded else {
                panic!("the guard handed on a part of a message: {decoded:?}");
            };
            if let (false, PgWireFrontendMessage::PasswordMessageFamily(p)) =
                (authenticated, message)
            {
                let _ = match std::mem::take(&mut first_password) {
                    true => p.into_sasl_initial_response().map(|_| ()),
                    false => p.into_sasl_response().map(|_| ()),
                };
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(frames::tests::cases() / 4))]

        /// Whatever a client sends, what the guard hands on is whole messages that
        /// pgwire's decoders take without panicking, and a prefix of what was sent.
        #[test]
        fn what_the_guard_hands_on_never_panics_pgwire((authenticated, sent) in stream()) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let (handed, _, _) = runtime.block_on(through(sent.clone(), authenticated));
            prop_assert!(sent.starts_with(&handed));
            pgwire_takes(&handed, authenticated);
        }
    }
}
