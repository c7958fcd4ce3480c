//! The Postgres wire protocol listener: psql, BI tools, JDBC, psycopg and DuckDB's own
//! `postgres` scanner read the warehouse while sluice ingests.
//!
//! - [`server`]: the listener ([`serve`]), connection limit, cancel requests.
//! - [`client`]: one connection's state: its DuckDB thread ([`crate::reader`]), its session
//!   parameters, the result it has open.
//! - [`simple`] and [`extended`]: the two query protocols (pgwire's handler traits),
//!   both going through [`crate::gate`] before DuckDB sees a statement.
//! - [`statement`]: what one vetted statement does in either protocol.
//! - [`settings`]: `SET`/`SHOW`/`RESET` of session parameters, answered by sluice.
//! - [`types`]: DuckDB types as Postgres OIDs, values in text and binary formats.
//!
//! The protocol itself (framing, startup, SSL negotiation, portals) is pgwire's.

mod client;
mod extended;
mod server;
mod settings;
mod simple;
mod statement;
pub mod types;

pub use server::{serve, Options};
