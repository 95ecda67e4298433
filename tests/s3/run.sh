#!/usr/bin/env bash
# Runs boto3 and the aws CLI (both from PyPI) against a real `atrest serve` on loopback
# with its generated CA. Usage: tests/s3/run.sh PATH_TO_ATREST_BINARY
set -euo pipefail
bin=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/atrest-s3.XXXXXX)
venv=${ATREST_S3_VENV:-$work/venv}
if [ ! -x "$venv/bin/aws" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "boto3==1.44.8" "awscli==1.46.3"
fi
port=$(( 20000 + RANDOM % 20000 ))
s3port=$(( port + 1000 ))
# A 1 s key cache, so a revocation shows within seconds.
"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --key-cache-ttl 1 --vault-grace 0 \
  >"$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 50); do
  [ -s "$work/data/admin.token" ] && grep -q "S3 endpoint" "$work/serve.log" && break
  sleep 0.2
done
export PATH="$venv/bin:$PATH"
if ! "$venv/bin/python" "$here/e2e.py" "$bin" "$work" "$port" "$s3port"; then
  echo "--- server log (last 40 lines) ---" >&2
  tail -n 40 "$work/serve.log" >&2
  exit 1
fi
