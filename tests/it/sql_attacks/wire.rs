//! The Postgres wire protocol by hand, for the attacks no real client would send:
//! messages built byte by byte, read back one at a time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A raw connection to the SQL endpoint.
pub struct Wire {
    pub stream: TcpStream,
}

impl Wire {
    pub fn connect(port: u16) -> Wire {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        Wire { stream }
    }

    /// Sends `bytes`; a server that already closed may refuse them.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next message (type and body); `None` once the server has closed.
    pub fn read(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 5];
        self.stream.read_exact(&mut head).ok()?;
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        self.stream.read_exact(&mut body).ok()?;
        Some((head[0], body))
    }

    /// Messages up to ReadyForQuery (included) or the end of the connection.
    pub fn until_ready(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(m) = self.read() {
            let ready = m.0 == b'Z';
            out.push(m);
            if ready {
                break;
            }
        }
        out
    }

    /// Whether the server has closed the connection (reads end).
    pub fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.stream.read_to_end(&mut rest).is_ok()
    }

    /// Logs in without a password (an endpoint without users): the startup messages.
    pub fn login(port: u16) -> Wire {
        let mut w = Wire::connect(port);
        w.send(&startup("sluice")).expect("startup");
        let got = w.until_ready();
        assert_eq!(
            got.last().map(|m| m.0),
            Some(b'Z'),
            "no ReadyForQuery: {got:?}"
        );
        w
    }
}

/// A startup packet (protocol 3.0) for `user`.
pub fn startup(user: &str) -> Vec<u8> {
    let mut m = vec![0, 0, 0, 0, 0, 3, 0, 0];
    for (k, v) in [("user", user), ("database", "sluice")] {
        m.extend_from_slice(k.as_bytes());
        m.push(0);
        m.extend_from_slice(v.as_bytes());
        m.push(0);
    }
    m.push(0);
    let len = m.len() as i32;
    m[..4].copy_from_slice(&len.to_be_bytes());
    m
}

/// A typed message whose length field is right.
pub fn typed(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// A typed message's header claiming `len` bytes, with only `body` after it.
pub fn claiming(tag: u8, len: i32, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&len.to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// The SQLSTATE and message of an ErrorResponse body.
pub fn error(body: &[u8]) -> (String, String) {
    let mut code = String::new();
    let mut message = String::new();
    for field in body.split(|b| *b == 0) {
        match field.split_first() {
            Some((b'C', v)) => code = String::from_utf8_lossy(v).into(),
            Some((b'M', v)) => message = String::from_utf8_lossy(v).into(),
            _ => {}
        }
    }
    (code, message)
}

/// The first error among `messages`.
pub fn first_error(messages: &[(u8, Vec<u8>)]) -> Option<(String, String)> {
    messages.iter().find(|m| m.0 == b'E').map(|m| error(&m.1))
}

/// SCRAM's server-first message for `user` (it carries the salt: `r=...,s=...,i=...`):
/// the exchange is opened and left there.
pub fn scram_server_first(port: u16, user: &str) -> String {
    let mut w = Wire::connect(port);
    w.send(&startup(user)).expect("startup");
    let (tag, body) = w.read().expect("AuthenticationSASL");
    assert_eq!(
        (tag, &body[..4]),
        (b'R', &10i32.to_be_bytes()[..]),
        "{body:?}"
    );
    let first = b"n,,n=,r=fyko+d2lbbFgONRv9qkxdawL";
    let mut sasl = b"SCRAM-SHA-256\0".to_vec();
    sasl.extend_from_slice(&(first.len() as i32).to_be_bytes());
    sasl.extend_from_slice(first);
    w.send(&typed(b'p', &sasl)).expect("SASLInitialResponse");
    let (tag, body) = w.read().expect("AuthenticationSASLContinue");
    assert_eq!(
        (tag, &body[..4]),
        (b'R', &11i32.to_be_bytes()[..]),
        "{body:?}"
    );
    String::from_utf8_lossy(&body[4..]).into()
}
