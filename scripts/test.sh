#!/usr/bin/env bash
# The tests. Two tiers (docs/testing.md has their times):
#   scripts/test.sh           every test, what CI runs: set-up for the tests (once), one release
#                             build, then the Rust unit and integration tests (which also compare
#                             with the Python reference packages and render the report in
#                             Chromium) beside the Galaxy checks (scripts/galaxy-test.sh).
#   scripts/test.sh --quick   the inner loop, after every change: only the main set-up, then the
#                             unit and integration tests without the reference comparisons
#                             (reference::), Chromium (browser::) or Galaxy.
# Each part's time is printed as 'time: PART N s'.
set -euo pipefail
cd "$(dirname "$0")/.."

# libtorch's OpenMP threads spin while they wait for work. The tests run several processes on
# two cores, where the spinning takes the time the others need: with it passive, the integration
# tests took 204 s instead of 384 s (docs/testing.md). Training itself is measured without it.
export OMP_WAIT_POLICY=PASSIVE

quick=false
case "${1:-}" in
  --quick) quick=true ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--quick]" >&2; exit 2 ;;
esac

timed() {  # PART COMMAND...: runs it, prints its time, and returns its status (an `|| x=$?` caller
  # turns errexit off inside, so without the explicit return a failure would read as success)
  local part=$1 start=$SECONDS rc=0; shift
  "$@" || rc=$?
  echo "time: $part $(( SECONDS - start )) s"
  return $rc
}

if $quick; then
  source scripts/setup.sh
  timed build cargo test --release --no-run --quiet
  timed quick-tests cargo test --release --no-fail-fast -- --skip reference:: --skip browser::
  exit
fi

source scripts/setup-test.sh
start=$SECONDS
timed build cargo test --release --no-run --quiet

# Galaxy (its server's start-up, the lint, the tool tests and the workflow) runs beside the Rust
# tests; both are CPU-bound, and side by side they fill the idle moments of each (622 s against
# 697 s one after the other, docs/testing.md).
galaxy_log="$(mktemp)"
IMAGE_LEARNER_BUILT=1 timed galaxy scripts/galaxy-test.sh > "$galaxy_log" 2>&1 &
galaxy_pid=$!
trap 'kill $galaxy_pid 2>/dev/null || true; rm -f "$galaxy_log"' EXIT

rust=0
timed rust-tests cargo test --release --no-fail-fast || rust=$?
galaxy=0
wait $galaxy_pid || galaxy=$?
cat "$galaxy_log"
echo "time: all $(( SECONDS - start )) s"
[ $rust -eq 0 ] || echo "test.sh: the Rust tests failed (above)" >&2
[ $galaxy -eq 0 ] || echo "test.sh: the Galaxy checks failed (above)" >&2
[ $rust -eq 0 ] && [ $galaxy -eq 0 ]
