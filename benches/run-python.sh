#!/usr/bin/env bash
# Shared by the benchmark scripts: run a Python benchmark against the release server.
#
#   benches/run-python.sh <requirements.txt> <script.py> [args...]
#
# Builds the release server (FLIGHTSTORE_BIN=/path/to/flightstore skips the build and
# runs that binary instead), installs the requirements into the venv target/compare-venv
# and runs the script with `--binary <server>` and the remaining arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=$1
script=$2
shift 2
if [ -z "${FLIGHTSTORE_BIN:-}" ]; then
    cargo build --release --bin flightstore
    FLIGHTSTORE_BIN="${CARGO_TARGET_DIR:-target}/release/flightstore"
fi
if [ ! -x target/compare-venv/bin/python ]; then
    python3 -m venv target/compare-venv
fi
target/compare-venv/bin/pip install --quiet --disable-pip-version-check -r "$requirements"
exec target/compare-venv/bin/python "$script" --binary "$FLIGHTSTORE_BIN" "$@"
