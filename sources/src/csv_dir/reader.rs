//! Streaming one file's records into chunks of typed rows.
//!
//! A [`FileReader`] starts at a byte offset (0, or where the last commit of the file ended)
//! and yields [`ReadChunk`]s of at most `chunk_rows` records or `chunk_bytes` of input, so
//! memory is bounded by the chunk size, not the file size. Each chunk says where reading
//! resumes (`next_offset`, `next_line`) and the hash of the file's bytes before that
//! offset, which is what the commit records.
//!
//! A record longer than `max_line_bytes` is never held whole: it becomes a dead letter
//! naming the bound, and reading goes on after it ([`bound`]); the bytes stepped over are
//! hashed all the same, so the hash and the offset of every chunk still agree.

mod bound;
mod evolve;
mod hashing;
mod start;

pub use bound::RecordTooLong;
pub use hashing::{scan, FileScan, ScanPoint};
pub use start::{read_header, sample, Header, HeaderChanged, Layout};

use std::{
    fs::File,
    io::{self, Seek, SeekFrom},
    os::unix::fs::FileExt,
    path::Path,
    sync::Arc,
};

use bound::{is_too_long, RecordEnd};
use bytesize::ByteSize;
use hashing::HashingRead;

use arrow::{
    array::{new_null_array, ArrayRef, BooleanArray, Int64Array, StringArray, StringBuilder},
    compute::filter_record_batch,
    datatypes::{DataType, Field, Schema, SchemaRef},
    record_batch::RecordBatch,
};
use sluice_core::{meta, DeadLetter, FileHash, Origin, TableSchema, DEAD_LETTER_RAW_LIMIT};

use crate::typing::{
    cast::{type_columns, CellError},
    contract::{Refused, SchemaContract},
};

const READ_BUFFER: usize = 1 << 20;
/// Records between two hashing steps within a chunk.
const HASH_EVERY: usize = 4096;

/// How to parse a source's files.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub delimiter: u8,
    pub quote: u8,
    pub null_string: Vec<u8>,
    pub header: bool,
    pub chunk_rows: usize,
    pub chunk_bytes: usize,
    /// The longest record parsed (`max_line_bytes`); longer ones are dead letters.
    pub max_record: u64,
    /// What new header columns and values of other types do.
    pub contract: SchemaContract,
}

impl ReadOptions {
    fn reader<R: io::Read>(&self, input: R) -> csv::Reader<R> {
        csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .quote(self.quote)
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(READ_BUFFER)
            .from_reader(input)
    }
}

/// One chunk of a file: good rows, dead letters, and where reading resumes.
#[derive(Debug)]
pub struct ReadChunk {
    /// Data columns plus `_sluice_source`, `_sluice_file`, `_sluice_line`.
    pub rows: RecordBatch,
    pub dead_letters: Vec<DeadLetter>,
    pub next_offset: u64,
    pub next_line: u64,
    /// BLAKE3 of the file's bytes before `next_offset`, as they were parsed.
    pub hash: FileHash,
    /// No records follow.
    pub done: bool,
    /// What the schema contract kept out of the chunk.
    pub refused: Refused,
}

/// Where a [`FileReader`] starts, and what of the file is hashed already.
#[derive(Debug, Clone)]
pub struct Start {
    /// Hash state after exactly the file's bytes before `hashed_to`.
    pub hasher: blake3::Hasher,
    pub hashed_to: u64,
    /// Where records start (at or after the header's end and `hashed_to`; the bytes
    /// between `hashed_to` and here are hashed, not parsed).
    pub offset: u64,
    /// The physical line at `offset`.
    pub line: u64,
    /// Bytes from here on are left for a later read: the file's length when it was
    /// found complete, so that what a writer appends meanwhile is read as an append.
    pub limit: u64,
    /// What the bytes from `hashed_to` on must begin with: the part of the header (as it
    /// was parsed) that this pass hashes without parsing. Anything else there means the
    /// file was rewritten since, and opening fails with [`HeaderChanged`].
    pub expect: Vec<u8>,
}

/// Streams one file from a given position.
#[derive(Debug)]
pub struct FileReader {
    csv: csv::Reader<HashingRead>,
    raw: File,
    len: u64,
    base_offset: u64,
    base_line: u64,
    name: String,
    source: String,
    layout: Layout,
    opts: ReadOptions,
    schema: SchemaRef,
    record: csv::ByteRecord,
    /// Text bytes per column in the last chunk: the next chunk's builders start that large
    /// (growing a builder value by value copies it several times over).
    text_bytes: Vec<usize>,
}

/// Per-chunk accumulation before typing.
struct Pending {
    text: Vec<StringBuilder>,
    lines: Vec<i64>,
    spans: Vec<(u64, u64)>,
    row_errors: Vec<Option<String>>,
    dead_letters: Vec<DeadLetter>,
    bytes: usize,
    refused: Refused,
}

impl FileReader {
    /// Opens `path` (the file found as `name` by source `source`) at `start`.
    pub fn open(
        path: &Path,
        name: &str,
        source: &str,
        layout: Layout,
        opts: ReadOptions,
        start: Start,
    ) -> io::Result<Self> {
        let mut file = File::open(path)?;
        let raw = file.try_clone()?;
        let len = file.metadata()?.len().min(start.limit);
        file.seek(SeekFrom::Start(start.hashed_to))?;
        let mut input = HashingRead::new(
            file,
            start.hasher,
            start.hashed_to,
            start.limit,
            opts.max_record,
        );
        if !input.skip(start.offset.saturating_sub(start.hashed_to), &start.expect)? {
            return Err(io::Error::other(HeaderChanged));
        }
        let (offset, line) = (start.offset.max(start.hashed_to), start.line);
        let csv = opts.reader(input);
        Ok(FileReader {
            csv,
            raw,
            len,
            base_offset: offset,
            base_line: line,
            name: name.to_string(),
            source: source.to_string(),
            schema: chunk_schema(&layout.data),
            layout,
            opts,
            record: csv::ByteRecord::new(),
            text_bytes: Vec::new(),
        })
    }

    /// The table's data columns as this reader types them (widened as it goes, when the
    /// contract allows).
    pub fn data(&self) -> &Arc<TableSchema> {
        &self.layout.data
    }

    /// The next chunk; the last one has `done` set (it may have no rows).
    pub fn next_chunk(&mut self) -> io::Result<ReadChunk> {
        let rows = self.opts.chunk_rows;
        let mut pending = Pending {
            text: (0..self.layout.data.len())
                .map(|col| {
                    let bytes = self.text_bytes.get(col).copied().unwrap_or(rows * 8);
                    StringBuilder::with_capacity(rows, bytes + bytes / 8)
                })
                .collect(),
            lines: Vec::new(),
            spans: Vec::new(),
            row_errors: Vec::new(),
            dead_letters: Vec::new(),
            bytes: 0,
            refused: Refused::new(),
        };
        let mut eof = false;
        while pending.lines.len() < self.opts.chunk_rows && pending.bytes < self.opts.chunk_bytes {
            let at = self.base_offset + self.csv.position().byte();
            self.csv.get_mut().start_record(at);
            match self.csv.read_byte_record(&mut self.record) {
                Ok(true) => {}
                Ok(false) => {
                    eof = true;
                    break;
                }
                Err(e) if is_too_long(&e) => {
                    self.skip_long_record(&mut pending)?;
                    continue;
                }
                Err(e) => return Err(io::Error::other(e)),
            }
            self.take_record(&mut pending)?;
            if pending.lines.len().is_multiple_of(HASH_EVERY) {
                // Bytes parsed are hashed as they go, so no more than this many records'
                // worth (plus the parser's read-ahead) is held for hashing.
                let at = self.base_offset + self.csv.position().byte();
                self.csv.get_mut().advance(at);
            }
        }
        let next = self.csv.position();
        let next_offset = self.base_offset + next.byte();
        let next_line = self.base_line + next.line() - 1;
        let done = eof || next_offset >= self.len;
        let hash = self.csv.get_mut().hash_to(next_offset);
        let refused = std::mem::take(&mut pending.refused);
        let (rows, dead_letters, refused) = self.finish(pending, refused)?;
        Ok(ReadChunk {
            rows,
            dead_letters,
            next_offset,
            next_line,
            hash,
            done,
            refused,
        })
    }

    fn take_record(&mut self, pending: &mut Pending) -> io::Result<()> {
        let (byte, rel_line) = record_position(&self.record)?;
        let (start, line) =
            self.record_start(self.base_offset + byte, self.base_line + rel_line - 1);
        let end = self.base_offset + self.csv.position().byte();
        pending.bytes += (end - start) as usize;
        if self.record.len() != self.layout.expected_fields {
            let error = format!(
                "expected {} fields, found {}",
                self.layout.expected_fields,
                self.record.len()
            );
            let dl = self.dead_letter(error, start, end, line)?;
            pending.dead_letters.push(dl);
            return Ok(());
        }
        let mut error = None;
        if !self.layout.unknown.is_empty() {
            match self.refusal(&mut pending.refused) {
                evolve::Fate::Land => {}
                evolve::Fate::Drop => return Ok(()),
                evolve::Fate::Dead(why) => error = Some(why),
            }
        }
        // One UTF-8 check for the whole record; a field then needs only its bounds to be
        // character boundaries (checked by `str::get`), else it is checked alone.
        let whole = std::str::from_utf8(self.record.as_slice()).ok();
        for (col, builder) in pending.text.iter_mut().enumerate() {
            let Some(i) = self.layout.fields[col] else {
                builder.append_null();
                continue;
            };
            let field = &self.record[i];
            if field == self.opts.null_string.as_slice() {
                builder.append_null();
                continue;
            }
            let checked = whole
                .zip(self.record.range(i))
                .and_then(|(w, r)| w.get(r))
                .map_or_else(|| std::str::from_utf8(field), Ok);
            match checked {
                Ok(s) => builder.append_value(s),
                Err(_) => {
                    builder.append_null();
                    error.get_or_insert_with(|| {
                        format!(
                            "column {}: not UTF-8 text",
                            self.layout.data.columns[col].name
                        )
                    });
                }
            }
        }
        pending.lines.push(line as i64);
        pending.spans.push((start, end));
        pending.row_errors.push(error);
        Ok(())
    }

    /// The record being read is longer than the bound: steps over the rest of it (hashing
    /// it), makes it a dead letter at its line, and resets the parser to its end.
    fn skip_long_record(&mut self, pending: &mut Pending) -> io::Result<()> {
        let (byte, rel_line) = record_position(&self.record)?;
        let from = self.base_offset + byte;
        let (start, line) = self.record_start(from, self.base_line + rel_line - 1);
        let end = RecordEnd::new(self.opts.delimiter, self.opts.quote);
        let input = self.csv.get_mut();
        let max = input.max_record();
        let (at, line_feeds) = input.skip_record(from, end)?;
        let mut resume = csv::Position::new();
        resume
            .set_byte(at - self.base_offset)
            .set_line(rel_line + line_feeds);
        self.csv
            .seek_raw(SeekFrom::Current(0), resume)
            .map_err(io::Error::other)?;
        // The parser's record buffer grew to the bound: let it go.
        self.record = csv::ByteRecord::new();
        let dl = self.dead_letter(too_long(at - start, max), start, at, line)?;
        pending.bytes += dl.raw.len();
        pending.dead_letters.push(dl);
        Ok(())
    }

    /// Where the record just read starts: the parser reports the position where it began
    /// looking for it, before the blank lines it skipped (and, in a file with `\r\n` line
    /// ends, before the `\n` that ends the previous record), so those bytes are stepped
    /// over here. No record begins with a line end: an empty line is not a record.
    fn record_start(&self, mut at: u64, mut line: u64) -> (u64, u64) {
        let input = self.csv.get_ref();
        while let Some(b @ (b'\n' | b'\r')) = input.byte_at(at) {
            line += u64::from(b == b'\n');
            at += 1;
        }
        (at, line)
    }

    fn finish(
        &mut self,
        mut pending: Pending,
        mut refused: Refused,
    ) -> io::Result<(RecordBatch, Vec<DeadLetter>, Refused)> {
        let n = pending.lines.len();
        let text: Vec<StringArray> = pending.text.iter_mut().map(|b| b.finish()).collect();
        self.text_bytes = text.iter().map(|a| a.value_data().len()).collect();
        let (mut columns, mut cell_errors) =
            type_columns(text.clone(), &self.layout.data).map_err(io::Error::other)?;
        // Only rows that would otherwise land widen a column: a row that is a dead letter
        // for another reason (a refused header field, a field that is not UTF-8) does not.
        let landing: Vec<CellError> = cell_errors
            .iter()
            .filter(|e| e.is_bad() && pending.row_errors[e.row].is_none())
            .cloned()
            .collect();
        if !landing.is_empty() && self.widen(&text, &columns, &landing, &mut refused) {
            (columns, cell_errors) =
                type_columns(text, &self.layout.data).map_err(io::Error::other)?;
        }
        for e in cell_errors.into_iter().filter(CellError::is_bad) {
            pending.row_errors[e.row].get_or_insert(e.message);
        }
        for (col, field) in self.layout.fields.iter().enumerate() {
            if field.is_none() {
                columns[col] = new_null_array(&self.layout.data.columns[col].ty.arrow_type(), n);
            }
        }
        columns.push(Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            &self.source,
            n,
        ))) as ArrayRef);
        columns.push(Arc::new(StringArray::from_iter_values(
            std::iter::repeat_n(&self.name, n),
        )));
        columns.push(Arc::new(Int64Array::from(std::mem::take(
            &mut pending.lines,
        ))));
        let rows = RecordBatch::try_new(self.schema.clone(), columns).map_err(io::Error::other)?;
        let mut dead_letters = std::mem::take(&mut pending.dead_letters);
        if pending.row_errors.iter().all(Option::is_none) {
            return Ok((rows, sorted(dead_letters), refused));
        }
        let keep: BooleanArray = pending
            .row_errors
            .iter()
            .map(|e| Some(e.is_none()))
            .collect();
        let lines = rows
            .column(rows.num_columns() - 1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .map(|a| a.values().to_vec())
            .unwrap_or_default();
        for (row, error) in pending.row_errors.into_iter().enumerate() {
            if let Some(error) = error {
                let (start, end) = pending.spans[row];
                dead_letters.push(self.dead_letter(error, start, end, lines[row] as u64)?);
            }
        }
        let rows = filter_record_batch(&rows, &keep).map_err(io::Error::other)?;
        Ok((rows, sorted(dead_letters), refused))
    }

    fn dead_letter(
        &self,
        error: String,
        start: u64,
        end: u64,
        line: u64,
    ) -> io::Result<DeadLetter> {
        let len = ((end - start) as usize).min(DEAD_LETTER_RAW_LIMIT);
        let mut raw = vec![0u8; len];
        let read = self.raw.read_at(&mut raw, start)?;
        raw.truncate(read);
        Ok(DeadLetter::new(
            error,
            &raw,
            Origin::File {
                name: self.name.clone(),
                line,
            },
        ))
    }
}

/// Where the parser began looking for the record just read (byte and line, from where
/// this reader started). The parser sets it before reading any record, even one that
/// fails; without it neither the record's offset nor its line is known, and a guess would
/// commit a wrong position, so reading the file fails instead.
fn record_position(record: &csv::ByteRecord) -> io::Result<(u64, u64)> {
    record
        .position()
        .map(|p| (p.byte(), p.line()))
        .ok_or_else(|| io::Error::other("the CSV parser gave no position for a record"))
}

/// The error of a dead letter too long to parse.
fn too_long(bytes: u64, max: u64) -> String {
    format!(
        "the record is {bytes} bytes, longer than max_line_bytes ({})",
        ByteSize(max)
    )
}

/// A chunk's columns: the data, then `_sluice_source`, `_sluice_file`, `_sluice_line`.
fn chunk_schema(data: &TableSchema) -> SchemaRef {
    let mut fields: Vec<Field> = data
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(meta::SOURCE, DataType::Utf8, true));
    fields.push(Field::new(
        crate::csv_dir::provenance::FILE,
        DataType::Utf8,
        true,
    ));
    fields.push(Field::new(
        crate::csv_dir::provenance::LINE,
        DataType::Int64,
        true,
    ));
    Arc::new(Schema::new(fields))
}

fn sorted(mut dead_letters: Vec<DeadLetter>) -> Vec<DeadLetter> {
    dead_letters.sort_by_key(|d| d.origin.ordinal());
    dead_letters
}

#[cfg(test)]
mod tests;
