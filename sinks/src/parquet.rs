//! Parquet files in a hive layout: `<root>/<table>/dt=YYYY-MM-DD/part-<id>.parquet`, where
//! `dt` is the ingest date (UTC) and `<id>` is derived from the batch's provenance.
//!
//! A file is written under a hidden temporary name, fsynced, renamed into place and the
//! directory fsynced, so a reader never sees half a file and a crash leaves at worst a
//! temporary or an unledgered file, both removed by [`crate::reconcile`].

use std::{
    fs::{self, File},
    io::BufWriter,
    path::{Path, PathBuf},
    str::FromStr,
};

use arrow::{
    datatypes::{DataType, Schema, SchemaRef},
    record_batch::RecordBatch,
};
use chrono::NaiveDate;
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression as Codec, ZstdLevel},
    file::properties::{EnabledStatistics, WriterProperties},
    schema::types::ColumnPath,
};

use crate::{error::IoContext, Result, SinkError};

/// Rows per row group: DuckDB's own row-group size, so readers parallelise the same way.
const ROW_GROUP_ROWS: usize = 122_880;
const FILE_PREFIX: &str = "part-";
const FILE_SUFFIX: &str = ".parquet";
const TEMP_SUFFIX: &str = ".parquet.tmp";

/// Page compression of Parquet files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Zstd,
    Snappy,
    None,
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zstd" => Ok(Compression::Zstd),
            "snappy" => Ok(Compression::Snappy),
            "none" => Ok(Compression::None),
            other => Err(format!(
                "unknown compression {other:?} (expected zstd, snappy or none)"
            )),
        }
    }
}

/// A Parquet file written and renamed into place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Path relative to the Parquet root, with `/` separators (what the ledger stores).
    pub relative: String,
    pub bytes: u64,
}

/// Writes and lists sluice's Parquet files under one root directory.
#[derive(Debug, Clone)]
pub struct ParquetSink {
    root: PathBuf,
    compression: Compression,
}

impl ParquetSink {
    pub fn new(root: impl Into<PathBuf>, compression: Compression) -> Self {
        ParquetSink {
            root: root.into(),
            compression,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The ledger path of the file `id` of `table` ingested on `date`.
    pub fn relative_path(table: &str, date: NaiveDate, id: &str) -> String {
        format!("{table}/dt={date}/{FILE_PREFIX}{id}{FILE_SUFFIX}")
    }

    /// Writes `batches` atomically as `relative` (see [`ParquetSink::relative_path`]).
    /// Writing the same `relative` again replaces the file whole.
    pub fn write(
        &self,
        relative: &str,
        schema: SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<WrittenFile> {
        let final_path = self.root.join(relative);
        let dir = final_path.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).at(&dir)?;
        let temp_path = temp_name(&final_path);
        let result = self.write_file(&temp_path, schema, batches);
        if let Err(err) = result {
            let _ = fs::remove_file(&temp_path);
            return Err(err);
        }
        sluice_core::fault::point("parquet.before_rename");
        fs::rename(&temp_path, &final_path).at(&final_path)?;
        File::open(&dir).and_then(|d| d.sync_all()).at(&dir)?;
        sluice_core::fault::point("parquet.after_rename");
        let bytes = fs::metadata(&final_path).at(&final_path)?.len();
        Ok(WrittenFile {
            relative: relative.to_string(),
            bytes,
        })
    }

    fn write_file(&self, path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<()> {
        let parquet_err = |source| SinkError::Parquet {
            path: path.to_path_buf(),
            source,
        };
        let file = File::create(path).at(path)?;
        let props = self.props(&schema);
        let mut writer =
            ArrowWriter::try_new(BufWriter::new(file), schema, Some(props)).map_err(parquet_err)?;
        for batch in batches {
            writer.write(batch).map_err(parquet_err)?;
        }
        let file = writer
            .into_inner()
            .map_err(parquet_err)?
            .into_inner()
            .map_err(|e| e.into_error())
            .at(path)?;
        file.sync_all().at(path)
    }

    /// Dictionary encoding only for text and binary columns: numbers and timestamps are
    /// mostly high-cardinality, where building a dictionary is wasted work (measured: a
    /// third of the writer's time on the CSV benchmark). Statistics per row group, which
    /// is what DuckDB and pyarrow prune on.
    fn props(&self, schema: &Schema) -> WriterProperties {
        let codec = match self.compression {
            Compression::Zstd => Codec::ZSTD(ZstdLevel::default()),
            Compression::Snappy => Codec::SNAPPY,
            Compression::None => Codec::UNCOMPRESSED,
        };
        let mut builder = WriterProperties::builder()
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::Chunk);
        for field in schema.fields() {
            if matches!(field.data_type(), DataType::Utf8 | DataType::Binary) {
                builder = builder
                    .set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), true);
            }
        }
        builder
            .set_compression(codec)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")))
            .build()
    }

    /// Every file sluice may have written under the root (finished and temporary), as
    /// relative paths. Files that do not follow sluice's naming are never listed, so a
    /// root shared with other tools is safe from [`ParquetSink::remove`].
    pub fn list(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for table in read_dirs(&self.root)? {
            for partition in read_dirs(&table)? {
                let Some(dt) = partition.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if !dt.starts_with("dt=") {
                    continue;
                }
                for entry in fs::read_dir(&partition).at(&partition)? {
                    let path = entry.at(&partition)?.path();
                    if is_sluice_file(&path) {
                        found.push(self.relative(&path));
                    }
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// Whether `relative` exists.
    pub fn exists(&self, relative: &str) -> bool {
        self.root.join(relative).is_file()
    }

    /// Removes one file named by [`ParquetSink::list`].
    pub fn remove(&self, relative: &str) -> Result<()> {
        let path = self.root.join(relative);
        fs::remove_file(&path).at(&path)
    }

    fn relative(&self, path: &Path) -> String {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    }
}

fn temp_name(final_path: &Path) -> PathBuf {
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(FILE_SUFFIX).unwrap_or(&name);
    final_path.with_file_name(format!(".{stem}{TEMP_SUFFIX}"))
}

fn is_sluice_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let finished = name.starts_with(FILE_PREFIX) && name.ends_with(FILE_SUFFIX);
    let temp = name.starts_with(&format!(".{FILE_PREFIX}")) && name.ends_with(TEMP_SUFFIX);
    finished || temp
}

fn read_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut dirs = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        if entry.file_type().at(dir)?.is_dir() {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::{
        array::Int64Array,
        datatypes::{DataType, Field, Schema},
    };

    use super::*;

    fn batch() -> (SchemaRef, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let rows =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))])
                .expect("batch");
        (schema, rows)
    }

    #[test]
    fn writes_atomically_and_lists_only_its_own_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = ParquetSink::new(dir.path(), Compression::Zstd);
        let date = NaiveDate::from_ymd_opt(2026, 1, 2).expect("date");
        let rel = ParquetSink::relative_path("t", date, "abc");
        assert_eq!(rel, "t/dt=2026-01-02/part-abc.parquet");
        let (schema, rows) = batch();
        let written = sink.write(&rel, schema, &[rows]).expect("write");
        assert!(written.bytes > 0);
        fs::write(dir.path().join("t/dt=2026-01-02/other.parquet"), b"x").expect("write");
        fs::write(
            dir.path().join("t/dt=2026-01-02/.part-zz.parquet.tmp"),
            b"x",
        )
        .expect("write");
        assert_eq!(
            sink.list().expect("list"),
            vec!["t/dt=2026-01-02/.part-zz.parquet.tmp", rel.as_str()]
        );
    }
}
