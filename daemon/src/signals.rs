//! Signals: SIGTERM and SIGINT stop sluice (commit what is in flight, exit 0); SIGHUP
//! re-reads the model files (applied by the committer if they compile) and the
//! configuration (saying what would need a restart).

use std::{collections::BTreeSet, fmt::Debug, sync::Arc};

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{config::Config, health::Health, models::ModelReload};

/// Cancels `stop` on SIGTERM or SIGINT; on SIGHUP, re-reads the configuration (see
/// [`reload`]) and keeps running.
pub async fn handle(
    stop: CancellationToken,
    health: Arc<Health>,
    running: Config,
    models: Arc<ModelReload>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {
                info!("SIGTERM: committing what is in flight, then stopping");
                break;
            }
            _ = int.recv() => {
                info!("SIGINT: committing what is in flight, then stopping");
                break;
            }
            _ = hup.recv() => {
                if running.models.is_some() {
                    info!("SIGHUP: re-reading the model files");
                    models.request();
                }
                reload(&running);
            }
        }
    }
    health.set_stopping();
    stop.cancel();
}

/// SIGHUP: re-reads and validates the configuration file. Nothing in it can change while
/// sluice runs yet, so a valid file only gets the changed keys named ("restart to apply");
/// an invalid one is reported and the running configuration stays. Model files are
/// re-read separately (see [`ModelReload`]).
fn reload(running: &Config) {
    match Config::load(&running.path) {
        Err(e) => warn!("SIGHUP: the configuration is not valid, keeping the running one: {e}"),
        Ok(new) => {
            let changed = changed_keys(running, &new);
            if changed.is_empty() {
                info!("SIGHUP: configuration unchanged");
            } else {
                warn!(changed = %changed.join(", "), "SIGHUP: these configuration changes need a restart of sluice to apply");
            }
        }
    }
}

/// Sections (or sources) whose settings differ between two configurations.
fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let differs = |a: &dyn Debug, b: &dyn Debug| format!("{a:?}") != format!("{b:?}");
    let sections: [(&str, &dyn Debug, &dyn Debug); 6] = [
        ("data_dir", &old.data_dir, &new.data_dir),
        ("batch", &old.batch, &new.batch),
        ("duckdb", &old.duckdb, &new.duckdb),
        ("parquet", &old.parquet, &new.parquet),
        ("http", &old.http_listen, &new.http_listen),
        ("models", &old.models, &new.models),
    ];
    let mut changed: Vec<String> = sections
        .into_iter()
        .filter(|(_, a, b)| differs(*a, *b))
        .map(|(key, _, _)| key.to_string())
        .collect();
    let names: BTreeSet<&String> = old
        .sources
        .iter()
        .chain(&new.sources)
        .map(|(n, _)| n)
        .collect();
    for name in names {
        let find = |c: &Config| {
            c.sources
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.clone())
        };
        if differs(&find(old), &find(new)) {
            changed.push(format!("sources.{name}"));
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = "[sources.a]\ntype = \"csv\"\npath = \"in\"\n";

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("/etc/sluice/sluice.toml")).expect("valid")
    }

    #[test]
    fn names_the_sections_and_sources_that_changed() {
        let old = parse(BASE);
        assert!(changed_keys(&old, &parse(BASE)).is_empty());
        let new = parse(&format!(
            "[batch]\nmax_rows = 5\n{BASE}[sources.b]\ntype = \"csv\"\npath = \"x\"\n"
        ));
        assert_eq!(changed_keys(&old, &new), ["batch", "sources.b"]);
        let new = parse(&BASE.replace("\"in\"", "\"elsewhere\""));
        assert_eq!(changed_keys(&old, &new), ["sources.a"]);
    }
}
