"""DuckDB alone, no sluice: what its insert-and-commit gains from a second thread.

sluice commits each batch in its own transaction with one DuckDB thread, inserting from an
Arrow scan (issue 16, item 2: is that one thread the wall?). This probe replays the shape
in DuckDB's Python package: ~1M rows of ten Kafka-like columns (six data columns, four
provenance columns), one transaction per batch into a file database, per configuration:
DuckDB threads, `preserve_insertion_order`, and batch size (one DuckDB row group, 122,880
rows, as sluice's default `max_rows`; or four). DuckDB's Python Arrow scan is its own C++
one (parallel, zero-copy strings): sluice's duckdb-rs scan is serial and copies strings,
so read the ratios, not the seconds. A second table compares provenance columns that
are constant per file passed as Arrow arrays (as sluice does) against SQL parameters.

Run: scripts/bench.sh insert-threads [--runs N]
"""

import argparse
import os
import shutil
import tempfile
import time

import duckdb
import numpy as np
import pyarrow as pa

ROW_GROUP = 122_880
N = 8 * ROW_GROUP


def orders(n, rng):
    ids = np.arange(n, dtype=np.int64)
    return pa.table({
        "id": ids,
        "user_id": rng.integers(0, 100_000, n),
        "amount": pa.array((rng.integers(0, 10**9, n) / 100).round(2)).cast(pa.decimal128(12, 2)),
        "name": pa.array([f"user-{i % 5000}" for i in range(n)]),
        "note": pa.array([f"note text {i} lorem ipsum dolor" for i in range(n)]),
        "ts": pa.array(ids * 1000 + 1_700_000_000_000_000, pa.timestamp("us")),
        "_sluice_batch": pa.array(np.zeros(n, dtype=np.int64)),
        "_sluice_topic": pa.array(["orders"] * n),
        "_sluice_partition": pa.array((ids % 64).astype(np.int32)),
        "_sluice_offset": ids,
    })


def timed(work):
    """Wall and CPU seconds (this process, all threads) of work()."""
    t0, c0 = time.perf_counter(), os.times()
    work()
    c1 = os.times()
    return time.perf_counter() - t0, (c1.user - c0.user) + (c1.system - c0.system)


def fresh_db(scratch):
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    return duckdb.connect(os.path.join(scratch, "w.duckdb"))


def insert_run(table, scratch, threads, keep_order, batch_rows):
    con = fresh_db(scratch)
    con.execute(f"SET threads = {threads}; SET preserve_insertion_order = {keep_order}")
    src = table  # noqa: F841 (DuckDB finds the Python variable by name)
    con.execute("CREATE TABLE t AS SELECT * FROM src LIMIT 0")

    def work():
        for start in range(0, N, batch_rows):
            # Vector-sized Arrow batches, so a parallel scan has pieces to share out.
            b = pa.Table.from_batches(table.slice(start, batch_rows).combine_chunks().to_batches(16_384))
            con.execute("BEGIN")
            con.execute("INSERT INTO t SELECT * FROM b")
            con.execute("COMMIT")

    result = timed(work)
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == N
    con.close()
    return result


def constants_run(table, scratch, mode):
    con = fresh_db(scratch)
    con.execute("SET threads = 1")
    src = table  # noqa: F841 (DuckDB finds the Python variable by name)
    con.execute("CREATE TABLE t AS SELECT * FROM src LIMIT 0")
    data = table.drop_columns(["_sluice_topic"])

    def work():
        for start in range(0, N, ROW_GROUP):
            con.execute("BEGIN")
            if mode == "arrays":
                b = table.slice(start, ROW_GROUP)
                con.execute("INSERT INTO t SELECT * FROM b")
            else:
                b = data.slice(start, ROW_GROUP)
                con.execute(
                    "INSERT INTO t SELECT id, user_id, amount, name, note, ts, _sluice_batch, ?,"
                    " _sluice_partition, _sluice_offset FROM b", ["orders"])
            con.execute("COMMIT")

    result = timed(work)
    assert con.execute("SELECT count(*), count(DISTINCT _sluice_topic) FROM t").fetchone() == (N, 1)
    con.close()
    return result


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def report(title, results):
    print(f"\n{title}")
    print("| configuration | wall, median (s) | wall, runs (s) | CPU, median (s) |")
    print("|---|---:|---|---:|")
    for name, runs in results.items():
        walls = [w for w, _ in runs]
        print(f"| {name} | {median(walls):.2f} | {', '.join(f'{w:.2f}' for w in sorted(walls))} "
              f"| {median([c for _, c in runs]):.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    table = orders(N, np.random.default_rng(1))
    configs = [(1, "true", ROW_GROUP), (2, "false", ROW_GROUP), (1, "true", 4 * ROW_GROUP),
               (2, "true", 4 * ROW_GROUP), (2, "false", 4 * ROW_GROUP)]
    inserts = {f"threads {t}, preserve_insertion_order {k}, batches of {b:,} rows": [] for t, k, b in configs}
    constants = {"provenance as Arrow arrays": [], "provenance as SQL parameters": []}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.runs):  # alternated, so the machine's drift hits all alike
            for (t, k, b), runs in zip(configs, inserts.values()):
                runs.append(insert_run(table, scratch + "/db", t, k, b))
            for mode, runs in zip(["arrays", "parameters"], constants.values()):
                runs.append(constants_run(table, scratch + "/db", mode))
    print(f"DuckDB {duckdb.__version__}: {N:,} rows, one transaction per batch, {args.runs} runs")
    report("Insert and commit by DuckDB threads and batch size", inserts)
    report("Constant provenance columns (batches of one row group, one thread)", constants)


if __name__ == "__main__":
    main()
