#!/usr/bin/env bash
# Fuzzes the metadata reader, the ZIP reader + matching + decoding, the PyTorch checkpoint reader
# and the Best Model reader (as predict reads it) for a fixed number of
# executions each (default 1000000), starting from the seeds in fuzz/seeds. Not part of CI.
# Usage: scripts/fuzz.sh [RUNS]. Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
runs="${1:-1000000}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in metadata archive checkpoint bundle; do
  mkdir -p "fuzz/corpus/$target"
  cp -n fuzz/seeds/"$target"/* "fuzz/corpus/$target/" 2>/dev/null || true
  # -s none: libtorch is linked (through the library) but not instrumented; Rust's own checks
  # and libFuzzer catch panics, aborts and timeouts. RUSTC_BOOTSTRAP lets stable take -Z flags.
  RUSTC_BOOTSTRAP=1 cargo fuzz run --release -s none "$target" "fuzz/corpus/$target" -- \
    -runs="$runs" -max_len=65536 -rss_limit_mb=4096 -timeout=20 2>&1 | tee "/tmp/fuzz-$target.log" | grep -E "^#[0-9]+ *(DONE|INITED)|ERROR|panicked|Done" || true
done
