//! # sluice-models: dbt-format SQL models maintained after each commit
//!
//! This crate is where models live: reading a dbt project's `*.sql` and `schema.yml`,
//! rendering their Jinja, ordering them by `ref`, and materializing them (view, table,
//! incremental with append / merge / delete+insert) from the rows newer than each model's
//! watermark. It is empty until the models issue lands; sources and sinks never depend
//! on it, and it will only see tables and watermarks.
