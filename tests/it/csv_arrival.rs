//! How files arrive: present before start, renamed into place, written slowly in place,
//! and the same content dropped twice.

use std::{fs, io::Write, thread, time::Duration};

use crate::support::{csv_rows, query_i64, query_strings, Deployment, SCHEMA};

#[test]
fn files_present_before_start_are_ingested_then_archived() {
    let d = Deployment::new(SCHEMA, "");
    d.write("a.csv", &csv_rows(1, 100));
    d.write("b.csv", &csv_rows(101, 50));
    d.write("ignored.txt", "not,matched\n");
    d.run_once();
    let db = d.db();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), 150);
    assert_eq!(
        query_i64(&db, "SELECT count(DISTINCT id) FROM raw.src"),
        150
    );
    assert_eq!(d.moved("archive"), ["a.csv", "b.csv"]);
    assert!(
        d.inbox.join("ignored.txt").exists(),
        "non-matching file was touched"
    );
    let statuses = query_strings(
        &db,
        "SELECT original_name, status, rows FROM _sluice.files ORDER BY 1",
    );
    assert_eq!(
        statuses,
        [["a.csv", "ingested", "100"], ["b.csv", "ingested", "50"]]
    );
}

#[test]
fn a_file_renamed_into_the_directory_is_complete_at_once() {
    // settle is an hour: only the rename notification can make the file complete.
    let d = Deployment::new(&format!("{SCHEMA}\n"), "").with_settle("1h");
    let mut daemon = d.start();
    daemon.wait_for_log("watching");
    let hidden = d.inbox.join(".incoming.csv.part");
    fs::write(&hidden, csv_rows(1, 20)).expect("write");
    fs::rename(&hidden, d.inbox.join("renamed.csv")).expect("rename");
    daemon.wait_until("the renamed file to be archived", |_| {
        d.moved("archive") == ["renamed.csv"]
    });
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    assert_eq!(query_i64(&d.db(), "SELECT count(*) FROM raw.src"), 20);
}

#[test]
fn a_file_written_slowly_in_place_is_read_only_once_closed() {
    // settle is an hour: the file is complete only when the writer closes it.
    let d = Deployment::new(SCHEMA, "").with_settle("1h");
    let mut daemon = d.start();
    daemon.wait_for_log("watching");
    let body = csv_rows(1, 500);
    let mut file = fs::File::create(d.inbox.join("slow.csv")).expect("create");
    for piece in body.as_bytes().chunks(body.len() / 6 + 1) {
        file.write_all(piece).expect("write");
        file.sync_all().expect("sync");
        // The slow writer is the scenario under test, not a wait for sluice.
        thread::sleep(Duration::from_millis(150));
    }
    assert!(
        d.moved("archive").is_empty(),
        "ingested before the writer closed it"
    );
    drop(file);
    daemon.wait_until("the file to be archived", |_| {
        d.moved("archive") == ["slow.csv"]
    });
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    let db = d.db();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), 500);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM _sluice.files"), 1);
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM _sluice.dead_letters"),
        0
    );
}

#[test]
fn in_poll_mode_a_growing_file_waits_for_settle() {
    let d = Deployment::new(
        &format!("watch = \"poll\"\npoll_interval = \"50ms\"\n{SCHEMA}"),
        "",
    )
    .with_settle("600ms");
    let mut daemon = d.start();
    daemon.wait_for_log("watching");
    let body = csv_rows(1, 300);
    let mut file = fs::File::create(d.inbox.join("grow.csv")).expect("create");
    for piece in body.as_bytes().chunks(body.len() / 5 + 1) {
        file.write_all(piece).expect("write");
        file.sync_all().expect("sync");
        thread::sleep(Duration::from_millis(150));
    }
    drop(file);
    daemon.wait_until("the file to be archived", |_| {
        d.moved("archive") == ["grow.csv"]
    });
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    let db = d.db();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), 300);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM _sluice.files"), 1);
}

#[test]
fn the_same_content_twice_is_ingested_once() {
    let d = Deployment::new(SCHEMA, "");
    let body = csv_rows(1, 40);
    d.write("orig.csv", &body);
    d.write("copy.csv", &body);
    let out = d.run_once();
    assert_eq!(query_i64(&d.db(), "SELECT count(*) FROM raw.src"), 40);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("duplicate content"), "{log}");

    // Dropped again later under a third name, after a restart: still once.
    d.write("again.csv", &body);
    let out = d.run_once();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("duplicate content"), "{log}");
    let db = d.db();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), 40);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM _sluice.files"), 1);
    assert_eq!(d.moved("archive").len(), 3, "duplicates are archived too");
}

#[test]
fn kept_files_are_not_ingested_again() {
    let d = Deployment::new(&format!("after_ingest = \"keep\"\n{SCHEMA}"), "");
    d.write("keep.csv", &csv_rows(1, 10));
    d.run_once();
    d.run_once();
    assert!(d.inbox.join("keep.csv").exists());
    assert_eq!(query_i64(&d.db(), "SELECT count(*) FROM raw.src"), 10);
}

#[test]
fn delete_removes_the_file_after_commit() {
    let d = Deployment::new(&format!("after_ingest = \"delete\"\n{SCHEMA}"), "");
    let path = d.write("gone.csv", &csv_rows(1, 10));
    d.run_once();
    assert!(!path.exists());
    assert!(d.moved("archive").is_empty());
    assert_eq!(query_i64(&d.db(), "SELECT count(*) FROM raw.src"), 10);
}

#[test]
fn once_leaves_a_file_still_being_written_for_the_next_run_instead_of_waiting_forever() {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };
    let d = Deployment::new(SCHEMA, "").with_settle("200ms");
    fs::write(d.inbox.join("done.csv"), csv_rows(1, 10)).expect("write");
    let open = d.inbox.join("open.csv");
    let mut file = fs::File::create(&open).expect("create");
    file.write_all(csv_rows(100, 1).as_bytes()).expect("write");
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let writing = writing.clone();
        thread::spawn(move || {
            let mut id = 101;
            while writing.load(Ordering::Relaxed) {
                let line = format!("{id},name {id},1.00\n");
                file.write_all(line.as_bytes()).expect("append");
                id += 1;
                // A writer that never stops is the scenario under test, not a wait.
                thread::sleep(Duration::from_millis(50));
            }
            id - 100
        })
    };
    let out = d.run_once();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("leaving files that are still being written") && log.contains("open.csv"),
        "{log}"
    );
    let db = d.db();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), 10);
    assert_eq!(
        query_strings(&db, "SELECT original_name FROM _sluice.files"),
        [["done.csv"]]
    );
    drop(db);
    assert!(open.exists(), "the unfinished file stays for the next run");
    writing.store(false, Ordering::Relaxed);
    let written = writer.join().expect("writer");
    d.run_once();
    assert_eq!(
        query_i64(&d.db(), "SELECT count(*) FROM raw.src"),
        10 + written
    );
}
