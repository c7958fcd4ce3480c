//! Messages into rows. Each message is parsed on its own (JSON object, CSV lines or raw
//! payload) into text per column; the columns are then typed in one vectorised cast (the
//! same as CSV's). A message that does not parse, is too large, or has a value that does
//! not fit its column becomes a dead letter with its topic, partition, offset and key; the
//! other messages of the chunk still land.

use std::sync::Arc;

use arrow::{
    array::{
        ArrayRef, BinaryBuilder, BooleanArray, Int32Array, Int64Array, StringArray, StringBuilder,
        TimestampMicrosecondArray,
    },
    compute::filter_record_batch,
    error::ArrowError,
    record_batch::RecordBatch,
};
use serde_json::Value;
use sluice_core::{Column, ColumnType, DeadLetter, Origin, TableSchema, DEAD_LETTER_RAW_LIMIT};

use super::config::{Format, Nested};
use crate::typing::{
    cast::{type_columns, CellError},
    contract::SchemaContract,
};

/// What a partition's messages decode to.
#[derive(Debug)]
pub struct Decoded {
    /// Data columns plus the Kafka provenance columns.
    pub rows: RecordBatch,
    pub dead_letters: Vec<DeadLetter>,
    /// JSON fields no column takes, by message index (only messages that have some).
    pub unknown: Vec<(usize, serde_json::Map<String, Value>)>,
    /// Values their column's type does not hold, and STRUCT values with new fields.
    pub missed: Vec<Miss>,
}

/// A value its column's type does not hold (or a STRUCT value with new fields).
#[derive(Debug)]
pub struct Miss {
    /// The data column's index.
    pub column: usize,
    /// The message's index in the decoded messages.
    pub message: usize,
    /// The value's text.
    pub text: String,
    /// The value does not parse as the column's type (a STRUCT value with new fields
    /// does): its message is a dead letter unless the column widens.
    pub bad: bool,
}

/// Decodes messages of one partition against the table's data columns.
#[derive(Debug, Clone)]
pub struct Decoder {
    pub format: Format,
    pub data: Arc<TableSchema>,
    /// Keep JSON fields no column takes in `_sluice_extra`.
    pub keep_unknown: bool,
    pub max_message_bytes: usize,
    pub source: Arc<str>,
    /// What new fields and values of other types do ([`Decoder::decode_evolving`]).
    pub contract: SchemaContract,
    /// What a new field of objects becomes.
    pub nested: Nested,
}

/// Where the messages come from.
#[derive(Debug, Clone, Copy)]
pub struct Partition<'a> {
    pub topic: &'a Arc<str>,
    pub partition: i32,
}

impl Decoder {
    /// Every column of the raw table: data, the commit columns, then provenance (the
    /// same order as a file source's tables).
    pub fn raw_columns(&self) -> TableSchema {
        let provenance = crate::kafka::provenance::columns()
            .into_iter()
            .chain(self.extra_column());
        crate::typing::declared::raw_columns(&self.data, provenance)
    }

    /// The chunk's columns: data then provenance (the committer adds batch and time).
    pub fn chunk_schema(&self) -> TableSchema {
        let mut columns = self.data.columns.clone();
        columns.extend(crate::kafka::provenance::columns());
        columns.extend(self.extra_column());
        TableSchema::new(columns)
    }

    fn extra_column(&self) -> Option<Column> {
        self.keep_unknown
            .then(|| Column::new(crate::kafka::provenance::EXTRA, ColumnType::Json))
    }

    pub fn decode(&self, at: Partition<'_>, messages: &Messages) -> Result<Decoded, ArrowError> {
        let n_cols = self.data.len();
        let mut text: Vec<StringBuilder> = (0..n_cols).map(|_| StringBuilder::new()).collect();
        let mut blobs = BinaryBuilder::new();
        let blob = self.format == Format::Raw && self.data.columns[0].ty == ColumnType::Blob;
        let mut row_msg: Vec<usize> = Vec::new();
        let mut extra = StringBuilder::new();
        let mut dead_letters = Vec::new();
        let mut unknown = Vec::new();
        let mut scratch = JsonScratch::new(n_cols);
        for (i, m) in messages.iter().enumerate() {
            let payload = m.payload.unwrap_or_default();
            if m.size() > self.max_message_bytes {
                let error = format!(
                    "message of {} bytes is over max_message_bytes ({})",
                    m.size(),
                    self.max_message_bytes
                );
                dead_letters.push(dead_letter(error, at, &m));
                continue;
            }
            if self.format == Format::Json {
                // The hot path: fields go to one reused buffer, then straight to the builders.
                match scratch.parse(payload, &self.data) {
                    Ok(()) => {
                        if let Some(fields) =
                            scratch.append_to(&mut text, &mut extra, self.keep_unknown)
                        {
                            unknown.push((i, fields));
                        }
                        row_msg.push(i);
                    }
                    Err(error) => dead_letters.push(dead_letter(error, at, &m)),
                }
                continue;
            }
            let parsed = if blob {
                blobs.append_option(m.payload);
                Ok(vec![(Vec::new(), None)])
            } else {
                self.records(payload)
            };
            match parsed {
                Ok(records) => {
                    for (record, unknown) in records {
                        extra.append_option(unknown);
                        for (b, v) in text
                            .iter_mut()
                            .zip(record.into_iter().chain(std::iter::repeat(None)))
                        {
                            b.append_option(v);
                        }
                        row_msg.push(i);
                    }
                }
                Err(error) => dead_letters.push(dead_letter(error, at, &m)),
            }
        }
        let text: Vec<StringArray> = text.into_iter().map(|mut b| b.finish()).collect();
        let (mut typed, cell_errors) = if blob {
            (vec![Arc::new(blobs.finish()) as ArrayRef], Vec::new())
        } else {
            type_columns(text.clone(), &self.data)?
        };
        let missed = cell_errors
            .iter()
            .map(|e| Miss {
                column: e.column,
                message: row_msg[e.row],
                text: text[e.column].value(e.row).to_string(),
                bad: e.is_bad(),
            })
            .collect();
        let mut bad = vec![false; row_msg.len()];
        for e in cell_errors.into_iter().filter(CellError::is_bad) {
            if !bad[e.row] {
                bad[e.row] = true;
                dead_letters.push(dead_letter(e.message, at, &messages.get(row_msg[e.row])));
            }
        }
        typed.extend(self.provenance(at, messages, &row_msg));
        if self.keep_unknown {
            typed.push(Arc::new(extra.finish()));
        }
        let schema = self.chunk_schema().arrow_schema();
        let rows = RecordBatch::try_new(schema, typed)?;
        let rows = if bad.iter().any(|b| *b) {
            // A message with any bad record is a dead letter as a whole: none of its rows land.
            let bad_msgs: std::collections::HashSet<usize> = bad
                .iter()
                .zip(&row_msg)
                .filter(|(b, _)| **b)
                .map(|(_, m)| *m)
                .collect();
            let keep: BooleanArray = row_msg
                .iter()
                .map(|m| Some(!bad_msgs.contains(m)))
                .collect();
            filter_record_batch(&rows, &keep)?
        } else {
            rows
        };
        dead_letters.sort_by_key(|d| d.origin.ordinal());
        Ok(Decoded {
            rows,
            dead_letters,
            unknown,
            missed,
        })
    }

    /// The records of a CSV or raw payload, each a text value (or NULL) per data column.
    fn records(&self, payload: &[u8]) -> Result<Vec<Record>, String> {
        match self.format {
            // Parsed by `JsonScratch` before this is reached; an error rather than a panic.
            Format::Json => Err("internal: a JSON payload took the CSV/raw path".into()),
            Format::Csv => csv_records(payload, self.data.len())
                .map(|rs| rs.into_iter().map(|r| (r, None)).collect()),
            Format::Raw => std::str::from_utf8(payload)
                .map(|s| vec![(vec![Some(s.to_string())], None)])
                .map_err(|e| {
                    format!(
                        "payload is not UTF-8 ({e}); declare {} = \"BLOB\" to keep bytes",
                        super::config::PAYLOAD
                    )
                }),
        }
    }

    fn provenance(
        &self,
        at: Partition<'_>,
        messages: &Messages,
        row_msg: &[usize],
    ) -> Vec<ArrayRef> {
        let n = row_msg.len();
        let mut keys = StringBuilder::new();
        for &i in row_msg {
            keys.append_option(messages.get(i).key.map(String::from_utf8_lossy));
        }
        let stamps: TimestampMicrosecondArray = row_msg
            .iter()
            .map(|&i| messages.get(i).timestamp_ms.map(|ms| ms * 1000))
            .collect::<TimestampMicrosecondArray>()
            .with_timezone("UTC");
        vec![
            Arc::new(StringArray::from(vec![Some(&*self.source); n])),
            Arc::new(StringArray::from(vec![Some(&**at.topic); n])),
            Arc::new(Int32Array::from_value(at.partition, n)),
            Arc::new(
                row_msg
                    .iter()
                    .map(|&i| messages.get(i).offset)
                    .collect::<Int64Array>(),
            ),
            Arc::new(keys.finish()),
            Arc::new(stamps),
        ]
    }
}

fn dead_letter(error: String, at: Partition<'_>, m: &Message<'_>) -> DeadLetter {
    let key = m
        .key
        .map(|k| String::from_utf8_lossy(&k[..k.len().min(DEAD_LETTER_RAW_LIMIT)]).into_owned());
    DeadLetter::new(
        error,
        m.payload.unwrap_or_default(),
        Origin::Kafka {
            topic: at.topic.clone(),
            partition: at.partition,
            offset: m.offset,
            key,
        },
    )
}

/// One record: a text value (or NULL) per data column, and the unknown fields kept (as a
/// JSON object's text).
type Record = (Vec<Option<String>>, Option<String>);

/// One JSON message's fields as text per column, in one buffer reused for every message
/// of a chunk (no allocation per field: this is the per-message hot path). Unknown fields
/// are ignored or, when kept, collected as a JSON object's text.
struct JsonScratch {
    text: String,
    /// Per data column, the value's span in `text` (`None`: absent or JSON null).
    spans: Vec<Option<(usize, usize)>>,
    unknown: serde_json::Map<String, Value>,
}

impl JsonScratch {
    fn new(columns: usize) -> Self {
        JsonScratch {
            text: String::new(),
            spans: vec![None; columns],
            unknown: serde_json::Map::new(),
        }
    }

    /// Parses one payload; on error nothing of it is kept.
    fn parse(&mut self, payload: &[u8], data: &TableSchema) -> Result<(), String> {
        self.text.clear();
        self.spans.iter_mut().for_each(|s| *s = None);
        self.unknown.clear();
        let mut de = serde_json::Deserializer::from_slice(payload);
        let row = Row {
            data,
            scratch: self,
        };
        serde::de::DeserializeSeed::deserialize(row, &mut de)
            .and_then(|()| de.end())
            .map_err(|e| match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    format!("not valid JSON: {e}")
                }
                _ => format!("not a JSON object ({e})"),
            })
    }

    /// Appends the parsed row to the column builders (and, when `keep`, its unknown
    /// fields to `extra`); returns the unknown fields, if any.
    fn append_to(
        &mut self,
        columns: &mut [StringBuilder],
        extra: &mut StringBuilder,
        keep: bool,
    ) -> Option<serde_json::Map<String, Value>> {
        for (b, span) in columns.iter_mut().zip(&self.spans) {
            b.append_option(span.map(|(from, to)| &self.text[from..to]));
        }
        if self.unknown.is_empty() {
            extra.append_null();
            return None;
        }
        let unknown = std::mem::take(&mut self.unknown);
        if keep {
            extra.append_value(Value::Object(unknown.clone()).to_string());
        }
        Some(unknown)
    }
}

/// Fills one row's text values from a JSON object; fields no column takes are collected.
struct Row<'a> {
    data: &'a TableSchema,
    scratch: &'a mut JsonScratch,
}

impl<'de> serde::de::DeserializeSeed<'de> for Row<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Row<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Producers write fields in one order, usually the table's (an inferred table's
        // is the first message's): the column after the last one found is tried first,
        // which spares a scan of the names per field (9% of a busy source's time).
        let columns = &self.data.columns;
        let mut next = 0;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let at = match columns.get(next) {
                Some(c) if c.name == *key => Some(next),
                _ => self.data.position(&key),
            };
            match at {
                Some(i) => {
                    next = i + 1;
                    let from = self.scratch.text.len();
                    let present = map.next_value_seed(AsText(&mut self.scratch.text))?;
                    self.scratch.spans[i] = present.then_some((from, self.scratch.text.len()));
                }
                None => {
                    let value = map.next_value::<Value>()?;
                    self.scratch.unknown.insert(key.into_owned(), value);
                }
            }
        }
        Ok(())
    }
}

/// Writes a JSON value as the text the column cast reads: strings as they are, numbers
/// and booleans as written, nested objects and arrays as JSON text; `false` for null.
struct AsText<'a>(&'a mut String);

impl<'de> serde::de::DeserializeSeed<'de> for AsText<'_> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for AsText<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        self.0.push_str(v);
        Ok(true)
    }
    fn visit_i64<E>(self, v: i64) -> Result<bool, E> {
        self.0.push_str(itoa::Buffer::new().format(v));
        Ok(true)
    }
    fn visit_u64<E>(self, v: u64) -> Result<bool, E> {
        self.0.push_str(itoa::Buffer::new().format(v));
        Ok(true)
    }
    fn visit_f64<E>(self, v: f64) -> Result<bool, E> {
        // As serde_json writes it (shortest round-trip form, `1.0` for whole numbers).
        self.0.push_str(&Value::from(v).to_string());
        Ok(true)
    }
    fn visit_bool<E>(self, v: bool) -> Result<bool, E> {
        self.0.push_str(if v { "true" } else { "false" });
        Ok(true)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_none<E>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        let v: Value =
            serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        self.0.push_str(&v.to_string());
        Ok(true)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        let v: Value =
            serde::Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        self.0.push_str(&v.to_string());
        Ok(true)
    }
}

fn csv_records(payload: &[u8], fields: usize) -> Result<Vec<Vec<Option<String>>>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(payload);
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("line {}: {e}", i + 1))?;
        if record.len() != fields {
            return Err(format!(
                "line {}: {} fields, the schema has {fields}",
                i + 1,
                record.len()
            ));
        }
        out.push(
            record
                .iter()
                .map(|f| (!f.is_empty()).then(|| f.to_string()))
                .collect(),
        );
    }
    if out.is_empty() {
        return Err("no CSV line in the message".into());
    }
    Ok(out)
}

mod evolve;
mod infer;
mod messages;
#[cfg(test)]
mod tests;

pub use infer::infer_json;
pub use messages::{Message, Messages};
