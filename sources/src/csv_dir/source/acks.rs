//! Acknowledgements: once the committer reports a file's positions durable, the source
//! disposes of the file (archive, delete, keep; quarantine) and, on shutdown, waits for
//! the acknowledgements still due.

use std::{
    path::Path,
    sync::mpsc::RecvTimeoutError,
    time::{Duration, Instant},
};

use sluice_core::{text, FileHash, FileId, FileStatus, Position};
use tracing::{debug, error, info, warn};

use super::{stat, CsvDirSource, Signature};
use crate::{
    csv_dir::{config::AfterIngest, dispose},
    telemetry, SourceContext, SourceEvent,
};

impl CsvDirSource {
    pub(super) fn drained(&mut self, ctx: &SourceContext) {
        self.sent_since_drained = false;
        let _ = ctx.events.send(SourceEvent::Drained {
            source: self.setup.name.clone(),
        });
    }

    pub(super) fn take_acks(&mut self, ctx: &SourceContext) {
        while let Ok(position) = ctx.acks.try_recv() {
            self.on_ack(position);
        }
    }

    pub(super) fn on_ack(&mut self, position: Position) {
        let Position::File(p) = position else {
            return; // only file positions are acknowledged to a file source
        };
        let Some(flight) = self.in_flight.get_mut(&p.id) else {
            return;
        };
        if !matches!(p.status, FileStatus::Quarantined { .. }) {
            let bytes = p.next_offset.saturating_sub(flight.acked_offset);
            telemetry::bytes_ingested(&self.setup.name, bytes);
            flight.acked_offset = p.next_offset;
        }
        flight.unacked = flight.unacked.saturating_sub(1);
        if flight.abandoned && flight.unacked == 0 {
            self.in_flight.remove(&p.id);
            return;
        }
        let (path, name, sig) = (flight.path.clone(), flight.name.clone(), flight.sig);
        match &p.status {
            FileStatus::Ingested => {
                self.in_flight.remove(&p.id);
                telemetry::file_ingested(&self.setup.name);
                self.after_ingest(&path, &name, &p.hash, Some(sig));
            }
            FileStatus::Quarantined { reason } => {
                self.in_flight.remove(&p.id);
                telemetry::file_quarantined(&self.setup.name);
                self.quarantine_now(&path, &name, &p.hash, reason);
            }
            FileStatus::Partial => {}
        }
    }

    /// Reading `hash` failed part-way. The chunks already sent still commit (the ledger then
    /// says where a later attempt resumes); stop waiting for the rest once they are
    /// acknowledged, so that `--once` ends and nothing is counted as pending for ever.
    pub(super) fn abandon(&mut self, id: &FileId) {
        match self.in_flight.get_mut(id) {
            Some(flight) if flight.unacked > 0 => flight.abandoned = true,
            _ => {
                self.in_flight.remove(id);
            }
        }
    }

    /// Disposes of a file whose rows are all committed. `read`: its size and mtime when
    /// it was read; a file that changed since is not disposed of but looked at again (its
    /// lines added are read, or the change is quarantined), so nothing appended meanwhile
    /// is archived or deleted unread.
    pub(super) fn after_ingest(
        &mut self,
        path: &Path,
        name: &str,
        hash: &FileHash,
        read: Option<Signature>,
    ) {
        if let Some(read) = read {
            if stat(path).is_some_and(|now| now != read) {
                info!(source = %self.setup.name, file = %name, "the file changed while it was read; looking at it again");
                self.changed_after_read.insert(path.to_path_buf());
                self.settler.touch(path, Instant::now());
                return;
            }
        }
        self.changed_after_read.remove(path);
        let result = match self.setup.config.after_ingest {
            AfterIngest::Keep => {
                // Settled as it was read: a change after that is seen at the next look.
                match read {
                    Some(sig) => {
                        self.settled.insert(path.to_path_buf(), sig);
                    }
                    None => self.settle_path(path),
                }
                return;
            }
            AfterIngest::Delete => {
                sluice_core::fault::point("file.before_dispose");
                dispose::delete(path).map(|()| None)
            }
            AfterIngest::Archive => {
                sluice_core::fault::point("file.before_dispose");
                dispose::move_into(path, &self.setup.archive_dir, name, hash).map(Some)
            }
        };
        match result {
            Ok(dest) => {
                sluice_core::fault::point("file.after_dispose");
                debug!(source = %self.setup.name, file = %name, archived = ?dest, "disposed of file")
            }
            Err(e) => {
                error!(source = %self.setup.name, file = %name, error = %e, "cannot archive or delete an ingested file; it will not be ingested again");
                self.settle_path(path);
            }
        }
    }

    pub(super) fn quarantine_now(
        &mut self,
        path: &Path,
        name: &str,
        hash: &FileHash,
        reason: &str,
    ) {
        self.changed_after_read.remove(path);
        match dispose::move_into(path, &self.setup.quarantine_dir, name, hash) {
            Ok(dest) => {
                // Bounded again: a record written by an older sluice may hold any reason.
                let reason = text::bounded(reason, text::TEXT_LIMIT);
                warn!(source = %self.setup.name, file = %name, %reason, to = %dest.display(), "file quarantined")
            }
            Err(e) => {
                error!(source = %self.setup.name, file = %name, error = %e, "cannot move a quarantined file");
                self.settle_path(path);
            }
        }
    }

    pub(super) fn settle_path(&mut self, path: &Path) {
        if let Some(sig) = stat(path) {
            self.settled.insert(path.to_path_buf(), sig);
        }
    }

    /// After a stop: waits (bounded) for the acknowledgements of what was sent, so files
    /// committed during shutdown are archived now rather than on the next start.
    pub(super) fn finish(&mut self, ctx: &SourceContext) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.in_flight.values().any(|f| f.unacked > 0) && Instant::now() < deadline {
            match ctx.acks.recv_timeout(Duration::from_millis(100)) {
                Ok(position) => self.on_ack(position),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }
}
