//! Configuration of a CSV directory source (`type = "csv"`).

use std::{path::PathBuf, time::Duration};

use bytesize::ByteSize;
use serde::Deserialize;
use sluice_core::{Ident, TableSchema};

use crate::typing::{
    contract::SchemaContract,
    declared::{declared_columns, DeclaredSchema},
};

/// `[sources.<name>]` with `type = "csv"`. Paths are resolved by the daemon before use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSourceConfig {
    /// The watched directory.
    pub path: PathBuf,
    /// Which file names to ingest.
    #[serde(default = "default_glob")]
    pub glob: String,
    /// Raw table name; defaults to the source's name.
    #[serde(default)]
    pub table: Option<String>,
    /// Whether the first line is a header.
    #[serde(default = "default_true")]
    pub header: bool,
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    #[serde(default = "default_quote")]
    pub quote: String,
    /// A field equal to this string is NULL.
    #[serde(default)]
    pub null_string: String,
    /// A file written in place is complete once unchanged this long.
    #[serde(default = "default_settle", with = "humantime_serde")]
    pub settle: Duration,
    #[serde(default)]
    pub after_ingest: AfterIngest,
    /// Also ingest files in subdirectories.
    #[serde(default)]
    pub recursive: bool,
    #[serde(default)]
    pub watch: WatchMode,
    /// How often `watch = "poll"` lists the directory.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How often the directory is listed as a safety net behind inotify.
    #[serde(default = "default_rescan_interval", with = "humantime_serde")]
    pub rescan_interval: Duration,
    /// The longest record (one line, or several with quoted line breaks) read as a record:
    /// a longer one is a dead letter, a longer header quarantines its file, and so does a
    /// longer first record of a file without a header when the table's columns are to be
    /// inferred from that file (they cannot be counted). Neither is ever held whole in
    /// memory.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: ByteSize,
    /// Declared columns (DuckDB type names), in order; inferred when absent.
    #[serde(default)]
    pub schema: Option<DeclaredSchema>,
    /// What new header columns and values of other types do (see `typing::contract`).
    #[serde(default)]
    pub schema_contract: SchemaContract,
}

/// What happens to a file once all its rows are committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterIngest {
    /// Move to `<data_dir>/archive/<source>/`.
    #[default]
    Archive,
    Delete,
    /// Leave in place; it is remembered and not ingested again.
    Keep,
}

/// How changes in the directory are noticed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    /// Kernel notifications (inotify), plus a periodic rescan.
    #[default]
    Inotify,
    /// Listing the directory every `poll_interval` (for NFS and other filesystems
    /// without inotify).
    Poll,
}

fn default_glob() -> String {
    "*.csv".into()
}
fn default_true() -> bool {
    true
}
fn default_delimiter() -> String {
    ",".into()
}
fn default_quote() -> String {
    "\"".into()
}
fn default_settle() -> Duration {
    Duration::from_secs(2)
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_rescan_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_max_line_bytes() -> ByteSize {
    ByteSize::mib(1)
}

impl CsvSourceConfig {
    /// Checks every key without touching the filesystem; returns each problem as
    /// `(key path, message)` with the key path relative to this source's table.
    pub fn validate(&self, source_name: &str) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, msg: String| problems.push((key.to_string(), msg));
        if self.table.is_none() {
            if let Err(e) = Ident::new(source_name) {
                bad(
                    "table",
                    format!("the source name is not a valid table name ({e}); set `table`"),
                );
            }
        }
        if let Some(t) = &self.table {
            if let Err(e) = Ident::new(t) {
                bad("table", e.to_string());
            }
        }
        if self.path.as_os_str().is_empty() {
            bad("path", "must not be empty".into());
        }
        if let Err(e) = globset::Glob::new(&self.glob) {
            bad("glob", e.to_string());
        }
        let delim = single_byte(&self.delimiter);
        let quote = single_byte(&self.quote);
        if delim.is_none() {
            bad(
                "delimiter",
                format!("{:?} must be one ASCII character", self.delimiter),
            );
        }
        if quote.is_none() {
            bad(
                "quote",
                format!("{:?} must be one ASCII character", self.quote),
            );
        }
        if delim.is_some() && delim == quote {
            bad("quote", "must differ from the delimiter".into());
        }
        if matches!(delim, Some(b'\n' | b'\r')) {
            bad("delimiter", "must not be a line break".into());
        }
        // Beyond a day, an interval is a typo (and large enough ones overflow clocks).
        let day = Duration::from_secs(86_400);
        for (key, d) in [
            ("settle", self.settle),
            ("poll_interval", self.poll_interval),
            ("rescan_interval", self.rescan_interval),
        ] {
            if d > day || (d.is_zero() && key != "settle") {
                bad(
                    key,
                    format!("{d:?} is not within 0s (exclusive; settle may be 0) and 1 day"),
                );
            }
        }
        if self.max_line_bytes.as_u64() == 0 || self.max_line_bytes > ByteSize::gib(1) {
            bad(
                "max_line_bytes",
                format!("{} must be above 0 and at most 1 GiB", self.max_line_bytes),
            );
        }
        if let Some(schema) = &self.schema {
            if let Err(errs) = declared_columns(schema) {
                for (col, msg) in errs {
                    bad(&format!("schema.{col}"), msg);
                }
            }
        }
        problems.extend(self.schema_contract.validate());
        problems
    }

    /// The table name (validated by [`CsvSourceConfig::validate`]).
    pub fn table_ident(&self, source_name: &str) -> Result<Ident, sluice_core::IdentError> {
        Ident::new(self.table.as_deref().unwrap_or(source_name))
    }

    pub fn delimiter_byte(&self) -> u8 {
        single_byte(&self.delimiter).unwrap_or(b',')
    }

    pub fn quote_byte(&self) -> u8 {
        single_byte(&self.quote).unwrap_or(b'"')
    }

    /// The declared data columns, if any.
    pub fn declared_schema(&self) -> Option<TableSchema> {
        self.schema.as_ref().and_then(|s| declared_columns(s).ok())
    }
}

fn single_byte(s: &str) -> Option<u8> {
    match s.as_bytes() {
        [b] if b.is_ascii() => Some(*b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_sizes_out_of_range_are_refused() {
        let parse = |extra: &str| -> CsvSourceConfig {
            toml::from_str(&format!("path = \"in\"\n{extra}")).expect("parses")
        };
        for (extra, key) in [
            ("poll_interval = \"0s\"", "poll_interval"),
            ("rescan_interval = \"2days\"", "rescan_interval"),
            ("settle = \"1000years\"", "settle"),
            ("max_line_bytes = \"0B\"", "max_line_bytes"),
            ("max_line_bytes = \"2GiB\"", "max_line_bytes"),
        ] {
            let keys: Vec<String> = parse(extra)
                .validate("s")
                .into_iter()
                .map(|p| p.0)
                .collect();
            assert_eq!(keys, [key], "{extra}");
        }
        assert!(parse("settle = \"0s\"").validate("s").is_empty());
    }

    fn parse(extra: &str) -> CsvSourceConfig {
        let text = format!("path = \"in\"\n{extra}");
        toml::from_str(&text).expect("parses")
    }

    #[test]
    fn defaults_are_documented_values() {
        let c = parse("");
        assert_eq!(c.glob, "*.csv");
        assert_eq!(c.settle, Duration::from_secs(2));
        assert_eq!(c.after_ingest, AfterIngest::Archive);
        assert!(c.header);
        assert_eq!(c.max_line_bytes, ByteSize::mib(1));
        assert!(c.validate("transactions").is_empty());
    }

    #[test]
    fn schema_keeps_declared_order() {
        let c = parse("[schema]\nzeta = \"BIGINT\"\nalpha = \"DECIMAL(12,2)\"\n");
        let names: Vec<_> = c
            .declared_schema()
            .expect("valid")
            .columns
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["zeta", "alpha"]);
    }

    #[test]
    fn reports_every_problem_with_its_key() {
        let c = parse(
            "delimiter = \";;\"\nglob = \"[\"\ntable = \"bad-name\"\nmax_line_bytes = 0\n[schema]\nx = \"NOPE\"\n_sluice_line = \"BIGINT\"\n",
        );
        let keys: Vec<_> = c.validate("s").into_iter().map(|(k, _)| k).collect();
        for key in [
            "delimiter",
            "glob",
            "table",
            "max_line_bytes",
            "schema.x",
            "schema._sluice_line",
        ] {
            assert!(
                keys.contains(&key.to_string()),
                "{key} missing from {keys:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<CsvSourceConfig>("path = \"x\"\nsetle = \"1s\"")
            .expect_err("typo must fail");
        assert!(err.to_string().contains("setle"), "{err}");
    }
}
