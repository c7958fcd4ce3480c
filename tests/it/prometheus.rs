//! The files in dist/ against the real tools: promtool validates and unit-tests the alert
//! rules, a real Prometheus server scrapes a running sluice, the dashboard uses only
//! documented metrics, and systemd rates the unit's exposure. The tools come from Debian
//! packages that scripts/test.sh installs; without them these tests fail naming the package.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use crate::support::{
    csv_rows, documented_metrics, metric_names, run_tool, try_get, Deployment, SCHEMA,
};

fn repo() -> PathBuf {
    crate::support::repo_root()
}

/// The path of `bin`, or a failure naming the Debian package that provides it.
fn require(bin: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(bin))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("{bin} not found: install the Debian package `{package}` (scripts/test.sh does)")
    })
}

#[test]
fn alert_rules_are_valid_and_fire_when_they_should() {
    let promtool = require("promtool", "prometheus");
    let rules = repo().join("dist/prometheus/alerts.yml");
    let out = run_tool(Command::new(&promtool).args(["check", "rules"]).arg(&rules));
    let text = std::fs::read_to_string(&rules).expect("alerts.yml");
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", names.len())),
        "{out}"
    );
    let tests = repo().join("tests/prometheus/alerts_test.yml");
    let test_text = std::fs::read_to_string(&tests).expect("alerts_test.yml");
    for name in &names {
        assert!(
            test_text.contains(&format!("alertname: {name}")),
            "alert {name} has no promtool test"
        );
    }
    run_tool(Command::new(&promtool).args(["test", "rules"]).arg(&tests));
}

#[test]
fn dashboard_and_alerts_use_only_documented_metrics() {
    let documented = documented_metrics();
    let dashboard =
        std::fs::read_to_string(repo().join("dist/grafana/sluice.json")).expect("dashboard");
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    let exprs: Vec<String> = json["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    assert!(exprs.len() >= 10, "dashboard has {} queries", exprs.len());
    let used = metric_names(&exprs.join("\n"));
    let unknown: Vec<_> = used.difference(&documented).collect();
    assert!(
        unknown.is_empty(),
        "dashboard uses undocumented metrics: {unknown:?}"
    );
    let alerts =
        std::fs::read_to_string(repo().join("dist/prometheus/alerts.yml")).expect("alerts");
    let unknown: Vec<String> = metric_names(&alerts)
        .difference(&documented)
        .cloned()
        .collect();
    assert!(
        unknown.is_empty(),
        "alerts use undocumented metrics: {unknown:?}"
    );
}

#[test]
fn systemd_unit_exposure_is_at_most_three() {
    let analyze = require("systemd-analyze", "systemd");
    let unit = repo().join("dist/sluice.service");
    let out = run_tool(
        Command::new(analyze)
            .args(["security", "--offline=yes"])
            .arg(&unit),
    );
    let line = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no score in:\n{out}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    assert!(score <= 3.0, "{line}");
}

/// Kills the child when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_sluice() {
    let prometheus = require("prometheus", "prometheus");
    let d = Deployment::new(SCHEMA, "");
    let mut daemon = d.start();
    let base = daemon.http_addr();
    d.write("a.csv", &csv_rows(1, 77));
    daemon.wait_until("archived", |_| d.moved("archive").len() == 1);
    let target = base.trim_start_matches("http://");
    let config = d.dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("prometheus config");
    let log_path = d.dir.path().join("prometheus.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let _server = Guard(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                d.dir.path().join("tsdb").display()
            ))
            // Port 0: the kernel picks a free one and Prometheus logs it (no port chosen
            // by binding and dropping, which another test could take in between).
            .arg("--web.listen-address=127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let mut listen = String::new();
    daemon.wait_until("Prometheus to listen", |_| {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let found = text
            .lines()
            .filter(|l| l.contains("msg=\"Listening on\""))
            .find_map(|l| l.split("address=").nth(1))
            .map(|a| a.trim().to_string());
        found.map(|a| listen = a).is_some()
    });
    let query = format!("http://{listen}/api/v1/query?query=sluice_rows_ingested_total");
    daemon.wait_until("Prometheus to have scraped sluice's rows", |_| {
        // Prometheus may not listen yet, and scrapes every second.
        let Ok((200, body)) = try_get(&query) else {
            return false;
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["result"][0]["value"][1] == "77"
            && v["data"]["result"][0]["metric"]["source"] == "src"
    });
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
}
