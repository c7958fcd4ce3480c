//! `sluice sql ["SELECT ..."]`: SQL on the warehouse from the command line. While a
//! daemon holds the data directory, the query goes to its `POST /query` (credentials from
//! `--user` and `SLUICE_SQL_PASSWORD` when `[sql.users]` is set); otherwise sluice opens
//! the database itself, read-only, and runs the query through the same gate
//! ([`sluice_sql::http::query`]), so the answer and the rules are the same either way.
//! Without a query argument it reads statements from standard input, each ended by `;`
//! (a prompt is shown on a terminal).

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use anyhow::{bail, Context};
use arrow::ipc::reader::StreamReader;
use futures::StreamExt;
use sluice_sql::http::Output;

use crate::config::Config;
use crate::lock::{lock_data_dir, DataDirLock, LockError};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people.
    Table,
    Csv,
    Json,
}

/// Where queries go: the running daemon, or the database opened here.
enum Target {
    Daemon {
        url: String,
        auth: Option<String>,
    },
    Local {
        service: Arc<sluice_sql::Service>,
        runtime: tokio::runtime::Runtime,
        _lock: DataDirLock,
    },
}

pub fn run(
    config: &Config,
    query: Option<String>,
    format: Format,
    user: Option<String>,
) -> anyhow::Result<()> {
    let target = target(config, user)?;
    match query {
        Some(q) => answer(&target, &q, format),
        None => interactive(&target, format),
    }
}

fn target(config: &Config, user: Option<String>) -> anyhow::Result<Target> {
    match lock_data_dir(&config.data_dir) {
        Ok(lock) => local(config, lock),
        Err(LockError::Held { http, .. }) => {
            let Some(listen) = http.or(config.http_listen) else {
                bail!(
                    "a sluice daemon holds {} and its http.listen is \"\": query it with psql on \
                     sql.listen instead",
                    config.data_dir.display()
                );
            };
            let auth = match (user, config.sql.users.is_empty()) {
                (Some(u), _) => Some(basic(&u)?),
                (None, true) => None,
                (None, false) => bail!("[sql.users] is set: give --user (and SLUICE_SQL_PASSWORD)"),
            };
            Ok(Target::Daemon {
                url: format!("http://{listen}/query"),
                auth,
            })
        }
        Err(e) => Err(e.into()),
    }
}

fn basic(user: &str) -> anyhow::Result<String> {
    use base64::Engine;
    let password = std::env::var("SLUICE_SQL_PASSWORD")
        .context("SLUICE_SQL_PASSWORD is not set (the password of --user)")?;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    Ok(format!("Basic {token}"))
}

/// The database opened here, read-only, with the data directory locked meanwhile.
fn local(config: &Config, lock: DataDirLock) -> anyhow::Result<Target> {
    let path = config.duckdb_path();
    if !path.exists() {
        bail!("{} does not exist yet: run sluice first", path.display());
    }
    let flags = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .context("configuring DuckDB")?;
    let base = duckdb::Connection::open_with_flags(&path, flags)
        .with_context(|| format!("opening {} read-only", path.display()))?;
    sluice_state::sandbox::lock(&base)?;
    let limits = sluice_sql::Limits::local(config.sql.max_query_size);
    let service = sluice_sql::Service::new(
        base,
        crate::run::sql_scope(config),
        limits,
        crate::run::server_version(),
        None,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    Ok(Target::Local {
        service: Arc::new(service),
        runtime,
        _lock: lock,
    })
}

/// Runs one query and prints its result to standard output.
fn answer(target: &Target, sql: &str, format: Format) -> anyhow::Result<()> {
    let output = match format {
        Format::Table => Output::Arrow,
        Format::Csv => Output::Csv,
        Format::Json => Output::Json,
    };
    let body = match target {
        Target::Daemon { url, auth } => remote(url, auth.as_deref(), sql, output)?,
        Target::Local {
            service, runtime, ..
        } => runtime.block_on(async {
            let answer = sluice_sql::http::query(service, sql, Vec::new(), output)
                .await
                .map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.sqlstate))?;
            let mut body = Vec::new();
            let mut chunks = answer.body;
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.sqlstate))?;
                body.extend_from_slice(&chunk);
            }
            anyhow::Ok(body)
        })?,
    };
    let mut out = std::io::stdout().lock();
    match format {
        Format::Table => {
            let batches = StreamReader::try_new(std::io::Cursor::new(body), None)
                .context("reading the Arrow result")?
                .collect::<Result<Vec<_>, _>>()
                .context("reading the Arrow result")?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            writeln!(
                out,
                "{}",
                arrow::util::pretty::pretty_format_batches(&batches)?
            )?;
            writeln!(out, "({rows} row{})", if rows == 1 { "" } else { "s" })?;
        }
        Format::Csv | Format::Json => out.write_all(&body)?,
    }
    Ok(())
}

/// `POST /query` to the daemon; the body, or the daemon's error.
fn remote(url: &str, auth: Option<&str>, sql: &str, output: Output) -> anyhow::Result<Vec<u8>> {
    let mut request = ureq::post(url)
        .config()
        .http_status_as_error(false)
        .build()
        .header("Accept", output.content_type());
    if let Some(auth) = auth {
        request = request.header("Authorization", auth);
    }
    let mut response = request
        .send(sql)
        .with_context(|| format!("POST {url} (is the daemon's HTTP listener up?)"))?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .context("reading the result")?;
    if !status.is_success() {
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        bail!(
            "{} ({})",
            error["error"]["message"]
                .as_str()
                .unwrap_or("the daemon refused the query"),
            error["error"]["sqlstate"].as_str().unwrap_or("HTTP error")
        );
    }
    Ok(body)
}

/// Statements from standard input, each ended by `;` (or by the end of the input); an
/// error is printed and the next statement read.
fn interactive(target: &Target, format: Format) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let prompt = stdin.is_terminal();
    let mut input = stdin.lock();
    let mut statement = String::new();
    let mut failed = false;
    loop {
        if prompt {
            eprint!(
                "{}",
                if statement.is_empty() {
                    "sluice> "
                } else {
                    "   ...> "
                }
            );
        }
        let mut line = String::new();
        let end = input
            .read_line(&mut line)
            .context("reading standard input")?
            == 0;
        statement.push_str(&line);
        if !end && !line.trim_end().ends_with(';') {
            continue;
        }
        let sql = std::mem::take(&mut statement);
        if !sql.trim().trim_end_matches(';').trim().is_empty() {
            if let Err(e) = answer(target, &sql, format) {
                eprintln!("error: {e:#}");
                failed = true;
            }
        }
        if end {
            break;
        }
    }
    if failed && !prompt {
        bail!("a statement failed");
    }
    Ok(())
}
