//! A store that partly fails: a fault proxy (tests/clients/s3_fault_proxy.py) between
//! sluice and the S3 server loses the answers to commits that landed, refuses data file
//! uploads for a while, and fails every third request. Ingestion must go on, the lake
//! must catch up, and the Delta table must hold each row once.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

use serde_json::Value;

use super::{assert_lake_equals_raw, s3::lake_python, S3Server};
use crate::support::{csv_rows, http_get, repo_root, Deployment, SCHEMA};

/// The proxy, running until dropped.
struct FaultProxy {
    child: Child,
    base: String,
}

impl FaultProxy {
    fn start(upstream: &str) -> FaultProxy {
        let script = repo_root().join("tests/clients/s3_fault_proxy.py");
        let upstream = upstream.trim_start_matches("http://");
        let mut child = Command::new(lake_python())
            .arg(script)
            .arg(upstream)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the fault proxy");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the proxy's port");
        let port = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("the proxy said {line:?}"))
            .trim();
        FaultProxy {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Arms faults (`lose_commit_acks=N`, `fail_data_puts=N`, `flaky=K`).
    fn arm(&self, faults: &str) {
        ureq::post(&format!("{}/__fault/arm?{faults}", self.base))
            .send_empty()
            .expect("arm a fault");
    }

    /// What the proxy injected so far.
    fn stats(&self) -> Value {
        let (code, body) = http_get(&format!("{}/__fault/stats", self.base));
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("stats JSON")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_store_that_partly_fails_loses_no_row_and_doubles_none() {
    let server = S3Server::start();
    server.create_bucket("partial");
    let proxy = FaultProxy::start(&server.endpoint());
    // Few, quick retries inside the store client, so a refused upload reaches sluice.
    let top = format!(
        "[batch]\nmax_age = \"100ms\"\n{}max_retries = \"2\"\nmax_backoff = \"100ms\"\n",
        server.lake_config_at("partial", &proxy.base)
    );
    let d = Deployment::new(SCHEMA, &top);
    let mut daemon = d.start_with("info", &server.sluice_env());
    let base = daemon.http_addr();
    let scrape = |what: &str| super::scrape(&base, what);
    // `rows` ingested, and the lake holds the last batch committed.
    let caught_up = |rows: i64| {
        let (_, status) = http_get(&format!("{base}/status"));
        let status: Value = serde_json::from_str(&status).expect("status JSON");
        let last = status["recent_batches"]
            .as_array()
            .and_then(|b| b.last())
            .map(|b| b["batch_id"].clone());
        scrape("sluice_rows_ingested_total{source=\"src\"}") >= rows as f64
            && last.is_some_and(|last| status["lake"]["src"]["through_batch"] == last)
    };
    let mut files = 0;
    let mut drop_file = || {
        d.write(&format!("f{files}.csv"), &csv_rows(files * 10_000, 1_000));
        files += 1;
        files * 1_000
    };
    let rows = drop_file();
    daemon.wait_until("the first file in the lake", |_| caught_up(rows));

    // Commits that land but whose answers are lost: the writer must find its own
    // commit in the log, not commit the rows again.
    proxy.arm("lose_commit_acks=2");
    for lost in 1..=2 {
        let rows = drop_file();
        daemon.wait_until("a commit whose answer was lost, caught up", |_| {
            proxy.stats()["lost_acks"].as_array().map(Vec::len) == Some(lost) && caught_up(rows)
        });
    }
    // Its retry found the version taken (by itself) and the conflict check said so.
    let conflicts = scrape("sluice_lake_conflicts_total{table=\"src\"}");
    assert!(conflicts >= 2.0, "each lost answer a conflict: {conflicts}");

    // Uploads refused for longer than the client retries: the commit fails, sluice
    // retries it, ingestion goes on.
    proxy.arm("fail_data_puts=1000000");
    let rows = drop_file();
    daemon.wait_until("a lake commit to fail, the lake behind", |_| {
        scrape("sluice_lake_commit_failures_total{table=\"src\"}") >= 1.0
            && scrape("sluice_rows_ingested_total{source=\"src\"}") >= rows as f64
            && scrape("sluice_lake_behind_batches{table=\"src\"}") == 1.0
    });
    proxy.arm("fail_data_puts=0");
    daemon.wait_until("the lake to catch up after refused uploads", |_| {
        caught_up(rows)
    });

    // Every third request fails: the store client's retries carry the lake on.
    proxy.arm("flaky=3");
    for _ in 0..2 {
        let rows = drop_file();
        daemon.wait_until("the lake to keep up with a flaky store", |_| {
            caught_up(rows)
        });
    }
    proxy.arm("flaky=0");

    let stats = proxy.stats();
    assert!(stats["failed_data_puts"].as_i64() >= Some(3), "{stats}");
    assert!(stats["flaky_failures"].as_i64() >= Some(1), "{stats}");
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    // Conflicts are resolved and counted, not logged as errors (delta-rs logs each at
    // ERROR; sluice logs the outcome).
    assert!(!log.contains("conflict detected"), "{log}");
    // The readers go to the store directly.
    let seen = assert_lake_equals_raw(&d, "s3://partial/lake/src", "id", "id", &server.env());
    assert_eq!(seen["deltalake"]["rows"], files * 1_000, "{seen}");
}
