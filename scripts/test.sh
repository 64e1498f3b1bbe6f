#!/usr/bin/env bash
# The whole test suite: formatting, lints, the docs, the handler's unit test, the Rust unit and
# integration tests, and the demo as a smoke test.
#
# The emulator is installed here (moto server, pinned, in .venv). Each integration test gets
# its own moto server on a free 127.0.0.1 port, forked from one process that has imported moto
# (tests/common/moto_forkserver.py), and stops it (by its process) when it ends, so tests run
# in parallel on isolated emulators. If moto is missing the tests fail; they never skip.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# Each step says how long it took, and the end repeats them with the slowest tests: where the
# suite's time goes, measured on every run.
times=""
step_name=""
step_start=$SECONDS
step() {
  if [ -n "$step_name" ]; then
    times+=$(printf '%6ds  %s' $((SECONDS - step_start)) "$step_name")$'\n'
  fi
  step_name=$1
  step_start=$SECONDS
  if [ -n "$1" ]; then echo "==> $1"; fi
}

step "emulator (moto server)"
scripts/emulator.sh install
export PRIVBUCKET_MOTO_SERVER="$root/.venv/bin/moto_server"

step "Graphviz (dot), for the diagram tests"
# The diagram tests hand `privbucket diagram --format dot` to Graphviz's own `dot -Tsvg`. The
# distribution's package by name, at least the version the tests were written against (any
# later point release will do); without it the tests fail, never skip.
GRAPHVIZ_MIN=2.42
graphviz_ok() {
  local v
  v=$(dpkg-query -W -f='${Version}' graphviz 2>/dev/null) || return 1
  command -v dot >/dev/null && dpkg --compare-versions "$v" ge "$GRAPHVIZ_MIN"
}
if ! graphviz_ok; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends graphviz >/dev/null
  else
    echo "Graphviz $GRAPHVIZ_MIN or later is missing: sudo apt-get install graphviz" >&2
    exit 1
  fi
  graphviz_ok || { echo "Graphviz older than $GRAPHVIZ_MIN" >&2; exit 1; }
fi
dot -V

step "groff, for the man page test"
if ! command -v groff >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends groff-base >/dev/null
  else
    echo "groff is missing: sudo apt-get install groff-base" >&2
    exit 1
  fi
fi

step "cargo fmt --check"
cargo fmt --check

# Clippy's check of every dependency is also what `cargo doc` documents against (rustdoc reads
# the dependencies' metadata from check builds, never from the test build), so the two share
# one check build of the AWS SDK crates, about three minutes of a fresh clone on 2 cores.
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

step "cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items --quiet

step "handler unit test (lambda/test_uploader.py)"
python3 -m unittest discover -s lambda -p 'test_*.py' -v

step "cargo test --no-run (the test build)"
cargo test --no-run

step "cargo test (the unit tests, the integration tests)"
test_times="${TMPDIR:-/tmp}/privbucket-test-times.$$"
rm -f "$test_times"
PRIVBUCKET_TEST_TIMES="$test_times" cargo test

step "demo (scripts/demo.sh) as a smoke test"
PRIVBUCKET_EMULATOR_PORT=${PRIVBUCKET_DEMO_PORT:-5099} scripts/demo.sh >"${TMPDIR:-/tmp}/privbucket-demo.log" 2>&1 || {
  echo "scripts/demo.sh failed; its output:" >&2
  cat "${TMPDIR:-/tmp}/privbucket-demo.log" >&2
  exit 1
}
grep -q "Stack privbucket is gone" "${TMPDIR:-/tmp}/privbucket-demo.log"
grep -q "The bucket is private: the uploader in the VPC may write" "${TMPDIR:-/tmp}/privbucket-demo.log"
echo "demo: ok"
step ""

echo
echo "==> where the time went"
printf '%s' "$times"
printf '%6ds  in all\n' "$SECONDS"
if [ -s "$test_times" ]; then
  echo "the slowest integration tests (seconds each held its emulator; they run side by side):"
  # awk, not head: head would stop reading after 12 lines, and sort, still writing, would die
  # of SIGPIPE, which pipefail makes the suite's exit status.
  sort -rn "$test_times" | awk 'NR <= 12 { print "  " $0 }'
  echo "by file (the sum of its tests' seconds):"
  awk '{ split($2, p, "::"); t[p[1]] += $1; if (!seen[$2]++) n[p[1]]++ }
       END { for (m in t) printf "  %7.1fs  %3d tests  %s\n", t[m], n[m], m }' "$test_times" |
    sort -rn
  rm -f "$test_times"
fi
