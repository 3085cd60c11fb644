#!/usr/bin/env bash
# The data-rules benchmark (multi-item reads, grid reads, validation): the release server
# against same-run baselines, one run. Uses the venv target/compare-venv (pyarrow, numpy).
# Extra arguments go to bench.py (e.g. --reps 7). FLIGHTSTORE_BIN skips the build.
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
exec target/compare-venv/bin/python benches/rules/bench.py --binary "$FLIGHTSTORE_BIN" "$@"
