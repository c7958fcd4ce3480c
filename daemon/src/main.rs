//! # sluice: the daemon binary
//!
//! Layout:
//! - [`cli`]: commands and flags.
//! - [`config`]: the TOML file: shape, `${VAR}` expansion, validation.
//! - [`lock`]: one sluice per data directory.
//! - [`run`]: wiring sources and the committer for `sluice run`.
//! - [`signals`]: SIGTERM/SIGINT stop, SIGHUP re-reads the configuration; blocked from
//!   the first instant of `main`, received by a thread of their own.
//! - [`pipeline`]: batching chunks per table and committing them.
//! - [`models`]: dbt-format models run after commits; `sluice models` commands.
//! - [`health`]: liveness, readiness and status shared by the pipeline and the endpoints.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`, `/status`, `/query`, `/catalog`.
//! - [`notify`]: systemd `Type=notify` (ready, status, watchdog, stopping).
//! - [`status_cli`]: `sluice status`, a readable view of a running daemon's `/status`.
//! - [`sql_cli`]: `sluice sql`, queries through the daemon or on the database itself.
//! - [`telemetry`]: the metrics the daemon emits.
//! - [`warehouse`]: the DuckDB file and Parquet directory opened as configured.
//!
//! The data path, in one direction: source threads (`sluice-sources`) -> bounded channel
//! -> batcher -> commit (`sluice-sinks`: Parquet, then one DuckDB transaction) ->
//! acknowledgement back to the source.

mod cli;
mod config;
mod health;
mod http;
mod lake;
mod lock;
mod models;
mod notify;
mod pipeline;
mod run;
mod signals;
mod sql_cli;
mod status_cli;
mod telemetry;
mod warehouse;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command, LogFormat, ModelsCommand};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Before anything else, and before any thread exists: see `signals`.
    let stop_signals = signals::Blocked::block();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Run { config, once } => {
            raise_open_files_limit();
            with_config(&config.path, |c| run::run(c, once, stop_signals))
        }
        command => {
            stop_signals.release();
            other_command(command)
        }
    }
}

/// The commands that keep the signals' default actions (everything but `run`).
fn other_command(command: Command) -> ExitCode {
    match command {
        Command::Check { config } => check(&config.path),
        Command::Status { url } => match status_cli::print(&url) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Sql {
            config,
            query,
            format,
            user,
        } => match config::Config::load(&config.path) {
            Ok(c) => match sql_cli::run(&c, query, format, user) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run { .. } => unreachable_run(),
        Command::Models { command } => match command {
            ModelsCommand::List { config } => {
                with_config(&config.path, |c| models::commands::list(&c))
            }
            ModelsCommand::Run {
                config,
                select,
                full_refresh,
            } => with_config(&config.path, |c| {
                models::commands::run(&c, select, full_refresh)
            }),
        },
    }
}

/// `run` is dispatched by `main`, which owns the blocked signals it needs.
fn unreachable_run() -> ExitCode {
    eprintln!("error: internal: `run` reached the dispatcher of the other commands");
    ExitCode::FAILURE
}

/// Loads the configuration (exit 2 if it is invalid) and runs `f` (exit 1 if it fails).
fn with_config(
    path: &std::path::Path,
    f: impl FnOnce(config::Config) -> anyhow::Result<()>,
) -> ExitCode {
    let config = match config::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match f(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `sluice check`: every problem, then a non-zero exit if there was any.
fn check(path: &std::path::Path) -> ExitCode {
    let config = match config::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut problems = Vec::new();
    for (name, source) in &config.sources {
        for (key, message) in source.component().check() {
            problems.push(format!("sources.{name}.{key}: {message}"));
        }
    }
    let mut notes = Vec::new();
    problems.extend(models::commands::check(&config, &mut notes));
    for note in &notes {
        eprintln!("note: {note}");
    }
    if !problems.is_empty() {
        eprintln!("error: {}: {} problem(s)", path.display(), problems.len());
        for p in problems {
            eprintln!("  {p}");
        }
        return ExitCode::from(2);
    }
    println!(
        "{}: ok ({} source(s), data_dir {})",
        path.display(),
        config.sources.len(),
        config.data_dir.display()
    );
    ExitCode::SUCCESS
}

/// Raises the soft limit on open files to the hard one (capped by the kernel's
/// `fs.nr_open`): the default soft limit (often 1024) is soon reached by SQL clients,
/// HTTP connections and DuckDB's files together, and a file that then fails to open waits
/// for descriptors to be freed. The systemd unit sets `LimitNOFILE=`; outside it the hard
/// limit is what the login gives. If it cannot be raised (a sandbox may refuse the
/// system call), sluice warns and runs with the limit it has.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit; running with it as it is");
            return;
        }
    };
    let nr_open: Option<u64> = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let target = match (hard, nr_open) {
        (RLIM_INFINITY, Some(cap)) => cap,
        (hard, Some(cap)) => hard.min(cap),
        (hard, None) => hard,
    };
    if soft >= target {
        return;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
        Ok(()) => tracing::debug!(from = soft, to = target, "raised the open-file limit"),
        Err(e) => tracing::warn!(limit = soft, error = %e,
            "cannot raise the open-file limit; running with it as it is"),
    }
}

/// Levels for other crates' log targets unless `SLUICE_LOG` names them. delta-rs and its
/// kernel log every snapshot load and commit at INFO (several lines a second): WARN.
/// delta-rs's transactions log every conflict at ERROR, which sluice resolves and counts
/// (normal with several instances: a log-based alert would fire on each); every error
/// there is returned to sluice, which logs it: off.
const QUIET: &[(&str, &str)] = &[
    ("buoyant_kernel", "warn"),
    ("buoyant_kernel_engine", "warn"),
    ("deltalake_core", "warn"),
    ("deltalake_core::kernel::transaction", "off"),
    ("deltalake_aws", "warn"),
];

fn init_logging(format: LogFormat) {
    let spec = std::env::var("SLUICE_LOG").unwrap_or_else(|_| "info".into());
    let mut directives = spec.clone();
    for (target, level) in QUIET {
        if !spec.contains(target) {
            directives.push_str(&format!(",{target}={level}"));
        }
    }
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: journald, files and log shippers get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    log_panics();
}

/// A panic goes to the log like any other error, with its thread's name: one line (one
/// JSON object with `--log-format json`), not the default hook's free text, and a
/// backtrace only when `RUST_BACKTRACE` asks for one. (Some panics are caught and
/// handled, e.g. inside delta-rs; they are logged all the same.)
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        let payload = info.payload();
        let message = (payload.downcast_ref::<&str>().copied())
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!(thread, %location, %backtrace, "a thread panicked: {message}");
        } else {
            tracing::error!(thread, %location, "a thread panicked: {message}");
        }
    }));
}
