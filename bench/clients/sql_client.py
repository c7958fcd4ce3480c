"""A client of sluice's SQL endpoint for sluice-bench (psycopg 3), or the in-process
DuckDB reference.

  sql_client.py fetch pg PORT QUERY       one query, every row fetched (binary), timed
  sql_client.py fetch duckdb FILE QUERY   the same query in-process (Python duckdb), timed
  sql_client.py loop PORT QUERY           runs QUERY again and again until SIGTERM
  sql_client.py point PORT MAX_ID         point queries on the `orders` mart until SIGTERM

Prints one JSON object: seconds and rows for `fetch`; queries, errors and latency
percentiles (ms) for `loop` and `point`.
"""
import json
import random
import signal
import sys
import time


def connect(port):
    import psycopg

    # autocommit: each statement is its own read-only transaction (no snapshot held).
    return psycopg.connect(
        f"host=127.0.0.1 port={port} user=bench dbname=sluice", autocommit=True
    )


def fetch(kind, target, query):
    if kind == "duckdb":
        import duckdb

        conn = duckdb.connect(target, read_only=True)
        started = time.perf_counter()
        rows = conn.execute(query).fetchall()
    else:
        conn = connect(int(target))
        started = time.perf_counter()
        cur = conn.cursor(binary=True)
        cur.execute(query)
        rows = cur.fetchall()
    return {"seconds": time.perf_counter() - started, "rows": len(rows)}


def repeat(port, run):
    import psycopg

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    conn = connect(port)
    latencies, errors = [], 0
    while not stopping:
        started = time.perf_counter()
        try:
            run(conn)
            latencies.append(time.perf_counter() - started)
        except psycopg.Error:
            # The mart does not exist until the first model run.
            errors += 1
            time.sleep(0.05)
    latencies.sort()
    pct = lambda p: round(1000 * latencies[int(p * (len(latencies) - 1))], 2) if latencies else None
    return {"queries": len(latencies), "errors": errors, "p50_ms": pct(0.5), "p99_ms": pct(0.99)}


def main():
    mode = sys.argv[1]
    if mode == "fetch":
        out = fetch(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "loop":
        query = sys.argv[3]
        out = repeat(int(sys.argv[2]), lambda c: c.execute(query).fetchall())
    elif mode == "point":
        max_id = int(sys.argv[3])
        out = repeat(
            int(sys.argv[2]),
            lambda c: c.execute(
                "SELECT * FROM orders WHERE id = %s", [random.randrange(max_id)], prepare=True
            ).fetchall(),
        )
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out))


main()
