"""psycopg 3 and SQLAlchemy against sluice's Postgres endpoint.

Run by tests/it/sql_clients.rs with the endpoint's port and the rows the raw table
`src` holds; exits non-zero with a message on the first difference. Checks server-side
binary parameters and results, a statement prepared on the server and run more than five
times, every type sluice maps, binary COPY, `pandas.read_sql` through SQLAlchemy's
`postgresql+psycopg` dialect (what Streamlit's `st.connection("sql")` uses).
"""

import datetime
import decimal
import json
import sys
import uuid

import psycopg

port, expected_rows = int(sys.argv[1]), int(sys.argv[2])
dsn = f"host=127.0.0.1 port={port} user=sluice dbname=sluice sslmode=disable"


def check(what, got, want):
    if got != want:
        sys.exit(f"{what}: got {got!r}, want {want!r}")


with psycopg.connect(dsn, autocommit=True) as conn:
    # Binary parameters and results, extended protocol.
    with conn.cursor(binary=True) as cur:
        cur.execute("SELECT id, name, amount FROM raw.src WHERE id = %s", [5])
        check("a row by binary parameter", cur.fetchall(), [(5, "name 5", decimal.Decimal("5.05"))])
        cur.execute("SELECT count(*) FROM raw.src")
        check("count", cur.fetchone()[0], expected_rows)

    # Prepared on the server (psycopg prepares from the 5th execution; prepare=True does
    # it at once), executed more than five times.
    with conn.cursor() as cur:
        for i in range(1, 9):
            cur.execute("SELECT name FROM raw.src WHERE id = %s", [i], prepare=True)
            check(f"prepared run {i}", cur.fetchone()[0], f"name {i}")

    # Every type, in binary and in text.
    types_sql = """SELECT true AS b, 7::TINYINT AS i1, 7::SMALLINT AS i2, 7::INTEGER AS i4,
        7::BIGINT AS i8, 7::UBIGINT AS u8, 12345678901234567890123::HUGEINT AS h,
        1.5::FLOAT AS f4, 2.25::DOUBLE AS f8, 12.34::DECIMAL(10,2) AS d, 'héllo' AS t,
        '{"a": [1, 2]}'::JSON AS j, '\\x01\\xff'::BLOB AS by, DATE '2024-02-29' AS dt,
        TIME '13:14:15.5' AS tm, TIMESTAMP '2024-02-29 13:14:15.25' AS ts,
        TIMESTAMPTZ '2024-02-29 13:14:15+00' AS tz, INTERVAL '1 day 02:03:04' AS iv,
        '6ba7b810-9dad-11d1-80b4-00c04fd430c8'::UUID AS u, [1, 2] AS l,
        {'k': 'v'} AS s, NULL::INTEGER AS n"""
    want = (
        True, 7, 7, 7, 7, decimal.Decimal(7), decimal.Decimal("12345678901234567890123"),
        1.5, 2.25, decimal.Decimal("12.34"), "héllo", {"a": [1, 2]}, b"\x01\xff",
        datetime.date(2024, 2, 29), datetime.time(13, 14, 15, 500000),
        datetime.datetime(2024, 2, 29, 13, 14, 15, 250000),
        datetime.datetime(2024, 2, 29, 13, 14, 15, tzinfo=datetime.timezone.utc),
        datetime.timedelta(days=1, hours=2, minutes=3, seconds=4),
        uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8"), [1, 2], {"k": "v"}, None,
    )
    oids = [16, 21, 21, 23, 20, 1700, 1700, 700, 701, 1700, 25, 114, 17, 1082, 1083,
            1114, 1184, 1186, 2950, 114, 114, 23]
    for binary in (True, False):
        with conn.cursor(binary=binary) as cur:
            cur.execute(types_sql)
            row = cur.fetchone()
            check(f"type OIDs (binary={binary})", [d.type_code for d in cur.description], oids)
            for name, got, w in zip([d.name for d in cur.description], row, want):
                check(f"{name} (binary={binary})", got, w)

    # COPY in the binary format (what DuckDB's postgres scanner reads), typed by psycopg.
    with conn.cursor() as cur:
        query = ("COPY (SELECT id, name, amount, NULL::INTEGER AS n FROM raw.src "
                 "WHERE id <= 3 ORDER BY id) TO STDOUT (FORMAT BINARY)")
        with cur.copy(query) as copy:
            copy.set_types(["int8", "text", "numeric", "int4"])
            copied = list(copy.rows())
        check("binary COPY", copied, [
            (i, f"name {i}", decimal.Decimal(f"{i}.{i:02d}"), None) for i in (1, 2, 3)
        ])
        with cur.copy("COPY (SELECT 1 WHERE false) TO STDOUT (FORMAT BINARY)") as copy:
            copy.set_types(["int4"])
            check("binary COPY of no rows", list(copy.rows()), [])

        # A transaction: one snapshot, read-only.
    with conn.transaction():
        with conn.cursor() as cur:
            cur.execute("SHOW transaction_read_only")
            check("read-only transaction", cur.fetchone()[0], "on")
            try:
                cur.execute("DELETE FROM raw.src")
                sys.exit("a DELETE ran")
            except psycopg.errors.ReadOnlySqlTransaction:
                pass
            raise psycopg.Rollback()

import pandas
import sqlalchemy

engine = sqlalchemy.create_engine(f"postgresql+psycopg://sluice@127.0.0.1:{port}/sluice")
frame = pandas.read_sql("SELECT id, amount FROM raw.src ORDER BY id", engine)
check("pandas rows", len(frame), expected_rows)
check("pandas first id", int(frame["id"].iloc[0]), 1)
# SQLAlchemy's reflection: Postgres's catalog as SQLAlchemy reads it.
inspector = sqlalchemy.inspect(engine)
check("raw tables", "src" in inspector.get_table_names(schema="raw"), True)
reflected = [(c["name"], repr(c["type"]), c["nullable"]) for c in inspector.get_columns("src", schema="raw")]
check("reflected columns", reflected, [
    ("id", "BIGINT()", True),
    ("name", "TEXT()", True),
    ("amount", "NUMERIC(precision=12, scale=2)", True),
    ("_sluice_batch", "BIGINT()", True),
    ("_sluice_ingested_at", "TIMESTAMP(timezone=True)", True),
    ("_sluice_source", "TEXT()", True),
    ("_sluice_file", "TEXT()", True),
    ("_sluice_line", "BIGINT()", True),
])
check("primary key", inspector.get_pk_constraint("src", schema="raw")["constrained_columns"], [])
table = sqlalchemy.Table("src", sqlalchemy.MetaData(), schema="raw", autoload_with=engine)
with engine.connect() as conn:
    check("reflected table count",
          conn.execute(sqlalchemy.select(sqlalchemy.func.count()).select_from(table)).scalar(),
          expected_rows)
    # current_setting: the session's parameters, as SET changed them.
    conn.exec_driver_sql("SET application_name = 'reflection'")
    check("current_setting", conn.exec_driver_sql(
        "SELECT current_setting('application_name'), current_setting('server_version_num')").one(),
        ("reflection", "160006"))
print(json.dumps({"ok": True, "columns": list(frame.columns)}))
