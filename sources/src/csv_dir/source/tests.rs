//! The source against a ledger it does not own: files are looked up when they appear.

use std::{
    fs,
    io::Write,
    path::Path,
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use arrow::array::{Array, Int64Array};
use sluice_core::{
    FileHash, FileId, FileLedger, FileProgress, FileRecord, FileStatus, Ident, LookupError,
    Position, TableSchema,
};
use tokio_util::sync::CancellationToken;

use super::{CsvDirSetup, CsvDirSource};
use crate::{csv_dir::CsvSourceConfig, SourceContext, SourceEvent};

/// A ledger the test can change while the source holds it, and that notes what was asked.
#[derive(Debug, Clone, Default)]
struct SharedLedger {
    records: Arc<Mutex<Vec<FileRecord>>>,
    asked: Arc<Mutex<Vec<String>>>,
}

impl FileLedger for SharedLedger {
    fn by_content(&mut self, hash: &FileHash) -> Result<Option<FileRecord>, LookupError> {
        self.asked
            .lock()
            .expect("lock")
            .push(format!("hash {hash}"));
        self.records.lock().expect("lock").by_content(hash)
    }

    fn by_name(&mut self, name: &str) -> Result<Option<FileRecord>, LookupError> {
        self.asked
            .lock()
            .expect("lock")
            .push(format!("name {name}"));
        self.records.lock().expect("lock").by_name(name)
    }
}

fn source(root: &Path, ledger: impl FileLedger + 'static) -> CsvDirSource {
    source_with(root, ledger, "")
}

/// [`source`] with more config keys.
fn source_with(root: &Path, ledger: impl FileLedger + 'static, extra: &str) -> CsvDirSource {
    let inbox = root.join("inbox");
    fs::create_dir_all(&inbox).expect("inbox");
    let text = format!(
        "path = {:?}\nsettle = \"10ms\"\n{extra}",
        inbox.display().to_string()
    );
    let config: CsvSourceConfig = toml::from_str(&text).expect("config");
    CsvDirSource::new(CsvDirSetup {
        name: "src".into(),
        config,
        table: Ident::new("t").expect("ident"),
        data_schema: None,
        ledger: Box::new(ledger),
        archive_dir: root.join("archive"),
        quarantine_dir: root.join("quarantine"),
        chunk_rows: 1000,
        chunk_bytes: 1 << 20,
    })
    .expect("source")
}

/// A `--once` run's context, with the receiving end of its events and the sending end of
/// its acknowledgements (the test plays the committer).
fn once_context() -> (
    SourceContext,
    mpsc::Receiver<SourceEvent>,
    mpsc::Sender<Position>,
) {
    once_context_holding(64)
}

/// [`once_context`] whose events channel holds `capacity` events (0: each is sent only
/// once the test takes it).
fn once_context_holding(
    capacity: usize,
) -> (
    SourceContext,
    mpsc::Receiver<SourceEvent>,
    mpsc::Sender<Position>,
) {
    let (events, received) = mpsc::sync_channel(capacity);
    let (acks_tx, acks) = mpsc::channel();
    let ctx = SourceContext {
        events,
        acks,
        stop: CancellationToken::new(),
        once: true,
        status: Arc::default(),
    };
    (ctx, received, acks_tx)
}

/// Runs the source with `--once`, playing the committer: every chunk is acknowledged.
/// Returns the chunks' row counts.
fn run_acking(source: CsvDirSource) -> Vec<usize> {
    let (ctx, received, acks_tx) = once_context();
    let runner = std::thread::spawn(move || source.run(ctx));
    let mut chunks = Vec::new();
    while let Ok(event) = received.recv() {
        if let SourceEvent::Chunk(chunk) = event {
            chunks.push(chunk.rows.num_rows());
            acks_tx.send(chunk.position.clone()).expect("ack");
        }
    }
    runner.join().expect("join").expect("run");
    chunks
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn a_file_recorded_after_start_is_recognised_as_ingested_when_it_appears() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = SharedLedger::default();
    let src = source(dir.path(), ledger.clone());
    // Recorded (by an earlier commit) after the source was built: a source that loaded
    // the ledger at start would not know it.
    let content = "id\n1\n2\n";
    let hash = FileHash(blake3::hash(content.as_bytes()).to_hex().to_string());
    let record = FileRecord {
        id: FileId("earlier".into()),
        hash: Some(hash.clone()),
        original_name: "earlier.csv".into(),
        status: FileStatus::Ingested,
        next_offset: content.len() as u64,
        next_line: 4,
    };
    ledger.records.lock().expect("lock").push(record);
    fs::write(dir.path().join("inbox/again.csv"), content).expect("write");

    let chunks = run_acking(src);

    assert_eq!(chunks, Vec::<usize>::new(), "a duplicate's rows were sent");
    assert_eq!(
        *ledger.asked.lock().expect("lock"),
        vec!["name again.csv".to_string(), format!("hash {hash}")]
    );
    assert_eq!(count(&dir.path().join("archive")), 1);
    assert_eq!(count(&dir.path().join("inbox")), 0);
}

#[test]
fn a_new_file_is_looked_up_once_and_its_rows_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = SharedLedger::default();
    let src = source(dir.path(), ledger.clone());
    fs::write(dir.path().join("inbox/new.csv"), "id\n1\n2\n").expect("write");

    assert_eq!(run_acking(src), vec![2]);
    assert_eq!(
        ledger.asked.lock().expect("lock").len(),
        2,
        "by name, then by content"
    );
    assert_eq!(count(&dir.path().join("archive")), 1);
}

#[test]
fn a_rescan_forgets_files_that_are_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut src = source(dir.path(), SharedLedger::default());
    let kept = dir.path().join("inbox/kept.csv");
    let gone = dir.path().join("inbox/gone.csv");
    fs::write(&kept, "id\n1\n").expect("write");
    let sig = super::stat(&kept).expect("stat");
    for path in [&kept, &gone] {
        src.settled.insert(path.clone(), sig);
        src.changed_after_read.insert(path.clone());
    }

    assert!(src.rescan(&Arc::default()));

    assert_eq!(src.settled.keys().collect::<Vec<_>>(), vec![&kept]);
    assert_eq!(
        src.changed_after_read.iter().collect::<Vec<_>>(),
        vec![&kept]
    );
}

#[test]
fn a_rescan_leaves_a_file_in_flight_to_its_acknowledgement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut src = source(dir.path(), SharedLedger::default());
    let flying = dir.path().join("inbox/flying.csv");
    let new = dir.path().join("inbox/new.csv");
    for path in [&flying, &new] {
        fs::write(path, "id\n1\n").expect("write");
    }
    let found = super::Found {
        path: &flying,
        real: &flying,
        name: "flying.csv",
        content: FileHash("c".into()),
        sig: super::stat(&flying).expect("stat"),
        limit: 5,
    };
    src.track_in_flight(&FileId("f".into()), &found, None);

    assert!(src.rescan(&Arc::default()));

    assert!(src.settler.holds(&new));
    assert!(
        !src.settler.holds(&flying),
        "a file in flight is waited for as if new"
    );
}

/// A ledger whose first lookups fail, as a database read would under I/O trouble.
#[derive(Debug)]
struct FailingFirst {
    failures_left: usize,
}

impl FileLedger for FailingFirst {
    fn by_content(&mut self, _: &FileHash) -> Result<Option<FileRecord>, LookupError> {
        Ok(None)
    }

    fn by_name(&mut self, _: &str) -> Result<Option<FileRecord>, LookupError> {
        if self.failures_left > 0 {
            self.failures_left -= 1;
            return Err("disk I/O error".into());
        }
        Ok(None)
    }
}

#[test]
fn a_failed_lookup_is_retried_and_the_file_then_ingested() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = source(dir.path(), FailingFirst { failures_left: 2 });
    fs::write(dir.path().join("inbox/a.csv"), "id\n1\n2\n3\n").expect("write");

    assert_eq!(run_acking(src), vec![3]);
    assert_eq!(count(&dir.path().join("archive")), 1);
}

#[test]
fn a_file_abandoned_part_way_is_no_longer_waited_for_once_its_chunks_are_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut src = source(dir.path(), SharedLedger::default());
    let path = dir.path().join("inbox/a.csv");
    fs::write(&path, "id\n1\n").expect("write");
    let id = FileId("a".into());
    let found = super::Found {
        path: &path,
        real: &path,
        name: "a.csv",
        content: FileHash("c".into()),
        sig: super::stat(&path).expect("stat"),
        limit: 5,
    };
    let partial = |offset| {
        Position::File(FileProgress {
            id: id.clone(),
            hash: FileHash(format!("h{offset}")),
            name: "a.csv".into(),
            next_offset: offset,
            next_line: 2,
            status: FileStatus::Partial,
        })
    };
    // Two chunks sent, then reading fails: the file waits for their acknowledgements only.
    let (ctx, _events, _acks) = once_context();
    src.track_in_flight(&id, &found, None);
    src.in_flight.get_mut(&id).expect("in flight").unacked = 2;
    src.abandon(&id);
    src.on_ack(partial(10), &ctx);
    assert!(src.in_flight.contains_key(&id));
    src.on_ack(partial(20), &ctx);
    assert!(src.in_flight.is_empty());

    // Nothing sent before the failure: nothing to wait for.
    src.track_in_flight(&id, &found, None);
    src.abandon(&id);
    assert!(src.in_flight.is_empty());
}

fn hash(bytes: &[u8]) -> FileHash {
    FileHash(blake3::hash(bytes).to_hex().to_string())
}

/// Runs the source with `--once`, playing the committer and its part of the ledger: each
/// chunk's position is recorded as `_sluice.files` records it (one record per file id,
/// the last position winning, newest last), then acknowledged. Returns the `id` values
/// of the rows sent.
fn run_committing(source: CsvDirSource, ledger: &SharedLedger) -> Vec<i64> {
    let (ctx, received, acks_tx) = once_context();
    let runner = std::thread::spawn(move || source.run(ctx));
    let mut ids = Vec::new();
    while let Ok(event) = received.recv() {
        let SourceEvent::Chunk(chunk) = event else {
            continue;
        };
        if let Some(column) = chunk.rows.column_by_name("id") {
            let column = column
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("id is BIGINT");
            ids.extend(column.iter().flatten());
        }
        let Position::File(p) = &chunk.position else {
            panic!("a file source sent {:?}", chunk.position);
        };
        let mut records = ledger.records.lock().expect("lock");
        records.retain(|r| r.id != p.id);
        records.push(FileRecord {
            id: p.id.clone(),
            hash: Some(p.hash.clone()),
            original_name: p.name.clone(),
            status: p.status.clone(),
            next_offset: p.next_offset,
            next_line: p.next_line,
        });
        drop(records);
        acks_tx.send(chunk.position.clone()).expect("ack");
    }
    runner.join().expect("join").expect("run");
    ids
}

#[test]
fn a_file_quarantined_after_rows_were_committed_keeps_their_record_and_none_comes_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = SharedLedger::default();
    let first = source(dir.path(), ledger.clone());
    // A crash left f.csv partly committed: rows 1 and 2.
    let committed = b"id\n1\n2\n";
    let partial = FileRecord {
        id: FileId("f".into()),
        hash: Some(hash(committed)),
        original_name: "f.csv".into(),
        status: FileStatus::Partial,
        next_offset: committed.len() as u64,
        next_line: 4,
    };
    ledger.records.lock().expect("lock").push(partial.clone());
    // Before the restart, what followed became something that is not CSV text.
    let broken = [&committed[..], b"3\n\0\0\0\n"].concat();
    fs::write(dir.path().join("inbox/f.csv"), &broken).expect("write");

    assert_eq!(run_committing(first, &ledger), Vec::<i64>::new());

    assert_eq!(count(&dir.path().join("quarantine")), 1);
    let records = ledger.records.lock().expect("lock").clone();
    assert!(
        records.contains(&partial),
        "the committed rows' record changed: {records:?}"
    );
    let quarantined: Vec<&FileRecord> = records
        .iter()
        .filter(|r| matches!(r.status, FileStatus::Quarantined { .. }))
        .collect();
    assert_eq!(quarantined.len(), 1, "{records:?}");
    assert_eq!(quarantined[0].hash, Some(hash(&broken)));
    let FileStatus::Quarantined { reason } = &quarantined[0].status else {
        unreachable!()
    };
    assert!(
        reason.starts_with("binary content: NUL byte at offset 9")
            && reason.contains("7 bytes of it (lines before 4) were committed"),
        "{reason}"
    );

    // The corrected file under the same name: read on after the rows committed.
    fs::write(dir.path().join("inbox/f.csv"), b"id\n1\n2\n3\n4\n").expect("write");
    assert_eq!(
        run_committing(source(dir.path(), ledger.clone()), &ledger),
        [3, 4]
    );
    let records = ledger.records.lock().expect("lock").clone();
    let f = records
        .iter()
        .find(|r| r.id == partial.id)
        .expect("f's record");
    assert_eq!((&f.status, f.next_offset), (&FileStatus::Ingested, 11));

    // The broken content again, under another name: quarantined, nothing read.
    fs::write(dir.path().join("inbox/g.csv"), &broken).expect("write");
    assert_eq!(
        run_committing(source(dir.path(), ledger.clone()), &ledger),
        Vec::<i64>::new()
    );
    assert_eq!(count(&dir.path().join("quarantine")), 2);
}

#[test]
fn a_quarantine_after_chunks_were_sent_is_recorded_apart_from_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut src = source(dir.path(), SharedLedger::default());
    let path = dir.path().join("inbox/a.csv");
    fs::write(&path, "id\n1\n2\n").expect("write");
    let (events, received) = mpsc::sync_channel(8);
    let (_acks_tx, acks) = mpsc::channel();
    let ctx = SourceContext {
        events,
        acks,
        stop: CancellationToken::new(),
        once: true,
        status: Arc::default(),
    };
    let found = super::Found {
        path: &path,
        real: &path,
        name: "a.csv",
        content: hash(b"id\n1\n2\n"),
        sig: super::stat(&path).expect("stat"),
        limit: 9,
    };
    let id = FileId("a".into());
    let empty = Arc::new(TableSchema::default());
    let rows = arrow::record_batch::RecordBatch::new_empty(empty.arrow_schema());
    let sent = FileProgress {
        id: id.clone(),
        hash: hash(b"id\n1\n"),
        name: "a.csv".into(),
        next_offset: 5,
        next_line: 3,
        status: FileStatus::Partial,
    };
    // A chunk sent, then reading fails for good.
    src.track_in_flight(&id, &found, None);
    src.send(&ctx, empty, rows, Vec::new(), sent.clone());
    src.quarantine(&found, id.clone(), "cannot be read: broken".into(), &ctx);

    let positions: Vec<FileProgress> = received
        .try_iter()
        .filter_map(|e| match e {
            SourceEvent::Chunk(c) => match c.position {
                Position::File(p) => Some(p),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(positions.len(), 2);
    assert_eq!(positions[0], sent);
    let q = &positions[1];
    assert_ne!(
        q.id, id,
        "the quarantine would overwrite the chunk's position"
    );
    assert_eq!((&q.hash, q.next_offset), (&found.content, 0));
    assert!(
        matches!(&q.status, FileStatus::Quarantined { reason }
            if reason == "cannot be read: broken; 5 bytes of it (lines before 3) were committed before, and their rows stay"),
        "{:?}",
        q.status
    );
    // The chunk's acknowledgement ends the wait for `a`; the quarantine's moves the file.
    src.on_ack(Position::File(sent), &ctx);
    assert!(!src.in_flight.contains_key(&id));
    src.on_ack(Position::File(q.clone()), &ctx);
    assert!(src.in_flight.is_empty());
    assert_eq!(count(&dir.path().join("quarantine")), 1);
}

#[test]
fn a_retry_leaves_to_the_settler_a_file_it_holds_or_that_changed_since_it_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut src = source(dir.path(), SharedLedger::default());
    let status = crate::SourceStatus::default();
    let path = dir.path().join("inbox/a.csv");
    fs::write(&path, "id\n1\n").expect("write");
    let failed_as = super::stat(&path).expect("stat");
    let t0 = Instant::now();
    let emfile = std::io::Error::from_raw_os_error(24);
    src.unreadable
        .failed(&path, "a.csv", failed_as, &emfile, t0);
    src.show_problem(&status);
    assert!(status.problem().is_some());
    let due = t0 + Duration::from_secs(1);

    // Being written (the settler saw it again): not tried on the retry's schedule.
    src.settler.touch(&path, t0);
    assert_eq!(
        src.retries_due(due, &status),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(src.unreadable.attempts(&path), Some(1), "still waits");
    // Unchanged and not held: tried.
    src.settler.forget(&path);
    assert_eq!(src.retries_due(due, &status), std::slice::from_ref(&path));

    // Written to since it failed: no longer a retry, the settler's to hand on.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    f.write_all(b"2,half").expect("append");
    assert_eq!(
        src.retries_due(due, &status),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(src.unreadable.attempts(&path), None);
    assert!(src.settler.holds(&path));
    assert_eq!(status.problem(), None);
}

#[test]
fn a_headerless_file_whose_first_record_is_too_long_gives_no_schema_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = SharedLedger::default();
    let src = source_with(
        dir.path(),
        ledger.clone(),
        "header = false\nmax_line_bytes = \"16B\"",
    );
    // Its columns would be inferred from it, but the first record cannot be counted.
    fs::write(
        dir.path().join("inbox/a.csv"),
        "1,aaaaaaaaaaaaaaaaaaaaaaaa\n2,b\n",
    )
    .expect("write");

    assert_eq!(run_committing(src, &ledger), Vec::<i64>::new());

    let records = ledger.records.lock().expect("lock").clone();
    let reasons: Vec<&str> = records
        .iter()
        .filter_map(|r| match &r.status {
            FileStatus::Quarantined { reason } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "the first record is longer than max_line_bytes (16 B), so its columns cannot be \
          counted and the table's schema cannot be inferred from this file"
        ]
    );
    assert_eq!(count(&dir.path().join("quarantine")), 1);
}

mod refused;
