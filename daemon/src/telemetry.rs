//! Every metric the daemon emits, in one place. Names are documented in the README's
//! metrics table; labels are low-cardinality (source, table), never a file name or key.

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use sluice_models::{ModelReport, Outcome};
use sluice_sinks::{CommitReceipt, Storage};
use sluice_sources::{Backlog, SourceKind};

/// A batch was committed; `age` is how long its oldest row had waited, from reaching its
/// source to the commit's start.
pub fn batch_committed(
    receipt: &CommitReceipt,
    rows_by_source: &[(String, u64, u64)],
    took: Duration,
    age: Option<Duration>,
) {
    let table = receipt.table.to_string();
    if receipt.batch_id.is_some() {
        counter!("sluice_batches_committed_total", "table" => table.clone()).increment(1);
        histogram!("sluice_batch_rows", "table" => table.clone()).record(receipt.rows as f64);
        if let Some(age) = age {
            histogram!("sluice_batch_age_seconds", "table" => table.clone())
                .record(age.as_secs_f64());
        }
    }
    histogram!("sluice_commit_duration_seconds", "table" => table).record(took.as_secs_f64());
    for (source, rows, dead) in rows_by_source {
        counter!("sluice_rows_ingested_total", "source" => source.clone()).increment(*rows);
        if *dead > 0 {
            counter!("sluice_dead_letters_total", "source" => source.clone(), "reason" => "parse")
                .increment(*dead);
        }
    }
    for change in &receipt.schema_changes {
        counter!("sluice_schema_changes_total", "table" => receipt.table.to_string(), "change" => change.kind())
            .increment(1);
    }
    if let Some(file) = &receipt.parquet {
        counter!("sluice_parquet_files_written_total").increment(1);
        counter!("sluice_parquet_bytes_written_total").increment(file.bytes);
    }
}

/// Makes every per-source and per-table series exist (at zero) from the start, so rates
/// and alerts see a series before the first event.
pub fn register(source: &str, kind: SourceKind, table: &str) {
    counter!("sluice_rows_ingested_total", "source" => source.to_string()).increment(0);
    counter!("sluice_dead_letters_total", "source" => source.to_string(), "reason" => "parse")
        .increment(0);
    counter!("sluice_batches_committed_total", "table" => table.to_string()).increment(0);
    counter!("sluice_commit_failures_total", "table" => table.to_string()).increment(0);
    for change in ["add_column", "widen_column"] {
        counter!("sluice_schema_changes_total", "table" => table.to_string(), "change" => change)
            .increment(0);
    }
    counter!("sluice_parquet_files_written_total").increment(0);
    counter!("sluice_parquet_bytes_written_total").increment(0);
    for storage in [
        Storage::Full,
        Storage::ReadOnly,
        Storage::Io,
        Storage::Memory,
    ] {
        commits_blocked(storage, false);
    }
    sluice_sources::telemetry::register(source, kind.backlog() == Backlog::Files);
}

/// Commits are blocked by a storage problem (`on`), or no longer are.
pub fn commits_blocked(storage: Storage, on: bool) {
    gauge!("sluice_commits_blocked", "reason" => storage.as_str()).set(f64::from(u8::from(on)));
}

/// The HTTP listener is up: its refusals are counted from zero.
pub fn http_listening() {
    counter!("sluice_http_connections_refused_total").increment(0);
}

/// An HTTP connection closed as it arrived: `http.max_connections` were open.
pub fn http_connection_refused() {
    counter!("sluice_http_connections_refused_total").increment(1);
}

/// A commit failed and will be retried.
pub fn commit_failed(table: &str) {
    counter!("sluice_commit_failures_total", "table" => table.to_string()).increment(1);
}

/// Makes a model's series exist (at zero) from the start.
pub fn register_model(model: &str) {
    for name in [
        "sluice_model_runs_total",
        "sluice_model_failures_total",
        "sluice_model_rows_written_total",
    ] {
        counter!(name, "model" => model.to_string()).increment(0);
    }
}

/// A model ran (or failed, or waited for a failing upstream).
pub fn model_ran(report: &ModelReport) {
    let model = report.model.clone();
    match &report.outcome {
        Outcome::Built { rows, .. } => {
            counter!("sluice_model_runs_total", "model" => model.clone()).increment(1);
            counter!("sluice_model_rows_written_total", "model" => model.clone()).increment(*rows);
            histogram!("sluice_model_duration_seconds", "model" => model.clone())
                .record(report.duration.as_secs_f64());
        }
        Outcome::Failed { .. } => {
            counter!("sluice_model_failures_total", "model" => model.clone()).increment(1);
        }
        Outcome::Waiting { .. } => {}
    }
    for t in &report.tests {
        gauge!("sluice_data_test_failures", "model" => model.clone(), "test" => t.name.clone())
            // A test that cannot run counts as one failure.
            .set(if t.error.is_some() {
                1.0
            } else {
                t.failures as f64
            });
    }
}

/// Makes a lake table's series exist (at zero) from the start.
pub fn register_lake_table(table: &str) {
    for name in [
        "sluice_lake_commits_total",
        "sluice_lake_commit_failures_total",
        "sluice_lake_conflicts_total",
        "sluice_lake_rows_total",
        "sluice_lake_compactions_total",
        "sluice_lake_vacuumed_files_total",
        "sluice_lake_expired_files_total",
        "sluice_lake_upkeep_failures_total",
    ] {
        counter!(name, "table" => table.to_string()).increment(0);
    }
}

/// A Delta commit of the lake.
pub fn lake_published(p: &sluice_lake::Published) {
    let table = p.table.clone();
    counter!("sluice_lake_commits_total", "table" => table.clone()).increment(1);
    counter!("sluice_lake_rows_total", "table" => table.clone()).increment(p.rows);
    histogram!("sluice_lake_commit_duration_seconds", "table" => table)
        .record(p.took.as_secs_f64());
}

/// Commits of `table` lost to a conflict and redone.
pub fn lake_conflicts(table: &str, conflicts: u64) {
    counter!("sluice_lake_conflicts_total", "table" => table.to_string()).increment(conflicts);
}

/// What the lake's upkeep did.
#[derive(Debug, Clone, Copy)]
pub enum Upkeep {
    Compactions,
    VacuumedFiles,
    ExpiredFiles,
    Failures,
}

/// The lake's upkeep did `n` of `what`.
pub fn lake_upkeep(table: &str, what: Upkeep, n: u64) {
    let name = match what {
        Upkeep::Compactions => "sluice_lake_compactions_total",
        Upkeep::VacuumedFiles => "sluice_lake_vacuumed_files_total",
        Upkeep::ExpiredFiles => "sluice_lake_expired_files_total",
        Upkeep::Failures => "sluice_lake_upkeep_failures_total",
    };
    counter!(name, "table" => table.to_string()).increment(n);
}

/// A lake commit failed (it is retried).
pub fn lake_failed(table: &str) {
    counter!("sluice_lake_commit_failures_total", "table" => table.to_string()).increment(1);
}

/// Where a table stands in the lake.
pub fn lake_state(table: &str, state: Option<&sluice_lake::TableState>, behind: u64) {
    let label = table.to_string();
    gauge!("sluice_lake_behind_batches", "table" => label.clone()).set(behind as f64);
    if let Some(state) = state {
        gauge!("sluice_lake_files", "table" => label.clone()).set(state.files as f64);
        gauge!("sluice_lake_version", "table" => label).set(state.version as f64);
    }
}
