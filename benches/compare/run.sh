#!/usr/bin/env bash
# The side-by-side benchmark: release Flightstore vs the in-process peers, one run.
# Installs the peers into their own venv (target/compare-venv). Extra arguments go to
# compare.py (e.g. --rows 1000000 --scale-rows 0 --data symbols).
# FLIGHTSTORE_BIN=/path/to/flightstore skips the build and runs that binary instead.
exec "$(dirname "$0")/../run-python.sh" benches/compare/requirements.txt benches/compare/compare.py "$@"
