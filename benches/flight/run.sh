#!/usr/bin/env bash
# Build the release server, make the benchmark venv, run the Flight benchmark.
# Extra arguments go to bench.py (e.g. --rows 1000000 --upload-gb 0).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --bin flightstore
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
exec .venv/bin/python benches/flight/bench.py "$@"
