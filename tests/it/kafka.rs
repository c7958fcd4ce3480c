//! The Kafka source against librdkafka's mock cluster (the real broker protocol, in this
//! test process; sluice connects to it over TCP like to any broker). With
//! `SLUICE_TEST_KAFKA_BROKERS` set, [`real_broker_round_trip`] runs against a real one.

use std::{thread, time::Duration};

use rand::Rng;
use rdkafka::{
    mocking::MockCluster,
    producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer},
    ClientConfig,
};

use crate::support::{
    documented_metrics, http_get, metric, metric_names, query_i64, query_strings, Deployment,
    PATIENCE,
};

/// A mock cluster with one topic, and a producer to it.
struct Kafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
    producer: BaseProducer,
    topic: String,
}

impl Kafka {
    fn new(topic: &str, partitions: i32) -> Kafka {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(topic, partitions, 1).expect("topic");
        let producer = producer(&cluster.bootstrap_servers());
        Kafka {
            cluster,
            producer,
            topic: topic.into(),
        }
    }

    fn brokers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    fn send(&self, partition: i32, key: &str, payload: &str) {
        send(&self.producer, &self.topic, partition, key, payload);
    }

    fn flush(&self) {
        self.producer.flush(PATIENCE).expect("flush");
    }

    /// A deployment consuming the topic into `raw.src` (`extra` goes into the source, then
    /// `tables`: subtables such as `[sources.src.schema]`). The mock coordinator forgets a
    /// member only when its session times out, so sessions are short: a restarted sluice
    /// gets its partitions back quickly.
    fn deployment(&self, extra: &str, tables: &str) -> Deployment {
        self.deployment_with(extra, tables, "", "")
    }

    /// As [`Kafka::deployment`], with top-level settings and more librdkafka options.
    fn deployment_with(
        &self,
        extra: &str,
        tables: &str,
        top: &str,
        librdkafka: &str,
    ) -> Deployment {
        let source = format!(
            "[sources.src]\ntype = \"kafka\"\nbrokers = \"{}\"\ntopics = [\"{}\"]\ngroup_id = \"it\"\n{extra}\n\
             [sources.src.librdkafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n{librdkafka}\n{tables}\n",
            self.brokers(),
            self.topic
        );
        Deployment::with_source(&source, top)
    }
}

fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

fn send(producer: &BaseProducer, topic: &str, partition: i32, key: &str, payload: &str) {
    let mut record = BaseRecord::to(topic)
        .partition(partition)
        .key(key)
        .payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((e, r)) => {
                // Queue full: let deliveries drain, then retry the same record.
                assert!(
                    matches!(e, rdkafka::error::KafkaError::MessageProduction(_)),
                    "{e}"
                );
                producer.poll(Duration::from_millis(10));
                record = r;
            }
        }
    }
}

const SCHEMA: &str =
    "[sources.src.schema]\nid = \"BIGINT\"\nname = \"VARCHAR\"\namount = \"DECIMAL(12,2)\"\n";

fn order(id: i64) -> String {
    format!(
        r#"{{"id": {id}, "name": "n{id}", "amount": "{}.{:02}", "ignored": [1]}}"#,
        id % 1000,
        id % 100
    )
}

#[test]
fn json_messages_land_once_with_provenance_and_poison_becomes_dead_letters() {
    let k = Kafka::new("orders", 3);
    let mut good = 0;
    for i in 0..300 {
        let p = (i % 3) as i32;
        match i {
            17 => k.send(p, "bad-json", "{not json"),
            18 => k.send(p, "bad-type", r#"{"id": "seventeen"}"#),
            19 => k.send(
                p,
                "big",
                &format!(r#"{{"id": 1, "name": "{}"}}"#, "x".repeat(3000)),
            ),
            _ => {
                k.send(p, &format!("k{i}"), &order(i));
                good += 1;
            }
        }
    }
    k.flush();
    let d = k.deployment("max_message_bytes = \"2KiB\"", SCHEMA);
    d.run_once();
    let db = d.db();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), good);
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(DISTINCT (_sluice_partition, _sluice_offset)) FROM raw.src"
        ),
        good
    );
    assert_eq!(
        query_strings(
            &db,
            "SELECT _sluice_topic, _sluice_key, name FROM raw.src WHERE id = 4"
        ),
        [["orders", "k4", "n4"]]
    );
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM raw.src WHERE _sluice_timestamp IS NULL"
        ),
        0
    );
    let dead = query_strings(&db, "SELECT key, topic, \"partition\", \"offset\", error FROM _sluice.dead_letters ORDER BY key");
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert_eq!(dead[0][0], "bad-json");
    assert!(dead[0][4].contains("not valid JSON"), "{dead:?}");
    assert!(
        dead[1][0] == "bad-type" && dead[1][4].contains("id"),
        "{dead:?}"
    );
    assert!(
        dead[2][0] == "big" && dead[2][4].contains("max_message_bytes"),
        "{dead:?}"
    );
    // Offsets stored with the data equal the high watermarks: 100 messages per partition.
    assert_eq!(
        query_strings(
            &db,
            "SELECT \"partition\", next_offset FROM _sluice.offsets ORDER BY 1"
        ),
        [["0", "100"], ["1", "100"], ["2", "100"]]
    );
    drop(db);
    // A second run finds nothing new and duplicates nothing.
    d.run_once();
    assert_eq!(query_i64(&d.db(), "SELECT count(*) FROM raw.src"), good);
}

#[test]
fn the_schema_is_inferred_from_the_first_messages_and_raw_keeps_payloads() {
    let k = Kafka::new("events", 1);
    k.send(
        0,
        "a",
        r#"{"id": 1, "at": "2026-11-26 10:00:00", "meta": {"x": 1}}"#,
    );
    k.send(
        0,
        "b",
        r#"{"id": 2, "at": "2026-11-26 11:00:00", "meta": {"y": [2]}, "new": 5}"#,
    );
    k.flush();
    let d = k.deployment("", "");
    d.run_once();
    let db = d.db();
    let types = query_strings(
        &db,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'src' AND column_name NOT LIKE '\\_sluice\\_%' ESCAPE '\\' ORDER BY ordinal_position",
    );
    assert_eq!(
        types,
        [
            ["id", "BIGINT"],
            ["at", "TIMESTAMP"],
            ["meta", "JSON"],
            ["new", "BIGINT"]
        ]
    );
    assert_eq!(
        query_strings(&db, "SELECT meta->>'$.y[0]' FROM raw.src WHERE id = 2"),
        [["2"]]
    );
    let raw = Kafka::new("lines", 1);
    raw.send(0, "k", "plain text, not JSON");
    raw.flush();
    let d = raw.deployment("format = \"raw\"", "");
    d.run_once();
    assert_eq!(
        query_strings(&d.db(), "SELECT payload FROM raw.src"),
        [["plain text, not JSON"]]
    );
}

#[test]
fn every_message_exactly_once_across_sigkills_at_random_moments() {
    let k = Kafka::new("stream", 4);
    let d = k.deployment_with(
        "",
        SCHEMA,
        "[batch]\nmax_rows = 2000\nmax_age = \"300ms\"\n",
        "",
    );
    let mut rng = rand::rng();
    let mut next = 0i64;
    let mut interrupted = 0;
    for _round in 0..6 {
        for _ in 0..5000 {
            k.send((next % 4) as i32, &format!("k{next}"), &order(next));
            next += 1;
        }
        k.flush();
        let daemon = d.start();
        thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
        let before = d.data.join("warehouse.duckdb").exists();
        daemon.kill();
        interrupted += usize::from(before);
    }
    assert!(
        interrupted > 0,
        "no kill landed after start-up; the test proves nothing"
    );
    d.run_once();
    let db = d.db();
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM raw.src"),
        next,
        "every message once"
    );
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(DISTINCT (_sluice_partition, _sluice_offset)) FROM raw.src"
        ),
        next
    );
    assert_eq!(
        query_i64(&db, "SELECT count(DISTINCT id) FROM raw.src"),
        next
    );
    let offsets = query_strings(
        &db,
        "SELECT \"partition\", next_offset FROM _sluice.offsets ORDER BY 1",
    );
    let expected: Vec<Vec<String>> = (0..4)
        .map(|p| vec![p.to_string(), (next / 4).to_string()])
        .collect();
    assert_eq!(
        offsets, expected,
        "stored offsets equal the high watermarks"
    );
}

#[test]
fn an_unreachable_broker_is_reported_and_consumption_resumes_when_it_returns() {
    let k = Kafka::new("later", 2);
    k.cluster.broker_down(1).expect("broker down");
    let d = k.deployment("", SCHEMA);
    let mut daemon = d.start();
    let base = daemon.http_addr();
    daemon.wait_until("not ready: brokers down", |_| {
        let (code, body) = http_get(&format!("{base}/readyz"));
        code == 503 && body.contains("brokers are down")
    });
    let (_, scrape) = http_get(&format!("{base}/metrics"));
    assert_eq!(
        metric(&scrape, "sluice_kafka_broker_up{source=\"src\"}"),
        Some(0.0)
    );
    k.cluster.broker_up(1).expect("broker up");
    for i in 0..50 {
        k.send((i % 2) as i32, "k", &order(i));
    }
    k.flush();
    daemon.wait_until("ready and all rows in", |_| {
        let (_, scrape) = http_get(&format!("{base}/metrics"));
        http_get(&format!("{base}/readyz")).0 == 200
            && metric(&scrape, "sluice_rows_ingested_total{source=\"src\"}") == Some(50.0)
    });
    // Lag comes with librdkafka's statistics (every 5 s): 0 once everything is committed.
    let lag = |p: i32| {
        format!("sluice_kafka_lag_messages{{source=\"src\",topic=\"later\",partition=\"{p}\"}}")
    };
    daemon.wait_until("lag reported as zero", |_| {
        let (_, scrape) = http_get(&format!("{base}/metrics"));
        metric(&scrape, &lag(0)) == Some(0.0) && metric(&scrape, &lag(1)) == Some(0.0)
    });
    let (_, scrape) = http_get(&format!("{base}/metrics"));
    assert_eq!(
        metric(&scrape, "sluice_kafka_broker_up{source=\"src\"}"),
        Some(1.0)
    );
    let status: serde_json::Value =
        serde_json::from_str(&http_get(&format!("{base}/status")).1).expect("json");
    let src = &status["sources"][0];
    assert_eq!(
        (
            src["type"].as_str(),
            src["lag_messages"].as_u64(),
            src["rows"].as_u64()
        ),
        (Some("kafka"), Some(0), Some(50)),
        "{status}"
    );
    let served = metric_names(&scrape);
    for name in documented_metrics()
        .iter()
        .filter(|m| m.starts_with("sluice_kafka_"))
    {
        assert!(
            served.contains(name),
            "{name} is documented but not served:\n{scrape}"
        );
    }
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    assert_eq!(query_i64(&d.db(), "SELECT count(*) FROM raw.src"), 50);
}

#[test]
fn a_stored_offset_deleted_by_retention_fails_or_resumes_at_the_earliest_with_a_record() {
    let k = Kafka::new("short", 1);
    for i in 0..10 {
        k.send(0, "k", &order(i));
    }
    k.flush();
    let d = k.deployment("", SCHEMA);
    d.run_once();
    // The mock cluster keeps at most 5 MB per partition (deleting 1 MB segments): 7 MB of
    // new messages push the stored offset out.
    let pad = "x".repeat(10_000);
    for i in 10..710 {
        k.send(0, "k", &format!("{{\"id\": {i}, \"name\": \"{pad}\"}}"));
    }
    k.flush();
    let out = d.command(&["run", "--once"]).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("stored offset 10 is no longer on the broker")
            && err.contains("on_offset_gap"),
        "{err}"
    );
    let text = std::fs::read_to_string(&d.config).expect("config");
    std::fs::write(
        &d.config,
        text.replace(
            "group_id = \"it\"",
            "group_id = \"it\"\non_offset_gap = \"earliest\"",
        ),
    )
    .expect("config");
    d.run_once();
    let db = d.db();
    let gap = query_strings(&db, "SELECT \"offset\", error FROM _sluice.dead_letters");
    assert_eq!(gap.len(), 1, "{gap:?}");
    assert!(
        gap[0][0] == "10" && gap[0][1].contains("offset gap"),
        "{gap:?}"
    );
    assert_eq!(
        query_strings(&db, "SELECT next_offset FROM _sluice.offsets"),
        [["710"]]
    );
    let low = 710 - query_i64(&db, "SELECT count(*) FROM raw.src WHERE id >= 10");
    assert!(
        low > 10,
        "the earliest offset the broker kept is past the gap"
    );
}

#[test]
fn secrets_in_librdkafka_options_never_reach_logs_or_status() {
    let k = Kafka::new("secret", 1);
    let d = k.deployment_with(
        "",
        SCHEMA,
        "",
        "\"sasl.password\" = \"hunter2-very-secret\"\n\"sasl.username\" = \"u\"\n\"security.protocol\" = \"sasl_plaintext\"\n\"sasl.mechanism\" = \"PLAIN\"\n",
    );
    let mut daemon = d.start();
    let base = daemon.http_addr();
    daemon.wait_until("some librdkafka activity logged", |dd| {
        dd.log_text().contains("src")
    });
    thread::sleep(Duration::from_millis(500));
    let (_, status) = http_get(&format!("{base}/status"));
    let (_, ready) = http_get(&format!("{base}/readyz"));
    let (_, log) = daemon.terminate();
    for text in [&status, &ready, &log] {
        assert!(!text.contains("hunter2"), "secret leaked: {text}");
    }
}

#[test]
fn real_broker_round_trip() {
    let Ok(brokers) = std::env::var("SLUICE_TEST_KAFKA_BROKERS") else {
        eprintln!("SLUICE_TEST_KAFKA_BROKERS is not set: the real-broker tier is skipped");
        return;
    };
    let topic = format!("sluice-it-{}", std::process::id());
    let producer = producer(&brokers);
    for i in 0..100 {
        send(&producer, &topic, 0, "k", &order(i));
    }
    producer.flush(PATIENCE).expect("flush");
    let source = format!(
        "[sources.src]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopics = [\"{topic}\"]\ngroup_id = \"{topic}\"\n{SCHEMA}"
    );
    let d = Deployment::with_source(&source, "");
    d.run_once();
    assert_eq!(query_i64(&d.db(), "SELECT count(*) FROM raw.src"), 100);
}

#[test]
fn a_second_instance_joining_and_leaving_loses_and_doubles_nothing() {
    let k = Kafka::new("shared", 6);
    let produce = |from: i64, n: i64| {
        for i in from..from + n {
            k.send((i % 6) as i32, "k", &order(i));
        }
        k.flush();
    };
    let rows = |base: &str| {
        let (_, scrape) = http_get(&format!("{base}/metrics"));
        metric(&scrape, "sluice_rows_ingested_total{source=\"src\"}").unwrap_or(0.0)
    };
    produce(0, 3000);
    let a = k.deployment("", SCHEMA);
    let b = k.deployment("", SCHEMA);
    let mut first = a.start();
    let base_a = first.http_addr();
    first.wait_until("the first instance ingests", |_| rows(&base_a) > 0.0);
    let mut second = b.start();
    let base_b = second.http_addr();
    produce(3000, 3000);
    second.wait_until("the second instance got partitions and ingests", |_| {
        rows(&base_b) > 0.0
    });
    let (status, log) = second.terminate();
    assert!(status.success(), "{log}");
    produce(6000, 3000);
    let in_b = query_i64(&b.db(), "SELECT count(*) FROM raw.src") as f64;
    first.wait_until("the first instance took everything back", |_| {
        rows(&base_a) + in_b >= 9000.0
    });
    let (status, log) = first.terminate();
    assert!(status.success(), "{log}");
    let db = duckdb::Connection::open_in_memory().expect("duckdb");
    for (alias, d) in [("a", &a), ("b", &b)] {
        let path = d.data.join("warehouse.duckdb");
        db.execute_batch(&format!(
            "ATTACH '{}' AS {alias} (READ_ONLY)",
            path.display()
        ))
        .expect("attach");
    }
    let union = "SELECT _sluice_partition AS p, _sluice_offset AS o FROM a.raw.src \
                 UNION ALL SELECT _sluice_partition, _sluice_offset FROM b.raw.src";
    assert!(
        query_i64(&db, "SELECT count(*) FROM b.raw.src") > 0,
        "the second instance took part"
    );
    assert_eq!(
        query_i64(
            &db,
            &format!("SELECT count(DISTINCT (p, o)) FROM ({union})")
        ),
        9000,
        "nothing lost"
    );
    assert_eq!(
        query_i64(&db, &format!("SELECT count(*) FROM ({union})")),
        9000,
        "nothing doubled"
    );
}

#[test]
fn injected_broker_errors_are_retried_without_loss() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let k = Kafka::new("flaky", 2);
    for i in 0..400 {
        k.send((i % 2) as i32, "k", &order(i));
    }
    k.flush();
    let errors = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 5];
    k.cluster.request_errors(RDKafkaApiKey::Fetch, &errors);
    let errors = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE; 3];
    k.cluster
        .request_errors(RDKafkaApiKey::OffsetCommit, &errors);
    let d = k.deployment("", SCHEMA);
    d.run_once();
    let db = d.db();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), 400);
    assert_eq!(
        query_i64(&db, "SELECT count(DISTINCT id) FROM raw.src"),
        400
    );
}

#[test]
fn a_slow_committer_pauses_consumption_and_loses_nothing() {
    let k = Kafka::new("fast", 4);
    let n = 20_000;
    for i in 0..n {
        k.send((i % 4) as i32, "k", &order(i));
    }
    k.flush();
    // Tiny batches: thousands of commits, far slower than reading the topic.
    let d = k.deployment_with("", SCHEMA, "[batch]\nmax_rows = 100\n", "");
    let out = d
        .command(&["run", "--once"])
        .env("SLUICE_LOG", "info,sluice_sources=debug")
        .output()
        .expect("run");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("backpressure"),
        "the committer never fell behind; the test proves nothing"
    );
    let db = d.db();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), n);
    assert_eq!(query_i64(&db, "SELECT count(DISTINCT id) FROM raw.src"), n);
}

#[test]
fn messages_delivered_again_after_an_offset_reset_are_not_written_twice() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let k = Kafka::new("reset", 1);
    for i in 0..500 {
        k.send(0, "k", &order(i));
    }
    k.flush();
    let d = k.deployment("", SCHEMA);
    let mut daemon = d.start_logging("info,sluice_sources=debug");
    let base = daemon.http_addr();
    let rows = |base: &str| {
        let (_, scrape) = http_get(&format!("{base}/metrics"));
        metric(&scrape, "sluice_rows_ingested_total{source=\"src\"}").unwrap_or(0.0)
    };
    daemon.wait_until("the first messages committed", |_| rows(&base) == 500.0);
    // The broker claims the fetch offset is out of range: librdkafka resets the partition
    // to its earliest offset and delivers every message again.
    k.cluster.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE; 2],
    );
    for i in 500..800 {
        k.send(0, "k", &order(i));
    }
    k.flush();
    daemon.wait_until("the new messages committed", |_| rows(&base) >= 800.0);
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("skipping a message delivered again"),
        "no message came twice; the test proves nothing"
    );
    let db = d.db();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), 800);
    assert_eq!(
        query_i64(&db, "SELECT count(DISTINCT _sluice_offset) FROM raw.src"),
        800
    );
}
