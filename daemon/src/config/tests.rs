//! Tests of configuration loading as a whole (parts are tested beside their code).

use std::path::Path;

use super::*;

const FULL: &str = r#"
data_dir = "./data"

[batch]
max_rows = 100000
max_bytes = "64MiB"
max_age = "1s"

[duckdb]
file = "warehouse.duckdb"
raw_schema = "raw"
memory_limit = "2GB"
threads = 2

[parquet]
enabled = true
dir = "parquet"
compression = "zstd"

[sources.transactions]
type = "csv"
path = "./inbox/transactions"
glob = "*.csv"
table = "transactions"
header = true
delimiter = ","
settle = "2s"
after_ingest = "archive"
[sources.transactions.schema]
id = "BIGINT"
amount = "DECIMAL(12,2)"
created_at = "TIMESTAMP"
"#;

fn parse(text: &str) -> Result<Config, Vec<Problem>> {
    Config::parse(text, Path::new("/etc/sluice/sluice.toml"))
}

#[test]
fn the_documented_example_loads_and_resolves_paths() {
    let c = parse(FULL).expect("valid");
    assert_eq!(c.data_dir, Path::new("/etc/sluice/./data"));
    assert_eq!(
        c.duckdb_path(),
        Path::new("/etc/sluice/./data/warehouse.duckdb")
    );
    assert_eq!(c.batch.max_bytes.as_u64(), 64 * 1024 * 1024);
    let (name, SourceConfig::Csv(csv)) = &c.sources[0] else {
        panic!("a csv source")
    };
    assert_eq!(name, "transactions");
    assert_eq!(csv.path, Path::new("/etc/sluice/./inbox/transactions"));
    assert_eq!(csv.declared_schema().expect("schema").len(), 3);
}

#[test]
fn unknown_key_is_reported_with_path_and_line() {
    let text = FULL.replace("settle = \"2s\"", "setle = \"2s\"");
    let problems = parse(&text).expect_err("typo");
    let p = &problems[0];
    assert!(p.message.contains("setle"), "{p}");
    assert!(p.key.starts_with("sources.transactions"), "{p}");
    assert!(p.line.is_some(), "{p}");
}

#[test]
fn wrong_type_names_the_key() {
    let text = FULL.replace("max_rows = 100000", "max_rows = \"lots\"");
    let problems = parse(&text).expect_err("type");
    assert_eq!(problems[0].key, "batch.max_rows", "{}", problems[0]);
    assert_eq!(problems[0].line, Some(5));
}

#[test]
fn every_semantic_problem_is_reported() {
    let text = FULL
        .replace("raw_schema = \"raw\"", "raw_schema = \"raw-data\"")
        .replace("delimiter = \",\"", "delimiter = \"ab\"")
        .replace("threads = 2", "threads = 0");
    let keys: Vec<String> = parse(&text)
        .expect_err("bad")
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(
        keys,
        [
            // Numbers out of range first, then each section's own checks.
            "duckdb.threads",
            "duckdb.raw_schema",
            "sources.transactions.delimiter"
        ]
    );
}

#[test]
fn unknown_source_type_is_an_error() {
    let text = FULL.replace("type = \"csv\"", "type = \"ftp\"");
    let problems = parse(&text).expect_err("type");
    assert!(problems[0].message.contains("ftp"), "{}", problems[0]);
}

#[test]
fn env_vars_expand_in_values() {
    std::env::set_var("SLUICE_TEST_INBOX", "/srv/inbox");
    let text = FULL.replace("./inbox/transactions", "${SLUICE_TEST_INBOX}");
    let c = parse(&text).expect("valid");
    let (_, SourceConfig::Csv(csv)) = &c.sources[0] else {
        panic!("a csv source")
    };
    assert_eq!(csv.path, Path::new("/srv/inbox"));
    let text = FULL.replace("./inbox/transactions", "${SLUICE_TEST_UNSET_VAR}");
    let problems = parse(&text).expect_err("unset");
    assert_eq!(problems[0].key, "sources.transactions.path");
}

#[test]
fn the_sql_endpoint_is_on_loopback_by_default_and_nowhere_else() {
    let c = parse(FULL).expect("valid");
    assert_eq!(c.sql.listen, Some("127.0.0.1:7712".parse().expect("addr")));
    assert_eq!(c.sql.max_connections, 16);
    assert_eq!(
        c.sql.statement_timeout,
        Some(std::time::Duration::from_secs(300))
    );
    let off = parse(&format!(
        "{FULL}\n[sql]\nlisten = \"\"\nstatement_timeout = \"0s\"\n"
    ))
    .expect("valid");
    assert_eq!(off.sql.listen, None);
    assert_eq!(off.sql.statement_timeout, None);
    for (listen, why) in [
        ("0.0.0.0:7712", "not a loopback address"),
        ("192.0.2.1:5433", "not a loopback address"),
        ("localhost:7712", "not address:port"),
        ("127.0.0.1:7711", "also http.listen"),
    ] {
        let text =
            format!("{FULL}\n[http]\nlisten = \"127.0.0.1:7711\"\n[sql]\nlisten = \"{listen}\"\n");
        let problems = parse(&text).expect_err("refused");
        assert!(
            problems
                .iter()
                .any(|p| p.key == "sql.listen" && p.message.contains(why)),
            "{listen}: {problems:?}"
        );
    }
    let problems = parse(&format!("{FULL}\n[sql]\nmax_connections = 0\n")).expect_err("refused");
    assert_eq!(problems[0].key, "sql.max_connections");
}

#[test]
fn a_non_loopback_sql_listen_takes_users_with_passwords_and_keeps_them_secret() {
    let text = format!(
        "{FULL}\n[sql]\nlisten = \"0.0.0.0:7712\"\ntls_cert = \"tls/cert.pem\"\n\
         tls_key = \"tls/key.pem\"\n[sql.users]\nmetabase = \"hunter2-secret\"\n"
    );
    let c = parse(&text).expect("valid with users");
    assert_eq!(c.sql.users.len(), 1);
    assert_eq!(c.sql.users[0].0, "metabase");
    assert_eq!(c.sql.users[0].1.expose(), "hunter2-secret");
    let (cert, key) = c.sql.tls.clone().expect("tls");
    assert!(
        cert.ends_with("tls/cert.pem") && cert.is_absolute(),
        "{cert:?}"
    );
    assert!(key.ends_with("tls/key.pem"), "{key:?}");
    // The configuration is logged and debugged through Debug: never the password.
    assert!(!format!("{c:?}").contains("hunter2"));

    for (extra, key, why) in [
        ("[sql.users]\nx = \"\"\n", "sql.users", "is empty"),
        (
            "[sql]\ntls_cert = \"c.pem\"\n",
            "sql.tls_cert",
            "go together",
        ),
    ] {
        let problems = parse(&format!("{FULL}\n{extra}")).expect_err("refused");
        assert!(
            problems
                .iter()
                .any(|p| p.key == key && p.message.contains(why)),
            "{extra}: {problems:?}"
        );
    }
}

#[test]
fn a_lake_with_a_wrong_format_uri_or_numbers_is_refused_with_its_key() {
    let lake = |body: &str| format!("{FULL}\n[lake]\n{body}\n");
    let problems = parse(&lake("format = \"iceberg\"\nuri = \"lake\"")).expect_err("format");
    assert!(
        problems.iter().any(|p| p.message.contains("iceberg")),
        "{problems:?}"
    );
    let problems = parse(&lake(
        "format = \"delta\"\nuri = \"gs://bucket/x\"\ncheckpoint_interval = 0",
    ))
    .expect_err("uri");
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["lake.uri", "lake.checkpoint_interval"],
        "{problems:?}"
    );
    let ok = parse(&lake("format = \"delta\"\nuri = \"lake\"")).expect("a local lake");
    let root = ok.lake.expect("lake").root_url(&ok.data_dir).expect("url");
    assert_eq!(root.as_str(), "file:///etc/sluice/data/lake/");
}
