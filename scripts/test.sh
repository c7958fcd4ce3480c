#!/usr/bin/env bash
# Runs the whole test suite: unit tests, then the integration tests that run the real
# `sluice` binary. Everything builds in the release profile, the same one the quickstart
# and benchmarks use, so DuckDB compiles once.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ensure_build_deps
ensure_test_deps
# Same package and target selection as build_all, so no dependency is built twice.
cargo test --release --workspace --locked "$@"
