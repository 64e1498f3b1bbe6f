#!/usr/bin/env bash
# Local AWS emulator (moto server) for privbucket's demo and tests.
#
#   scripts/emulator.sh install        create .venv with the pinned moto server, and
#                                      .venv-ministack with the pinned ministack (idempotent)
#   scripts/emulator.sh start [PORT]   install if needed, start on 127.0.0.1:PORT (default 5000)
#   scripts/emulator.sh reset          forget every resource (a fresh, empty AWS)
#   scripts/emulator.sh stop           stop the server started by `start` (by its pid)
#
# The server is started with the AWS managed IAM policies loaded and Lambda set to run without
# Docker (Invoke echoes the event; handlers do not run), as ARCHITECTURE.md says ("The emulators").
#
# ministack is the second emulator, for the tests of bucket-policy enforcement only (it
# evaluates bucket policies under AUTH=true, and runs Python handlers with the boto3 installed
# beside it); the tests start it themselves, on 127.0.0.1.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
run="$root/.emulator"
MOTO_VERSION=5.2.5
ministack_venv="$root/.venv-ministack"
MINISTACK_VERSION=1.5.33
# The boto3 that matches the botocore ministack pins: the handlers it runs import boto3.
MINISTACK_BOTO3=1.43.106

install_ministack() {
  if [ -x "$ministack_venv/bin/ministack" ] && "$ministack_venv/bin/python" -c "
import importlib.metadata as m, sys
sys.exit(m.version('ministack') != '$MINISTACK_VERSION' or m.version('boto3') != '$MINISTACK_BOTO3')" 2>/dev/null; then
    return 0
  fi
  echo "emulator: installing ministack==$MINISTACK_VERSION into $ministack_venv" >&2
  python3 -m venv "$ministack_venv"
  "$ministack_venv/bin/pip" install --quiet --no-compile --disable-pip-version-check \
    "ministack==$MINISTACK_VERSION" "boto3==$MINISTACK_BOTO3"
}

install() {
  install_moto
  install_ministack
}

install_moto() {
  if [ -x "$venv/bin/moto_server" ] && "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
    return 0
  fi
  echo "emulator: installing moto[server]==$MOTO_VERSION into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --no-compile --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

# POST to the emulator's own control API (Python's standard library: no curl needed).
post() {
  "$venv/bin/python" - "$1" "$2" <<'PY'
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method="POST",
                             headers={"Content-Type": "application/json"})
urllib.request.urlopen(req, timeout=5).read()
PY
}

configure() {
  # Lambda without Docker: Invoke echoes the event; the handler does not run.
  post "$1/moto-api/config" '{"lambda":{"use_docker":false}}'
}

start() {
  local port=${1:-${PRIVBUCKET_EMULATOR_PORT:-5000}}
  install_moto
  mkdir -p "$run"
  if [ -f "$run/pid" ] && kill -0 "$(cat "$run/pid")" 2>/dev/null; then
    echo "emulator: already running (pid $(cat "$run/pid")) on $(cat "$run/url")" >&2
    return 0
  fi
  MOTO_IAM_LOAD_MANAGED_POLICIES=true nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" \
    >"$run/server.log" 2>&1 &
  echo $! >"$run/pid"
  local url="http://127.0.0.1:$port"
  echo "$url" >"$run/url"
  for _ in $(seq 1 100); do
    if configure "$url" 2>/dev/null; then
      echo "emulator: moto $MOTO_VERSION on $url (pid $(cat "$run/pid"))" >&2
      return 0
    fi
    if ! kill -0 "$(cat "$run/pid")" 2>/dev/null; then
      echo "emulator: moto server exited; log follows" >&2
      cat "$run/server.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "emulator: moto server did not answer on $url within 10 s; log: $run/server.log" >&2
  return 1
}

reset() {
  local url
  url=$(cat "$run/url")
  post "$url/moto-api/reset" '{}'
  configure "$url"
}

stop() {
  if [ -f "$run/pid" ]; then
    local pid
    pid=$(cat "$run/pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$run/pid" "$run/url"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start "${2:-}" ;;
  reset) reset ;;
  stop) stop ;;
  *) echo "usage: $0 install|start [PORT]|reset|stop" >&2; exit 2 ;;
esac
