//! The Kafka source against librdkafka's mock cluster (the real broker protocol, in this
//! test process; sluice connects to it over TCP like to any broker). With
//! `SLUICE_TEST_KAFKA_BROKERS` set, `delivery::real_broker_round_trip` runs against a real
//! one.
//!
//! - [`delivery`]: what lands, exactly once: rows, provenance, poison messages, inference,
//!   SIGKILL, offset gaps, messages delivered twice, secrets.
//! - [`group`]: the group and the brokers: an unreachable broker, a second instance, a
//!   member SIGKILLed mid-stream, injected errors, a committer slower than the topic.
//! - [`once`]: `run --once` in a group whose partitions other instances consumed (stopped
//!   or SIGKILLed), with stored offsets behind or ahead of the group's, with a rebalance
//!   during the run.

mod delivery;
mod group;
pub mod once;

use std::time::Duration;

use rdkafka::{
    mocking::MockCluster,
    producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer},
    ClientConfig,
};

use crate::support::{http_get, metric, query_i64, query_strings, Deployment, PATIENCE};

/// A mock cluster with one topic, and a producer to it.
pub struct Kafka {
    pub cluster: MockCluster<'static, DefaultProducerContext>,
    producer: BaseProducer,
    topic: String,
}

impl Kafka {
    pub fn new(topic: &str, partitions: i32) -> Kafka {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(topic, partitions, 1).expect("topic");
        let producer = producer(&cluster.bootstrap_servers());
        Kafka {
            cluster,
            producer,
            topic: topic.into(),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn brokers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    pub fn send(&self, partition: i32, key: &str, payload: &str) {
        send(&self.producer, &self.topic, partition, key, payload);
    }

    pub fn flush(&self) {
        self.producer.flush(PATIENCE).expect("flush");
    }

    /// A deployment consuming the topic into `raw.src` (`extra` goes into the source, then
    /// `tables`: subtables such as `[sources.src.schema]`). The mock coordinator forgets a
    /// member only when its session times out, so sessions are short: a restarted sluice
    /// gets its partitions back quickly.
    pub fn deployment(&self, extra: &str, tables: &str) -> Deployment {
        self.deployment_with(extra, tables, "", "")
    }

    /// As [`Kafka::deployment`], with top-level settings and more librdkafka options.
    pub fn deployment_with(
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

pub fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

pub fn send(producer: &BaseProducer, topic: &str, partition: i32, key: &str, payload: &str) {
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

pub const SCHEMA: &str =
    "[sources.src.schema]\nid = \"BIGINT\"\nname = \"VARCHAR\"\namount = \"DECIMAL(12,2)\"\n";

pub fn order(id: i64) -> String {
    format!(
        r#"{{"id": {id}, "name": "n{id}", "amount": "{}.{:02}", "ignored": [1]}}"#,
        id % 1000,
        id % 100
    )
}

/// Rows the daemon at `base` has committed, by its metrics.
pub fn rows_ingested(base: &str) -> f64 {
    let (_, scrape) = http_get(&format!("{base}/metrics"));
    metric(&scrape, "sluice_rows_ingested_total{source=\"src\"}").unwrap_or(0.0)
}

/// Asserts every partition's stored offset in `_sluice.offsets` is `each` (the topic's end).
pub fn assert_offsets_at(db: &duckdb::Connection, partitions: i32, each: i64) {
    let offsets = query_strings(
        db,
        "SELECT \"partition\", next_offset FROM _sluice.offsets ORDER BY 1",
    );
    let expected: Vec<Vec<String>> = (0..partitions)
        .map(|p| vec![p.to_string(), each.to_string()])
        .collect();
    assert_eq!(
        offsets, expected,
        "stored offsets equal the high watermarks"
    );
}

/// Asserts `raw.src` holds `n` rows: each message (partition, offset) once, each id once.
pub fn assert_each_message_once(db: &duckdb::Connection, n: i64) {
    assert_eq!(query_i64(db, "SELECT count(*) FROM raw.src"), n, "rows");
    let distinct = "SELECT count(DISTINCT (_sluice_partition, _sluice_offset)) FROM raw.src";
    assert_eq!(query_i64(db, distinct), n, "distinct messages");
    assert_eq!(
        query_i64(db, "SELECT count(DISTINCT id) FROM raw.src"),
        n,
        "distinct ids"
    );
}

/// Whether the daemon at `base` reports lag 0 for each of `partitions` partitions.
pub fn caught_up(base: &str, partitions: usize) -> bool {
    let (_, scrape) = http_get(&format!("{base}/metrics"));
    let lags: Vec<f64> = scrape
        .lines()
        .filter(|l| l.starts_with("sluice_kafka_lag_messages{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    lags.len() == partitions && lags.iter().all(|&lag| lag == 0.0)
}

/// The group's (`it`) offsets of `topic` as the broker stores them, by partition (-1: none).
pub fn broker_offsets(k: &Kafka, topic: &str, partitions: i32) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", k.brokers())
        .set("group.id", "it")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, PATIENCE)
        .expect("committed offsets");
    (0..partitions)
        .map(|p| {
            let e = committed.find_partition(topic, p).expect("partition");
            e.offset().to_raw().unwrap_or(-1)
        })
        .collect()
}

/// One in-memory DuckDB with the instances' warehouses attached under their aliases.
pub fn attach(instances: &[(&str, &Deployment)]) -> duckdb::Connection {
    let db = duckdb::Connection::open_in_memory().expect("duckdb");
    for (alias, d) in instances {
        let path = d.data.join("warehouse.duckdb");
        db.execute_batch(&format!(
            "ATTACH '{}' AS {alias} (READ_ONLY)",
            path.display()
        ))
        .expect("attach");
    }
    db
}

/// No attached warehouse of `aliases` holds a message (partition, offset) twice.
pub fn assert_no_message_twice_in(db: &duckdb::Connection, aliases: &[&str]) {
    for alias in aliases {
        let sql = format!("SELECT count(*) - count(DISTINCT (_sluice_partition, _sluice_offset)) FROM {alias}.raw.src");
        assert_eq!(
            query_i64(db, &sql),
            0,
            "instance {alias} holds a message twice"
        );
    }
}
