#!/usr/bin/env bash
# Benchmark: builds the release binary, starts the emulator on 127.0.0.1, and runs up, status
# and down at 0, 100 and 300 ms per call, with the dependency graph and with
# --max-concurrency 1, several times each. Writes bench/RESULTS.md.
#   scripts/bench.sh [RUNS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${1:-3}
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-$root/target}/release/privbucket"
scripts/emulator.sh start "${PRIVBUCKET_BENCH_PORT:-5088}"
trap 'scripts/emulator.sh stop' EXIT
.venv/bin/python bench/bench.py --binary "$bin" --emulator "$(cat .emulator/url)" \
  --runs "$runs" --out bench/RESULTS.md
