//! Models under the real daemon: a dbt project maintained incrementally equals a full
//! build, across SIGKILLs too; failing models and tests are reported and never block
//! ingestion; SIGHUP applies fixed model files and keeps the running ones otherwise;
//! `sluice check` and `sluice models` commands.

use std::{
    fs,
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use rand::Rng;

use crate::support::{
    csv_rows, http_get, metric, open_read_only, output, query_i64, query_strings, sluice_ok,
    Deployment, SCHEMA,
};

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Copies `data` next to itself, rebuilds every model from scratch there with
/// `sluice models run --full-refresh`, and asserts each table model equals its
/// incrementally maintained twin row for row. Returns the rows compared.
fn assert_marts_equal_full_refresh(config: &Path, data_dir_key: &str, tables: &[&str]) -> i64 {
    let base = config.parent().expect("config dir");
    let data = base.join(data_dir_key);
    let full_data = base.join(format!("{data_dir_key}_full"));
    let _ = fs::remove_dir_all(&full_data);
    copy_dir(&data, &full_data);
    let text = fs::read_to_string(config).expect("config");
    let full_config = base.join("full-refresh.toml");
    let replaced = text.replacen(
        &format!("data_dir = \"{data_dir_key}\""),
        &format!("data_dir = \"{data_dir_key}_full\""),
        1,
    );
    assert_ne!(
        replaced, text,
        "the config names data_dir = \"{data_dir_key}\""
    );
    fs::write(&full_config, replaced).expect("config");
    sluice_ok(&["models", "run", "--full-refresh"], &full_config);
    let db = duckdb::Connection::open_in_memory().expect("duckdb");
    let attach = |p: PathBuf, alias: &str| {
        db.execute_batch(&format!(
            "ATTACH '{}' AS \"{alias}\" (READ_ONLY)",
            p.join("warehouse.duckdb").display()
        ))
        .expect("attach");
    };
    attach(data, "inc");
    attach(full_data, "full");
    let mut compared = 0;
    for t in tables {
        for (a, b) in [("inc", "full"), ("full", "inc")] {
            let extra = query_i64(
                &db,
                &format!("SELECT count(*) FROM (SELECT * FROM \"{a}\".main.{t} EXCEPT ALL SELECT * FROM \"{b}\".main.{t})"),
            );
            assert_eq!(extra, 0, "{t}: rows in {a} but not in {b}");
        }
        let rows = query_i64(&db, &format!("SELECT count(*) FROM inc.main.{t}"));
        assert!(rows > 0, "{t} is empty: the comparison proves nothing");
        compared += rows;
    }
    compared
}

fn quickstart() -> PathBuf {
    crate::support::repo_root().join("examples/quickstart")
}

#[test]
fn the_quickstart_dbt_project_maintained_incrementally_equals_a_full_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = quickstart();
    copy_dir(&q.join("models"), &dir.path().join("models"));
    fs::copy(
        q.join("dbt_project.yml"),
        dir.path().join("dbt_project.yml"),
    )
    .expect("copy");
    let config = dir.path().join("sluice.toml");
    let text = fs::read_to_string(q.join("sluice.toml")).expect("config");
    fs::write(
        &config,
        text.replace("data_dir = \"./data\"", "data_dir = \"data\""),
    )
    .expect("config");
    let inbox = |source: &str| {
        let p = dir.path().join("inbox").join(source);
        fs::create_dir_all(&p).expect("inbox");
        p
    };
    let (tx, cu) = (inbox("transactions"), inbox("customers"));
    // One delivery per run: the first run builds the marts, the next ones merge.
    let deliveries: [(&PathBuf, &str); 4] = [
        (&tx, "transactions/transactions-2026-11-01.csv"),
        (&cu, "customers/customers.csv"),
        (&tx, "transactions/transactions-2026-11-02.csv"),
        (&tx, "transactions/transactions-2026-11-03.csv"),
    ];
    for (to, file) in deliveries {
        let from = q.join("inbox").join(file);
        fs::copy(&from, to.join(from.file_name().expect("name"))).expect("deliver");
        sluice_ok(&["run", "--once"], &config);
    }
    let db = open_read_only(&dir.path().join("data/warehouse.duckdb"));
    let last = query_i64(&db, "SELECT max(batch_id) FROM _sluice.batches");
    let behind = query_strings(
        &db,
        &format!(
            "SELECT name FROM _sluice.models WHERE watermark <> {last} AND materialized <> 'view'"
        ),
    );
    assert!(
        behind.is_empty(),
        "models behind the last batch: {behind:?}"
    );
    let failing = query_strings(
        &db,
        "SELECT test FROM _sluice.test_results WHERE failures > 0",
    );
    assert!(failing.is_empty(), "failing data tests: {failing:?}");
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM _sluice.test_results"),
        13
    );
    let merged = query_i64(&db, "SELECT count(*) FROM main.fct_transactions");
    assert_eq!(
        merged,
        query_i64(&db, "SELECT count(*) FROM raw.transactions")
    );
    drop(db);
    let marts = [
        "fct_transactions",
        "fct_daily_revenue",
        "fct_large_transactions",
        "int_customer_metrics",
    ];
    assert_marts_equal_full_refresh(&config, "data", &marts);
}

/// Models with one of each strategy over the test source's `id,name,amount` rows.
const MARTS: &[(&str, &str)] = &[
    ("staging/stg_src.sql", "select id, name, amount, id % 7 as grp, _sluice_batch from {{ ref('src') }}"),
    (
        "marts/all_rows.sql",
        "{{ config(materialized='incremental') }}\nselect id, amount from {{ ref('stg_src') }} where {{ new_rows() }}",
    ),
    (
        "marts/by_id.sql",
        "{{ config(materialized='incremental', unique_key='id', incremental_strategy='merge') }}\n\
         select id, name, amount from {{ ref('stg_src') }} where {{ new_rows() }}\n\
         qualify row_number() over (partition by id order by _sluice_batch desc) = 1",
    ),
    (
        "marts/by_group.sql",
        "{{ config(materialized='incremental', unique_key='grp', incremental_strategy='delete+insert') }}\n\
         select grp, count(*) as n, sum(amount) as total from {{ ref('stg_src') }}\n\
         {% if is_incremental() %}where grp in (select grp from {{ ref('stg_src') }} where {{ new_rows() }}){% endif %}\n\
         group by grp",
    ),
    ("marts/summary.sql", "{{ config(materialized='table') }}\nselect count(*) as groups, sum(n) as n from {{ ref('by_group') }}"),
    (
        "marts/schema.yml",
        "version: 2\nmodels:\n  - name: by_id\n    columns:\n      - name: id\n        tests: [unique, not_null]\n",
    ),
];

#[test]
fn marts_equal_a_full_build_across_sigkills_between_commits_and_model_runs() {
    let d = Deployment::new(SCHEMA, "[batch]\nmax_rows = 700\n")
        .with_settle("50ms")
        .with_models(MARTS);
    let mut rng = rand::rng();
    let mut next_id = 1;
    let mut interrupted = 0;
    for round in 0..8 {
        // New files each round; some ids come again (late updates to merged keys).
        for f in 0..4 {
            let first = if f == 0 && next_id > 500 {
                next_id - 400
            } else {
                next_id
            };
            d.write(&format!("r{round}-{f}.csv"), &csv_rows(first, 600));
            next_id = first.max(next_id) + 600;
        }
        let daemon = d.start();
        // The kill moment is what is random; nothing waits on sluice.
        thread::sleep(Duration::from_millis(rng.random_range(50..1200)));
        if d.inbox.read_dir().expect("inbox").next().is_some() {
            interrupted += 1;
        }
        daemon.kill();
    }
    assert!(
        interrupted > 0,
        "no kill landed during ingestion; the test proves nothing"
    );
    d.run_once();
    let db = d.db();
    let raw = query_i64(&db, "SELECT count(*) FROM raw.src");
    assert_eq!(raw, 8 * 4 * 600, "every raw row exactly once");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM main.all_rows"), raw);
    let failing = query_i64(
        &db,
        "SELECT count(*) FROM _sluice.test_results WHERE failures > 0",
    );
    assert_eq!(failing, 0);
    drop(db);
    assert_marts_equal_full_refresh(
        &d.config,
        "data",
        &["all_rows", "by_id", "by_group", "summary"],
    );
}

#[test]
fn a_failing_model_is_reported_its_downstream_waits_and_ingestion_goes_on() {
    let d = Deployment::new(SCHEMA, "").with_models(&[
        ("good.sql", "select id, case when id % 10 = 0 then null else name end as label from {{ ref('src') }}"),
        ("bad.sql", "{{ config(materialized='table') }}\nselect no_such_column from {{ ref('src') }}"),
        ("after_bad.sql", "select * from {{ ref('bad') }}"),
        (
            "schema.yml",
            "version: 2\nmodels:\n  - name: good\n    columns:\n      - name: label\n        tests:\n          - not_null:\n              config: {severity: warn}\n",
        ),
    ]);
    let mut daemon = d.start();
    let base = daemon.http_addr();
    d.write("a.csv", &csv_rows(1, 50));
    let status = |_: &crate::support::Daemon| -> serde_json::Value {
        serde_json::from_str(&http_get(&format!("{base}/status")).1).expect("json")
    };
    daemon.wait_until("bad failing, good built", |dd| {
        let s = status(dd);
        s["models"]["bad"]["state"] == "failing" && s["models"]["good"]["state"] == "ok"
    });
    d.write("b.csv", &csv_rows(100, 25));
    daemon.wait_until("the second file committed", |_| {
        d.moved("archive").len() == 2
    });
    let s = status(&daemon);
    let bad = &s["models"]["bad"];
    assert!(
        bad["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("no_such_column"),
        "{bad}"
    );
    assert_eq!(s["models"]["after_bad"]["state"], "waiting for bad", "{s}");
    assert_eq!(s["models"]["good"]["tests"][0]["failures"], 5, "{s}");
    let (_, scrape) = http_get(&format!("{base}/metrics"));
    assert!(
        metric(&scrape, "sluice_model_failures_total{model=\"bad\"}").unwrap_or(0.0) >= 1.0,
        "{scrape}"
    );
    assert_eq!(
        metric(&scrape, "sluice_model_failing{model=\"bad\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&scrape, "sluice_model_failing{model=\"good\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &scrape,
            "sluice_data_test_failures{model=\"good\",test=\"not_null_good_label\"}"
        ),
        Some(5.0)
    );
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    assert_eq!(
        query_i64(&d.db(), "SELECT count(*) FROM raw.src"),
        75,
        "ingestion went on"
    );
    // A one-shot run reports the failure in its exit status; the data stays committed.
    d.write("c.csv", &csv_rows(200, 5));
    let out = d.run_once_with(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("models failed")
            && err.contains("model bad")
            && err.contains("model after_bad"),
        "{err}"
    );
    assert_eq!(query_i64(&d.db(), "SELECT count(*) FROM raw.src"), 80);
}

#[test]
fn sighup_applies_fixed_model_files_and_keeps_the_running_ones_otherwise() {
    let d = Deployment::new(SCHEMA, "").with_models(&[("counts.sql", "{{ config(materialized='table', min_interval='0s') }}\nselect count(*) as n from {{ ref('src') }}")]);
    let mut daemon = d.start();
    let base = daemon.http_addr();
    let status = |_: &crate::support::Daemon| -> serde_json::Value {
        serde_json::from_str(&http_get(&format!("{base}/status")).1).expect("json")
    };
    d.write("a.csv", &csv_rows(1, 10));
    daemon.wait_until("counts built", |dd| {
        status(dd)["models"]["counts"]["runs"] == 1
    });
    let hup = |daemon: &crate::support::Daemon| {
        nix::sys::signal::kill(daemon.pid(), nix::sys::signal::Signal::SIGHUP).expect("SIGHUP")
    };
    // Broken: a ref to nothing. The running model keeps running.
    d.write_models(&[
        ("counts.sql", "select count(*) as n from {{ ref('nope') }}"),
        ("extra.sql", "select 1 as one"),
    ]);
    hup(&daemon);
    daemon.wait_for_log("keeping the running models");
    d.write("b.csv", &csv_rows(100, 10));
    daemon.wait_until("counts rebuilt by the old plan", |dd| {
        status(dd)["models"]["counts"]["runs"] == 2
    });
    assert!(status(&daemon)["models"].get("extra").is_none());
    // Fixed: applied, the changed model rebuilt, the new one created.
    d.write_models(&[("counts.sql", "{{ config(materialized='table') }}\nselect count(*) as n, max(id) as top from {{ ref('src') }}")]);
    hup(&daemon);
    daemon.wait_for_log("model files applied");
    daemon.wait_until("extra built", |dd| {
        status(dd)["models"]["extra"]["state"] == "ok"
    });
    daemon.wait_until("counts rebuilt with the new SQL", |dd| {
        status(dd)["models"]["counts"]["runs"] == 3
    });
    let (code, log) = daemon.terminate();
    assert!(code.success(), "{log}");
    let db = d.db();
    assert_eq!(
        query_strings(&db, "SELECT n, top FROM main.counts"),
        [["20", "109"]]
    );
    assert_eq!(query_i64(&db, "SELECT one FROM main.extra"), 1);
}

#[test]
fn check_reports_model_problems_with_file_and_line_and_compiles_against_the_database() {
    let d =
        Deployment::new(SCHEMA, "").with_models(&[("m.sql", "select id from {{ ref('src') }}")]);
    d.write("a.csv", &csv_rows(1, 3));
    d.run_once();
    let check = |d: &Deployment| {
        let out = output(&mut d.command(&["check"]));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = check(&d);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("1 model(s) planned, 1 compiled"), "{err}");
    d.write_models(&[
        (
            "m.sql",
            "select id,\n  no_such_column\nfrom {{ ref('src') }}",
        ),
        (
            "n.sql",
            "-- n\nselect * from {{ ref('m') }}\n{{ unknown_macro() }}",
        ),
        ("o.sql", "select * from {{ ref('missing_table') }}"),
    ]);
    let (code, err) = check(&d);
    assert_eq!(code, Some(2), "{err}");
    for needle in ["n.sql:3", "unknown_macro", "o.sql:1", "missing_table"] {
        assert!(err.contains(needle), "{needle} missing: {err}");
    }
    d.write_models(&[
        ("n.sql", "select * from {{ ref('m') }}"),
        ("o.sql", "select 1 as x"),
    ]);
    let (code, err) = check(&d);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("m.sql") && err.contains("does not compile") && err.contains("no_such_column"),
        "{err}"
    );
}

#[test]
fn models_commands_list_select_and_refuse_a_running_daemon() {
    let d = Deployment::new(SCHEMA, "").with_models(MARTS);
    d.write("a.csv", &csv_rows(1, 30));
    d.run_once();
    let out = output(&mut d.command(&["models", "list"]));
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        list.contains("by_group") && list.contains("delete+insert") && list.contains("grp"),
        "{list}"
    );
    let lines: Vec<&str> = list.lines().collect();
    let pos = |n: &str| lines.iter().position(|l| l.starts_with(n)).expect(n);
    assert!(
        pos("stg_src") < pos("by_group") && pos("by_group") < pos("summary"),
        "{list}"
    );
    let out = output(&mut d.command(&["models", "run", "--full-refresh", "--select", "by_id"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("by_id")
            && text.contains("built in full, 30 rows")
            && !text.contains("by_group"),
        "{text}"
    );
    let out = output(&mut d.command(&["models", "run", "--select", "nope"]));
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--select nope")
    );
    let mut daemon = d.start();
    daemon.wait_for_log("ready");
    let out = output(&mut d.command(&["models", "run"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds the data directory"));
}

#[test]
fn a_restarted_daemon_reports_the_models_built_before_it() {
    let d = Deployment::new(SCHEMA, "").with_models(&[
        (
            "m.sql",
            "{{ config(materialized='incremental') }}\nselect id, amount, _sluice_batch from {{ ref('src') }} where {{ new_rows() }}",
        ),
        (
            "schema.yml",
            "version: 2\nmodels:\n  - name: m\n    columns:\n      - name: id\n        tests: [not_null]\n",
        ),
    ]);
    d.write("a.csv", &csv_rows(1, 50));
    d.run_once();
    // A new process, no new input: the model is not run again, yet its last build shows.
    let mut daemon = d.start();
    let base = daemon.http_addr();
    daemon.wait_until("ready", |_| http_get(&format!("{base}/readyz")).0 == 200);
    let status: serde_json::Value =
        serde_json::from_str(&http_get(&format!("{base}/status")).1).expect("JSON");
    let m = &status["models"]["m"];
    assert_eq!(m["state"], "ok", "{m}");
    assert_eq!(m["runs"], 0, "this process has not run it: {m}");
    assert!(m["watermark"].as_i64().is_some_and(|w| w > 0), "{m}");
    assert_eq!(m["rows"], 50, "{m}");
    assert!(
        !m["last_run"].is_null() && !m["newest_consumed"].is_null(),
        "{m}"
    );
    assert_eq!(m["tests"][0]["name"], "not_null_m_id", "{m}");
    assert_eq!(m["tests"][0]["failures"], 0, "{m}");
    let (exit, log) = daemon.terminate();
    assert!(exit.success(), "{log}");
}
