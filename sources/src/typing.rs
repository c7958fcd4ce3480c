//! Typing text into Arrow, the same for every source: what a CSV field or a JSON value
//! becomes in a raw table.
//!
//! - [`contract`]: a source's schema contract: what new columns and values of another type
//!   become (added and widened by default, or refused as the user asks).
//! - [`declared`]: a source's declared columns (`[schema]`) validated, the rule for data
//!   column names, and the raw table's schema (data, then sluice's columns).
//! - [`infer`]: a schema for a table nobody declared, from sampled values.
//! - [`cast`]: text columns cast to their types in one vectorised step; a value that does
//!   not parse marks its row as bad (a dead letter), the others land.

pub mod cast;
pub mod contract;
pub mod declared;
pub mod infer;
