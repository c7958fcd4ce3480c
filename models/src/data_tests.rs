//! Data tests from `schema.yml`: unique, not_null, accepted_values and relationships on a
//! model's columns. Each is one query counting failing rows; the latest result of every test
//! is kept in `_sluice.test_results`.

use std::path::PathBuf;

use duckdb::Connection;
use sluice_core::Ident;

use crate::{
    error::{DuckdbContext, Result},
    render::{Catalog, Resolved},
};

/// Whether a failing test is an error or a warning (dbt's `severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Warn,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warn => "warn",
            Severity::Error => "error",
        }
    }
}

/// The relation a `relationships` test points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelationRef {
    Ref(String),
    Source(String, String),
}

impl RelationRef {
    /// Parses `ref('name')` or `source('source', 'table')`.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let bad = || format!("to: {text:?} must be ref('model') or source('source', 'table')");
        let t = text.trim();
        let (func, rest) = t.split_once('(').ok_or_else(bad)?;
        let args = rest.strip_suffix(')').ok_or_else(bad)?;
        let args: Vec<String> = args
            .split(',')
            .map(|a| a.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
            .collect();
        match (func.trim(), args.as_slice()) {
            ("ref", [name]) => Ok(RelationRef::Ref(name.clone())),
            ("source", [s, t]) => Ok(RelationRef::Source(s.clone(), t.clone())),
            _ => Err(bad()),
        }
    }

    fn sql(&self, catalog: &Catalog) -> std::result::Result<String, String> {
        match self {
            RelationRef::Ref(name) => match catalog.resolve_ref(name)? {
                Resolved::Model(id) => Ok(catalog.relation(&catalog.model_schema, &id)),
                Resolved::Raw(id) => Ok(catalog.relation(&catalog.raw_schema, &id)),
                Resolved::Ephemeral(id) => Err(format!(
                    "ref({id:?}) is an ephemeral model: there is no relation to test against"
                )),
            },
            RelationRef::Source(source, table) => {
                let schema = catalog.source_schema(source)?;
                let id = Ident::new(table).map_err(|e| format!("source table: {e}"))?;
                Ok(catalog.relation(&schema, &id))
            }
        }
    }
}

/// What a test checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestKind {
    Unique,
    NotNull,
    AcceptedValues(Vec<String>),
    Relationships { to: RelationRef, field: Ident },
}

/// One test on one column of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataTest {
    pub model: String,
    pub column: Ident,
    pub kind: TestKind,
    pub severity: Severity,
    pub path: PathBuf,
    pub line: Option<usize>,
}

/// The outcome of running a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub name: String,
    pub model: String,
    pub severity: Severity,
    /// Rows that break the test (0 = pass).
    pub failures: u64,
    /// Why the test could not run, if it could not (counts as a failure).
    pub error: Option<String>,
}

impl TestResult {
    pub fn passed(&self) -> bool {
        self.failures == 0 && self.error.is_none()
    }
}

impl DataTest {
    /// dbt's naming: `unique_<model>_<column>`, `not_null_...`, and so on.
    pub fn name(&self) -> String {
        let kind = match self.kind {
            TestKind::Unique => "unique",
            TestKind::NotNull => "not_null",
            TestKind::AcceptedValues(_) => "accepted_values",
            TestKind::Relationships { .. } => "relationships",
        };
        format!("{kind}_{}_{}", self.model, self.column)
    }

    /// A query returning the number of failing rows.
    pub fn sql(&self, catalog: &Catalog) -> std::result::Result<String, String> {
        let model = Ident::new(&self.model).map_err(|e| e.to_string())?;
        let table = catalog.relation(&catalog.model_schema, &model);
        let col = self.column.quoted();
        Ok(match &self.kind {
            TestKind::Unique => format!(
                "SELECT count(*) FROM (SELECT {col} FROM {table} WHERE {col} IS NOT NULL \
                 GROUP BY {col} HAVING count(*) > 1)"
            ),
            TestKind::NotNull => format!("SELECT count(*) FROM {table} WHERE {col} IS NULL"),
            TestKind::AcceptedValues(values) => {
                let list: Vec<String> = values.iter().map(|v| sql_string(v)).collect();
                format!(
                    "SELECT count(*) FROM {table} WHERE {col} IS NOT NULL \
                     AND CAST({col} AS VARCHAR) NOT IN ({})",
                    list.join(", ")
                )
            }
            TestKind::Relationships { to, field } => {
                let parent = to.sql(catalog)?;
                format!(
                    "SELECT count(*) FROM {table} AS child WHERE child.{col} IS NOT NULL \
                     AND NOT EXISTS (SELECT 1 FROM {parent} AS parent WHERE parent.{} = child.{col})",
                    field.quoted()
                )
            }
        })
    }

    /// Runs the test and records its result.
    pub fn run(&self, conn: &Connection, catalog: &Catalog, batch: i64) -> Result<TestResult> {
        let name = self.name();
        let sql = self.sql(catalog).map_err(|m| crate::ModelError::Output {
            model: self.model.clone(),
            message: format!("test {name}: {m}"),
        })?;
        let failures: i64 = conn
            .query_row(&sql, [], |r| r.get(0))
            .ctx(&self.model, || format!("running test {name}"))?;
        sluice_state::models::record_test(
            conn,
            &sluice_state::models::TestRecord {
                model: &self.model,
                test: &name,
                column: self.column.as_str(),
                severity: self.severity.as_str(),
                failures,
                batch,
            },
        )?;
        Ok(TestResult {
            name,
            model: self.model.clone(),
            severity: self.severity,
            failures: failures.max(0) as u64,
            error: None,
        })
    }
}

/// A SQL string literal.
fn sql_string(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_relationship_targets() {
        assert_eq!(
            RelationRef::parse("ref('customers')"),
            Ok(RelationRef::Ref("customers".into()))
        );
        assert_eq!(
            RelationRef::parse("source(\"raw\", 'orders')"),
            Ok(RelationRef::Source("raw".into(), "orders".into()))
        );
        assert!(RelationRef::parse("customers").is_err());
    }
}
