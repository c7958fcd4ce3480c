//! The live SQL endpoint's metrics (documented in the README's metrics table with the
//! daemon's): connections, statements by result, their duration, rows sent, failed
//! logins and refused messages (also logged, at most once per [`LOG_EVERY`] each).

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use sluice_core::text::{for_log, LogLimit};
use tracing::warn;

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
        for endpoint in ["postgres", "http"] {
            for reason in AuthFailure::LABELS {
                counter!("sluice_sql_auth_failures_total", "endpoint" => endpoint, "reason" => reason)
                    .increment(0);
            }
        }
        for reason in ["too_long", "malformed", "unexpected"] {
            counter!("sluice_sql_rejected_messages_total", "reason" => reason).increment(0);
        }
        counter!("sluice_sql_unauthenticated_refused_total").increment(0);
        Metrics
    }

    /// A login that failed: counted, and logged (at most once per [`LOG_EVERY`], with how
    /// many others there were). `user` is what the client sent, shown escaped and cut.
    pub fn auth_failed(&self, endpoint: &'static str, reason: AuthFailure, user: &str, peer: &str) {
        counter!("sluice_sql_auth_failures_total", "endpoint" => endpoint, "reason" => reason.label())
            .increment(1);
        if let Some(others) = AUTH_LOG.due() {
            warn!(
                endpoint,
                reason = reason.as_str(),
                user = %for_log(user, 64),
                peer,
                others_since_last_log = others,
                "SQL login failed"
            );
        }
    }

    /// A message refused before pgwire decoded it (the connection is closed).
    pub fn rejected_message(&self, reason: &'static str, message: &str, peer: &str) {
        counter!("sluice_sql_rejected_messages_total", "reason" => reason).increment(1);
        if let Some(others) = MESSAGE_LOG.due() {
            warn!(
                reason,
                peer,
                others_since_last_log = others,
                "SQL connection closed: {message}"
            );
        }
    }

    /// A connection closed at once: too many connections have not logged in yet.
    pub fn unauthenticated_refused(&self, peer: &str, limit: usize) {
        counter!("sluice_sql_unauthenticated_refused_total").increment(1);
        if let Some(others) = PENDING_LOG.due() {
            warn!(
                peer,
                limit,
                others_since_last_log = others,
                "SQL connection closed: sql.max_unauthenticated connections have not logged in yet"
            );
        }
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

/// Why a login failed. The log says which; the metric's `reason` label
/// ([`AuthFailure::label`]) does not tell an unknown user from a wrong password: anyone
/// who can scrape `/metrics` could otherwise tell which user names exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// A user name `[sql.users]` does not have.
    UnknownUser,
    /// A known user with the wrong password.
    WrongPassword,
    /// A malformed or unexpected exchange (another mechanism, a broken SCRAM message,
    /// no TLS where TLS is required).
    Protocol,
    /// Not logged in within `sql.auth_timeout`.
    Timeout,
}

impl AuthFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::UnknownUser => "unknown_user",
            AuthFailure::WrongPassword => "wrong_password",
            AuthFailure::Protocol => "protocol",
            AuthFailure::Timeout => "timeout",
        }
    }

    /// The metric's label: `password` for an unknown user and a wrong password alike.
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::UnknownUser | AuthFailure::WrongPassword => "password",
            other => other.as_str(),
        }
    }

    const LABELS: [&'static str; 3] = ["password", "protocol", "timeout"];
}

/// How often each kind of warning about clients is logged at most: a burst of failed
/// logins is one line (with a count) per interval, not one per attempt.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

static AUTH_LOG: LogLimit = LogLimit::new(LOG_EVERY);
static MESSAGE_LOG: LogLimit = LogLimit::new(LOG_EVERY);
static PENDING_LOG: LogLimit = LogLimit::new(LOG_EVERY);
