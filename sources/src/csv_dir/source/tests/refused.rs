//! A file whose chunks the committer refuses: the source stops reading it and records it
//! as quarantined, beside what of it was committed.

use super::*;

#[test]
fn a_refused_file_is_read_no_further_and_quarantined_beside_its_committed_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = source(dir.path(), SharedLedger::default());
    // 20 chunks of 1,000 rows.
    let mut content = String::from("id\n");
    for id in 0..20_000 {
        content.push_str(&format!("{id}\n"));
    }
    fs::write(dir.path().join("inbox/a.csv"), &content).expect("write");
    // A rendezvous channel: each chunk is sent only once the test takes it.
    let (ctx, received, acks_tx) = once_context_holding(0);
    let runner = std::thread::spawn(move || src.run(ctx));
    let mut chunks: Vec<FileProgress> = Vec::new();
    let mut quarantines = Vec::new();
    while let Ok(event) = received.recv() {
        let SourceEvent::Chunk(chunk) = event else {
            continue;
        };
        let Position::File(p) = chunk.position else {
            panic!("a file source sent {:?}", chunk.position);
        };
        if let FileStatus::Quarantined { reason } = &p.status {
            quarantines.push((p.id.clone(), reason.clone()));
            acks_tx.send(Position::File(p)).expect("ack");
            continue;
        }
        chunks.push(p.clone());
        if chunks.len() == 1 {
            // The first chunk commits, the next is refused: sent before the test takes
            // another chunk, so the source reads at most one more.
            acks_tx.send(Position::File(p.clone())).expect("ack");
            let refused = FileProgress {
                status: FileStatus::refused("cannot be committed: refused"),
                ..p
            };
            acks_tx.send(Position::File(refused)).expect("refusal");
        }
    }
    runner.join().expect("join").expect("run");
    assert!(
        (1..=2).contains(&chunks.len()),
        "{} chunks read after the refusal",
        chunks.len()
    );
    let first = &chunks[0];
    let [(id, reason)] = &quarantines[..] else {
        panic!("{quarantines:?}");
    };
    assert_ne!(
        id, &first.id,
        "the quarantine would overwrite the committed record"
    );
    assert_eq!(
        reason,
        &format!(
            "cannot be committed: refused; {} bytes of it (lines before {}) were committed \
             before, and their rows stay",
            first.next_offset, first.next_line
        )
    );
    assert_eq!(count(&dir.path().join("quarantine")), 1);
    assert_eq!(count(&dir.path().join("inbox")), 0);
}
