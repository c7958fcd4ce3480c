//! Integration tests: each runs the real `sluice` binary against a temporary directory and
//! checks what landed in DuckDB and Parquet once the process is gone.
//!
//! Layout:
//! - [`support`]: a temporary deployment (config, inbox, data dir) and a running daemon.
//! - [`csv_arrival`]: how files arrive: present at start, renamed in, written slowly, copies.
//! - [`csv_bad_input`]: dead letters, quarantine, symlinks, bad configuration.
//! - [`csv_storage`]: raw table and Parquet layout, schemas, large files, reconciliation.
//! - [`kafka`]: the Kafka source against librdkafka's mock cluster (a real broker when
//!   `SLUICE_TEST_KAFKA_BROKERS` is set).
//! - [`lifecycle`]: single writer, SIGTERM, and exactly-once across SIGKILL.
//! - [`models`]: dbt-format models under the daemon: incremental equals full, failures,
//!   SIGHUP reload, `sluice check` and `sluice models`.
//! - [`ops`]: metrics, health, readiness, status and systemd notifications.
//! - [`prometheus`]: dist/ (alerts, dashboard, systemd unit) against the real tools.

mod csv_arrival;
mod csv_bad_input;
mod csv_storage;
mod kafka;
mod lifecycle;
mod models;
mod ops;
mod prometheus;
mod support;
