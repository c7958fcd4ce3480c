//! A decoder whose table changes shape: fields no column takes become new columns, and
//! values their column's type does not hold widen it, as the source's schema contract
//! allows; what the contract refuses becomes dead letters, dropped rows or dropped values,
//! each counted (see `typing::contract`).

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
};

use arrow::{array::Int64Array, compute::filter_record_batch, error::ArrowError};
use serde_json::Value;
use sluice_core::{evolve::first_rounded, meta, Column, TableSchema};

use super::{dead_letter, infer::value_type, Decoded, Decoder, Messages, Miss, Partition};
use crate::typing::{
    contract::{count, ColumnsPolicy, Refusal, Refused},
    declared::check_column_name,
};

impl Decoder {
    /// Decodes `messages`, first growing the table's columns as the contract allows
    /// (the decoder keeps the grown schema for the chunks after). Returns the chunk and
    /// what the contract refused in it.
    pub fn decode_evolving(
        &mut self,
        at: Partition<'_>,
        messages: &Messages,
    ) -> Result<(Decoded, Refused), ArrowError> {
        let decoded = self.decode(at, messages)?;
        let (grown, mut refused) = self.grow(&decoded);
        let decoded = match grown {
            Some(schema) => {
                self.data = Arc::new(schema);
                self.decode(at, messages)?
            }
            None => decoded,
        };
        let (decoded, more) = self.refuse(decoded, at, messages)?;
        refused.extend(more);
        Ok((decoded, refused))
    }

    /// The data columns with the chunk's new fields added and its missed values' columns
    /// widened, if the contract allows any; and the widenings it refused. Only messages
    /// that then land count: a message that is a dead letter or dropped (for a refused
    /// field, or a value no widening takes) widens and adds nothing.
    fn grow(&self, decoded: &Decoded) -> (Option<TableSchema>, Refused) {
        let by_fields = self.doomed_by_fields(&decoded.unknown);
        let mut doomed = by_fields.clone();
        let mut refusals: BTreeMap<usize, Refusal> = BTreeMap::new();
        let columns = loop {
            let (columns, more) = self.grow_from(decoded, &doomed, &mut refusals);
            if more.is_subset(&doomed) {
                break columns;
            }
            doomed.extend(more);
        };
        let mut refused = Refused::new();
        for (i, why) in refusals {
            let n = decoded
                .missed
                .iter()
                .filter(|m| m.column == i && !by_fields.contains(&m.message))
                .count();
            count(&mut refused, &self.data.columns[i].name, why, n as u64);
        }
        let changed = columns != self.data.columns;
        (changed.then(|| TableSchema::new(columns)), refused)
    }

    /// The messages a field the table lacks makes dead letters or drops, whatever the
    /// table's columns become (`freeze` and `discard_row`).
    fn doomed_by_fields(
        &self,
        unknown: &[(usize, serde_json::Map<String, Value>)],
    ) -> HashSet<usize> {
        let dooms = !self.keep_unknown
            && matches!(
                self.contract.columns,
                ColumnsPolicy::Freeze | ColumnsPolicy::DiscardRow
            );
        if !dooms {
            return HashSet::new();
        }
        unknown
            .iter()
            .filter(|(_, fields)| {
                fields
                    .iter()
                    .any(|(name, v)| !v.is_null() && check_column_name(name).is_ok())
            })
            .map(|(i, _)| *i)
            .collect()
    }

    /// [`Self::grow`] from the messages not `doomed`: the columns, and the messages that
    /// columns the contract refuses to widen (added to `refusals`, where they stay) make
    /// dead letters.
    fn grow_from(
        &self,
        decoded: &Decoded,
        doomed: &HashSet<usize>,
        refusals: &mut BTreeMap<usize, Refusal>,
    ) -> (Vec<Column>, HashSet<usize>) {
        let mut columns = self.data.columns.clone();
        let mut more = HashSet::new();
        for (i, column) in self.data.columns.iter().enumerate() {
            let misses: Vec<&Miss> = decoded
                .missed
                .iter()
                .filter(|m| m.column == i && !doomed.contains(&m.message))
                .collect();
            if misses.is_empty() {
                continue;
            }
            let fatal = misses.iter().filter(|m| m.bad).map(|m| m.message);
            if refusals.contains_key(&i) {
                more.extend(fatal);
                continue;
            }
            let values: Vec<Value> = misses.iter().map(|m| as_json(&m.text)).collect();
            let refs: Vec<&Value> = values.iter().collect();
            // A struct's values are read as structs, whatever inference does with new fields.
            let nested = match column.ty {
                sluice_core::ColumnType::Struct(_) => super::Nested::Struct,
                _ => self.nested,
            };
            let seen = value_type(&column.name, &refs, nested);
            // A widening that would round values of the column that land (integers beyond
            // 2^53 meeting a DOUBLE) is refused as a frozen type.
            let held = decoded.rows.column_by_name(&column.name);
            let widened = self.contract.widen(&column.ty, &seen).and_then(|wider| {
                match held.map(|a| first_rounded(a, &wider.arrow_type())) {
                    None | Some(Ok(None)) => Ok(wider),
                    Some(_) => Err(Refusal::FrozenType),
                }
            });
            match widened {
                Ok(wider) => columns[i].ty = wider,
                Err(r) => {
                    refusals.insert(i, r);
                    more.extend(fatal);
                }
            }
        }
        if self.contract.columns == ColumnsPolicy::Evolve {
            let live: Vec<&(usize, serde_json::Map<String, Value>)> = decoded
                .unknown
                .iter()
                .filter(|(i, _)| !doomed.contains(i))
                .collect();
            let data_columns = columns.len();
            for name in new_names(&live, &self.data) {
                let with_value = live
                    .iter()
                    .filter_map(|(i, fields)| Some((*i, fields.get(&name)?)))
                    .filter(|(_, v)| !v.is_null());
                if self
                    .contract
                    .new_column(data_columns, columns.len() - data_columns)
                    .is_err()
                {
                    // Past the limit: `refuse` makes each message with a value here a
                    // dead letter (the columns taken before it stay, NULL in its rows).
                    break;
                }
                let values: Vec<&Value> = with_value.map(|(_, v)| v).collect();
                if !values.is_empty() {
                    let ty = value_type(&name, &values, self.nested);
                    columns.push(Column::new(name, ty));
                }
            }
        }
        (columns, more)
    }

    /// Applies the contract to the fields still unknown: a dead letter naming the field,
    /// a dropped row, or a dropped value (none, when `unknown_fields = "keep"` holds them).
    fn refuse(
        &self,
        mut decoded: Decoded,
        at: Partition<'_>,
        messages: &Messages,
    ) -> Result<(Decoded, Refused), ArrowError> {
        let mut refused = Refused::new();
        let mut dropped: HashSet<i64> = HashSet::new();
        let unknown = std::mem::take(&mut decoded.unknown);
        // Messages that are dead letters already (a value no widening takes), whole.
        let dead: HashSet<i64> = decoded
            .dead_letters
            .iter()
            .filter_map(|d| match d.origin {
                sluice_core::Origin::Kafka { offset, .. } => Some(offset),
                _ => None,
            })
            .collect();
        for (i, fields) in &unknown {
            let is_dead = dead.contains(&messages.get(*i).offset);
            let mut row_fate: Option<(Refusal, &str)> = None;
            let present = fields.iter().filter(|(_, v)| !v.is_null());
            for name in present.map(|(name, _)| name) {
                let why = match check_column_name(name) {
                    Err(_) => Refusal::InvalidName,
                    Ok(()) if self.keep_unknown => continue,
                    Ok(()) => match self.contract.new_column(self.data.len(), 0) {
                        // Its message is a dead letter whole, with this field.
                        Ok(()) if is_dead => continue,
                        // A field with a value that `grow` did not take: the column limit.
                        Ok(()) => Refusal::TooManyColumns,
                        Err(r) => r,
                    },
                };
                count(&mut refused, name, why, 1);
                if why.is_dead_letter() || why == Refusal::DiscardedRow {
                    row_fate = row_fate.or(Some((why, name)));
                }
            }
            if let Some((why, name)) = row_fate.filter(|_| !is_dead) {
                let m = messages.get(*i);
                dropped.insert(m.offset);
                if why.is_dead_letter() {
                    decoded
                        .dead_letters
                        .push(dead_letter(why.error(name, ""), at, &m));
                }
            }
        }
        if !dropped.is_empty() {
            decoded.rows = without_offsets(&decoded.rows, &dropped)?;
            decoded.dead_letters.sort_by_key(|d| d.origin.ordinal());
        }
        decoded.unknown = unknown;
        Ok((decoded, refused))
    }
}

/// A missed value's text as the JSON value it was (strings were written without quotes).
fn as_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Unknown fields' names in the order first seen, each once, valid as column names and
/// not (case-insensitively) a column already.
fn new_names(
    unknown: &[&(usize, serde_json::Map<String, Value>)],
    data: &TableSchema,
) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (_, fields) in unknown {
        for name in fields.keys() {
            let known =
                data.position(name).is_some() || names.iter().any(|n| n.eq_ignore_ascii_case(name));
            if !known && check_column_name(name).is_ok() {
                names.push(name.clone());
            }
        }
    }
    names
}

/// The rows whose `_sluice_offset` is not in `offsets`.
fn without_offsets(
    rows: &arrow::record_batch::RecordBatch,
    offsets: &HashSet<i64>,
) -> Result<arrow::record_batch::RecordBatch, ArrowError> {
    let Some(column) = rows
        .column_by_name(meta::OFFSET)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
    else {
        return Ok(rows.clone());
    };
    let keep: arrow::array::BooleanArray = column
        .iter()
        .map(|o| Some(!o.is_some_and(|o| offsets.contains(&o))))
        .collect();
    filter_record_batch(rows, &keep)
}
