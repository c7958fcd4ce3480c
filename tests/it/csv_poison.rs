//! Files that try to stop the daemon: over-long lines and headers, files that cannot be
//! opened for a while, a value DuckDB refuses on insert (the file is found by committing
//! its batch one file at a time). Each must be quarantined or dead-lettered while the
//! daemon stays up and other files land.

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
};

use crate::{
    faults::run_to_fault,
    support::{
        csv_rows, http_get, query_i64, query_strings, sluice_bin, Daemon, Deployment, SCHEMA,
    },
};

/// Writes `content` as `name` in the inbox whole: under a hidden name, then renamed.
fn drop_file(d: &Deployment, name: &str, content: &[u8]) {
    let hidden = d.inbox.join(format!(".{name}.part"));
    fs::write(&hidden, content).expect("write");
    fs::rename(&hidden, d.inbox.join(name)).expect("rename");
}

/// A header line of `bytes` or more made of column names the table does not have.
fn unknown_columns(bytes: usize) -> Vec<u8> {
    let mut header = Vec::with_capacity(bytes + 16);
    let mut i = 0;
    while header.len() < bytes {
        header.extend_from_slice(format!("unknown_column_{i},").as_bytes());
        i += 1;
    }
    header.pop();
    header
}

#[test]
fn a_20_mb_single_line_file_is_quarantined_and_the_daemon_goes_on() {
    // The memory limit with which storing the header as the reason ran out of memory.
    let d = Deployment::new(SCHEMA, "[duckdb]\nmemory_limit = \"64MB\"\n");
    let mut daemon = d.start();
    daemon.wait_for_log("watching");
    // One line, no line end: the header, 20 MB of column names.
    drop_file(&d, "huge.csv", &unknown_columns(20 << 20));
    // Shorter than max_line_bytes, but its reason would quote 900 kB of column names.
    let mut wide = unknown_columns(900 << 10);
    wide.extend_from_slice(b"\n1\n");
    drop_file(&d, "wide.csv", &wide);
    daemon.wait_until("both files quarantined", |_| {
        d.moved("quarantine") == ["huge.csv", "wide.csv"]
    });
    drop_file(&d, "good.csv", csv_rows(1, 3).as_bytes());
    daemon.wait_until("the next file archived", |_| {
        d.moved("archive") == ["good.csv"]
    });
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{status}\n{log}");
    assert!(
        log.lines().all(|l| l.len() < 16 << 10),
        "a log line quotes the input"
    );
    let db = d.db();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), 3);
    let reasons = query_strings(
        &db,
        "SELECT original_name, status, reason FROM _sluice.files ORDER BY original_name",
    );
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    let (huge, wide) = (&reasons[1], &reasons[2]);
    assert_eq!(
        (huge[0].as_str(), huge[1].as_str(), huge[2].as_str()),
        (
            "huge.csv",
            "quarantined",
            "the header is longer than max_line_bytes (1.0 MiB)"
        )
    );
    assert_eq!(
        (wide[0].as_str(), wide[1].as_str()),
        ("wide.csv", "quarantined")
    );
    assert!(
        wide[2].starts_with("the header has ")
            && wide[2].ends_with("columns, more than schema_contract.max_columns (1000)"),
        "{}",
        wide[2]
    );
}

/// `csv_rows(1, rows)` with a line of `long` bytes inserted after the `after`-th row.
fn rows_with_a_long_line(rows: i64, after: i64, long: usize) -> Vec<u8> {
    let body = csv_rows(1, rows);
    let mut lines: Vec<&str> = body.lines().collect();
    let long_line = format!("{},{}", rows + 1, "x".repeat(long));
    lines.insert(after as usize + 1, &long_line);
    let mut out = lines.join("\n").into_bytes();
    out.push(b'\n');
    out
}

/// Rows 1..=rows once each, and the long line's dead letter once, at `line`.
fn assert_rows_once_and_one_long_dead_letter(d: &Deployment, rows: i64, line: i64) {
    let db = d.db();
    let counts = query_strings(
        &db,
        "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM raw.src",
    );
    assert_eq!(
        counts,
        [[
            rows.to_string(),
            rows.to_string(),
            "1".into(),
            rows.to_string()
        ]]
    );
    let parquet = query_i64(
        &db,
        &format!(
            "SELECT count(*) FROM read_parquet('{}')",
            d.parquet_glob("src")
        ),
    );
    assert_eq!(parquet, rows);
    let dead = query_strings(
        &db,
        "SELECT line, file, error, strlen(raw) FROM _sluice.dead_letters",
    );
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (dead[0][0].as_str(), dead[0][1].as_str()),
        (line.to_string().as_str(), "long.csv")
    );
    assert!(
        dead[0][2].ends_with("bytes, longer than max_line_bytes (64.0 KiB)"),
        "{dead:?}"
    );
    assert_eq!(dead[0][3], "4096");
    let file = query_strings(&db, "SELECT status, rows, dead_letters FROM _sluice.files");
    assert_eq!(
        file,
        [["ingested".to_string(), rows.to_string(), "1".into()]]
    );
}

#[test]
fn an_over_long_line_is_a_dead_letter_and_the_rows_around_it_land_once() {
    let source = format!("max_line_bytes = \"64KiB\"\n{SCHEMA}");
    let d = Deployment::new(&source, "");
    // Line 1 is the header, rows 1..=500 are lines 2..=501: the long line is 502.
    drop_file(&d, "long.csv", &rows_with_a_long_line(1000, 500, 2 << 20));
    d.run_once();
    assert_rows_once_and_one_long_dead_letter(&d, 1000, 502);
}

#[test]
fn killed_on_either_side_of_a_long_line_every_row_lands_once() {
    let source = format!("max_line_bytes = \"64KiB\"\n{SCHEMA}");
    // Batches of 100 rows: the long line, after row 550, is in the sixth. Per kill: the
    // batches committed before it, and whether the long line's dead letter is among them.
    for (fault, batches, dead) in [
        ("commit.after@3", 3, 0),
        ("commit.before@6", 5, 0),
        ("commit.after@6", 6, 1),
    ] {
        let d = Deployment::new(&source, "[batch]\nmax_rows = 100\n");
        drop_file(&d, "long.csv", &rows_with_a_long_line(1000, 550, 2 << 20));
        run_to_fault(&d, fault);
        let db = d.db();
        let committed = query_strings(
            &db,
            "SELECT count(*), coalesce(sum(rows), 0), coalesce(sum(dead_letters), 0) \
             FROM _sluice.batches",
        );
        let rows = batches * 100;
        assert_eq!(
            committed,
            [[batches.to_string(), rows.to_string(), dead.to_string()]],
            "{fault}"
        );
        let at_kill = query_strings(
            &db,
            "SELECT count(*), count(DISTINCT id), coalesce(max(id), 0) FROM raw.src",
        );
        assert_eq!(
            at_kill,
            [[rows.to_string(), rows.to_string(), rows.to_string()]],
            "{fault}"
        );
        assert_eq!(
            query_i64(&db, "SELECT count(*) FROM _sluice.dead_letters"),
            dead,
            "{fault}"
        );
        drop(db);

        d.run_once();
        assert_rows_once_and_one_long_dead_letter(&d, 1000, 552);
        let db = d.db();
        // The rest came after the kill, each once.
        assert_eq!(
            query_i64(
                &db,
                &format!("SELECT count(*) FROM raw.src WHERE _sluice_batch > {batches}")
            ),
            1000 - rows,
            "{fault}"
        );
        // The dead letter is in the sixth batch, with rows 501..=600 around it: committed
        // before the kill after it, by the next run for a kill before it.
        let batch = query_strings(
            &db,
            "SELECT b.batch_id, b.rows, b.dead_letters, min(r.id), max(r.id) \
             FROM _sluice.dead_letters dl JOIN _sluice.batches b USING (batch_id) \
             JOIN raw.src r ON r._sluice_batch = b.batch_id GROUP BY ALL",
        );
        assert_eq!(batch, [["6", "100", "1", "501", "600"]], "{fault}");
    }
}

/// The soft and hard limits on open files of process `pid`.
fn open_files_limit(pid: i32) -> (u64, u64) {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("the open files line");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// Sets process `pid`'s soft limit on open files (with `prlimit`, util-linux).
fn set_open_files(pid: i32, soft: u64, hard: u64) {
    let status = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={soft}:{hard}"))
        .status()
        .expect("prlimit");
    assert!(status.success(), "prlimit {soft}:{hard}: {status}");
}

/// An HTTP/1.1 connection kept open, to ask the daemon while it cannot open another
/// descriptor (accepting a new connection would take one).
struct KeptConnection(TcpStream);

impl KeptConnection {
    fn open(addr: &str) -> KeptConnection {
        KeptConnection(TcpStream::connect(addr).expect("connect"))
    }

    /// GET `path` on this connection: the status code and the body.
    fn get(&mut self, path: &str) -> (u16, String) {
        write!(self.0, "GET {path} HTTP/1.1\r\nHost: sluice\r\n\r\n").expect("send");
        let mut reader = BufReader::new(&self.0);
        let mut status = String::new();
        reader.read_line(&mut status).expect("status line");
        let code = status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {status:?} (the connection was closed?)"));
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("content-length");
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
        (code, String::from_utf8_lossy(&body).into_owned())
    }
}

#[test]
fn a_file_that_cannot_be_opened_for_a_while_is_ingested_once_it_can() {
    // No rescan while the test holds the daemon's descriptors: it would open the
    // directory, and nothing but the retry may find the file again.
    let d = Deployment::new(&format!("rescan_interval = \"1h\"\n{SCHEMA}"), "");
    let mut daemon = d.start();
    daemon.wait_for_log("watching");
    let addr = daemon.http_addr();
    let url = format!("{addr}/readyz");
    daemon.wait_until("ready", |_| http_get(&url).0 == 200);
    // Asked on a connection opened now: /readyz needs no descriptor of its own later, so
    // none is left at all, and no attempt at the file can succeed whatever else the
    // daemon opens or closes meanwhile.
    let mut kept = KeptConnection::open(addr.trim_start_matches("http://"));
    assert_eq!(kept.get("/readyz").0, 200);
    let pid = daemon.pid().as_raw();
    let (soft, hard) = open_files_limit(pid);
    // Descriptors 0-2 only, all open: the file cannot even be opened to be identified.
    set_open_files(pid, 3, hard);
    drop_file(&d, "late.csv", csv_rows(1, 5).as_bytes());
    daemon.wait_for_log("cannot read the file; trying it again");
    let (code, body) = kept.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("late.csv") && body.contains("os error 24"),
        "{body}"
    );
    // Descriptors back: the unchanged file is read at its next attempt.
    set_open_files(pid, soft, hard);
    daemon.wait_until("the file archived", |_| d.moved("archive") == ["late.csv"]);
    daemon.wait_until("ready again", |_| http_get(&url).0 == 200);
    drop(kept);
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{status}\n{log}");
    assert_eq!(
        log.matches("cannot read the file; trying it again").count(),
        1,
        "{log}"
    );
    assert!(log.contains("the file can be read again"), "{log}");
    assert_eq!(query_i64(&d.db(), "SELECT count(*) FROM raw.src"), 5);
}

#[test]
fn the_open_files_limit_is_raised_to_the_hard_limit_at_start() {
    let d = Deployment::new(SCHEMA, "");
    let log = d.dir.path().join("sluice.log");
    let child = Command::new("prlimit")
        .arg("--nofile=256:4096")
        .arg("--")
        .arg(sluice_bin())
        .args(["run", "--config"])
        .arg(&d.config)
        .env("SLUICE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn sluice under prlimit");
    let mut daemon = Daemon { child, log };
    daemon.wait_for_log("ready");
    assert_eq!(open_files_limit(daemon.pid().as_raw()), (4096, 4096));
    let (status, _) = daemon.terminate();
    assert!(status.success());
}

/// A table with a JSON column: DuckDB refuses, on insert, a JSON string holding a lone
/// surrogate escape (`"\ud800"`) that the CSV typing lets through.
const JSON_SCHEMA: &str = "[sources.src.schema]\nid = \"BIGINT\"\nj = \"JSON\"\n";

/// Rows `first..first + rows` as `id,j`, the row of id `bad` (if any) with a JSON value
/// DuckDB refuses.
fn json_rows(first: i64, rows: i64, bad: Option<i64>) -> String {
    let mut s = String::from("id,j\n");
    for id in first..first + rows {
        match Some(id) == bad {
            true => s.push_str(&format!("{id},\"\"\"\\ud800\"\"\"\n")),
            false => s.push_str(&format!("{id},\"{{\"\"n\"\": {id}}}\"\n")),
        }
    }
    s
}

/// One batch of 15 rows: each file is one chunk of 5 rows, and the batch closes when the
/// third comes; never by age.
const THREE_FILES_A_BATCH: &str = "[batch]\nmax_rows = 15\nmax_age = \"1h\"\n";

/// Rows of ids `ids` once each, and no other (count, distinct ids, sum, in DuckDB and in
/// Parquet).
fn assert_rows_once(d: &Deployment, ids: &[std::ops::RangeInclusive<i64>]) {
    let db = d.db();
    let (n, sum): (i64, i64) = ids.iter().fold((0, 0), |(n, s), r| {
        (n + r.clone().count() as i64, s + r.clone().sum::<i64>())
    });
    let raw = query_strings(
        &db,
        "SELECT count(*), count(DISTINCT id), coalesce(sum(id), 0) FROM raw.src",
    );
    assert_eq!(raw, [[n.to_string(), n.to_string(), sum.to_string()]]);
    let glob = d.parquet_glob("src");
    let parquet = format!("SELECT count(*), count(DISTINCT id) FROM read_parquet('{glob}')");
    assert_eq!(
        query_strings(&db, &parquet),
        [[n.to_string(), n.to_string()]]
    );
    assert_eq!(query_i64(&db, "SELECT sum(rows) FROM _sluice.batches"), n);
}

/// The one quarantine record (of `name`), its reason naming DuckDB's refusal.
fn assert_quarantined_once(d: &Deployment, name: &str) -> String {
    let records = query_strings(
        &d.db(),
        "SELECT original_name, reason FROM _sluice.files WHERE status = 'quarantined'",
    );
    assert_eq!(records.len(), 1, "{records:?}");
    let (file, reason) = (&records[0][0], &records[0][1]);
    assert_eq!(file, name);
    assert!(
        reason.starts_with("cannot be committed: duckdb: appending rows to raw.src: ")
            && reason.contains("Malformed JSON")
            && reason.len() <= 4096 + 32,
        "{reason}"
    );
    assert_eq!(d.moved("quarantine"), [name]);
    reason.clone()
}

#[test]
fn a_file_duckdb_refuses_is_quarantined_and_the_other_files_of_its_batch_land() {
    let d = Deployment::new(JSON_SCHEMA, THREE_FILES_A_BATCH);
    let mut daemon = d.start();
    daemon.wait_for_log("watching");
    drop_file(&d, "a.csv", json_rows(1, 5, None).as_bytes());
    drop_file(&d, "b.csv", json_rows(6, 5, Some(8)).as_bytes());
    drop_file(&d, "c.csv", json_rows(11, 5, None).as_bytes());
    daemon.wait_until("a and c archived", |_| {
        d.moved("archive") == ["a.csv", "c.csv"]
    });
    // The source has sent b's quarantine record: the next full batch takes it along.
    daemon.wait_for_log("quarantining file");
    drop_file(&d, "d.csv", json_rows(16, 15, None).as_bytes());
    daemon.wait_until("b quarantined, d archived", |_| {
        d.moved("quarantine") == ["b.csv"] && d.moved("archive").len() == 3
    });
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{status}\n{log}");
    assert!(
        log.contains("committing its files one at a time") && log.contains("files=3"),
        "the three files were not in one batch:\n{log}"
    );
    assert!(!log.contains("failed for good"), "{log}");
    assert_rows_once(&d, &[1..=5, 11..=30]);
    assert_quarantined_once(&d, "b.csv");
    // a and c were committed one file at a time, then d.
    let batches = query_strings(
        &d.db(),
        "SELECT rows FROM _sluice.batches ORDER BY batch_id",
    );
    assert_eq!(batches, [["5"], ["5"], ["15"]]);
}

#[test]
fn a_file_refused_part_way_keeps_its_committed_rows_and_no_later_chunk_lands() {
    // Batches of one 15-row chunk: b's fourth (ids 46..=60) holds the refused value.
    let d = Deployment::new(JSON_SCHEMA, "[batch]\nmax_rows = 15\n");
    let b = json_rows(1, 100, Some(50));
    drop_file(&d, "b.csv", b.as_bytes());
    drop_file(&d, "c.csv", json_rows(1001, 5, None).as_bytes());
    d.run_once();
    assert_rows_once(&d, &[1..=45, 1001..=1005]);
    let db = d.db();
    // b's record stays as its commits left it, the quarantine beside it says so.
    let committed: usize = b.lines().take(46).map(|l| l.len() + 1).sum();
    let record = query_strings(
        &db,
        "SELECT status, next_offset, next_line, rows FROM _sluice.files \
         WHERE original_name = 'b.csv' AND status <> 'quarantined'",
    );
    assert_eq!(record, [["partial", &committed.to_string(), "47", "45"]]);
    let reason = assert_quarantined_once(&d, "b.csv");
    assert!(
        reason.ends_with(&format!(
            "; {committed} bytes of it (lines before 47) were committed before, and their rows stay"
        )),
        "{reason}"
    );
}

#[test]
fn files_that_each_fail_on_their_own_stop_the_daemon_and_nothing_is_lost() {
    let d = Deployment::new(JSON_SCHEMA, THREE_FILES_A_BATCH);
    drop_file(&d, "a.csv", json_rows(1, 5, Some(1)).as_bytes());
    drop_file(&d, "b.csv", json_rows(6, 5, Some(6)).as_bytes());
    drop_file(&d, "c.csv", json_rows(11, 5, Some(11)).as_bytes());
    let out = d.run_once_with(&[]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("every file of the batch failed on its own")
            && log.contains("failed for good"),
        "{log}"
    );
    // Not tied to one file: nothing is quarantined, all stays for the next start.
    let db = d.db();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM _sluice.files"), 0);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), 0);
    assert!(d.moved("quarantine").is_empty());
    assert_eq!(fs::read_dir(&d.inbox).expect("inbox").count(), 3);
}

#[test]
fn killed_around_a_per_file_retry_every_good_row_lands_once_and_the_file_is_quarantined() {
    // Per kill: the batches committed at the kill, and whether b's quarantine is recorded.
    for (fault, batches, quarantined) in [
        ("isolate.before", 0, 0),
        ("commit.after@1", 1, 0),
        ("isolate.refused", 2, 0),
        ("file.before_quarantine", 2, 1),
    ] {
        let d = Deployment::new(JSON_SCHEMA, THREE_FILES_A_BATCH);
        drop_file(&d, "a.csv", json_rows(1, 5, None).as_bytes());
        drop_file(&d, "b.csv", json_rows(6, 5, Some(8)).as_bytes());
        drop_file(&d, "c.csv", json_rows(11, 5, None).as_bytes());
        run_to_fault(&d, fault);
        let db = d.db();
        let at_kill = query_strings(
            &db,
            "SELECT (SELECT count(*) FROM _sluice.batches), \
               (SELECT count(*) FROM raw.src), \
               (SELECT count(*) FROM _sluice.files WHERE status = 'quarantined')",
        );
        let rows = batches * 5;
        let want = [
            batches.to_string(),
            rows.to_string(),
            quarantined.to_string(),
        ];
        assert_eq!(at_kill, [want], "{fault}");
        assert!(d.moved("quarantine").is_empty(), "{fault}");
        drop(db);

        d.run_once();
        assert_rows_once(&d, &[1..=5, 11..=15]);
        assert_quarantined_once(&d, "b.csv");
        assert_eq!(d.moved("archive"), ["a.csv", "c.csv"], "{fault}");
    }
}
