//! What lands, and that it lands exactly once.

use std::{thread, time::Duration};

use rand::{rngs::StdRng, Rng, SeedableRng};
use rdkafka::producer::Producer;

use super::{assert_each_message_once, order, producer, rows_ingested, send, Kafka, SCHEMA};
use crate::support::{http_get, output, query_i64, query_strings, Deployment, PATIENCE};

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
    assert_each_message_once(&db, good);
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
fn nested_objects_land_as_structs_in_duckdb_and_parquet() {
    let k = Kafka::new("shipments", 1);
    k.send(
        0,
        "a",
        r#"{"id": 1, "ship": {"city": "Paris", "geo": {"lat": 48.85}}}"#,
    );
    k.send(
        0,
        "b",
        r#"{"id": 2, "ship": {"city": "Berlin", "zip": 10115}}"#,
    );
    k.flush();
    let d = k.deployment("nested = \"struct\"", "");
    d.run_once();
    let db = d.db();
    let ship_type = r#"STRUCT(city VARCHAR, geo STRUCT(lat DOUBLE), zip BIGINT)"#;
    assert_eq!(
        query_strings(
            &db,
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'src' AND column_name = 'ship'"
        ),
        [[ship_type]]
    );
    let expected = [
        ["1", "Paris", "48.85", "NULL"],
        ["2", "Berlin", "NULL", "10115"],
    ];
    let select = "SELECT id, ship.city, coalesce(ship.geo.lat::VARCHAR, 'NULL'), \
                  coalesce(ship.zip::VARCHAR, 'NULL')";
    assert_eq!(
        query_strings(&db, &format!("{select} FROM raw.src ORDER BY id")),
        expected
    );
    let glob = d.parquet_glob("src");
    assert_eq!(
        query_strings(
            &db,
            &format!("{select} FROM read_parquet('{glob}') ORDER BY id")
        ),
        expected
    );
    drop(db);
    // A declared STRUCT: a field that does not fit its type makes the message a dead letter.
    let k = Kafka::new("declared", 1);
    k.send(
        0,
        "ok",
        r#"{"id": 1, "ship": {"city": "Oslo", "at": "2026-11-26 10:00:00"}}"#,
    );
    k.send(
        0,
        "bad",
        r#"{"id": 2, "ship": {"city": "Rome", "at": "yesterday"}}"#,
    );
    k.flush();
    let schema =
        "[sources.src.schema]\nid = \"BIGINT\"\nship = \"STRUCT(city VARCHAR, at TIMESTAMP)\"\n";
    let d = k.deployment("", schema);
    d.run_once();
    let db = d.db();
    assert_eq!(
        query_strings(&db, "SELECT id, ship.city, ship.at FROM raw.src"),
        [["1", "Oslo", "2026-11-26 10:00:00"]]
    );
    let dead = query_strings(&db, "SELECT key, error FROM _sluice.dead_letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0][0], "bad");
    assert!(dead[0][1].contains("column ship.at"), "{dead:?}");
}

#[test]
fn every_message_exactly_once_across_sigkills_at_random_moments() {
    let k = Kafka::new("stream", 4);
    let d = k.deployment_with(
        "",
        SCHEMA,
        "[batch]\nmax_rows = 500\nmax_age = \"300ms\"\n",
        "",
    );
    let seed: u64 = rand::rng().random();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut next = 0i64;
    let mut committed = 0;
    for round in 0..6 {
        for _ in 0..20_000 {
            k.send((next % 4) as i32, &format!("k{next}"), &order(next));
            next += 1;
        }
        k.flush();
        let mut daemon = d.start();
        // The kill clock starts once the group has assigned the partitions and this
        // round has committed, so every kill lands while sluice consumes.
        daemon.wait_for_log("partitions assigned");
        daemon.wait_for_log("committed table=");
        thread::sleep(Duration::from_millis(rng.random_range(0..150)));
        daemon.kill();
        let now = query_i64(&d.db(), "SELECT count(*) FROM raw.src");
        assert!(
            now > committed,
            "round {round}: nothing committed before the kill"
        );
        assert!(
            now < next,
            "round {round}: everything was committed before the kill (seed {seed})"
        );
        committed = now;
    }
    d.run_once();
    let db = d.db();
    assert_each_message_once(&db, next);
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
    let out = output(&mut d.command(&["run", "--once"]));
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
    daemon.wait_until("the first messages committed", |_| {
        rows_ingested(&base) == 500.0
    });
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
    daemon.wait_until("the new messages committed", |_| {
        rows_ingested(&base) >= 800.0
    });
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("skipping a message delivered again"),
        "no message came twice; the test proves nothing"
    );
    let db = d.db();
    assert_each_message_once(&db, 800);
}

#[test]
fn start_from_latest_skips_history_and_a_spurious_out_of_range_skips_nothing() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let k = Kafka::new("latest", 1);
    for i in 0..100 {
        k.send(0, "k", &order(i));
    }
    k.flush();
    let d = k.deployment("start_from = \"latest\"", SCHEMA);
    let set_start = |from: &str, to: &str| {
        let text = std::fs::read_to_string(&d.config).expect("config");
        let (from, to) = (
            format!("start_from = \"{from}\""),
            format!("start_from = \"{to}\""),
        );
        std::fs::write(&d.config, text.replace(&from, &to)).expect("config");
    };
    // No stored offset: the partition starts at its end, and --once ends at once.
    d.run_once();
    assert_eq!(
        query_i64(&d.db(), "SELECT count(*) FROM _sluice.offsets"),
        0,
        "the history was skipped"
    );
    // Nothing was stored, so "earliest" still reads the history.
    set_start("latest", "earliest");
    d.run_once();
    assert_each_message_once(&d.db(), 100);
    // With a stored offset start_from no longer matters, and a position the broker wrongly
    // calls out of range is reset to the earliest offset: re-read, never skipped.
    set_start("earliest", "latest");
    for i in 100..300 {
        k.send(0, "k", &order(i));
    }
    k.flush();
    k.cluster.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE; 2],
    );
    d.run_once();
    let db = d.db();
    assert_each_message_once(&db, 300);
    assert_eq!(
        query_strings(&db, "SELECT next_offset FROM _sluice.offsets"),
        [["300"]]
    );
}

#[test]
fn messages_deleted_by_retention_while_sluice_lags_are_recorded_as_a_gap() {
    let k = Kafka::new("lagging", 1);
    // A consumer that reads little ahead and commits slowly (one-row batches) falls behind
    // while 7 MB arrive; the mock keeps 5 MB per partition, deleting 1 MB segments.
    let d = k.deployment_with(
        "on_offset_gap = \"earliest\"",
        SCHEMA,
        "[batch]\nmax_rows = 1\n",
        "\"queued.max.messages.kbytes\" = \"64\"\n\"message.max.bytes\" = \"20000\"\n\"fetch.max.bytes\" = \"20000\"\n\"max.partition.fetch.bytes\" = \"20000\"\n",
    );
    let mut daemon = d.start_logging("info,sluice_sources=debug");
    daemon.wait_for_log("partitions assigned");
    for i in 0..5 {
        k.send(0, "k", &order(i));
    }
    k.flush();
    daemon.wait_for_log("committed table=src batch=5");
    let pad = "x".repeat(10_000);
    for i in 5..705 {
        k.send(0, "k", &format!("{{\"id\": {i}, \"name\": \"{pad}\"}}"));
    }
    k.flush();
    daemon.wait_until("the gap detected", |dd| {
        let log = dd.log_text();
        log.contains("offset gap") || log.contains("no longer on the broker")
    });
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    let db = d.db();
    let gaps = query_i64(
        &db,
        "SELECT count(*) FROM _sluice.dead_letters WHERE error LIKE 'offset gap%'",
    );
    assert!(gaps >= 1, "the gap is recorded: {log}");
    let rows = query_i64(&db, "SELECT count(*) FROM raw.src");
    assert!(
        (5..705).contains(&rows),
        "messages were deleted before they were read: {rows}"
    );
}

#[test]
fn kafka_batches_are_cut_at_exactly_max_rows_and_split_chunks_keep_their_offsets() {
    // 333 messages a partition make chunks of 100, 100, 100 and 33 rows (chunks are cut
    // at max_rows): batches fill up only by splitting chunks. A batch a few rows short of
    // max_rows (122,880 by default, one DuckDB row group) went through DuckDB's
    // write-ahead log and a checkpoint instead of straight into the file.
    let k = Kafka::new("cut", 3);
    let mut good = 0;
    for i in 0..999 {
        if i == 500 {
            k.send((i % 3) as i32, "poison", "{not json");
        } else {
            k.send((i % 3) as i32, "k", &order(i));
            good += 1;
        }
    }
    k.flush();
    let d = k.deployment_with(
        "",
        SCHEMA,
        "[batch]\nmax_rows = 100\nmax_age = \"1h\"\n",
        "",
    );
    d.run_once();
    let db = d.db();
    assert_each_message_once(&db, good);
    let sizes: Vec<i64> = query_strings(&db, "SELECT rows FROM _sluice.batches ORDER BY batch_id")
        .iter()
        .map(|r| r[0].parse().expect("rows"))
        .collect();
    let (last, full) = sizes.split_last().expect("batches");
    assert!(full.iter().all(|&n| n == 100) && *last <= 100, "{sizes:?}");
    assert_eq!(sizes.iter().sum::<i64>(), good);
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM _sluice.dead_letters WHERE key = 'poison'"
        ),
        1
    );
    assert_eq!(
        query_strings(
            &db,
            "SELECT \"partition\", next_offset FROM _sluice.offsets ORDER BY 1"
        ),
        [["0", "333"], ["1", "333"], ["2", "333"]]
    );
    drop(db);
    d.run_once();
    assert_each_message_once(&d.db(), good);
}
