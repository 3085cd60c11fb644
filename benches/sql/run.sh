#!/usr/bin/env bash
# The Flight SQL benchmark: release Flightstore through ADBC against same-run baselines
# (plain Flight DoGet, DuckDB over the item's Parquet files), one run.
# Installs its client packages into the venv target/compare-venv (shared with
# benches/compare). Extra arguments go to bench.py (e.g. --big-rows 20000000 --reps 11).
# FLIGHTSTORE_BIN=/path/to/flightstore skips the build and runs that binary instead.
exec "$(dirname "$0")/../run-python.sh" benches/sql/requirements.txt benches/sql/bench.py "$@"
