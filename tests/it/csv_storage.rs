//! What lands where: the raw table and its Parquet twin, inferred schemas, files larger
//! than a batch, parser options, and start-up reconciliation of Parquet with the ledger.

use std::fs;

use crate::support::{csv_rows, query_i64, query_strings, Deployment, SCHEMA};

#[test]
fn raw_table_and_parquet_have_the_same_columns_and_types() {
    let d = Deployment::new(SCHEMA, "");
    d.write("a.csv", &csv_rows(1, 10));
    d.run_once();
    let db = d.db();
    let raw = query_strings(
        &db,
        "SELECT column_name, column_type FROM (DESCRIBE raw.src)",
    );
    let expected = [
        ("id", "BIGINT"),
        ("name", "VARCHAR"),
        ("amount", "DECIMAL(12,2)"),
        ("_sluice_batch", "BIGINT"),
        ("_sluice_ingested_at", "TIMESTAMP WITH TIME ZONE"),
        ("_sluice_source", "VARCHAR"),
        ("_sluice_file", "VARCHAR"),
        ("_sluice_line", "BIGINT"),
    ];
    let expected: Vec<Vec<String>> = expected
        .iter()
        .map(|(n, t)| vec![n.to_string(), t.to_string()])
        .collect();
    assert_eq!(raw, expected);
    let glob = d.parquet_glob("src");
    let pq = query_strings(
        &db,
        &format!("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('{glob}', hive_partitioning = true))"),
    );
    assert_eq!(&pq[..expected.len()], expected.as_slice());
    assert_eq!(pq[expected.len()][0], "dt", "hive partition column");
    // The partition is the ingest date, and every Parquet row equals its raw row.
    let mismatched = query_i64(
        &db,
        &format!(
            "SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true) p \
             FULL JOIN raw.src r USING (_sluice_file, _sluice_line) \
             WHERE p.id IS DISTINCT FROM r.id OR p.amount IS DISTINCT FROM r.amount \
                OR p._sluice_batch IS DISTINCT FROM r._sluice_batch \
                OR CAST(p.dt AS DATE) <> CAST(CAST(r._sluice_ingested_at AS TIMESTAMP) AS DATE)"
        ),
    );
    assert_eq!(mismatched, 0);
}

#[test]
fn without_a_declared_schema_types_are_inferred_and_kept() {
    let d = Deployment::new("", "");
    d.write(
        "first.csv",
        "id,price,day,flag,label\n1,2.5,2024-01-31,true,x\n2,3,2024-02-01,false,y\n",
    );
    d.run_once();
    // A later file whose values do not fit the inferred types: dead letters, not a new schema.
    d.write(
        "second.csv",
        "id,price,day,flag,label\n3,4.5,2024-02-02,true,z\nfour,1,2024-02-03,false,w\n",
    );
    d.run_once();
    let db = d.db();
    let types = query_strings(&db, "SELECT column_type FROM (DESCRIBE raw.src) LIMIT 5");
    let types: Vec<&str> = types.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(types, ["BIGINT", "DOUBLE", "DATE", "BOOLEAN", "VARCHAR"]);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), 3);
    let dead = query_strings(&db, "SELECT file, line FROM _sluice.dead_letters");
    assert_eq!(dead, [["second.csv", "3"]]);
}

#[test]
fn a_file_larger_than_a_batch_is_split_and_fully_ingested() {
    let d = Deployment::new(SCHEMA, "[batch]\nmax_rows = 1000\n");
    d.write("big.csv", &csv_rows(1, 10_000));
    d.run_once();
    let db = d.db();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), 10_000);
    assert_eq!(
        query_i64(&db, "SELECT count(DISTINCT _sluice_line) FROM raw.src"),
        10_000
    );
    assert_eq!(query_i64(&db, "SELECT count(*) FROM _sluice.batches"), 10);
    assert_eq!(
        query_i64(&db, "SELECT max(rows) FROM _sluice.batches"),
        1000
    );
    assert_eq!(
        query_i64(&db, "SELECT sum(rows) FROM _sluice.batches"),
        10_000
    );
    let glob = d.parquet_glob("src");
    assert_eq!(
        query_i64(&db, &format!("SELECT count(*) FROM read_parquet('{glob}')")),
        10_000
    );
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(DISTINCT parquet_file) FROM _sluice.batches"
        ),
        10
    );
}

#[test]
fn parser_options_header_delimiter_quote_and_null_string() {
    let extra =
        format!("header = false\ndelimiter = \";\"\nquote = \"'\"\nnull_string = \"NA\"\n{SCHEMA}");
    let d = Deployment::new(&extra, "");
    d.write("opts.csv", "1;'semi;colon';1.00\n2;NA;NA\n");
    d.run_once();
    let rows = query_strings(
        &d.db(),
        "SELECT id, name, amount, _sluice_line FROM raw.src ORDER BY id",
    );
    assert_eq!(
        rows,
        [["1", "semi;colon", "1.00", "1"], ["2", "NULL", "NULL", "2"]]
    );
}

#[test]
fn start_up_removes_parquet_files_the_ledger_does_not_know() {
    let d = Deployment::new(SCHEMA, "");
    d.write("a.csv", &csv_rows(1, 10));
    d.run_once();
    let committed = fs::read_dir(d.data.join("parquet/src"))
        .expect("partitions")
        .flat_map(|p| fs::read_dir(p.expect("entry").path()).expect("files"))
        .map(|f| f.expect("file").path())
        .next()
        .expect("a parquet file");
    // What a crash between the Parquet rename and the DuckDB commit leaves behind.
    let stale = d.data.join("parquet/src/dt=2020-01-01");
    fs::create_dir_all(&stale).expect("mkdir");
    fs::copy(&committed, stale.join("part-0123456789abcdef.parquet")).expect("copy");
    fs::write(stale.join(".part-fedcba.parquet.tmp"), b"half").expect("write");
    fs::write(stale.join("notes.txt"), b"not ours").expect("write");
    d.write("b.csv", &csv_rows(11, 5));
    let out = d.run_once();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("removed a Parquet file"), "{log}");
    assert!(!stale.join("part-0123456789abcdef.parquet").exists());
    assert!(!stale.join(".part-fedcba.parquet.tmp").exists());
    assert!(
        stale.join("notes.txt").exists(),
        "a file sluice did not write was removed"
    );
    let db = d.db();
    let glob = d.parquet_glob("src");
    assert_eq!(
        query_i64(&db, &format!("SELECT count(*) FROM read_parquet('{glob}')")),
        15
    );
    drop(db);

    // A ledgered file deleted by hand is reported (its rows are still in DuckDB).
    fs::remove_file(&committed).expect("remove a committed file");
    let out = d.run_once();
    let log = String::from_utf8_lossy(&out.stderr);
    let name = committed
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        log.contains("the ledger names a Parquet file that does not exist") && log.contains(&name),
        "{log}"
    );
    assert_eq!(query_i64(&d.db(), "SELECT count(*) FROM raw.src"), 15);
}

#[test]
fn a_utf8_bom_is_not_part_of_the_header_and_offsets_stay_right() {
    let d = Deployment::new(SCHEMA, "[batch]\nmax_rows = 3\n");
    let mut body = vec![0xEF, 0xBB, 0xBF];
    body.extend_from_slice(csv_rows(1, 10).as_bytes());
    fs::write(d.inbox.join("excel.csv"), body).expect("write");
    d.run_once();
    let db = d.db();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), 10);
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM _sluice.dead_letters"),
        0
    );
    assert_eq!(query_i64(&db, "SELECT sum(id) FROM raw.src"), 55);
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM raw.src WHERE _sluice_line = id + 1"
        ),
        10
    );
    assert!(query_i64(&db, "SELECT count(*) FROM _sluice.batches") >= 4);
}

#[test]
fn a_header_column_the_table_lacks_is_added_with_its_batch_and_parquet_reads_by_name() {
    let d = Deployment::new("", "");
    d.write("a.csv", "id,name\n1,a\n");
    d.run_once();
    d.write("b.csv", "id,name,note\n2,b,hello\n");
    d.run_once();
    assert!(d.moved("quarantine").is_empty());
    let batch = query_strings(
        &d.db(),
        "SELECT batch_id::VARCHAR = (SELECT max(_sluice_batch)::VARCHAR FROM raw.src) FROM _sluice.schema_changes",
    );
    assert_eq!(batch, [["true"]], "recorded with the batch that brought it");
    d.write("c.csv", "id,name\n3,c\n");
    d.run_once();

    let rows = query_strings(
        &d.db(),
        "SELECT id::VARCHAR, name, note FROM raw.src ORDER BY id",
    );
    let expected = [["1", "a", "NULL"], ["2", "b", "hello"], ["3", "c", "NULL"]];
    assert_eq!(
        rows,
        expected.map(|r| r.map(String::from).to_vec()).to_vec()
    );
    let glob = d.parquet_glob("src");
    let parquet = query_strings(
        &d.db(),
        &format!(
            "SELECT id::VARCHAR, note FROM read_parquet('{glob}', union_by_name = true) ORDER BY id"
        ),
    );
    assert_eq!(
        parquet,
        [["1", "NULL"], ["2", "hello"], ["3", "NULL"]]
            .map(|r| r.map(String::from).to_vec())
            .to_vec()
    );
}
