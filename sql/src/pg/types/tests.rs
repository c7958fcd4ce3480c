use bytes::Buf;
use duckdb::Connection;

use super::*;

/// Runs `sql` in DuckDB and encodes its one row as the endpoint would.
fn row(sql: &str, format: FieldFormat) -> (Vec<Column>, Vec<Option<Vec<u8>>>) {
    let conn = Connection::open_in_memory().expect("duckdb");
    let mut stmt = conn.prepare(sql).expect("prepare");
    let types: Vec<_> = (0..stmt.column_count())
        .map(|i| pg_type(&stmt.column_logical_type(i)))
        .collect();
    let batches: Vec<RecordBatch> = stmt
        .stream_arrow([])
        .expect("run")
        .collect::<Result<_, _>>()
        .expect("batches");
    let batch = &batches[0];
    let columns: Vec<Column> = batch
        .schema()
        .fields()
        .iter()
        .zip(types)
        .map(|(f, (pg, typmod))| Column {
            name: f.name().clone(),
            pg,
            typmod,
            duckdb: String::new(),
        })
        .collect();
    let formats = vec![format; columns.len()];
    let rows = encode(batch, &columns, &formats).expect("encode");
    let mut data = rows[0].data.clone().freeze();
    let values = (0..columns.len())
        .map(|_| {
            let len = data.get_i32();
            (len >= 0).then(|| data.split_to(len as usize).to_vec())
        })
        .collect();
    (columns, values)
}

fn texts(sql: &str) -> Vec<Option<String>> {
    row(sql, FieldFormat::Text)
        .1
        .into_iter()
        .map(|v| v.map(|b| String::from_utf8(b).expect("utf8")))
        .collect()
}

#[test]
fn every_type_has_its_postgres_oid() {
    let (columns, _) = row(
        "SELECT true, 1::TINYINT, 1::SMALLINT, 1::INTEGER, 1::BIGINT, 1::UTINYINT, \
         1::USMALLINT, 1::UINTEGER, 1::UBIGINT, 1::HUGEINT, 1.5::FLOAT, 1.5::DOUBLE, \
         1.25::DECIMAL(10,2), 'x'::VARCHAR, '{}'::JSON, 'x'::BLOB, DATE '2024-01-02', \
         TIME '01:02:03', TIMESTAMP '2024-01-02 03:04:05', TIMESTAMPTZ '2024-01-02 03:04:05+00', \
         INTERVAL 1 DAY, uuid(), [1], {'a': 1}, MAP {'k': 1}",
        FieldFormat::Text,
    );
    let oids: Vec<u32> = columns.iter().map(|c| c.pg.oid()).collect();
    assert_eq!(
        oids,
        [
            16, 21, 21, 23, 20, 21, 23, 20, 1700, 1700, 700, 701, 1700, 25, 114, 17, 1082, 1083,
            1114, 1184, 1186, 2950, 114, 114, 114
        ]
    );
    // numeric(10,2): (10 << 16 | 2) + 4
    assert_eq!(columns[12].typmod, (10 << 16 | 2) + 4);
}

#[test]
fn values_in_text_format_read_as_postgres_writes_them() {
    let got = texts(
        "SELECT true, false, -5::TINYINT, 200::UTINYINT, 18446744073709551615::UBIGINT, \
         -12345678901234567890123::HUGEINT, 1.5::FLOAT, 0.1::DOUBLE, \
         'NaN'::DOUBLE, '-inf'::DOUBLE, -1.05::DECIMAL(10,2), 0.5::DECIMAL(3,1), \
         'héllo'::VARCHAR, '\\xAA\\x01'::BLOB, DATE '2024-01-02', TIME '01:02:03.25', \
         TIMESTAMP '2024-01-02 03:04:05', TIMESTAMP '2024-01-02 03:04:05.123', \
         TIMESTAMPTZ '2024-01-02 03:04:05+00', \
         INTERVAL '1 year 2 months 3 days 04:05:06.5', INTERVAL '-1 second', INTERVAL 0 DAY, \
         '6ba7b810-9dad-11d1-80b4-00c04fd430c8'::UUID, [1, NULL, 3], \
         {'a': 1, 'b': 'x\"y'}, MAP {'k': [true]}, NULL::INTEGER",
    );
    let want = [
        "t",
        "f",
        "-5",
        "200",
        "18446744073709551615",
        "-12345678901234567890123",
        "1.5",
        "0.1",
        "NaN",
        "-Infinity",
        "-1.05",
        "0.5",
        "héllo",
        "\\xaa01",
        "2024-01-02",
        "01:02:03.25",
        "2024-01-02 03:04:05",
        "2024-01-02 03:04:05.123",
        "2024-01-02 03:04:05+00",
        "1 year 2 mons 3 days 04:05:06.5",
        "-00:00:01",
        "00:00:00",
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "[1,null,3]",
        "{\"a\":1,\"b\":\"x\\\"y\"}",
        "{\"k\":[true]}",
    ];
    let mut expected: Vec<Option<String>> = want.iter().map(|s| Some(s.to_string())).collect();
    expected.push(None);
    assert_eq!(got, expected);
}

#[test]
fn values_in_binary_format_follow_postgres_send_functions() {
    let (_, v) = row(
        "SELECT 1::SMALLINT, 7::INTEGER, -2::BIGINT, 1.5::DOUBLE, DATE '2000-01-02', \
         TIMESTAMP '2000-01-01 00:00:01', INTERVAL '1 month 2 days 3 seconds', \
         '00010203-0405-0607-0809-0a0b0c0d0e0f'::UUID, 123.45::DECIMAL(10,2), \
         -0.0001::DECIMAL(10,4), 0::DECIMAL(5,2), 10000::UBIGINT, 'ab'::VARCHAR",
        FieldFormat::Binary,
    );
    let v: Vec<Vec<u8>> = v.into_iter().map(|x| x.expect("not null")).collect();
    assert_eq!(v[0], 1i16.to_be_bytes());
    assert_eq!(v[1], 7i32.to_be_bytes());
    assert_eq!(v[2], (-2i64).to_be_bytes());
    assert_eq!(v[3], 1.5f64.to_be_bytes());
    assert_eq!(v[4], 1i32.to_be_bytes(), "days since 2000-01-01");
    assert_eq!(
        v[5],
        1_000_000i64.to_be_bytes(),
        "microseconds since 2000-01-01"
    );
    let mut interval = 3_000_000i64.to_be_bytes().to_vec();
    interval.extend(2i32.to_be_bytes());
    interval.extend(1i32.to_be_bytes());
    assert_eq!(v[6], interval);
    assert_eq!(v[7], (0u8..16).collect::<Vec<_>>());
    // numeric: ndigits, weight, sign, dscale, digits (base 10000)
    let numeric = |words: &[u16]| {
        words
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect::<Vec<u8>>()
    };
    assert_eq!(v[8], numeric(&[2, 0, 0, 2, 123, 4500]));
    assert_eq!(v[9], numeric(&[1, 0xFFFF, 0x4000, 4, 1]));
    assert_eq!(v[10], numeric(&[0, 0, 0, 2]));
    assert_eq!(v[11], numeric(&[1, 1, 0, 0, 1]));
    assert_eq!(v[12], b"ab");
}

#[test]
fn binary_parameters_decode_to_what_the_client_sent() {
    use duckdb::types::Value;
    use pgwire::api::portal::Format;
    let numeric = |words: &[u16]| {
        Some(bytes::Bytes::from(
            words
                .iter()
                .flat_map(|w| w.to_be_bytes())
                .collect::<Vec<u8>>(),
        ))
    };
    let values = [
        Some(bytes::Bytes::from_static(&[0, 0, 0, 42])),
        numeric(&[2, 0, 0, 2, 123, 4500]),
        numeric(&[1, 0xFFFF, 0x4000, 4, 1]),
        Some(bytes::Bytes::from_static(&[0, 0, 0, 1])),
        None,
    ];
    let types = [
        Some(Type::INT4),
        Some(Type::NUMERIC),
        Some(Type::NUMERIC),
        Some(Type::DATE),
        Some(Type::TEXT),
    ];
    let got = params::decode(&values, &Format::UnifiedBinary, &types).expect("decode");
    assert_eq!(got[0], Value::Int(42));
    assert_eq!(got[1], Value::Text("123.45".into()));
    assert_eq!(got[2], Value::Text("-0.0001".into()));
    assert_eq!(got[3], Value::Date32(PG_EPOCH_DAYS + 1));
    assert_eq!(got[4], Value::Null);
    let bad = params::decode(&values[..1], &Format::UnifiedBinary, &[Some(Type::INT8)]);
    assert_eq!(bad.expect_err("4 bytes are not an int8").sqlstate, "22P02");
}
