#!/usr/bin/env bash
# Runs the selected ceph/s3-tests (../shared/third_party/s3-tests, unchanged) against a
# real `atrest serve`. Usage: tests/s3-tests/run.sh PATH_TO_ATREST_BINARY [SUITE_DIR]
# The selection is in this folder: encryption.txt (every test marked encryption, sse_s3
# or bucket_encryption, but those also marked bucket_policy or fails_on_aws) and core.txt
# (buckets, objects, multipart, listings, ranges, conditionals, copy, checksums, SigV4);
# excluded.md says what was left out and why. Prints the counts; fails when an encryption
# test fails or under 90 % of the core list passes, unless a failure is listed in
# known-failures.txt (each with its reason in docs/s3.md).
set -euo pipefail
bin=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
suite=${2:-$here/../../../shared/third_party/s3-tests}
if [ ! -f "$suite/s3tests/functional/test_s3.py" ]; then
  echo "SKIPPED: the ceph/s3-tests suite is not at $suite (pass its folder as the second argument)" >&2
  exit 0
fi
suite=$(realpath "$suite")
# The data directory on tmpfs when there is one: the suite writes thousands of small
# objects, and fsync, not atrest, would set the pace.
base=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm
work=$(mktemp -d "$base/atrest-s3t.XXXXXX")
venv=${ATREST_S3TESTS_VENV:-$work/venv}
if [ ! -x "$venv/bin/pytest" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$suite/requirements.txt"
fi
port=$(( 20000 + RANDOM % 20000 ))
s3port=$(( port + 1000 ))
"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --s3-listen "127.0.0.1:$s3port" \
  --rate-limit 0 >"$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 50); do
  [ -s "$work/data/admin.token" ] && grep -q "S3 endpoint" "$work/serve.log" && break
  sleep 0.2
done
"$venv/bin/python" "$here/configure.py" "$bin" "$work" "$port" "$s3port" >"$work/s3tests.conf"
cd "$suite"
status=0
ca="$work/data/tls/ca.pem"
S3TEST_CONF="$work/s3tests.conf" SSL_CERT_FILE="$ca" REQUESTS_CA_BUNDLE="$ca" AWS_CA_BUNDLE="$ca" \
  "$venv/bin/python" "$here/selection.py" "$here" "$venv/bin/pytest" "$work" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- server log (last 30 lines) ---" >&2
  tail -n 30 "$work/serve.log" >&2
fi
exit "$status"
