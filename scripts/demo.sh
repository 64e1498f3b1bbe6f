#!/usr/bin/env bash
# The main job on a local AWS emulator: build privbucket, start moto on 127.0.0.1, run
# `up`, `status`, `verify` (the proof that the bucket is private) and `down` against it so
# you see the real output, then stop the emulator.
# Nothing here can reach a real AWS account: the credentials are fake, the endpoint is local,
# and the profile and config files of your environment are ignored.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
port=${PRIVBUCKET_EMULATOR_PORT:-5000}

echo "==> building privbucket"
cargo build --quiet
bin="${CARGO_TARGET_DIR:-$root/target}/debug/privbucket"

scripts/emulator.sh start "$port"
trap 'scripts/emulator.sh stop' EXIT
scripts/emulator.sh reset

unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export AWS_ENDPOINT_URL="$(cat .emulator/url)"
work=$(mktemp -d)
export PRIVBUCKET_STATE="$work/privbucket.state.json"

echo
echo "==> privbucket up"
"$bin" up
echo
echo "==> privbucket status"
"$bin" status
echo
echo "==> privbucket verify   (the proof that the bucket is private, from the live configuration)"
"$bin" verify
echo
echo "==> the state file ($PRIVBUCKET_STATE)"
cat "$PRIVBUCKET_STATE"
echo
echo "==> privbucket down --yes   (on a terminal, without --yes, down shows what it will delete and asks)"
"$bin" down --yes
echo
echo "==> privbucket status (after down)"
"$bin" status
rm -rf "$work"
