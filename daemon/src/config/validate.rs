//! Checks that need no I/O. Every problem is reported, with its key path.

use std::collections::BTreeMap;

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
    if file.batch.max_rows == 0 {
        bad("batch.max_rows", "must be at least 1".into());
    }
    if file.batch.max_bytes.as_u64() < 1024 {
        bad("batch.max_bytes", "must be at least 1KiB".into());
    }
    if file.batch.max_age.is_zero() {
        bad("batch.max_age", "must be greater than zero".into());
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
    if file.duckdb.threads == Some(0) {
        bad("duckdb.threads", "must be at least 1".into());
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
    if file.sql.max_connections == 0 {
        bad("sql.max_connections", "must be at least 1".into());
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
