//! The lake: raw tables published as Delta tables (`[lake]`), read back by independent
//! readers (the `deltalake` Python package and Polars, installed by `scripts/env.sh`),
//! on the local filesystem and on a real S3 server (SeaweedFS, [`s3`]).
//!
//! Each check compares the Delta table with the raw table in DuckDB: the same rows, each
//! once, and the `txn` actions that say how far the lake holds this database's batches
//! (`sluice:<writer id>`) and each Kafka partition (`kafka:<group>/<topic>/<partition>`).

mod group;
mod partial;
mod s3;

use std::{collections::BTreeSet, path::Path, process::Command};

use serde_json::Value;

use crate::{
    faults::run_to_fault,
    kafka::{order, Kafka, SCHEMA as KAFKA_SCHEMA},
    lifecycle::write_inbox,
    support::{http_get, metric, output, query_i64, query_strings, Deployment, SCHEMA},
};
pub(crate) use s3::lake_python;
use s3::S3Server;

const FILES: i64 = 3;
const ROWS: i64 = 2_500;

/// `[lake]` on a local directory (`lake`, under the data directory).
const LOCAL_LAKE: &str = "[lake]\nformat = \"delta\"\nuri = \"lake\"\n";

/// What both readers see of the Delta table at `uri` (see tests/clients/delta_check.py).
fn read_delta(uri: &str, keys: &str, sum: &str, apps: &[String], env: &[(&str, String)]) -> Value {
    let script = crate::support::repo_root().join("tests/clients/delta_check.py");
    let out = output(
        Command::new(lake_python())
            .arg(script)
            .args([uri, keys, sum])
            .args(apps)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str()))),
    );
    assert!(
        out.status.success(),
        "delta_check.py {uri}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from delta_check.py")
}

/// This database's `txn` app id in the lake.
fn writer_app(db: &duckdb::Connection) -> String {
    let id = query_strings(
        db,
        "SELECT value FROM _sluice.meta WHERE key = 'lake_writer_id'",
    );
    format!("sluice:{}", id[0][0])
}

/// Asserts both readers see exactly the raw table's rows (count, distinct `keys`, the sum
/// of `sum`), and the lake holds every batch of this database; the reader's view.
fn assert_lake_equals_raw(
    d: &Deployment,
    uri: &str,
    keys: &str,
    sum: &str,
    env: &[(&str, String)],
) -> Value {
    let db = d.db();
    let app = writer_app(&db);
    let seen = read_delta(uri, keys, sum, std::slice::from_ref(&app), env);
    let rows = query_i64(&db, "SELECT count(*) FROM raw.src");
    let total = query_i64(&db, &format!("SELECT sum({sum})::BIGINT FROM raw.src"));
    for reader in ["deltalake", "polars"] {
        assert_eq!(seen[reader]["rows"], rows, "{reader}: rows ({seen})");
        assert_eq!(
            seen[reader]["distinct"], rows,
            "{reader}: each row once ({seen})"
        );
        assert_eq!(
            seen[reader]["sum"], total,
            "{reader}: the same rows ({seen})"
        );
    }
    let last = query_i64(&db, "SELECT max(batch_id) FROM _sluice.batches");
    assert_eq!(
        seen["txn"][&app], last,
        "the lake holds every batch ({seen})"
    );
    seen
}

/// A series of the daemon at `base` (-1 while it has none).
fn scrape(base: &str, series: &str) -> f64 {
    metric(&http_get(&format!("{base}/metrics")).1, series).unwrap_or(-1.0)
}

fn local_uri(d: &Deployment) -> String {
    d.data.join("lake/src").display().to_string()
}

/// Data files on disk under a local Delta table (the log's files aside).
fn files_on_disk(table: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![table.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.ends_with("_delta_log") {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found.insert(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn csv_batches_reach_a_local_delta_table_once_and_both_readers_see_every_row() {
    // 25 batches: more than one lake commit takes (16), so there are two or more, and a
    // checkpoint every 2 versions.
    let lake = format!("{LOCAL_LAKE}checkpoint_interval = 2\n");
    let d = Deployment::new(SCHEMA, &format!("[batch]\nmax_rows = 300\n{lake}"));
    let (good, _bad, _sum) = write_inbox(&d, FILES, ROWS);
    d.run_once();
    let uri = local_uri(&d);
    let seen = assert_lake_equals_raw(&d, &uri, "id", "id", &[]);
    assert_eq!(seen["polars"]["rows"], good);
    // Partitioned by the commit's UTC date, as the Parquet tree is.
    let dt = std::fs::read_dir(&uri)
        .expect("table dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("dt="))
        .count();
    assert!(dt >= 1, "a dt= partition directory");
    assert!(seen["version"].as_u64() >= Some(2), "{seen}");
    let checkpoints = std::fs::read_dir(Path::new(&uri).join("_delta_log"))
        .expect("log")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(".checkpoint.parquet")
        })
        .count();
    assert!(checkpoints >= 1, "a checkpoint every 2 versions");
    // Nothing new: a second run commits nothing to the lake.
    d.run_once();
    let again = assert_lake_equals_raw(&d, &uri, "id", "id", &[]);
    assert_eq!(again["version"], seen["version"], "no empty lake commits");
}

#[test]
fn a_kill_on_either_side_of_a_lake_commit_leaves_every_row_in_the_lake_once() {
    for fault in ["lake.before_commit@2", "lake.after_commit@2"] {
        // 25 batches: more than one lake commit takes (16), so there is a second.
        let d = Deployment::new(SCHEMA, &format!("[batch]\nmax_rows = 300\n{LOCAL_LAKE}"));
        write_inbox(&d, FILES, ROWS);
        run_to_fault(&d, fault);
        let uri = local_uri(&d);
        let db = d.db();
        let app = writer_app(&db);
        let seen = read_delta(&uri, "id", "id", std::slice::from_ref(&app), &[]);
        // Version 0 created the table, 1 is the first commit of rows; the kill came
        // before (or right after) the second.
        let version = if fault.starts_with("lake.before") {
            1
        } else {
            2
        };
        assert_eq!(seen["version"], version, "{fault}: {seen}");
        let through = seen["txn"][&app]
            .as_i64()
            .expect("the lake holds some batches");
        let rows_through = query_i64(
            &db,
            &format!("SELECT count(*) FROM raw.src WHERE _sluice_batch <= {through}"),
        );
        assert_eq!(
            seen["deltalake"]["rows"], rows_through,
            "{fault}: the lake holds exactly its batches"
        );
        assert_eq!(seen["deltalake"]["distinct"], rows_through, "{fault}");
        let files_in_log = seen["files"].as_u64().expect("files") as usize;
        let on_disk = files_on_disk(Path::new(&uri)).len();
        if fault.starts_with("lake.before") {
            assert!(on_disk > files_in_log, "{fault}: the second commit's files were written ({on_disk} on disk, {files_in_log} in the log)");
        } else {
            assert_eq!(on_disk, files_in_log, "{fault}");
        }
        drop(db);
        d.run_once();
        assert_lake_equals_raw(&d, &uri, "id", "id", &[]);
        if fault.starts_with("lake.before") {
            let rows = query_i64(&d.db(), "SELECT count(*) FROM raw.src");
            assert!(
                rows > rows_through,
                "{fault}: the second commit's rows were left to publish"
            );
        }
    }
}

#[test]
fn kafka_messages_reach_the_lake_with_each_partitions_offset_in_its_log() {
    let kafka = Kafka::new("orders", 4);
    for id in 0..2_000 {
        kafka.send((id % 4) as i32, &id.to_string(), &order(id));
    }
    kafka.flush();
    let d = kafka.deployment_with(
        "",
        KAFKA_SCHEMA,
        &format!("[batch]\nmax_rows = 700\n{LOCAL_LAKE}"),
        "",
    );
    d.run_once();
    let uri = local_uri(&d);
    let apps: Vec<String> = (0..4).map(|p| format!("kafka:it/orders/{p}")).collect();
    let seen = read_delta(&uri, "_sluice_partition,_sluice_offset", "id", &apps, &[]);
    assert_eq!(seen["polars"]["rows"], 2_000, "{seen}");
    assert_eq!(
        seen["polars"]["distinct"], 2_000,
        "each message once: {seen}"
    );
    for app in &apps {
        assert_eq!(seen["txn"][app], 500, "{app}: the next offset ({seen})");
    }
    assert_lake_equals_raw(&d, &uri, "_sluice_partition,_sluice_offset", "id", &[]);
}

#[test]
fn the_store_down_and_back_ingestion_goes_on_and_the_lake_catches_up_once() {
    let mut server = S3Server::start();
    server.create_bucket("outage");
    let top = format!(
        "[batch]\nmax_rows = 1000\nmax_age = \"200ms\"\n{}",
        server.lake_config("outage")
    );
    let d = Deployment::new(SCHEMA, &top);
    let env = server.sluice_env();
    let mut daemon = d.start_with("info", &env);
    let base = daemon.http_addr();
    d.write("a.csv", &crate::support::csv_rows(0, 3_000));
    let scrape = |what: &str| scrape(&base, what);
    daemon.wait_until("the first file in the lake", |_| {
        scrape("sluice_lake_rows_total{table=\"src\"}") >= 3_000.0
    });
    server.stop();
    d.write("b.csv", &crate::support::csv_rows(10_000, 3_000));
    daemon.wait_until("the second file in DuckDB while the store is down", |_| {
        scrape("sluice_rows_ingested_total{source=\"src\"}") >= 6_000.0
    });
    daemon.wait_until("readiness to name the lake", |_| {
        let (code, body) = http_get(&format!("{base}/readyz"));
        code == 503 && body.contains("lake:")
    });
    assert!(
        scrape("sluice_lake_behind_batches{table=\"src\"}") >= 1.0,
        "behind while down"
    );
    assert!(scrape("sluice_lake_commit_failures_total{table=\"src\"}") >= 1.0);
    server.resume();
    daemon.wait_until("the lake to catch up", |_| {
        scrape("sluice_lake_behind_batches{table=\"src\"}") == 0.0
            && scrape("sluice_lake_rows_total{table=\"src\"}") >= 6_000.0
    });
    daemon.wait_until("readiness again", |_| {
        http_get(&format!("{base}/readyz")).0 == 200
    });
    let (_, status) = http_get(&format!("{base}/status"));
    let status: Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(status["lake"]["src"]["behind_batches"], 0, "{status}");
    assert!(
        status["lake"]["src"]["version"].as_u64().is_some(),
        "{status}"
    );
    assert!(
        !status.to_string().contains(s3::SECRET_KEY),
        "no secret in /status"
    );
    let (code, log) = daemon.terminate();
    assert!(code.success(), "{log}");
    assert!(!log.contains(s3::SECRET_KEY), "no secret in the log");
    let seen = assert_lake_equals_raw(&d, "s3://outage/lake/src", "id", "id", &server.env());
    assert_eq!(seen["deltalake"]["rows"], 6_000);
}

#[test]
fn small_files_are_compacted_and_vacuumed_while_ingestion_goes_on_and_readers_see_every_row() {
    let top = format!(
        "[batch]\nmax_age = \"50ms\"\n{LOCAL_LAKE}compact_after = 4\nvacuum_retention = \"0s\"\n"
    );
    let d = Deployment::new(SCHEMA, &top);
    let mut daemon = d.start();
    let base = daemon.http_addr();
    let scrape = |what: &str| scrape(&base, what);
    let uri = local_uri(&d);
    let mut written = 0;
    // One file at a time, each published before the next: a small data file per commit.
    for round in 0..2 {
        for _ in 0..6 {
            d.write(
                &format!("f{written}.csv"),
                &crate::support::csv_rows(written * 100, 100),
            );
            written += 1;
            daemon.wait_until("the file in the lake", |_| {
                scrape("sluice_lake_rows_total{table=\"src\"}") >= (written * 100) as f64
            });
        }
        daemon.wait_until("a compaction", |_| {
            scrape("sluice_lake_compactions_total{table=\"src\"}") >= f64::from(round + 1)
        });
        // A reader between compactions, while files keep coming, sees each row once.
        let seen = read_delta(&uri, "id", "id", &[], &[]);
        for reader in ["deltalake", "polars"] {
            assert_eq!(
                seen[reader]["rows"], seen[reader]["distinct"],
                "{reader}: {seen}"
            );
            assert!(
                seen[reader]["rows"].as_i64() >= Some(written * 100),
                "{seen}"
            );
        }
    }
    let vacuumed = scrape("sluice_lake_vacuumed_files_total{table=\"src\"}");
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    let seen = assert_lake_equals_raw(&d, &uri, "id", "id", &[]);
    assert_eq!(seen["polars"]["rows"], written * 100);
    let in_log = seen["files"].as_u64().expect("files") as usize;
    assert!(
        in_log < 12,
        "12 commits, compacted into fewer files: {in_log}"
    );
    assert!(vacuumed >= 4.0, "compacted-away files vacuumed: {vacuumed}");
    assert_eq!(
        files_on_disk(Path::new(&uri)).len(),
        in_log,
        "nothing left but what the log references"
    );
}

#[test]
fn kafka_messages_reach_an_s3_lake_once_and_the_assignment_reads_its_offsets_promptly() {
    let server = S3Server::start();
    server.create_bucket("kafka");
    let kafka = Kafka::new("orders", 4);
    for id in 0..2_000 {
        kafka.send((id % 4) as i32, &id.to_string(), &order(id));
    }
    kafka.flush();
    let top = format!("[batch]\nmax_rows = 700\n{}", server.lake_config("kafka"));
    let d = kafka.deployment_with("", KAFKA_SCHEMA, &top, "");
    let env = server.sluice_env();
    let first = d.run_once_with(&env);
    let log = String::from_utf8_lossy(&first.stderr).to_string();
    assert!(first.status.success(), "{log}");
    let uri = "s3://kafka/lake/src";
    let apps: Vec<String> = (0..4).map(|p| format!("kafka:it/orders/{p}")).collect();
    let seen = read_delta(
        uri,
        "_sluice_partition,_sluice_offset",
        "id",
        &apps,
        &server.env(),
    );
    assert_eq!(seen["polars"]["distinct"], 2_000, "{seen}");
    for app in &apps {
        assert_eq!(seen["txn"][app], 500, "{app}: {seen}");
    }
    // More messages, a second run: its assignment reads the partitions' offsets from
    // the lake's log (the table exists now) and must not stall the group.
    for id in 2_000..3_000 {
        kafka.send((id % 4) as i32, &id.to_string(), &order(id));
    }
    kafka.flush();
    let started = std::time::Instant::now();
    let second = d.run_once_with(&env);
    let log = String::from_utf8_lossy(&second.stderr).to_string();
    assert!(second.status.success(), "{log}");
    assert!(
        !log.contains("cannot read the lake's partition offsets"),
        "the lake's offsets were read: {log}"
    );
    assert!(
        started.elapsed().as_secs() < 60,
        "took {:?}: {log}",
        started.elapsed()
    );
    let seen = assert_lake_equals_raw(
        &d,
        uri,
        "_sluice_partition,_sluice_offset",
        "id",
        &server.env(),
    );
    assert_eq!(seen["polars"]["rows"], 3_000);
}

#[test]
fn a_store_that_hangs_holds_up_neither_ingestion_nor_a_stop_and_the_lake_catches_up_after() {
    let server = S3Server::start();
    server.create_bucket("hung");
    let top = format!(
        "[batch]\nmax_age = \"100ms\"\n{}",
        server.lake_config("hung")
    );
    let d = Deployment::new(SCHEMA, &top);
    let env = server.sluice_env();
    let mut daemon = d.start_with("info", &env);
    let base = daemon.http_addr();
    let scrape = |what: &str| scrape(&base, what);
    d.write("a.csv", &crate::support::csv_rows(0, 1_000));
    daemon.wait_until("the first file in the lake", |_| {
        scrape("sluice_lake_rows_total{table=\"src\"}") >= 1_000.0
    });
    // Connections open, no answers: the lake's calls hang inside delta-rs.
    server.freeze();
    d.write("b.csv", &crate::support::csv_rows(10_000, 1_000));
    daemon.wait_until("the second file in DuckDB while the store hangs", |_| {
        scrape("sluice_rows_ingested_total{source=\"src\"}") >= 2_000.0
    });
    assert!(
        scrape("sluice_lake_rows_total{table=\"src\"}") < 2_000.0,
        "the store answered"
    );
    let stopping = std::time::Instant::now();
    let (status, log) = daemon.terminate();
    let took = stopping.elapsed();
    assert!(status.success(), "{log}");
    assert!(
        took.as_secs() < 45,
        "the stop waited {took:?} for a hung store: {log}"
    );
    assert!(log.contains("stopping with the lake behind"), "{log}");
    server.thaw();
    // The next start publishes what the lake lacks, each row once.
    d.run_once_with(&env);
    let seen = assert_lake_equals_raw(&d, "s3://hung/lake/src", "id", "id", &server.env());
    assert_eq!(seen["deltalake"]["rows"], 2_000);
}
