//! # sluice-models: dbt-format SQL models maintained after each commit
//!
//! Layout, in the order a model travels:
//! - [`project`]: finding model files: a dbt project (`dbt_project.yml`, folder config) or a
//!   folder of `.sql`, and the `schema.yml` files beside them (column tests, sources).
//! - [`config`]: a model's configuration layers (materialized, unique_key, strategy).
//! - [`render`]: Jinja with dbt's context (`config`, `ref`, `source`, `this`,
//!   `is_incremental`) and sluice's `new_rows()`, via minijinja.
//! - [`plan`]: every model rendered once, ordered by `ref`, with the raw tables it reads.
//! - [`compile`]: binding every model against the database without running it.
//! - [`materialize`]: views, tables, and incremental append / merge / delete+insert.
//! - [`data_tests`]: unique, not_null, accepted_values, relationships.
//! - [`runner`]: which models are due after a commit; failures, retries, reports.
//!
//! Sources and sinks never depend on this crate; it only sees tables, the batch ledger and
//! watermarks, all read and written through `sluice-state`. A model's rows and its watermark commit in one transaction, so a crash
//! leaves it before or after a batch, never half-way.

pub mod compile;
pub mod config;
pub mod data_tests;
mod error;
pub mod materialize;
pub mod plan;
pub mod project;
pub mod render;
pub mod runner;

pub use compile::{compile, CompileReport};
pub use config::{Materialized, ModelConfig, Strategy};
pub use data_tests::{Severity, TestResult};
pub use error::{ModelError, Result};
pub use plan::{ModelPlan, Plan};
pub use project::{Problems, Project};
pub use runner::{ModelReport, ModelRunner, Outcome, RunOptions, StoredReport};
