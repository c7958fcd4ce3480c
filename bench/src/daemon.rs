//! The daemon under benchmark: started, watched through its log (HTTP and SQL
//! addresses), stopped with SIGTERM.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

/// The sluice binary: `given`, or the one built next to this bench.
pub fn sluice_binary(given: Option<&Path>) -> anyhow::Result<std::path::PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?.with_file_name("sluice"),
    };
    if !path.exists() {
        bail!(
            "{} not found: build it (scripts/bench.sh does)",
            path.display()
        );
    }
    Ok(path)
}

/// A child process that is killed if the bench stops without stopping it (a bench that
/// fails half-way leaves no daemon or client behind). Derefs to the [`Child`].
#[derive(Debug)]
pub struct Guarded {
    child: Child,
    done: bool,
}

impl Guarded {
    pub fn new(child: Child) -> Self {
        Guarded { child, done: false }
    }

    /// The process has ended (by the caller's hand): nothing to kill on drop.
    pub fn ended(&mut self) {
        self.done = true;
    }
}

impl std::ops::Deref for Guarded {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Guarded {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `sluice run --config <config>`, logging to `log`.
pub fn start(sluice: &Path, config: &Path, log: &Path) -> anyhow::Result<Guarded> {
    let log = std::fs::File::create(log)?;
    Command::new(sluice)
        .args(["run", "--config"])
        .arg(config)
        // `SLUICE_BENCH_LOG` widens the daemon's log (e.g. "info,sluice_sources=debug").
        .env(
            "SLUICE_LOG",
            std::env::var("SLUICE_BENCH_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting sluice")
        .map(Guarded::new)
}

/// Fails with the log's tail if the daemon has exited.
pub fn alive(child: &mut Child, log: &Path) -> anyhow::Result<()> {
    if let Some(status) = child.try_wait()? {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        bail!(
            "sluice exited with {status}; log tail:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

pub fn wait_for_http(log: &Path, child: &mut Child) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        alive(child, log)?;
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(at) = text.find("listen=Some(") {
            let rest = &text[at + "listen=Some(".len()..];
            if let Some(end) = rest.find(')') {
                return Ok(rest[..end].to_string());
            }
        }
        if Instant::now() > deadline {
            bail!("no HTTP address in sluice's log after 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The port of the daemon's SQL endpoint, from its log.
pub fn wait_for_sql(log: &Path, child: &mut Child) -> anyhow::Result<u16> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        alive(child, log)?;
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let port = text
            .lines()
            .find(|l| l.contains("SQL endpoint listening"))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("listen=")))
            .and_then(|a| a.rsplit(':').next()?.parse().ok());
        if let Some(port) = port {
            return Ok(port);
        }
        if Instant::now() > deadline {
            bail!("no SQL endpoint in sluice's log after 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM; the daemon must drain and exit 0.
pub fn stop(mut child: Guarded) -> anyhow::Result<()> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait()? {
            child.ended();
            if !status.success() {
                bail!("sluice exited with {status} after SIGTERM");
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("sluice did not exit within 2 minutes of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
