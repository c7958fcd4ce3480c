//! A connection's start: TLS if required, the password exchange if users are configured,
//! then a slot under `max_connections` and the client's DuckDB thread.
//!
//! Both kinds of connection go through pgwire's [`AuthDriver`]: SCRAM-SHA-256 (and -PLUS
//! over TLS) with users, [`Trust`] without. Once the password is proven the slot is taken
//! (`53300` before anything else is sent when none is free), the startup completes with
//! sluice's own parameters ([`Parameters`]: read-only, not a superuser), and the client is
//! set up and its connection marked logged in (its [`Conn`]: the guard lets queries
//! through from the next message on). A failed login is counted and logged ([`crate::metrics`]) and
//! answered only after [`FAILURE_DELAY`], as Postgres's `auth_delay` does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::driver::{AuthDriver, AuthOutcome};
use pgwire::api::auth::mechanism::{AuthMechanism, AuthMechanismFactory, AuthState};
use pgwire::api::auth::sasl::SaslMechanisms;
use pgwire::api::auth::{
    protocol_negotiation, save_startup_parameters_to_metadata, ServerParameterProvider,
    StartupHandler,
};
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::PasswordMessageFamily;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::OwnedSemaphorePermit;

use super::auth::Security;
use super::client::{fatal, Client};
use super::conn::Conn;
use super::server::{Handlers, Shared};
use super::settings::Settings;
use crate::metrics::AuthFailure;

/// How long a failed login waits before it is answered (and its connection closed): a
/// client guessing passwords gets at most `sql.max_unauthenticated` guesses per delay.
pub const FAILURE_DELAY: Duration = Duration::from_secs(1);

/// pgwire's startup handler for every connection.
pub struct Startup {
    handlers: Arc<Handlers>,
    driver: AuthDriver<Arc<Parameters>>,
    /// With users: the password exchange.
    scram: Option<SaslMechanisms>,
    tls_required: bool,
}

impl Startup {
    pub fn new(handlers: Arc<Handlers>, security: &Security) -> Startup {
        let parameters = Arc::new(Parameters {
            server_version: handlers.shared.service.server_version.clone(),
        });
        let scram = security
            .scram
            .clone()
            .map(|scram| SaslMechanisms::new(vec![Arc::new(scram)]));
        Startup {
            handlers,
            driver: AuthDriver::new(parameters),
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
        let outcome = match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                save_startup_parameters_to_metadata(client, startup);
                if self.tls_required && !client.is_secure() {
                    let e = fatal(
                        "28000",
                        "sluice's SQL endpoint requires TLS: connect with sslmode=require",
                    );
                    return Err(self.failed(client, AuthFailure::Protocol, e).await);
                }
                protocol_negotiation(client, startup).await?;
                let mechanism: Box<dyn AuthMechanism> = match &self.scram {
                    Some(scram) => scram.create(),
                    None => Box::new(Trust),
                };
                self.driver.begin_authentication(client, mechanism).await
            }
            PgWireFrontendMessage::PasswordMessageFamily(m) => {
                self.driver.advance_authentication(client, m).await
            }
            _ => return Ok(()),
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                let reason = self.reason(client, &e);
                return Err(self.failed(client, reason, failed_login(client, e)).await);
            }
        };
        if let AuthOutcome::Authenticated { final_message, .. } = outcome {
            let shared = &self.handlers.shared;
            let permit = slot(shared)?;
            self.driver
                .complete_authentication(client, final_message)
                .await?;
            set_up(shared, client, permit).await?;
        }
        Ok(())
    }
}

impl Startup {
    /// Why a login failed: a wrong password is told apart from an unknown user only
    /// here, for the operator; the client hears the same either way.
    fn reason<C: ClientInfo>(&self, client: &C, e: &PgWireError) -> AuthFailure {
        let user = client.metadata().get("user").cloned().unwrap_or_default();
        let known = |u: &str| {
            self.handlers
                .shared
                .service
                .users
                .as_ref()
                .is_some_and(|users| users.knows(u))
        };
        match e {
            PgWireError::InvalidPassword(_) if known(&user) => AuthFailure::WrongPassword,
            PgWireError::InvalidPassword(_) => AuthFailure::UnknownUser,
            _ => AuthFailure::Protocol,
        }
    }

    /// Counts and logs a failed login, then waits [`FAILURE_DELAY`] before `e` is sent.
    async fn failed<C: ClientInfo + Sync>(
        &self,
        client: &C,
        reason: AuthFailure,
        e: PgWireError,
    ) -> PgWireError {
        let user = client.metadata().get("user").cloned().unwrap_or_default();
        let peer = client.socket_addr().to_string();
        self.handlers
            .shared
            .service
            .metrics
            .auth_failed("postgres", reason, &user, &peer);
        tokio::time::sleep(FAILURE_DELAY).await;
        e
    }
}

/// Logging in without a password (no `[sql.users]`; loopback only).
struct Trust;

#[async_trait]
impl AuthMechanism for Trust {
    async fn begin(&mut self, _client: &(dyn ClientInfo + Send + Sync)) -> PgWireResult<AuthState> {
        Ok(AuthState::Ok {
            final_message: None,
            identity: None,
        })
    }

    async fn next(
        &mut self,
        _client: &(dyn ClientInfo + Send + Sync),
        _message: PasswordMessageFamily,
    ) -> PgWireResult<AuthState> {
        Err(PgWireError::NoAuthenticationInProgress)
    }
}

/// What a client is told about the server at startup (`ParameterStatus`), honestly: a
/// read-only session of a user who is not a superuser, in UTC, with the parameters
/// `SHOW` reports ([`Settings`]).
#[derive(Debug)]
pub struct Parameters {
    server_version: String,
}

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let from_client = |k: &str| client.metadata().get(k).cloned().unwrap_or_default();
        let fixed = [
            ("server_version", self.server_version.as_str()),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("IntervalStyle", "postgres"),
            ("TimeZone", "UTC"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("is_superuser", "off"),
            ("default_transaction_read_only", "on"),
            ("in_hot_standby", "off"),
        ];
        let mut params: HashMap<String, String> = fixed
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        params.insert("application_name".into(), from_client("application_name"));
        params.insert("session_authorization".into(), from_client("user"));
        Some(params)
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
    if let Some(conn) = client.session_extensions().get::<Arc<Conn>>() {
        conn.serves(Arc::downgrade(&new.reader));
        conn.authenticated();
    }
    client.session_extensions().insert(new);
    Ok(())
}
