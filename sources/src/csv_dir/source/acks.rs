//! Acknowledgements: once the committer reports a file's positions durable, the source
//! disposes of the file (archive, delete, keep; quarantine) and, on shutdown, waits for
//! the acknowledgements still due. A file whose chunks the committer refuses (a position
//! with `FileStatus::Refused` in place of a committed one) is recorded as quarantined,
//! beside what of it was committed before, and no more of it is read.

use std::{
    path::Path,
    sync::mpsc::RecvTimeoutError,
    time::{Duration, Instant},
};

use sluice_core::{text, FileHash, FileId, FileStatus, Position};
use tracing::{debug, error, info, warn};

use super::{stat, CsvDirSource, InFlight, Signature};
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
            self.on_ack(position, ctx);
        }
    }

    pub(super) fn on_ack(&mut self, position: Position, ctx: &SourceContext) {
        let Position::File(p) = position else {
            return; // only file positions are acknowledged to a file source
        };
        if let FileStatus::Refused { reason } = p.status {
            return self.on_refused(&p.id, reason.into(), ctx);
        }
        let Some(flight) = self.in_flight.get_mut(&p.id) else {
            return;
        };
        if !matches!(p.status, FileStatus::Quarantined { .. }) {
            let acked = flight.committed.map_or(0, |(offset, _)| offset);
            telemetry::bytes_ingested(&self.setup.name, p.next_offset.saturating_sub(acked));
            flight.committed = Some((p.next_offset, p.next_line));
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
            FileStatus::Partial | FileStatus::Refused { .. } => {}
        }
    }

    /// The committer refused the chunks of file `id` from the first one not yet
    /// acknowledged on: they are not committed, nor will any later one be (it drops them),
    /// so none is waited for. The file is recorded as quarantined under an id of its own,
    /// like any quarantine after a partial commit, so that what of it was committed keeps
    /// its record; the reading loop sees it gone from `in_flight` and stops. The record is
    /// sent even for a file gone meanwhile: its passing tells the committer that no chunk
    /// of `id` follows (a later resume of the file reads under `id` again).
    fn on_refused(&mut self, id: &FileId, reason: String, ctx: &SourceContext) {
        let Some(flight) = self.in_flight.remove(id) else {
            return;
        };
        if let Some(before) = &flight.typed_from {
            // What the file widened did not commit (a widening the table's values refuse,
            // say): the files after it are typed as the table was.
            self.data = Some(before.clone());
        }
        if self.in_flight.values().any(|f| f.path == flight.path) {
            // Its quarantine (reading it failed for good) is on its way already, not yet
            // committed: it passes the committer after the refusal.
            return;
        }
        let reason = match flight.committed {
            None => reason,
            Some((offset, line)) => format!(
                "{reason}; {offset} bytes of it (lines before {line}) were committed before, \
                 and their rows stay"
            ),
        };
        let quarantine = self.new_file_id(&flight.name, &flight.content);
        let (content, name) = (flight.content.clone(), flight.name.clone());
        self.in_flight.insert(
            quarantine.clone(),
            InFlight {
                unacked: 0,
                committed: None,
                recorded: None,
                abandoned: false,
                ..flight
            },
        );
        self.send_quarantine(ctx, quarantine, content, &name, reason);
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
        sluice_core::fault::point("file.before_quarantine");
        match dispose::move_into(path, &self.setup.quarantine_dir, name, hash) {
            Ok(dest) => {
                // Bounded again: a record written by an older sluice may hold any reason.
                let reason = text::bounded(reason, text::TEXT_LIMIT);
                warn!(source = %self.setup.name, file = %name, %reason, to = %dest.display(), "file quarantined")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !path.exists() => {
                warn!(source = %self.setup.name, file = %name, "file quarantined; it was gone already");
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
                Ok(position) => self.on_ack(position, ctx),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }
}
