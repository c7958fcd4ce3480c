//! Schemas that change under the schema contract: a CSV header with a new column and a
//! value wider than its column's type, JSON fields no column takes, each contract policy,
//! and SIGKILL inside the commit that alters the table. Each test checks the raw table, the
//! `_sluice.schema_changes` rows (in the batch that brought the change), dead letters, the
//! metrics and the Parquet tree read with `union_by_name`.

mod kafka;
mod sql;

use std::process::Command;

use crate::{
    faults::run_to_fault,
    lake::lake_python,
    support::{http_get, metric, output, query_i64, query_strings, Daemon, Deployment},
};

/// The first file: the table is inferred from it (`id BIGINT, amount BIGINT`).
const A: &str = "id,amount\n1,10\n2,20\n";
/// A new column, `region`, and a value `amount` (BIGINT) does not hold.
const B: &str = "id,amount,region\n3,2.5,north\n4,40,south\n";
/// The old header again.
const C: &str = "id,amount\n5,50\n";

fn rows(v: &[&[&str]]) -> Vec<Vec<String>> {
    v.iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect()
}

/// The raw table's data columns (without sluice's own) and their types, in table order.
fn data_columns(db: &duckdb::Connection, table: &str) -> Vec<Vec<String>> {
    query_strings(
        db,
        &format!(
            "SELECT column_name, column_type FROM (DESCRIBE {table}) \
             WHERE column_name NOT LIKE '\\_sluice\\_%' ESCAPE '\\'"
        ),
    )
}

/// The one batch holding every row of `file` (it must be exactly one).
fn batch_of(db: &duckdb::Connection, filter: &str) -> i64 {
    let batches = query_strings(
        db,
        &format!("SELECT DISTINCT _sluice_batch FROM raw.src WHERE {filter}"),
    );
    assert_eq!(batches.len(), 1, "rows {filter} in one batch: {batches:?}");
    batches[0][0].parse().expect("batch id")
}

/// `_sluice.schema_changes` as (column, change, old type, new type, batch, source,
/// position's file or topic), in order of batch and column.
fn schema_changes(db: &duckdb::Connection) -> Vec<Vec<String>> {
    query_strings(
        db,
        "SELECT column_name, change, coalesce(old_type, 'NULL'), new_type, batch_id, source, \
                coalesce(position->>'file', position->>'topic') \
         FROM _sluice.schema_changes ORDER BY batch_id, column_name",
    )
}

/// The `schema_changes` rows [`B`] brings in batch `b`: `amount` widened, `region` added.
fn b_changes(b: &str) -> Vec<Vec<String>> {
    rows(&[
        &[
            "amount",
            "widen_column",
            "BIGINT",
            "DOUBLE",
            b,
            "src",
            "b.csv",
        ],
        &["region", "add_column", "NULL", "VARCHAR", b, "src", "b.csv"],
    ])
}

/// The data columns once [`B`] committed: `amount` widened, `region` added.
fn evolved() -> Vec<Vec<String>> {
    rows(&[
        &["id", "BIGINT"],
        &["amount", "DOUBLE"],
        &["region", "VARCHAR"],
    ])
}

/// `select` over the raw table and over its Parquet tree (read by name across the
/// change) both give `expected`, in order of id, and there is no dead letter.
fn assert_raw_and_parquet(
    d: &Deployment,
    db: &duckdb::Connection,
    select: &str,
    expected: &[Vec<String>],
) {
    assert_eq!(
        query_strings(db, &format!("{select} FROM raw.src ORDER BY id")),
        expected
    );
    assert_eq!(
        query_strings(db, &format!("{select} FROM {} ORDER BY id", parquet(d))),
        expected
    );
    assert_eq!(
        query_i64(db, "SELECT count(*) FROM _sluice.dead_letters"),
        0
    );
}

fn parquet(d: &Deployment) -> String {
    format!(
        "read_parquet('{}', union_by_name = true)",
        d.parquet_glob("src")
    )
}

/// Starts the daemon and returns it with its HTTP base address.
fn start(d: &Deployment) -> (Daemon, String) {
    let mut daemon = d.start();
    let base = daemon.http_addr();
    (daemon, base)
}

/// Writes `name` into the inbox and waits until the daemon archived it.
fn feed(d: &Deployment, daemon: &mut Daemon, name: &str, body: &str) {
    let archived = d.moved("archive").len();
    d.write(name, body);
    daemon.wait_until(&format!("{name} archived"), |_| {
        d.moved("archive").len() == archived + 1
    });
}

fn scrape(base: &str) -> String {
    http_get(&format!("{base}/metrics")).1
}

fn status(base: &str) -> serde_json::Value {
    serde_json::from_str(&http_get(&format!("{base}/status")).1).expect("status JSON")
}

#[test]
fn schema_change_csv_adds_a_column_and_widens_a_type_in_the_batch_that_brings_them() {
    let d = Deployment::new("", "");
    let (mut daemon, base) = start(&d);
    feed(&d, &mut daemon, "a.csv", A);
    feed(&d, &mut daemon, "b.csv", B);
    let m = scrape(&base);
    let changes = |kind: &str| {
        metric(
            &m,
            &format!("sluice_schema_changes_total{{table=\"src\",change=\"{kind}\"}}"),
        )
    };
    assert_eq!(changes("add_column"), Some(1.0), "{m}");
    assert_eq!(changes("widen_column"), Some(1.0), "{m}");
    // The last change of the batch: the new column (widenings come first).
    let last = &status(&base)["schema_changes"]["src"];
    assert_eq!(last["column"], "region", "{last}");
    assert_eq!(last["change"], "add_column", "{last}");
    assert_eq!(last["old_type"], serde_json::Value::Null, "{last}");
    assert_eq!(last["new_type"], "VARCHAR", "{last}");
    let status_batch = last["batch_id"].as_i64().expect("batch_id");
    feed(&d, &mut daemon, "c.csv", C);
    let (code, log) = daemon.terminate();
    assert!(code.success(), "{log}");

    let db = d.db();
    assert_eq!(data_columns(&db, "raw.src"), evolved());
    let expected = rows(&[
        &["1", "10.0", "NULL", "a.csv"],
        &["2", "20.0", "NULL", "a.csv"],
        &["3", "2.5", "north", "b.csv"],
        &["4", "40.0", "south", "b.csv"],
        &["5", "50.0", "NULL", "c.csv"],
    ]);
    // The Parquet tree: files written before and after the change, read as one table.
    assert_raw_and_parquet(
        &d,
        &db,
        "SELECT id, amount, region, _sluice_file",
        &expected,
    );
    assert_eq!(query_i64(&db, "SELECT count(DISTINCT id) FROM raw.src"), 5);
    let b = batch_of(&db, "_sluice_file = 'b.csv'");
    assert_eq!(status_batch, b);
    assert_ne!(b, batch_of(&db, "_sluice_file = 'a.csv'"));
    let b = b.to_string();
    assert_eq!(schema_changes(&db), b_changes(&b));
    let pq = parquet(&d);
    assert_eq!(
        query_i64(
            &db,
            &format!("SELECT count(*) - count(DISTINCT id) FROM {pq}")
        ),
        0
    );
    // The README's pyarrow recipe reads the tree across the change too.
    assert_eq!(
        pyarrow_rows(&d),
        "[(1, 10.0, None), (2, 20.0, None), (3, 2.5, 'north'), (4, 40.0, 'south'), (5, 50.0, None)]"
    );
}

/// The Parquet tree of `src` read with the README's pyarrow recipe: (id, amount, region)
/// per row, in order of id, as Python prints them.
fn pyarrow_rows(d: &Deployment) -> String {
    let root = d.data.join("parquet/src");
    let script = format!(
        r#"
import pyarrow
import pyarrow.dataset as ds
files = ds.dataset({root:?}, partitioning="hive")
schema = pyarrow.unify_schemas([f.physical_schema for f in files.get_fragments()], promote_options="permissive")
table = ds.dataset({root:?}, schema=schema, partitioning="hive").to_table()
print(sorted(zip(*(table[c].to_pylist() for c in ("id", "amount", "region")))))
"#
    );
    let out = output(Command::new(lake_python()).arg("-c").arg(script));
    assert!(
        out.status.success(),
        "pyarrow: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `a.csv`, then `b.csv` (a row without a region among two with one) through a
/// daemon whose source has `[sources.src.schema_contract] columns = "<policy>"`. Returns
/// the `sluice_schema_refused_total` of `reason` and `/status`'s `schema_refused` of it.
fn refusing(policy: &str, reason: &str) -> (Deployment, f64, serde_json::Value) {
    let contract = format!("[sources.src.schema_contract]\ncolumns = \"{policy}\"\n");
    let d = Deployment::new(&contract, "");
    let (mut daemon, base) = start(&d);
    feed(&d, &mut daemon, "a.csv", A);
    feed(
        &d,
        &mut daemon,
        "b.csv",
        "id,amount,region\n3,2.5,north\n4,40,\n5,50,south\n",
    );
    let series = format!("sluice_schema_refused_total{{source=\"src\",reason=\"{reason}\"}}");
    let m = scrape(&base);
    let refused = metric(&m, &series).unwrap_or_else(|| panic!("{series} missing:\n{m}"));
    let status = status(&base)["sources"][0]["schema_refused"][reason].clone();
    let (code, log) = daemon.terminate();
    assert!(code.success(), "{log}");
    let db = d.db();
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM _sluice.schema_changes WHERE column_name = 'region'"
        ),
        0
    );
    assert!(
        !data_columns(&db, "raw.src")
            .iter()
            .any(|c| c[0] == "region"),
        "{policy}: the table gained region"
    );
    drop(db);
    (d, refused, status)
}

#[test]
fn schema_change_csv_frozen_columns_make_dead_letters_naming_the_column() {
    let (d, refused, status) = refusing("freeze", "frozen_column");
    let db = d.db();
    assert_eq!(
        query_strings(&db, "SELECT id FROM raw.src ORDER BY id"),
        rows(&[&["1"], &["2"], &["4"]])
    );
    let dead = query_strings(
        &db,
        "SELECT file, line, error, raw FROM _sluice.dead_letters ORDER BY line",
    );
    assert_eq!(dead.len(), 2, "{dead:?}");
    let at: Vec<(&str, &str)> = dead
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert_eq!(at, [("b.csv", "2"), ("b.csv", "4")]);
    let error = r#"column "region" is not in the table and schema_contract.columns = "freeze""#;
    assert!(dead.iter().all(|r| r[2] == error), "{dead:?}");
    assert_eq!(
        (dead[0][3].as_str(), dead[1][3].as_str()),
        ("3,2.5,north", "5,50,south")
    );
    assert_eq!(refused, dead.len() as f64);
    assert_eq!(status["values"], 2, "{status}");
    assert_eq!(status["last_column"], "region", "{status}");
    // The one value `amount` does not hold is in a dead letter: the column stays as it
    // was, and nothing changed the table.
    assert_eq!(
        query_strings(
            &db,
            "SELECT column_name, new_type FROM _sluice.schema_changes"
        ),
        Vec::<Vec<String>>::new()
    );
    assert_eq!(
        data_columns(&db, "raw.src"),
        rows(&[&["id", "BIGINT"], &["amount", "BIGINT"]])
    );
}

#[test]
fn schema_change_csv_discard_row_drops_rows_with_a_value_in_the_new_column() {
    let (d, refused, status) = refusing("discard_row", "discarded_row");
    let db = d.db();
    assert_eq!(
        query_strings(&db, "SELECT id, amount FROM raw.src ORDER BY id"),
        rows(&[&["1", "10"], &["2", "20"], &["4", "40"]])
    );
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM _sluice.dead_letters"),
        0
    );
    assert_eq!(refused, 2.0);
    assert_eq!(status["values"], 2, "{status}");
    let glob = parquet(&d);
    assert_eq!(query_i64(&db, &format!("SELECT count(*) FROM {glob}")), 3);
}

#[test]
fn schema_change_csv_discard_value_lands_rows_without_the_value() {
    let (d, refused, status) = refusing("discard_value", "discarded_value");
    let db = d.db();
    let expected = rows(&[
        &["1", "10.0"],
        &["2", "20.0"],
        &["3", "2.5"],
        &["4", "40.0"],
        &["5", "50.0"],
    ]);
    assert_eq!(
        query_strings(&db, "SELECT id, amount FROM raw.src ORDER BY id"),
        expected
    );
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM _sluice.dead_letters"),
        0
    );
    assert_eq!(refused, 2.0);
    assert_eq!(status["values"], 2, "{status}");
    let glob = parquet(&d);
    assert_eq!(
        query_strings(&db, &format!("SELECT id, amount FROM {glob} ORDER BY id")),
        expected
    );
}

/// `a.csv` committed; `b.csv`'s run SIGKILLed at `fault`, inside the transaction that
/// alters the table; then a clean run.
fn killed_while_altering(fault: &str) {
    let d = Deployment::new("", "");
    d.write("a.csv", A);
    d.run_once();
    d.write("b.csv", B);
    run_to_fault(&d, fault);
    {
        // Nothing of the transaction stayed: no column, no change, no row of b.csv.
        let db = d.db();
        assert_eq!(
            data_columns(&db, "raw.src"),
            rows(&[&["id", "BIGINT"], &["amount", "BIGINT"]])
        );
        assert_eq!(
            query_i64(&db, "SELECT count(*) FROM _sluice.schema_changes"),
            0
        );
        assert_eq!(
            query_strings(&db, "SELECT id FROM raw.src ORDER BY id"),
            rows(&[&["1"], &["2"]])
        );
        assert_eq!(query_i64(&db, "SELECT count(*) FROM _sluice.batches"), 1);
        assert_eq!(d.moved("archive"), ["a.csv"]);
    }
    d.run_once();
    let db = d.db();
    assert_eq!(data_columns(&db, "raw.src"), evolved());
    let expected = rows(&[
        &["1", "10.0", "NULL"],
        &["2", "20.0", "NULL"],
        &["3", "2.5", "north"],
        &["4", "40.0", "south"],
    ]);
    // Whatever Parquet file the killed commit left is gone: each row once.
    assert_raw_and_parquet(&d, &db, "SELECT id, amount, region", &expected);
    let b = batch_of(&db, "_sluice_file = 'b.csv'").to_string();
    assert_eq!(schema_changes(&db), b_changes(&b));
    assert_eq!(d.moved("archive"), ["a.csv", "b.csv"]);
}

#[test]
fn schema_change_killed_before_the_alter_table() {
    killed_while_altering("schema.before_alter");
}

#[test]
fn schema_change_killed_after_both_alter_tables_before_the_commit() {
    // The second ALTER of the batch's two (amount's type, then region): both are done
    // in the transaction, and one change is recorded, when the process dies.
    killed_while_altering("schema.after_alter@2");
}

/// A name as DuckDB quotes it.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[test]
fn schema_change_csv_names_by_case_reserved_empty_and_odd() {
    let d = Deployment::new("", "");
    let (mut daemon, base) = start(&d);
    feed(&d, &mut daemon, "a.csv", A);
    // Case aside, the same columns.
    feed(&d, &mut daemon, "n1.csv", "ID,AMOUNT\n6,60\n");
    // A field named like sluice's provenance: the row lands without that value, counted
    // as invalid_name. A field with no name is named by its position, as DuckDB does.
    feed(
        &d,
        &mut daemon,
        "n2.csv",
        "id,amount,_sluice_file,\n7,70,evil,e\n",
    );
    // Quotes, a dot, a space and a line break: a column named as it is written.
    let odd = "we\"ird.na me\nx";
    feed(
        &d,
        &mut daemon,
        "n3.csv",
        "id,amount,\"we\"\"ird.na me\nx\"\n8,80,v\n",
    );
    let m = scrape(&base);
    let series = "sluice_schema_refused_total{source=\"src\",reason=\"invalid_name\"}";
    assert_eq!(metric(&m, series), Some(1.0), "{m}");
    let (code, log) = daemon.terminate();
    assert!(code.success(), "{log}");
    let db = d.db();
    assert_eq!(
        data_columns(&db, "raw.src"),
        rows(&[
            &["id", "BIGINT"],
            &["amount", "BIGINT"],
            &["column3", "VARCHAR"],
            &[odd, "VARCHAR"]
        ])
    );
    assert_eq!(
        query_strings(
            &db,
            &format!(
                "SELECT id, amount, _sluice_file, column3, {} FROM raw.src ORDER BY id",
                quoted(odd)
            )
        ),
        rows(&[
            &["1", "10", "a.csv", "NULL", "NULL"],
            &["2", "20", "a.csv", "NULL", "NULL"],
            &["6", "60", "n1.csv", "NULL", "NULL"],
            &["7", "70", "n2.csv", "e", "NULL"],
            &["8", "80", "n3.csv", "NULL", "v"],
        ])
    );
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM _sluice.dead_letters"),
        0
    );
    assert_eq!(
        query_strings(
            &db,
            "SELECT column_name, change FROM _sluice.schema_changes ORDER BY batch_id"
        ),
        rows(&[&["column3", "add_column"], &[odd, "add_column"]])
    );
}

#[test]
fn schema_change_csv_headerless_rows_with_more_fields_than_the_table_are_dead_letters() {
    let extra = format!("header = false\n{}", crate::support::SCHEMA);
    let d = Deployment::new(&extra, "");
    d.write("h.csv", "1,a,1.00\n2,b,2.00,extra\n3,c,3.00\n");
    d.run_once();
    let db = d.db();
    assert_eq!(
        query_strings(&db, "SELECT id FROM raw.src ORDER BY id"),
        rows(&[&["1"], &["3"]])
    );
    let dead = query_strings(&db, "SELECT line, raw FROM _sluice.dead_letters");
    assert_eq!(dead, rows(&[&["2", "2,b,2.00,extra"]]));
    assert_eq!(
        data_columns(&db, "raw.src"),
        rows(&[
            &["id", "BIGINT"],
            &["name", "VARCHAR"],
            &["amount", "DECIMAL(12,2)"]
        ])
    );
}
