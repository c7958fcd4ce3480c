//! The start of a file: its header (bounded like any record: a longer one quarantines the
//! file), a sample of its first records for schema inference, and how its fields map to
//! the table's columns.

use std::{
    fs::File,
    io::{self, Seek, SeekFrom},
    path::Path,
    sync::Arc,
};

use arrow::array::{StringArray, StringBuilder};
use bytesize::ByteSize;
use sluice_core::TableSchema;

use crate::typing::contract::Refusal;

use super::{
    bound::{is_too_long, RecordBound},
    ReadOptions,
};

/// The start of a file: its header names (if it has a header) and where data begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub names: Option<Vec<String>>,
    /// Fields in the first record (the header, or the first data record); 0 in an empty
    /// file, and in a file without a header whose first record is too long.
    pub fields: usize,
    /// Without a header: the first record is longer than `max_line_bytes`, so its fields
    /// were not counted. When the table's columns are known it is a dead letter of the
    /// reading pass; when they would be inferred from this file, there is nothing to
    /// infer them from, and the file is quarantined saying so.
    pub first_too_long: bool,
    pub data_offset: u64,
    pub data_line: u64,
    /// The file's bytes before `data_offset`, as they were parsed: the reading pass,
    /// which hashes them, checks it finds the same (see [`super::Start::expect`]).
    pub raw: Vec<u8>,
}

/// A reader that keeps a copy of every byte it hands on.
struct Recording<R> {
    inner: R,
    seen: Vec<u8>,
}

impl<R: io::Read> io::Read for Recording<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// The header read for a file is not what the reading pass found at its place: the file
/// was rewritten in between. Nothing of it is read; it is looked at again once settled.
#[derive(Debug)]
pub struct HeaderChanged;

impl std::fmt::Display for HeaderChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the header changed between its parse and the reading pass")
    }
}

impl std::error::Error for HeaderChanged {}

/// Reads the header (or, without one, counts the first record's fields).
/// `Ok(Err(reason))` when the header itself is unusable (not UTF-8, or longer than
/// `max_line_bytes`: it is read no further than that).
pub fn read_header(path: &Path, opts: &ReadOptions) -> io::Result<Result<Header, String>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut input = RecordBound::new(file, 0, opts.max_record, len);
    input.start_record(0);
    let mut csv = opts.reader(Recording {
        inner: input,
        seen: Vec::new(),
    });
    let mut record = csv::ByteRecord::new();
    let first = match csv.read_byte_record(&mut record) {
        Ok(found) => found,
        Err(e) if is_too_long(&e) && opts.header => {
            return Ok(Err(format!(
                "the header is longer than max_line_bytes ({})",
                ByteSize(opts.max_record)
            )));
        }
        // The first record is data, too long to count its fields (see `first_too_long`).
        Err(e) if is_too_long(&e) => {
            return Ok(Ok(Header {
                first_too_long: true,
                ..before_data(opts, 0)
            }))
        }
        Err(e) => return Err(io::Error::other(e)),
    };
    if !first || !opts.header {
        return Ok(Ok(before_data(opts, record.len())));
    }
    let mut names = Vec::with_capacity(record.len());
    for field in record.iter() {
        match std::str::from_utf8(field) {
            Ok(s) => names.push(s.to_string()),
            Err(_) => return Ok(Err("header is not UTF-8 text".into())),
        }
    }
    let next = csv.position().clone();
    let mut raw = csv.into_inner().seen;
    raw.truncate(next.byte() as usize);
    Ok(Ok(Header {
        fields: names.len(),
        names: Some(names),
        first_too_long: false,
        data_offset: next.byte(),
        data_line: next.line(),
        raw,
    }))
}

/// The start of a file whose data begins at its first byte (no header, or an empty file).
fn before_data(opts: &ReadOptions, fields: usize) -> Header {
    Header {
        names: opts.header.then(Vec::new),
        fields,
        first_too_long: false,
        data_offset: 0,
        data_line: 1,
        raw: Vec::new(),
    }
}

/// Up to `max` records' text, one array per field (values that are not UTF-8, or the
/// null string, are null; records with another field count are skipped). Sampling stops
/// at a record longer than `max_line_bytes` (the reading pass makes it a dead letter; a
/// first record without a header that is too long is [`Header::first_too_long`]).
pub fn sample(
    path: &Path,
    opts: &ReadOptions,
    header: &Header,
    max: usize,
) -> io::Result<Vec<StringArray>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(header.data_offset))?;
    let mut csv = opts.reader(RecordBound::new(
        file,
        header.data_offset,
        opts.max_record,
        len,
    ));
    let mut builders: Vec<StringBuilder> =
        (0..header.fields).map(|_| StringBuilder::new()).collect();
    let mut record = csv::ByteRecord::new();
    let mut taken = 0;
    while taken < max {
        let at = header.data_offset + csv.position().byte();
        csv.get_mut().start_record(at);
        match csv.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) if is_too_long(&e) => break,
            Err(e) => return Err(io::Error::other(e)),
        }
        if record.len() != header.fields {
            continue;
        }
        for (builder, field) in builders.iter_mut().zip(record.iter()) {
            match std::str::from_utf8(field) {
                Ok(s) if field != opts.null_string.as_slice() => builder.append_value(s),
                _ => builder.append_null(),
            }
        }
        taken += 1;
    }
    Ok(builders.iter_mut().map(|b| b.finish()).collect())
}

/// How a file's fields map to the table's data columns.
#[derive(Debug, Clone)]
pub struct Layout {
    pub data: Arc<TableSchema>,
    /// Per data column, the field index in the file (`None`: the file lacks it; NULL).
    pub fields: Vec<Option<usize>>,
    pub expected_fields: usize,
    /// Header fields no column takes: their index, name, and what the schema contract
    /// makes of a value there (the reader applies it; `None`: not decided yet).
    pub unknown: Vec<(usize, String, Option<Refusal>)>,
}

impl Layout {
    /// Maps a file onto a table. With a header, columns are matched by name (a column the
    /// file lacks is NULL; a field the table lacks is listed in `unknown`); without, by
    /// position. Errors quote the header; they are bounded where they are kept or shown.
    pub fn for_file(data: Arc<TableSchema>, header: &Header) -> Result<Layout, String> {
        let Some(names) = &header.names else {
            return Ok(Layout {
                fields: (0..data.len()).map(Some).collect(),
                expected_fields: data.len(),
                data,
                unknown: Vec::new(),
            });
        };
        let mut fields = vec![None; data.len()];
        let mut unknown: Vec<(usize, String, Option<Refusal>)> = Vec::new();
        for (i, raw) in names.iter().enumerate() {
            // Unnamed header fields are named by position, as inference names them.
            let name = match raw.trim().is_empty() {
                true => format!("column{i}"),
                false => raw.clone(),
            };
            let twice = || format!("header names column {name:?} twice");
            match data.position(&name) {
                Some(col) if fields[col].is_some() => return Err(twice()),
                Some(col) => fields[col] = Some(i),
                None if unknown.iter().any(|u| u.1.eq_ignore_ascii_case(&name)) => {
                    return Err(twice())
                }
                None => unknown.push((i, name, None)),
            }
        }
        Ok(Layout {
            data,
            fields,
            expected_fields: names.len(),
            unknown,
        })
    }
}
