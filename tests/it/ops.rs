//! What operators see: metrics that equal what was ingested, readiness that follows the
//! sources, `/status` and `sluice status`, and systemd notifications in order.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::{fs::symlink, net::UnixDatagram},
    time::{Duration, Instant},
};

use crate::support::{
    csv_rows, documented_metrics, http_get, metric, metric_names, output, query_i64, sluice_bin,
    try_get, Deployment, PATIENCE, SCHEMA,
};

/// Nothing to add: every test deployment listens on an OS-chosen port.
const HTTP: &str = "";

#[test]
fn metrics_equal_what_was_ingested_and_match_the_readme() {
    let d = Deployment::new(SCHEMA, HTTP).with_models(&[
        (
            "m.sql",
            "{{ config(materialized='incremental') }}\nselect id, _sluice_batch from {{ ref('src') }} where {{ new_rows() }}",
        ),
        (
            "schema.yml",
            "version: 2\nmodels:\n  - name: m\n    columns:\n      - name: id\n        tests: [not_null]\n",
        ),
    ]);
    let mut daemon = d.start();
    let base = daemon.http_addr();
    let a = csv_rows(1, 120);
    let mut b = csv_rows(1000, 30);
    b.push_str("x,bad,row\n");
    d.write("a.csv", &a);
    d.write("b.csv", &b);
    daemon.wait_until("both files archived", |_| d.moved("archive").len() == 2);
    d.write("copy.csv", &a);
    fs::write(d.inbox.join("bin.csv"), b"\x00\x01\x02").expect("write");
    let outside = d.dir.path().join("secret.csv");
    fs::write(&outside, "id\n1\n").expect("write");
    symlink(&outside, d.inbox.join("link.csv")).expect("symlink");
    let refused = |_: &crate::support::Daemon| {
        let (_, scrape) = http_get(&format!("{base}/metrics"));
        metric(&scrape, "sluice_files_refused_total{source=\"src\"}").unwrap_or(0.0) >= 1.0
    };
    daemon.wait_until(
        "duplicate archived, binary quarantined, link refused",
        |d2| d.moved("archive").len() == 3 && d.moved("quarantine").len() == 1 && refused(d2),
    );
    let model_caught_up = |_: &crate::support::Daemon| {
        let (_, scrape) = http_get(&format!("{base}/metrics"));
        metric(&scrape, "sluice_model_rows_written_total{model=\"m\"}") == Some(150.0)
    };
    daemon.wait_until("the model consumed every row", model_caught_up);
    let (code, scrape) = http_get(&format!("{base}/metrics"));
    assert_eq!(code, 200);
    let m = |series: &str| {
        metric(&scrape, series).unwrap_or_else(|| panic!("{series} missing:\n{scrape}"))
    };
    assert_eq!(m("sluice_rows_ingested_total{source=\"src\"}"), 150.0);
    assert_eq!(
        m("sluice_dead_letters_total{source=\"src\",reason=\"parse\"}"),
        1.0
    );
    assert_eq!(
        m("sluice_bytes_ingested_total{source=\"src\"}"),
        (a.len() + b.len()) as f64
    );
    assert_eq!(m("sluice_files_ingested_total{source=\"src\"}"), 2.0);
    assert_eq!(m("sluice_files_duplicate_total{source=\"src\"}"), 1.0);
    assert_eq!(m("sluice_files_quarantined_total{source=\"src\"}"), 1.0);
    assert_eq!(m("sluice_commit_failures_total{table=\"src\"}"), 0.0);
    assert_eq!(m("sluice_source_up{source=\"src\"}"), 1.0);
    assert_eq!(m("sluice_ready"), 1.0);
    assert!(m("sluice_duckdb_file_bytes") > 0.0);
    let batches = m("sluice_batches_committed_total{table=\"src\"}");
    assert_eq!(m("sluice_batch_rows_count{table=\"src\"}"), batches);
    assert_eq!(m("sluice_batch_rows_sum{table=\"src\"}"), 150.0);
    // Each batch's oldest row waited at least until the commit began (the files' rows
    // were read before): one age per batch, none negative.
    assert_eq!(m("sluice_batch_age_seconds_count{table=\"src\"}"), batches);
    assert!(m("sluice_batch_age_seconds_sum{table=\"src\"}") > 0.0);

    // Every sluice_* series is documented, and every documented metric is served.
    let sample_names: Vec<&str> = scrape
        .lines()
        .filter(|l| l.starts_with("sluice_"))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let served = metric_names(&sample_names.join("\n"));
    let documented = documented_metrics();
    // This deployment has no Kafka source and no lake; the Kafka and lake tests check
    // those series.
    let kafka: BTreeSet<String> = documented
        .iter()
        .filter(|m| m.starts_with("sluice_kafka_") || m.starts_with("sluice_lake_"))
        .cloned()
        .collect();
    let mut expected: BTreeSet<String> = documented.difference(&kafka).cloned().collect();
    // No SQL client ran here: a histogram has no series before its first sample. The SQL
    // tests check it.
    expected.remove("sluice_sql_query_duration_seconds");
    assert_eq!(served, expected, "README metrics table vs /metrics");

    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    assert_eq!(query_i64(&d.db(), "SELECT count(*) FROM raw.src"), 150);
}

#[test]
fn readiness_follows_a_source_that_cannot_read_its_directory() {
    let d = Deployment::new(&format!("rescan_interval = \"100ms\"\n{SCHEMA}"), HTTP);
    let mut daemon = d.start();
    let base = daemon.http_addr();
    // `code` reads an unreachable daemon as 0, so wait_until reports its exit and log.
    let code = |path: &str| try_get(&format!("{base}{path}")).map_or(0, |r| r.0);
    daemon.wait_until("ready", |_| code("/readyz") == 200);
    assert_eq!(http_get(&format!("{base}/healthz")).0, 200);
    fs::remove_dir(&d.inbox).expect("remove inbox");
    daemon.wait_until("unready", |_| code("/readyz") == 503);
    let (_, body) = http_get(&format!("{base}/readyz"));
    assert!(body.contains("source src: cannot list"), "{body}");
    let (_, scrape) = http_get(&format!("{base}/metrics"));
    assert_eq!(
        metric(&scrape, "sluice_source_up{source=\"src\"}"),
        Some(0.0)
    );
    fs::create_dir(&d.inbox).expect("recreate inbox");
    daemon.wait_until("ready again", |_| code("/readyz") == 200);
    d.write("after.csv", &csv_rows(1, 5));
    daemon.wait_until("file in the recreated directory archived", |_| {
        d.moved("archive") == ["after.csv"]
    });
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn status_reports_sources_and_batches_and_sluice_status_prints_them() {
    let d = Deployment::new(SCHEMA, HTTP);
    let mut daemon = d.start();
    let base = daemon.http_addr();
    d.write("a.csv", &csv_rows(1, 42));
    daemon.wait_until("archived", |_| d.moved("archive").len() == 1);
    let (code, body) = http_get(&format!("{base}/status"));
    assert_eq!(code, 200);
    let s: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(s["ready"], true);
    assert_eq!(s["sources"][0]["name"], "src");
    assert_eq!(s["sources"][0]["rows"], 42);
    assert_eq!(s["sources"][0]["state"], "running");
    assert_eq!(s["recent_batches"][0]["rows"], 42);
    assert!(
        !body.contains(d.dir.path().to_str().expect("utf8")),
        "absolute paths in /status: {body}"
    );
    let out = output(std::process::Command::new(sluice_bin()).args(["status", "--url", &base]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ready") && text.contains("src") && text.contains("42"),
        "{text}"
    );
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn systemd_gets_ready_watchdog_pings_and_stopping_in_order() {
    let d = Deployment::new(SCHEMA, "");
    let socket_path = d.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let log = fs::File::create(d.dir.path().join("notify-run.log")).expect("log");
    let mut child = d
        .command(&["run"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .stderr(log)
        .spawn()
        .expect("spawn");
    let mut messages: Vec<String> = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    let mut buf = [0u8; 4096];
    let mut sent_term = false;
    while !messages.iter().any(|m| m.contains("STOPPING=1")) {
        assert!(Instant::now() < deadline, "messages so far: {messages:?}");
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("sluice exited early ({status}); messages: {messages:?}");
        }
        if let Ok(n) = socket.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let pings = messages.iter().filter(|m| m.contains("WATCHDOG=1")).count();
        if pings >= 3 && !sent_term {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .expect("SIGTERM");
            sent_term = true;
        }
    }
    assert!(child.wait().expect("wait").success());
    let position = |what: &str| messages.iter().position(|m| m.contains(what));
    let ready = position("READY=1").expect("READY=1 sent");
    let first_ping = position("WATCHDOG=1").expect("watchdog pinged");
    let stopping = position("STOPPING=1").expect("STOPPING=1 sent");
    assert!(
        ready < first_ping && first_ping < stopping,
        "order: {messages:?}"
    );
}

#[test]
fn sighup_keeps_sluice_running_and_names_changes_that_need_a_restart() {
    let d = Deployment::new(SCHEMA, HTTP);
    let mut daemon = d.start();
    daemon.wait_for_log("ready");
    let hup = |daemon: &crate::support::Daemon| {
        nix::sys::signal::kill(daemon.pid(), nix::sys::signal::Signal::SIGHUP).expect("SIGHUP")
    };
    let original = fs::read_to_string(&d.config).expect("config");
    fs::write(
        &d.config,
        original.replace("settle = \"100ms\"", "setle = \"1s\""),
    )
    .expect("break config");
    hup(&daemon);
    daemon.wait_for_log("the configuration is not valid, keeping the running one");
    fs::write(
        &d.config,
        original.replace("settle = \"100ms\"", "settle = \"200ms\""),
    )
    .expect("change config");
    hup(&daemon);
    daemon.wait_for_log("need a restart");
    assert!(
        daemon.log_text().contains("changed=sources.src"),
        "{}",
        daemon.log_text()
    );
    // Still ingesting after both reloads.
    d.write("a.csv", &csv_rows(1, 3));
    daemon.wait_until("archived after SIGHUP", |_| d.moved("archive").len() == 1);
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn readiness_goes_from_503_to_200_when_start_up_can_finish() {
    let d = Deployment::new(SCHEMA, HTTP);
    fs::create_dir_all(&d.data).expect("data dir");
    // Another process (here: this test) holds the DuckDB file, as a DuckDB CLI left open would.
    let holder = duckdb::Connection::open(d.data.join("warehouse.duckdb")).expect("hold the file");
    let mut daemon = d.start();
    let base = daemon.http_addr();
    daemon.wait_until("503 naming the lock", |_| {
        let (code, body) = http_get(&format!("{base}/readyz"));
        code == 503 && body.contains("locked by another process")
    });
    drop(holder);
    daemon.wait_until("ready", |_| http_get(&format!("{base}/readyz")).0 == 200);
    d.write("a.csv", &csv_rows(1, 4));
    daemon.wait_until("archived", |_| d.moved("archive").len() == 1);
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn json_logs_are_one_object_per_line_and_name_the_file_concerned() {
    let d = Deployment::new(SCHEMA, HTTP);
    fs::write(d.inbox.join("bin.csv"), b"\x00\x01").expect("write");
    let out = output(&mut d.command(&["--log-format", "json", "run", "--once"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let warning = lines
        .iter()
        .find(|l| l["level"] == "WARN" && l["fields"]["message"] == "quarantining file")
        .unwrap_or_else(|| panic!("no quarantine warning in {lines:?}"));
    assert_eq!(warning["fields"]["source"], "src");
    assert_eq!(warning["fields"]["file"], "bin.csv");
    assert!(warning["fields"]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("NUL")));
}

/// A thread's nice value, from `/proc/<pid>/task/<tid>/stat` (field 19).
fn nice_of(stat: &str) -> i64 {
    let after_name = &stat[stat.rfind(')').expect("comm in stat") + 2..];
    after_name
        .split(' ')
        .nth(16)
        .expect("nice field")
        .parse()
        .expect("nice")
}

/// The nice value of every thread of `pid`, by thread name.
fn thread_nices(pid: u32) -> Vec<(String, i64)> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).expect("task dir");
    tasks
        .filter_map(|t| {
            let t = t.ok()?.path();
            let name = fs::read_to_string(t.join("comm")).ok()?;
            let stat = fs::read_to_string(t.join("stat")).ok()?;
            Some((name.trim().to_string(), nice_of(&stat)))
        })
        .collect()
}

#[test]
fn source_threads_run_at_a_lower_priority_than_the_commit_thread() {
    let d = Deployment::new("", HTTP);
    d.write("a.csv", &csv_rows(1, 3));
    let mut daemon = d.start();
    daemon.wait_until("the first file committed", |_| {
        d.moved("archive").len() == 1
    });
    let pid = daemon.child.id();
    let nices = thread_nices(pid);
    let nice = |name: &str| {
        nices
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no thread {name} in {nices:?}"))
            .1
    };
    // The main thread's nice is the process's: a unit's `Nice=` or the shell's.
    let main = nice_of(&fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat"));
    assert_eq!(nice("committer"), main, "{nices:?}");
    assert_eq!(
        nice("source-src"),
        (main + i64::from(sluice_core::priority::PRODUCER_NICE)).min(19),
        "{nices:?}"
    );
    let (status, _) = daemon.terminate();
    assert!(status.success());
}
