//! A source's schema contract (`[sources.<name>.schema_contract]`, dlt's vocabulary): what
//! happens when input brings a column the table lacks, or a value its column's type does
//! not hold. The default takes both in (`evolve`), so nothing is lost unless a user asks.
//!
//! - `columns`: `evolve` (add the column), `freeze` (each row with a value there is a
//!   dead letter naming the column), `discard_value` (the row lands without that value),
//!   `discard_row` (the row is dropped).
//! - `data_type`: `evolve` (widen the column along the lattice in `sluice_core::evolve`)
//!   or `freeze` (the row is a dead letter naming the column and the value's type).
//! - `widen_to_varchar`: whether `evolve` may fall back on VARCHAR (or JSON, for a struct
//!   or number that meets an object) when no other type holds both (off by default: such
//!   a value is a dead letter naming the column, as `freeze` makes it).
//! - `max_columns`: data columns a table may have; new columns past it are treated as
//!   `freeze` (a feed that puts ids in its field names cannot grow the table without bound).
//!
//! Whatever a contract discards or freezes is counted (`sluice_schema_refused_total`,
//! by reason), logged once per column, and listed in the source's `/status`.

use std::collections::HashSet;

use serde::Deserialize;
use sluice_core::{evolve, ColumnType};

use crate::SourceStatus;

/// `[sources.<name>.schema_contract]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaContract {
    #[serde(default)]
    pub columns: ColumnsPolicy,
    #[serde(default)]
    pub data_type: TypesPolicy,
    /// Off by default: a column that turns VARCHAR breaks every mart's arithmetic on it,
    /// while a dead letter keeps the value and its provenance for a person to look at.
    #[serde(default)]
    pub widen_to_varchar: bool,
    #[serde(default = "default_max_columns")]
    pub max_columns: usize,
}

impl Default for SchemaContract {
    fn default() -> Self {
        SchemaContract {
            columns: ColumnsPolicy::default(),
            data_type: TypesPolicy::default(),
            widen_to_varchar: false,
            max_columns: DEFAULT_MAX_COLUMNS,
        }
    }
}

/// Data columns a table may have unless `max_columns` says otherwise.
pub const DEFAULT_MAX_COLUMNS: usize = 1_000;

/// The most `max_columns` may be (DuckDB's own limit on a table is far above; this bounds
/// what one source's schema costs in memory and per row).
pub const MAX_COLUMNS_LIMIT: usize = 10_000;

fn default_max_columns() -> usize {
    DEFAULT_MAX_COLUMNS
}

/// What a column the table lacks becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnsPolicy {
    #[default]
    Evolve,
    Freeze,
    DiscardValue,
    DiscardRow,
}

/// What a value the column's type does not hold becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypesPolicy {
    #[default]
    Evolve,
    Freeze,
}

/// Why a contract kept input out of the table (the `reason` label, and the dead letter's
/// or log line's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// `columns = "freeze"`: rows with a value in the column are dead letters.
    FrozenColumn,
    /// `columns = "discard_value"`: the values are dropped, the rows land.
    DiscardedValue,
    /// `columns = "discard_row"`: the rows are dropped.
    DiscardedRow,
    /// The table has `max_columns` data columns: treated as `freeze`.
    TooManyColumns,
    /// `data_type = "freeze"`, or VARCHAR needed where `widen_to_varchar = false`: rows
    /// with such a value are dead letters.
    FrozenType,
    /// A field whose name cannot be a column (empty, reserved for sluice, too long): its
    /// values are dropped, the rows land.
    InvalidName,
}

impl Refusal {
    /// The metric's `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::FrozenColumn => "frozen_column",
            Refusal::DiscardedValue => "discarded_value",
            Refusal::DiscardedRow => "discarded_row",
            Refusal::TooManyColumns => "too_many_columns",
            Refusal::FrozenType => "frozen_type",
            Refusal::InvalidName => "invalid_name",
        }
    }

    /// Whether the row becomes a dead letter (rather than landing or being dropped).
    pub fn is_dead_letter(self) -> bool {
        matches!(
            self,
            Refusal::FrozenColumn | Refusal::TooManyColumns | Refusal::FrozenType
        )
    }

    /// The dead letter's error for a value in `column`.
    pub fn error(self, column: &str, detail: &str) -> String {
        let column = sluice_core::text::bounded(column, 200);
        match self {
            Refusal::FrozenColumn => format!(
                "column {column:?} is not in the table and schema_contract.columns = \"freeze\""
            ),
            Refusal::TooManyColumns => format!(
                "column {column:?} is not in the table, which has schema_contract.max_columns \
                 data columns already"
            ),
            Refusal::FrozenType => format!("column {column:?}: {detail}"),
            Refusal::InvalidName => format!("field {column:?} cannot be a column: {detail}"),
            Refusal::DiscardedValue | Refusal::DiscardedRow => {
                format!("column {column:?}: discarded ({})", self.label())
            }
        }
    }
}

impl SchemaContract {
    /// What becomes of a column the table lacks, when the table has `data_columns` data
    /// columns and `added` were already admitted from the same input.
    pub fn new_column(&self, data_columns: usize, added: usize) -> Result<(), Refusal> {
        match self.columns {
            ColumnsPolicy::Evolve if data_columns + added >= self.max_columns => {
                Err(Refusal::TooManyColumns)
            }
            ColumnsPolicy::Evolve => Ok(()),
            ColumnsPolicy::Freeze => Err(Refusal::FrozenColumn),
            ColumnsPolicy::DiscardValue => Err(Refusal::DiscardedValue),
            ColumnsPolicy::DiscardRow => Err(Refusal::DiscardedRow),
        }
    }

    /// The type a column of type `current` widens to so that it holds values of type
    /// `seen`, or why it may not.
    pub fn widen(&self, current: &ColumnType, seen: &ColumnType) -> Result<ColumnType, Refusal> {
        let wider = evolve::widen(current, seen);
        if wider == *current {
            return Ok(wider);
        }
        let refused = self.data_type == TypesPolicy::Freeze
            || (!self.widen_to_varchar && evolve::is_last_resort(current, &wider));
        match refused {
            true => Err(Refusal::FrozenType),
            false => Ok(wider),
        }
    }

    /// Every problem, as `(key relative to the source, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if !(1..=MAX_COLUMNS_LIMIT).contains(&self.max_columns) {
            problems.push((
                "schema_contract.max_columns".into(),
                format!("must be between 1 and {MAX_COLUMNS_LIMIT}"),
            ));
        }
        problems
    }
}

/// What a contract kept out of one chunk: per column and reason, how many values.
pub type Refused = Vec<(String, Refusal, u64)>;

/// Adds `n` values of `column` kept out for `why`.
pub fn count(refused: &mut Refused, column: &str, why: Refusal, n: u64) {
    match refused
        .iter_mut()
        .find(|(c, r, _)| c == column && *r == why)
    {
        Some(entry) => entry.2 += n,
        None => refused.push((column.to_string(), why, n)),
    }
}

/// Reports what a contract kept out: the metric, the source's status, and one WARN line
/// per column and reason (for the first [`LOGGED_COLUMNS`] of them).
#[derive(Debug, Default)]
pub struct RefusalLog {
    logged: HashSet<(String, Refusal)>,
}

/// Columns and reasons a source logs a line for; past it, the metric and `/status` go on
/// counting (a feed that puts ids in its field names would otherwise log without end).
pub const LOGGED_COLUMNS: usize = 1_000;

impl RefusalLog {
    pub fn report(
        &mut self,
        source: &str,
        table: &str,
        status: &SourceStatus,
        refused: &[(String, Refusal, u64)],
    ) {
        for (column, why, n) in refused {
            crate::telemetry::schema_refused(source, why.label(), *n);
            status.record_refused(why.label(), column, *n);
            if self.logged.len() < LOGGED_COLUMNS && self.logged.insert((column.clone(), *why)) {
                let column = sluice_core::text::bounded(column, 200);
                tracing::warn!(source, table, %column, reason = why.label(),
                    "the schema contract keeps a column's values out (counted in sluice_schema_refused_total; logged once per column)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<SchemaContract, String> {
        toml::from_str(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_default_evolves_and_widens_but_not_to_varchar() {
        let c = parse("").expect("empty");
        assert_eq!(c, SchemaContract::default());
        assert_eq!(c.new_column(3, 0), Ok(()));
        assert_eq!(
            c.widen(&ColumnType::BigInt, &ColumnType::Double),
            Ok(ColumnType::Double)
        );
        assert_eq!(
            c.widen(&ColumnType::BigInt, &ColumnType::Boolean),
            Err(Refusal::FrozenType)
        );
        let c = parse("widen_to_varchar = true").expect("parses");
        assert_eq!(
            c.widen(&ColumnType::BigInt, &ColumnType::Boolean),
            Ok(ColumnType::Varchar)
        );
    }

    #[test]
    fn policies_refuse_as_named() {
        let c = parse("columns = \"discard_row\"\ndata_type = \"freeze\"").expect("parses");
        assert_eq!(c.new_column(1, 0), Err(Refusal::DiscardedRow));
        assert_eq!(
            c.widen(&ColumnType::BigInt, &ColumnType::Double),
            Err(Refusal::FrozenType)
        );
        assert_eq!(
            c.widen(&ColumnType::Double, &ColumnType::BigInt),
            Ok(ColumnType::Double)
        );
        let c = parse("max_columns = 4").expect("parses");
        assert_eq!(
            c.widen(
                &ColumnType::BigInt,
                &ColumnType::Decimal {
                    precision: 5,
                    scale: 2
                }
            ),
            Ok(ColumnType::Decimal {
                precision: 21,
                scale: 2
            })
        );
        assert_eq!(
            c.widen(&ColumnType::Date, &ColumnType::Double),
            Err(Refusal::FrozenType)
        );
        assert_eq!(c.new_column(3, 0), Ok(()));
        assert_eq!(c.new_column(3, 1), Err(Refusal::TooManyColumns));
    }

    #[test]
    fn bad_contracts_are_refused_with_their_key() {
        assert!(parse("columns = \"grow\"")
            .unwrap_err()
            .contains("unknown variant"));
        assert!(parse("colums = \"evolve\"")
            .unwrap_err()
            .contains("unknown field"));
        let zero = parse("max_columns = 0").expect("parses");
        assert_eq!(zero.validate()[0].0, "schema_contract.max_columns");
    }
}
