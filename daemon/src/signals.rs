//! Signals: SIGTERM and SIGINT stop sluice (commit what is in flight, exit 0); SIGHUP
//! re-reads the model files (applied by the committer if they compile) and the
//! configuration (saying what would need a restart).
//!
//! The three are blocked first thing in `main`, before any thread exists, so every thread
//! sluice or its libraries start inherits the mask and none of them can take the signal's
//! default action (which for all three is to die). A signal that arrives during start-up
//! stays pending until [`Blocked::handle`] starts the thread that waits for it with
//! `sigwait`: a stop at any moment drains and exits 0, a reload never kills. A parent that
//! started sluice with the signals already blocked changes nothing.

use std::{collections::BTreeSet, fmt::Debug, sync::Arc, thread};

use nix::sys::signal::{SigSet, Signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{config::Config, health::Health, models::ModelReload};

/// SIGTERM, SIGINT and SIGHUP, blocked in the calling thread (and so in every thread it
/// starts afterwards).
#[derive(Debug)]
pub struct Blocked(SigSet);

impl Blocked {
    /// Blocks the three signals in the calling thread. Call it before any other thread
    /// exists. (It cannot fail for these signals; if it ever did, they keep their default
    /// actions, as for a process that never blocked them.)
    pub fn block() -> Blocked {
        let mut set = SigSet::empty();
        for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            set.add(signal);
        }
        if let Err(e) = set.thread_block() {
            eprintln!("warning: cannot block SIGTERM/SIGINT/SIGHUP: {e}");
        }
        Blocked(set)
    }

    /// For commands that do not handle the signals: unblocks them, so they act as they
    /// would by default (one already pending takes effect now).
    pub fn release(self) {
        if let Err(e) = self.0.thread_unblock() {
            eprintln!("warning: cannot unblock SIGTERM/SIGINT/SIGHUP: {e}");
        }
    }

    /// Starts the thread that receives the signals (one that arrived before this is
    /// received at once): SIGTERM or SIGINT cancels `stop`; SIGHUP re-reads the model
    /// files and the configuration (see [`reload`]).
    pub fn handle(
        self,
        stop: CancellationToken,
        health: Arc<Health>,
        running: Config,
        models: Arc<ModelReload>,
    ) -> std::io::Result<()> {
        let set = self.0;
        thread::Builder::new()
            .name("signals".into())
            .spawn(move || loop {
                match set.wait() {
                    Ok(Signal::SIGHUP) => {
                        if running.models.is_some() {
                            info!("SIGHUP: re-reading the model files");
                            models.request();
                        }
                        reload(&running);
                    }
                    Ok(signal) if stop.is_cancelled() => {
                        info!("{signal}: already stopping");
                    }
                    Ok(signal) => {
                        info!("{signal}: committing what is in flight, then stopping");
                        health.set_stopping();
                        stop.cancel();
                    }
                    Err(e) => {
                        error!(error = %e, "cannot wait for signals; stopping");
                        health.set_stopping();
                        stop.cancel();
                        return;
                    }
                }
            })
            .map(|_| ())
    }
}

/// SIGHUP: re-reads and validates the configuration file. Nothing in it can change while
/// sluice runs yet, so a valid file only gets the changed keys named ("restart to apply");
/// an invalid one is reported and the running configuration stays. Model files are
/// re-read separately (see [`ModelReload`]).
fn reload(running: &Config) {
    match Config::load(&running.path) {
        Err(e) => warn!("SIGHUP: the configuration is not valid, keeping the running one: {e}"),
        Ok(new) => {
            let changed = changed_keys(running, &new);
            if changed.is_empty() {
                info!("SIGHUP: configuration unchanged");
            } else {
                warn!(changed = %changed.join(", "), "SIGHUP: these configuration changes need a restart of sluice to apply");
            }
        }
    }
}

/// Sections (or sources) whose settings differ between two configurations.
fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let differs = |a: &dyn Debug, b: &dyn Debug| format!("{a:?}") != format!("{b:?}");
    let sections: [(&str, &dyn Debug, &dyn Debug); 6] = [
        ("data_dir", &old.data_dir, &new.data_dir),
        ("batch", &old.batch, &new.batch),
        ("duckdb", &old.duckdb, &new.duckdb),
        ("parquet", &old.parquet, &new.parquet),
        ("http", &old.http_listen, &new.http_listen),
        ("models", &old.models, &new.models),
    ];
    let mut changed: Vec<String> = sections
        .into_iter()
        .filter(|(_, a, b)| differs(*a, *b))
        .map(|(key, _, _)| key.to_string())
        .collect();
    let names: BTreeSet<&String> = old
        .sources
        .iter()
        .chain(&new.sources)
        .map(|(n, _)| n)
        .collect();
    for name in names {
        let find = |c: &Config| {
            c.sources
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.clone())
        };
        if differs(&find(old), &find(new)) {
            changed.push(format!("sources.{name}"));
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = "[sources.a]\ntype = \"csv\"\npath = \"in\"\n";

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("/etc/sluice/sluice.toml")).expect("valid")
    }

    #[test]
    fn names_the_sections_and_sources_that_changed() {
        let old = parse(BASE);
        assert!(changed_keys(&old, &parse(BASE)).is_empty());
        let new = parse(&format!(
            "[batch]\nmax_rows = 5\n{BASE}[sources.b]\ntype = \"csv\"\npath = \"x\"\n"
        ));
        assert_eq!(changed_keys(&old, &new), ["batch", "sources.b"]);
        let new = parse(&BASE.replace("\"in\"", "\"elsewhere\""));
        assert_eq!(changed_keys(&old, &new), ["sources.a"]);
    }
}
