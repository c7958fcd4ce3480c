//! Stopping a client's statements: what the async side (a cancel, a timeout, the client
//! hanging up) and the client's thread share about the statement running, one not started
//! yet that must not start, and one whose result was ended while a client still held rows.

use std::sync::{Arc, Mutex};

use duckdb::InterruptHandle;

use super::stream::closed;
use super::Stop;
use crate::gate::Refusal;

/// What the async side and the thread both see.
pub(super) struct Shared {
    pub(super) interrupt: Arc<InterruptHandle>,
    /// The last statement stopped while its result was open ([`Running::ended`]), for a
    /// check per row of what the async side still holds of it.
    pub(super) ended_id: std::sync::atomic::AtomicU64,
    /// The gate's connection's: vetting a query is stopped like running one.
    pub(super) gate_interrupt: Arc<InterruptHandle>,
    pub(super) running: Mutex<Running>,
    /// Rows a result may have (`None`: no limit).
    pub(super) max_rows: Option<u64>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
pub(super) struct Running {
    /// The statement running or streaming (0: none).
    id: u64,
    stopped: Option<Stop>,
    /// A stop for a statement not started yet (its timer fired while it waited its turn
    /// on the thread): it is stopped as it starts.
    early: Option<(u64, Stop)>,
    /// The last statement stopped while its result was open: what its next fetch hears.
    ended: Option<(u64, Stop)>,
}

impl Shared {
    pub(super) fn stop(&self, id: Option<u64>, why: Stop) {
        if let Ok(mut running) = self.running.lock() {
            if running.id != 0 && id.is_none_or(|id| id == running.id) {
                running.stopped = Some(why);
                self.interrupt.interrupt();
                self.gate_interrupt.interrupt();
            } else if let Some(id) = id.filter(|id| *id > running.id) {
                running.early = Some((id, why));
            }
        }
    }

    pub(super) fn set_running(&self, id: u64) {
        if let Ok(mut running) = self.running.lock() {
            let early = running.early.take();
            let stopped = early.filter(|(at, _)| *at == id).map(|(_, why)| why);
            running.early = early.filter(|(at, _)| *at > id);
            running.id = id;
            running.stopped = stopped;
        }
    }

    pub(super) fn stopped(&self) -> Option<Stop> {
        self.running.lock().ok().and_then(|r| r.stopped)
    }

    /// Statement `id` was stopped while its result was open, and has ended.
    pub(super) fn end_stopped(&self, id: u64, why: Stop) {
        if let Ok(mut running) = self.running.lock() {
            running.ended = Some((id, why));
        }
        self.ended_id
            .store(id, std::sync::atomic::Ordering::Release);
    }

    /// Why a fetch from result `id`, no longer open, fails.
    pub(super) fn ended(&self, id: u64) -> Refusal {
        let ended = self.running.lock().ok().and_then(|r| r.ended);
        match ended {
            Some((at, why)) if at == id => stopped(why),
            _ => closed(),
        }
    }
}

/// Why a statement stopped, as the client hears it.
pub(super) fn stopped(why: Stop) -> Refusal {
    Refusal {
        sqlstate: "57014",
        message: match why {
            Stop::Cancel => "canceling statement due to user request".into(),
            Stop::Timeout => "canceling statement due to statement timeout".into(),
        },
    }
}
