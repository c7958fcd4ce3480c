//! The shape of `sluice.toml`. Every key is here with its default; the README's
//! configuration reference is checked against this file by a test.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use bytesize::ByteSize;
use serde::Deserialize;
pub use sluice_lake::LakeConfig;
pub use sluice_sources::SourceConfig;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where the DuckDB file, `parquet/`, `archive/` and `quarantine/` live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub duckdb: DuckdbConfig,
    #[serde(default)]
    pub parquet: ParquetConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub sql: SqlConfig,
    /// Sources by name; the name is the default table name.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// dbt-format models maintained after each commit; none when absent.
    #[serde(default)]
    pub models: Option<ModelsConfig>,
    /// Raw tables also published as Delta tables; none when absent.
    #[serde(default)]
    pub lake: Option<LakeConfig>,
}

/// `[models]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// A dbt project directory (with `dbt_project.yml`) or a folder of `.sql` models.
    pub dir: PathBuf,
    /// Schema the models are built in.
    #[serde(default = "default_models_schema")]
    pub schema: String,
}

/// `[batch]`: a table's batch is committed when any limit is reached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_rows: default_max_rows(),
            max_bytes: default_max_bytes(),
            max_age: default_max_age(),
        }
    }
}

/// `[duckdb]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuckdbConfig {
    /// Database file, relative to `data_dir`.
    #[serde(default = "default_duckdb_file")]
    pub file: PathBuf,
    /// Schema of the raw tables.
    #[serde(default = "default_raw_schema")]
    pub raw_schema: String,
    /// DuckDB's `memory_limit`, e.g. `"2GB"`.
    #[serde(default)]
    pub memory_limit: Option<String>,
    /// DuckDB's worker threads.
    #[serde(default)]
    pub threads: Option<u16>,
    /// DuckDB's `checkpoint_threshold`: a commit that leaves the WAL larger checkpoints.
    #[serde(default)]
    pub checkpoint_threshold: Option<ByteSize>,
}

impl Default for DuckdbConfig {
    fn default() -> Self {
        DuckdbConfig {
            file: default_duckdb_file(),
            raw_schema: default_raw_schema(),
            memory_limit: None,
            threads: None,
            checkpoint_threshold: None,
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `address:port` of the metrics, health and status endpoints; `""` disables them.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Connections open at once; more are closed as they arrive.
    #[serde(default = "default_http_max_connections")]
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            max_connections: default_http_max_connections(),
        }
    }
}

fn default_http_max_connections() -> usize {
    128
}

/// Loopback only unless configured otherwise; 7711 is outside the 9100-9999 range
/// Prometheus exporters have allocated among themselves.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7711";

fn default_listen() -> String {
    DEFAULT_LISTEN.into()
}

/// `[sql]`: the Postgres wire protocol endpoint on the live warehouse (read-only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// `address:port` of the Postgres endpoint; `""` disables it.
    #[serde(default = "default_sql_listen")]
    pub listen: String,
    /// Most clients connected at once; more are refused (SQLSTATE 53300).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A statement running longer is stopped (57014), unless the session sets its own
    /// `statement_timeout`; `"0s"`: no limit.
    #[serde(default = "default_statement_timeout", with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// A transaction left open and idle this long is rolled back and its connection ended
    /// (25P03), unless the session sets its own `idle_in_transaction_session_timeout`; its
    /// snapshot would keep DuckDB from checkpointing after updates. `"0s"`: no limit.
    #[serde(
        default = "default_idle_in_transaction_timeout",
        with = "humantime_serde"
    )]
    pub idle_in_transaction_timeout: Duration,
    /// Rows one result may have; a longer result ends with an error (54000) after this
    /// many rows. `0`: no limit.
    #[serde(default = "default_max_result_rows")]
    pub max_result_rows: u64,
    /// Bytes a query may have (its text, and over Postgres its parameters); a longer one
    /// is refused (54000) before sluice buffers it.
    #[serde(default = "default_max_query_size")]
    pub max_query_size: ByteSize,
    /// Postgres connections open at once that have not logged in yet; more are closed
    /// at once.
    #[serde(default = "default_max_unauthenticated")]
    pub max_unauthenticated: usize,
    /// A Postgres connection that has not logged in by then is closed.
    #[serde(default = "default_auth_timeout", with = "humantime_serde")]
    pub auth_timeout: Duration,
    /// `user = "password"`: with any, every client proves its password (SCRAM-SHA-256);
    /// required for a non-loopback `listen`. Values may be `${VAR}`.
    #[serde(default)]
    pub users: BTreeMap<String, Secret>,
    /// PEM certificate chain; with `tls_key`, clients must connect over TLS.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

/// A value never shown: `Debug` writes `***` (configuration is logged and served by
/// `/status` only through `Debug`-free summaries, and this keeps it so).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Default for SqlConfig {
    fn default() -> Self {
        SqlConfig {
            listen: default_sql_listen(),
            max_connections: default_max_connections(),
            statement_timeout: default_statement_timeout(),
            idle_in_transaction_timeout: default_idle_in_transaction_timeout(),
            max_result_rows: default_max_result_rows(),
            max_query_size: default_max_query_size(),
            max_unauthenticated: default_max_unauthenticated(),
            auth_timeout: default_auth_timeout(),
            users: BTreeMap::new(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// Loopback only unless configured otherwise; next to the HTTP port, away from
/// Postgres's 5432, PgBouncer's 6432, RisingWave's 4566 and Materialize's 6875.
pub const DEFAULT_SQL_LISTEN: &str = "127.0.0.1:7712";

fn default_sql_listen() -> String {
    DEFAULT_SQL_LISTEN.into()
}
fn default_max_connections() -> usize {
    16
}
fn default_statement_timeout() -> Duration {
    Duration::from_secs(300)
}
/// Large enough for any export a person or an agent reads (the 10M-row tests), small
/// enough to stop a runaway cross join from streaming forever.
fn default_max_result_rows() -> u64 {
    100_000_000
}
fn default_idle_in_transaction_timeout() -> Duration {
    Duration::from_secs(300)
}
/// Far above what BI tools and agents send (ClickHouse's default `max_query_size` too);
/// vetting one takes DuckDB and the gate a few hundred times its size for a moment.
fn default_max_query_size() -> ByteSize {
    ByteSize::kib(256)
}
fn default_max_unauthenticated() -> usize {
    32
}
/// Postgres's `authentication_timeout`.
fn default_auth_timeout() -> Duration {
    Duration::from_secs(60)
}

/// `[parquet]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Directory, relative to `data_dir`.
    #[serde(default = "default_parquet_dir")]
    pub dir: PathBuf,
    #[serde(default)]
    pub compression: Compression,
}

impl Default for ParquetConfig {
    fn default() -> Self {
        ParquetConfig {
            enabled: true,
            dir: default_parquet_dir(),
            compression: Compression::default(),
        }
    }
}

/// `parquet.compression`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Snappy,
    None,
}

impl From<Compression> for sluice_sinks::Compression {
    fn from(c: Compression) -> Self {
        match c {
            Compression::Zstd => sluice_sinks::Compression::Zstd,
            Compression::Snappy => sluice_sinks::Compression::Snappy,
            Compression::None => sluice_sinks::Compression::None,
        }
    }
}

fn default_data_dir() -> PathBuf {
    "./data".into()
}
/// One DuckDB row group. A transaction that appends at least a row group has its rows
/// compressed straight into the database file; smaller ones go through the WAL and are
/// written again at the next checkpoint. Measured on the CSV benchmark (BENCHMARKS.md):
/// 10M rows in 122,880-row batches took 10.9 s, in 98,304-row batches 13.6 s.
pub const DEFAULT_MAX_ROWS: usize = 122_880;

fn default_max_rows() -> usize {
    DEFAULT_MAX_ROWS
}
fn default_max_bytes() -> ByteSize {
    ByteSize::mib(64)
}
fn default_max_age() -> Duration {
    Duration::from_secs(1)
}
fn default_duckdb_file() -> PathBuf {
    "warehouse.duckdb".into()
}
fn default_raw_schema() -> String {
    "raw".into()
}
fn default_models_schema() -> String {
    "main".into()
}
fn default_parquet_dir() -> PathBuf {
    "parquet".into()
}
fn default_true() -> bool {
    true
}
