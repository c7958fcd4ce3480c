//! The CSV directory source's thread: notices files (notifications, start-up scan,
//! periodic rescans), waits until each is complete, reads it in chunks, and disposes of it
//! once the committer acknowledges its last chunk.
//!
//! A file is identified by its content and its name (see [`identify`]): the content of a
//! file already committed is a duplicate (logged, counted, not read again); a file that
//! begins with exactly the bytes committed under its name is read on from there (a partly
//! committed file resumes, a grown one has its new lines read); one whose committed bytes
//! changed is quarantined (or, once ingested and disposed of, is a new file of that name).
//! A file whose content or name is in flight waits. A file that cannot be opened or read
//! for a reason that may pass (too many open files) is tried again ([`unreadable`]). A file
//! whose chunks the committer refuses (DuckDB refused one of its values) is quarantined, as
//! [`acks`] says.

mod acks;
mod identify;
mod read;
#[cfg(test)]
mod tests;
mod unreadable;

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{
        mpsc::{self, RecvTimeoutError, Sender},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use notify::{
    event::{AccessKind, AccessMode, ModifyKind, RenameMode},
    EventKind, RecursiveMode, Watcher,
};
use sluice_core::{FileHash, FileId, FileLedger, FileRecord, FileStatus, Ident, TableSchema};
use tracing::{error, info, warn};

use super::{
    config::{AfterIngest, CsvSourceConfig, WatchMode},
    reader::ReadOptions,
    scan::{Refusal, Scope},
    settle::{Settler, Signature},
};
use crate::{telemetry, Result, SourceContext, SourceError, SourceStatus};
use identify::Identity;
use unreadable::Unreadable;

/// How often a directory that could not be listed is tried again.
const UNHEALTHY_RESCAN: Duration = Duration::from_secs(1);

/// Everything a CSV directory source is built from.
#[derive(Debug)]
pub struct CsvDirSetup {
    pub name: Arc<str>,
    /// The source's config, with `path` already resolved.
    pub config: CsvSourceConfig,
    pub table: Ident,
    /// The table's data columns, if known (declared, or from an existing raw table).
    pub data_schema: Option<TableSchema>,
    /// The ledger's records of this source's files, looked up as files appear.
    pub ledger: Box<dyn FileLedger>,
    pub archive_dir: PathBuf,
    pub quarantine_dir: PathBuf,
    pub chunk_rows: usize,
    pub chunk_bytes: usize,
}

/// A file whose chunks were sent but not all acknowledged.
#[derive(Debug)]
struct InFlight {
    path: PathBuf,
    name: String,
    /// The hash of its content when it was found complete.
    content: FileHash,
    /// Its size and mtime then: a file that changed since is not disposed of.
    sig: Signature,
    unacked: usize,
    /// Where the ledger's record of this id ends (`next_offset`, `next_line`) as far as
    /// acknowledgements tell: a resumed file's record, then each acknowledged chunk's end.
    /// `None`: nothing is committed under this id.
    committed: Option<(u64, u64)>,
    /// Where the ledger's record of this id ends (`next_offset`, `next_line`): where a
    /// resumed file's commits ended, then where the last chunk sent ends (it commits before
    /// anything sent after it). `None`: nothing is recorded under this id.
    recorded: Option<(u64, u64)>,
    /// Reading it failed part-way: no more chunks follow the ones sent.
    abandoned: bool,
    /// The table's columns as the source knew them when the file was found: a file whose
    /// commit is refused takes back what it widened (see `acks::on_refused`).
    typed_from: Option<Arc<TableSchema>>,
}

/// A running CSV directory source.
#[derive(Debug)]
pub struct CsvDirSource {
    setup: CsvDirSetup,
    scope: Scope,
    settler: Settler,
    opts: ReadOptions,
    data: Option<Arc<TableSchema>>,
    in_flight: HashMap<FileId, InFlight>,
    /// Files not to look at again while unchanged (kept, unreadable, refused).
    settled: HashMap<PathBuf, Signature>,
    /// Files this run read that changed before they were disposed of.
    changed_after_read: HashSet<PathBuf>,
    /// Files that could not be opened or read for now, waiting to be tried again.
    unreadable: Unreadable,
    /// Why the watched directory cannot be listed, while it cannot.
    list_problem: Option<String>,
    sent_since_drained: bool,
    /// Makes file ids unique within the process.
    ids_made: u64,
    /// Records (rows and dead letters) sent to the committer by this run.
    records_sent: u64,
    /// What the schema contract kept out, reported.
    refusals: crate::typing::contract::RefusalLog,
}

impl CsvDirSource {
    /// Checks the watched directory and prepares the source.
    pub fn new(setup: CsvDirSetup) -> Result<Self> {
        let cfg = &setup.config;
        let io_err = |error| SourceError::Io {
            source_name: setup.name.to_string(),
            path: cfg.path.clone(),
            error,
        };
        if !cfg.path.is_dir() {
            return Err(io_err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the watched directory does not exist or is not a directory",
            )));
        }
        let scope = Scope::new(&cfg.path, &cfg.glob, cfg.recursive).map_err(io_err)?;
        let opts = ReadOptions {
            delimiter: cfg.delimiter_byte(),
            quote: cfg.quote_byte(),
            null_string: cfg.null_string.as_bytes().to_vec(),
            header: cfg.header,
            chunk_rows: setup.chunk_rows.max(1),
            chunk_bytes: setup.chunk_bytes.max(1),
            max_record: cfg.max_line_bytes.as_u64().max(1),
            contract: cfg.schema_contract,
        };
        Ok(CsvDirSource {
            settler: Settler::new(cfg.settle),
            data: setup.data_schema.clone().map(Arc::new),
            scope,
            opts,
            setup,
            in_flight: HashMap::new(),
            settled: HashMap::new(),
            changed_after_read: HashSet::new(),
            unreadable: Unreadable::default(),
            list_problem: None,
            sent_since_drained: false,
            ids_made: 0,
            records_sent: 0,
            refusals: Default::default(),
        })
    }

    /// Runs until `ctx.stop` is cancelled (or, with `ctx.once`, until every file present
    /// is committed), then waits for outstanding acknowledgements.
    pub fn run(mut self, ctx: SourceContext) -> Result<()> {
        let (events_tx, events) = mpsc::channel();
        // A directory gone between the start-up check and here (or unreadable) is what the
        // rescans already handle: unready until it can be listed, then watched again.
        let mut listable = true;
        let mut watcher = self.watch(events_tx.clone()).unwrap_or_else(|e| {
            error!(source = %self.setup.name, error = %e, "cannot watch the directory; relying on rescans until it can be listed again");
            listable = false;
            None
        });
        let cfg = &self.setup.config;
        let rescan_every = match cfg.watch {
            WatchMode::Inotify => cfg.rescan_interval,
            WatchMode::Poll => cfg.poll_interval,
        };
        let tick = (cfg.settle / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
        let mut next_rescan = Instant::now();
        // `--once` waits this long for files still being written, then leaves them for the
        // next run (nothing is lost: they stay in the directory), so it always ends.
        let once_until = Instant::now() + once_wait(cfg.settle);
        let mut given_up = false;
        info!(source = %self.setup.name, path = %self.scope.root().display(), "watching");
        while !ctx.stop.is_cancelled() {
            self.take_acks(&ctx);
            if Instant::now() >= next_rescan {
                let ok = self.rescan(&ctx.status);
                if ok && !listable {
                    // The directory was gone (or unreadable): its inotify watch went with it.
                    watcher = self.watch(events_tx.clone()).unwrap_or_else(|e| {
                        error!(source = %self.setup.name, error = %e, "cannot watch the directory again; relying on rescans");
                        None
                    });
                }
                listable = ok;
                let every = if ok {
                    rescan_every
                } else {
                    rescan_every.min(UNHEALTHY_RESCAN)
                };
                next_rescan = Instant::now() + every;
            }
            if ctx.once && !given_up && Instant::now() >= once_until && !self.all_looked_at() {
                self.give_up_once();
                given_up = true;
            }
            let ready = if given_up {
                Vec::new()
            } else {
                self.settler
                    .take_ready(Instant::now(), SystemTime::now(), stat)
            };
            let retry = match given_up {
                true => Vec::new(),
                false => self.retries_due(Instant::now(), &ctx.status),
            };
            for path in ready.into_iter().chain(retry) {
                if ctx.stop.is_cancelled() {
                    break;
                }
                self.ingest(&path, &ctx);
            }
            ctx.status.set_pending(
                (self.settler.len() + self.in_flight.len() + self.unreadable.len()) as u64,
            );
            if ctx.once && (self.all_looked_at() || given_up) {
                if self.sent_since_drained {
                    self.drained(&ctx);
                }
                if self.in_flight.is_empty() {
                    break;
                }
            }
            match events.recv_timeout(tick) {
                Ok(event) => {
                    self.on_event(event, &mut next_rescan);
                    while let Ok(event) = events.try_recv() {
                        self.on_event(event, &mut next_rescan);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
        }
        drop(watcher);
        drop(events_tx);
        self.finish(&ctx);
        info!(source = %self.setup.name, records = self.records_sent,
            "stopped reading; every record read was handed to the committer");
        Ok(())
    }

    fn watch(&self, tx: Sender<notify::Result<notify::Event>>) -> Result<Option<impl Watcher>> {
        if self.setup.config.watch == WatchMode::Poll {
            return Ok(None);
        }
        let watch_err = |error| SourceError::Watch {
            source_name: self.setup.name.to_string(),
            path: self.scope.root().to_path_buf(),
            error,
        };
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })
        .map_err(watch_err)?;
        let mode = match self.setup.config.recursive {
            true => RecursiveMode::Recursive,
            false => RecursiveMode::NonRecursive,
        };
        watcher.watch(self.scope.root(), mode).map_err(watch_err)?;
        Ok(Some(watcher))
    }

    fn on_event(&mut self, event: notify::Result<notify::Event>, next_rescan: &mut Instant) {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                warn!(source = %self.setup.name, error = %e, "watch error; rescanning");
                *next_rescan = Instant::now();
                return;
            }
        };
        if event.need_rescan() {
            *next_rescan = Instant::now();
        }
        let now = Instant::now();
        match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                for path in &event.paths {
                    self.complete(path, now);
                }
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                if let [from, to] = event.paths.as_slice() {
                    self.settler.forget(from);
                    self.complete(to, now);
                }
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::From)) | EventKind::Remove(_) => {
                for path in &event.paths {
                    self.settler.forget(path);
                }
            }
            EventKind::Create(_) | EventKind::Modify(_) => {
                for path in &event.paths {
                    // Refused paths go through too, so the refusal is reported now.
                    if !matches!(self.scope.check(path), Err(Refusal::Ignored)) {
                        self.settler.touch(path, now);
                    }
                }
            }
            _ => {}
        }
    }

    /// The watcher says `path` is complete (closed after writing, or renamed in).
    fn complete(&mut self, path: &Path, now: Instant) {
        if matches!(self.scope.check(path), Err(Refusal::Ignored)) {
            return;
        }
        if let Some(sig) = stat(path) {
            self.settler.complete(path, sig, now);
        }
    }

    /// Whether every file seen was looked at: none is still settling or waiting to be
    /// tried again (`--once` ends then).
    fn all_looked_at(&self) -> bool {
        self.settler.is_empty() && self.unreadable.is_empty()
    }

    /// `--once` waited long enough: the files still settling or unreadable are left for
    /// the next run (nothing is lost: they stay in the directory).
    fn give_up_once(&self) {
        if !self.settler.is_empty() {
            let files: Vec<String> = self
                .settler
                .paths()
                .iter()
                .map(|p| {
                    p.strip_prefix(self.scope.root())
                        .unwrap_or(p)
                        .display()
                        .to_string()
                })
                .collect();
            warn!(source = %self.setup.name, files = %files.join(", "),
                "--once: leaving files that are still being written for the next run");
        }
        if !self.unreadable.is_empty() {
            warn!(source = %self.setup.name, files = %self.unreadable.names().join(", "),
                "--once: leaving files that cannot be read for the next run");
        }
    }

    /// Lists the directory. Returns whether it could (a directory that cannot be listed
    /// makes the source unready until it can be again).
    fn rescan(&mut self, status: &SourceStatus) -> bool {
        let paths = match self.scope.list() {
            Ok(p) => p,
            Err(e) => {
                let problem = format!("cannot list {}: {e}", self.scope.root().display());
                if self.list_problem.as_deref() != Some(problem.as_str()) {
                    error!(source = %self.setup.name, path = %self.scope.root().display(), error = %e,
                        "cannot list the watched directory");
                }
                self.list_problem = Some(problem);
                self.show_problem(status);
                return false;
            }
        };
        if self.list_problem.take().is_some() {
            info!(source = %self.setup.name, "the watched directory can be listed again");
        }
        // Forget files that are gone (deleted or moved away by someone else): memory stays
        // bounded by what is in the directory.
        let listed: HashSet<&PathBuf> = paths.iter().collect();
        self.settled.retain(|path, _| listed.contains(path));
        self.changed_after_read.retain(|path| listed.contains(path));
        self.unreadable.retain(&listed);
        self.show_problem(status);
        let now = Instant::now();
        // A file being read or committed is settled by its acknowledgement (or looked at
        // again then, if it changed while read): waiting for it here too would make
        // `--once` report it as still being written.
        let flying: HashSet<&Path> = self.in_flight.values().map(|f| f.path.as_path()).collect();
        for path in paths {
            let settled = self
                .settled
                .get(&path)
                .is_some_and(|sig| stat(&path) == Some(*sig));
            if settled || flying.contains(path.as_path()) {
                continue;
            }
            self.settler.touch(&path, now);
        }
        true
    }

    /// Decides what to do with a complete file, and does it.
    fn ingest(&mut self, path: &Path, ctx: &SourceContext) {
        let candidate = match self.scope.check(path) {
            Ok(c) => c,
            Err(Refusal::Ignored) => return self.readable_again(path, &ctx.status),
            Err(Refusal::Escapes(why)) => {
                warn!(source = %self.setup.name, "refusing file: {why}");
                telemetry::file_refused(&self.setup.name);
                self.settle_path(path);
                return self.readable_again(path, &ctx.status);
            }
        };
        let Some(sig) = stat(&candidate.real) else {
            return self.readable_again(path, &ctx.status);
        };
        if self.unreadable.holds_back(path, sig, Instant::now()) {
            return;
        }
        if self.settled.get(path) == Some(&sig) {
            return self.readable_again(path, &ctx.status);
        }
        if self.in_flight.values().any(|f| f.path == path) {
            // Chunks of it are still being committed: look again once they are.
            self.settler.complete(path, sig, Instant::now());
            return;
        }
        let after = self.setup.config.after_ingest;
        let changed = self.changed_after_read.contains(path);
        let ledger = self.setup.ledger.as_mut();
        let (identity, scanned) = match identify::identify(
            ledger,
            &candidate.real,
            &candidate.name,
            after,
            changed,
        ) {
            Ok(found) => found,
            Err(identify::IdentifyError::Io(e)) => {
                self.cannot_read(path, &candidate.name, sig, &e, ctx);
                return;
            }
            Err(identify::IdentifyError::Ledger(e)) => {
                error!(source = %self.setup.name, file = %candidate.name, error = %e, "cannot look the file up in the ledger; will retry");
                self.settler.complete(path, sig, Instant::now());
                return;
            }
        };
        if self.in_flight.values().any(|f| f.content == scanned.hash) {
            // The same content is being committed under another name: look again later.
            self.settler.complete(path, sig, Instant::now());
            return;
        }
        let found = Found {
            path,
            real: &candidate.real,
            name: &candidate.name,
            content: scanned.hash,
            sig,
            limit: scanned.len,
        };
        let attempts = self.unreadable.attempts(path);
        self.act_on(identity, &found, ctx);
        if attempts.is_some() && self.unreadable.attempts(path) == attempts {
            self.readable_again(path, &ctx.status);
        }
    }

    /// Reads, skips, disposes of or quarantines a file, as its identity says.
    fn act_on(&mut self, identity: Identity, found: &Found<'_>, ctx: &SourceContext) {
        let (path, name) = (found.path, found.name);
        match identity {
            Identity::Known(rec) if rec.status == FileStatus::Ingested => {
                self.already_ingested(path, name, &rec)
            }
            Identity::Known(FileRecord {
                status: FileStatus::Quarantined { reason },
                ..
            }) => {
                self.quarantine_now(path, name, &found.content, &reason);
            }
            Identity::Known(rec) => {
                // Partial records come back as `Continues`; this cannot happen.
                error!(source = %self.setup.name, file = %rec.original_name, "unexpected partial record; will look again");
                self.settler.complete(path, found.sig, Instant::now());
            }
            Identity::New => {
                let id = self.new_file_id(name, &found.content);
                self.read_file(found, id, None, ctx);
            }
            Identity::Continues {
                record,
                point,
                skip,
            } => {
                match record.status {
                    FileStatus::Partial => {
                        info!(source = %self.setup.name, file = %record.original_name, line = record.next_line, "resuming a partly committed file")
                    }
                    _ => {
                        info!(source = %self.setup.name, file = %name, line = record.next_line,
                            bytes = found.limit.saturating_sub(record.next_offset), "the file grew after it was ingested; reading the lines added");
                        telemetry::file_appended(&self.setup.name);
                    }
                }
                let id = record.id.clone();
                self.read_file(found, id, Some((record, *point, skip)), ctx);
            }
            Identity::Changed { reason } => {
                let reason = format!("changed after it was read: {reason}");
                telemetry::file_rewritten(&self.setup.name);
                let id = self.new_file_id(name, &found.content);
                self.quarantine(found, id, reason, ctx);
            }
        }
    }

    /// A ledger id for a file read (or quarantined) from now on.
    fn new_file_id(&mut self, name: &str, content: &FileHash) -> FileId {
        self.ids_made += 1;
        let mut h = blake3::Hasher::new();
        h.update(self.setup.name.as_bytes());
        h.update(b"\0");
        h.update(name.as_bytes());
        h.update(b"\0");
        h.update(content.0.as_bytes());
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        h.update(&now.as_nanos().to_le_bytes());
        h.update(&std::process::id().to_le_bytes());
        h.update(&self.ids_made.to_le_bytes());
        FileId(h.finalize().to_hex()[..32].to_string())
    }

    fn already_ingested(&mut self, path: &Path, name: &str, rec: &FileRecord) {
        let after = self.setup.config.after_ingest;
        if rec.original_name == name {
            if after == AfterIngest::Keep {
                self.settle_path(path);
                return;
            }
            info!(source = %self.setup.name, file = %name, "file was committed before a restart; finishing after_ingest");
        } else {
            warn!(source = %self.setup.name, file = %name, original = %rec.original_name,
                "duplicate content (same hash as an ingested file); not ingested again");
            telemetry::file_duplicate(&self.setup.name);
        }
        let content = rec
            .hash
            .clone()
            .unwrap_or_else(|| FileHash(rec.id.0.clone()));
        self.after_ingest(path, name, &content, None);
    }
}

/// A complete file about to be read (or quarantined).
#[derive(Debug)]
pub(super) struct Found<'a> {
    pub path: &'a Path,
    pub real: &'a Path,
    pub name: &'a str,
    /// The hash of its content when it was found.
    pub content: FileHash,
    pub sig: Signature,
    /// Its length then: reading stops here (what is appended meanwhile is read later).
    pub limit: u64,
}

/// The raw table's columns for a file source: data, then sluice's own.
pub fn raw_columns(data: &TableSchema) -> TableSchema {
    crate::typing::declared::raw_columns(data, crate::csv_dir::provenance::columns())
}

fn stat(path: &Path) -> Option<Signature> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// How long `--once` waits for files that are still changing: ten settle periods, at
/// least 10 s.
fn once_wait(settle: Duration) -> Duration {
    (settle * 10).max(Duration::from_secs(10))
}
