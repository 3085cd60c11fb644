#!/usr/bin/env bash
# The data-rules benchmark (multi-item reads, grid reads, validation): the release server
# against same-run baselines, one run. Uses the venv target/compare-venv (pyarrow, numpy).
# Extra arguments go to bench.py (e.g. --reps 7). FLIGHTSTORE_BIN skips the build.
exec "$(dirname "$0")/../run-python.sh" benches/sql/requirements.txt benches/rules/bench.py "$@"
