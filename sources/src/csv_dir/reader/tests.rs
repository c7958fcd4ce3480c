use std::io::Write;

use arrow::array::{Array, Int64Array};
use sluice_core::{Column, ColumnType, TableSchema};

use super::*;

fn opts(chunk_rows: usize) -> ReadOptions {
    ReadOptions {
        delimiter: b',',
        quote: b'"',
        null_string: Vec::new(),
        header: true,
        chunk_rows,
        chunk_bytes: usize::MAX,
        max_record: 1 << 20,
        contract: Default::default(),
    }
}

fn schema() -> Arc<TableSchema> {
    Arc::new(TableSchema::new(vec![
        Column::new("id", ColumnType::BigInt),
        Column::new("note", ColumnType::Varchar),
    ]))
}

fn file(content: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp");
    f.write_all(content).expect("write");
    f
}

/// Each dead letter of the chunk with its line.
fn lines(chunk: &ReadChunk) -> impl Iterator<Item = (u64, &DeadLetter)> {
    chunk.dead_letters.iter().map(|d| match &d.origin {
        Origin::File { line, .. } => (*line, d),
        other => unreachable!("a CSV reader makes file dead letters: {other:?}"),
    })
}

/// A new file read from the header's end (the header hashed on the way).
fn from_header(header: &Header) -> Start {
    Start {
        hasher: blake3::Hasher::new(),
        hashed_to: 0,
        offset: header.data_offset,
        line: header.data_line,
        limit: u64::MAX,
        expect: header.raw.clone(),
    }
}

/// A reader of `f` from its first record, and the layout its header gave.
fn from_start(f: &tempfile::NamedTempFile, o: &ReadOptions) -> (Layout, FileReader) {
    let header = read_header(f.path(), o).expect("io").expect("header");
    let layout = Layout::for_file(schema(), &header).expect("layout");
    let start = from_header(&header);
    let r =
        FileReader::open(f.path(), "f.csv", "s", layout.clone(), o.clone(), start).expect("open");
    (layout, r)
}

/// A fresh reader of `f` continuing after `chunk` was committed (its hash going on from
/// the committed bytes' state), reading no further than `limit`.
fn resumed_after(
    f: &tempfile::NamedTempFile,
    chunk: &ReadChunk,
    layout: Layout,
    o: ReadOptions,
    limit: u64,
) -> FileReader {
    let point = scan(f.reopen().expect("open"), Some(chunk.next_offset))
        .expect("scan")
        .at
        .expect("point");
    let start = Start {
        hasher: point.hasher,
        hashed_to: point.offset,
        offset: chunk.next_offset,
        line: chunk.next_line,
        limit,
        expect: Vec::new(),
    };
    FileReader::open(f.path(), "f", "s", layout, o, start).expect("open")
}

fn b3(bytes: &[u8]) -> FileHash {
    FileHash(blake3::hash(bytes).to_hex().to_string())
}

fn column_i64(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let a = batch
        .column_by_name(name)
        .expect("column")
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("i64");
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i)))
        .collect()
}

#[test]
fn a_field_that_is_not_utf8_makes_its_row_a_dead_letter() {
    // Row 3's fields are each invalid, though their bytes side by side would read "é".
    let f = file(b"id,note\n1,caf\xc3\xa9\n2,\xff\n3\xc3,\xa9\n4,ok\n");
    let (_, mut r) = from_start(&f, &opts(100));
    let chunk = r.next_chunk().expect("chunk");
    assert_eq!(column_i64(&chunk.rows, "id"), [Some(1), Some(4)]);
    let note = chunk.rows.column_by_name("note").expect("note");
    let note = note.as_any().downcast_ref::<StringArray>().expect("text");
    assert_eq!(note.value(0), "café");
    let dead: Vec<(u64, &str)> = lines(&chunk).map(|(l, d)| (l, d.error.as_str())).collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].0, 3);
    assert!(dead[0].1.contains("column note: not UTF-8"), "{dead:?}");
    assert_eq!(dead[1].0, 4);
    assert!(dead[1].1.contains("not UTF-8"), "{dead:?}");
}

#[test]
fn reads_rows_lines_and_dead_letters() {
    let f = file(b"id,note\n1,a\n2,\"two\nlines\"\nx,bad\n4\n5,e\n");
    let o = opts(100);
    let header = read_header(f.path(), &o).expect("io").expect("header");
    assert_eq!((header.data_offset, header.data_line), (8, 2));
    let layout = Layout::for_file(schema(), &header).expect("layout");
    let mut r =
        FileReader::open(f.path(), "f.csv", "s", layout, o, from_header(&header)).expect("open");
    let chunk = r.next_chunk().expect("chunk");
    assert!(chunk.done);
    assert_eq!(chunk.hash, b3(&std::fs::read(f.path()).expect("read")));
    assert_eq!(column_i64(&chunk.rows, "id"), [Some(1), Some(2), Some(5)]);
    assert_eq!(
        column_i64(&chunk.rows, crate::csv_dir::provenance::LINE),
        [Some(2), Some(3), Some(7)]
    );
    let dead: Vec<(u64, &str)> = lines(&chunk).map(|(l, d)| (l, d.raw.as_str())).collect();
    assert_eq!(dead, [(5, "x,bad"), (6, "4")]);
    assert_eq!(
        chunk.next_offset,
        f.as_file().metadata().expect("meta").len()
    );
}

#[test]
fn chunks_resume_exactly_where_the_previous_ended() {
    let mut body = b"id,note\n".to_vec();
    for i in 0..25 {
        body.extend_from_slice(format!("{i},n{i}\n").as_bytes());
    }
    let f = file(&body);
    let o = opts(10);
    let (layout, mut r) = from_start(&f, &o);
    let first = r.next_chunk().expect("chunk");
    assert!(!first.done);
    assert_eq!(first.rows.num_rows(), 10);
    // Each chunk carries the hash of exactly the bytes before its end.
    let at = first.next_offset as usize;
    assert_eq!(first.hash, b3(&body[..at]));
    // A fresh reader at the committed position continues with the 11th record, its
    // hash going on from the committed bytes' state.
    let mut resumed = resumed_after(&f, &first, layout, o, body.len() as u64 - 7);
    let second = resumed.next_chunk().expect("chunk");
    assert_eq!(column_i64(&second.rows, "id")[0], Some(10));
    assert_eq!(
        column_i64(&second.rows, crate::csv_dir::provenance::LINE)[0],
        Some(12)
    );
    assert_eq!(second.hash, b3(&body[..second.next_offset as usize]));
    // Reading stops at the limit (the length the file had when it was found).
    let third = resumed.next_chunk().expect("chunk");
    assert!(third.done);
    assert_eq!(third.rows.num_rows(), 4);
    assert_eq!(third.next_offset, body.len() as u64 - 7);
    assert_eq!(third.hash, b3(&body[..body.len() - 7]));
}

#[test]
fn a_header_rewritten_after_its_parse_is_not_read_under_the_old_layout() {
    let f = file(b"id,note\n1,a\n");
    let o = opts(100);
    let header = read_header(f.path(), &o).expect("io").expect("header");
    assert_eq!(header.raw, b"id,note\n");
    let layout = Layout::for_file(schema(), &header).expect("layout");
    // Same length, columns swapped: mapped with the parsed header, ids would be notes.
    std::fs::write(f.path(), b"note,id\na,1\n").expect("rewrite");
    let err = FileReader::open(
        f.path(),
        "f.csv",
        "s",
        layout.clone(),
        o.clone(),
        from_header(&header),
    )
    .expect_err("the header changed");
    assert!(
        err.get_ref().is_some_and(|e| e.is::<HeaderChanged>()),
        "{err}"
    );
    // Unchanged, the same start opens and reads.
    std::fs::write(f.path(), b"id,note\n1,a\n").expect("restore");
    let mut r =
        FileReader::open(f.path(), "f.csv", "s", layout, o, from_header(&header)).expect("open");
    assert_eq!(
        column_i64(&r.next_chunk().expect("chunk").rows, "id"),
        [Some(1)]
    );
}

#[test]
fn header_maps_columns_by_name_and_lists_unknown_ones() {
    let header = Header {
        names: Some(vec!["note".into(), "ID".into()]),
        fields: 2,
        first_too_long: false,
        data_offset: 0,
        data_line: 2,
        raw: Vec::new(),
    };
    let layout = Layout::for_file(schema(), &header).expect("layout");
    assert_eq!(layout.fields, [Some(1), Some(0)]);
    let header = Header {
        names: Some(vec!["id".into(), "other".into()]),
        ..header
    };
    let layout = Layout::for_file(schema(), &header).expect("layout");
    assert_eq!(layout.fields, [Some(0), None]);
    assert_eq!(layout.unknown, [(1, "other".to_string(), None)]);
    let header = Header {
        names: Some(vec!["id".into(), "other".into(), "OTHER".into()]),
        fields: 3,
        ..header
    };
    let err = Layout::for_file(schema(), &header).expect_err("twice");
    assert!(err.contains("twice"), "{err}");
}

#[test]
fn a_record_without_a_position_fails_the_read_instead_of_guessing_one() {
    let mut record = csv::ByteRecord::from(vec!["1", "a"]);
    record.set_position(None);
    let err = record_position(&record).expect_err("no position, no offset");
    assert_eq!(
        err.to_string(),
        "the CSV parser gave no position for a record"
    );
    let mut at = csv::Position::new();
    at.set_byte(12).set_line(3);
    record.set_position(Some(at));
    assert_eq!(record_position(&record).expect("position"), (12, 3));
}

/// Lines and dead-letter texts of `content` (header `id,note`), read whole.
fn lines_and_dead(content: &[u8]) -> (Vec<Option<i64>>, Vec<(u64, String)>) {
    let f = file(content);
    let (_, mut r) = from_start(&f, &opts(100));
    let chunk = r.next_chunk().expect("chunk");
    assert!(chunk.done);
    let good = column_i64(&chunk.rows, crate::csv_dir::provenance::LINE);
    let dead = lines(&chunk).map(|(l, d)| (l, d.raw.clone())).collect();
    (good, dead)
}

#[test]
fn a_record_after_blank_lines_is_at_its_own_line() {
    let (good, dead) = lines_and_dead(b"id,note\n1,a\n\n\n2,b\nx,bad\n\n4\n");
    assert_eq!(good, [Some(2), Some(5)]);
    assert_eq!(dead, [(6, "x,bad".to_string()), (8, "4".to_string())]);
}

#[test]
fn crlf_records_are_at_their_own_lines() {
    let (good, dead) = lines_and_dead(b"id,note\r\n1,a\r\n2,\"b\r\nc\"\r\nx,bad\r\n\r\n5,e\r\n");
    assert_eq!(good, [Some(2), Some(3), Some(7)]);
    assert_eq!(dead, [(5, "x,bad".to_string())]);
}

#[test]
fn a_crlf_file_resumed_between_chunks_keeps_its_lines() {
    let mut body = b"id,note\r\n".to_vec();
    for i in 0..20 {
        body.extend_from_slice(format!("{i},n{i}\r\n").as_bytes());
    }
    let f = file(&body);
    let o = opts(10);
    let (layout, mut r) = from_start(&f, &o);
    let first = r.next_chunk().expect("chunk");
    let want: Vec<Option<i64>> = (2..12).map(Some).collect();
    assert_eq!(
        column_i64(&first.rows, crate::csv_dir::provenance::LINE),
        want
    );
    // The chunk may end between a record's \r and its \n: the resumed reader still
    // puts the 11th record on line 12.
    let mut resumed = resumed_after(&f, &first, layout, o, u64::MAX);
    let second = resumed.next_chunk().expect("chunk");
    let want: Vec<Option<i64>> = (12..22).map(Some).collect();
    assert_eq!(
        column_i64(&second.rows, crate::csv_dir::provenance::LINE),
        want
    );
    assert_eq!(column_i64(&second.rows, "id")[0], Some(10));
}

mod long;

#[test]
fn a_row_that_is_a_dead_letter_widens_no_other_column_and_its_refusal_is_counted() {
    let data = Arc::new(TableSchema::new(vec![
        Column::new("id", ColumnType::BigInt),
        Column::new("n", ColumnType::BigInt),
    ]));
    let read = |content: &[u8]| {
        let f = file(content);
        let o = opts(100);
        let header = read_header(f.path(), &o).expect("io").expect("header");
        let layout = Layout::for_file(data.clone(), &header).expect("layout");
        let mut r = FileReader::open(f.path(), "f.csv", "s", layout, o, from_header(&header))
            .expect("open");
        let chunk = r.next_chunk().expect("chunk");
        (r.data().columns[1].ty.clone(), chunk)
    };
    // "x" needs VARCHAR, refused by default: line 3 is a dead letter and its 2.5 must not
    // turn n DOUBLE.
    let (n, chunk) = read(b"id,n\n1,2\nx,2.5\n3,4\n");
    assert_eq!(n, ColumnType::BigInt);
    assert_eq!(column_i64(&chunk.rows, "id"), [Some(1), Some(3)]);
    assert_eq!(lines(&chunk).map(|(l, _)| l).collect::<Vec<_>>(), [3]);
    assert_eq!(
        chunk.refused,
        [(
            "id".to_string(),
            crate::typing::contract::Refusal::FrozenType,
            1
        )]
    );
    // The same 2.5 in a row that lands widens n.
    let (n, chunk) = read(b"id,n\n1,2\n2,2.5\n");
    assert_eq!(n, ColumnType::Double);
    assert!(chunk.refused.is_empty(), "{:?}", chunk.refused);
    assert_eq!(chunk.rows.num_rows(), 2);
}
