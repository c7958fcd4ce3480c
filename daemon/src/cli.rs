//! Command-line interface. Runtime switches are flags; everything else is configuration.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// sluice: Kafka topics and CSV drops into Parquet and DuckDB, exactly once.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest until SIGTERM/SIGINT (or, with --once, what is there now).
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Ingest everything present now, commit, and exit 0.
        #[arg(long)]
        once: bool,
    },
    /// Check the configuration and report every problem.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List or run the dbt-format models (one-shot, while no daemon holds the data_dir).
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Run SQL on the warehouse (read-only): through the running daemon, or on the
    /// database itself when none runs. Without QUERY, statements are read from standard
    /// input, each ended by `;`.
    Sql {
        #[command(flatten)]
        config: ConfigArg,
        /// The query; omit it to read statements from standard input.
        query: Option<String>,
        /// How to print results.
        #[arg(long, value_enum, default_value_t = crate::sql_cli::Format::Table)]
        format: crate::sql_cli::Format,
        /// A user of [sql.users] (password from SLUICE_SQL_PASSWORD), when the daemon has users.
        #[arg(long)]
        user: Option<String>,
    },
    /// Show a running daemon's status (sources, recent batches) as a table.
    Status {
        /// Base URL of the daemon's HTTP endpoints.
        #[arg(long, default_value = "http://127.0.0.1:7711")]
        url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every model in run order: materialization, strategy, key, tests, what it reads.
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Run the models that are due (new batches, changed SQL), in dependency order.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Only these models (repeatable).
        #[arg(long, value_name = "NAME")]
        select: Vec<String>,
        /// Rebuild the models from scratch instead of incrementally.
        #[arg(long)]
        full_refresh: bool,
    },
}

/// Where the configuration file is.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Configuration file.
    #[arg(
        long = "config",
        short = 'c',
        env = "SLUICE_CONFIG",
        default_value = "./sluice.toml"
    )]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}
