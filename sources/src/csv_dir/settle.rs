//! When is a file complete? Files renamed into the directory or closed after writing are
//! complete as they stand (the watcher says so); any other file is complete once its size
//! and modification time have stayed the same for `settle`. A file is never handed on the
//! first time it is seen, so even an old file is looked at twice before it is read.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

/// Size and modification time: what changes while a file is written.
pub type Signature = (u64, SystemTime);

#[derive(Debug, Clone)]
struct Pending {
    observed: Option<Signature>,
    stable_since: Instant,
    /// The signature the file had when the watcher said it was complete.
    complete_at: Option<Signature>,
}

/// Files seen but not yet complete.
#[derive(Debug, Clone)]
pub struct Settler {
    settle: Duration,
    files: HashMap<PathBuf, Pending>,
}

impl Settler {
    pub fn new(settle: Duration) -> Self {
        Settler {
            settle,
            files: HashMap::new(),
        }
    }

    /// The path exists or changed; start (or keep) watching it.
    pub fn touch(&mut self, path: &Path, now: Instant) {
        self.files.entry(path.to_path_buf()).or_insert(Pending {
            observed: None,
            stable_since: now,
            complete_at: None,
        });
    }

    /// The watcher says the file is complete as it stands (`sig` is its signature now).
    pub fn complete(&mut self, path: &Path, sig: Signature, now: Instant) {
        self.touch(path, now);
        if let Some(p) = self.files.get_mut(path) {
            p.complete_at = Some(sig);
        }
    }

    /// Whether `path` is waited for (seen, not yet complete).
    pub fn holds(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }

    pub fn forget(&mut self, path: &Path) {
        self.files.remove(path);
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// The files still waited for, by path.
    pub fn paths(&self) -> Vec<&Path> {
        let mut paths: Vec<&Path> = self.files.keys().map(PathBuf::as_path).collect();
        paths.sort();
        paths
    }

    /// Takes the files that are complete now. `stat` gives a file's current signature,
    /// or `None` if it is gone (then it is forgotten).
    pub fn take_ready(
        &mut self,
        now: Instant,
        wall: SystemTime,
        mut stat: impl FnMut(&Path) -> Option<Signature>,
    ) -> Vec<PathBuf> {
        let mut ready = Vec::new();
        let settle = self.settle;
        self.files.retain(|path, p| {
            let Some(sig) = stat(path) else {
                return false;
            };
            if p.complete_at == Some(sig) {
                ready.push(path.clone());
                return false;
            }
            if p.observed != Some(sig) {
                p.observed = Some(sig);
                p.stable_since = now;
                return true;
            }
            let unchanged_for = now.duration_since(p.stable_since);
            let age = wall.duration_since(sig.1).unwrap_or_default();
            if unchanged_for.max(age) >= settle {
                ready.push(path.clone());
                return false;
            }
            true
        });
        ready.sort();
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_growing_file_is_not_ready_until_it_stops_changing() {
        let mut s = Settler::new(Duration::from_secs(2));
        let t0 = Instant::now();
        let p = Path::new("/in/a.csv");
        s.touch(p, t0);
        let wall = at(1000);
        // Written just now, first look: not ready.
        assert!(s.take_ready(t0, wall, |_| Some((10, at(1000)))).is_empty());
        // Grew: not ready.
        let t1 = t0 + Duration::from_secs(1);
        assert!(s
            .take_ready(t1, at(1001), |_| Some((20, at(1001))))
            .is_empty());
        // Unchanged but only for 1s: not ready.
        let t2 = t1 + Duration::from_secs(1);
        assert!(s
            .take_ready(t2, at(1002), |_| Some((20, at(1001))))
            .is_empty());
        // Unchanged for 2s: ready.
        let t3 = t1 + Duration::from_secs(2);
        assert_eq!(
            s.take_ready(t3, at(1003), |_| Some((20, at(1001)))),
            vec![p.to_path_buf()]
        );
        assert!(s.is_empty());
    }

    #[test]
    fn an_old_file_is_ready_on_the_second_look() {
        let mut s = Settler::new(Duration::from_secs(2));
        let t0 = Instant::now();
        let p = Path::new("/in/old.csv");
        s.touch(p, t0);
        assert!(s.take_ready(t0, at(5000), |_| Some((5, at(10)))).is_empty());
        let t1 = t0 + Duration::from_millis(50);
        assert_eq!(s.take_ready(t1, at(5000), |_| Some((5, at(10)))).len(), 1);
    }

    #[test]
    fn close_write_completes_at_once_unless_written_again() {
        let mut s = Settler::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let p = Path::new("/in/c.csv");
        s.complete(p, (7, at(100)), t0);
        assert_eq!(s.take_ready(t0, at(100), |_| Some((7, at(100)))).len(), 1);
        s.complete(p, (7, at(100)), t0);
        assert!(s.take_ready(t0, at(101), |_| Some((9, at(101)))).is_empty());
    }

    #[test]
    fn vanished_files_are_forgotten() {
        let mut s = Settler::new(Duration::from_secs(1));
        s.touch(Path::new("/in/gone.csv"), Instant::now());
        assert!(s
            .take_ready(Instant::now(), SystemTime::now(), |_| None)
            .is_empty());
        assert!(s.is_empty());
    }
}
