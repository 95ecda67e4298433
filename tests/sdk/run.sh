#!/usr/bin/env bash
# Runs the official Azure SDKs against a real `atrest serve` on loopback with its generated
# CA: azure-keyvault-keys and azure-keyvault-secrets (Python, from PyPI), then
# @azure/keyvault-secrets (JavaScript, from npm). Usage: tests/sdk/run.sh PATH_TO_ATREST_BINARY
# With ATREST_SDK_DATABASE=postgres://… the server keeps its vault in that (fresh) database.
# ATREST_SDK_VENV / ATREST_SDK_NODE: where to keep the Python venv and the npm packages.
set -euo pipefail
bin=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/atrest-sdk.XXXXXX)
venv=${ATREST_SDK_VENV:-$work/venv}
node_dir=${ATREST_SDK_NODE:-$work/node}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import azure.keyvault.keys, azure.keyvault.secrets, requests" 2>/dev/null; then
  "$venv/bin/pip" install -q "azure-keyvault-keys==4.11.3" "azure-keyvault-secrets==4.12.0" "azure-core==1.41.0" requests
fi
if [ ! -d "$node_dir/node_modules/@azure/keyvault-secrets" ]; then
  mkdir -p "$node_dir"
  (cd "$node_dir" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund "@azure/keyvault-secrets@4.11.2")
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
url="https://127.0.0.1:$port"
"$venv/bin/python" "$here/smoke.py" "$url" "$work/data/admin.token" "$work/data/tls/ca.pem"
"$venv/bin/python" "$here/secrets.py" "$url" "$work/data/admin.token" "$work/data/tls/ca.pem"
NODE_PATH="$node_dir/node_modules" NODE_EXTRA_CA_CERTS="$work/data/tls/ca.pem" \
  node "$here/secrets.cjs" "$url" "$work/data/admin.token"
