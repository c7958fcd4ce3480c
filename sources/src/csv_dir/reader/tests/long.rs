//! Records longer than `max_line_bytes`: dead letters, never held whole, and a file read
//! across one (whole, or resumed on either side of it) hashes and counts lines as if it
//! had been parsed.

use super::*;

/// Options with a record bound, closing chunks after `chunk_bytes` of input.
fn bounded(chunk_bytes: usize, max_record: u64) -> ReadOptions {
    ReadOptions {
        chunk_bytes,
        max_record,
        ..opts(100)
    }
}

/// A record of `n` bytes, `2,xxx...` (its line end not counted).
fn long_record(n: usize) -> Vec<u8> {
    let mut r = b"2,".to_vec();
    r.resize(n, b'x');
    r
}

const MAX: u64 = 64 << 10;
/// Longer than the bound and than the parser's buffer, so the parser meets the bound
/// while the record goes on.
const LONG: usize = 3 << 20;

fn errors_and_lines(chunk: &ReadChunk) -> Vec<(u64, String, usize)> {
    lines(chunk)
        .map(|(l, d)| (l, d.error.clone(), d.raw.len()))
        .collect()
}

#[test]
fn an_over_long_record_is_a_dead_letter_and_the_rows_around_it_land() {
    for end in [&b"\n"[..], b"\r\n"] {
        let mut body = [&b"id,note"[..], end, b"1,a", end].concat();
        body.extend([long_record(LONG), end.to_vec()].concat());
        body.extend([&b"3,c"[..], end].concat());
        let f = file(&body);
        let (_, mut r) = from_start(&f, &bounded(usize::MAX, MAX));
        let chunk = r.next_chunk().expect("chunk");
        assert!(chunk.done);
        assert_eq!(column_i64(&chunk.rows, "id"), [Some(1), Some(3)]);
        assert_eq!(
            column_i64(&chunk.rows, crate::csv_dir::provenance::LINE),
            [Some(2), Some(4)]
        );
        let dead = errors_and_lines(&chunk);
        assert_eq!(dead.len(), 1, "{dead:?}");
        let (line, error, raw) = &dead[0];
        assert_eq!(*line, 3);
        // From its first byte through the one that ends it (the \r of a \r\n).
        let want = format!(
            "the record is {} bytes, longer than max_line_bytes (64.0 KiB)",
            LONG + 1
        );
        assert_eq!(error, &want);
        assert_eq!(*raw, DEAD_LETTER_RAW_LIMIT);
        assert_eq!(chunk.hash, b3(&body), "the skipped bytes are hashed");
        assert_eq!(chunk.next_offset, body.len() as u64);
        assert_eq!(chunk.next_line, 5);
    }
}

#[test]
fn quoted_line_breaks_in_a_long_record_count_as_its_lines() {
    let mut body = b"id,note\n1,a\n2,\"".to_vec();
    body.extend(b"x\n".repeat(LONG / 2));
    body.extend(b"\"\n3,c\n");
    let f = file(&body);
    let (_, mut r) = from_start(&f, &bounded(usize::MAX, MAX));
    let chunk = r.next_chunk().expect("chunk");
    let long_lines = (LONG / 2) as i64 + 1;
    assert_eq!(
        column_i64(&chunk.rows, crate::csv_dir::provenance::LINE),
        [Some(2), Some(3 + long_lines)]
    );
    assert_eq!(errors_and_lines(&chunk)[0].0, 3);
    assert_eq!(chunk.hash, b3(&body));
}

#[test]
fn a_long_last_record_without_a_line_end_ends_the_file() {
    let body = [&b"id,note\n1,a\n"[..], &long_record(LONG)].concat();
    let f = file(&body);
    let (_, mut r) = from_start(&f, &bounded(usize::MAX, MAX));
    let chunk = r.next_chunk().expect("chunk");
    assert!(chunk.done);
    assert_eq!(column_i64(&chunk.rows, "id"), [Some(1)]);
    assert_eq!(errors_and_lines(&chunk)[0].0, 3);
    assert_eq!(
        (chunk.next_offset, chunk.hash),
        (body.len() as u64, b3(&body))
    );
}

#[test]
fn the_bound_counts_a_record_with_its_line_end() {
    // 10 bytes with the line end fit a bound of 10, 11 do not; a short record after
    // one too long is read as usual.
    let body = b"id,note\n1,abcdefg\n2,abcdefgh\n3,c\n";
    let f = file(body);
    let (_, mut r) = from_start(&f, &bounded(usize::MAX, 10));
    let chunk = r.next_chunk().expect("chunk");
    assert_eq!(column_i64(&chunk.rows, "id"), [Some(1), Some(3)]);
    let dead = errors_and_lines(&chunk);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, 3);
    assert!(dead[0].1.starts_with("the record is 11 bytes"), "{dead:?}");
    assert_eq!(chunk.hash, b3(body));
}

#[test]
fn a_file_resumed_on_either_side_of_a_long_record_reads_it_the_same() {
    let mut body = b"id,note\n1,a\n".to_vec();
    body.extend(long_record(LONG));
    body.extend(b"\n3,c\n4,d\n");
    let f = file(&body);
    // Every chunk closes after one record or dead letter.
    let o = bounded(1, MAX);
    let (layout, mut r) = from_start(&f, &o);
    let first = r.next_chunk().expect("chunk");
    assert_eq!(column_i64(&first.rows, "id"), [Some(1)]);
    let second = r.next_chunk().expect("chunk");
    assert_eq!(second.rows.num_rows(), 0);
    let long_end = 12 + LONG as u64 + 1;
    assert_eq!((second.next_offset, second.next_line), (long_end, 4));
    assert_eq!(second.hash, b3(&body[..long_end as usize]));
    // Resumed before the long record (a crash before its dead letter was committed): the
    // same dead letter, the same position and hash after it.
    let mut again = resumed_after(&f, &first, layout.clone(), o.clone(), u64::MAX);
    let replay = again.next_chunk().expect("chunk");
    assert_eq!(errors_and_lines(&replay), errors_and_lines(&second));
    assert_eq!(
        (replay.next_offset, replay.next_line, &replay.hash),
        (second.next_offset, second.next_line, &second.hash)
    );
    // Resumed after it: the next rows, at their lines, the hash going on.
    let mut after = resumed_after(&f, &second, layout, o, u64::MAX);
    let third = after.next_chunk().expect("chunk");
    assert_eq!(column_i64(&third.rows, "id"), [Some(3)]);
    assert_eq!(
        column_i64(&third.rows, crate::csv_dir::provenance::LINE),
        [Some(4)]
    );
    assert_eq!(third.hash, b3(&body[..third.next_offset as usize]));
    // Read on in the first reader: the same rows as the resumed one.
    let third_whole = r.next_chunk().expect("chunk");
    assert_eq!(
        (third_whole.next_offset, &third_whole.hash),
        (third.next_offset, &third.hash)
    );
}

#[test]
fn a_header_longer_than_the_bound_makes_the_file_unusable() {
    let mut body = vec![b'h'; LONG];
    body.extend(b"\n1\n");
    let f = file(&body);
    let reason = read_header(f.path(), &bounded(usize::MAX, MAX))
        .expect("io")
        .expect_err("too long");
    assert_eq!(
        reason,
        "the header is longer than max_line_bytes (64.0 KiB)"
    );
    // Without a header, a long first record is data: a dead letter of the reading pass
    // when the table's columns are known (the source quarantines the file when they were
    // to be inferred from it, as `first_too_long` says).
    let o = ReadOptions {
        header: false,
        ..bounded(usize::MAX, MAX)
    };
    let header = read_header(f.path(), &o).expect("io").expect("no header");
    assert_eq!(
        (header.fields, header.data_offset, header.first_too_long),
        (0, 0, true)
    );
    let layout = Layout::for_file(
        Arc::new(TableSchema::new(vec![Column::new(
            "id",
            ColumnType::BigInt,
        )])),
        &header,
    )
    .expect("layout");
    let mut r =
        FileReader::open(f.path(), "f", "s", layout, o, from_header(&header)).expect("open");
    let chunk = r.next_chunk().expect("chunk");
    assert_eq!(column_i64(&chunk.rows, "id"), [Some(1)]);
    assert_eq!(errors_and_lines(&chunk)[0].0, 1);
}

#[test]
fn sampling_stops_at_a_long_record() {
    let mut body = b"id,note\n1,a\n".to_vec();
    body.extend(long_record(LONG));
    body.extend(b"\n3,c\n");
    let f = file(&body);
    let o = bounded(usize::MAX, MAX);
    let header = read_header(f.path(), &o).expect("io").expect("header");
    let samples = sample(f.path(), &o, &header, 100).expect("sample");
    assert_eq!(samples[0].len(), 1, "only the record before the long one");
}
