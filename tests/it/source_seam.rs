//! The source seam: `sequence`, a source type that exists only in test builds and was
//! added as any type is (its module, one registry line), runs in the real binary, keeps
//! its keyed position in `_sluice.positions` with its rows and its dead letters (with
//! their stream and position), and resumes there after a SIGKILL at either side of a
//! commit: every id exactly once.

use crate::{
    faults::run_to_fault,
    support::{query_i64, query_strings, Deployment},
};

const IDS: i64 = 5_000;
/// Every 1000th id is a dead letter: ids 0, 1000, ..., 4000.
const DEAD_EVERY: i64 = 1_000;
const DEAD: i64 = IDS / DEAD_EVERY;

fn deployment() -> Deployment {
    Deployment::with_source(
        &format!("[sources.seq]\ntype = \"sequence\"\nrows = {IDS}\ndead_every = {DEAD_EVERY}\n"),
        "[batch]\nmax_rows = 1000\nmax_age = \"1h\"\n",
    )
}

/// Every id once, as a row or as a dead letter with its stream and position, and the
/// stored position at the end.
fn assert_every_id_once(d: &Deployment) {
    let db = d.db();
    let rows = (IDS - DEAD).to_string();
    assert_eq!(
        query_strings(
            &db,
            "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM raw.seq"
        ),
        [[rows.clone(), rows, "1".into(), (IDS - 1).to_string()]]
    );
    assert_eq!(
        query_strings(
            &db,
            "SELECT string_agg(stream_position::VARCHAR, ',' ORDER BY stream_position), \
                    count(DISTINCT stream), min(stream), \
                    count(*) FILTER (WHERE raw = stream_position::VARCHAR) \
             FROM _sluice.dead_letters WHERE source = 'seq'"
        ),
        [[
            "0,1000,2000,3000,4000".to_string(),
            "1".into(),
            "ids".into(),
            DEAD.to_string()
        ]]
    );
    assert_eq!(
        query_strings(&db, "SELECT source, key, next FROM _sluice.positions"),
        [["seq".to_string(), "ids".into(), IDS.to_string()]]
    );
}

#[test]
fn a_source_type_added_by_its_module_and_one_registry_line_runs_exactly_once() {
    let d = deployment();
    d.run_once();
    assert_every_id_once(&d);
    assert_eq!(
        query_i64(&d.db(), "SELECT count(*) FROM _sluice.batches"),
        IDS / 1000
    );
    // Nothing more to read: a second run adds nothing.
    d.run_once();
    assert_every_id_once(&d);
}

#[test]
fn a_keyed_position_commits_with_its_rows_across_kills_on_either_side_of_a_commit() {
    for (fault, committed) in [("commit.before@3", 2_000), ("commit.after@3", 3_000)] {
        // Ids below `committed` are in, as rows or dead letters (one of each 1000).
        let rows = committed - committed / DEAD_EVERY;
        let d = deployment();
        run_to_fault(&d, fault);
        let db = d.db();
        assert_eq!(
            query_i64(&db, "SELECT count(*) FROM raw.seq"),
            rows,
            "{fault}"
        );
        assert_eq!(
            query_i64(&db, "SELECT count(*) FROM _sluice.dead_letters"),
            committed / DEAD_EVERY,
            "{fault}"
        );
        assert_eq!(
            query_i64(&db, "SELECT max(next) FROM _sluice.positions"),
            committed,
            "{fault}: the position and the rows commit together"
        );
        drop(db);
        d.run_once();
        assert_every_id_once(&d);
    }
}

#[test]
fn a_panicking_source_is_one_logged_error_and_the_run_fails() {
    let d = Deployment::with_source(
        "[sources.seq]\ntype = \"sequence\"\nrows = 5000\npanic_at = 2500\n",
        "[batch]\nmax_rows = 1000\n",
    );
    let out = crate::support::output(&mut d.command(&["--log-format", "json", "run", "--once"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a source panic is a failure: {stderr}"
    );
    // Every line is a JSON object: the panic did not write free text around the log.
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let panicked = lines
        .iter()
        .find(|l| {
            l["level"] == "ERROR"
                && l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("panicked") && m.contains("panic_at = 2500"))
        })
        .unwrap_or_else(|| panic!("no panic in the log: {stderr}"));
    assert_eq!(panicked["fields"]["thread"], "source-seq", "{panicked}");
    assert!(
        panicked["fields"]["location"]
            .as_str()
            .is_some_and(|l| l.contains("sequence.rs")),
        "{panicked}"
    );
}
