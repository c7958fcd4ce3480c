//! The Postgres wire protocol listener: psql, BI tools, JDBC, psycopg and DuckDB's own
//! `postgres` scanner read the warehouse while sluice ingests.
//!
//! - [`server`]: the listener ([`serve`]) and cancel requests.
//! - [`connection`]: one connection from accept to close: pgwire's message loop over a
//!   [`guard`]ed socket, the login deadline, the client hanging up.
//! - [`guard`] and [`frames`]: every message's length and fields checked, by phase,
//!   before pgwire decodes it (pgwire trusts them).
//! - [`conn`]: what a connection's parts share (logged in yet, hung up).
//! - [`startup`]: a connection's start: TLS, passwords, the connection limit.
//! - [`auth`]: SCRAM-SHA-256 users and the TLS certificate.
//! - [`client`]: one connection's state: its DuckDB thread ([`crate::reader`]), its session
//!   parameters, the result it has open.
//! - [`simple`] and [`extended`]: the two query protocols (pgwire's handler traits),
//!   both going through [`crate::gate`] before DuckDB sees a statement.
//! - [`statement`]: what one vetted statement does in either protocol.
//! - [`prepared`]: how much one connection may keep prepared.
//! - [`settings`]: `SET`/`SHOW`/`RESET` of session parameters, answered by sluice.
//! - [`types`]: DuckDB types as Postgres OIDs, values in text and binary formats.
//!
//! The protocol itself (framing, startup, SSL negotiation, portals) is pgwire's.

pub mod auth;
mod client;
mod conn;
mod connection;
mod extended;
pub mod frames;
mod guard;
mod prepared;
mod server;
mod settings;
pub(crate) mod shapes;
mod simple;
mod startup;
mod statement;
pub mod types;

pub use auth::Security;
pub use server::serve;
pub use startup::FAILURE_DELAY as LOGIN_FAILURE_DELAY;
