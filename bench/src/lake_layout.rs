//! A day of 1 s batches' file layout in a Delta table without a day's commits: each
//! batch's rows become a data file of their own (as sluice's publisher writes a one-batch
//! commit), and many files share a commit. What a reader and a compaction then face is
//! the same: one small file per batch. Written with delta-rs directly, in sluice's lake
//! types (the publisher's select list over the raw table, through the same bridge).

use std::{future::IntoFuture as _, ops::RangeInclusive, path::Path};

use anyhow::Context;
use sluice_core::Ident;
use sluice_lake::{
    bridge,
    deltalake::{
        self,
        kernel::{transaction::CommitBuilder, Action},
        protocol::{DeltaOperation, SaveMode},
        writer::{DeltaWriter as _, RecordBatchWriter},
    },
    select,
};

/// Writes `batches` of `raw.t` to the Delta table at `table` (created already), a file
/// per batch, `per_commit` files per commit.
pub fn write_batches(
    conn: &duckdb::Connection,
    table: &Path,
    batches: RangeInclusive<i64>,
    per_commit: i64,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = url::Url::from_directory_path(table)
        .map_err(|()| anyhow::anyhow!("not a path: {}", table.display()))?;
    let mut delta = runtime.block_on(deltalake::open_table(url))?;
    let columns = sluice_state::tables::describe(conn, &Ident::new("raw")?, &Ident::new("t")?)?
        .context("raw.t")?;
    let sql = format!(
        "SELECT {} FROM raw.t WHERE _sluice_batch = ?",
        select::select_list(&columns).map_err(anyhow::Error::msg)?
    );
    let mut stmt = conn.prepare(&sql)?;
    let batches: Vec<i64> = batches.collect();
    for group in batches.chunks(per_commit as usize) {
        let mut actions = Vec::with_capacity(group.len());
        for &b in group {
            let mut writer = RecordBatchWriter::for_table(&delta)?;
            for batch in stmt.query_arrow([b])? {
                runtime.block_on(writer.write(bridge::to_delta(batch)?))?;
            }
            actions.extend(
                runtime
                    .block_on(writer.flush())?
                    .into_iter()
                    .map(Action::Add),
            );
        }
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: Some(vec!["dt".into()]),
            predicate: None,
        };
        let snapshot = delta.snapshot()?;
        let committed = runtime.block_on(
            CommitBuilder::default()
                .with_actions(actions)
                .build(Some(snapshot), delta.log_store(), operation)
                .into_future(),
        )?;
        delta.state = Some(committed.snapshot());
    }
    Ok(())
}

/// Data files in the current version of the Delta table at `table`.
pub fn files(table: &Path) -> anyhow::Result<usize> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = url::Url::from_directory_path(table)
        .map_err(|()| anyhow::anyhow!("not a path: {}", table.display()))?;
    let delta = runtime.block_on(deltalake::open_table(url))?;
    Ok(delta.snapshot()?.log_data().num_files())
}
