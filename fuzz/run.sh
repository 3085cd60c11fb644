#!/usr/bin/env bash
# Run every fuzz target for a bounded time; exit non-zero on any crash.
#
#   bash fuzz/run.sh [SECONDS]          # default 60 s per target
#   TARGETS="ticket do_put" bash fuzz/run.sh 30
#
# - Installs cargo-fuzz if missing; needs a nightly toolchain (`rustup toolchain install
#   nightly`); FUZZ_TOOLCHAIN overrides `nightly`.
# - Builds into $CARGO_TARGET_DIR (default fuzz/target, git-ignored; never the root
#   `target/`). A cold build takes ~7.5 min on 2 cores; cache this dir in CI.
# - Each target runs on a temporary copy of fuzz/corpus/<target>, so the checked-in
#   corpus never grows. New inputs found are thrown away unless KEEP_CORPUS=<dir> is set
#   (then they are copied to <dir>/<target>/ for review).
# - A crash leaves its input and log in fuzz/artifacts/<target>/ (git-ignored); the script
#   goes on with the other targets, then fails listing the crashed ones. Panics raised
#   inside arrow on malformed IPC are tolerated by do_put and listed (fuzz/README.md);
#   FLIGHTSTORE_FUZZ_STRICT=1 makes them crashes.
# - Per target it prints libFuzzer's final stat::number_of_executed_units.
set -euo pipefail

SECONDS_PER_TARGET="${1:-60}"
FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$FUZZ_DIR/target}"
ALL_TARGETS="ticket command action time do_put"
TARGETS="${TARGETS:-$ALL_TARGETS}"
# libFuzzer options for every target: a slow input (a hang) or > 2 GB RSS is a failure.
FUZZ_OPTS=(-max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -timeout=10
  -rss_limit_mb=2048 -max_len=16384)

case "$SECONDS_PER_TARGET" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
if ! cargo "+$TOOLCHAIN" --version >/dev/null 2>&1; then
  echo "error: the $TOOLCHAIN toolchain is missing: rustup toolchain install $TOOLCHAIN" >&2
  exit 2
fi

cd "$FUZZ_DIR"
echo "== building fuzz targets (target dir $CARGO_TARGET_DIR)"
build_start=$(date +%s)
cargo "+$TOOLCHAIN" fuzz build
echo "== built in $(($(date +%s) - build_start)) s"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flightstore-fuzz.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
LOG_DIR="${LOG_DIR:-$WORK/logs}"
mkdir -p "$LOG_DIR"

failed=()
summary=()
for target in $TARGETS; do
  corpus="$WORK/corpus/$target"
  mkdir -p "$corpus" "$FUZZ_DIR/artifacts/$target"
  if [ -d "$FUZZ_DIR/corpus/$target" ]; then
    cp -R "$FUZZ_DIR/corpus/$target/." "$corpus/"
  fi
  log="$LOG_DIR/$target.log"
  echo "== fuzzing $target for ${SECONDS_PER_TARGET}s ($(find "$corpus" -type f | wc -l) seed inputs)"
  set +e
  # The temporary corpus is the only corpus dir given, so only it receives new inputs.
  cargo "+$TOOLCHAIN" fuzz run "$target" "$corpus" -- "${FUZZ_OPTS[@]}" >"$log" 2>&1
  status=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -n 1 | tr -d 'cov: ')
  if [ -n "${KEEP_CORPUS:-}" ]; then
    mkdir -p "$KEEP_CORPUS/$target"
    cp -R "$corpus/." "$KEEP_CORPUS/$target/"
  fi
  upstream=$(grep -c '^upstream panic at' "$log" || true)
  if [ "${upstream:-0}" -gt 0 ]; then
    echo "   $target: $upstream distinct upstream (arrow) panics tolerated:"
    grep '^upstream panic at' "$log" | sed 's/^/     /'
  fi
  if [ "$status" -ne 0 ]; then
    cp "$log" "$FUZZ_DIR/artifacts/$target/fuzz.log"
    echo "!! $target FAILED (exit $status); the panic / sanitizer report (full log in"
    echo "   fuzz/artifacts/$target/fuzz.log):"
    grep -E -A40 "panicked at|ERROR: (AddressSanitizer|libFuzzer)" "$log" | head -n 80 || true
    echo "   ..."
    tail -n 25 "$log"
    ls -l "$FUZZ_DIR/artifacts/$target" || true
    failed+=("$target")
    summary+=("$target: FAILED, executions ${execs:-?}")
  else
    echo "   $target: ok, executions ${execs:-?}, coverage ${cov:-?}"
    summary+=("$target: ok, executions ${execs:-?}, coverage ${cov:-?}")
  fi
done

echo "== summary (${SECONDS_PER_TARGET}s per target)"
printf '   %s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
  echo "== FAILED: ${failed[*]} (crashing inputs in fuzz/artifacts/<target>/; replay one with"
  echo "   cargo +$TOOLCHAIN fuzz run <target> fuzz/artifacts/<target>/<file>)"
  exit 1
fi
echo "== all targets passed"
