"""Runs the selection (encryption.txt, core.txt) with pytest and prints the counts.

Usage: selection.py SELECTION_DIR PYTEST WORK_DIR (from the suite's folder).
"""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

here, pytest, work = sys.argv[1:4]


def names(f):
    path = os.path.join(here, f)
    if not os.path.exists(path):
        return []
    return [l.split("#")[0].strip() for l in open(path) if l.split("#")[0].strip()]


enc, core, known = names("encryption.txt"), names("core.txt"), set(names("known-failures.txt"))
report = os.path.join(work, "junit.xml")
ids = [f"s3tests/functional/test_s3.py::{t}" for t in enc + core]
subprocess.run([pytest, "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *ids],
               stdout=subprocess.DEVNULL if os.environ.get("ATREST_S3TESTS_QUIET") else None)
passed = set()
failed = {}
times = []
for case in ET.parse(report).getroot().iter("testcase"):
    times.append((float(case.get("time") or 0), case.get("name")))
    # A parametrized test passes when every one of its cases does.
    name = case.get("name").split("[")[0]
    problem = case.find("failure") if case.find("failure") is not None else case.find("error")
    if problem is not None:
        failed[name] = (problem.get("message") or "").splitlines()[0][:160] if problem.get("message") else ""
    elif case.find("skipped") is None:
        passed.add(name)
passed -= set(failed)


def count(sel):
    ok = [t for t in sel if t in passed]
    bad = [t for t in sel if t not in passed]
    return ok, bad


times.sort(reverse=True)
print("slowest: " + ", ".join(f"{n} {t:.1f} s" for t, n in times[:8]) + f"; all {sum(t for t, _ in times):.0f} s")
enc_ok, enc_bad = count(enc)
core_ok, core_bad = count(core)
print(f"s3-tests encryption: {len(enc_ok)}/{len(enc)} passed")
print(f"s3-tests core: {len(core_ok)}/{len(core)} passed ({100 * len(core_ok) // max(len(core), 1)} %)")
for t in enc_bad + core_bad:
    print(f"  not passed: {t}{' (known)' if t in known else ''}: {failed.get(t, 'not run')}")
unknown_enc = [t for t in enc_bad if t not in known]
if unknown_enc or len(core_ok) * 10 < len(core) * 9:
    sys.exit(1)
