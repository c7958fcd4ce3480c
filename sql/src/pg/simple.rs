//! The simple query protocol (`Query`): psql, `\copy`, scripts. A query string may hold
//! several statements; they run one after the other, each result streamed to the client
//! before the next statement starts, and the first error ends the string (as Postgres).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::portal::Format;
use pgwire::api::query::{
    send_execution_response, send_query_response, send_ready_for_query, SimpleQueryHandler,
};
use pgwire::api::results::Response;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::response::{EmptyQueryResponse, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::PgWireBackendMessage;

use super::client::{user_error, Client};
use super::server::Handlers;
use super::statement;
use crate::gate::Vetted;

#[async_trait]
impl SimpleQueryHandler for Handlers {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let me = Client::of(client)?;
        me.touch()?;
        let mut status = client.transaction_status();
        let result = run(client, &me, &query.query, &mut status).await;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(status);
        me.arm_idle(status.to_error_state());
        result?;
        send_ready_for_query(client, status).await
    }

    /// Not used: `on_query` runs each statement itself, so that one statement's result
    /// is sent before the next starts.
    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Err(PgWireError::NotReadyForQuery)
    }
}

/// Vets `text` and runs its statements in order, sending each response.
async fn run<C>(
    client: &mut C,
    me: &Arc<Client>,
    text: &str,
    status: &mut TransactionStatus,
) -> PgWireResult<()>
where
    C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::PortalStore: PortalStore,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let started = std::time::Instant::now();
    if let Some(copy) = crate::copy::parse(text) {
        let copy = copy.map_err(|message| {
            statement::failed(
                me,
                crate::gate::Refusal {
                    sqlstate: "0A000",
                    message,
                },
                started,
            )
        })?;
        statement::check_not_aborted(*status, false).map_err(user_error)?;
        let response = statement::copy_out(me, copy)
            .await
            .inspect_err(|_| *status = status.to_error_state())?;
        return send(client, response, status)
            .await
            .inspect_err(|_| *status = status.to_error_state());
    }
    let statements = match me
        .reader
        .vet(text, &me.scope(), me.statement_timeout())
        .await
    {
        Ok(s) => s,
        Err(e) => return Err(statement::failed(me, e, started)),
    };
    if statements.is_empty() {
        client
            .feed(PgWireBackendMessage::EmptyQueryResponse(
                EmptyQueryResponse::new(),
            ))
            .await?;
        return Ok(());
    }
    for vetted in statements {
        let ends = matches!(&vetted, Vetted::Session(c) if statement::ends_failure(c));
        statement::check_not_aborted(*status, ends).map_err(user_error)?;
        let response = match vetted {
            Vetted::Query(sql) => statement::query(me, sql, Vec::new(), Format::UnifiedText).await,
            Vetted::Session(command) => {
                statement::session(
                    me,
                    command,
                    client.portal_store(),
                    *status,
                    &Format::UnifiedText,
                )
                .await
            }
        };
        let response = response.inspect_err(|_| *status = status.to_error_state())?;
        send(client, response, status)
            .await
            .inspect_err(|_| *status = status.to_error_state())?;
        if me.take_restored() {
            *status = TransactionStatus::Transaction;
        }
    }
    Ok(())
}

async fn send<C>(
    client: &mut C,
    response: Response,
    status: &mut TransactionStatus,
) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    match response {
        Response::Query(results) => send_query_response(client, results, true).await,
        Response::Execution(tag) => send_execution_response(client, tag).await,
        Response::TransactionStart(tag) => {
            *status = status.to_in_transaction_state();
            send_execution_response(client, tag).await
        }
        Response::TransactionEnd(tag) => {
            *status = status.to_idle_state();
            send_execution_response(client, tag).await
        }
        Response::EmptyQuery => {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
            Ok(())
        }
        Response::Error(e) => Err(PgWireError::UserError(e)),
        Response::CopyOut(copy) => send_copy_out(client, copy).await,
        _ => Err(user_error(crate::gate::Refusal {
            sqlstate: "0A000",
            message: "sluice's SQL endpoint only copies out: COPY (query) TO STDOUT".into(),
        })),
    }
}

/// pgwire's `send_copy_out_response`, but a failure mid-way (a timeout, a cancel) ends the
/// copy with an ErrorResponse, as Postgres does: pgwire sends `CopyFail`, a message only
/// clients may send (psql: "unexpected response from server").
async fn send_copy_out<C>(
    client: &mut C,
    resp: pgwire::api::results::CopyResponse,
) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    use futures::StreamExt;
    use pgwire::api::results::Tag;
    use pgwire::messages::copy::{CopyDone, CopyOutResponse};

    let formats = resp.column_formats();
    let copy_out = CopyOutResponse::new(resp.format, resp.columns as i16, formats);
    client
        .send(PgWireBackendMessage::CopyOutResponse(copy_out))
        .await?;
    let mut data = resp.data_stream;
    let mut rows = 0;
    while let Some(item) = data.next().await {
        let item = item?;
        if !item.data.is_empty() {
            rows += usize::from(item.data.as_ref() != [0xFF, 0xFF]);
            client.feed(PgWireBackendMessage::CopyData(item)).await?;
        }
    }
    client
        .send(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    let tag = Tag::new("COPY").with_rows(rows);
    client
        .send(PgWireBackendMessage::CommandComplete(tag.into()))
        .await?;
    Ok(())
}
