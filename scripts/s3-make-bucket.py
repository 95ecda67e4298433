"""Creates an S3 bucket with one SigV4-signed PUT, retrying while the server starts.

Usage: s3-make-bucket.py ENDPOINT BUCKET [CA_PEM]   (credentials: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY). Standard library only, so a bare venv runs it. An existing bucket
(409) counts as made. Used by .ci/s3-throwaway.sh and scripts/bench-s3.sh.
"""
import datetime
import hashlib
import hmac
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

endpoint, bucket = sys.argv[1].rstrip("/"), sys.argv[2]
ctx = ssl.create_default_context(cafile=sys.argv[3]) if len(sys.argv) > 3 else None
ak, sk, region = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], "us-east-1"
host = urllib.parse.urlparse(endpoint).netloc


def sign(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


err = ""
for attempt in range(50):
    now = datetime.datetime.now(datetime.timezone.utc)
    amz, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    ph = hashlib.sha256(b"").hexdigest()
    canon = (f"PUT\n/{bucket}\n\nhost:{host}\nx-amz-content-sha256:{ph}\nx-amz-date:{amz}\n\n"
             f"host;x-amz-content-sha256;x-amz-date\n{ph}")
    scope = f"{day}/{region}/s3/aws4_request"
    sts = f"AWS4-HMAC-SHA256\n{amz}\n{scope}\n{hashlib.sha256(canon.encode()).hexdigest()}"
    k = sign(sign(sign(sign(("AWS4" + sk).encode(), day), region), "s3"), "aws4_request")
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT", headers={
        "x-amz-date": amz, "x-amz-content-sha256": ph,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, "
                         f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={sig}"})
    try:
        urllib.request.urlopen(req, timeout=5, context=ctx)
        sys.exit(0)
    except urllib.error.HTTPError as e:
        if e.code == 409:
            sys.exit(0)
        err = f"{e.code} {e.read()[:200]}"
    except Exception as e:  # the server may not listen yet
        err = str(e)
    time.sleep(0.2)
print("could not create the bucket:", err)
sys.exit(1)
