//! Files that could not be opened or read for a reason that may pass: too many open files
//! (the process's or the system's), no memory, an I/O error, a permission. Each is looked
//! at again after a growing wait, unchanged or not (a file is not rewritten because the
//! process ran out of descriptors); while any waits the source reports a problem, so
//! `/readyz` is not ready; each is logged once when it fails and once when it can be read.
//! A retry never reads a file that may still be written: one the settler is waiting for
//! is read when the settler hands it on, and one that changed since it failed waits no
//! more here, it is the settler's again. A file that is gone is forgotten; anything else
//! (the content itself) is the reader's to quarantine.

use std::{
    collections::{HashMap, HashSet},
    io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use sluice_core::{retry::Backoff, text};
use tracing::{debug, error, info};

use super::{stat, CsvDirSource};
use crate::{csv_dir::settle::Signature, SourceContext, SourceStatus};

/// How long a file that could not be read waits before the next attempt.
const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));

/// What a failure to open or read a file says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The file is gone: nothing to try again.
    Gone,
    /// A system call failed: it may succeed later.
    MayPass,
    /// Not a system call's failure: the file's content, which trying again does not change.
    Lasting,
}

impl Failure {
    pub(super) fn of(e: &io::Error) -> Failure {
        if e.kind() == io::ErrorKind::NotFound {
            return Failure::Gone;
        }
        if e.raw_os_error().is_some() {
            return Failure::MayPass;
        }
        // The parser's own I/O errors come wrapped (`io::Error::other(csv::Error)`).
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<csv::Error>())
        {
            Some(csv) => match csv.kind() {
                csv::ErrorKind::Io(io) => Failure::of(io),
                _ => Failure::Lasting,
            },
            None => Failure::Lasting,
        }
    }
}

/// A file waiting for its next attempt.
#[derive(Debug)]
struct Waiting {
    name: String,
    /// Its size and mtime at the last failure: a change is looked at at once.
    sig: Signature,
    wait: Duration,
    next: Instant,
    error: String,
    attempts: u32,
}

/// The files waiting to be tried again.
#[derive(Debug, Default)]
pub(super) struct Unreadable {
    files: HashMap<PathBuf, Waiting>,
}

impl Unreadable {
    /// Records a failed attempt at `path` (found as `name`); true if it is the file's
    /// first (to be logged).
    pub(super) fn failed(
        &mut self,
        path: &Path,
        name: &str,
        sig: Signature,
        error: &io::Error,
        now: Instant,
    ) -> bool {
        let error = text::bounded(&error.to_string(), 512).into_owned();
        let first = !self.files.contains_key(path);
        let w = self.files.entry(path.to_path_buf()).or_insert(Waiting {
            name: name.to_string(),
            sig,
            wait: Duration::ZERO,
            next: now,
            error: String::new(),
            attempts: 0,
        });
        w.wait = RETRY.after((w.attempts > 0).then_some(w.wait));
        w.next = now + w.wait;
        w.sig = sig;
        w.error = error;
        w.attempts += 1;
        first
    }

    /// How many attempts at `path` failed so far (`None`: it is not waiting).
    pub(super) fn attempts(&self, path: &Path) -> Option<u32> {
        self.files.get(path).map(|w| w.attempts)
    }

    /// `path` was read (or found gone): it no longer waits. Its name and last error, if
    /// it did.
    pub(super) fn forget(&mut self, path: &Path) -> Option<(String, String)> {
        self.files.remove(path).map(|w| (w.name, w.error))
    }

    /// Whether `path`, as `sig` says it is now, waits for its next attempt: unchanged
    /// since it failed, and not due.
    pub(super) fn holds_back(&self, path: &Path, sig: Signature, now: Instant) -> bool {
        self.files
            .get(path)
            .is_some_and(|w| w.sig == sig && now < w.next)
    }

    /// The files whose next attempt is due, with their signature when they failed.
    pub(super) fn due(&self, now: Instant) -> Vec<(PathBuf, Signature)> {
        self.files
            .iter()
            .filter(|(_, w)| now >= w.next)
            .map(|(p, w)| (p.clone(), w.sig))
            .collect()
    }

    /// Forgets files no longer in the directory.
    pub(super) fn retain(&mut self, listed: &HashSet<&PathBuf>) {
        self.files.retain(|path, _| listed.contains(path));
    }

    pub(super) fn len(&self) -> usize {
        self.files.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The waiting files' names, sorted.
    pub(super) fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.files.values().map(|w| w.name.as_str()).collect();
        names.sort_unstable();
        names
    }

    /// The source's problem while files wait: how many, and one of them with its error.
    pub(super) fn problem(&self) -> Option<String> {
        let first = self.names().first().copied()?;
        let error = self
            .files
            .values()
            .find(|w| w.name == first)
            .map_or("", |w| w.error.as_str());
        let problem = match self.files.len() {
            1 => format!("cannot read {first} (trying again): {error}"),
            n => format!("cannot read {n} files (trying again), e.g. {first}: {error}"),
        };
        Some(text::bounded(&problem, text::TEXT_LIMIT).into_owned())
    }
}

impl CsvDirSource {
    /// The files to try again now: due, and as they were when they failed. One the settler
    /// waits for is left to it (it is being written, or was just seen again); one that
    /// changed since it failed no longer waits here and becomes the settler's, so that it
    /// is read once complete, not half-written on a retry's schedule. A file gone is
    /// tried (the attempt forgets it).
    pub(super) fn retries_due(&mut self, now: Instant, status: &SourceStatus) -> Vec<PathBuf> {
        let mut due = Vec::new();
        for (path, failed_as) in self.unreadable.due(now) {
            if self.settler.holds(&path) {
                continue;
            }
            match stat(&path) {
                Some(sig) if sig != failed_as => {
                    if let Some((name, _)) = self.unreadable.forget(&path) {
                        info!(source = %self.setup.name, file = %name,
                            "the file changed since it could not be read; reading it once it is complete");
                    }
                    self.settler.touch(&path, now);
                    self.show_problem(status);
                }
                _ => due.push(path),
            }
        }
        due.sort();
        due
    }

    /// Reports what keeps the source from working (the directory cannot be listed, files
    /// cannot be read), or that nothing does.
    pub(super) fn show_problem(&self, status: &SourceStatus) {
        let problems: Vec<String> = (self.list_problem.iter().cloned())
            .chain(self.unreadable.problem())
            .collect();
        status.set_problem((!problems.is_empty()).then(|| problems.join("; ")));
    }

    /// Opening or reading `path` failed: it is tried again later if that may pass, and
    /// forgotten if it is gone.
    pub(super) fn cannot_read(
        &mut self,
        path: &Path,
        name: &str,
        sig: Signature,
        e: &std::io::Error,
        ctx: &SourceContext,
    ) {
        if Failure::of(e) == Failure::Gone {
            debug!(source = %self.setup.name, file = %name, error = %e, "the file is gone");
            self.readable_again(path, &ctx.status);
            return;
        }
        if self.unreadable.failed(path, name, sig, e, Instant::now()) {
            error!(source = %self.setup.name, file = %name, error = %e,
                "cannot read the file; trying it again until it can be read (the source is not ready meanwhile)");
        } else {
            debug!(source = %self.setup.name, file = %name, error = %e, "cannot read the file yet");
        }
        self.show_problem(&ctx.status);
    }

    /// `path` no longer waits to be tried again (read, or gone).
    pub(super) fn readable_again(&mut self, path: &Path, status: &SourceStatus) {
        if let Some((name, error)) = self.unreadable.forget(path) {
            info!(source = %self.setup.name, file = %name, last_error = %error,
                "the file can be read again");
            self.show_problem(status);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn only_a_failed_system_call_may_pass() {
        let emfile = io::Error::from_raw_os_error(24);
        assert_eq!(Failure::of(&emfile), Failure::MayPass);
        assert_eq!(
            Failure::of(&io::Error::from(io::ErrorKind::NotFound)),
            Failure::Gone
        );
        let wrapped = io::Error::other(csv::Error::from(io::Error::from_raw_os_error(5)));
        assert_eq!(Failure::of(&wrapped), Failure::MayPass);
        assert_eq!(
            Failure::of(&io::Error::other("a column cannot be typed")),
            Failure::Lasting
        );
    }

    #[test]
    fn a_file_waits_longer_after_each_failure_unless_it_changes() {
        let mut u = Unreadable::default();
        let (path, t0) = (Path::new("/in/a.csv"), Instant::now());
        let sig = (3, SystemTime::UNIX_EPOCH);
        let emfile = io::Error::from_raw_os_error(24);
        assert!(u.failed(path, "a.csv", sig, &emfile, t0), "first: logged");
        assert!(u.holds_back(path, sig, t0));
        assert!(
            !u.holds_back(path, (4, SystemTime::UNIX_EPOCH), t0),
            "changed"
        );
        assert_eq!(
            u.due(t0 + Duration::from_secs(1)),
            [(path.to_path_buf(), sig)]
        );
        let t1 = t0 + Duration::from_secs(1);
        assert!(
            !u.failed(path, "a.csv", sig, &emfile, t1),
            "again: not logged"
        );
        assert!(u.holds_back(path, sig, t1 + Duration::from_millis(1999)));
        assert_eq!(
            u.due(t1 + Duration::from_secs(2)).len(),
            1,
            "waits twice as long"
        );
        let problem = u.problem().expect("a problem");
        assert!(
            problem.contains("a.csv") && problem.contains("os error 24"),
            "{problem}"
        );
        assert_eq!(u.attempts(path), Some(2));
        assert!(u.forget(path).is_some());
        assert_eq!(u.problem(), None);
    }
}
