//! Micro-batching: per table, chunks accumulate until the batch reaches `max_rows` or
//! `max_bytes`, or its oldest chunk is `max_age` old. A chunk that would push a non-empty
//! batch over `max_rows` fills it to exactly `max_rows` when it can be split (Kafka
//! chunks; see [`Chunk::split_front`]), and so does a chunk larger than `max_rows`;
//! otherwise, and over `max_bytes`, it closes the batch first. A batch exceeds a limit
//! only when a single chunk that cannot be split does.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use sluice_core::{Chunk, Ident, Position, TableSchema};
use sluice_sinks::PendingBatch;

/// When a table's batch is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
}

#[derive(Debug)]
struct Buffer {
    raw_columns: Option<Arc<TableSchema>>,
    chunks: Vec<Chunk>,
    rows: usize,
    bytes: usize,
    since: Instant,
}

/// Open batches, one per table.
#[derive(Debug)]
pub struct Batcher {
    limits: Limits,
    open: BTreeMap<Ident, Buffer>,
}

impl Batcher {
    pub fn new(limits: Limits) -> Self {
        Batcher {
            limits,
            open: BTreeMap::new(),
        }
    }

    /// Adds a chunk; returns the batches that are full as a result (the one the chunk did
    /// not fit into or filled up, and those a large chunk split into fills).
    pub fn add(&mut self, mut chunk: Chunk, now: Instant) -> Vec<PendingBatch> {
        let mut full = Vec::new();
        let table = chunk.table.clone();
        loop {
            let (rows, bytes) = self.open.get(&table).map_or((0, 0), |b| (b.rows, b.bytes));
            if rows > 0 && bytes + chunk.rows.get_array_memory_size() > self.limits.max_bytes {
                full.extend(self.take(&table));
                continue;
            }
            let room = self.limits.max_rows.saturating_sub(rows);
            if chunk.rows.num_rows() <= room {
                break;
            }
            match chunk.split_front(room) {
                Ok((head, tail)) => {
                    self.push(head, now);
                    full.extend(self.take(&table));
                    chunk = tail;
                }
                Err(whole) if rows > 0 => {
                    full.extend(self.take(&table));
                    chunk = whole;
                }
                Err(whole) => {
                    chunk = whole;
                    break;
                }
            }
        }
        self.push(chunk, now);
        let buf = &self.open[&table];
        if buf.rows >= self.limits.max_rows || buf.bytes >= self.limits.max_bytes {
            full.extend(self.take(&table));
        }
        full
    }

    /// Adds a chunk to its table's open batch (opening one).
    fn push(&mut self, chunk: Chunk, now: Instant) {
        let rows = chunk.rows.num_rows();
        // The batch's age counts from its oldest record's arrival in its source.
        let since = chunk.since.min(now);
        let buf = self
            .open
            .entry(chunk.table.clone())
            .or_insert_with(|| Buffer {
                raw_columns: None,
                chunks: Vec::new(),
                rows: 0,
                bytes: 0,
                since,
            });
        buf.since = buf.since.min(since);
        if rows > 0 {
            // Chunks typed before and after a schema change share a batch: it takes the
            // columns of both (see `sluice_core::evolve`).
            buf.raw_columns = Some(match buf.raw_columns.take() {
                Some(cols)
                    if !Arc::ptr_eq(&cols, &chunk.raw_columns) && *cols != *chunk.raw_columns =>
                {
                    Arc::new(cols.evolve(&chunk.raw_columns).0)
                }
                Some(cols) => cols,
                None => chunk.raw_columns.clone(),
            });
        }
        buf.rows += rows;
        buf.bytes += chunk.rows.get_array_memory_size();
        buf.chunks.push(chunk);
    }

    /// The batch that reached `max_age` first, if any has. One at a time: the caller hands
    /// each to the committer when it has room, and the others keep growing meanwhile.
    pub fn take_aged(&mut self, now: Instant) -> Option<PendingBatch> {
        let max_age = self.limits.max_age;
        let table = self
            .open
            .iter()
            .filter(|(_, b)| now.duration_since(b.since) >= max_age)
            .min_by_key(|(_, b)| b.since)
            .map(|(t, _)| t.clone())?;
        self.take(&table)
    }

    /// Every open batch.
    pub fn all(&mut self) -> Vec<PendingBatch> {
        let tables: Vec<Ident> = self.open.keys().cloned().collect();
        tables.iter().filter_map(|t| self.take(t)).collect()
    }

    /// Drops the open chunks of `source` positioned in these Kafka partitions (revoked:
    /// their new owner reads them again). Returns how many were dropped.
    pub fn drop_partitions(&mut self, source: &str, partitions: &[(Arc<str>, i32)]) -> usize {
        let mut dropped = 0;
        for buf in self.open.values_mut() {
            let before = buf.chunks.len();
            buf.chunks.retain(|c| {
                let Position::Kafka(p) = &c.position else {
                    return true;
                };
                &*c.source != source
                    || !partitions
                        .iter()
                        .any(|(t, n)| *t == p.topic && *n == p.partition)
            });
            dropped += before - buf.chunks.len();
            buf.rows = buf.chunks.iter().map(|c| c.rows.num_rows()).sum();
            buf.bytes = buf
                .chunks
                .iter()
                .map(|c| c.rows.get_array_memory_size())
                .sum();
        }
        self.open.retain(|_, b| !b.chunks.is_empty());
        dropped
    }

    /// How long until the oldest open batch reaches `max_age` (`None` when none is open).
    pub fn next_deadline(&self, now: Instant) -> Option<Duration> {
        self.open
            .values()
            .map(|b| (b.since + self.limits.max_age).saturating_duration_since(now))
            .min()
    }

    fn take(&mut self, table: &Ident) -> Option<PendingBatch> {
        let buf = self.open.remove(table)?;
        Some(PendingBatch {
            table: table.clone(),
            raw_columns: buf
                .raw_columns
                .unwrap_or_else(|| Arc::new(TableSchema::default())),
            chunks: buf.chunks,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use arrow::{
        array::Int64Array,
        datatypes::{DataType, Field, Schema},
        record_batch::RecordBatch,
    };
    use sluice_core::{FileHash, FileId, FileProgress, FileStatus, Position};

    use super::*;

    /// A file chunk of `rows` rows for `table`, read now.
    pub(crate) fn chunk(table: &str, rows: usize) -> Chunk {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let values = Int64Array::from_iter_values(0..rows as i64);
        Chunk {
            source: "s".into(),
            table: Ident::new(table).expect("ident"),
            raw_columns: Arc::new(TableSchema::default()),
            rows: RecordBatch::try_new(schema, vec![Arc::new(values)]).expect("batch"),
            dead_letters: Vec::new(),
            position: Position::File(FileProgress {
                id: FileId("f".into()),
                hash: FileHash("h".into()),
                name: "f".into(),
                next_offset: 0,
                next_line: 1,
                status: FileStatus::Partial,
            }),
            since: Instant::now(),
        }
    }

    fn limits(max_rows: usize) -> Limits {
        Limits {
            max_rows,
            max_bytes: usize::MAX,
            max_age: Duration::from_secs(1),
        }
    }

    #[test]
    fn closes_a_batch_before_a_chunk_would_overflow_it() {
        let mut b = Batcher::new(limits(10));
        let now = Instant::now();
        assert!(b.add(chunk("t", 6), now).is_empty());
        let full = b.add(chunk("t", 6), now);
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].rows(), 6);
        let full = b.add(chunk("t", 4), now);
        assert_eq!(
            full.iter().map(PendingBatch::rows).collect::<Vec<_>>(),
            [10]
        );
        assert!(b.all().is_empty());
    }

    fn kafka_chunk(first_offset: i64, rows: usize) -> Chunk {
        let schema = Arc::new(Schema::new(vec![Field::new(
            sluice_core::meta::OFFSET,
            DataType::Int64,
            false,
        )]));
        let offsets = Int64Array::from_iter_values(first_offset..first_offset + rows as i64);
        Chunk {
            position: Position::Kafka(sluice_core::PartitionProgress {
                topic: "topic".into(),
                partition: 0,
                next_offset: first_offset + rows as i64,
            }),
            rows: RecordBatch::try_new(schema, vec![Arc::new(offsets)]).expect("batch"),
            ..chunk("t", 0)
        }
    }

    #[test]
    fn kafka_chunks_fill_a_batch_to_exactly_max_rows() {
        let mut b = Batcher::new(limits(10));
        let now = Instant::now();
        assert!(b.add(kafka_chunk(0, 6), now).is_empty());
        let full = b.add(kafka_chunk(6, 6), now);
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].rows(), 10);
        // The batch's positions end where its rows do: offsets 0..=9.
        let ends: Vec<i64> = full[0]
            .chunks
            .iter()
            .map(|c| match &c.position {
                Position::Kafka(p) => p.next_offset,
                other => panic!("not a Kafka position: {other:?}"),
            })
            .collect();
        assert_eq!(ends, [6, 10]);
        // A chunk larger than max_rows is cut into full batches too.
        let full = b.add(kafka_chunk(12, 25), now);
        assert_eq!(
            full.iter().map(PendingBatch::rows).collect::<Vec<_>>(),
            [10, 10]
        );
        let rest = b.all();
        assert_eq!(rest[0].rows(), 7);
        match &rest[0].chunks[..] {
            [c] => match &c.position {
                Position::Kafka(p) => assert_eq!(p.next_offset, 37),
                other => panic!("not a Kafka position: {other:?}"),
            },
            other => panic!("{} chunks", other.len()),
        }
    }

    #[test]
    fn a_batch_ages_from_its_oldest_record_in_the_source() {
        let mut b = Batcher::new(limits(100));
        let t0 = Instant::now();
        // Read by the source at t0, handed to the batcher 800 ms later.
        let c = Chunk {
            since: t0,
            ..chunk("t", 1)
        };
        let arrived = t0 + Duration::from_millis(800);
        assert!(b.add(c, arrived).is_empty());
        assert_eq!(b.next_deadline(arrived), Some(Duration::from_millis(200)));
        assert!(b.take_aged(t0 + Duration::from_millis(999)).is_none());
        assert!(b.take_aged(t0 + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn tables_batch_separately_and_age_out_oldest_first() {
        let mut b = Batcher::new(limits(100));
        let t0 = Instant::now();
        let at = |table, ms| Chunk {
            since: t0 + Duration::from_millis(ms),
            ..chunk(table, 1)
        };
        b.add(at("b", 0), t0);
        b.add(at("a", 500), t0 + Duration::from_millis(500));
        assert_eq!(b.next_deadline(t0), Some(Duration::from_secs(1)));
        let aged = b.take_aged(t0 + Duration::from_secs(1)).expect("b is due");
        assert_eq!(aged.table.as_str(), "b");
        assert!(
            b.take_aged(t0 + Duration::from_secs(1)).is_none(),
            "a is not"
        );
        b.add(at("c", 200), t0 + Duration::from_millis(600));
        let later = t0 + Duration::from_secs(2);
        let order: Vec<_> = std::iter::from_fn(|| b.take_aged(later))
            .map(|batch| batch.table.to_string())
            .collect();
        assert_eq!(order, ["c", "a"], "the oldest due batch first");
    }
}
