//! Commit-level tests against a real DuckDB file.

use std::sync::Arc;

use arrow::{
    array::{ArrayRef, Int64Array, StringArray},
    datatypes::{DataType, Field, Schema},
    record_batch::RecordBatch,
};
use sluice_core::{
    meta, Chunk, Column, ColumnType, DeadLetter, FileHash, FileId, FileProgress, FileStatus, Ident,
    Origin, Position, TableSchema,
};

use super::{rows::coalesce, *};
use crate::{Compression, ParquetSink};

fn data_schema(ty: ColumnType) -> TableSchema {
    TableSchema::new(vec![Column::new("v", ty)])
}

fn raw_columns(data: &TableSchema) -> Arc<TableSchema> {
    let mut columns = data.columns.clone();
    columns.extend(meta::commit_columns());
    columns.extend([
        Column::new(meta::SOURCE, ColumnType::Varchar),
        Column::new("_sluice_file", ColumnType::Varchar),
        Column::new("_sluice_line", ColumnType::BigInt),
    ]);
    Arc::new(TableSchema::new(columns))
}

fn chunk(values: Vec<&str>, ty: ColumnType, next_offset: u64, status: FileStatus) -> Chunk {
    let data = data_schema(ty.clone());
    let n = values.len();
    let fields = vec![
        Field::new("v", ty.arrow_type(), true),
        Field::new(meta::SOURCE, DataType::Utf8, true),
        Field::new("_sluice_file", DataType::Utf8, true),
        Field::new("_sluice_line", DataType::Int64, true),
    ];
    let v: ArrayRef = match ty {
        ColumnType::BigInt => Arc::new(Int64Array::from_iter_values(
            values.iter().map(|s| s.parse::<i64>().expect("int")),
        )),
        ColumnType::Integer => Arc::new(arrow::array::Int32Array::from_iter_values(
            values.iter().map(|s| s.parse::<i32>().expect("int")),
        )),
        _ => Arc::new(StringArray::from(values)),
    };
    let rows = RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        vec![
            v,
            Arc::new(StringArray::from(vec!["s"; n])),
            Arc::new(StringArray::from(vec!["f.csv"; n])),
            Arc::new(Int64Array::from_iter_values((0..n as i64).map(|i| i + 2))),
        ],
    )
    .expect("rows");
    Chunk {
        source: "s".into(),
        table: Ident::new("t").expect("ident"),
        raw_columns: raw_columns(&data),
        rows,
        dead_letters: vec![DeadLetter::new(
            "bad",
            b"x,y",
            Origin::File {
                name: "f.csv".into(),
                line: 9,
            },
        )],
        position: Position::File(FileProgress {
            id: FileId("f1".into()),
            hash: FileHash(format!("h{next_offset}")),
            name: "f.csv".into(),
            next_offset,
            next_line: 10,
            status,
        }),
        since: std::time::Instant::now(),
    }
}

fn batch_of(c: Chunk) -> PendingBatch {
    PendingBatch {
        table: c.table.clone(),
        raw_columns: c.raw_columns.clone(),
        chunks: vec![c],
    }
}

fn open(dir: &std::path::Path) -> Warehouse {
    open_with_threads(dir, 1)
}

fn open_with_threads(dir: &std::path::Path, threads: u16) -> Warehouse {
    Warehouse::open(options(dir, threads)).expect("open")
}

fn options(dir: &std::path::Path, threads: u16) -> WarehouseOptions {
    WarehouseOptions {
        db_path: dir.join("w.duckdb"),
        raw_schema: Ident::new("raw").expect("ident"),
        memory_limit: None,
        threads: Some(threads),
        checkpoint_threshold: None,
        parquet: Some(ParquetSink::new(dir.join("parquet"), Compression::Zstd)),
    }
}

fn count(w: &Warehouse, sql: &str) -> i64 {
    w.connection().query_row(sql, [], |r| r.get(0)).expect(sql)
}

#[test]
fn a_commit_lands_rows_ledger_positions_and_dead_letters_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = open(dir.path());
    let c1 = chunk(vec!["1", "2"], ColumnType::BigInt, 10, FileStatus::Partial);
    let c2 = chunk(vec!["3"], ColumnType::BigInt, 20, FileStatus::Ingested);
    let batch = PendingBatch {
        table: c1.table.clone(),
        raw_columns: c1.raw_columns.clone(),
        chunks: vec![c1, c2],
    };
    let receipt = w.commit(batch).expect("commit");
    assert_eq!(receipt.batch_id, Some(1));
    assert_eq!(receipt.rows, 3);
    assert_eq!(
        count(&w, "SELECT count(*) FROM raw.t WHERE _sluice_batch = 1"),
        3
    );
    assert_eq!(
        count(
            &w,
            "SELECT count(*) FROM _sluice.dead_letters WHERE batch_id = 1 AND line = 9"
        ),
        2
    );
    assert_eq!(count(&w, "SELECT rows FROM _sluice.files WHERE file_id = 'f1' AND hash = 'h20' AND status = 'ingested' AND next_offset = 20"), 3);
    let file = receipt.parquet.expect("parquet");
    assert_eq!(
        count(
            &w,
            &format!(
                "SELECT rows FROM _sluice.batches WHERE parquet_file = '{}'",
                file.relative
            )
        ),
        3
    );
    let path = dir.path().join("parquet").join(&file.relative);
    // Read by DuckDB outside the warehouse: the warehouse's own reads no file.
    let outside = duckdb::Connection::open_in_memory().expect("duckdb");
    let sql = format!("SELECT count(*) FROM read_parquet('{}')", path.display());
    let parquet_rows: i64 = outside.query_row(&sql, [], |r| r.get(0)).expect(&sql);
    assert_eq!(parquet_rows, 3);
    assert!(w.reconcile().expect("reconcile").removed.is_empty());
    // The ledger and batch counter survive a reopen.
    drop(w);
    let w = open(dir.path());
    assert_eq!(w.last_batch_id(), 1);
    let files = w.source_files("s").expect("files");
    // One record per file, keyed by its id; its hash is that of the last bytes committed.
    let f1 = files.by_content(&FileHash("h20".into())).expect("lookup");
    assert_eq!(f1.expect("f1 recorded").next_offset, 20);
    assert_eq!(
        files.by_content(&FileHash("h10".into())).expect("lookup"),
        None
    );
    let by_name = files.by_name("f.csv").expect("lookup").expect("by name");
    assert_eq!(
        (by_name.id, by_name.hash),
        (FileId("f1".into()), Some(FileHash("h20".into())))
    );
    let other = w.source_files("other").expect("files");
    assert_eq!(
        other.by_content(&FileHash("h20".into())).expect("lookup"),
        None
    );
    assert_eq!(other.by_name("f.csv").expect("lookup"), None);
    // Lookups have an index each (DuckDB uses single-column indexes only).
    for column in ["hash", "original_name"] {
        assert_eq!(
            count(
                &w,
                &format!(
                    "SELECT count(*) FROM duckdb_indexes() WHERE schema_name = '_sluice' \
                     AND table_name = 'files' AND expressions = '[{column}]'"
                )
            ),
            1,
            "{column}"
        );
    }
}

#[test]
fn a_failed_commit_leaves_no_rows_and_no_parquet_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = open(dir.path());
    let good = chunk(vec!["{}"], ColumnType::Json, 10, FileStatus::Partial);
    w.commit(batch_of(good)).expect("first commit");
    // A value DuckDB refuses, in a batch that also widens nothing: nothing of it is kept.
    let bad = chunk(
        vec![refused::REFUSED_JSON],
        ColumnType::Json,
        20,
        FileStatus::Ingested,
    );
    let err = w.commit(batch_of(bad)).expect_err("refused");
    assert!(err.is_refused_value(), "{err}");
    assert_eq!(count(&w, "SELECT count(*) FROM raw.t"), 1);
    assert_eq!(count(&w, "SELECT count(*) FROM _sluice.batches"), 1);
    assert_eq!(count(&w, "SELECT next_offset FROM _sluice.files"), 10);
    let sink = w.parquet().expect("parquet").clone();
    assert_eq!(sink.list().expect("list").len(), 1);
    // The refused batch's id goes to the next one.
    let next = chunk(vec!["[2]"], ColumnType::Json, 30, FileStatus::Ingested);
    let receipt = w.commit(batch_of(next)).expect("next commit");
    assert_eq!(receipt.batch_id, Some(2));
}

#[test]
fn a_batch_staged_while_another_commits_gets_the_next_id_and_its_own_parquet_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = open(dir.path());
    let mut first = w
        .stage(batch_of(chunk(
            vec!["1", "2"],
            ColumnType::BigInt,
            10,
            FileStatus::Partial,
        )))
        .expect("stage first");
    let mut second = w
        .stage(batch_of(chunk(
            vec!["3"],
            ColumnType::BigInt,
            20,
            FileStatus::Ingested,
        )))
        .expect("stage second");
    // Out of order is refused, and refusing keeps both batches committable.
    let err = w.commit_staged(&mut second).expect_err("out of order");
    assert!(err.to_string().contains("out of order"), "{err}");
    let a = w.commit_staged(&mut first).expect("commit first");
    let b = w.commit_staged(&mut second).expect("commit second");
    assert_eq!((a.batch_id, b.batch_id), (Some(1), Some(2)));
    assert_eq!(count(&w, "SELECT count(*) FROM raw.t"), 3);
    assert_eq!(count(&w, "SELECT max(_sluice_batch) FROM raw.t"), 2);
    let sink = w.parquet().expect("parquet").clone();
    let files = sink.list().expect("list");
    assert_eq!(files.len(), 2, "{files:?}");
    for f in [a.parquet.expect("a"), b.parquet.expect("b")] {
        assert!(files.contains(&f.relative), "{files:?}");
    }
    drop((first, second));
    assert_eq!(sink.list().expect("list").len(), 2, "committed files stay");
    assert!(w.reconcile().expect("reconcile").removed.is_empty());
}

#[test]
fn a_staged_batch_dropped_uncommitted_leaves_no_parquet_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = open(dir.path());
    let staged = w
        .stage(batch_of(chunk(
            vec!["1"],
            ColumnType::BigInt,
            10,
            FileStatus::Ingested,
        )))
        .expect("stage");
    assert!(staged.batch().rows() == 1);
    drop(staged);
    let sink = w.parquet().expect("parquet").clone();
    assert_eq!(sink.list().expect("list"), Vec::<String>::new());
    assert_eq!(count(&w, "SELECT count(*) FROM _sluice.batches"), 0);
}

#[test]
fn json_columns_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = open(dir.path());
    let c = chunk(
        vec!["{\"a\": 1}"],
        ColumnType::Json,
        10,
        FileStatus::Ingested,
    );
    w.commit(batch_of(c)).expect("commit");
    assert_eq!(count(&w, "SELECT (v->>'a')::BIGINT FROM raw.t"), 1);
    let described = w
        .table_schema(&Ident::new("t").expect("ident"))
        .expect("describe")
        .expect("exists");
    assert_eq!(described.columns[0].ty, ColumnType::Json);
}

#[test]
fn commits_run_on_one_duckdb_thread_and_queries_get_the_configured_threads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = open_with_threads(dir.path(), 3);
    let threads = "SELECT current_setting('threads')";
    assert_eq!(count(&w, threads), 3);
    let c = chunk(vec!["1"], ColumnType::BigInt, 10, FileStatus::Ingested);
    let batch = batch_of(c);
    w.commit(batch).expect("commit");
    assert_eq!(count(&w, threads), 1);
    let conn = w.for_queries();
    let n: i64 = conn.query_row(threads, [], |r| r.get(0)).expect(threads);
    assert_eq!(n, 3);
}

/// `c` with a column `extra` of type `ty` (from text `values`) after its first data column.
fn with_extra(mut c: Chunk, ty: ColumnType, values: Vec<&str>) -> Chunk {
    let mut fields = c.rows.schema().fields().to_vec();
    fields.insert(1, Arc::new(Field::new("extra", ty.arrow_type(), true)));
    let mut arrays = c.rows.columns().to_vec();
    let text: ArrayRef = Arc::new(StringArray::from(values));
    let typed = arrow::compute::cast(&text, &ty.arrow_type()).expect("cast");
    arrays.insert(1, typed);
    c.rows = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("rows");
    let mut columns = c.raw_columns.columns.clone();
    columns.insert(1, Column::new("extra", ty));
    c.raw_columns = Arc::new(TableSchema::new(columns));
    c
}

#[test]
fn a_column_added_to_the_raw_table_by_hand_takes_the_rows_that_have_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = open(dir.path());
    let first = chunk(vec!["1"], ColumnType::BigInt, 10, FileStatus::Partial);
    w.commit(batch_of(first)).expect("first commit");
    // An operator adds a column while sluice is stopped; DuckDB puts it last, after
    // sluice's own columns.
    w.connection()
        .execute_batch("ALTER TABLE raw.t ADD COLUMN extra VARCHAR")
        .expect("alter");
    drop(w);
    let mut w = open(dir.path());

    let second = chunk(vec!["2"], ColumnType::BigInt, 20, FileStatus::Ingested);
    let receipt = w
        .commit(batch_of(with_extra(second, ColumnType::Varchar, vec!["x"])))
        .expect("commit in the table's column order");

    let rows: Vec<(i64, Option<String>, i64)> = w
        .connection()
        .prepare("SELECT v, extra, _sluice_batch FROM raw.t ORDER BY v")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows, vec![(1, None, 1), (2, Some("x".into()), 2)]);
    // The batch's Parquet file has the table's columns in the table's order.
    let file = receipt.parquet.expect("parquet");
    let path = dir.path().join("parquet").join(&file.relative);
    let outside = duckdb::Connection::open_in_memory().expect("duckdb");
    let names: Vec<String> = outside
        .prepare(&format!(
            "DESCRIBE SELECT * FROM read_parquet('{}', hive_partitioning = false)",
            path.display()
        ))
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("describe")
        .collect::<Result<_, _>>()
        .expect("names");
    let table: Vec<String> = w
        .table_schema(&Ident::new("t").expect("ident"))
        .expect("describe")
        .expect("table")
        .columns
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, table);
    assert_eq!(names.last().map(String::as_str), Some("extra"));

    // The same names with a narrower type: the column stays VARCHAR (none ever narrows)
    // and takes the value as text.
    let third = chunk(vec!["3"], ColumnType::BigInt, 30, FileStatus::Ingested);
    let receipt = w
        .commit(batch_of(with_extra(
            third,
            ColumnType::Date,
            vec!["2026-01-01"],
        )))
        .expect("a DATE value goes into the VARCHAR column");
    assert!(
        receipt.schema_changes.is_empty(),
        "{:?}",
        receipt.schema_changes
    );
    let extra: String = w
        .connection()
        .query_row("SELECT extra FROM raw.t WHERE v = 3", [], |r| r.get(0))
        .expect("row");
    assert_eq!(extra, "2026-01-01");
}

/// `_sluice` as state version 1 left it: files keyed by the hash of their content.
const STATE_V1: &str = "
CREATE SCHEMA _sluice;
CREATE TABLE _sluice.meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
INSERT INTO _sluice.meta VALUES ('state_version', '1');
CREATE TABLE _sluice.files (
    source VARCHAR NOT NULL, hash VARCHAR NOT NULL, original_name VARCHAR NOT NULL,
    rows BIGINT NOT NULL, dead_letters BIGINT NOT NULL, status VARCHAR NOT NULL,
    reason VARCHAR, next_offset BIGINT NOT NULL, next_line BIGINT NOT NULL,
    last_batch BIGINT, updated_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (source, hash));
CREATE INDEX files_by_hash ON _sluice.files (hash);
INSERT INTO _sluice.files VALUES
    ('s', 'whole', 'a.csv', 3, 0, 'ingested', NULL, 30, 5, 1, now()),
    ('s', 'begun', 'b.csv', 2, 1, 'partial', NULL, 20, 4, 1, now());
";

#[test]
fn a_state_version_1_database_is_migrated_to_the_current_one_keeping_every_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("w.duckdb");
    duckdb::Connection::open(&db)
        .expect("open")
        .execute_batch(STATE_V1)
        .expect("v1 state");
    let w = open(dir.path());
    assert_eq!(
        count(
            &w,
            &format!(
                "SELECT count(*) FROM _sluice.meta WHERE key = 'state_version' AND value = '{}'",
                sluice_state::STATE_VERSION
            )
        ),
        1
    );
    // Through version 2 to 3: the positions of other source types have their table.
    assert_eq!(count(&w, "SELECT count(*) FROM _sluice.positions"), 0);
    let files = w.source_files("s").expect("files");
    let whole = files.by_name("a.csv").expect("lookup").expect("a.csv");
    assert_eq!(
        (
            whole.id.0.as_str(),
            whole.hash,
            whole.status,
            whole.next_offset
        ),
        (
            "whole",
            Some(FileHash("whole".into())),
            FileStatus::Ingested,
            30
        )
    );
    assert_eq!(
        files
            .by_content(&FileHash("whole".into()))
            .expect("lookup")
            .map(|r| r.id),
        Some(FileId("whole".into()))
    );
    // A partial file's committed bytes were never hashed: its hash is unknown.
    let begun = files.by_name("b.csv").expect("lookup").expect("b.csv");
    assert_eq!(
        (
            begun.id.0.as_str(),
            begun.hash,
            begun.status,
            begun.next_line
        ),
        ("begun", None, FileStatus::Partial, 4)
    );
    // Reopening does not migrate again.
    drop(files);
    drop(w);
    let w = open(dir.path());
    assert_eq!(count(&w, "SELECT count(*) FROM _sluice.files"), 2);
}

#[test]
fn a_database_of_a_newer_state_version_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("w.duckdb");
    duckdb::Connection::open(&db)
        .expect("open")
        .execute_batch(&STATE_V1.replace("'state_version', '1'", "'state_version', '99'"))
        .expect("newer state");
    let err = Warehouse::open(options(dir.path(), 1)).expect_err("refused");
    let message = err.to_string();
    assert!(
        message.contains("state version 99") && message.contains("newer sluice"),
        "{message}"
    );
    let db = duckdb::Connection::open(&db).expect("open");
    let v: String = db
        .query_row(
            "SELECT value FROM _sluice.meta WHERE key = 'state_version'",
            [],
            |r| r.get(0),
        )
        .expect("version");
    assert_eq!(v, "99");
}

#[test]
fn small_chunks_are_joined_in_order_and_large_ones_pass_through() {
    use arrow::array::Array;
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    let mut next = 0i64;
    let mut chunk = |rows: usize| {
        let values: Vec<i64> = (next..next + rows as i64).collect();
        next += rows as i64;
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))])
            .expect("batch")
    };
    let input: Vec<RecordBatch> = [100, 100, 100, 10_000, 50, 50]
        .into_iter()
        .map(&mut chunk)
        .collect();
    let out = coalesce(input, &schema).expect("coalesce");
    let sizes: Vec<usize> = out.iter().map(RecordBatch::num_rows).collect();
    assert_eq!(sizes, [300, 10_000, 100]);
    let values: Vec<i64> = out
        .iter()
        .flat_map(|b| {
            let a = b
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("i64");
            (0..a.len()).map(|i| a.value(i)).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        values,
        (0..10_400).collect::<Vec<i64>>(),
        "every row once, in order"
    );
    // Runs stop at a row group's size.
    let many: Vec<RecordBatch> = (0..40).map(|_| chunk(8_000)).collect();
    let out = coalesce(many, &schema).expect("coalesce");
    assert!(
        out.iter().all(|b| b.num_rows() <= 122_880),
        "{:?}",
        out.len()
    );
    assert_eq!(
        out.iter().map(RecordBatch::num_rows).sum::<usize>(),
        320_000
    );
}

mod evolve;
mod refused;
