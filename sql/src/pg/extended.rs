//! The extended query protocol (`Parse`/`Bind`/`Describe`/`Execute`): JDBC, psycopg,
//! SQLAlchemy, Metabase. pgwire keeps the statements and portals; sluice vets a
//! statement at `Parse` (one statement per `Parse`, as Postgres), and runs it at
//! `Describe` of its portal when the client asks for the columns first (most do), so
//! that the following `Execute` streams the same result instead of running it twice.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::{
    DescribePortalResponse, DescribeResponse, DescribeStatementResponse, FieldInfo, Response,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::DEFAULT_NAME;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::extendedquery::{
    Close, CloseComplete, Execute, Parse, ParseComplete, TARGET_TYPE_BYTE_PORTAL,
    TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::PgWireBackendMessage;

use super::client::{user_error, Client, Open};
use super::server::Handlers;
use super::statement;
use super::types::params;
use crate::gate::{sqlstate, Refusal, Vetted};
use crate::reader::Statement;
use crate::session::Command;

/// Vets each `Parse` through the gate, on the client's connection.
#[derive(Debug, Default)]
pub struct Parser;

#[async_trait]
impl QueryParser for Parser {
    type Statement = Vetted;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Vetted>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let me = Client::of(client)?;
        let started = Instant::now();
        let mut vetted = match me
            .reader
            .vet(sql, &me.scope(), me.statement_timeout())
            .await
        {
            Ok(v) => v,
            Err(e) => return Err(statement::failed(&me, e, started)),
        };
        match vetted.len() {
            0 => Ok(None),
            1 => Ok(vetted.pop()),
            _ => Err(user_error(Refusal {
                sqlstate: sqlstate::SYNTAX,
                message: "cannot insert multiple commands into a prepared statement".into(),
            })),
        }
    }

    /// Not used: sluice answers `Describe` itself (it needs the client's connection).
    fn get_parameter_types(&self, _stmt: &Vetted) -> PgWireResult<Vec<Type>> {
        Ok(Vec::new())
    }

    /// Not used, as `get_parameter_types`.
    fn get_result_schema(
        &self,
        _stmt: &Vetted,
        _column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handlers {
    type Statement = Vetted;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::new(Parser)
    }

    /// pgwire's `Parse`, within the connection's bound on statements kept
    /// ([`super::prepared`]).
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let me = Client::of(client)?;
        let name = message
            .name
            .clone()
            .unwrap_or_else(|| DEFAULT_NAME.to_owned());
        me.prepared
            .admits(&name, message.query.len())
            .map_err(user_error)?;
        match StoredStatement::parse(client, &message, self.query_parser()).await? {
            Some(stmt) => client.portal_store().put_statement(Arc::new(stmt)),
            None => client.portal_store().put_empty_statement(&name),
        }
        me.prepared.add(&name, message.query.len());
        // A statement parsed again has not been described yet.
        me.shapes.remove(&name);
        client
            .send(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    /// pgwire's `Close`; a closed statement no longer counts against the bound.
    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => {
                client.portal_store().rm_statement(name);
                let me = Client::of(client)?;
                me.prepared.remove(name);
                me.shapes.remove(name);
            }
            TARGET_TYPE_BYTE_PORTAL => client.portal_store().rm_portal(name),
            _ => {}
        }
        client
            .send(PgWireBackendMessage::CloseComplete(CloseComplete::new()))
            .await?;
        Ok(())
    }

    /// pgwire's `Execute`, then the transaction reported open again after a
    /// `ROLLBACK TO SAVEPOINT` (pgwire keeps a failed transaction failed).
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let me = Client::of(client)?;
        me.touch()?;
        let result = self._on_execute(client, message).await;
        if me.take_restored() {
            client.set_transaction_status(TransactionStatus::Transaction);
        }
        me.arm_idle(client.transaction_status());
        result
    }

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        target: &StoredStatement<Vetted>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let me = Client::of(client)?;
        match &target.statement {
            Vetted::Query(sql) => {
                let statement = Statement::describe(sql.clone());
                let (_, described) = statement::start(&me, statement, Instant::now()).await?;
                // The client's declared types where it gave them; text otherwise (the
                // client then sends text, which DuckDB casts to what the query needs).
                let types = (0..described.params.max(target.parameter_types.len()))
                    .map(|i| {
                        target
                            .parameter_types
                            .get(i)
                            .cloned()
                            .flatten()
                            .unwrap_or(Type::TEXT)
                    })
                    .collect();
                me.shapes.described(&target.id, sql, &described.columns);
                let fields = statement::fields(&described.columns, &Format::UnifiedText);
                Ok(DescribeStatementResponse::new(types, fields))
            }
            Vetted::Session(Command::Show { name }) => Ok(DescribeStatementResponse::new(
                Vec::new(),
                statement::show_fields(name, &Format::UnifiedText),
            )),
            Vetted::Session(_) => Ok(DescribeStatementResponse::no_data()),
        }
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<Vetted>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let me = Client::of(client)?;
        me.touch()?;
        match &portal.statement.statement {
            Vetted::Query(sql) => {
                statement::check_not_aborted(client.transaction_status(), false)
                    .map_err(user_error)?;
                // The client is told the result's shape now, whatever it was told before.
                let open = start(&me, portal, sql.clone(), None).await?;
                me.shapes
                    .described(&portal.statement.id, sql, &open.columns);
                let fields = statement::fields(&open.columns, &portal.result_column_format);
                if let Ok(mut slot) = me.open.lock() {
                    *slot = Some(open);
                }
                Ok(DescribePortalResponse::new(fields))
            }
            Vetted::Session(Command::Show { name }) => Ok(DescribePortalResponse::new(
                statement::show_fields(name, &portal.result_column_format),
            )),
            Vetted::Session(_) => Ok(DescribePortalResponse::no_data()),
        }
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Vetted>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let me = Client::of(client)?;
        let status = client.transaction_status();
        match &portal.statement.statement {
            Vetted::Query(sql) => {
                statement::check_not_aborted(status, false).map_err(user_error)?;
                let open = match take_open(&me, portal) {
                    Some(open) => open,
                    None => {
                        let expect = me.shapes.expected(&portal.statement.id, sql);
                        start(&me, portal, sql.clone(), expect).await?
                    }
                };
                Ok(statement::respond(
                    &me,
                    open.id,
                    &open.columns,
                    &portal.result_column_format,
                    Instant::now(),
                ))
            }
            Vetted::Session(command) => {
                let ends = statement::ends_failure(command);
                statement::check_not_aborted(status, ends).map_err(user_error)?;
                statement::session(
                    &me,
                    command.clone(),
                    client.portal_store(),
                    status,
                    &portal.result_column_format,
                )
                .await
            }
        }
    }
}

/// Runs a portal's query with its parameters; the result stays open on the client's
/// connection.
async fn start(
    me: &Arc<Client>,
    portal: &Portal<Vetted>,
    sql: String,
    expect: Option<u64>,
) -> PgWireResult<Open> {
    let started = Instant::now();
    let values = params::decode(
        &portal.parameters,
        &portal.parameter_format,
        &portal.statement.parameter_types,
    )
    .map_err(|e| statement::failed(me, e, started))?;
    let formats = portal.result_column_format.clone();
    let (id, described) = statement::start(
        me,
        Statement::query(sql, values, formats).expecting(expect),
        started,
    )
    .await?;
    Ok(Open {
        portal: key(portal),
        id,
        columns: described.columns,
    })
}

/// The result `Describe` started for this very portal, if any.
fn take_open(me: &Client, portal: &Portal<Vetted>) -> Option<Open> {
    let mut slot = me.open.lock().ok()?;
    match slot.take() {
        Some(open) if open.portal == key(portal) => Some(open),
        _ => None,
    }
}

fn key(portal: &Portal<Vetted>) -> (String, usize) {
    (portal.name.clone(), Arc::as_ptr(&portal.state) as usize)
}
