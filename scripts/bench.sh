#!/usr/bin/env bash
# Benchmarks sluice against its reference, side by side in the same run, and prints the
# ratio. Usage: scripts/bench.sh csv [--rows N --files N --runs N]
# (also: csv-cases, models, kafka, lake-compaction, soak, sql-fetch, sql-load, alter, new-fields, fuzz; scripts/bench.sh <mode> --help lists
# each one's options; and insert-threads, a probe of DuckDB alone, bench/probes/insert_threads.py)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
# A probe of DuckDB alone (no sluice to build): Python's DuckDB with pyarrow, in a venv of its own.
if [ "${1:-}" = insert-threads ]; then
  shift
  exec "$(ensure_venv "${SLUICE_PROBE_VENV:-$HOME/.cache/sluice-venv-probe}" \
    "duckdb==2.0.1 pyarrow==26.0.1 numpy==2.4.6")" bench/probes/insert_threads.py "$@"
fi
ensure_build_deps
# A long run of the fuzz properties the suite runs briefly (the Postgres message checks
# against pgwire's decoder, the gate against path-like names): `fuzz [cases]`, default 1M.
if [ "${1:-}" = fuzz ]; then
  SLUICE_FUZZ_CASES="${2:-1000000}" exec cargo test --release --workspace --locked -- \
    frames::tests replacement_scans --nocapture
fi
# The soak reads DuckDB's memory accounting from the running daemon with psql.
[ "${1:-}" = soak ] && ensure_packages postgresql-client
# The SQL benchmarks' client is Python (psycopg; duckdb for the in-process reference).
case "${1:-}" in sql-*) ensure_python_bench ;; esac
# The lake's benchmarks read the Delta tables back with Polars.
case "${1:-}" in lake-*) ensure_lake_clients ;; esac
case " $* " in *" --lake-s3 "*) ensure_lake_clients ;; esac
build_all
exec "$CARGO_TARGET_DIR/release/sluice-bench" "$@"
