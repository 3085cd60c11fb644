#!/usr/bin/env bash
# The side-by-side benchmark: release Flightstore vs the in-process peers, one run.
# Installs the peers into their own venv (target/compare-venv). Extra arguments go to
# compare.py (e.g. --rows 1000000 --scale-rows 0 --data symbols).
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
target/compare-venv/bin/pip install --quiet --disable-pip-version-check -r benches/compare/requirements.txt
exec target/compare-venv/bin/python benches/compare/compare.py --binary "$FLIGHTSTORE_BIN" "$@"
