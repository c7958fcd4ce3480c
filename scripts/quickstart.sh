#!/usr/bin/env bash
# Runs the quickstart: ingests examples/quickstart/inbox into
# examples/quickstart/data (DuckDB + Parquet) and exits. No external service is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ensure_build_deps
build_all
"$CARGO_TARGET_DIR/release/sluice" run --config examples/quickstart/sluice.toml --once "$@"
"$CARGO_TARGET_DIR/release/sluice" --version
echo "done: raw tables and marts (schema main) in examples/quickstart/data/warehouse.duckdb, Parquet in examples/quickstart/data/parquet/"
