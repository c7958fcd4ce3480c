//! The live SQL service on the open warehouse: its scope (the model schema, the raw
//! schema, `_sluice`), limits and users from `[sql]`, and the Postgres listener when
//! `sql.listen` is set. The HTTP listener's `/query` and `/catalog` use the same service.

use std::sync::Arc;

use anyhow::Context;
use sluice_sinks::Warehouse;
use sluice_sql::pg::auth::Users;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{Config, SqlSettings};

/// The service: clients read the warehouse through clones of its connection, each on a
/// thread of its own.
pub fn service(config: &Config, warehouse: &Warehouse) -> anyhow::Result<Arc<sluice_sql::Service>> {
    let users = users(&config.sql)?;
    let base = warehouse
        .connection()
        .try_clone()
        .context("opening the connection SQL clients read through")?;
    let limits = sluice_sql::Limits {
        max_connections: config.sql.max_connections,
        statement_timeout: config.sql.statement_timeout,
        idle_in_transaction_timeout: config.sql.idle_in_transaction_timeout,
        max_result_rows: config.sql.max_result_rows,
        max_query_size: config.sql.max_query_size,
        max_unauthenticated: config.sql.max_unauthenticated,
        auth_timeout: config.sql.auth_timeout,
    };
    Ok(Arc::new(sluice_sql::Service::new(
        base,
        scope(config),
        limits,
        server_version(),
        users,
    )))
}

/// Starts the Postgres endpoint if `sql.listen` is set.
pub fn listen(
    config: &Config,
    service: Arc<sluice_sql::Service>,
    runtime: &tokio::runtime::Runtime,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let Some(listen) = config.sql.listen else {
        return Ok(());
    };
    let users = service.users.clone();
    let security = security(&config.sql, users.as_ref())?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(listen))
        .with_context(|| format!("listening for SQL clients on {listen} (sql.listen)"))?;
    let bound = listener.local_addr().unwrap_or(listen);
    info!(
        listen = %bound,
        passwords = users.is_some(),
        tls = config.sql.tls.is_some(),
        "SQL endpoint listening (Postgres protocol, read-only)"
    );
    runtime.spawn(sluice_sql::pg::serve(
        listener,
        service,
        security,
        stop.clone(),
    ));
    Ok(())
}

/// What clients see as Postgres's `server_version`: the Postgres sluice answers like,
/// and sluice's own version.
pub fn server_version() -> String {
    format!("16.6 (sluice {})", env!("CARGO_PKG_VERSION"))
}

/// What clients may read, and where unqualified names resolve: the models, then the raw
/// tables, then sluice's state.
pub fn scope(config: &Config) -> sluice_sql::Scope {
    let mut schemas = Vec::new();
    if let Some(models) = &config.models {
        schemas.push(models.schema.to_lowercase());
    }
    schemas.push(config.duckdb.raw_schema.to_lowercase());
    schemas.push("_sluice".to_string());
    schemas.dedup();
    sluice_sql::Scope {
        search_path: schemas.clone(),
        schemas,
    }
}

/// The users of `[sql.users]`, if any.
fn users(sql: &SqlSettings) -> anyhow::Result<Option<Arc<Users>>> {
    if sql.users.is_empty() {
        return Ok(None);
    }
    let users = Users::new(sql.users.iter().map(|(u, p)| (u.as_str(), p.expose())))
        .map_err(|e| anyhow::anyhow!("{e} (sql.users)"))?;
    Ok(Some(Arc::new(users)))
}

/// TLS for the Postgres endpoint: a certificate or key that cannot be read stops
/// start-up, naming the file.
fn security(
    sql: &SqlSettings,
    users: Option<&Arc<Users>>,
) -> anyhow::Result<sluice_sql::pg::Security> {
    let tls = sql.tls.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
    sluice_sql::pg::Security::new(users, tls)
        .map_err(|e| anyhow::anyhow!("{e} (sql.tls_cert, sql.tls_key)"))
}
