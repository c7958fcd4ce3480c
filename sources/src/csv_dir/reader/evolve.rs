//! A file whose values or header outgrow the table: a value its column's type does not
//! hold widens the column (for this chunk and every one after), and a value in a header
//! field the contract refused is a dead letter, a dropped row or a dropped value.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
};

use arrow::array::{Array, ArrayRef, StringArray};
use sluice_core::{evolve::first_rounded, Column, TableSchema};

use super::{chunk_schema, FileReader};
use crate::typing::{
    cast::CellError,
    contract::{count, Refusal, Refused},
    infer::infer_type,
};

/// What becomes of a record with a value in a refused header field.
pub(super) enum Fate {
    Land,
    Drop,
    /// A dead letter with this error.
    Dead(String),
}

impl FileReader {
    /// The fate of the record just read under the contract's refusals of header fields
    /// (each value kept out is counted in `refused`).
    pub(super) fn refusal(&self, refused: &mut Refused) -> Fate {
        let mut fate = Fate::Land;
        for (i, name, why) in &self.layout.unknown {
            let Some(field) = self.record.get(*i) else {
                continue;
            };
            if field.is_empty() || field == self.opts.null_string.as_slice() {
                continue;
            }
            let why = why.unwrap_or(Refusal::FrozenColumn);
            count(refused, name, why, 1);
            fate = match (fate, why) {
                (Fate::Dead(e), _) => Fate::Dead(e),
                (_, w) if w.is_dead_letter() => Fate::Dead(w.error(name, "")),
                (_, Refusal::DiscardedRow) => Fate::Drop,
                (f, _) => f,
            };
        }
        fate
    }

    /// Widens the columns whose values in `errors` did not parse, as far as the contract
    /// allows (counting in `refused` the values it does not); whether any column changed.
    /// Only rows that then land count: a row with a value no widening takes is a dead
    /// letter, and its other values widen nothing.
    pub(super) fn widen(
        &mut self,
        text: &[StringArray],
        typed: &[ArrayRef],
        errors: &[CellError],
        refused: &mut Refused,
    ) -> bool {
        let mut doomed: HashSet<usize> = HashSet::new();
        let mut refusals: BTreeMap<usize, Refusal> = BTreeMap::new();
        let columns = loop {
            let columns = self.decide(text, typed, errors, &doomed, &mut refusals);
            let more: HashSet<usize> = errors
                .iter()
                .filter(|e| refusals.contains_key(&e.column))
                .map(|e| e.row)
                .collect();
            if more.is_subset(&doomed) {
                break columns;
            }
            doomed.extend(more);
        };
        for (i, why) in refusals {
            let n = errors
                .iter()
                .filter(|e| e.column == i && e.is_bad())
                .count();
            count(refused, &self.layout.data.columns[i].name, why, n as u64);
        }
        if columns == self.layout.data.columns {
            return false;
        }
        let data = Arc::new(TableSchema::new(columns));
        self.schema = chunk_schema(&data);
        self.layout.data = data;
        true
    }

    /// Per column, the type its missed values (those of rows not `doomed`) widen it to (if it
    /// alters none of the column's `typed` values);
    /// the columns the contract refuses to widen are added to `refusals` (and stay).
    fn decide(
        &self,
        text: &[StringArray],
        typed: &[ArrayRef],
        errors: &[CellError],
        doomed: &HashSet<usize>,
        refusals: &mut BTreeMap<usize, Refusal>,
    ) -> Vec<Column> {
        let data = &self.layout.data;
        let mut columns = data.columns.clone();
        for (i, column) in data.columns.iter().enumerate() {
            let missed: StringArray = errors
                .iter()
                .filter(|e| e.column == i && e.is_bad() && !doomed.contains(&e.row))
                .map(|e| Some(text[i].value(e.row)))
                .collect();
            if missed.is_empty() || refusals.contains_key(&i) {
                continue;
            }
            // A widening that would round the values the column holds already (integers
            // beyond 2^53 meeting a DOUBLE) is refused as a frozen type.
            let widened = self
                .opts
                .contract
                .widen(&column.ty, &infer_type(&missed))
                .and_then(
                    |wider| match first_rounded(&typed[i], &wider.arrow_type()) {
                        Ok(None) => Ok(wider),
                        _ => Err(Refusal::FrozenType),
                    },
                );
            match widened {
                Ok(wider) => columns[i].ty = wider,
                Err(why) => {
                    refusals.insert(i, why);
                }
            }
        }
        columns
    }
}
