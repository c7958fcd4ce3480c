use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, Int64Type};

use super::*;
use crate::kafka::config::Nested;

/// A message to buffer (owned, so a test can change it first).
#[derive(Debug, Clone)]
struct Msg {
    offset: i64,
    key: Option<Vec<u8>>,
    timestamp_ms: Option<i64>,
    payload: Option<Vec<u8>>,
}

fn msg(offset: i64, payload: &str) -> Msg {
    Msg {
        offset,
        key: Some(format!("k{offset}").into_bytes()),
        timestamp_ms: Some(1_700_000_000_000),
        payload: Some(payload.as_bytes().to_vec()),
    }
}

/// The messages as the source buffers them.
fn run(messages: &[Msg]) -> Messages {
    messages
        .iter()
        .map(|m| Message {
            offset: m.offset,
            key: m.key.as_deref(),
            timestamp_ms: m.timestamp_ms,
            payload: m.payload.as_deref(),
        })
        .collect()
}

/// Messages of partition `partition` of `topic`.
fn at(topic: &Arc<str>, partition: i32) -> Partition<'_> {
    Partition { topic, partition }
}

/// Each dead letter's offset and error, in order.
fn offsets_and_errors(out: &Decoded) -> Vec<(i64, &str)> {
    out.dead_letters
        .iter()
        .map(|d| match &d.origin {
            Origin::Kafka { offset, .. } => (*offset, d.error.as_str()),
            other => unreachable!("a Kafka decoder makes Kafka dead letters: {other:?}"),
        })
        .collect()
}

fn decoder(format: Format, columns: &[(&str, ColumnType)]) -> Decoder {
    Decoder {
        format,
        data: Arc::new(TableSchema::new(
            columns
                .iter()
                .map(|(n, t)| Column::new(*n, t.clone()))
                .collect(),
        )),
        keep_unknown: false,
        max_message_bytes: 200,
        source: "orders".into(),
        contract: Default::default(),
        nested: Default::default(),
    }
}

#[test]
fn json_messages_become_typed_rows_with_provenance_and_poison_becomes_dead_letters() {
    let d = decoder(
        Format::Json,
        &[
            ("id", ColumnType::BigInt),
            (
                "amount",
                ColumnType::Decimal {
                    precision: 12,
                    scale: 2,
                },
            ),
            ("tags", ColumnType::Json),
        ],
    );
    let topic: Arc<str> = "orders".into();
    let messages = vec![
        msg(
            10,
            r#"{"id": 1, "amount": "12.50", "tags": {"a": [1, 2]}, "extra": true}"#,
        ),
        msg(11, "not json"),
        msg(12, r#"{"id": "x", "amount": 1}"#),
        msg(13, r#"[1, 2]"#),
        msg(14, &format!(r#"{{"id": 5, "pad": "{}"}}"#, "x".repeat(300))),
        msg(15, r#"{"id": 2}"#),
    ];
    let out = d.decode(at(&topic, 3), &run(&messages)).unwrap();
    assert_eq!(out.rows.num_rows(), 2);
    let ids = out.rows.column(0).as_primitive::<Int64Type>();
    assert_eq!((ids.value(0), ids.value(1)), (1, 2));
    assert_eq!(
        out.rows.column(2).as_string::<i32>().value(0),
        r#"{"a":[1,2]}"#
    );
    assert!(out.rows.column(1).is_null(1));
    let offsets = out
        .rows
        .column_by_name(crate::kafka::provenance::OFFSET)
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!((offsets.value(0), offsets.value(1)), (10, 15));
    let parts = out
        .rows
        .column_by_name(crate::kafka::provenance::PARTITION)
        .unwrap()
        .as_primitive::<Int32Type>();
    assert_eq!(parts.value(0), 3);
    assert_eq!(
        out.rows
            .column_by_name(crate::kafka::provenance::KEY)
            .unwrap()
            .as_string::<i32>()
            .value(1),
        "k15"
    );
    let dead = offsets_and_errors(&out);
    assert_eq!(dead.len(), 4, "{dead:?}");
    assert!(
        dead[0].0 == 11 && dead[0].1.contains("not valid JSON"),
        "{dead:?}"
    );
    assert!(dead[1].0 == 12 && dead[1].1.contains("id"), "{dead:?}");
    assert!(
        dead[2].0 == 13 && dead[2].1.contains("not a JSON object"),
        "{dead:?}"
    );
    assert!(
        dead[3].0 == 14 && dead[3].1.contains("max_message_bytes"),
        "{dead:?}"
    );
    let Origin::Kafka {
        key,
        topic,
        partition,
        ..
    } = &out.dead_letters[0].origin
    else {
        unreachable!()
    };
    assert_eq!(
        (key.as_deref(), &**topic, *partition),
        (Some("k11"), "orders", 3)
    );
    assert_eq!(out.dead_letters[0].raw, "not json");
}

#[test]
fn csv_messages_may_hold_several_lines_and_a_bad_line_rejects_its_message() {
    let d = decoder(
        Format::Csv,
        &[("id", ColumnType::BigInt), ("name", ColumnType::Varchar)],
    );
    let topic: Arc<str> = "t".into();
    let out = d
        .decode(
            at(&topic, 0),
            &run(&[msg(0, "1,a\n2,b\n"), msg(1, "3,c\nx,d\n"), msg(2, "4")]),
        )
        .unwrap();
    assert_eq!(out.rows.num_rows(), 2);
    assert_eq!(out.dead_letters.len(), 2);
}

#[test]
fn raw_payloads_land_as_text_or_bytes() {
    let topic: Arc<str> = "t".into();
    let text = decoder(Format::Raw, &[("payload", ColumnType::Varchar)]);
    let mut bad = msg(1, "");
    bad.payload = Some(vec![0xff, 0xfe]);
    let out = text
        .decode(at(&topic, 0), &run(&[msg(0, "hello"), bad.clone()]))
        .unwrap();
    assert_eq!((out.rows.num_rows(), out.dead_letters.len()), (1, 1));
    let bytes = decoder(Format::Raw, &[("payload", ColumnType::Blob)]);
    let out = bytes
        .decode(at(&topic, 0), &run(&[msg(0, "hello"), bad]))
        .unwrap();
    assert_eq!((out.rows.num_rows(), out.dead_letters.len()), (2, 0));
}

fn column_types(schema: &TableSchema) -> Vec<String> {
    schema
        .columns
        .iter()
        .map(|c| format!("{} {}", c.name, c.ty))
        .collect()
}

#[test]
fn infers_columns_from_json_samples() {
    let samples = [
        msg(
            0,
            r#"{"id": 1, "at": "2026-01-02 03:04:05", "obj": {"x": 1}}"#,
        ),
        msg(1, r#"{"id": 2, "name": "b", "obj": null, "_sluice_x": 1}"#),
        msg(2, "garbage"),
    ];
    let schema = infer_json(&run(&samples), Nested::Json).unwrap();
    assert_eq!(
        column_types(&schema),
        ["id BIGINT", "at TIMESTAMP", "obj JSON", "name VARCHAR"]
    );
    assert!(infer_json(&run(&[msg(0, "1")]), Nested::Json).is_none());
}

#[test]
fn nested_objects_can_be_inferred_as_structs_in_written_order() {
    let samples = [
        msg(
            0,
            r#"{"id": 1, "ship": {"zip": "75001", "geo": {"lat": 48.8}}, "tags": [1]}"#,
        ),
        msg(
            1,
            r#"{"id": 2, "ship": {"zip": "10115", "city": "Berlin"}, "tags": {"a": 1}}"#,
        ),
    ];
    let schema = infer_json(&run(&samples), Nested::Struct).unwrap();
    assert_eq!(
        column_types(&schema),
        [
            "id BIGINT",
            r#"ship STRUCT("zip" BIGINT, "geo" STRUCT("lat" DOUBLE), "city" VARCHAR)"#,
            "tags JSON",
        ]
    );
}

#[test]
fn struct_columns_decode_from_json_objects_and_bad_fields_are_dead_letters() {
    let ship: ColumnType = "STRUCT(zip VARCHAR, \"Lat\" DOUBLE, at TIMESTAMP)"
        .parse()
        .unwrap();
    let d = decoder(Format::Json, &[("id", ColumnType::BigInt), ("ship", ship)]);
    let topic: Arc<str> = "t".into();
    let out = d
        .decode(
            at(&topic, 0),
            &run(&[
                msg(
                    0,
                    r#"{"id": 1, "ship": {"zip": "75001", "lat": 48.8, "other": 1}}"#,
                ),
                msg(1, r#"{"id": 2, "ship": null}"#),
                msg(2, r#"{"id": 3, "ship": {"at": "not a time"}}"#),
                msg(3, r#"{"id": 4, "ship": "a string"}"#),
            ]),
        )
        .unwrap();
    assert_eq!(out.rows.num_rows(), 2);
    let ship = out.rows.column_by_name("ship").unwrap().as_struct();
    assert_eq!(ship.column(0).as_string::<i32>().value(0), "75001");
    assert_eq!(
        ship.column(1)
            .as_primitive::<arrow::datatypes::Float64Type>()
            .value(0),
        48.8
    );
    assert!(ship.column(2).is_null(0));
    assert!(ship.is_null(1));
    let errors = offsets_and_errors(&out);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].0, 2);
    assert!(errors[0].1.contains("column ship.at"), "{errors:?}");
    assert_eq!(errors[1].0, 3);
    assert!(errors[1].1.contains("expected a JSON object"), "{errors:?}");
}

#[test]
fn unknown_json_fields_can_be_kept_as_json() {
    let mut d = decoder(Format::Json, &[("id", ColumnType::BigInt)]);
    d.keep_unknown = true;
    let topic: Arc<str> = "t".into();
    let out = d
        .decode(
            at(&topic, 0),
            &run(&[
                msg(0, r#"{"id": 1, "x": {"y": 2}, "z": "w"}"#),
                msg(1, r#"{"id": 2}"#),
            ]),
        )
        .unwrap();
    let extra = out
        .rows
        .column_by_name(crate::kafka::provenance::EXTRA)
        .unwrap()
        .as_string::<i32>();
    assert_eq!(extra.value(0), r#"{"x":{"y":2},"z":"w"}"#);
    assert!(extra.is_null(1));
    assert_eq!(
        d.raw_columns().columns.last().unwrap().name,
        crate::kafka::provenance::EXTRA
    );
}

#[test]
fn json_fields_land_in_their_columns_in_any_order_and_case() {
    // The decoder tries the column after the last one found first: fields out of the
    // table's order, in another case, missing or repeated must still find theirs.
    let d = decoder(
        Format::Json,
        &[
            ("id", ColumnType::BigInt),
            ("name", ColumnType::Varchar),
            ("note", ColumnType::Varchar),
        ],
    );
    let topic: Arc<str> = "t".into();
    let out = d
        .decode(
            at(&topic, 0),
            &run(&[
                msg(0, r#"{"id": 1, "name": "a", "note": "n"}"#),
                msg(1, r#"{"note": "m", "id": 2, "name": "b"}"#),
                msg(2, r#"{"NAME": "c", "Id": 3}"#),
                msg(3, r#"{"name": "d", "name": "e", "id": 4, "id": 5}"#),
            ]),
        )
        .unwrap();
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    let ids = out.rows.column(0).as_primitive::<Int64Type>();
    let names = out.rows.column(1).as_string::<i32>();
    let notes = out.rows.column(2).as_string::<i32>();
    assert_eq!(
        ids.values().to_vec(),
        vec![1, 2, 3, 5],
        "the last of a repeated key wins"
    );
    let names: Vec<&str> = (0..4).map(|i| names.value(i)).collect();
    assert_eq!(names, ["a", "b", "c", "e"]);
    assert_eq!((notes.value(0), notes.value(1)), ("n", "m"));
    assert!(notes.is_null(2) && notes.is_null(3));
}

mod evolve;
