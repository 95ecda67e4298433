"""Writes the s3-tests selection from the suite's source: encryption.txt, core.txt and
excluded.md (every test of test_s3.py not selected, with the rule that left it out).

Usage: python3 tests/s3-tests/choose.py [SUITE_DIR]   (default ../shared/third_party/s3-tests)

Rules, in order (the first that matches decides):
1. encryption: marked encryption, sse_s3 or bucket_encryption, and not also marked
   bucket_policy or fails_on_aws — but for the few in ENCRYPTION_LEFT_OUT, whose
   expectations issue 13 or AWS's behaviour contradict, each with its reason.
2. out of scope (issue 13): fails_on_aws; ACLs and bucket policies (and what depends on
   them: anonymous and public access, object ownership, public access blocks); IAM/STS;
   logging; lifecycle; website; object lock; versioning; select; notifications;
   virtual-host style; SigV2; UploadPartCopy — by mark, by name, or because the test
   calls such an API (set-up included).
3. core: buckets, objects, multipart, listings v1/v2, ranges, conditionals, copy,
   checksums, SigV4 — every remaining test in those areas.
4. not selected: features outside both lists (POST object uploads, tagging, CORS,
   storage classes and restore, torrents, append, RGW-only statistics and headers).
"""
import os
import re
import sys

here = os.path.dirname(os.path.abspath(__file__))
suite = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "..", "shared", "third_party", "s3-tests")
src = open(os.path.join(suite, "s3tests", "functional", "test_s3.py")).read()

tests = []
marks = []
bodies = {}
current = None
for line in src.split("\n"):
    if current and not line.startswith("def "):
        bodies[current] += line + "\n"
    m = re.match(r"@pytest\.mark\.(\w+)", line)
    if m:
        marks.append(m.group(1))
        continue
    m = re.match(r"def (test_\w+)\(", line)
    if m:
        tests.append((m.group(1), set(marks)))
        current = m.group(1)
        bodies[current] = ""
        marks = []
        continue
    if line.startswith("def "):
        current = None
    if line.startswith("@") or not line.strip():
        continue
    marks = []

SCOPE_MARKS = {
    "fails_on_aws": "fails on AWS",
    "bucket_policy": "bucket policies",
    "iam_account": "IAM", "iam_cross_account": "IAM", "iam_role": "IAM", "iam_tenant": "IAM", "iam_user": "IAM",
    "user_policy": "IAM", "role_policy": "IAM", "group": "IAM", "group_policy": "IAM", "session_policy": "IAM",
    "abac_test": "IAM", "test_of_sts": "STS", "webidentity_test": "STS",
    "token_claims_trust_policy_test": "STS", "token_principal_tag_role_policy_test": "STS",
    "token_request_tag_trust_policy_test": "STS", "token_resource_tags_test": "STS", "token_role_tags_test": "STS",
    "token_tag_keys_test": "STS",
    "bucket_logging": "logging", "bucket_logging_cleanup": "logging", "fails_without_logging_rollover": "logging",
    "target_by_bucket": "logging",
    "lifecycle": "lifecycle", "lifecycle_expiration": "lifecycle", "lifecycle_transition": "lifecycle",
    "cloud_transition": "lifecycle", "cloud_restore": "lifecycle",
    "s3website": "website", "s3website_routing_rules": "website", "s3website_redirect_location": "website",
    "object_lock": "object lock",
    "versioning": "versioning", "delete_marker": "versioning",
    "s3select": "select",
    "sns": "notifications",
    "fails_with_subdomain": "virtual-host style",
    "auth_aws2": "SigV2",
    "object_ownership": "ACLs (object ownership)",
}
SCOPE_NAMES = [
    ("acl", "ACLs"), ("policy", "bucket policies"), ("block_public", "ACLs (public access block)"),
    ("public", "ACLs (public access)"), ("anonymous", "ACLs (anonymous access)"), ("_anon_", "ACLs (anonymous access)"),
    ("raw_", "ACLs (anonymous raw requests need public-read)"), ("_private", "ACLs (canned private)"),
    ("ownership", "ACLs (object ownership)"), ("lifecycle", "lifecycle"), ("website", "website"),
    ("object_lock", "object lock"), ("retention", "object lock"), ("legal_hold", "object lock"),
    ("versioning", "versioning"), ("version", "versioning"), ("delete_marker", "versioning"),
    ("logging", "logging"), ("notification", "notifications"), ("select", "select"),
    ("multipart_copy", "UploadPartCopy"), ("upload_part_copy", "UploadPartCopy"), ("copy_part", "UploadPartCopy"),
]
# Calls that make a test depend on an out-of-scope feature, whatever its name.
SCOPE_CALLS = [
    ("_acl(", "ACLs"), ("acl_", "ACLs"), ("ACL=", "ACLs"), ("get_unauthenticated_client", "ACLs (anonymous access)"),
    ("get_anon_client", "ACLs (anonymous access)"), ("put_bucket_policy", "bucket policies"),
    ("put_bucket_versioning", "versioning"), ("check_configure_versioning", "versioning"),
    ("VersionId", "versioning"),
]
OTHER_CALLS = [("put_object_tagging", "tagging"), ("get_object_tagging", "tagging"), ("Tagging=", "tagging")]
OTHER_NAMES = [("_tags", "tagging"),
    ("post_object", "POST object uploads"), ("tagging", "tagging"), ("cors", "CORS"),
    ("storage_class", "storage classes"), ("restore", "storage classes (restore)"), ("torrent", "torrents"),
    ("append", "append"), ("account_usage", "RGW statistics"), ("head_bucket_usage", "RGW statistics"),
    ("bucket_head_extended", "RGW statistics"), ("rgw", "RGW-only behaviour"),
]

# Encryption tests that expect what issue 13 (or AWS today) rules out.
SIGV2_POST = "signs a POST policy with Signature Version 2: issue 13 asks SigV4 only"
SSE_C_400 = ("expects 400 for a read with another SSE-C key: issue 13 asks 403 (AccessDenied), "
             "and a wrong key is an authorization failure")
NO_CONFIG = ("expects a new bucket (or one whose configuration was deleted) to have no encryption configuration "
             "(ServerSideEncryptionConfigurationNotFoundError): on AWS every bucket has SSE-S3 since January "
             "2023 and GetBucketEncryption answers it, as issue 13 asks (a new bucket is reported as AES256)")
POLICY = "sets a bucket policy (out of scope), though not marked bucket_policy"
ENCRYPTION_LEFT_OUT = {
    "test_encryption_sse_c_post_object_authenticated_request": SIGV2_POST,
    "test_sse_kms_post_object_authenticated_request": SIGV2_POST,
    "test_sse_s3_default_post_object_authenticated_request": SIGV2_POST,
    "test_sse_kms_default_post_object_authenticated_request": SIGV2_POST,
    "test_encryption_sse_c_other_key": SSE_C_400,
    "test_encryption_sse_c_multipart_bad_download": SSE_C_400,
    "test_get_bucket_encryption_s3": NO_CONFIG,
    "test_get_bucket_encryption_kms": NO_CONFIG,
    "test_delete_bucket_encryption_s3": NO_CONFIG,
    "test_delete_bucket_encryption_kms": NO_CONFIG,
    "test_encryption_sse_c_enforced_with_bucket_policy": POLICY,
    "test_encryption_sse_c_deny_algo_with_bucket_policy": POLICY,
}

encryption, core, excluded = [], [], []
for name, mk in tests:
    if name in ENCRYPTION_LEFT_OUT:
        excluded.append((name, f"encryption, left out: {ENCRYPTION_LEFT_OUT[name]}"))
        continue
    if mk & {"encryption", "sse_s3", "bucket_encryption"} and not mk & {"bucket_policy", "fails_on_aws"}:
        encryption.append(name)
        continue
    why = next((r for m, r in SCOPE_MARKS.items() if m in mk), None)
    why = why or next((r for p, r in SCOPE_NAMES if p in name), None)
    why = why or next((f"{r} (the test calls it)" for c, r in SCOPE_CALLS if c in bodies.get(name, "")), None)
    if why:
        excluded.append((name, f"out of scope: {why}"))
        continue
    other = next((r for p, r in OTHER_NAMES if p in name), None)
    other = other or next((f"{r} (the test calls it)" for c, r in OTHER_CALLS if c in bodies.get(name, "")), None)
    if other:
        excluded.append((name, f"not selected: {other}"))
        continue
    core.append(name)

open(os.path.join(here, "encryption.txt"), "w").write("\n".join(encryption) + "\n")
open(os.path.join(here, "core.txt"), "w").write("\n".join(core) + "\n")
with open(os.path.join(here, "excluded.md"), "w") as f:
    f.write("# s3-tests left out of the selection\n\n")
    f.write("Written by `choose.py` from the suite's `test_s3.py` (every test there is in `encryption.txt`, ")
    f.write("`core.txt` or below). \"Out of scope\" follows issue 13's list; \"not selected\" are features in ")
    f.write("neither list.\n\n| test | why |\n|---|---|\n")
    for name, why in excluded:
        f.write(f"| `{name}` | {why} |\n")
print(f"{len(tests)} tests: {len(encryption)} encryption, {len(core)} core, {len(excluded)} left out")
