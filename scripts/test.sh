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

echo "==> emulator (moto server)"
scripts/emulator.sh install
export PRIVBUCKET_MOTO_SERVER="$root/.venv/bin/moto_server"

echo "==> Graphviz (dot, pinned), for the diagram tests"
# The diagram tests hand `privbucket diagram --format dot` to Graphviz's own `dot -Tsvg`. Debian
# bookworm's package, pinned as the emulator is; without it the tests fail, never skip.
GRAPHVIZ_VERSION=2.42.2-7+deb12u1
if ! dpkg-query -W -f='${Version}' graphviz 2>/dev/null | grep -qx "$GRAPHVIZ_VERSION"; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "graphviz=$GRAPHVIZ_VERSION" >/dev/null
  else
    echo "Graphviz $GRAPHVIZ_VERSION is missing: sudo apt-get install graphviz=$GRAPHVIZ_VERSION" >&2
    exit 1
  fi
fi
dot -V

echo "==> cargo fmt --check"
cargo fmt --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

echo "==> cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items --quiet

echo "==> handler unit test (lambda/test_uploader.py)"
python3 -m unittest discover -s lambda -p 'test_*.py' -v

echo "==> cargo test"
cargo test

echo "==> demo (scripts/demo.sh) as a smoke test"
PRIVBUCKET_EMULATOR_PORT=${PRIVBUCKET_DEMO_PORT:-5099} scripts/demo.sh >"${TMPDIR:-/tmp}/privbucket-demo.log" 2>&1 || {
  echo "scripts/demo.sh failed; its output:" >&2
  cat "${TMPDIR:-/tmp}/privbucket-demo.log" >&2
  exit 1
}
grep -q "Stack privbucket is gone" "${TMPDIR:-/tmp}/privbucket-demo.log"
echo "demo: ok"
