//! Several instances of one Kafka consumer group publishing one Delta table: members
//! SIGKILLed mid-stream, restarted, a third joining; `run --once` after another instance
//! consumed the partitions. The Delta table must hold every message exactly once by
//! (partition, offset), and each instance's DuckDB no message twice. On a shared local
//! directory and on the S3 server.

use crate::{
    kafka::{
        once::{self, consume_in_a_pair, Stop},
        order, rows_ingested, Kafka, SCHEMA,
    },
    support::{query_i64, query_strings, Deployment},
};

use super::{read_delta, writer_app, S3Server};

const PARTITIONS: i32 = 6;
const TOTAL: i64 = 120_000;

/// The per-partition `txn` app ids of the group `it`, topic `chaos`.
fn apps() -> Vec<String> {
    (0..PARTITIONS)
        .map(|p| format!("kafka:it/chaos/{p}"))
        .collect()
}

fn no_message_twice(d: &Deployment) -> i64 {
    query_i64(
        &d.db(),
        "SELECT count(*) - count(DISTINCT (_sluice_partition, _sluice_offset)) FROM raw.src",
    )
}

/// Where the instances' shared Delta table lives.
struct Shared {
    /// `[lake]` for each instance.
    config: String,
    /// The table, as the readers name it, and what they (and sluice) need to reach it.
    uri: String,
    reader_env: Vec<(&'static str, String)>,
    sluice_env: Vec<(&'static str, &'static str)>,
}

impl Shared {
    fn read(&self) -> serde_json::Value {
        let keys = "_sluice_partition,_sluice_offset";
        read_delta(&self.uri, keys, "id", &apps(), &self.reader_env)
    }

    /// Whether the lake holds every partition to its end (per the `txn` versions in its
    /// log).
    fn complete(&self) -> bool {
        let seen = self.read();
        apps()
            .iter()
            .all(|a| seen["txn"][a].as_i64() == Some(TOTAL / i64::from(PARTITIONS)))
    }
}

#[test]
fn instances_of_one_group_killed_restarted_and_joining_publish_each_message_once() {
    let lake = tempfile::tempdir().expect("lake dir");
    chaos(&Shared {
        config: format!(
            "[lake]\nformat = \"delta\"\nuri = \"{}\"\n",
            lake.path().display()
        ),
        uri: lake.path().join("src").display().to_string(),
        reader_env: vec![],
        sluice_env: vec![],
    });
}

#[test]
fn instances_of_one_group_on_an_s3_lake_killed_restarted_and_joining_publish_each_message_once() {
    let server = S3Server::start();
    server.create_bucket("chaos");
    chaos(&Shared {
        config: server.lake_config("chaos"),
        uri: "s3://chaos/lake/src".into(),
        reader_env: server.env(),
        sluice_env: server.sluice_env(),
    });
}

fn chaos(lake: &Shared) {
    let k = Kafka::new("chaos", PARTITIONS);
    let produce = |from: i64, n: i64| {
        for i in from..from + n {
            k.send(
                (i % i64::from(PARTITIONS)) as i32,
                &format!("k{i}"),
                &order(i),
            );
        }
        k.flush();
    };
    let top = format!(
        "[batch]\nmax_rows = 2000\nmax_age = \"200ms\"\n{}",
        lake.config
    );
    let [a, b, c] = [0; 3].map(|_| k.deployment_with("", SCHEMA, &top, ""));
    let start = |d: &Deployment| d.start_with("info", &lake.sluice_env);
    produce(0, 20_000);
    let mut first = start(&a);
    let base_a = first.http_addr();
    first.wait_until("the first instance ingests", |_| {
        rows_ingested(&base_a) > 0.0
    });
    let mut second = start(&b);
    let base_b = second.http_addr();
    // Produced only once the newcomer owns partitions: produced before, the running
    // instance can take every message while the group rebalances (slow on a busy machine)
    // and the newcomer never has one to ingest.
    second.wait_for_log("partitions assigned");
    produce(20_000, 40_000);
    second.wait_until("the second instance ingests", |_| {
        rows_ingested(&base_b) > 0.0
    });
    second.kill();
    let killed_with = query_i64(&b.db(), "SELECT count(*) FROM raw.src");
    assert!(
        killed_with > 0,
        "the second instance committed nothing before the kill"
    );
    let mut third = start(&c);
    let base_c = third.http_addr();
    third.wait_for_log("partitions assigned");
    produce(60_000, 30_000);
    third.wait_until("the third instance ingests", |_| {
        rows_ingested(&base_c) > 0.0
    });
    first.kill();
    let second = start(&b);
    produce(90_000, 30_000);
    let first = start(&a);
    third.wait_until("the lake holds every partition to its end", |_| {
        lake.complete()
    });
    for daemon in [first, second, third] {
        let (status, log) = daemon.terminate();
        assert!(status.success(), "{log}");
    }
    let seen = lake.read();
    for reader in ["deltalake", "polars"] {
        assert_eq!(seen[reader]["rows"], TOTAL, "{reader}: {seen}");
        assert_eq!(
            seen[reader]["distinct"], TOTAL,
            "{reader}: each message once: {seen}"
        );
        assert_eq!(
            seen[reader]["sum"],
            (0..TOTAL).sum::<i64>(),
            "{reader}: {seen}"
        );
    }
    for d in [&a, &b, &c] {
        assert_eq!(no_message_twice(d), 0, "an instance holds a message twice");
        assert!(
            query_i64(&d.db(), "SELECT count(*) FROM raw.src") > 0,
            "each instance took part"
        );
    }
}

#[test]
fn once_with_a_lake_ends_and_publishes_after_another_instance_consumed_the_partitions() {
    let lake = tempfile::tempdir().expect("lake dir");
    let top = format!(
        "[lake]\nformat = \"delta\"\nuri = \"{}\"\n",
        lake.path().display()
    );
    let k = Kafka::new("handed", once::PARTITIONS);
    let [a, b] = [0; 2].map(|_| k.deployment_with("", SCHEMA, &top, ""));
    consume_in_a_pair(&k, &a, &b, Stop::Terminate);
    let uri = lake.path().join("src").display().to_string();
    let apps: Vec<String> = (0..once::PARTITIONS)
        .map(|p| format!("kafka:it/handed/{p}"))
        .collect();
    let read =
        |apps: &[String]| read_delta(&uri, "_sluice_partition,_sluice_offset", "id", apps, &[]);
    let seen = read(&apps);
    for app in &apps {
        assert_eq!(seen["txn"][app], once::END, "{app} at its end: {seen}");
    }
    // The partitions the other instance read last are at their ends, and this one's
    // offsets of them are behind (without the fix, the run never ends). More messages for
    // the others, so that the run has rows to publish.
    let mine: Vec<i64> = query_strings(
        &a.db(),
        &format!(
            "SELECT \"partition\" FROM _sluice.offsets WHERE next_offset = {} ORDER BY 1",
            once::END
        ),
    )
    .iter()
    .map(|r| r[0].parse().expect("partition"))
    .collect();
    assert!(
        !mine.is_empty() && mine.len() < once::PARTITIONS as usize,
        "each instance read some partitions last: {mine:?}"
    );
    let more = 1_000;
    let total = once::TOTAL + more * mine.len() as i64;
    for (n, id) in (once::TOTAL..total).enumerate() {
        k.send(mine[n % mine.len()] as i32, &format!("k{id}"), &order(id));
    }
    k.flush();
    a.run_once();
    let db = a.db();
    let writer = writer_app(&db);
    let seen = read(&[apps.clone(), vec![writer.clone()]].concat());
    for reader in ["deltalake", "polars"] {
        assert_eq!(seen[reader]["rows"], total, "{reader}: {seen}");
        assert_eq!(seen[reader]["distinct"], total, "{reader}: {seen}");
        assert_eq!(
            seen[reader]["sum"],
            (0..total).sum::<i64>(),
            "{reader}: {seen}"
        );
    }
    for (p, app) in apps.iter().enumerate() {
        let end = once::END + if mine.contains(&(p as i64)) { more } else { 0 };
        assert_eq!(seen["txn"][app], end, "{app}: {seen}");
    }
    assert_eq!(
        seen["txn"][&writer],
        query_i64(&db, "SELECT max(batch_id) FROM _sluice.batches"),
        "the run published every batch it committed: {seen}"
    );
    assert_eq!(no_message_twice(&a), 0, "an instance holds a message twice");
}
