//! `run --once` in a consumer group: it ends as soon as every partition assigned to it is
//! at the high watermark it had when first assigned, whichever instance consumed it, and
//! it never moves the group's offsets back. Other instances stopped or SIGKILLed before;
//! stored offsets behind the group's and ahead of them; a member joining during the run.
//! Every run is bounded (`run_once`: `ONCE_PATIENCE`; daemons: `PATIENCE`): a run that would
//! not end fails its test instead of hanging the suite.

use std::{fs::File, ops::Range, process::Stdio};

use super::{
    assert_no_message_twice_in, attach, broker_offsets, caught_up, order, rows_ingested, Kafka,
    SCHEMA,
};
use crate::{
    faults::run_to_fault,
    support::{http_get, query_i64, query_strings, Daemon, Deployment},
};

pub const PARTITIONS: i32 = 6;
/// Messages the pair consumes before the second instance joins, and in all.
const FIRST: i64 = 20_000;
pub const TOTAL: i64 = 30_000;
/// Each partition's end once the pair has consumed [`TOTAL`] messages.
pub const END: i64 = TOTAL / PARTITIONS as i64;

/// How the instances that consumed the topic before the `--once` run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM, one after the other: the one left takes every partition before it stops.
    Terminate,
    /// SIGKILL, both, once the broker holds every partition's offset at its end.
    Kill,
}

/// Messages `ids`, message `i` to partition `i % partitions`.
pub fn produce(k: &Kafka, ids: Range<i64>, partitions: i32) {
    for i in ids {
        k.send(
            (i % i64::from(partitions)) as i32,
            &format!("k{i}"),
            &order(i),
        );
    }
    k.flush();
}

/// Rows in the instance's `raw.src` (it must not be running).
pub fn rows(d: &Deployment) -> i64 {
    query_i64(&d.db(), "SELECT count(*) FROM raw.src")
}

/// A daemon, and its HTTP address.
fn start(d: &Deployment) -> (Daemon, String) {
    let mut daemon = d.start();
    let base = daemon.http_addr();
    (daemon, base)
}

/// How many assignments the daemon has logged.
fn assignments(d: &Daemon) -> usize {
    d.log_text().matches("partitions assigned").count()
}

/// Whether, for every partition of `topic`, one of the daemons at `bases` has committed it
/// up to `end` (by `/status`).
fn committed_by_any(bases: &[&str], topic: &str, end: i64) -> bool {
    let positions: Vec<serde_json::Value> = bases
        .iter()
        .map(|base| {
            let status = http_get(&format!("{base}/status")).1;
            serde_json::from_str::<serde_json::Value>(&status).expect("json")["sources"][0]
                ["positions"]
                .clone()
        })
        .collect();
    (0..PARTITIONS).all(|p| {
        positions
            .iter()
            .any(|ps| ps[format!("{topic}/{p}")].as_i64() == Some(end))
    })
}

/// Two instances of the group consume [`TOTAL`] messages of the topic: `a` first, `b`
/// joining (and taking partitions from `a`) before the last third arrives; then they stop
/// as `stop` says. Returns their logs.
pub fn consume_in_a_pair(k: &Kafka, a: &Deployment, b: &Deployment, stop: Stop) -> Vec<String> {
    produce(k, 0..FIRST, PARTITIONS);
    let (mut first, base_a) = start(a);
    first.wait_until("the first instance ingests", |_| {
        rows_ingested(&base_a) > 0.0
    });
    let (mut second, base_b) = start(b);
    second.wait_for_log("partitions assigned");
    produce(k, FIRST..TOTAL, PARTITIONS);
    second.wait_until(
        "every message committed by one instance or the other",
        |_| committed_by_any(&[&base_a, &base_b], k.topic(), END),
    );
    let logs = match stop {
        Stop::Terminate => {
            let before = assignments(&second);
            let (status, log_a) = first.terminate();
            assert!(status.success(), "{log_a}");
            second.wait_until("the second instance took every partition", |d| {
                assignments(d) > before
            });
            let (status, log_b) = second.terminate();
            assert!(status.success(), "{log_b}");
            vec![log_a, log_b]
        }
        Stop::Kill => {
            second.wait_until(
                "the broker holds every offset at its partition's end",
                |_| broker_offsets(k, k.topic(), PARTITIONS) == vec![END; PARTITIONS as usize],
            );
            let logs = vec![first.log_text(), second.log_text()];
            first.kill();
            second.kill();
            logs
        }
    };
    assert!(rows(b) > 0, "the second instance consumed nothing");
    logs
}

/// Across the instances: every message of `total` at least once, none twice in one
/// instance, and none in two unless `doubled_ok` (a SIGKILL, or a refused commit: README,
/// Scale-out).
fn assert_each_message_kept(instances: &[(&str, &Deployment)], total: i64, doubled_ok: bool) {
    let db = attach(instances);
    let union = instances
        .iter()
        .map(|(alias, _)| {
            format!("SELECT _sluice_partition AS p, _sluice_offset AS o FROM {alias}.raw.src")
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let distinct = query_i64(
        &db,
        &format!("SELECT count(DISTINCT (p, o)) FROM ({union})"),
    );
    assert_eq!(distinct, total, "nothing lost");
    let aliases: Vec<&str> = instances.iter().map(|(alias, _)| *alias).collect();
    assert_no_message_twice_in(&db, &aliases);
    let all = query_i64(&db, &format!("SELECT count(*) FROM ({union})"));
    assert!(
        all == total || doubled_ok,
        "{all} rows for {total} messages"
    );
}

fn refused(logs: &[String]) -> bool {
    logs.iter()
        .any(|l| l.contains("committing offsets of revoked partitions failed"))
}

/// After `stop`, `--once` on either instance ends, reads nothing again and leaves the
/// group's offsets at the partitions' ends.
fn once_after_a_pair(topic: &str, stop: Stop) {
    let k = Kafka::new(topic, PARTITIONS);
    let [a, b] = [0; 2].map(|_| k.deployment("", SCHEMA));
    let logs = consume_in_a_pair(&k, &a, &b, stop);
    let at_end = vec![END; PARTITIONS as usize];
    assert_eq!(
        broker_offsets(&k, topic, PARTITIONS),
        at_end,
        "the group's offsets at the end of every partition"
    );
    for d in [&a, &b] {
        let before = rows(d);
        // Without the fix: "partitions assigned ... partitions=6", then nothing, forever.
        d.run_once();
        assert_eq!(rows(d), before, "a partition read again");
        assert_eq!(
            broker_offsets(&k, topic, PARTITIONS),
            at_end,
            "the group's offsets moved"
        );
    }
    let doubled_ok = stop == Stop::Kill || refused(&logs);
    assert_each_message_kept(&[("a", &a), ("b", &b)], TOTAL, doubled_ok);
}

#[test]
fn once_ends_after_another_instance_consumed_the_partitions_and_both_stopped() {
    once_after_a_pair("pair_stopped", Stop::Terminate);
}

#[test]
fn once_ends_after_the_instances_that_consumed_the_partitions_were_killed() {
    once_after_a_pair("pair_killed", Stop::Kill);
}

#[test]
fn once_ends_on_each_of_three_instances_after_one_was_killed_mid_stream() {
    let topic = "trio";
    let k = Kafka::new(topic, PARTITIONS);
    let [a, b, c] = [0; 3].map(|_| k.deployment("", SCHEMA));
    produce(&k, 0..FIRST, PARTITIONS);
    let (mut first, base_a) = start(&a);
    first.wait_until("the first instance ingests", |_| {
        rows_ingested(&base_a) > 0.0
    });
    let (mut second, base_b) = start(&b);
    second.wait_for_log("partitions assigned");
    let (mut third, base_c) = start(&c);
    third.wait_for_log("partitions assigned");
    produce(&k, FIRST..TOTAL, PARTITIONS);
    third.wait_until("the third instance commits", |_| {
        rows_ingested(&base_c) > 0.0
    });
    third.kill();
    // Its session times out; the two left take its partitions and read them to their ends.
    first.wait_until("every message committed by the two left", |_| {
        committed_by_any(&[&base_a, &base_b], topic, END)
    });
    let before = assignments(&second);
    let (status, log_a) = first.terminate();
    assert!(status.success(), "{log_a}");
    second.wait_until("the second instance took every partition", |d| {
        assignments(d) > before
    });
    let (status, log_b) = second.terminate();
    assert!(status.success(), "{log_b}");
    assert!(rows(&c) > 0, "the killed instance committed nothing");
    let at_end = vec![END; PARTITIONS as usize];
    assert_eq!(
        broker_offsets(&k, topic, PARTITIONS),
        at_end,
        "the group's offsets at the end of every partition"
    );
    for d in [&c, &a, &b] {
        let before = rows(d);
        d.run_once();
        assert_eq!(rows(d), before, "a partition read again");
        assert_eq!(
            broker_offsets(&k, topic, PARTITIONS),
            at_end,
            "the group's offsets moved"
        );
    }
    // The killed instance's last commits, not reported to the broker, were read again by
    // the partitions' next owners (README, Scale-out).
    assert_each_message_kept(&[("a", &a), ("b", &b), ("c", &c)], TOTAL, true);
}

#[test]
fn an_instance_with_offsets_ahead_of_the_groups_ends_and_moves_the_group_only_forward() {
    let topic = "ahead";
    let k = Kafka::new(topic, PARTITIONS);
    // One commit per run (age never closes a batch): a kill before the broker hears of it
    // leaves every partition of the run ahead in DuckDB.
    let a = k.deployment_with("", SCHEMA, "[batch]\nmax_age = \"60s\"\n", "");
    let b = k.deployment("", SCHEMA);
    produce(&k, 0..6_000, PARTITIONS);
    a.run_once();
    produce(&k, 6_000..12_000, PARTITIONS);
    b.run_once();
    // More for partitions 0-2 only; `a` commits them, and is killed before the broker
    // hears of it.
    produce(&k, 12_000..15_000, 3);
    run_to_fault(&a, "kafka.before_broker_commit");
    let stored = query_strings(
        &a.db(),
        "SELECT next_offset FROM _sluice.offsets ORDER BY \"partition\"",
    );
    let stored: Vec<i64> = stored
        .iter()
        .map(|r| r[0].parse().expect("offset"))
        .collect();
    assert_eq!(
        (stored, broker_offsets(&k, topic, PARTITIONS)),
        (
            vec![3_000, 3_000, 3_000, 1_000, 1_000, 1_000],
            vec![2_000; 6]
        ),
        "stored offsets ahead of the group's on partitions 0-2, behind on 3-5"
    );
    let before = rows(&a);
    a.run_once();
    assert_eq!(rows(&a), before, "a partition read again");
    assert_eq!(
        broker_offsets(&k, topic, PARTITIONS),
        vec![3_000, 3_000, 3_000, 2_000, 2_000, 2_000],
        "the group's offsets raised to the stored ones ahead of them, and never moved back"
    );
    assert_each_message_kept(&[("a", &a), ("b", &b)], 15_000, false);
}

#[test]
fn a_member_joining_during_the_run_neither_ends_it_early_nor_holds_it_up() {
    let topic = "joining";
    let k = Kafka::new(topic, PARTITIONS);
    let total = 60_000;
    produce(&k, 0..total, PARTITIONS);
    // Small batches: the run commits for many seconds, long enough for a member to join.
    let a = k.deployment_with("", SCHEMA, "[batch]\nmax_rows = 100\n", "");
    let b = k.deployment("", SCHEMA);
    let log = a.dir.path().join("once.log");
    let child = a
        .command(&["run", "--once"])
        .stdout(Stdio::null())
        .stderr(File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn sluice");
    let mut once = Daemon { child, log };
    once.wait_for_log("partitions assigned");
    let (mut daemon, base_b) = start(&b);
    let status = once.wait_exit();
    let log = once.log_text();
    assert!(status.success(), "{log}");
    // The first revocation is the rebalance (the last one, the client's close).
    let revoked = log.find("partitions revoked").unwrap_or_else(|| {
        panic!("the run ended before the member joined: the test proves nothing\n{log}")
    });
    assert!(
        log[revoked..].contains("partitions assigned"),
        "the run ended between the revocation and the next assignment:\n{log}"
    );
    daemon.wait_until(
        "the second instance read every partition to its end",
        |_| caught_up(&base_b, PARTITIONS as usize),
    );
    let (status, log_b) = daemon.terminate();
    assert!(status.success(), "{log_b}");
    assert_each_message_kept(&[("a", &a), ("b", &b)], total, true);
}
