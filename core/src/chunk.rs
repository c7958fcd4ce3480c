//! What a source hands on. A [`Chunk`] is a slice of one table's rows from one source, with
//! the rows that failed (dead letters) and the [`Position`] that committing it advances.
//! The daemon's batcher concatenates chunks of a table into one batch and commits it; only
//! then is the source told its positions are durable (and may, say, archive the file).

use std::{fmt, sync::Arc, time::Instant};

use arrow::{
    array::{Array, Int64Array},
    record_batch::RecordBatch,
};

use crate::{Ident, TableSchema};

/// Raw text kept with a dead letter is cut to this many bytes.
pub const DEAD_LETTER_RAW_LIMIT: usize = 4096;

/// Rows of one table from one source.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Name of the source (its config key).
    pub source: Arc<str>,
    /// Raw table the rows land in (`<raw_schema>.<table>`).
    pub table: Ident,
    /// Every column of the raw table, in order: data columns, then sluice's own.
    pub raw_columns: Arc<TableSchema>,
    /// The good rows: every column of `raw_columns` except `_sluice_batch` and
    /// `_sluice_ingested_at`, which the committer fills. May have zero rows.
    pub rows: RecordBatch,
    /// Records that could not be turned into rows, committed with the good ones.
    pub dead_letters: Vec<DeadLetter>,
    /// What committing this chunk makes durable.
    pub position: Position,
    /// When the chunk's oldest record reached the source: a batch's `max_age` counts from
    /// its oldest chunk's, so time spent in the source counts too.
    pub since: Instant,
}

impl Chunk {
    /// Splits off the first `n` rows as a chunk of their own, when the position can say
    /// where they end: a Kafka chunk's can (the offset after the `n`-th row's, read from
    /// its `_sluice_offset`; dead letters go by offset), a file chunk's cannot (rows do not
    /// carry their byte offsets) and the chunk comes back whole, as it does for an `n`
    /// that leaves either part without rows.
    ///
    /// The batcher uses it to fill a batch to exactly `max_rows`: a commit of a whole
    /// DuckDB row group is written straight into the database file, while a Kafka batch
    /// a few rows short of one went through the write-ahead log and a checkpoint.
    #[allow(clippy::result_large_err)] // the chunk itself, handed back unsplit
    pub fn split_front(self, n: usize) -> Result<(Chunk, Chunk), Chunk> {
        let Position::Kafka(progress) = &self.position else {
            return Err(self);
        };
        let total = self.rows.num_rows();
        if n == 0 || n >= total {
            return Err(self);
        }
        let Some(offsets) = self
            .rows
            .column_by_name(crate::meta::OFFSET)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        else {
            return Err(self);
        };
        if offsets.is_null(n - 1) {
            return Err(self);
        }
        let head_next = offsets.value(n - 1) + 1;
        let head_position = Position::Kafka(PartitionProgress {
            next_offset: head_next,
            ..progress.clone()
        });
        let (head_dead, tail_dead) = self
            .dead_letters
            .into_iter()
            .partition(|d| matches!(d.origin, Origin::Kafka { offset, .. } if offset < head_next));
        let head = Chunk {
            source: self.source.clone(),
            table: self.table.clone(),
            raw_columns: self.raw_columns.clone(),
            rows: self.rows.slice(0, n),
            dead_letters: head_dead,
            position: head_position,
            since: self.since,
        };
        let tail = Chunk {
            rows: self.rows.slice(n, total - n),
            dead_letters: tail_dead,
            ..self
        };
        Ok((head, tail))
    }
}

/// A position in a source that becomes durable with a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    File(FileProgress),
    Kafka(PartitionProgress),
    /// Any other source type's: a key it chooses and how far into it the rows reach.
    Keyed(KeyedProgress),
}

/// How far into one stream of a source the committed rows reach, for source types that
/// need neither a file's nor a Kafka partition's bookkeeping: the source names its
/// streams (`key`: a shard, a prefix, a client) and counts in each (`next`: a sequence
/// number, an offset, a time in µs), stored in `_sluice.positions`. The next start reads
/// them back and resumes at `next`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyedProgress {
    pub key: String,
    /// Where reading resumes: one past the last thing committed.
    pub next: i64,
}

/// How far into one Kafka partition the committed rows reach.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionProgress {
    pub topic: Arc<str>,
    pub partition: i32,
    /// The offset of the next message to read (Kafka's committed-offset convention).
    pub next_offset: i64,
}

/// Content hash of a file (BLAKE3, lowercase hex).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileHash(pub String);

impl fmt::Display for FileHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies one file's record in the ledger from its first commit on, while the hash of
/// what was read of it changes with every chunk (and when the file grows).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub String);

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How far into one file the committed rows reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProgress {
    /// The file's ledger record.
    pub id: FileId,
    /// BLAKE3 of exactly the bytes before `next_offset`: what was read and is committed.
    pub hash: FileHash,
    /// The file's name when it was found (relative to the watched directory).
    pub name: String,
    /// Byte offset where reading resumes.
    pub next_offset: u64,
    /// 1-based physical line number at `next_offset`.
    pub next_line: u64,
    pub status: FileStatus,
}

/// What the ledger knows of one file (a row of `_sluice.files`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub id: FileId,
    /// BLAKE3 of the committed bytes (`[0, next_offset)`); `None` for a file left partly
    /// committed by a sluice older than this hash (state version 1).
    pub hash: Option<FileHash>,
    pub original_name: String,
    pub status: FileStatus,
    pub next_offset: u64,
    pub next_line: u64,
}

/// What the ledger says of a file once a chunk commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    /// More chunks of this file follow.
    Partial,
    /// Every record of the file is committed (as a row or a dead letter).
    Ingested,
    /// The file cannot be read as CSV (not text, a header that does not fit the table or
    /// is too long, ...); it is moved to quarantine once this is recorded. Build it with
    /// [`FileStatus::quarantined`], which bounds the reason.
    Quarantined { reason: String },
    /// Never in the ledger: the committer's answer to chunks of a file that cannot be
    /// committed for a reason tied to the file's own rows (DuckDB refused one of its
    /// values; see the daemon's `pipeline/committer/isolate.rs`). It comes back to the
    /// source on its acknowledgements in place of a committed position: nothing of that
    /// chunk, nor of any later chunk of the file, is committed, and the source records the
    /// file as quarantined with this reason. Build it with [`FileStatus::refused`]. (A
    /// `Box<str>`: beside `Quarantined`'s `String` it keeps the status, and so every
    /// chunk, the size it was.)
    Refused { reason: Box<str> },
}

impl FileStatus {
    /// Quarantined for `reason`, cut to [`crate::text::TEXT_LIMIT`] (a reason may quote
    /// the file: its header, a column name).
    pub fn quarantined(reason: impl Into<String>) -> Self {
        FileStatus::Quarantined {
            reason: crate::text::bounded_owned(reason.into()),
        }
    }

    /// Refused for `reason`, cut to [`crate::text::TEXT_LIMIT`] (the error may quote a
    /// value of the file).
    pub fn refused(reason: impl Into<String>) -> Self {
        FileStatus::Refused {
            reason: crate::text::bounded_owned(reason.into()).into(),
        }
    }

    /// The word stored in `_sluice.files.status` (`refused` is never stored, only logged).
    pub fn as_str(&self) -> &'static str {
        match self {
            FileStatus::Partial => "partial",
            FileStatus::Ingested => "ingested",
            FileStatus::Quarantined { .. } => "quarantined",
            FileStatus::Refused { .. } => "refused",
        }
    }

    /// Whether the file needs no more reading.
    pub fn is_final(&self) -> bool {
        !matches!(self, FileStatus::Partial)
    }
}

/// A record that could not become a row, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Why, cut to [`crate::text::TEXT_LIMIT`] bytes (it may quote the record).
    pub error: String,
    /// The record as it was read, cut to [`DEAD_LETTER_RAW_LIMIT`] bytes (lossy UTF-8).
    pub raw: String,
    pub origin: Origin,
}

/// Where a dead letter came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File {
        name: String,
        line: u64,
    },
    Kafka {
        topic: Arc<str>,
        partition: i32,
        offset: i64,
        /// The message key (lossy UTF-8, cut like `raw`), if it had one.
        key: Option<String>,
    },
    /// Another source type's: the stream and position in it, as in [`KeyedProgress`].
    Keyed {
        stream: String,
        position: i64,
    },
}

impl Origin {
    /// Where in its file or stream the record was (line, offset, position): dead letters
    /// of one chunk are kept in this order.
    pub fn ordinal(&self) -> i64 {
        match self {
            Origin::File { line, .. } => *line as i64,
            Origin::Kafka { offset, .. } => *offset,
            Origin::Keyed { position, .. } => *position,
        }
    }
}

impl DeadLetter {
    /// Builds a dead letter, cutting `raw` and `error` to their bounds.
    pub fn new(error: impl Into<String>, raw: &[u8], origin: Origin) -> Self {
        let cut = &raw[..raw.len().min(DEAD_LETTER_RAW_LIMIT)];
        let mut raw = String::from_utf8_lossy(cut).into_owned();
        // A multi-byte character cut in half shows as U+FFFD; that is fine for a bounded
        // diagnostic field. Trailing newlines are not part of the record.
        while raw.ends_with('\n') || raw.ends_with('\r') {
            raw.pop();
        }
        DeadLetter {
            error: crate::text::bounded_owned(error.into()),
            raw,
            origin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka_chunk(offsets: &[i64], dead: &[i64]) -> Chunk {
        use arrow::datatypes::{DataType, Field, Schema};
        let schema = Arc::new(Schema::new(vec![Field::new(
            crate::meta::OFFSET,
            DataType::Int64,
            false,
        )]));
        let origin = |offset| Origin::Kafka {
            topic: "t".into(),
            partition: 3,
            offset,
            key: None,
        };
        Chunk {
            source: "s".into(),
            table: Ident::new("t").expect("ident"),
            raw_columns: Arc::new(TableSchema::default()),
            rows: RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(offsets.to_vec()))])
                .expect("rows"),
            dead_letters: dead
                .iter()
                .map(|o| DeadLetter::new("bad", b"x", origin(*o)))
                .collect(),
            position: Position::Kafka(PartitionProgress {
                topic: "t".into(),
                partition: 3,
                next_offset: offsets.iter().chain(dead).max().expect("offsets") + 1,
            }),
            since: Instant::now(),
        }
    }

    fn next_offset(c: &Chunk) -> i64 {
        match &c.position {
            Position::Kafka(p) => p.next_offset,
            other => panic!("not a Kafka position: {other:?}"),
        }
    }

    #[test]
    fn a_kafka_chunk_splits_where_its_nth_row_ends_and_dead_letters_follow_their_offsets() {
        // Offsets 10..=15 with 12 a dead letter and 9 a gap recorded before the rows.
        let chunk = kafka_chunk(&[10, 11, 13, 14, 15], &[9, 12]);
        let (head, tail) = chunk.split_front(2).expect("splits");
        assert_eq!((head.rows.num_rows(), next_offset(&head)), (2, 12));
        assert_eq!((tail.rows.num_rows(), next_offset(&tail)), (3, 16));
        let offsets = |c: &Chunk| -> Vec<i64> {
            c.dead_letters
                .iter()
                .map(|d| match &d.origin {
                    Origin::Kafka { offset, .. } => *offset,
                    other => panic!("not a Kafka origin: {other:?}"),
                })
                .collect()
        };
        assert_eq!(offsets(&head), [9]);
        assert_eq!(offsets(&tail), [12]);
        let (head, _) = kafka_chunk(&[10, 11, 13, 14, 15], &[12])
            .split_front(3)
            .expect("splits");
        assert_eq!((next_offset(&head), offsets(&head)), (14, vec![12]));
    }

    #[test]
    fn chunks_that_cannot_say_where_a_split_ends_come_back_whole() {
        let chunk = kafka_chunk(&[1, 2, 3], &[]);
        let chunk = chunk.split_front(0).expect_err("nothing to split off");
        let chunk = chunk.split_front(3).expect_err("nothing left after");
        let file = Chunk {
            position: Position::File(FileProgress {
                id: FileId("f".into()),
                hash: FileHash("h".into()),
                name: "f.csv".into(),
                next_offset: 10,
                next_line: 4,
                status: FileStatus::Partial,
            }),
            ..chunk
        };
        let back = file.split_front(1).expect_err("a file chunk stays whole");
        assert_eq!(back.rows.num_rows(), 3);
    }

    #[test]
    fn dead_letter_raw_is_bounded_and_trimmed() {
        let origin = Origin::File {
            name: "a.csv".into(),
            line: 3,
        };
        let long = vec![b'x'; DEAD_LETTER_RAW_LIMIT * 2];
        assert_eq!(
            DeadLetter::new("e", &long, origin.clone()).raw.len(),
            DEAD_LETTER_RAW_LIMIT
        );
        assert_eq!(DeadLetter::new("e", b"a,b\r\n", origin.clone()).raw, "a,b");
        let error = "e".repeat(DEAD_LETTER_RAW_LIMIT * 2);
        let dl = DeadLetter::new(error, b"x", origin);
        assert!(
            dl.error.len() < DEAD_LETTER_RAW_LIMIT + 32,
            "{}",
            dl.error.len()
        );
        let FileStatus::Quarantined { reason } = FileStatus::quarantined("r".repeat(1 << 20))
        else {
            panic!("not quarantined");
        };
        assert!(reason.ends_with("... (1048576 bytes)"), "{}", reason.len());
    }
}
