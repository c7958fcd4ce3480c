"""DuckDB's postgres scanner (the `postgres` extension) against sluice's Postgres endpoint.

Run by tests/it/sql.rs with the endpoint's port and the rows the raw table `src` holds;
exits non-zero with a message on the first difference. The scanner ATTACHes the
warehouse, reads its catalog (pg_namespace, pg_class, pg_attribute, pg_type,
pg_constraint, pg_enum, pg_indexes in one transaction) and each table through
`COPY (SELECT ...) TO STDOUT (FORMAT "binary")`.

DuckDB and the extension are the versions PyPI has together (duckdb==1.5.5 and
duckdb-extension-postgres_scanner==1.5.5), installed by scripts/env.sh: DuckDB downloads
extensions from extensions.duckdb.org, which CI may not reach.
"""

import datetime
import decimal
import os
import sys

import duckdb
import duckdb_extension_postgres_scanner as scanner

port, expected_rows = int(sys.argv[1]), int(sys.argv[2])


def check(what, got, want):
    if got != want:
        sys.exit(f"{what}: got {got!r}, want {want!r}")


version = duckdb.__version__
extension = os.path.join(
    os.path.dirname(scanner.__file__), f"extensions/v{version}/postgres_scanner.duckdb_extension"
)
conn = duckdb.connect(config={"allow_unsigned_extensions": "true"})
conn.execute(f"INSTALL '{extension}'")
conn.execute("LOAD postgres_scanner")
conn.execute(
    f"ATTACH 'host=127.0.0.1 port={port} user=sluice dbname=sluice sslmode=disable' "
    "AS live (TYPE postgres, READ_ONLY)"
)
tables = conn.execute(
    "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'live' "
    "ORDER BY ALL"
).fetchall()
check("raw.src attached", ("raw", "src") in tables, True)
check("count", conn.execute("SELECT count(*) FROM live.raw.src").fetchone()[0], expected_rows)
check(
    "rows and types",
    conn.execute(
        "SELECT id, name, amount, typeof(amount), typeof(_sluice_ingested_at) "
        "FROM live.raw.src WHERE id <= 2 ORDER BY id"
    ).fetchall(),
    [
        (1, "name 1", decimal.Decimal("1.01"), "DECIMAL(12,2)", "TIMESTAMP WITH TIME ZONE"),
        (2, "name 2", decimal.Decimal("2.02"), "DECIMAL(12,2)", "TIMESTAMP WITH TIME ZONE"),
    ],
)
ingested = conn.execute("SELECT max(_sluice_ingested_at) FROM live.raw.src").fetchone()[0]
check("a timestamptz", isinstance(ingested, datetime.datetime) and ingested.tzinfo is not None, True)
# The mart, joined in DuckDB with a local table.
conn.execute("CREATE TABLE wanted AS SELECT range AS id FROM range(1, 11)")
check(
    "a join of the live mart with a local table",
    conn.execute("SELECT count(*) FROM live.main.m JOIN wanted USING (id)").fetchone()[0],
    10,
)
try:
    conn.execute("DELETE FROM live.raw.src")
    sys.exit("a DELETE through the scanner ran")
except duckdb.Error:
    pass
check("still every row", conn.execute("SELECT count(*) FROM live.raw.src").fetchone()[0], expected_rows)
print("ok")
