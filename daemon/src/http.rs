//! The one HTTP listener: `/metrics` (Prometheus text format), `/healthz` (liveness of the
//! batch loop), `/readyz` (ready to ingest, or 503 with the reasons), `/status` (JSON for
//! people and agents), and SQL on the live warehouse: `POST /query` and `GET /catalog`
//! ([`query`]). Nothing here can change the daemon, and no secret is ever shown:
//! `/status` reports names, counts and paths relative to the data directory only.

mod query;
mod server;

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, sync::Arc};

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use metrics::gauge;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use sluice_sources::Backlog;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::health::{Health, STUCK_AFTER};

/// What the handlers read.
#[derive(Debug)]
pub struct HttpState {
    pub health: Arc<Health>,
    pub metrics: PrometheusHandle,
    /// The DuckDB file, for its size.
    pub db_path: PathBuf,
    /// The live SQL service, once the warehouse is open (`/query`, `/catalog`).
    pub sql: std::sync::OnceLock<Arc<sluice_sql::Service>>,
    /// The listener is on a loopback address (SQL without users is allowed only then).
    pub loopback: bool,
    /// Connections open at once (`http.max_connections`).
    pub max_connections: usize,
    /// Bytes a `POST /query` body may have (`sql.max_query_size` and room for JSON).
    pub max_body: usize,
}

/// Installs the Prometheus recorder (once per process) with sluice's histogram buckets.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let seconds = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let rows = [10.0, 100.0, 1e3, 1e4, 5e4, 1e5, 2.5e5, 5e5, 1e6];
    // Finer around `batch.max_age` (1 s by default): freshness is judged there.
    let ages = [
        0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("sluice_commit_duration_seconds".into()),
            &seconds,
        )?
        .set_buckets_for_metric(Matcher::Full("sluice_batch_age_seconds".into()), &ages)?
        .set_buckets_for_metric(Matcher::Full("sluice_batch_rows".into()), &rows)?
        .install_recorder()?;
    Ok(handle)
}

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/query", axum::routing::post(query::query))
        .route("/catalog", get(query::catalog))
        .with_state(state)
}

/// Binds `listen` now (so a taken port fails start-up with a clear error) and serves
/// until `stop`.
pub async fn bind(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("http.listen {listen}: {e}"))
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<HttpState>,
    stop: CancellationToken,
) {
    let addr = listener.local_addr().ok();
    info!(listen = ?addr, "HTTP endpoints: /metrics /healthz /readyz /status /query /catalog");
    let max = state.max_connections;
    server::serve(listener, router(state), max, stop).await;
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    refresh_gauges(&state);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Gauges computed at scrape time.
fn refresh_gauges(state: &HttpState) {
    let health = &state.health;
    let now = chrono::Utc::now();
    for (name, source, stats) in health.sources_stats() {
        let since = match stats.last_commit {
            Some(t) => (now - t).num_milliseconds() as f64 / 1000.0,
            None => health.uptime().as_secs_f64(),
        };
        let label = name.to_string();
        gauge!("sluice_seconds_since_last_commit", "source" => label.clone()).set(since);
        if source.kind.backlog() == Backlog::Files {
            gauge!("sluice_files_pending", "source" => label.clone())
                .set(source.status.pending() as f64);
        }
        let up = if source.status.problem().is_none() {
            1.0
        } else {
            0.0
        };
        gauge!("sluice_source_up", "source" => label).set(up);
    }
    for (name, model) in health.models.snapshot() {
        if let Some(newest) = model.newest_consumed {
            let freshness = (now - newest).num_milliseconds() as f64 / 1000.0;
            gauge!("sluice_model_freshness_seconds", "model" => name.clone()).set(freshness);
        }
        let failing = if model.state == crate::health::ModelHealth::Failing {
            1.0
        } else {
            0.0
        };
        gauge!("sluice_model_failing", "model" => name).set(failing);
    }
    let ready = if health.unready_reasons().is_empty() {
        1.0
    } else {
        0.0
    };
    gauge!("sluice_ready").set(ready);
    let size = std::fs::metadata(&state.db_path)
        .map(|m| m.len())
        .unwrap_or(0);
    let wal = std::fs::metadata(state.db_path.with_extension("duckdb.wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    gauge!("sluice_duckdb_file_bytes").set((size + wal) as f64);
}

async fn healthz(State(state): State<Arc<HttpState>>) -> Response {
    let since = state.health.since_beat();
    if since < STUCK_AFTER {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        let msg = format!("the batch loop has not turned for {}s\n", since.as_secs());
        (StatusCode::SERVICE_UNAVAILABLE, msg).into_response()
    }
}

async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    let reasons = state.health.unready_reasons();
    let code = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({ "ready": reasons.is_empty(), "reasons": reasons })),
    )
        .into_response()
}

async fn status(State(state): State<Arc<HttpState>>) -> Response {
    let health = &state.health;
    let sources: Vec<serde_json::Value> = health
        .sources_stats()
        .into_iter()
        .map(|(name, s, stats)| {
            let backlog = s.kind.backlog();
            json!({
                "name": name,
                "type": s.kind.as_str(),
                "table": s.table,
                "state": s.status.problem().map_or("running".to_string(), |p| format!("failing: {p}")),
                "rows": stats.rows,
                "dead_letters": stats.dead_letters,
                "batches": stats.batches,
                "last_commit": stats.last_commit,
                "files_pending": (backlog == Backlog::Files).then(|| s.status.pending()),
                "lag_messages": (backlog == Backlog::Messages).then(|| s.status.pending()),
                "positions": (backlog != Backlog::Files).then(|| s.status.positions()),
                "schema_refused": s.status.refused().into_iter()
                    .map(|(reason, r)| (reason, json!({"values": r.values, "last_column": r.last_column})))
                    .collect::<BTreeMap<_, _>>(),
            })
        })
        .collect();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": health.started_at(),
        "uptime_seconds": health.uptime().as_secs(),
        "ready": health.unready_reasons().is_empty(),
        "unready_reasons": health.unready_reasons(),
        "sources": sources,
        "recent_batches": health.recent_batches(),
        "schema_changes": health.schema_changes(),
        "models": health.models.snapshot(),
        "lake": health.lake.snapshot(),
    }))
    .into_response()
}
