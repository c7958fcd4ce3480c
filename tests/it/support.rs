//! A throwaway sluice deployment: a config file, an inbox, a data directory, and helpers
//! to run the real binary and inspect what it committed.

use std::{
    collections::BTreeSet,
    fs,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use tempfile::TempDir;

/// How long any wait in these tests may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);
/// How long one `sluice run --once` may take (the largest test inputs take seconds).
pub const ONCE_PATIENCE: Duration = Duration::from_secs(120);

/// The sluice binary under test.
pub fn sluice_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sluice")
}

/// A temporary deployment with one CSV source named `src` (table `src` unless set).
pub struct Deployment {
    pub dir: TempDir,
    pub inbox: PathBuf,
    pub data: PathBuf,
    pub config: PathBuf,
}

impl Deployment {
    /// `source_extra` is appended to `[sources.src]`; `top_extra` goes before the sources.
    pub fn new(source_extra: &str, top_extra: &str) -> Deployment {
        let source = format!(
            "[sources.src]\ntype = \"csv\"\npath = \"inbox\"\nsettle = \"100ms\"\n{source_extra}\n"
        );
        Deployment::with_source(&source, top_extra)
    }

    /// A deployment whose `[sources...]` tables are `sources` (written as given).
    pub fn with_source(sources: &str, top_extra: &str) -> Deployment {
        let dir = tempfile::tempdir().expect("tempdir");
        let inbox = dir.path().join("inbox");
        fs::create_dir_all(&inbox).expect("inbox");
        let data = dir.path().join("data");
        let config = dir.path().join("sluice.toml");
        // Tests run in parallel: the HTTP and SQL ports are chosen by the OS (see
        // Daemon::http_addr and Daemon::sql_port).
        let sql = if top_extra.contains("[sql]") {
            ""
        } else {
            "[sql]\nlisten = \"127.0.0.1:0\"\n"
        };
        let text = format!(
            "data_dir = \"data\"\n[http]\nlisten = \"127.0.0.1:0\"\n{sql}{top_extra}\n{sources}"
        );
        fs::write(&config, text).expect("config");
        Deployment {
            dir,
            inbox,
            data,
            config,
        }
    }

    /// Replaces the source's `settle`.
    pub fn with_settle(self, settle: &str) -> Deployment {
        let text = fs::read_to_string(&self.config).expect("config");
        let text = text.replace("settle = \"100ms\"", &format!("settle = \"{settle}\""));
        fs::write(&self.config, text).expect("config");
        self
    }

    /// Adds `[models]` with these files (paths relative to the models directory).
    pub fn with_models(self, files: &[(&str, &str)]) -> Deployment {
        self.write_models(files);
        let mut text = fs::read_to_string(&self.config).expect("config");
        text.push_str("\n[models]\ndir = \"models\"\n");
        fs::write(&self.config, text).expect("config");
        self
    }

    /// Writes (or overwrites) model files.
    pub fn write_models(&self, files: &[(&str, &str)]) {
        for (name, text) in files {
            let path = self.dir.path().join("models").join(name);
            fs::create_dir_all(path.parent().expect("parent")).expect("models dir");
            fs::write(path, text).expect("model file");
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(sluice_bin());
        cmd.args(args)
            .arg("--config")
            .arg(&self.config)
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::null());
        cmd
    }

    /// `sluice run --once`, which must succeed within [`ONCE_PATIENCE`] (a run that never
    /// ends is killed and fails the test instead of hanging the suite).
    pub fn run_once(&self) -> Output {
        let out = self.run_once_with(&[]);
        assert!(
            out.status.success(),
            "sluice run --once failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `sluice run --once` with these environment variables, however it ends (within
    /// [`ONCE_PATIENCE`], else it is killed and the test fails).
    pub fn run_once_with(&self, env: &[(&str, &str)]) -> Output {
        output(self.command(&["run", "--once"]).envs(env.iter().copied()))
    }

    /// Starts `sluice run` in the background, logging to a file.
    pub fn start(&self) -> Daemon {
        self.start_logging("info")
    }

    /// [`Deployment::start`] with a `SLUICE_LOG` filter.
    pub fn start_logging(&self, filter: &str) -> Daemon {
        self.start_with(filter, &[])
    }

    /// [`Deployment::start_logging`] with these environment variables.
    pub fn start_with(&self, filter: &str, env: &[(&str, &str)]) -> Daemon {
        let log = self.dir.path().join(format!("sluice-{}.log", unique()));
        let file = fs::File::create(&log).expect("log file");
        let child = self
            .command(&["run"])
            .env("SLUICE_LOG", filter)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn sluice");
        Daemon { child, log }
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.inbox.join(name);
        fs::write(&path, content).expect("write input");
        path
    }

    /// Files under `<data>/<kind>/src` (kind: archive or quarantine).
    pub fn moved(&self, kind: &str) -> Vec<String> {
        let dir = self.data.join(kind).join("src");
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The warehouse, opened read-only (sluice must not be running).
    pub fn db(&self) -> duckdb::Connection {
        open_read_only(&self.data.join("warehouse.duckdb"))
    }

    pub fn parquet_glob(&self, table: &str) -> String {
        format!("{}/parquet/{table}/*/*.parquet", self.data.display())
    }
}

/// Runs a command to its end, however it ends, within [`ONCE_PATIENCE`]: one that does not
/// finish is killed and fails the test instead of hanging the suite.
pub fn output(cmd: &mut Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(ONCE_PATIENCE) {
        Ok(out) => out.expect("wait for the command"),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            let out = rx.recv().expect("reaped").expect("output");
            panic!(
                "{cmd:?} did not finish within {ONCE_PATIENCE:?}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Runs `sluice <args> --config <config>`, which must succeed; its output.
pub fn sluice_ok(args: &[&str], config: &std::path::Path) -> Output {
    let out = output(
        Command::new(sluice_bin())
            .args(args)
            .arg("--config")
            .arg(config),
    );
    assert!(
        out.status.success(),
        "sluice {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A DuckDB file opened read-only.
pub fn open_read_only(path: &std::path::Path) -> duckdb::Connection {
    let config = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .expect("config");
    duckdb::Connection::open_with_flags(path, config).expect("open warehouse")
}

/// One value from a query.
pub fn query_i64(db: &duckdb::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Rows of a query, every value as text (NULL as "NULL"), in the query's order.
pub fn query_strings(db: &duckdb::Connection, sql: &str) -> Vec<Vec<String>> {
    let sql = format!("SELECT CAST(COLUMNS(*) AS VARCHAR) FROM ({sql})");
    let mut stmt = db.prepare(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = stmt.query([]).expect("query");
    let mut out = Vec::new();
    while let Some(row) = rows.next().expect("row") {
        let n = row.as_ref().column_count();
        out.push(
            (0..n)
                .map(|i| {
                    row.get::<_, Option<String>>(i)
                        .expect("string")
                        .unwrap_or_else(|| "NULL".into())
                })
                .collect(),
        );
    }
    out
}

/// A `sluice run` in the background.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `cond` holds, failing the test (with the daemon's log) after PATIENCE.
    pub fn wait_until(&mut self, what: &str, mut cond: impl FnMut(&Daemon) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            // A condition that panics (say, a GET to a daemon that is gone) still gets the
            // daemon's exit status and log into the failure.
            let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cond(self)));
            match checked {
                Ok(true) => return,
                Ok(false) => {}
                Err(panic) => {
                    let exit = self.child.try_wait().ok().flatten();
                    let why = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    panic!(
                        "waiting for {what}: {why} (sluice exited: {exit:?}); log:\n{}",
                        self.log_text()
                    );
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "sluice exited ({status}) while waiting for {what}:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The HTTP address the daemon bound (configure `listen = "127.0.0.1:0"`).
    pub fn http_addr(&mut self) -> String {
        self.wait_for_log("HTTP endpoints");
        let log = self.log_text();
        let start = log.find("listen=Some(").expect("listen in log") + "listen=Some(".len();
        let end = start + log[start..].find(')').expect("closing paren");
        format!("http://{}", &log[start..end])
    }

    /// The port the SQL endpoint bound (configure `[sql] listen = "127.0.0.1:0"`).
    pub fn sql_port(&mut self) -> u16 {
        self.wait_for_log("SQL endpoint listening");
        let log = self.log_text();
        let line = log
            .lines()
            .find(|l| l.contains("SQL endpoint listening"))
            .expect("the line");
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("listen="))
            .expect("listen= in the line");
        addr.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port")
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_for_log(&mut self, needle: &str) {
        self.wait_until(&format!("log line {needle:?}"), |d| {
            d.log_text().contains(needle)
        });
    }

    /// SIGTERM, then the exit status (within PATIENCE).
    pub fn terminate(mut self) -> (ExitStatus, String) {
        kill(self.pid(), Signal::SIGTERM).expect("SIGTERM");
        let status = self.wait_exit();
        (status, self.log_text())
    }

    /// SIGKILL: the process dies wherever it is.
    pub fn kill(mut self) {
        kill(self.pid(), Signal::SIGKILL).expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sluice did not exit; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a tool that must succeed; its stdout and stderr (the failure message shows both).
pub fn run_tool(cmd: &mut Command) -> String {
    let out = output(cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// GET `url`: status code and body (non-2xx statuses are answers, not errors).
pub fn http_get(url: &str) -> (u16, String) {
    try_get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// GET `url`, or why it could not be fetched (e.g. nothing listens yet).
pub fn try_get(url: &str) -> Result<(u16, String), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent.get(url).call()?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string()?;
    Ok((status, body))
}

/// The value of one series in a Prometheus text scrape (`name{labels}` exactly as printed).
pub fn metric(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The repository root of the checkout under test. Read at run time: a test binary
/// compiled in another checkout sharing the target directory (CI's clone does) would
/// otherwise read that checkout's files.
pub fn repo_root() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    dir.join("..")
}

/// Metric names documented in the README's metrics table.
pub fn documented_metrics() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README");
    let start = readme.find("<!-- metrics:start -->").expect("table");
    let end = readme.find("<!-- metrics:end -->").expect("end");
    readme[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

/// `sluice_*` names in a text, without histogram suffixes.
pub fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("sluice_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(base.to_string());
        rest = &tail[end..];
    }
    names
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A CSV body of `rows` lines `id,name,amount` with ids from `first`.
pub fn csv_rows(first: i64, rows: i64) -> String {
    let mut s = String::from("id,name,amount\n");
    for id in first..first + rows {
        s.push_str(&format!("{id},name {id},{}.{:02}\n", id % 1000, id % 100));
    }
    s
}

/// The declared schema matching [`csv_rows`].
pub const SCHEMA: &str =
    "[sources.src.schema]\nid = \"BIGINT\"\nname = \"VARCHAR\"\namount = \"DECIMAL(12,2)\"\n";
