//! The shape of a Postgres frontend message, checked before pgwire decodes it.
//!
//! pgwire trusts the lengths inside a message: a SASL response whose data length is larger
//! than the message, or a Bind whose parameter is, panics its decoder ("split_to out of
//! bounds"), and a message shorter than its own length field wraps around. So every
//! message is checked here first, whole: its length against what the connection's
//! [`Phase`] allows (Postgres caps the startup packet at 10,000 bytes), and every length
//! and count inside it against the bytes it really has, ending exactly at its end. A
//! message that fails is a [`Violation`]; the connection ends with it
//! ([`super::guard`]).

/// Where a connection is: what it may send next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the startup packet (untyped: a length, then a protocol code).
    Startup,
    /// After the startup packet, before the password is proven: only password messages.
    /// `sasl_initial`: the next one opens SASL (a mechanism name and its first data).
    Login { sasl_initial: bool },
    /// Logged in: queries.
    Session,
}

/// How long messages may be, by phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The startup packet, and every message before login (Postgres: 10,000 bytes).
    pub before_login: usize,
    /// A message carrying a query or its parameters (`Query`, `Parse`, `Bind`), after
    /// login: `sql.max_query_size` and room for the rest of the message.
    pub query: usize,
}

/// Postgres's own bound on the startup packet (`MAX_STARTUP_PACKET_LENGTH`).
pub const STARTUP_PACKET_MAX: usize = 10_000;

/// Room a query message needs besides the query text (names, counts, formats).
pub const QUERY_ENVELOPE: usize = 1024;

impl Limits {
    /// The limits with queries of at most `max_query_size` bytes.
    pub fn new(max_query_size: usize) -> Limits {
        Limits {
            before_login: STARTUP_PACKET_MAX,
            query: max_query_size.saturating_add(QUERY_ENVELOPE),
        }
    }
}

/// Why a message is refused: its SQLSTATE, a message for the client and the log, and a
/// reason for the metric's label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub sqlstate: &'static str,
    pub message: String,
    /// `too_long`, `malformed` or `unexpected`.
    pub reason: &'static str,
}

impl Violation {
    fn malformed(what: &str) -> Violation {
        Violation {
            sqlstate: "08P01",
            message: format!("invalid frontend message: {what}"),
            reason: "malformed",
        }
    }

    fn unexpected(message: String) -> Violation {
        Violation {
            sqlstate: "08P01",
            message,
            reason: "unexpected",
        }
    }
}

/// Protocol codes of the startup packet.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
const PROTOCOL_3_0: u32 = 196_608;

/// The bytes of a message's header in `phase`: the length field, after a type byte
/// except for the startup packet.
pub fn header_len(phase: Phase) -> usize {
    if phase == Phase::Startup {
        4
    } else {
        5
    }
}

/// The whole size of a message (its type byte included) from its header, if `phase`
/// allows one that long. `tag` is `None` for the startup packet.
pub fn size(
    phase: Phase,
    tag: Option<u8>,
    length: i32,
    limits: &Limits,
) -> Result<usize, Violation> {
    let min = if phase == Phase::Startup { 8 } else { 4 };
    let length = usize::try_from(length)
        .ok()
        .filter(|l| *l >= min)
        .ok_or_else(|| Violation::malformed(&format!("length {length}")))?;
    let max = match (phase, tag) {
        (Phase::Session, Some(b'Q' | b'P' | b'B' | b'd')) => limits.query,
        _ => limits.before_login,
    };
    if length > max {
        let what = match phase {
            Phase::Session => format!(
                "a message of {length} bytes is longer than sql.max_query_size allows ({max} bytes with its envelope)"
            ),
            Phase::Startup => format!(
                "a startup packet of {length} bytes is longer than {max} bytes"
            ),
            Phase::Login { .. } => format!(
                "a message of {length} bytes before login is longer than {max} bytes"
            ),
        };
        return Err(Violation {
            sqlstate: "54000",
            message: what,
            reason: "too_long",
        });
    }
    Ok(length + usize::from(tag.is_some()))
}

/// Checks a whole message's body (the bytes after its length field) for `phase`.
pub fn check(phase: Phase, tag: Option<u8>, body: &[u8]) -> Result<(), Violation> {
    let mut r = Fields(body);
    match (phase, tag) {
        (Phase::Startup, _) => startup(&mut r)?,
        (Phase::Login { sasl_initial }, Some(b'p')) => {
            if sasl_initial {
                r.cstr()?;
                let n = r.i32()?;
                if n != -1 {
                    r.take(len(n)?)?;
                }
            } else {
                r.rest();
            }
        }
        (Phase::Login { .. }, Some(b'X')) => {}
        (Phase::Login { .. }, Some(t)) => {
            return Err(Violation::unexpected(format!(
                "{} before the password exchange is complete",
                name(t)
            )))
        }
        (Phase::Session, Some(t)) => session(t, &mut r)?,
        (_, None) => return Err(Violation::malformed("a message without a type")),
    }
    r.end()
}

/// What a session may send, each field by field.
fn session(tag: u8, r: &mut Fields<'_>) -> Result<(), Violation> {
    match tag {
        b'Q' | b'f' => {
            r.cstr()?;
        }
        b'P' => {
            r.cstr()?;
            r.cstr()?;
            let n = r.count()?;
            r.take(n * 4)?;
        }
        b'B' => bind(r)?,
        b'E' => {
            r.cstr()?;
            r.i32()?;
        }
        b'D' | b'C' => {
            match r.take(1)? {
                [b'S' | b'P'] => {}
                _ => {
                    return Err(Violation::malformed(
                        "Describe/Close of neither 'S' nor 'P'",
                    ))
                }
            }
            r.cstr()?;
        }
        b'd' => r.rest(),
        b'S' | b'H' | b'X' | b'c' => {}
        other => {
            return Err(Violation::unexpected(format!(
                "{} is not supported by sluice's SQL endpoint",
                name(other)
            )))
        }
    }
    Ok(())
}

/// Bind: portal, statement, parameter formats, parameter values, result formats.
fn bind(r: &mut Fields<'_>) -> Result<(), Violation> {
    r.cstr()?;
    r.cstr()?;
    let formats = r.count()?;
    r.take(formats * 2)?;
    for _ in 0..r.count()? {
        let n = r.i32()?;
        if n != -1 {
            r.take(len(n)?)?;
        }
    }
    let results = r.count()?;
    r.take(results * 2)?;
    Ok(())
}

/// The startup packet: a protocol code, then what that code carries.
fn startup(r: &mut Fields<'_>) -> Result<(), Violation> {
    match r.u32()? {
        SSL_REQUEST | GSSENC_REQUEST => {}
        CANCEL_REQUEST => {
            r.i32()?;
            // 4 bytes in protocol 3.0, up to 256 in 3.2.
            let key = r.rest_len();
            if !(4..=256).contains(&key) {
                return Err(Violation::malformed("a cancel key of the wrong size"));
            }
            r.rest();
        }
        // Any 3.x: pgwire answers a minor it lacks with NegotiateProtocolVersion.
        code if code >> 16 == PROTOCOL_3_0 >> 16 => {
            // Name/value pairs, ended by an empty name.
            while !r.cstr()?.is_empty() {
                r.cstr()?;
            }
        }
        other => {
            return Err(Violation::unexpected(format!(
                "unsupported frontend protocol {}.{}",
                other >> 16,
                other & 0xffff
            )))
        }
    }
    Ok(())
}

/// A message's type for people.
fn name(tag: u8) -> String {
    let known = match tag {
        b'F' => "FunctionCall",
        b'p' => "a password message",
        b'Q' => "Query",
        b'P' => "Parse",
        b'B' => "Bind",
        _ => "",
    };
    if known.is_empty() {
        format!("message type {:?}", char::from(tag))
    } else {
        known.to_string()
    }
}

fn len(n: i32) -> Result<usize, Violation> {
    usize::try_from(n).map_err(|_| Violation::malformed(&format!("a field length of {n}")))
}

/// A cursor over a message's body that never reads past it.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Violation> {
        if n > self.0.len() {
            return Err(Violation::malformed(&format!(
                "a field of {n} bytes where {} are left",
                self.0.len()
            )));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn cstr(&mut self) -> Result<&'a [u8], Violation> {
        let end = self
            .0
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| Violation::malformed("a string without its terminating zero"))?;
        let s = self.take(end + 1)?;
        Ok(&s[..end])
    }

    fn i32(&mut self) -> Result<i32, Violation> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u32(&mut self) -> Result<u32, Violation> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An Int16 count, which Postgres refuses when negative.
    fn count(&mut self) -> Result<usize, Violation> {
        let b = self.take(2)?;
        let n = i16::from_be_bytes([b[0], b[1]]);
        usize::try_from(n).map_err(|_| Violation::malformed(&format!("a count of {n}")))
    }

    fn rest_len(&self) -> usize {
        self.0.len()
    }

    fn rest(&mut self) {
        self.0 = &[];
    }

    fn end(&self) -> Result<(), Violation> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Violation::malformed(&format!(
                "{} bytes after the message's last field",
                self.0.len()
            )))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
