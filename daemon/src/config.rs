//! The configuration file: one TOML document, the public interface of the daemon.
//!
//! Loading goes: read the file; deserialize it as written (so structural mistakes are
//! reported with their key path and line); expand `${VAR}` inside string values; build the
//! typed [`Config`]; resolve relative paths against the config file's directory; then
//! [`validate`] every value and report all problems at once.
//!
//! Layout:
//! - [`file`]: the serde shape of the file (every key, its default, its doc).
//! - [`env`]: `${VAR}` expansion inside string values.
//! - [`validate`]: checks that need no I/O, each problem with its key path.

pub mod env;
pub mod file;
pub mod validate;

use std::{
    fmt,
    path::{Path, PathBuf},
};

use serde::Deserialize;

pub use file::{BatchConfig, DuckdbConfig, FileConfig, ModelsConfig, ParquetConfig, SourceConfig};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `sources.transactions.delimiter` (empty for the whole file).
    pub key: String,
    pub message: String,
    /// 1-based line in the file, where known.
    pub line: Option<usize>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.line, self.key.is_empty()) {
            (Some(line), false) => write!(f, "line {line}: {}: {}", self.key, self.message),
            (Some(line), true) => write!(f, "line {line}: {}", self.message),
            (None, false) => write!(f, "{}: {}", self.key, self.message),
            (None, true) => f.write_str(&self.message),
        }
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: {n} problem{}",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// `[sql]`, resolved.
#[derive(Debug, Clone)]
pub struct SqlSettings {
    pub listen: Option<std::net::SocketAddr>,
    pub max_connections: usize,
    pub statement_timeout: Option<std::time::Duration>,
    pub idle_in_transaction_timeout: Option<std::time::Duration>,
    /// Rows a result may have (`None`: no limit).
    pub max_result_rows: Option<u64>,
    /// Bytes a query may have.
    pub max_query_size: usize,
    /// Postgres connections open at once before logging in.
    pub max_unauthenticated: usize,
    /// Time a Postgres connection has to log in.
    pub auth_timeout: std::time::Duration,
    /// Users and their passwords (empty: no password is asked).
    pub users: Vec<(String, file::Secret)>,
    /// TLS certificate and key files, resolved (`None`: no TLS).
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A loaded, resolved and validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    pub data_dir: PathBuf,
    pub batch: BatchConfig,
    pub duckdb: DuckdbConfig,
    pub parquet: ParquetConfig,
    /// Where the HTTP endpoints listen (`None`: disabled).
    pub http_listen: Option<std::net::SocketAddr>,
    /// HTTP connections open at once.
    pub http_max_connections: usize,
    /// The SQL endpoint (`listen` resolved: `None` disables it).
    pub sql: SqlSettings,
    /// Sources by name, paths resolved.
    pub sources: Vec<(String, SourceConfig)>,
    /// Models, `dir` resolved; `None` without a `[models]` table.
    pub models: Option<ModelsConfig>,
    /// The lake; `None` without a `[lake]` table.
    pub lake: Option<file::LakeConfig>,
}

impl Config {
    /// Loads `path`: every problem is reported, none is silently defaulted.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let fail = |problems| ConfigError {
            path: path.to_path_buf(),
            problems,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            fail(vec![Problem {
                key: String::new(),
                message: format!("cannot read the configuration file: {e}"),
                line: None,
            }])
        })?;
        Config::parse(&text, path).map_err(fail)
    }

    /// Parses configuration text; `path` locates relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, Vec<Problem>> {
        Config::parse_with_env(text, path, &|name| std::env::var(name).ok())
    }

    /// [`Config::parse`] with `${VAR}` looked up in `env`.
    pub fn parse_with_env(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, Vec<Problem>> {
        check_structure(text)?;
        let table: toml::Table = toml::from_str(text).map_err(|e| vec![toml_problem(&e, text)])?;
        let expanded = env::expand(toml::Value::Table(table), env)?;
        let file = FileConfig::deserialize(expanded).map_err(|e| {
            vec![Problem {
                key: String::new(),
                message: format!("after expanding environment variables: {e}"),
                line: None,
            }]
        })?;
        let problems = validate::validate(&file);
        if !problems.is_empty() {
            return Err(problems);
        }
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(resolve(file, &base, path))
    }

    /// Where DuckDB's file is.
    pub fn duckdb_path(&self) -> PathBuf {
        self.data_dir.join(&self.duckdb.file)
    }

    /// The raw tables the configured sources feed.
    pub fn source_tables(&self) -> std::collections::BTreeSet<String> {
        self.sources
            .iter()
            .filter_map(|(name, s)| s.component().table_ident(name).ok().map(|t| t.to_string()))
            .collect()
    }

    pub fn parquet_dir(&self) -> PathBuf {
        self.data_dir.join(&self.parquet.dir)
    }
}

/// Deserializes the text as written, to report structural mistakes (unknown keys, wrong
/// types) with their key path and line.
fn check_structure(text: &str) -> Result<(), Vec<Problem>> {
    let de = toml::Deserializer::parse(text).map_err(|e| vec![toml_problem(&e, text)])?;
    match serde_path_to_error::deserialize::<_, FileConfig>(de) {
        Ok(_) => Ok(()),
        Err(e) => {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let mut problem = toml_problem(&inner, text);
            if key != "." {
                problem.key = key;
            }
            Err(vec![problem])
        }
    }
}

fn toml_problem(e: &toml::de::Error, text: &str) -> Problem {
    Problem {
        key: String::new(),
        message: e.message().trim().to_string(),
        line: e
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1),
    }
}

fn resolve(file: FileConfig, base: &Path, path: &Path) -> Config {
    let data_dir = base.join(&file.data_dir);
    let sources = file
        .sources
        .into_iter()
        .map(|(name, mut source)| {
            source.component_mut().resolve_paths(base);
            (name, source)
        })
        .collect();
    let models = file.models.map(|mut m| {
        m.dir = base.join(&m.dir);
        m
    });
    Config {
        path: path.to_path_buf(),
        data_dir,
        models,
        lake: file.lake,
        batch: file.batch,
        duckdb: file.duckdb,
        parquet: file.parquet,
        http_listen: file.http.listen.parse().ok(),
        http_max_connections: file.http.max_connections,
        sql: SqlSettings {
            listen: file.sql.listen.parse().ok(),
            max_connections: file.sql.max_connections,
            statement_timeout: Some(file.sql.statement_timeout).filter(|d| !d.is_zero()),
            idle_in_transaction_timeout: Some(file.sql.idle_in_transaction_timeout)
                .filter(|d| !d.is_zero()),
            max_result_rows: Some(file.sql.max_result_rows).filter(|&n| n > 0),
            max_query_size: usize::try_from(file.sql.max_query_size.as_u64()).unwrap_or(usize::MAX),
            max_unauthenticated: file.sql.max_unauthenticated,
            auth_timeout: file.sql.auth_timeout,
            users: file.sql.users.into_iter().collect(),
            tls: file
                .sql
                .tls_cert
                .zip(file.sql.tls_key)
                .map(|(cert, key)| (base.join(cert), base.join(key))),
        },
        sources,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod doc_check;
