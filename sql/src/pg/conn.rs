//! What one Postgres connection's parts share, from accept to close: whether its password
//! is proven (the [`super::guard`] then lets queries through), its place among the
//! connections that have not logged in yet, why it was refused, and whether the client
//! has hung up (its running statement is then stopped).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Weak};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::frames::Violation;
use crate::reader::{Reader, Stop};

/// One connection's shared state.
#[derive(Debug)]
pub struct Conn {
    authenticated: AtomicBool,
    /// Its place among connections not yet logged in (`sql.max_unauthenticated`),
    /// given back at login.
    pending: Mutex<Option<OwnedSemaphorePermit>>,
    /// Why the guard refused a message, if it did.
    violation: Mutex<Option<Violation>>,
    /// The client's DuckDB thread, once logged in.
    reader: Mutex<Option<Weak<Reader>>>,
    /// The client hung up.
    pub gone: CancellationToken,
}

impl Conn {
    pub fn new(pending: Option<OwnedSemaphorePermit>) -> Self {
        Conn {
            authenticated: AtomicBool::new(false),
            pending: Mutex::new(pending),
            violation: Mutex::default(),
            reader: Mutex::default(),
            gone: CancellationToken::new(),
        }
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Acquire)
    }

    /// The client has logged in: queries may come, and its place among the
    /// unauthenticated is free for another.
    pub fn authenticated(&self) {
        self.authenticated.store(true, Ordering::Release);
        if let Ok(mut pending) = self.pending.lock() {
            pending.take();
        }
    }

    /// The client's DuckDB thread, stopped if the client hangs up.
    pub fn serves(&self, reader: Weak<Reader>) {
        if let Ok(mut r) = self.reader.lock() {
            *r = Some(reader);
        }
    }

    /// The client hung up: whatever it was running is stopped (a cancel).
    pub fn hung_up(&self) {
        self.gone.cancel();
        let reader = self.reader.lock().ok().and_then(|r| r.clone());
        if let Some(reader) = reader.and_then(|r| r.upgrade()) {
            reader.stop(None, Stop::Cancel);
        }
    }

    pub fn violated(&self, v: &Violation) {
        if let Ok(mut slot) = self.violation.lock() {
            *slot = Some(v.clone());
        }
    }

    pub fn violation(&self) -> Option<Violation> {
        self.violation.lock().ok().and_then(|v| v.clone())
    }
}
