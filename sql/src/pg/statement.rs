//! What one vetted statement does, for both query protocols: a query runs on the
//! client's DuckDB thread and streams its rows; a session statement is answered here.

use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use duckdb::types::Value;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::Type;
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use pgwire::messages::response::TransactionStatus;

use super::client::{user_error, Client};
use super::types::Column;
use crate::gate::Refusal;
use crate::metrics::Outcome;
use crate::reader::{Described, Statement, Txn};
use crate::session::Command;

/// Runs query `sql` with `params`; its rows stream as the client reads them.
pub async fn query(
    me: &Arc<Client>,
    sql: String,
    params: Vec<Value>,
    formats: Format,
) -> PgWireResult<Response> {
    let started = Instant::now();
    let (id, described) =
        start(me, Statement::query(sql, params, formats.clone()), started).await?;
    Ok(respond(me, id, &described.columns, &formats, started))
}

/// Starts `statement` on the client's connection under the session's statement timeout:
/// its id and what it returns. A failure is counted (from `started`).
pub async fn start(
    me: &Arc<Client>,
    statement: Statement,
    started: Instant,
) -> PgWireResult<(u64, Described)> {
    let id = me.reader.new_id();
    me.arm_timeout(id);
    match me.reader.run(id, statement).await {
        Ok(described) => Ok((id, described)),
        Err(e) => Err(failed(me, e, started)),
    }
}

/// The response for result `id`, already started, with `columns`.
pub fn respond(
    me: &Arc<Client>,
    id: u64,
    columns: &[Column],
    formats: &Format,
    started: Instant,
) -> Response {
    let fields = Arc::new(fields(columns, formats));
    Response::Query(QueryResponse::new(fields, me.rows(id, started)))
}

pub fn fields(columns: &[Column], formats: &Format) -> Vec<FieldInfo> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| c.field(format_at(formats, i)))
        .collect()
}

/// The format of column `i` (text where the client named too few).
fn format_at(formats: &Format, i: usize) -> FieldFormat {
    match formats {
        Format::Individual(codes) if i >= codes.len() => FieldFormat::Text,
        f => f.format_for(i),
    }
}

/// Counts a statement that failed before any row, and turns it into the client's error.
pub fn failed(me: &Client, e: Refusal, started: Instant) -> pgwire::error::PgWireError {
    me.shared
        .service
        .metrics
        .statement(Outcome::of(&e), started.elapsed());
    user_error(e)
}

/// Whether a session command may run in a failed transaction (it ends or repairs it).
pub fn ends_failure(command: &Command) -> bool {
    matches!(
        command,
        Command::Commit | Command::Rollback | Command::RollbackTo { .. }
    )
}

/// Refuses everything but the end of a failed transaction, as Postgres does.
pub fn check_not_aborted(status: TransactionStatus, vetted_is_end: bool) -> Result<(), Refusal> {
    if matches!(status, TransactionStatus::Error) && !vetted_is_end {
        return Err(Refusal {
            sqlstate: "25P02",
            message:
                "current transaction is aborted, commands ignored until end of transaction block"
                    .into(),
        });
    }
    Ok(())
}

/// Answers a session statement. `store` is the connection's statement store (for
/// `DEALLOCATE`); `status` the transaction status before it.
pub async fn session<S: PortalStore>(
    me: &Arc<Client>,
    command: Command,
    store: &S,
    status: TransactionStatus,
    formats: &Format,
) -> PgWireResult<Response> {
    let started = Instant::now();
    let result = answer(me, command, store, status, formats).await;
    match result {
        Ok(r) => {
            me.shared
                .service
                .metrics
                .statement(Outcome::Ok, started.elapsed());
            Ok(r)
        }
        Err(e) => Err(failed(me, e, started)),
    }
}

async fn answer<S: PortalStore>(
    me: &Arc<Client>,
    command: Command,
    store: &S,
    status: TransactionStatus,
    formats: &Format,
) -> Result<Response, Refusal> {
    let tag = Tag::new(command.tag());
    match command {
        Command::Begin => {
            me.reader.txn(Txn::Begin).await?;
            Ok(Response::TransactionStart(tag))
        }
        Command::Commit if matches!(status, TransactionStatus::Error) => {
            me.reader.txn(Txn::Rollback).await?;
            Ok(Response::TransactionEnd(Tag::new("ROLLBACK")))
        }
        Command::Commit => {
            me.reader.txn(Txn::Commit).await?;
            Ok(Response::TransactionEnd(tag))
        }
        Command::Rollback => {
            me.reader.txn(Txn::Rollback).await?;
            Ok(Response::TransactionEnd(tag))
        }
        Command::Set { name, value } => {
            apply_settings(me, |s| s.set(&name, &value)).await?;
            Ok(Response::Execution(tag))
        }
        Command::SetTransaction => Ok(Response::Execution(tag)),
        Command::Reset { name } => {
            apply_settings(me, |s| {
                s.reset(name.as_deref());
                Ok(())
            })
            .await?;
            Ok(Response::Execution(tag))
        }
        Command::Discard => {
            apply_settings(me, |s| {
                s.reset(None);
                Ok(())
            })
            .await?;
            Ok(Response::Execution(tag))
        }
        Command::Deallocate { name } => {
            match name {
                Some(n) => {
                    store.rm_statement(&n);
                    me.prepared.remove(&n);
                    me.shapes.remove(&n);
                }
                // Named statements hold only their text here (no DuckDB resources); open
                // portals are what DEALLOCATE ALL frees.
                None => store.clear_portals(),
            }
            Ok(Response::Execution(tag))
        }
        Command::Savepoint { .. } => {
            in_transaction(status, "SAVEPOINT")?;
            Ok(Response::Execution(tag))
        }
        Command::Release { .. } => {
            in_transaction(status, "RELEASE SAVEPOINT")?;
            Ok(Response::Execution(tag))
        }
        Command::RollbackTo { .. } => {
            in_transaction(status, "ROLLBACK TO SAVEPOINT")?;
            me.reader.txn(Txn::Restore).await?;
            me.restored
                .store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(Response::Execution(tag))
        }
        Command::Show { name } => show(me, &name, formats),
    }
}

/// Savepoints exist only inside a transaction block (25P01, as Postgres).
fn in_transaction(status: TransactionStatus, what: &str) -> Result<(), Refusal> {
    match status {
        TransactionStatus::Idle => Err(Refusal {
            sqlstate: "25P01",
            message: format!("{what} can only be used in transaction blocks"),
        }),
        _ => Ok(()),
    }
}

/// The columns `SHOW name` answers with: the parameter's name (`SHOW ALL`: name, setting),
/// as text.
pub fn show_fields(name: &str, formats: &Format) -> Vec<FieldInfo> {
    let names: Vec<&str> = if name == "all" {
        vec!["name", "setting"]
    } else {
        vec![name]
    };
    let columns: Vec<Column> = names
        .into_iter()
        .map(|n| Column {
            name: n.to_string(),
            pg: Type::TEXT,
            typmod: -1,
            duckdb: "VARCHAR".into(),
        })
        .collect();
    fields(&columns, formats)
}

/// `SHOW name` as a one-column result (`SHOW ALL`: name, setting).
fn show(me: &Client, name: &str, formats: &Format) -> Result<Response, Refusal> {
    let settings = me.settings.lock().map_err(|_| poisoned())?;
    let rows: Vec<Vec<String>> = if name == "all" {
        settings
            .all()
            .into_iter()
            .map(|(k, v)| vec![k, v])
            .collect()
    } else {
        vec![vec![settings.show(name)?]]
    };
    let fields = Arc::new(show_fields(name, formats));
    let data: Vec<PgWireResult<DataRow>> = rows
        .into_iter()
        .map(|row| {
            let mut buf = BytesMut::new();
            for v in &row {
                buf.put_i32(v.len() as i32);
                buf.put_slice(v.as_bytes());
            }
            Ok(DataRow::new(buf, row.len() as i16))
        })
        .collect();
    let mut response = QueryResponse::new(fields, futures::stream::iter(data));
    response.set_command_tag("SHOW");
    Ok(Response::Query(response))
}

/// Changes the session's parameters with `change`, then hands them to its connection.
async fn apply_settings(
    me: &Client,
    change: impl FnOnce(&mut super::settings::Settings) -> Result<(), Refusal>,
) -> Result<(), Refusal> {
    let (schemas, values) = {
        let mut settings = me.settings.lock().map_err(|_| poisoned())?;
        change(&mut settings)?;
        (
            settings.search_path(&me.shared.service.scope.schemas),
            settings.all(),
        )
    };
    me.reader.session(schemas, values).await
}

fn poisoned() -> Refusal {
    Refusal {
        sqlstate: crate::gate::sqlstate::INTERNAL,
        message: "the session's settings are unusable".into(),
    }
}

/// `COPY (query) TO STDOUT`: the query's rows as COPY text or CSV lines, one `CopyData`
/// each (the header, if asked for, travels with the first).
pub async fn copy_out(me: &Arc<Client>, copy: crate::copy::CopyOut) -> PgWireResult<Response> {
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures::StreamExt;
    use pgwire::api::results::CopyResponse;
    use pgwire::messages::copy::CopyData;

    use crate::copy::{CopyFormat, BINARY_HEADER, BINARY_TRAILER};

    let started = Instant::now();
    let vetted = me
        .reader
        .vet(&copy.query, &me.scope(), me.statement_timeout())
        .await
        .map_err(|e| failed(me, e, started))?;
    let sql = match vetted.as_slice() {
        [crate::gate::Vetted::Query(sql)] => sql.clone(),
        _ => {
            return Err(failed(
                me,
                Refusal {
                    sqlstate: "0A000",
                    message: "COPY (...) TO STDOUT takes one query".into(),
                },
                started,
            ))
        }
    };
    let binary = copy.format == CopyFormat::Binary;
    let format = if binary {
        Format::UnifiedBinary
    } else {
        Format::UnifiedText
    };
    let statement = Statement::query(sql, Vec::new(), format);
    let (id, described) = start(me, statement, started).await?;
    let columns = described.columns.len();
    // What precedes the first row: the binary signature, or the header line.
    let header = if binary {
        Some(BINARY_HEADER.to_vec())
    } else {
        copy.header.then(|| {
            let names: Vec<Option<&[u8]>> = described
                .columns
                .iter()
                .map(|c| Some(c.name.as_bytes()))
                .collect();
            crate::copy::line(&names, &copy)
        })
    };
    let sent_header = Arc::new(AtomicBool::new(header.is_none()));
    let (sent, pending) = (sent_header.clone(), header.clone());
    let rows = me.rows(id, started).map(move |row| {
        let row = row?;
        let mut data = Vec::new();
        if !sent.swap(true, Ordering::Relaxed) {
            data.extend(pending.as_deref().unwrap_or_default());
        }
        if binary {
            data.extend((row.field_count).to_be_bytes());
            data.extend_from_slice(&row.data);
        } else {
            data.extend(crate::copy::line(&super::types::fields(&row), &copy));
        }
        Ok(CopyData::new(data.into()))
    });
    // The header of a result with no rows; the binary format's trailer. Never an empty
    // message. (Evaluated when the rows have ended.)
    let tail = futures::stream::once(async move {
        let mut data = Vec::new();
        if !sent_header.swap(true, Ordering::Relaxed) {
            data.extend(header.unwrap_or_default());
        }
        if binary {
            data.extend_from_slice(BINARY_TRAILER);
        }
        (!data.is_empty()).then(|| Ok(CopyData::new(data.into())))
    })
    .filter_map(futures::future::ready);
    // Made as text, then marked binary: pgwire's binary response would append a trailer
    // of its own after the stream, and the header of an empty result could not go with it.
    let mut response = CopyResponse::new(0, columns, rows.chain(tail));
    response.format = i8::from(binary);
    Ok(Response::CopyOut(response))
}
