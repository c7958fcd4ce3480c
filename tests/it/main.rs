//! Integration tests: each runs the real `sluice` binary against a temporary directory and
//! checks what landed in DuckDB and Parquet once the process is gone.
//!
//! Layout:
//! - [`support`]: a temporary deployment (config, inbox, data dir) and a running daemon.
//! - [`csv_arrival`]: how files arrive: present at start, renamed in, written slowly, copies.
//! - [`csv_changes`]: files that grow or change after (part of) them was committed.
//! - [`csv_bad_input`]: dead letters, quarantine, symlinks, bad configuration.
//! - [`csv_poison`]: files that try to stop the daemon: over-long lines and headers,
//!   files that cannot be opened for a while, a file whose rows DuckDB refuses.
//! - [`csv_storage`]: raw table and Parquet layout, schemas, large files, reconciliation.
//! - [`faults`]: SIGKILL at each fault point of the commit path, then a restart.
//! - [`kafka`]: the Kafka source against librdkafka's mock cluster (a real broker when
//!   `SLUICE_TEST_KAFKA_BROKERS` is set).
//! - [`lake`]: raw tables published as Delta tables (local and on a real S3 server), read
//!   back by the `deltalake` and Polars Python packages; kills and a store outage.
//! - [`lifecycle`]: single writer, signals at any moment of start-up, SIGTERM, and
//!   exactly-once across SIGKILL.
//! - [`models`]: dbt-format models under the daemon: incremental equals full, failures,
//!   SIGHUP reload, `sluice check` and `sluice models`.
//! - [`ops`]: metrics, health, readiness, status and systemd notifications.
//! - [`source_seam`]: a test-only source type added by its module and one registry line,
//!   killed on either side of a commit.
//! - [`sql`]: the live SQL endpoint with real clients (psql): reads while ingesting,
//!   refusals, cancel and timeout, the connection limit, a streamed 10M-row result.
//! - [`sql_attacks`]: the SQL endpoint attacked as an outsider would: file names,
//!   oversized and malformed messages, slow and unauthenticated connections, huge values,
//!   password guessing, over Postgres and HTTP, while the daemon ingests.
//! - [`sql_auth`]: the SQL endpoint off loopback: SCRAM passwords and TLS (psql, openssl).
//! - [`sql_checkpoints`]: a client holding a snapshot, DuckDB's checkpoints and the WAL.
//! - [`sql_http`]: `POST /query` (JSON, CSV, Arrow), `GET /catalog`, `sluice sql`.
//! - [`storage`]: the data directory's disk full, or read-only: commits wait, then resume.
//! - [`types`]: every supported column type through each source into DuckDB and Parquet.
//! - [`prometheus`]: dist/ (alerts, dashboard, systemd unit) against the real tools.

mod csv_arrival;
mod csv_bad_input;
mod csv_changes;
mod csv_poison;
mod csv_storage;
mod faults;
mod kafka;
mod lake;
mod lifecycle;
mod models;
mod ops;
mod prometheus;
mod schema_change;
mod source_seam;
mod sql;
mod sql_attacks;
mod sql_auth;
mod sql_checkpoints;
mod sql_http;
mod storage;
mod support;
mod types;
