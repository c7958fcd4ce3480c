//! Storage that fails under sluice (a CSV and a Kafka source): the data directory's
//! filesystem fills up. Commits stop,
//! nothing is lost or doubled, `/readyz` and a metric say why with one log line per change
//! of state, and ingestion resumes by itself once space is freed. The data directory is a
//! small tmpfs mounted by the test (CI runs as root). A filesystem turning read-only is
//! provoked the way it happens: an ext4 image mounted with `errors=remount-ro` and an
//! error triggered through /sys (a plain `remount,ro` is refused while DuckDB holds its
//! files open for writing); it needs an unmount and a repair, so there sluice is stopped
//! and started again.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use crate::kafka::{
    assert_each_message_once, assert_offsets_at, order, rows_ingested, Kafka,
    SCHEMA as KAFKA_SCHEMA,
};
use crate::support::{
    csv_rows, http_get, metric, output, query_i64, query_strings, run_tool, Daemon, Deployment,
    SCHEMA,
};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(at).expect("mount point");
        let out = output(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(at),
        );
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` to the last byte with a file it returns.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = fs::File::create(&path).expect("filler");
    let block = vec![0u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
    path
}

fn readyz(base: &str) -> (u16, String) {
    http_get(&format!("{base}/readyz"))
}

fn scrape(base: &str, series: &str) -> Option<f64> {
    metric(&http_get(&format!("{base}/metrics")).1, series)
}

fn blocked_metric(base: &str, reason: &str) -> Option<f64> {
    scrape(
        base,
        &format!("sluice_commits_blocked{{reason=\"{reason}\"}}"),
    )
}

fn failures(base: &str) -> f64 {
    scrape(base, "sluice_commit_failures_total{table=\"src\"}").unwrap_or(0.0)
}

/// Waits until commits are blocked for `reason`, then until they have failed twice more.
fn wait_blocked(daemon: &mut Daemon, base: &str, reason: &str) {
    daemon.wait_until(&format!("commits blocked: {reason}"), |_| {
        readyz(base)
            .1
            .contains(&format!("commits blocked: {reason}"))
    });
    assert_eq!(readyz(base).0, 503);
    assert_eq!(blocked_metric(base, reason), Some(1.0));
    let seen = failures(base);
    daemon.wait_until("two more failed attempts", |_| failures(base) >= seen + 2.0);
}

fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn a_full_disk_blocks_commits_until_space_is_freed_and_loses_nothing() {
    let d = Deployment::new(SCHEMA, "[batch]\nmax_rows = 2000\n");
    let disk = Tmpfs::mount(&d.data, "32m");
    let mut daemon = d.start();
    let base = daemon.http_addr();
    d.write("a.csv", &csv_rows(1, 2_000));
    daemon.wait_for_log("committed table=");

    // The disk fills up: the next file cannot be committed.
    let filler = fill(&d.data);
    d.write("b.csv", &csv_rows(2_001, 20_000));
    wait_blocked(&mut daemon, &base, "disk_full");
    assert_eq!(count_lines(&daemon.log_text(), "commits blocked"), 1);
    assert!(
        d.inbox.join("b.csv").exists(),
        "a file was disposed of unread"
    );

    // Space is freed: sluice carries on by itself.
    fs::remove_file(&filler).expect("free space");
    let inbox = d.inbox.clone();
    daemon.wait_until("b.csv committed and archived", |dm| {
        dm.log_text().contains("commits resumed") && !inbox.join("b.csv").exists()
    });
    assert_eq!(readyz(&base).0, 200);
    assert_eq!(blocked_metric(&base, "disk_full"), Some(0.0));

    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    assert_eq!(count_lines(&log, "commits blocked"), 1, "{log}");
    assert_eq!(count_lines(&log, "commits resumed"), 1, "{log}");

    // Every row once; the database opens cleanly; no Parquet file the ledger lacks.
    let db = d.db();
    let n = 22_000;
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), n);
    assert_eq!(query_i64(&db, "SELECT count(DISTINCT id) FROM raw.src"), n);
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM _sluice.dead_letters"),
        0
    );
    let glob = d.parquet_glob("src");
    assert_eq!(
        query_i64(&db, &format!("SELECT count(*) FROM read_parquet('{glob}')")),
        n
    );
    let ledger = query_strings(
        &db,
        "SELECT count(*) FROM _sluice.batches WHERE parquet_file IS NOT NULL",
    );
    let visible = fs::read_dir(d.data.join("parquet/src"))
        .expect("partitions")
        .flatten()
        .flat_map(|p| fs::read_dir(p.path()).expect("files").flatten())
        .filter(|f| {
            f.file_name().to_string_lossy().ends_with(".parquet")
                && !f.file_name().to_string_lossy().starts_with('.')
        })
        .count();
    assert_eq!(ledger[0][0], visible.to_string());
    drop(db);
    drop(disk);
}

#[test]
fn a_full_disk_under_a_kafka_source_blocks_its_commits_and_loses_no_message() {
    let k = Kafka::new("full", 2);
    let d = k.deployment_with(
        "",
        KAFKA_SCHEMA,
        "[batch]\nmax_rows = 1000\nmax_age = \"100ms\"\n",
        "",
    );
    let disk = Tmpfs::mount(&d.data, "32m");
    let mut daemon = d.start();
    let base = daemon.http_addr();
    let send = |from: i64, to: i64| {
        for n in from..to {
            k.send((n % 2) as i32, &format!("k{n}"), &order(n));
        }
        k.flush();
    };
    send(0, 2_000);
    daemon.wait_until("the first messages committed", |_| {
        rows_ingested(&base) >= 2_000.0
    });

    let filler = fill(&d.data);
    send(2_000, 12_000);
    wait_blocked(&mut daemon, &base, "disk_full");
    assert!(rows_ingested(&base) < 12_000.0);
    fs::remove_file(&filler).expect("free space");
    daemon.wait_until("every message committed", |_| {
        rows_ingested(&base) >= 12_000.0
    });
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    assert_eq!(count_lines(&log, "commits blocked"), 1, "{log}");

    let db = d.db();
    assert_each_message_once(&db, 12_000);
    assert_offsets_at(&db, 2, 6_000);
    drop(db);
    drop(disk);
}

/// An ext4 image mounted with `errors=remount-ro`, as a data disk usually is, unmounted
/// (and its loop device released) when dropped. Needs root (CI runs as root), util-linux
/// and e2fsprogs (`ensure_test_deps`).
struct Ext4 {
    image: PathBuf,
    at: PathBuf,
}

impl Ext4 {
    fn create(image: &Path, at: &Path) -> Ext4 {
        run_tool(Command::new("truncate").args(["-s", "64M"]).arg(image));
        run_tool(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(image));
        let ext4 = Ext4 {
            image: image.to_path_buf(),
            at: at.to_path_buf(),
        };
        ext4.mount();
        ext4
    }

    fn mount(&self) {
        fs::create_dir_all(&self.at).expect("mount point");
        run_tool(
            Command::new("mount")
                .args(["-o", "loop,errors=remount-ro"])
                .arg(&self.image)
                .arg(&self.at),
        );
    }

    /// The kernel's name of the loop device behind the mount (for /sys/fs/ext4).
    fn device(&self) -> String {
        let out = run_tool(
            Command::new("findmnt")
                .args(["-n", "-o", "SOURCE"])
                .arg(&self.at),
        );
        out.trim()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// What ext4 does on an I/O error with `errors=remount-ro`: the filesystem turns
    /// read-only under the running process.
    fn fail(&self) {
        let trigger = format!("/sys/fs/ext4/{}/trigger_fs_error", self.device());
        fs::write(&trigger, "1").expect("trigger an ext4 error");
    }

    /// Unmounts, repairs (as an operator would) and mounts again.
    fn repair(&self) {
        run_tool(Command::new("umount").arg(&self.at));
        let _ = output(Command::new("e2fsck").args(["-f", "-y"]).arg(&self.image));
        self.mount();
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).status();
    }
}

#[test]
fn a_data_disk_turned_read_only_blocks_commits_and_a_restart_after_repair_loses_nothing() {
    let d = Deployment::new(SCHEMA, "[batch]\nmax_rows = 2000\n");
    let disk = Ext4::create(&d.dir.path().join("data.img"), &d.data);
    let mut daemon = d.start();
    let base = daemon.http_addr();
    d.write("a.csv", &csv_rows(1, 2_000));
    daemon.wait_for_log("committed table=");

    disk.fail();
    d.write("b.csv", &csv_rows(2_001, 8_000));
    wait_blocked(&mut daemon, &base, "read_only");
    assert!(
        d.inbox.join("b.csv").exists(),
        "a file was disposed of unread"
    );
    assert_eq!(count_lines(&daemon.log_text(), "commits blocked"), 1);
    // Stopping cannot commit either: sluice gives up after a few attempts and leaves the
    // input for the next start.
    let (_, log) = daemon.terminate();
    assert!(log.contains("commits blocked"), "{log}");

    disk.repair();
    d.run_once();
    let db = d.db();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), 10_000);
    assert_eq!(
        query_i64(&db, "SELECT count(DISTINCT id) FROM raw.src"),
        10_000
    );
    let glob = d.parquet_glob("src");
    assert_eq!(
        query_i64(&db, &format!("SELECT count(*) FROM read_parquet('{glob}')")),
        10_000
    );
    drop(db);
    drop(disk);
}
