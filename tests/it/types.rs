//! Every column type the README lists, declared and fed through each source, lands in
//! DuckDB and in Parquet with its value (and NULL as NULL), nothing dead-lettered.

use crate::{
    kafka::Kafka,
    support::{query_i64, query_strings, Deployment},
};

/// (column, declared type, value as input text, the value DuckDB shows as VARCHAR).
const TYPES: [(&str, &str, &str, &str); 19] = [
    ("b", "BOOLEAN", "true", "true"),
    ("i8", "TINYINT", "-128", "-128"),
    ("i16", "SMALLINT", "32767", "32767"),
    ("i32", "INTEGER", "-2147483648", "-2147483648"),
    (
        "i64",
        "BIGINT",
        "9223372036854775807",
        "9223372036854775807",
    ),
    ("u8", "UTINYINT", "255", "255"),
    ("u16", "USMALLINT", "65535", "65535"),
    ("u32", "UINTEGER", "4294967295", "4294967295"),
    (
        "u64",
        "UBIGINT",
        "18446744073709551615",
        "18446744073709551615",
    ),
    ("f32", "FLOAT", "1.5", "1.5"),
    ("f64", "DOUBLE", "2.25", "2.25"),
    ("dec", "DECIMAL(12,2)", "1234.56", "1234.56"),
    ("s", "VARCHAR", "héllo", "héllo"),
    ("j", "JSON", r#"{"a":1}"#, r#"{"a":1}"#),
    ("bl", "BLOB", "abc", "abc"),
    ("d", "DATE", "2026-11-30", "2026-11-30"),
    ("t", "TIME", "12:34:56.5", "12:34:56.5"),
    (
        "ts",
        "TIMESTAMP",
        "2026-11-30 12:34:56.25",
        "2026-11-30 12:34:56.25",
    ),
    // An offset is applied; DuckDB (without ICU, as bundled) shows the instant in UTC.
    (
        "tz",
        "TIMESTAMPTZ",
        "2026-11-30 14:34:56.25+02:00",
        "2026-11-30 12:34:56.25+00",
    ),
];

fn schema_table() -> String {
    let mut text = String::from("[sources.src.schema]\nid = \"BIGINT\"\n");
    for (name, ty, _, _) in TYPES {
        text.push_str(&format!("{name} = \"{ty}\"\n"));
    }
    text
}

/// Row 1 holds every value, row 2 only NULLs: both as DuckDB and Parquet show them.
fn assert_landed(d: &Deployment) {
    let db = d.db();
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM _sluice.dead_letters"),
        0,
        "{:?}",
        query_strings(&db, "SELECT error FROM _sluice.dead_letters")
    );
    let columns: Vec<String> = TYPES
        .iter()
        .map(|(n, ..)| format!("{n}::VARCHAR"))
        .collect();
    let columns = columns.join(", ");
    let want: Vec<String> = TYPES.iter().map(|(.., shown)| shown.to_string()).collect();
    let glob = d.parquet_glob("src");
    for from in ["raw.src".to_string(), format!("read_parquet('{glob}')")] {
        let values = query_strings(&db, &format!("SELECT {columns} FROM {from} WHERE id = 1"));
        assert_eq!(values, std::slice::from_ref(&want), "{from}");
        let nulls = query_strings(&db, &format!("SELECT {columns} FROM {from} WHERE id = 2"));
        assert_eq!(nulls, [vec!["NULL".to_string(); TYPES.len()]], "{from}");
    }
}

#[test]
fn every_type_lands_from_csv() {
    let header: Vec<&str> = TYPES.iter().map(|(n, ..)| *n).collect();
    let values: Vec<String> = TYPES
        .iter()
        .map(|(_, _, v, _)| format!("\"{}\"", v.replace('"', "\"\"")))
        .collect();
    let text = format!(
        "id,{}\n1,{}\n2{}\n",
        header.join(","),
        values.join(","),
        ",".repeat(TYPES.len())
    );
    let d = Deployment::new(&schema_table(), "");
    d.write("types.csv", &text);
    d.run_once();
    assert_landed(&d);
}

#[test]
fn every_type_lands_from_kafka_json() {
    let k = Kafka::new("types", 1);
    let fields: Vec<String> = TYPES
        .iter()
        .map(|(name, ty, v, _)| {
            let number = ty.contains("INT") || ["FLOAT", "DOUBLE", "BOOLEAN"].contains(ty);
            match (number, *ty) {
                (_, "JSON") => format!("\"{name}\": {v}"),
                (true, _) => format!("\"{name}\": {v}"),
                (false, _) => format!("\"{name}\": \"{v}\""),
            }
        })
        .collect();
    k.send(0, "full", &format!("{{\"id\": 1, {}}}", fields.join(", ")));
    let nulls: Vec<String> = TYPES
        .iter()
        .map(|(n, ..)| format!("\"{n}\": null"))
        .collect();
    k.send(0, "nulls", &format!("{{\"id\": 2, {}}}", nulls.join(", ")));
    k.flush();
    let d = k.deployment("", &schema_table());
    d.run_once();
    assert_landed(&d);
}
