//! A raw table's Delta table: found at `<root>/<table>`, or created there with the raw
//! table's columns (in the lake's types), partitioned by `dt`.

use std::collections::HashMap;

use arrow59::datatypes::Schema as Schema59;
use deltalake::{
    kernel::engine::arrow_conversion::TryIntoKernel, protocol::SaveMode, DeltaTable,
    DeltaTableBuilder, DeltaTableError, TableProperty,
};
use url::Url;

use crate::{select::PARTITION, LakeError};

/// The runtime the lake's store I/O runs on, driven from a blocking thread with
/// `block_on`. Multi-threaded (one worker), not current-thread: delta-rs's kernel waits
/// synchronously for work it hands to its own executor thread, and that work may use a
/// pooled HTTP connection whose driver task lives on this runtime. On a current-thread
/// runtime nothing drives it while the caller waits: the publisher hung after a commit,
/// now and then, in the post-commit hook (seen against SeaweedFS in the Kafka bench).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("lake-io")
        // Like the thread driving it: the commit goes first (sluice_core::priority).
        .on_thread_start(|| {
            let _ = sluice_core::priority::yield_to_committer();
        })
        .enable_all()
        .build()
}

/// Loads `delta`'s newest version, or refreshes it; false while the table does not exist.
/// The log is listed first while nothing is loaded: loading a table that is not there
/// makes delta-rs's kernel log an ERROR.
pub async fn load_if_exists(delta: &mut DeltaTable) -> Result<bool, DeltaTableError> {
    if delta.version().is_none() && !delta.verify_deltatable_existence().await? {
        return Ok(false);
    }
    match delta.update_state().await {
        Ok(()) => Ok(true),
        Err(DeltaTableError::NotATable(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Where the Delta tables live and how the store is reached.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: Url,
    pub options: HashMap<String, String>,
    pub checkpoint_interval: u64,
}

impl Store {
    /// The URL of `table`'s Delta table.
    pub fn table_url(&self, table: &str) -> Url {
        let mut root = self.root.clone();
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        // A validated identifier: joining cannot climb out of the root.
        root.join(&format!("{table}/")).unwrap_or(root)
    }

    /// `table`'s Delta table, not loaded yet.
    pub fn table(&self, table: &str) -> Result<DeltaTable, DeltaTableError> {
        DeltaTableBuilder::from_url(self.table_url(table))?
            .with_storage_options(self.options.clone())
            .build()
    }

    /// `table`'s Delta table, loaded at its latest version; created with `schema` if there
    /// is none. Another writer creating it at the same moment is not an error: the loser
    /// loads the winner's table (and the caller checks its columns).
    pub async fn open_or_create(
        &self,
        table: &str,
        schema: &Schema59,
    ) -> Result<DeltaTable, LakeError> {
        let url = self.table_url(table);
        if let Ok(dir) = url.to_file_path() {
            // delta-rs does not create a local table's directory (an object store needs none).
            std::fs::create_dir_all(&dir).map_err(|e| LakeError::Table {
                table: table.to_string(),
                detail: format!("creating {}: {e}", dir.display()),
            })?;
        }
        let mut delta = self.table(table).map_err(LakeError::delta(table))?;
        if load_if_exists(&mut delta)
            .await
            .map_err(LakeError::delta(table))?
        {
            return Ok(delta);
        }
        let kernel: deltalake::kernel::StructType =
            schema.try_into_kernel().map_err(|e| LakeError::Table {
                table: table.to_string(),
                detail: format!("its columns have no Delta type: {e}"),
            })?;
        let created = delta
            .create()
            .with_table_name(table)
            .with_columns(kernel.fields().cloned())
            .with_partition_columns([PARTITION])
            .with_configuration_property(
                TableProperty::CheckpointInterval,
                Some(self.checkpoint_interval.to_string()),
            )
            .with_save_mode(SaveMode::Ignore)
            .await;
        match created {
            Ok(table) => Ok(table),
            Err(DeltaTableError::VersionAlreadyExists(_)) => {
                delta.load().await.map_err(LakeError::delta(table))?;
                Ok(delta)
            }
            Err(e) => Err(LakeError::delta(table)(e)),
        }
    }
}
