#!/usr/bin/env bash
# Every test: set-up (once), then the Rust unit and integration tests, which also compare with
# the Python reference packages that the set-up installed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo test --release
