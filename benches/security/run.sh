#!/usr/bin/env bash
# Build the release server, make the benchmark venv, measure the cost of authentication.
# Extra arguments go to bench.py (e.g. --reps 50 --out results.json).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --bin flightstore
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
exec .venv/bin/python benches/security/bench.py --binary target/release/flightstore "$@"
