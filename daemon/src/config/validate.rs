//! Checks that need no I/O. Every problem is reported, with its key path.

use std::collections::BTreeMap;
use std::time::Duration;

use bytesize::ByteSize;
use sluice_core::Ident;

use super::{FileConfig, Problem};

/// All problems of a deserialized file.
pub fn validate(file: &FileConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut bad = |key: &str, message: String| {
        problems.push(Problem {
            key: key.to_string(),
            message,
            line: None,
        })
    };
    if file.data_dir.as_os_str().is_empty() {
        bad("data_dir", "must not be empty".into());
    }
    for (key, message) in ranges(file) {
        bad(key, message);
    }
    match Ident::new(&file.duckdb.raw_schema) {
        Err(e) => bad("duckdb.raw_schema", e.to_string()),
        Ok(s) if s.as_str().eq_ignore_ascii_case("_sluice") => bad(
            "duckdb.raw_schema",
            "_sluice is reserved for sluice's state".into(),
        ),
        Ok(_) => {}
    }
    if let Some(limit) = &file.duckdb.memory_limit {
        if !is_memory_limit(limit) {
            bad(
                "duckdb.memory_limit",
                format!("{limit:?} is not a size such as \"2GB\" or \"512MiB\""),
            );
        }
    }
    if let Some(lake) = &file.lake {
        // The form only: a relative directory is checked as if under an absolute data_dir.
        for (key, message) in lake.problems(&std::path::Path::new("/").join(&file.data_dir)) {
            bad(&format!("lake.{key}"), message);
        }
    }
    if file.duckdb.file.as_os_str().is_empty() {
        bad("duckdb.file", "must not be empty".into());
    }
    let listen = &file.http.listen;
    if !listen.is_empty() && listen.parse::<std::net::SocketAddr>().is_err() {
        bad(
            "http.listen",
            format!("{listen:?} is not address:port (e.g. \"127.0.0.1:7711\"), or \"\" to disable"),
        );
    }
    let sql = &file.sql.listen;
    match sql.parse::<std::net::SocketAddr>() {
        _ if sql.is_empty() => {}
        Err(_) => bad(
            "sql.listen",
            format!("{sql:?} is not address:port (e.g. \"127.0.0.1:7712\"), or \"\" to disable"),
        ),
        Ok(addr) if !addr.ip().is_loopback() && file.sql.users.is_empty() => bad(
            "sql.listen",
            format!(
                "{sql:?} is not a loopback address: clients elsewhere would read the warehouse \
                 without a password; name users with passwords in [sql.users] (and give \
                 sql.tls_cert/sql.tls_key for TLS), or listen on 127.0.0.1"
            ),
        ),
        // Port 0: the OS picks a free port for each.
        Ok(addr)
            if addr.port() != 0
                && file
                    .http
                    .listen
                    .parse::<std::net::SocketAddr>()
                    .is_ok_and(|h| h == addr) =>
        {
            bad(
                "sql.listen",
                format!("{sql:?} is also http.listen; they need different ports"),
            )
        }
        Ok(_) => {}
    }
    for (user, password) in &file.sql.users {
        if user.is_empty() || user.chars().any(char::is_control) {
            bad("sql.users", format!("{user:?} is not a user name"));
        }
        if password.expose().is_empty() {
            bad(
                "sql.users",
                format!("the password of {user:?} is empty (an unset ${{VAR}} is an error; an empty one is this)"),
            );
        }
    }
    if file.sql.tls_cert.is_some() != file.sql.tls_key.is_some() {
        bad(
            "sql.tls_cert",
            "sql.tls_cert and sql.tls_key go together: give both (PEM files) or neither".into(),
        );
    }
    if let Some(models) = &file.models {
        match Ident::new(&models.schema) {
            Err(e) => bad("models.schema", e.to_string()),
            Ok(s) if s.as_str().eq_ignore_ascii_case("_sluice") => bad(
                "models.schema",
                "_sluice is reserved for sluice's state".into(),
            ),
            Ok(s) if s.as_str().eq_ignore_ascii_case(&file.duckdb.raw_schema) => bad(
                "models.schema",
                "must differ from duckdb.raw_schema: raw tables and models must not collide".into(),
            ),
            Ok(_) => {}
        }
        if models.dir.as_os_str().is_empty() {
            bad("models.dir", "must not be empty".into());
        }
    }
    if file.sources.is_empty() {
        bad(
            "sources",
            "no source is configured; add a [sources.<name>] table".into(),
        );
    }
    let mut tables: BTreeMap<String, &str> = BTreeMap::new();
    for (name, source) in &file.sources {
        let source = source.component();
        for (key, message) in source.validate(name) {
            bad(&format!("sources.{name}.{key}"), message);
        }
        if let Ok(table) = source.table_ident(name) {
            let table = table.as_str().to_ascii_lowercase();
            if let Some(other) = tables.get(&table) {
                if source.declares_schema() {
                    bad(
                        &format!("sources.{name}.table"),
                        format!(
                            "table {table} is also fed by source {other}; sources sharing a \
                             table must not declare schemas (the table's schema is set once)"
                        ),
                    );
                }
            } else {
                tables.insert(table, name);
            }
        }
    }
    problems
}

/// Every number, size and duration of the file within the range where it makes sense:
/// the key and why not, for each that is not. A value beyond a range is refused, never
/// wrapped or clamped.
fn ranges(file: &FileConfig) -> Vec<(&'static str, String)> {
    let sql = &file.sql;
    let mut out = Vec::new();
    let mut count = |key, v: u64, (lo, hi): (u64, u64)| {
        if !(lo..=hi).contains(&v) {
            out.push((key, format!("{v} is outside {lo}..={hi}")));
        }
    };
    count(
        "batch.max_rows",
        file.batch.max_rows as u64,
        (1, 100_000_000),
    );
    count(
        "duckdb.threads",
        file.duckdb.threads.map_or(1, u64::from),
        (1, 1024),
    );
    count(
        "sql.max_connections",
        sql.max_connections as u64,
        (1, 10_000),
    );
    count(
        "http.max_connections",
        file.http.max_connections as u64,
        (1, 100_000),
    );
    count(
        "sql.max_unauthenticated",
        sql.max_unauthenticated as u64,
        (1, 10_000),
    );
    let mut size = |key, v: ByteSize, lo: ByteSize, hi: ByteSize| {
        if v < lo || v > hi {
            out.push((key, format!("{v} is outside {lo}..={hi}")));
        }
    };
    size(
        "batch.max_bytes",
        file.batch.max_bytes,
        ByteSize::kib(1),
        ByteSize::gib(16),
    );
    size(
        "sql.max_query_size",
        sql.max_query_size,
        ByteSize::kib(1),
        ByteSize::gib(1),
    );
    if let Some(t) = file.duckdb.checkpoint_threshold {
        size(
            "duckdb.checkpoint_threshold",
            t,
            ByteSize::kib(1),
            ByteSize::tib(1),
        );
    }
    // Statement and idle timeouts go as far as Postgres lets a session SET them.
    let session_max = Duration::from_millis(i32::MAX as u64);
    let mut duration = |key, v: Duration, lo: Duration, hi: Duration| {
        if v < lo || v > hi {
            out.push((
                key,
                format!(
                    "{} is outside {}..={}",
                    humantime::format_duration(v),
                    humantime::format_duration(lo),
                    humantime::format_duration(hi)
                ),
            ));
        }
    };
    let ms = Duration::from_millis;
    duration(
        "batch.max_age",
        file.batch.max_age,
        ms(1),
        Duration::from_secs(3600),
    );
    duration(
        "sql.statement_timeout",
        sql.statement_timeout,
        Duration::ZERO,
        session_max,
    );
    duration(
        "sql.idle_in_transaction_timeout",
        sql.idle_in_transaction_timeout,
        Duration::ZERO,
        session_max,
    );
    duration(
        "sql.auth_timeout",
        sql.auth_timeout,
        ms(100),
        Duration::from_secs(3600),
    );
    out
}

/// DuckDB accepts a number and a unit (`2GB`, `512 MiB`, `1.5GB`).
fn is_memory_limit(s: &str) -> bool {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let units = [
        "B", "KB", "MB", "GB", "TB", "KIB", "MIB", "GIB", "TIB", "K", "M", "G", "T",
    ];
    number.parse::<f64>().is_ok_and(|n| n > 0.0)
        && units.contains(&unit.trim().to_ascii_uppercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(toml: &str) -> Vec<String> {
        let file: FileConfig = toml::from_str(&format!(
            "data_dir = \"d\"\n[sources.s]\ntype = \"csv\"\npath = \"in\"\n{toml}"
        ))
        .expect("parses");
        validate(&file).into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn numbers_sizes_and_durations_out_of_range_are_refused_by_key() {
        assert!(problems("").is_empty(), "{:?}", problems(""));
        for (toml, key) in [
            ("[batch]\nmax_rows = 0", "batch.max_rows"),
            ("[batch]\nmax_bytes = \"512B\"", "batch.max_bytes"),
            ("[batch]\nmax_bytes = \"1PiB\"", "batch.max_bytes"),
            ("[batch]\nmax_age = \"0s\"", "batch.max_age"),
            ("[batch]\nmax_age = \"30days\"", "batch.max_age"),
            ("[duckdb]\nthreads = 0", "duckdb.threads"),
            ("[sql]\nmax_connections = 0", "sql.max_connections"),
            (
                "[sql]\nstatement_timeout = \"25days\"",
                "sql.statement_timeout",
            ),
            (
                "[sql]\nidle_in_transaction_timeout = \"100years\"",
                "sql.idle_in_transaction_timeout",
            ),
            ("[sql]\nmax_query_size = \"2GiB\"", "sql.max_query_size"),
            ("[sql]\nmax_query_size = \"10B\"", "sql.max_query_size"),
            ("[sql]\nmax_unauthenticated = 0", "sql.max_unauthenticated"),
            ("[sql]\nauth_timeout = \"0s\"", "sql.auth_timeout"),
        ] {
            assert_eq!(problems(toml), [key], "{toml}");
        }
        assert!(problems("[sql]\nstatement_timeout = \"24days\"").is_empty());
    }

    #[test]
    fn memory_limits() {
        for ok in ["2GB", "512MiB", "1.5 GB", "100MB"] {
            assert!(is_memory_limit(ok), "{ok}");
        }
        for bad in ["", "GB", "2 parsecs", "-1GB", "2GB; DROP"] {
            assert!(!is_memory_limit(bad), "{bad}");
        }
    }
}
