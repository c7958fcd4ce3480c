//! `sluice run`: lock the data directory, open and reconcile the warehouse, start one
//! thread per source and the committer, and stop cleanly when [`crate::signals`] says so
//! (or, with `--once`, when everything present at start is committed). [`sources`] builds
//! the configured sources.

mod sources;
mod sql;
pub use sql::{scope as sql_scope, server_version};

use std::{
    collections::HashMap,
    sync::{
        mpsc::{channel, sync_channel},
        Arc, Mutex,
    },
    thread,
    time::Duration,
};

use anyhow::{bail, Context};
use sluice_sinks::Warehouse;
use sluice_sources::SourceContext;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::{
    config::Config,
    health::Health,
    http::{self, HttpState},
    lock::lock_data_dir,
    models::{self, ModelReload, ModelScheduler},
    notify::Notifier,
    pipeline::{Committer, Limits},
    signals, telemetry, warehouse,
};

/// Chunks waiting for the committer; with batches this bounds memory when sinks are slow.
const CHANNEL_CHUNKS: usize = 8;
/// Most records per chunk a source reads at once.
const MAX_CHUNK_ROWS: usize = 32_768;
/// Most input bytes per chunk.
const MAX_CHUNK_BYTES: usize = 16 << 20;
/// Longest a stop waits for the lake to publish the last batches (the rest is published
/// at the next start).
const LAKE_FINISH: Duration = Duration::from_secs(20);

/// Runs the daemon until stopped (or, with `once`, until the inbox is committed).
pub fn run(config: Config, once: bool, signals: signals::Blocked) -> anyhow::Result<()> {
    let mut lock = lock_data_dir(&config.data_dir)?;
    info!(config = %config.path.display(), data_dir = %config.data_dir.display(),
        version = env!("CARGO_PKG_VERSION"), "starting");
    let stop = CancellationToken::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let serve_http = config.http_listen.filter(|_| !once);
    // Installed before any metric is touched, so that the zero-valued series below count.
    let metrics = serve_http.map(|_| http::install_metrics()).transpose()?;
    let mut health = Health::new(Notifier::from_env());
    let mut statuses = HashMap::new();
    for (name, source) in &config.sources {
        let source = source.component();
        let table = source.table_ident(name)?;
        telemetry::register(name, source.kind(), table.as_str());
        statuses.insert(
            name.clone(),
            health.add_source(name, source.kind(), table.as_str()),
        );
    }
    let health = Arc::new(health);
    let reload = Arc::new(ModelReload::default());
    signals
        .handle(stop.clone(), health.clone(), config.clone(), reload.clone())
        .context("starting the signal thread")?;
    // The endpoints are up before recovery, so /readyz says 503 while sluice starts. A
    // one-shot run serves nothing: there is nothing to scrape, and it must not take the
    // port of a daemon that may be running.
    let mut http_state = None;
    if let (Some(listen), Some(metrics)) = (serve_http, metrics) {
        let state = Arc::new(HttpState {
            health: health.clone(),
            metrics,
            db_path: config.duckdb_path(),
            sql: Default::default(),
            loopback: listen.ip().is_loopback(),
            max_connections: config.http_max_connections,
            max_body: config.sql.max_query_size.saturating_add(64 * 1024),
        });
        let listener = runtime.block_on(http::bind(listen))?;
        if let Ok(bound) = listener.local_addr() {
            if let Err(e) = lock.advertise_http(bound) {
                warn!(error = %e, "could not record the HTTP address in the lock file");
            }
        }
        runtime.spawn(http::serve(listener, state.clone(), stop.clone()));
        http_state = Some(state);
    }

    let Some(warehouse) = warehouse::open_when_free(&config, &health, &stop)? else {
        info!("stopped before start-up finished");
        return Ok(());
    };
    let report = warehouse
        .reconcile()
        .context("reconciling Parquet files with the ledger")?;
    for file in &report.removed {
        info!(file = %file, "removed a Parquet file of an uncommitted batch");
    }
    for file in &report.missing {
        warn!(file = %file, "the ledger names a Parquet file that does not exist");
    }
    let marts = start_models(&config, &warehouse, &reload, &health, once)?;
    if !once {
        let service = sql::service(&config, &warehouse)?;
        if let Some(state) = &http_state {
            let _ = state.sql.set(service.clone());
        }
        sql::listen(&config, service, &runtime, &stop)?;
    }
    let lake = crate::lake::start(&config, &warehouse, &health)?;
    let ledgers = lake.as_ref().map(|l| l.ledgers.clone()).unwrap_or_default();
    let sources = sources::build(&config, &warehouse, &statuses, &ledgers)?;
    let (events_tx, events_rx) = sync_channel(CHANNEL_CHUNKS);
    let mut acks = HashMap::new();
    let failure: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();
    let mut threads = Vec::new();
    for source in sources {
        let name = source.name.clone();
        let (ack_tx, ack_rx) = channel();
        acks.insert(name.clone(), ack_tx);
        let ctx = SourceContext {
            events: events_tx.clone(),
            acks: ack_rx,
            stop: stop.clone(),
            once,
            status: statuses.get(&*name).cloned().unwrap_or_default(),
        };
        let (stop, failure) = (stop.clone(), failure.clone());
        let status = ctx.status.clone();
        let handle = thread::Builder::new()
            .name(format!("source-{name}"))
            .spawn(move || {
                if let Err(e) = sluice_core::priority::yield_to_committer() {
                    debug!(source = %name, error = %e, "could not lower the source thread's priority");
                }
                // A panic is a failure like any other: without this the thread would end
                // quietly and the daemon would run (or `--once` succeed) without the source.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    source.running.run(ctx)
                }));
                let failed: Option<anyhow::Error> = match ran {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.into()),
                    Err(panic) => Some(anyhow::anyhow!("the source panicked: {}", panic_text(&panic))),
                };
                if let Some(e) = failed {
                    error!(source = %name, error = %e, "source failed; stopping");
                    status.set_problem(Some(e.to_string()));
                    failure.lock().map(|mut f| *f = Some(e)).ok();
                    stop.cancel();
                }
            })
            .context("starting a source thread")?;
        threads.push(handle);
    }
    drop(events_tx);
    health.set_ready();
    info!("ready");
    let limits = Limits {
        max_rows: config.batch.max_rows,
        max_bytes: config.batch.max_bytes.as_u64() as usize,
        max_age: config.batch.max_age,
    };
    let committed =
        Committer::new(warehouse, limits, acks, health.clone(), marts).run(events_rx, &stop);
    health.set_stopping();
    stop.cancel();
    for t in threads {
        let _ = t.join();
    }
    let finished_lake = lake.map(|l| l.finish(LAKE_FINISH));
    let (mut warehouse, marts) = committed?;
    if let Some(e) = failure.lock().ok().and_then(|mut f| f.take()) {
        return Err(e);
    }
    if let (true, Some(mut marts)) = (once, marts) {
        let opts = sluice_models::RunOptions {
            now: true,
            ..Default::default()
        };
        let reports = marts.round(warehouse.for_queries(), &opts);
        models::commands::verdict(&reports).context("the data is committed, but models failed")?;
    }
    match finished_lake {
        Some(Err(e)) if once => return Err(e.context("the data is committed to DuckDB")),
        Some(Err(e)) => warn!(error = %e, "stopping with the lake behind"),
        _ => {}
    }
    info!("stopped");
    Ok(())
}

/// A panic's message, if it has one.
fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "no message".into())
}

/// The models of `config`, ready to run on the committer thread. Model files with
/// problems stop a one-shot run before it ingests; a daemon logs them and ingests without
/// models until SIGHUP brings fixed files.
fn start_models(
    config: &Config,
    warehouse: &Warehouse,
    reload: &Arc<ModelReload>,
    health: &Arc<Health>,
    once: bool,
) -> anyhow::Result<Option<ModelScheduler>> {
    let conn = warehouse.connection();
    let existing = models::existing_raw_tables(conn, &config.duckdb.raw_schema);
    let plan = match models::load_plan(config, &existing) {
        None => return Ok(None),
        Some(Ok(plan)) => plan,
        Some(Err(problems)) if once => bail!("the model files have problems:\n{problems}"),
        Some(Err(problems)) => {
            error!(problems = %problems.to_string().replace('\n', "; "),
                "the model files have problems; ingesting without models until they are fixed and sluice gets SIGHUP");
            models::empty_plan(config)?
        }
    };
    let marts = ModelScheduler::new(plan, config, conn, reload.clone(), health.clone())?;
    Ok(Some(marts))
}
