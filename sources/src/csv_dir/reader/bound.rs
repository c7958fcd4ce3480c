//! Records longer than `max_line_bytes`, found without holding them whole.
//!
//! The CSV parser grows its record buffer to whatever a record needs, so a file of one
//! 20 MB line would be held whole (several times over, with the bytes kept for hashing).
//! [`RecordBound`] sits under the parser and hands on at most `max` bytes from where the
//! parser began looking for the current record (the end of the record before it, so a
//! record's line end counts); asked for more, it fails with [`RecordTooLong`], which the
//! parser passes up as an I/O error. The reader then steps over the rest of the record
//! with a [`RecordEnd`] (the same CSV dialect, so it ends the record where the parser
//! would have) and goes on after it. Reads are cut at the bound, so the parser never
//! holds bytes further than `max` past a record's start: every record longer than that
//! is caught, whatever its neighbours and wherever reads fell (a resumed file finds the
//! same ones).

use std::io::{self, Read};

use bytesize::ByteSize;

/// A record (or header) longer than the bound.
#[derive(Debug)]
pub struct RecordTooLong {
    pub max: u64,
}

impl std::fmt::Display for RecordTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a record is longer than max_line_bytes ({})",
            ByteSize(self.max)
        )
    }
}

impl std::error::Error for RecordTooLong {}

/// Whether the parser stopped because the record is longer than the bound.
pub fn is_too_long(e: &csv::Error) -> bool {
    match e.kind() {
        csv::ErrorKind::Io(io) => io.get_ref().is_some_and(|e| e.is::<RecordTooLong>()),
        _ => false,
    }
}

/// Hands on at most `max` bytes from the start of the current record.
#[derive(Debug)]
pub(crate) struct RecordBound<R> {
    inner: R,
    /// Absolute offset of the next byte handed on.
    at: u64,
    max: u64,
    /// Where the input ends: a record that reaches it within the bound is not too long.
    input_end: u64,
    /// Where the current record starts; `None`: no record is being parsed (bytes are
    /// skipped unparsed), nothing is bounded.
    record: Option<u64>,
}

impl<R: Read> RecordBound<R> {
    /// `inner` positioned at absolute offset `at`, ending at `input_end`; records of at
    /// most `max` bytes.
    pub(crate) fn new(inner: R, at: u64, max: u64, input_end: u64) -> Self {
        RecordBound {
            inner,
            at,
            max,
            input_end,
            record: None,
        }
    }

    /// The parser starts a record at absolute offset `at` (at or before [`Self::at`]: it
    /// reads ahead).
    pub(crate) fn start_record(&mut self, at: u64) {
        self.record = Some(at);
    }

    /// No record is being parsed: reads are not bounded until the next one starts.
    pub(crate) fn lift(&mut self) {
        self.record = None;
    }

    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// Absolute offset of the next byte handed on.
    pub(crate) fn at(&self) -> u64 {
        self.at
    }

    /// The input itself, to step over bytes without handing them on; say where it then
    /// is with [`Self::moved_to`].
    pub(crate) fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    pub(crate) fn moved_to(&mut self, at: u64) {
        self.at = at;
        self.record = None;
    }
}

impl<R: Read> Read for RecordBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let allowed = match self.record {
            None => buf.len(),
            Some(start) => {
                let end = start.saturating_add(self.max);
                if self.at >= end && !buf.is_empty() {
                    if self.at >= self.input_end {
                        return Ok(0);
                    }
                    return Err(io::Error::other(RecordTooLong { max: self.max }));
                }
                usize::try_from(end - self.at.min(end))
                    .unwrap_or(usize::MAX)
                    .min(buf.len())
            }
        };
        let n = self.inner.read(&mut buf[..allowed])?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Finds where a record ends, given its bytes from where the parser began looking for it
/// (blank lines before it included), parsed as the CSV reader parses them.
#[derive(Debug)]
pub(crate) struct RecordEnd {
    parser: csv_core::Reader,
    /// Scratch space: the fields' bytes are not kept.
    out: Vec<u8>,
    ends: Vec<usize>,
    /// Line feeds in the bytes the record took so far.
    pub(crate) line_feeds: u64,
}

impl RecordEnd {
    pub(crate) fn new(delimiter: u8, quote: u8) -> Self {
        RecordEnd {
            parser: csv_core::ReaderBuilder::new()
                .delimiter(delimiter)
                .quote(quote)
                .build(),
            out: vec![0; 64 << 10],
            ends: vec![0; 1024],
            line_feeds: 0,
        }
    }

    /// Feeds the record's next bytes (none: the input ended). `Some(n)`: it ends after
    /// the first `n` of them.
    pub(crate) fn feed(&mut self, input: &[u8]) -> Option<usize> {
        use csv_core::ReadRecordResult::*;
        let mut taken = 0;
        let ended = loop {
            let (result, n, _, _) =
                self.parser
                    .read_record(&input[taken..], &mut self.out, &mut self.ends);
            taken += n;
            match result {
                InputEmpty => break false,
                OutputFull | OutputEndsFull => continue,
                Record | End => break true,
            }
        };
        self.line_feeds += input[..taken].iter().filter(|&&b| b == b'\n').count() as u64;
        ended.then_some(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_hands_on_the_limit_then_fails_unless_the_input_ends() {
        let mut r = RecordBound::new(&b"abcdefghij"[..], 0, 3, 10);
        r.start_record(0);
        let mut buf = [0u8; 16];
        assert_eq!(r.read(&mut buf).expect("read"), 3, "max bytes");
        let err = r.read(&mut buf).expect_err("too long");
        assert!(err.get_ref().is_some_and(|e| e.is::<RecordTooLong>()));
        // The next record starts further on: reads go on, bounded from there.
        r.start_record(2);
        assert_eq!(r.read(&mut buf).expect("read"), 2);
        r.lift();
        assert_eq!(r.read(&mut buf).expect("read"), 5, "unbounded to the end");
        // A record that fills the bound exactly at the input's end is not too long.
        r.start_record(7);
        assert_eq!(r.read(&mut buf).expect("read"), 0);
    }

    #[test]
    fn a_record_ends_where_the_csv_parser_ends_it() {
        let mut end = RecordEnd::new(b',', b'"');
        // A quoted line break does not end the record; the line feed after it does.
        assert_eq!(end.feed(b"\n\na,\"b\nc"), None);
        assert_eq!(end.feed(b"\"\nnext\n"), Some(2));
        assert_eq!(end.line_feeds, 4);
        let mut end = RecordEnd::new(b';', b'\'');
        assert_eq!(end.feed(b"x;'y\r\n"), None);
        assert_eq!(end.feed(b"'\r\nz"), Some(2), "ends at the \\r of \\r\\n");
        let mut end = RecordEnd::new(b',', b'"');
        assert_eq!(end.feed(b"no line end"), None);
        assert_eq!(end.feed(b""), Some(0), "the input's end ends it");
    }
}
