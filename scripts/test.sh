#!/usr/bin/env bash
# Every test: set-up for the tests (once), then the Rust unit and integration tests (which also compare with the
# Python reference packages the set-up installed and render the report in Chromium), then the
# Galaxy tools' tests on a real Galaxy 26.1.1.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-test.sh
cargo test --release
scripts/galaxy-test.sh
