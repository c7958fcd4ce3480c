//! The source against a ledger it does not own: files are looked up when they appear.

use std::{
    fs,
    path::Path,
    sync::{mpsc, Arc, Mutex},
};

use sluice_core::{
    FileHash, FileId, FileLedger, FileProgress, FileRecord, FileStatus, Ident, LookupError,
    Position,
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
    let inbox = root.join("inbox");
    fs::create_dir_all(&inbox).expect("inbox");
    let text = format!(
        "path = {:?}\nsettle = \"10ms\"",
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

/// Runs the source with `--once`, playing the committer: every chunk is acknowledged.
/// Returns the chunks' row counts.
fn run_acking(source: CsvDirSource) -> Vec<usize> {
    let (events, received) = mpsc::sync_channel(64);
    let (acks_tx, acks) = mpsc::channel();
    let ctx = SourceContext {
        events,
        acks,
        stop: CancellationToken::new(),
        once: true,
        status: Arc::default(),
    };
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
    src.track_in_flight(&id, &found, 0);
    src.in_flight.get_mut(&id).expect("in flight").unacked = 2;
    src.abandon(&id);
    src.on_ack(partial(10));
    assert!(src.in_flight.contains_key(&id));
    src.on_ack(partial(20));
    assert!(src.in_flight.is_empty());

    // Nothing sent before the failure: nothing to wait for.
    src.track_in_flight(&id, &found, 0);
    src.abandon(&id);
    assert!(src.in_flight.is_empty());
}
