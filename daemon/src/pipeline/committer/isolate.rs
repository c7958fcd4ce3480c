//! A batch whose commit DuckDB refused for a value of its rows
//! ([`SinkError::is_refused_value`]) is committed again one file at a time, in the order its
//! files' first chunks came, each file's chunks as a batch of their own (an id, a Parquet
//! file and a transaction of their own, acknowledged as any batch). A file whose own commit
//! fails is refused: its source is told (a position with [`FileStatus::Refused`] on its
//! acknowledgements), records the file as quarantined and reads no more of it, and the
//! chunks of it still on their way here are dropped ([`Refused`]). The other files land.
//!
//! The failure stays fatal when it is not tied to a file: the batch holds no file's chunks
//! (Kafka), the chunks of no file fail on their own, or each of two or more files does. A
//! batch of one file's chunks was that file's own commit already.
//!
//! A crash anywhere here leaves each file's rows exactly once: each file's commit is an
//! ordinary one, and nothing of a refusal is recorded until the source's quarantine
//! commits, so a restart reads again what was not committed, and refuses it again.

use std::{collections::HashMap, sync::Arc};

use sluice_core::{fault, text, FileId, FileProgress, FileStatus, Position};
use sluice_sinks::{PendingBatch, SinkError};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::{AfterCommit, CommitError, CommitWorker, Failed};

/// How much of the error a refused file's reason quotes: its source adds to it, and the
/// whole is cut to [`text::TEXT_LIMIT`].
const REASON_ERROR_LIMIT: usize = text::TEXT_LIMIT / 2;

/// A file of a source, by its last position in a batch.
type File = (Arc<str>, FileProgress);

/// Chunks of a failed batch committed together: one file's, or those of no file.
#[derive(Debug)]
pub(super) struct Group {
    /// `None` for the chunks of no file.
    file: Option<File>,
    batch: PendingBatch,
}

/// The batch's chunks by file, in the order each file's first chunk came (the chunks of no
/// file together, where the first of them came); each file's chunks keep their order.
pub(super) fn by_file(batch: PendingBatch) -> Vec<Group> {
    let PendingBatch {
        table,
        raw_columns,
        chunks,
    } = batch;
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<Option<(Arc<str>, FileId)>, usize> = HashMap::new();
    for chunk in chunks {
        let file = match &chunk.position {
            Position::File(p) => Some((chunk.source.clone(), p.clone())),
            _ => None,
        };
        let key = file.as_ref().map(|(s, p)| (s.clone(), p.id.clone()));
        match index.get(&key) {
            Some(&i) => {
                groups[i].file = file;
                groups[i].batch.chunks.push(chunk);
            }
            None => {
                index.insert(key, groups.len());
                let batch = PendingBatch {
                    table: table.clone(),
                    raw_columns: raw_columns.clone(),
                    chunks: vec![chunk],
                };
                groups.push(Group { file, batch });
            }
        }
    }
    groups
}

/// Files whose chunks were refused. Chunks of them still on their way (queued, in the
/// batch loop's open batches, in the channel) are dropped rather than committed. A file's
/// entry goes once a quarantine record of its name from its source passes: the source
/// sends one after the last chunk of the file it sends (see its `on_refused`), so the
/// entries are the files refused and not yet recorded, and a file read again later under
/// the same id (resumed after what of it was committed) is not dropped.
#[derive(Debug, Default)]
pub(super) struct Refused(HashMap<(Arc<str>, FileId), String>);

impl Refused {
    fn insert(&mut self, source: Arc<str>, last: &FileProgress) {
        self.0.insert((source, last.id.clone()), last.name.clone());
    }

    /// Drops the chunks of refused files from `batch`; returns how many.
    pub(super) fn drop_chunks(&mut self, batch: &mut PendingBatch) -> usize {
        if self.0.is_empty() {
            return 0;
        }
        let before = batch.chunks.len();
        let refused = &mut self.0;
        batch.chunks.retain(|chunk| {
            let Position::File(p) = &chunk.position else {
                return true;
            };
            if refused.contains_key(&(chunk.source.clone(), p.id.clone())) {
                return false;
            }
            if matches!(p.status, FileStatus::Quarantined { .. }) {
                refused.retain(|(source, _), name| *source != chunk.source || *name != p.name);
            }
            true
        });
        before - batch.chunks.len()
    }
}

impl<A: AfterCommit> CommitWorker<A> {
    /// Commits a failed batch one file at a time and refuses the files whose own commit
    /// DuckDB refuses; the batch's error when its failure is not tied to a file (see the
    /// module doc).
    pub(super) fn isolate(
        &mut self,
        failed: Box<Failed>,
        stop: &CancellationToken,
    ) -> Result<(), CommitError> {
        if !failed.error.is_refused_value() {
            return Err(failed.fatal());
        }
        let table = failed.staged.batch().table.to_string();
        let Failed { staged, error } = *failed;
        let fatal = |error: SinkError| CommitError {
            table: table.clone(),
            cause: Box::new(error),
        };
        let groups = by_file(self.unstage(staged)?);
        let files = groups.iter().filter(|g| g.file.is_some()).count();
        if files == 0 {
            return Err(fatal(error));
        }
        let shown = error.to_string();
        if groups.len() > 1 {
            warn!(%table, files, error = %text::bounded(&shown, text::TEXT_LIMIT),
                "DuckDB refused a value in a batch; committing its files one at a time");
        }
        fault::point("isolate.before");
        let refused = match groups.len() {
            1 => groups
                .into_iter()
                .filter_map(|g| g.file.map(|f| (f, shown.clone())))
                .collect(),
            _ => self.commit_each(groups, stop)?,
        };
        if files > 1 && refused.len() == files {
            error!(%table, files, "every file of the batch failed on its own: the failure is not tied to one file");
            return Err(fatal(error));
        }
        fault::point("isolate.refused");
        for (file, why) in refused {
            self.refuse(&table, file, &why);
        }
        Ok(())
    }

    /// Commits each group as a batch of its own; returns the files whose commit DuckDB
    /// refused for a value, with the error. Any other failure is returned.
    fn commit_each(
        &mut self,
        groups: Vec<Group>,
        stop: &CancellationToken,
    ) -> Result<Vec<(File, String)>, CommitError> {
        let mut refused = Vec::new();
        for Group { file, batch } in groups {
            let Some(staged) = self.stage(batch)? else {
                continue;
            };
            let Err(failed) = self.commit(staged, stop) else {
                continue;
            };
            match file {
                Some(file) if failed.error.is_refused_value() => {
                    refused.push((file, failed.error.to_string()));
                    // Its id goes to the next file's batch.
                    self.unstage(failed.staged)?;
                }
                _ => return Err(failed.fatal()),
            }
        }
        Ok(refused)
    }

    /// Tells the file's source that its chunks cannot be committed, and drops the chunks
    /// of it still on their way.
    fn refuse(&mut self, table: &str, (source, last): File, why: &str) {
        warn!(%table, %source, file = %last.name, error = %text::bounded(why, text::TEXT_LIMIT),
            "a file's rows cannot be committed; it is quarantined, the other files of its batch are committed");
        self.refused.insert(source.clone(), &last);
        let reason = format!(
            "cannot be committed: {}",
            text::bounded(why, REASON_ERROR_LIMIT)
        );
        let position = Position::File(FileProgress {
            status: FileStatus::refused(reason),
            ..last
        });
        if let Some(tx) = self.acks.get(&source) {
            // A source that already stopped reads the file again at the next start.
            let _ = tx.send(position);
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::{Chunk, FileHash, Ident, PartitionProgress};

    use super::*;
    use crate::pipeline::batcher::tests::chunk;

    fn of_file(source: &str, id: &str, offset: u64, status: FileStatus) -> Chunk {
        Chunk {
            source: source.into(),
            position: Position::File(FileProgress {
                id: FileId(id.into()),
                hash: FileHash(format!("h{offset}")),
                name: format!("{id}.csv"),
                next_offset: offset,
                next_line: 1,
                status,
            }),
            ..chunk("t", 2)
        }
    }

    fn of_partition(offset: i64) -> Chunk {
        Chunk {
            position: Position::Kafka(PartitionProgress {
                topic: "k".into(),
                partition: 0,
                next_offset: offset,
            }),
            ..chunk("t", 2)
        }
    }

    fn batch(chunks: Vec<Chunk>) -> PendingBatch {
        PendingBatch {
            table: Ident::new("t").expect("ident"),
            raw_columns: Arc::default(),
            chunks,
        }
    }

    /// Each chunk as `source/file@offset` (`kafka@offset` for a partition's).
    fn names(chunks: &[Chunk]) -> Vec<String> {
        chunks
            .iter()
            .map(|c| match &c.position {
                Position::File(p) => format!("{}/{}@{}", c.source, p.id, p.next_offset),
                Position::Kafka(p) => format!("kafka@{}", p.next_offset),
                Position::Keyed(p) => format!("{}@{}", p.key, p.next),
            })
            .collect()
    }

    #[test]
    fn a_batch_splits_by_file_in_the_order_files_came_and_chunks_keep_theirs() {
        let partial = || FileStatus::Partial;
        let groups = by_file(batch(vec![
            of_file("s", "a", 10, partial()),
            of_partition(5),
            of_file("s", "b", 10, partial()),
            of_file("s", "a", 20, FileStatus::Ingested),
            // Another source's file of the same id is another file.
            of_file("r", "a", 10, partial()),
            of_partition(7),
            of_file("s", "b", 30, partial()),
        ]));
        let split: Vec<Vec<String>> = groups.iter().map(|g| names(&g.batch.chunks)).collect();
        assert_eq!(
            split,
            [
                vec!["s/a@10", "s/a@20"],
                vec!["kafka@5", "kafka@7"],
                vec!["s/b@10", "s/b@30"],
                vec!["r/a@10"],
            ]
        );
        // Each file's group says where its last chunk ends (its refusal names that).
        let ends: Vec<Option<u64>> = groups
            .iter()
            .map(|g| g.file.as_ref().map(|(_, p)| p.next_offset))
            .collect();
        assert_eq!(ends, [Some(20), None, Some(30), Some(10)]);
    }

    #[test]
    fn chunks_of_a_refused_file_are_dropped_until_its_quarantine_passes() {
        let mut refused = Refused::default();
        let b = of_file("s", "b", 10, FileStatus::Partial);
        let Position::File(last) = &b.position else {
            unreachable!("a file chunk");
        };
        refused.insert("s".into(), last);
        let mut later = batch(vec![
            of_file("s", "a", 10, FileStatus::Partial),
            of_file("s", "b", 20, FileStatus::Partial),
            // The same id from another source is another file.
            of_file("r", "b", 20, FileStatus::Partial),
            of_partition(3),
        ]);
        assert_eq!(refused.drop_chunks(&mut later), 1);
        assert_eq!(names(&later.chunks), ["s/a@10", "r/b@20", "kafka@3"]);
        // The source's quarantine record of b (an id of its own) passes, after the last
        // chunk of b it sent, which is still dropped; then b is forgotten.
        let quarantine = Chunk {
            position: Position::File(FileProgress {
                id: FileId("q".into()),
                name: "b.csv".into(),
                status: FileStatus::quarantined("cannot be committed: x"),
                ..last.clone()
            }),
            ..chunk("t", 0)
        };
        let mut next = batch(vec![
            of_file("s", "b", 30, FileStatus::Ingested),
            quarantine,
        ]);
        assert_eq!(refused.drop_chunks(&mut next), 1);
        assert_eq!(names(&next.chunks), ["s/q@10"]);
        assert!(refused.0.is_empty(), "{:?}", refused.0);
    }
}
