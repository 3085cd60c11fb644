#!/usr/bin/env bash
# The Flight SQL benchmark: release Flightstore through ADBC against same-run baselines
# (plain Flight DoGet, DuckDB over the item's Parquet files), one run.
# Installs its client packages into the venv target/compare-venv (shared with
# benches/compare). Extra arguments go to bench.py (e.g. --big-rows 20000000 --reps 11).
# FLIGHTSTORE_BIN=/path/to/flightstore skips the build and runs that binary instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${FLIGHTSTORE_BIN:-}" ]; then
    cargo build --release --bin flightstore
    FLIGHTSTORE_BIN="${CARGO_TARGET_DIR:-target}/release/flightstore"
fi
if [ ! -x target/compare-venv/bin/python ]; then
    python3 -m venv target/compare-venv
fi
target/compare-venv/bin/pip install --quiet --disable-pip-version-check -r benches/sql/requirements.txt
exec target/compare-venv/bin/python benches/sql/bench.py --binary "$FLIGHTSTORE_BIN" "$@"
