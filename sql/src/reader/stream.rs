//! One statement on the client's thread: executed, then its result handed out chunk by
//! chunk, as encoded rows or Arrow batches, until it ends, fails, passes
//! `max_result_rows`, or another job arrives.

use std::sync::mpsc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use duckdb::types::Value;
use duckdb::Connection;
use pgwire::api::portal::Format;
use pgwire::api::results::FieldFormat;
use pgwire::messages::data::DataRow;
use tokio::sync::oneshot;
use tracing::debug;

use super::{error, stopped, Described, Job, Shared, Statement};
use crate::gate::Refusal;
use crate::pg::types::{self, Column};

/// Executes `statement` and answers `Next` jobs for it until the result ends, fails, or
/// another job arrives (returned). `true` if nothing failed.
pub(super) fn stream(
    conn: &Connection,
    shared: &Shared,
    id: u64,
    statement: Statement,
    reply: oneshot::Sender<Result<Described, Refusal>>,
    jobs: &mpsc::Receiver<Job>,
) -> (Option<Job>, bool) {
    debug!(
        id,
        describe_only = statement.describe_only,
        "statement started"
    );
    let failed = |e: &duckdb::Error| error(e, shared.stopped());
    let mut prepared = match conn.prepare(&statement.sql) {
        Ok(p) => p,
        Err(e) => {
            let _ = reply.send(Err(failed(&e)));
            return (None, false);
        }
    };
    let param_count = prepared.parameter_count();
    let params = if statement.params.is_empty() && statement.describe_only {
        vec![Value::Null; param_count]
    } else {
        statement.params
    };
    // Started, then read chunk by chunk with `step` below. The types are read after the
    // start: before it, a statement whose types depend on its parameters has none.
    if let Err(e) = prepared.stream_arrow(duckdb::params_from_iter(params.iter())) {
        let _ = reply.send(Err(failed(&e)));
        return (None, false);
    }
    let columns: Vec<Column> = prepared
        .schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let logical = prepared.column_logical_type(i);
            let (pg, typmod) = types::pg_type(&logical);
            Column {
                name: f.name().clone(),
                pg,
                typmod,
                duckdb: types::duckdb_name(&logical),
            }
        })
        .collect();
    if let Err(e) = crate::pg::shapes::check(statement.expect, &columns) {
        let _ = reply.send(Err(e));
        return (None, false);
    }
    let formats = match formats_of(&statement.formats, columns.len()) {
        Ok(f) => f,
        Err(e) => {
            let _ = reply.send(Err(e));
            return (None, false);
        }
    };
    let _ = reply.send(Ok(Described {
        columns: columns.clone(),
        schema: prepared.schema(),
        params: param_count,
    }));
    if statement.describe_only {
        return (None, true);
    }
    let mut sent: u64 = 0;
    loop {
        let want = match next_request(shared, id, jobs) {
            Ok(want) => want,
            Err(pending) => return pending,
        };
        if let Some(why) = shared.stopped() {
            want.fail(stopped(why));
            return (None, false);
        }
        let batch = match prepared.step() {
            Ok(None) => None,
            Err(e) => {
                want.fail(failed(&e));
                return (None, false);
            }
            Ok(Some(array)) => Some(RecordBatch::from(&array)),
        };
        let Some(batch) = batch else {
            want.end();
            return (None, true);
        };
        sent += batch.num_rows() as u64;
        if let Some(max) = shared.max_rows.filter(|max| sent > *max) {
            want.fail(too_long(max));
            return (None, false);
        }
        let ok = match want {
            Want::Rows(reply) => {
                let rows = encode(&batch, &columns, &formats);
                let ok = rows.is_ok();
                let _ = reply.send(rows.map(Some));
                ok
            }
            Want::Batch(reply) => reply.send(Ok(Some(batch))).is_ok(),
        };
        if !ok {
            return (None, false);
        }
    }
}

/// How often a result waiting for its client to ask for more checks whether it was
/// stopped: a timeout or cancel ends it (and lets go of its snapshot) within this, not
/// when a slow client next asks.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// The next request for result `id`; else what ends the stream: another job (returned),
/// the client gone, or a stop while waiting (the result ends now; its next fetch hears
/// why, [`Shared::ended`]).
fn next_request(
    shared: &Shared,
    id: u64,
    jobs: &mpsc::Receiver<Job>,
) -> Result<Want, (Option<Job>, bool)> {
    loop {
        match jobs.recv_timeout(STOP_CHECK) {
            Ok(Job::Next { id: next, reply }) if next == id => return Ok(Want::Rows(reply)),
            Ok(Job::NextBatch { id: next, reply }) if next == id => return Ok(Want::Batch(reply)),
            Ok(other) => return Err((Some(other), true)),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err((None, true)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(why) = shared.stopped() {
                    shared.end_stopped(id, why);
                    return Err((None, false));
                }
            }
        }
    }
}

/// What the client asked the next chunk of a result as.
pub(super) enum Want {
    Rows(oneshot::Sender<Result<Option<Vec<DataRow>>, Refusal>>),
    Batch(oneshot::Sender<Result<Option<RecordBatch>, Refusal>>),
}

impl Want {
    pub(super) fn fail(self, e: Refusal) {
        match self {
            Want::Rows(reply) => drop(reply.send(Err(e))),
            Want::Batch(reply) => drop(reply.send(Err(e))),
        }
    }

    fn end(self) {
        match self {
            Want::Rows(reply) => drop(reply.send(Ok(None))),
            Want::Batch(reply) => drop(reply.send(Ok(None))),
        }
    }
}

pub(super) fn closed() -> Refusal {
    Refusal {
        sqlstate: "34000",
        message: "this result was closed: another statement ran on the connection \
                  before it was read to the end"
            .into(),
    }
}

/// A result longer than `sql.max_result_rows`: 54000, Postgres's "program limit exceeded".
fn too_long(max: u64) -> Refusal {
    Refusal {
        sqlstate: "54000",
        message: format!(
            "the result has more than {max} rows (sql.max_result_rows); \
             aggregate, filter or LIMIT it, or export it with COPY (...) TO STDOUT in pieces"
        ),
    }
}

fn encode(
    batch: &RecordBatch,
    columns: &[Column],
    formats: &[FieldFormat],
) -> Result<Vec<DataRow>, Refusal> {
    types::encode(batch, columns, formats).map_err(|message| Refusal {
        sqlstate: "22000",
        message,
    })
}

/// The format of each result column (the client names one for all, or one each).
fn formats_of(format: &Format, n: usize) -> Result<Vec<FieldFormat>, Refusal> {
    if let Format::Individual(codes) = format {
        if codes.len() != n {
            return Err(Refusal {
                sqlstate: "08P01",
                message: format!("{} result formats given for {n} columns", codes.len()),
            });
        }
    }
    Ok((0..n).map(|i| format.format_for(i)).collect())
}
