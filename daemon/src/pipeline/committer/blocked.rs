//! Whether commits are blocked by a storage problem (a full or read-only disk, DuckDB's
//! memory limit), reported once per change of state.

use std::time::Instant;

use sluice_core::text;
use sluice_sinks::{SinkError, Storage};
use tracing::{debug, info, warn};

use crate::{health::Health, telemetry};

/// Whether commits are blocked by a storage problem, and since when. Reported once per
/// change of state (log, `/readyz`, gauge), not once per attempt: a disk can stay full
/// for hours.
#[derive(Debug, Default)]
pub(super) struct Blocked(Option<(Storage, Instant)>);

impl Blocked {
    pub(super) fn failed(&mut self, health: &Health, table: &str, e: &SinkError) {
        let storage = e.storage().unwrap_or(Storage::Io);
        // Bounded: a DuckDB error may quote what it was given.
        let error = e.to_string();
        let error = text::bounded(&error, text::TEXT_LIMIT);
        if self.0.map(|(s, _)| s) == Some(storage) {
            debug!(%table, %error, "commit failed again; retrying");
            return;
        }
        if let Some((old, _)) = self.0 {
            telemetry::commits_blocked(old, false);
        }
        warn!(%table, reason = storage.as_str(), %error,
            "commits blocked; nothing is lost, retrying until this passes");
        health.set_commits_blocked(Some(format!("{}: {error}", storage.as_str())));
        telemetry::commits_blocked(storage, true);
        self.0 = Some((storage, Instant::now()));
    }

    pub(super) fn passed(&mut self, health: &Health, table: &str) {
        if let Some((storage, since)) = self.0.take() {
            info!(%table, reason = storage.as_str(), blocked_for = ?since.elapsed(), "commits resumed");
            health.set_commits_blocked(None);
            telemetry::commits_blocked(storage, false);
        }
    }
}
