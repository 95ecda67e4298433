#!/usr/bin/env bash
# Runs the official Azure SDK (azure-keyvault-keys, from PyPI) against a real `atrest serve`
# on loopback with its generated CA. Usage: tests/sdk/run.sh PATH_TO_ATREST_BINARY
# With ATREST_SDK_DATABASE=postgres://… the server keeps its vault in that (fresh) database.
set -euo pipefail
bin=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/atrest-sdk.XXXXXX)
venv=${ATREST_SDK_VENV:-$work/venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "azure-keyvault-keys==4.11.3" "azure-core==1.41.0"
fi
port=$(( 20000 + RANDOM % 20000 ))
db_args=()
if [ -n "${ATREST_SDK_DATABASE:-}" ]; then db_args=(--database "$ATREST_SDK_DATABASE"); fi
"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" "${db_args[@]}" >"$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 50); do
  [ -s "$work/data/admin.token" ] && grep -q "serving" "$work/serve.log" && break
  sleep 0.2
done
"$venv/bin/python" "$here/smoke.py" "https://127.0.0.1:$port" "$work/data/admin.token" "$work/data/tls/ca.pem"
