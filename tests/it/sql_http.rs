//! SQL over HTTP and the command line: `POST /query` answering JSON, CSV and Arrow IPC by
//! `Accept`, `GET /catalog`, Basic credentials when `[sql.users]` is set, the result-size
//! limit, and `sluice sql` through a running daemon and on the database itself.

use std::process::Command;

use arrow::array::{Array, Int64Array};
use arrow::ipc::reader::StreamReader;
use serde_json::{json, Value};

use crate::support::{
    csv_rows, http_get, metric, output, query_i64, sluice_bin, Deployment, SCHEMA,
};

/// A model over the raw table, so `/catalog` has a watermark to report.
const MODEL: (&str, &str) = (
    "m.sql",
    "{{ config(materialized='incremental') }}\nselect id, amount, _sluice_batch from {{ ref('src') }} where {{ new_rows() }}",
);

/// POST `sql` (a JSON request when `params` is given): status, content type, body.
fn post(
    base: &str,
    accept: &str,
    sql: &str,
    params: Option<Value>,
    auth: Option<&str>,
) -> (u16, String, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.post(format!("{base}/query")).header("Accept", accept);
    if let Some(auth) = auth {
        request = request.header("Authorization", auth);
    }
    let sent = match params {
        Some(params) => request
            .header("Content-Type", "application/json")
            .send(json!({"sql": sql, "params": params}).to_string()),
        None => request.send(sql),
    };
    let mut response = sent.expect("POST /query");
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response.body_mut().read_to_vec().expect("body");
    (status, kind, body)
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

#[test]
fn post_query_answers_json_csv_and_arrow_and_refuses_what_psql_is_refused() {
    let d = Deployment::new(SCHEMA, "").with_models(&[MODEL]);
    let mut daemon = d.start();
    d.write("a.csv", &csv_rows(1, 150));
    daemon.wait_until("the file archived", |_| d.moved("archive").len() == 1);
    let base = daemon.http_addr();

    // JSON, with a parameter: DuckDB's types, numbers as numbers, NULL as null.
    let (status, kind, body) = post(
        &base,
        "application/json",
        "SELECT id, name, amount, NULL::INTEGER AS n FROM raw.src WHERE id <= $1 ORDER BY id",
        Some(json!([2])),
        None,
    );
    assert_eq!((status, kind.as_str()), (200, "application/json"));
    let answer = json_of(&body);
    assert_eq!(
        answer["columns"],
        json!([
            {"name": "id", "type": "BIGINT"},
            {"name": "name", "type": "VARCHAR"},
            {"name": "amount", "type": "DECIMAL(12,2)"},
            {"name": "n", "type": "INTEGER"},
        ])
    );
    assert_eq!(
        answer["rows"],
        json!([[1, "name 1", 1.01, null], [2, "name 2", 2.02, null]])
    );
    assert_eq!(answer["row_count"], 2);

    // CSV: a header, then the rows.
    let (status, kind, body) = post(
        &base,
        "text/csv",
        "SELECT id, name FROM raw.src WHERE id <= 2 ORDER BY id",
        None,
        None,
    );
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/csv"), "{kind}");
    assert_eq!(
        String::from_utf8_lossy(&body),
        "id,name\n1,name 1\n2,name 2\n"
    );

    // Arrow IPC: DuckDB's batches, every row.
    let (status, kind, body) = post(
        &base,
        "application/vnd.apache.arrow.stream",
        "SELECT id FROM raw.src ORDER BY id",
        None,
        None,
    );
    assert_eq!(
        (status, kind.as_str()),
        (200, "application/vnd.apache.arrow.stream")
    );
    let batches: Vec<_> = StreamReader::try_new(std::io::Cursor::new(body), None)
        .expect("an Arrow stream")
        .collect::<Result<_, _>>()
        .expect("batches");
    let ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("BIGINT");
            (0..a.len()).map(|i| a.value(i)).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(ids, (1..=150).collect::<Vec<_>>());

    // What the Postgres endpoint refuses, HTTP refuses, and nothing changes.
    for (sql, code, sqlstate) in [
        ("DELETE FROM raw.src", 400, "25006"),
        ("SELECT * FROM read_csv('/etc/passwd')", 400, "42501"),
        ("SELECT 1; SELECT 2", 400, "0A000"),
        ("SELECT nope FROM raw.src", 400, "42703"),
    ] {
        let (status, _, body) = post(&base, "application/json", sql, None, None);
        let error = json_of(&body);
        assert_eq!(
            (status, error["error"]["sqlstate"].as_str()),
            (code, Some(sqlstate)),
            "{sql}: {error}"
        );
    }
    let (status, _, _) = post(&base, "image/png", "SELECT 1", None, None);
    assert_eq!(status, 406);

    // The catalog: tables with columns, types and rows; the model's watermark.
    let (status, body) = http_get(&format!("{base}/catalog"));
    assert_eq!(status, 200, "{body}");
    let catalog: Value = serde_json::from_str(&body).expect("JSON");
    let raw = catalog["schemas"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "raw"))
        .expect("raw schema");
    let src = &raw["tables"][0];
    assert_eq!(
        (src["name"].as_str(), src["rows"].as_i64()),
        (Some("src"), Some(150))
    );
    assert_eq!(
        src["columns"][2],
        json!({"name": "amount", "type": "DECIMAL(12,2)", "nullable": true})
    );
    daemon.wait_until("the model ran", |_| {
        let (_, body) = http_get(&format!("{base}/catalog"));
        let c: Value = serde_json::from_str(&body).unwrap_or_default();
        c["models"][0]["watermark"].as_i64().is_some_and(|w| w > 0)
    });

    let scrape = http_get(&format!("{base}/metrics")).1;
    assert!(metric(&scrape, "sluice_sql_queries_total{result=\"ok\"}").unwrap_or(0.0) >= 3.0);
    assert!(metric(&scrape, "sluice_sql_queries_total{result=\"refused\"}").unwrap_or(0.0) >= 2.0);
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    assert_eq!(query_i64(&d.db(), "SELECT count(*) FROM raw.src"), 150);
}

#[test]
fn a_result_longer_than_max_result_rows_ends_with_an_error() {
    let d = Deployment::new(
        SCHEMA,
        "[sql]\nlisten = \"127.0.0.1:0\"\nmax_result_rows = 5000\n",
    );
    let mut daemon = d.start();
    let base = daemon.http_addr();
    daemon.sql_port(); // logged once the service is up
    let (status, _, body) = post(
        &base,
        "application/json",
        "SELECT * FROM range(4000)",
        None,
        None,
    );
    assert_eq!(
        (status, json_of(&body)["row_count"].as_i64()),
        (200, Some(4000))
    );
    // Rows went out before the limit was passed: the document ends with the error.
    let (status, _, body) = post(
        &base,
        "application/json",
        "SELECT * FROM range(9000)",
        None,
        None,
    );
    let answer = json_of(&body);
    assert_eq!(status, 200);
    assert_eq!(answer["error"]["sqlstate"], "54000", "{answer}");
    assert!(
        answer["row_count"].as_i64().is_some_and(|n| n <= 5000),
        "{answer}"
    );
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn with_users_http_queries_need_basic_credentials_and_without_them_loopback() {
    let d = Deployment::new(
        SCHEMA,
        "[sql]\nlisten = \"127.0.0.1:0\"\n[sql.users]\nagent = \"s3cret-pw\"\n",
    );
    let mut daemon = d.start();
    let base = daemon.http_addr();
    daemon.sql_port(); // logged once the service is up
    let (status, _, _) = post(&base, "application/json", "SELECT 1", None, None);
    assert_eq!(status, 401);
    // agent:wrong, then agent:s3cret-pw.
    let (status, _, _) = post(
        &base,
        "application/json",
        "SELECT 1",
        None,
        Some("Basic YWdlbnQ6d3Jvbmc="),
    );
    assert_eq!(status, 401);
    let (status, _, body) = post(
        &base,
        "application/json",
        "SELECT 1 AS one",
        None,
        Some("Basic YWdlbnQ6czNjcmV0LXB3"),
    );
    assert_eq!(
        (status, json_of(&body)["rows"].clone()),
        (200, json!([[1]]))
    );
    let (code, _) = http_get(&format!("{base}/catalog"));
    assert_eq!(code, 401);
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");

    // No users, and the HTTP listener reachable from other hosts: no SQL over it.
    let open = Deployment::new(SCHEMA, "");
    let text = std::fs::read_to_string(&open.config).expect("config");
    let text = text.replacen(
        "[http]\nlisten = \"127.0.0.1:0\"",
        "[http]\nlisten = \"0.0.0.0:0\"",
        1,
    );
    assert!(text.contains("0.0.0.0:0"), "{text}");
    std::fs::write(&open.config, text).expect("config");
    let mut daemon = open.start();
    let base = daemon.http_addr();
    assert!(base.contains("0.0.0.0"), "{base}");
    daemon.sql_port();
    let (status, _, body) = post(&base, "application/json", "SELECT 1", None, None);
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let (code, _) = http_get(&format!("{base}/metrics"));
    assert_eq!(code, 200);
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn sluice_sql_asks_the_running_daemon_or_opens_the_database_itself() {
    let d = Deployment::new(SCHEMA, "");
    let mut daemon = d.start();
    d.write("a.csv", &csv_rows(1, 30));
    daemon.wait_until("the file archived", |_| d.moved("archive").len() == 1);
    daemon.http_addr();
    let sql = |args: &[&str]| {
        let out = output(
            Command::new(sluice_bin())
                .arg("sql")
                .arg("--config")
                .arg(&d.config)
                .args(args),
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, table, err) = sql(&["SELECT count(*) AS n, sum(id) AS s FROM raw.src"]);
    assert!(ok, "{err}");
    assert!(
        table.contains("| 30 | 465 |") && table.contains("(1 row)"),
        "{table}"
    );
    let (ok, _, err) = sql(&["DELETE FROM raw.src"]);
    assert!(!ok && err.contains("25006"), "{err}");
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");

    // No daemon: the database itself, read-only, through the same rules.
    let (ok, csv, err) = sql(&["--format", "csv", "SELECT count(*) AS n FROM src"]);
    assert!(ok, "{err}");
    assert_eq!(csv, "n\n30\n");
    let (ok, _, err) = sql(&["SELECT * FROM read_csv('/etc/passwd')"]);
    assert!(!ok && err.contains("42501"), "{err}");
    // Statements from standard input, each ended by `;`.
    let script = d.dir.path().join("q.sql");
    std::fs::write(&script, "SELECT 1 AS a;\nSELECT\n 2 AS b;\n").expect("script");
    let out = output(
        Command::new(sluice_bin())
            .args(["sql", "--format", "csv", "--config"])
            .arg(&d.config)
            .stdin(std::fs::File::open(&script).expect("script")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\n1\nb\n2\n");
    assert_eq!(query_i64(&d.db(), "SELECT count(*) FROM raw.src"), 30);
}
