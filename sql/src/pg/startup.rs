//! A connection's start: TLS if required, the password exchange if users are configured,
//! then a slot under `max_connections` and the client's DuckDB thread.
//!
//! Without users, pgwire's no-authentication startup runs and [`Handlers`]'s
//! `post_startup` sets the client up. With users, pgwire's [`AuthDriver`] runs
//! SCRAM-SHA-256 (and -PLUS over TLS); once the password is proven the slot is taken
//! (`53300` before anything else is sent when none is free), the startup completes and
//! the client is set up.

use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::driver::{AuthDriver, AuthOutcome};
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::SaslMechanisms;
use pgwire::api::auth::{
    protocol_negotiation, save_startup_parameters_to_metadata, DefaultServerParameterProvider,
    StartupHandler,
};
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::OwnedSemaphorePermit;

use super::auth::Security;
use super::client::{fatal, Client};
use super::server::{Handlers, Shared};
use super::settings::Settings;

/// pgwire's startup handler for every connection.
pub struct Startup {
    handlers: Arc<Handlers>,
    /// With users: the password exchange.
    scram: Option<(
        AuthDriver<Arc<DefaultServerParameterProvider>>,
        SaslMechanisms,
    )>,
    tls_required: bool,
}

impl Startup {
    pub fn new(handlers: Arc<Handlers>, security: &Security) -> Startup {
        let scram = security.scram.clone().map(|scram| {
            let driver = AuthDriver::new(Arc::new(DefaultServerParameterProvider::default()));
            (driver, SaslMechanisms::new(vec![Arc::new(scram)]))
        });
        Startup {
            handlers,
            scram,
            tls_required: security.tls.is_some(),
        }
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if matches!(message, PgWireFrontendMessage::Startup(_))
            && self.tls_required
            && !client.is_secure()
        {
            return Err(fatal(
                "28000",
                "sluice's SQL endpoint requires TLS: connect with sslmode=require",
            ));
        }
        let Some((driver, mechanisms)) = &self.scram else {
            return StartupHandler::on_startup(&*self.handlers, client, message).await;
        };
        let outcome = match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                driver
                    .begin_authentication(client, mechanisms.create())
                    .await?
            }
            PgWireFrontendMessage::PasswordMessageFamily(m) => driver
                .advance_authentication(client, m)
                .await
                .map_err(|e| failed_login(client, e))?,
            _ => return Ok(()),
        };
        if let AuthOutcome::Authenticated { final_message, .. } = outcome {
            let shared = &self.handlers.shared;
            let permit = slot(shared)?;
            driver
                .complete_authentication(client, final_message)
                .await?;
            set_up(shared, client, permit).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl NoopStartupHandler for Handlers {
    /// Takes a connection slot and starts the client's DuckDB thread.
    async fn post_startup<C>(
        &self,
        client: &mut C,
        _message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let permit = slot(&self.shared)?;
        set_up(&self.shared, client, permit).await
    }
}

/// Postgres's words for a failed password (pgwire's name no user), so clients and
/// operators see what they know; other errors as they are.
fn failed_login<C: ClientInfo>(client: &C, e: PgWireError) -> PgWireError {
    match e {
        PgWireError::InvalidPassword(_) => {
            let user = client.metadata().get("user").cloned().unwrap_or_default();
            fatal(
                "28P01",
                &format!("password authentication failed for user \"{user}\""),
            )
        }
        other => other,
    }
}

/// A connection slot, or 53300 (like Postgres) when every one is taken.
fn slot(shared: &Arc<Shared>) -> PgWireResult<OwnedSemaphorePermit> {
    shared
        .service
        .slot()
        .map_err(|e| fatal(e.sqlstate, &e.message))
}

/// Starts the client's DuckDB thread and session, and registers it for cancel requests.
async fn set_up<C: ClientInfo>(
    shared: &Arc<Shared>,
    client: &mut C,
    permit: OwnedSemaphorePermit,
) -> PgWireResult<()> {
    let (pid, secret) = client.pid_and_secret_key();
    let key = (pid, secret.to_bytes().to_vec());
    let service = &shared.service;
    let reader = service
        .reader(format!("sql-{pid}"))
        .map_err(|e| fatal(e.sqlstate, &e.message))?;
    let mut settings = Settings::new(
        service.limits.statement_timeout,
        service.limits.idle_in_transaction_timeout,
        &service.server_version,
    );
    settings.apply_startup(client.metadata());
    let search_path = settings.search_path(&service.scope.schemas);
    let values = settings.all();
    let new = Client::new(reader, settings, shared.clone(), permit, key.clone());
    new.reader
        .session(search_path, values)
        .await
        .map_err(|e| fatal(e.sqlstate, &e.message))?;
    if let Ok(mut readers) = shared.readers.lock() {
        readers.insert(key, Arc::downgrade(&new.reader));
    }
    client.session_extensions().insert(new);
    Ok(())
}
