//! The live SQL endpoint's metrics (documented in the README's metrics table with the
//! daemon's): connections, statements by result, their duration, rows sent.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::gate::{sqlstate, Refusal};

/// How a statement ended, the `result` label of `sluice_sql_queries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Refused by the gate (not read-only, outside the warehouse) or by the session.
    Refused,
    /// Failed in DuckDB (no such column, a cast, ...).
    Error,
    /// Stopped by a cancel request.
    Canceled,
    /// Stopped by `statement_timeout`.
    Timeout,
}

impl Outcome {
    /// How a statement that failed with `e` ended.
    pub fn of(e: &Refusal) -> Outcome {
        match e.sqlstate {
            "57014" if e.message.contains("timeout") => Outcome::Timeout,
            "57014" => Outcome::Canceled,
            sqlstate::READ_ONLY
            | sqlstate::NOT_ALLOWED
            | sqlstate::NO_RELATION
            | sqlstate::SYNTAX => Outcome::Refused,
            _ => Outcome::Error,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Error => "error",
            Outcome::Canceled => "canceled",
            Outcome::Timeout => "timeout",
        }
    }

    const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Refused,
        Outcome::Error,
        Outcome::Canceled,
        Outcome::Timeout,
    ];
}

/// Emits the endpoint's metrics.
#[derive(Debug, Default, Clone)]
pub struct Metrics;

impl Metrics {
    /// Makes the series exist (at zero) from the start.
    pub fn new() -> Self {
        gauge!("sluice_sql_connections").set(0.0);
        counter!("sluice_sql_connections_refused_total").increment(0);
        counter!("sluice_sql_rows_sent_total").increment(0);
        for o in Outcome::ALL {
            counter!("sluice_sql_queries_total", "result" => o.as_str()).increment(0);
        }
        Metrics
    }

    pub fn connected(&self) {
        gauge!("sluice_sql_connections").increment(1.0);
    }

    pub fn disconnected(&self) {
        gauge!("sluice_sql_connections").decrement(1.0);
    }

    /// A connection refused: every slot taken.
    pub fn refused(&self) {
        counter!("sluice_sql_connections_refused_total").increment(1);
    }

    pub fn statement(&self, outcome: Outcome, took: Duration) {
        counter!("sluice_sql_queries_total", "result" => outcome.as_str()).increment(1);
        histogram!("sluice_sql_query_duration_seconds").record(took.as_secs_f64());
    }

    pub fn rows_sent(&self, n: usize) {
        counter!("sluice_sql_rows_sent_total").increment(n as u64);
    }
}
