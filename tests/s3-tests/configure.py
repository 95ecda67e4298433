"""Creates the s3-tests users in a fresh atrest deployment and prints the suite's config.

main: a tenant admin of tenant s3t (creates buckets); alt: a tenant admin of tenant s3t2;
tenant: a tenant admin of tenant s3t3; the IAM sections (whose tests are not selected)
reuse main's key. kms_keyid and kms_keyid2 are the URIs of two RSA keys, testkey-1 and
testkey-2, in the vault kms of tenant s3t (purge protection on). main, a tenant admin,
names them in its puts: atrest grants each new bucket's identity their use.
"""
import json
import os
import subprocess
import sys

BIN, WORK, PORT, S3PORT = sys.argv[1:5]
ENV = dict(os.environ, ATREST_URL=f"https://127.0.0.1:{PORT}", ATREST_DATA_DIR=os.path.join(WORK, "data"))


def atrest(*args):
    out = subprocess.run([BIN, "--output", "json", *args], env=ENV, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"atrest {' '.join(args)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout) if out.stdout.strip() else {}


users = {}
for section, tenant in [("main", "s3t"), ("alt", "s3t2"), ("tenant", "s3t3")]:
    atrest("tenant", "create", tenant)
    atrest("principal", "create", section, "--tenant", tenant, "--kind", "user", "--role", "tenant-admin")
    key = atrest("s3-key", "issue", section, "--tenant", tenant)
    users[section] = (key["id"], key["secret"], tenant)
main_id, main_secret, _ = users["main"]
atrest("vault", "create", "kms", "--tenant", "s3t", "--purge-protection")
atrest("policy", "set", "kms", "main", "--permissions", "all")
main_token = atrest("token", "issue", "main", "--tenant", "s3t")
kms = []
for name in ["testkey-1", "testkey-2"]:
    kid = atrest("key", "create", name, "--vault", "kms", "--kty", "RSA", "--size", "2048", "--token", main_token["token"])["key"]["kid"]
    kms.append(kid.rsplit("/", 1)[0])
print(f"""[DEFAULT]
host = localhost
port = {S3PORT}
is_secure = True
ssl_verify = False

[fixtures]
bucket prefix = s3t-{{random}}-

[s3 main]
display_name = main
user_id = main
email = main@example.com
access_key = {main_id}
secret_key = {main_secret}
api_name = us-east-1
kms_keyid = {kms[0]}
kms_keyid2 = {kms[1]}

[s3 alt]
display_name = alt
user_id = alt
email = alt@example.com
access_key = {users["alt"][0]}
secret_key = {users["alt"][1]}

[s3 tenant]
display_name = tenant
user_id = tenant
email = tenant@example.com
access_key = {users["tenant"][0]}
secret_key = {users["tenant"][1]}
tenant = s3t3
""")
for section in ["iam", "iam root", "iam alt root"]:
    print(f"""[{section}]
display_name = {section}
user_id = {section.replace(' ', '-')}
email = {section.replace(' ', '-')}@example.com
access_key = {main_id}
secret_key = {main_secret}
""")
