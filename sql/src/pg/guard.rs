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
//! A refused message ends the connection: the client gets a `FATAL` error response
//! naming why, and pgwire reads an error, which closes the socket.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
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
    /// A refusal being written to the client, and how much of it is written.
    refusing: Option<(Vec<u8>, usize)>,
    /// The connection was refused: every later read fails.
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
            refusing: None,
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
        self.refusing = Some((fatal(&v), 0));
        self.refused = Some(v.message);
        self.buf.clear();
        self.release = 0;
    }
}

/// A startup packet that starts a session (not an SSL, GSS or cancel request).
fn is_protocol(code: &[u8]) -> bool {
    code.first() == Some(&0) && code.get(1) == Some(&3)
}

/// A `FATAL` ErrorResponse for `v`, as Postgres sends before closing.
fn fatal(v: &Violation) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', v.sqlstate),
        (b'M', v.message.as_str()),
    ] {
        body.put_u8(field);
        body.extend_from_slice(value.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut m = vec![b'E'];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(&body);
    m
}

impl<S: AsyncRead + AsyncWrite + Unpin> Guard<S> {
    /// Writes the refusal, then fails the read.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((bytes, written)) = &mut self.refusing {
            while *written < bytes.len() {
                match ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..])) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => *written += n,
                }
            }
            let _ = ready!(Pin::new(&mut self.inner).poll_flush(cx));
            self.refusing = None;
        }
        let message = self.refused.clone().unwrap_or_default();
        Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, message)))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.refused.is_some() {
                return this.poll_refusal(cx);
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
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let conn = Arc::new(Conn::new(None));
        if authenticated {
            conn.authenticated();
        }
        let mut guard = Guard::new(server, BytesMut::new(), Limits::new(64), conn);
        client.write_all(&sent).await.expect("write");
        client.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        let result = guard.read_to_end(&mut got).await.map(|_| ());
        drop(guard);
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.expect("read back");
        (got, back, result)
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
        assert_eq!(back[0], b'E');
        let text = String::from_utf8_lossy(&back);
        assert!(text.contains("54000") && text.contains("FATAL"), "{text}");
    }

    #[tokio::test]
    async fn before_login_only_password_messages_pass() {
        let mut sent = startup();
        let ok = sent.len();
        sent.extend(typed(b'Q', b"SELECT 1\0"));
        let (got, _, result) = through(sent.clone(), false).await;
        assert_eq!(got, sent[..ok]);
        assert!(result.is_err());
    }
}
