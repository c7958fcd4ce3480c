//! # sluice-sql: SQL on the live warehouse, read-only
//!
//! Clients (psql, BI tools, notebooks, agents) query the raw tables and marts while sluice
//! ingests. This crate decides what they may run; the wire protocols sit on top of it.
//!
//! - [`gate`]: a query string in, the statements to run out, or a refusal with a
//!   Postgres SQLSTATE. The decision comes from DuckDB's own parse of the text
//!   (`json_serialize_sql`): only queries, reading only the warehouse's schemas, no table
//!   function or replacement scan that reaches the file system. Statements run in
//!   `READ ONLY` transactions besides, so a write that got past the gate still fails.
//! - [`split`]: a query string cut into statements at top-level semicolons; the gate
//!   accepts a cut only where DuckDB's parse of the pieces agrees with its parse of the
//!   whole.
//! - [`session`]: the session statements clients send on their own (`BEGIN`, `SET`,
//!   `SHOW`, `RESET`, `DISCARD`), recognised by a strict grammar and answered by sluice,
//!   never handed to DuckDB as written.
//! - [`reader`]: one client's DuckDB connection on its own thread: statements in
//!   `READ ONLY` transactions, results pulled chunk by chunk, interrupts for cancel and
//!   timeout.
//! - [`copy`]: `COPY (query) TO STDOUT` (psql's `\copy`), the one `COPY` allowed.
//! - [`shims`]: Postgres functions DuckDB lacks or answers differently
//!   (`pg_get_userbyid`, `current_setting`, a Postgres-style `version()`), as temporary
//!   macros.
//! - [`catalog`]: Postgres's system catalog (`pg_class`, `pg_attribute` with Postgres
//!   type OIDs, `pg_type`, ...) as temporary table macros, for psql's `\d`, JDBC's
//!   `getColumns` and SQLAlchemy's reflection.
//! - [`rewrite`]: the one edit made to a vetted query: catalog names and shimmed calls
//!   renamed to sluice's stand-ins, where DuckDB's parse says they are written.
//! - [`service`]: what every client shares, whichever protocol: the warehouse
//!   connection, the readable scope, limits, connection slots, metrics.
//! - [`http`]: one query for an HTTP client (`POST /query` on the daemon's listener),
//!   its result streamed as JSON, CSV or Arrow IPC.
//! - [`pg`]: the Postgres wire protocol listener (pgwire) on top of the three above.
//! - [`metrics`]: the endpoint's metrics.

pub mod catalog;
pub mod copy;
pub mod gate;
pub mod http;
pub mod metrics;
pub mod pg;
pub mod reader;
pub mod rewrite;
pub mod service;
pub mod session;
pub mod shims;
pub mod split;

pub use gate::{vet, Refusal, Scope, Vetted};
pub use service::{Limits, Service};
pub use session::Command;
