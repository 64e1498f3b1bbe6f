#!/usr/bin/env bash
# Benchmark: builds the release binary, starts the emulator on 127.0.0.1, and runs up, status
# and down at 0, 100 and 300 ms per call, with the dependency graph and with
# --max-concurrency 1, several times each; then up and down through the test proxy's model of
# AWS behaviour (examples/model_proxy.rs). Writes bench/RESULTS.md.
#   scripts/bench.sh [RUNS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${1:-3}
cargo build --release --quiet --bin privbucket --example model_proxy
bin="${CARGO_TARGET_DIR:-$root/target}/release/privbucket"
model="${CARGO_TARGET_DIR:-$root/target}/release/examples/model_proxy"
scripts/emulator.sh start "${PRIVBUCKET_BENCH_PORT:-5088}"
trap 'scripts/emulator.sh stop' EXIT
.venv/bin/python bench/bench.py --binary "$bin" --emulator "$(cat .emulator/url)" \
  --runs "$runs" --model-proxy "$model" --out bench/RESULTS.md
