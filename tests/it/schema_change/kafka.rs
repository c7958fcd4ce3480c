//! JSON fields no column takes become columns, values widen them, STRUCT values with new
//! fields widen their struct (also across partitions in one batch), and a scalar where a
//! struct is is a dead letter naming the column.

use super::{assert_raw_and_parquet, batch_of, data_columns, rows, schema_changes};
use crate::{
    kafka::{assert_each_message_once, Kafka},
    support::query_strings,
};

#[test]
fn schema_change_kafka_new_fields_become_columns_and_values_widen_them() {
    let k = Kafka::new("evolving", 1);
    let d = k.deployment("nested = \"struct\"", "");
    let send = |msgs: &[&str]| {
        for (i, m) in msgs.iter().enumerate() {
            k.send(0, &format!("k{i}"), m);
        }
        k.flush();
        d.run_once();
    };
    send(&[r#"{"id": 1, "v": 1}"#]);
    assert_eq!(
        data_columns(&d.db(), "raw.src"),
        rows(&[&["id", "BIGINT"], &["v", "BIGINT"]])
    );
    send(&[
        r#"{"id": 2, "v": 2, "extra": "x", "ship": {"city": "a"}}"#,
        r#"{"id": 3, "v": 2.5}"#,
    ]);
    send(&[r#"{"id": 4, "v": 3, "ship": {"city": "b", "zip": 7}}"#]);

    let db = d.db();
    assert_eq!(
        data_columns(&db, "raw.src"),
        rows(&[
            &["id", "BIGINT"],
            &["v", "DOUBLE"],
            &["extra", "VARCHAR"],
            &["ship", "STRUCT(city VARCHAR, zip BIGINT)"],
        ])
    );
    assert_each_message_once(&db, 4);
    let expected = rows(&[
        &["1", "1.0", "NULL", "NULL", "NULL"],
        &["2", "2.0", "x", "a", "NULL"],
        &["3", "2.5", "NULL", "NULL", "NULL"],
        &["4", "3.0", "NULL", "b", "7"],
    ]);
    assert_raw_and_parquet(
        &d,
        &db,
        "SELECT id, v, extra, ship.city, ship.zip",
        &expected,
    );
    let (b2, b3, b4) = (
        batch_of(&db, "id = 2").to_string(),
        batch_of(&db, "id = 3").to_string(),
        batch_of(&db, "id = 4").to_string(),
    );
    let t = "evolving";
    let mut want = rows(&[
        &["extra", "add_column", "NULL", "VARCHAR", &b2, "src", t],
        &[
            "ship",
            "add_column",
            "NULL",
            r#"STRUCT("city" VARCHAR)"#,
            &b2,
            "src",
            t,
        ],
        &["v", "widen_column", "BIGINT", "DOUBLE", &b3, "src", t],
        &[
            "ship",
            "widen_column",
            r#"STRUCT("city" VARCHAR)"#,
            r#"STRUCT("city" VARCHAR, "zip" BIGINT)"#,
            &b4,
            "src",
            t,
        ],
    ]);
    want.sort_by_key(|r| (r[4].parse::<i64>().expect("batch"), r[0].clone()));
    assert_eq!(schema_changes(&db), want);
}

#[test]
fn schema_change_kafka_struct_shapes_across_partitions_and_an_object_then_a_scalar() {
    let k = Kafka::new("shapes", 2);
    let d = k.deployment("nested = \"struct\"", "");
    k.send(0, "k0", r#"{"id": 0, "ship": {"city": "z"}}"#);
    k.flush();
    d.run_once();
    // One run, so one batch: partition 0's chunk is typed with the struct as it was,
    // partition 1's after it gained a field; and a scalar where the struct is.
    k.send(0, "k1", r#"{"id": 1, "ship": {"city": "a"}}"#);
    k.send(0, "k3", r#"{"id": 3, "ship": 5}"#);
    k.send(1, "k2", r#"{"id": 2, "ship": {"city": "b", "zip": 7}}"#);
    k.flush();
    let out = d.run_once();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = d.db();
    assert_eq!(
        data_columns(&db, "raw.src"),
        rows(&[
            &["id", "BIGINT"],
            &["ship", "STRUCT(city VARCHAR, zip BIGINT)"]
        ])
    );
    assert_each_message_once(&db, 3);
    assert_eq!(
        query_strings(
            &db,
            "SELECT id, ship.city, ship.zip FROM raw.src ORDER BY id"
        ),
        rows(&[&["0", "z", "NULL"], &["1", "a", "NULL"], &["2", "b", "7"]])
    );
    // The scalar needs JSON (text), which the default contract refuses: a dead letter
    // naming the column.
    let dead = query_strings(&db, "SELECT \"offset\", error FROM _sluice.dead_letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0][0], "2");
    assert!(dead[0][1].contains("ship"), "{dead:?}");
}
