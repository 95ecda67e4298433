"""The official Azure SDK (azure-keyvault-secrets) against a running atrest: every operation
of SecretClient. Prints one line per check and 'sdk secrets: N passed, M failed'.
Usage: secrets.py URL TOKEN_FILE CA_PEM"""
import re
import sys
import time

import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError, ResourceExistsError,
                                   ResourceNotFoundError)
from azure.keyvault.secrets import SecretClient

url, token, ca = sys.argv[1], open(sys.argv[2]).read().strip(), sys.argv[3]
passed = failed = 0


def check(name, cond):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name}")


def refused(name, status, f, text=None):
    """`f()` must fail with HTTP `status` (and `text` in the message, if given)."""
    try:
        f()
        check(name, False)
    except HttpResponseError as err:
        ok = err.status_code == status and (text is None or text in str(err))
        if not ok:
            print(f"     got {err.status_code}: {err}")
        check(name, ok)


class Cred:
    def __init__(self, t):
        self.t = t

    def get_token(self, *scopes, **kw):
        return AccessToken(self.t, int(time.time()) + 3600)


opts = dict(verify_challenge_resource=False, connection_verify=ca)
sc = SecretClient(url, Cred(token), **opts)
adm = {"Authorization": f"Bearer {token}"}

# --- set and get ---------------------------------------------------------------------
s1 = sc.set_secret("db-password", "hunter2", content_type="text/plain", tags={"app": "billing"})
check("set returns a versioned id at the vault's origin (with its port)",
      s1.id == f"{url}/secrets/db-password/{s1.properties.version}" and re.fullmatch("[0-9a-f]{32}", s1.properties.version))
check("set returns the value", s1.value == "hunter2")
g = sc.get_secret("db-password")
check("get latest: value, content type, tags", g.value == "hunter2" and g.properties.content_type == "text/plain"
      and g.properties.tags == {"app": "billing"})
check("recovery level and days", g.properties.recovery_level == "Recoverable+Purgeable" and g.properties.recoverable_days == 90)
s2 = sc.set_secret("db-password", "correct horse battery staple")
check("every set is a new version", s2.properties.version != s1.properties.version)
check("a new version inherits no tags or content type", not s2.properties.tags and s2.properties.content_type is None)
check("get latest after a second set", sc.get_secret("db-password").value == "correct horse battery staple")
check("get an older version by id", sc.get_secret("db-password", s1.properties.version).value == "hunter2")
refused("an unknown version is 404", 404, lambda: sc.get_secret("db-password", "0" * 32))
try:
    sc.get_secret("no-such-secret")
    check("an unknown secret is ResourceNotFoundError", False)
except ResourceNotFoundError as err:
    check("an unknown secret is ResourceNotFoundError", "SecretNotFound" in str(err))

# --- values: unicode, empty, whitespace, the size limit ------------------------------
for name, value in [("unicode", "pässwörd ✓ 密码 🔑"), ("empty", ""), ("blanks", "  line1\r\nline2\n\t ")]:
    sc.set_secret(f"v-{name}", value)
    check(f"{name} value round-trips byte for byte", sc.get_secret(f"v-{name}").value == value)
big = "x" * 25_600
check("a 25,600-byte value is accepted", sc.set_secret("v-big", big).value == big and sc.get_secret("v-big").value == big)
refused("a 25,601-byte value is refused (400)", 400, lambda: sc.set_secret("v-too-big", big + "x"))
refused("... and created nothing", 404, lambda: sc.get_secret("v-too-big"))
check("a multi-byte value is measured in bytes", sc.set_secret("v-mb", "é" * 12_800).value == "é" * 12_800)
refused("16 tags are refused (400)", 400, lambda: sc.set_secret("v-tags", "x", tags={f"t{i}": "v" for i in range(16)}))
check("15 tags are accepted", len(sc.set_secret("v-tags", "x", tags={f"t{i}": "v" for i in range(15)}).properties.tags) == 15)
refused("an invalid name is 400", 400, lambda: sc.set_secret("bad_name", "x"))

# --- update: attributes, never the value; a disabled version -------------------------
u = sc.update_secret_properties("db-password", content_type="application/x-password", tags={"rotated": "yes"})
check("update changes content type and tags", u.content_type == "application/x-password" and u.tags == {"rotated": "yes"})
check("update makes no new version", u.version == s2.properties.version)
check("update keeps the value", sc.get_secret("db-password").value == "correct horse battery staple")
sc.update_secret_properties("db-password", s1.properties.version, enabled=False)
refused("a disabled version is 403 SecretDisabled", 403, lambda: sc.get_secret("db-password", s1.properties.version),
        "SecretDisabled")
listed = {p.version: p.enabled for p in sc.list_properties_of_secret_versions("db-password")}
check("a disabled version is still listed (enabled false)", listed.get(s1.properties.version) is False)
sc.update_secret_properties("db-password", s1.properties.version, enabled=True)
check("enabling it again releases the value", sc.get_secret("db-password", s1.properties.version).value == "hunter2")
exp = int(time.time()) - 60
sc.update_secret_properties("v-unicode", expires_on=__import__("datetime").datetime.fromtimestamp(exp, __import__("datetime").timezone.utc))
check("an expired secret is still returned (exp is informational)", sc.get_secret("v-unicode").value.startswith("pässwörd"))

# --- listing and paging ---------------------------------------------------------------
for i in range(27):
    sc.set_secret(f"page-{i:02d}", f"value-{i}")
props = list(sc.list_properties_of_secrets())
names = [p.name for p in props]
check("paging over more than 25 secrets", len([n for n in names if n.startswith("page-")]) == 27 and len(set(names)) == len(names))
check("list items carry versionless ids and no values",
      all(p.id == f"{url}/secrets/{p.name}" and p.version is None for p in props))
for _ in range(26):
    sc.set_secret("many", "v")
check("paging over 26 versions", len(list(sc.list_properties_of_secret_versions("many"))) == 26)
check("version items carry versioned ids",
      all(p.version and p.id.endswith(p.version) for p in sc.list_properties_of_secret_versions("db-password")))
r = requests.get(f"{url}/secrets?api-version=7.5&maxresults=2", headers=adm, verify=ca).json()
check("nextLink is absolute on the vault origin, without '+'",
      r["nextLink"].startswith(f"{url}/secrets?") and "+" not in r["nextLink"] and "value" not in r["value"][0])

# --- soft delete, recover, purge ------------------------------------------------------
d = sc.begin_delete_secret("db-password").result()
check("delete poller returns the deleted secret", d.name == "db-password" and d.recovery_id == f"{url}/deletedsecrets/db-password"
      and d.scheduled_purge_date is not None and d.deleted_date is not None)
refused("a deleted secret is gone from get (404)", 404, lambda: sc.get_secret("db-password"))
check("get_deleted_secret", sc.get_deleted_secret("db-password").name == "db-password")
check("list_deleted_secrets", any(x.name == "db-password" for x in sc.list_deleted_secrets()))
check("a deleted secret is not listed", all(p.name != "db-password" for p in sc.list_properties_of_secrets()))
try:
    sc.set_secret("db-password", "again")
    check("set on a soft-deleted name is 409 (ResourceExistsError)", False)
except ResourceExistsError:
    check("set on a soft-deleted name is 409 (ResourceExistsError)", True)
rec = sc.begin_recover_deleted_secret("db-password").result()
check("recover poller", rec.name == "db-password")
check("recover brings back every version and its value",
      sc.get_secret("db-password", s1.properties.version).value == "hunter2"
      and len(list(sc.list_properties_of_secret_versions("db-password"))) == 2)
refused("recover of a live secret is 404", 404, lambda: sc.begin_recover_deleted_secret("db-password").result())
sc.begin_delete_secret("page-00").wait()
sc.purge_deleted_secret("page-00")
check("purge", all(x.name != "page-00" for x in sc.list_deleted_secrets()))
check("a purged name is free again", sc.set_secret("page-00", "new").value == "new")
refused("purge of a live secret is 404", 404, lambda: sc.purge_deleted_secret("page-01"))

# --- backup and restore -----------------------------------------------------------------
blob = sc.backup_secret("db-password")
check("a backup does not contain the value", b"hunter2" not in blob and b"correct horse" not in blob)
refused("restore while the name exists is 409", 409, lambda: sc.restore_secret_backup(blob))
sc.begin_delete_secret("db-password").wait()
sc.purge_deleted_secret("db-password")
back = sc.restore_secret_backup(blob)
check("restore after purge keeps the version ids", back.name == "db-password"
      and {p.version for p in sc.list_properties_of_secret_versions("db-password")} == {s1.properties.version, s2.properties.version})
check("restore brings back values, tags and content type",
      sc.get_secret("db-password", s1.properties.version).value == "hunter2"
      and sc.get_secret("db-password").properties.tags == {"rotated": "yes"})
refused("a garbage backup is 400", 400, lambda: sc.restore_secret_backup(b"not a backup at all"))

# --- purge protection (a second vault with it on) ---------------------------------------
v = requests.post(f"{url}/admin/tenants/default/vaults", json={"name": "sdk-pp", "purge_protection": True},
                  headers=adm, verify=ca)
v.raise_for_status()
pp_url = v.json()["url"].rstrip("/")
requests.put(f"{url}/admin/vaults/sdk-pp/policies/admin", json={"secret_permissions": ["all"]}, headers=adm,
             verify=ca).raise_for_status()
ppc = SecretClient(pp_url, Cred(token), **opts)
for _ in range(50):  # the vault's own listener starts within a moment
    try:
        ppc.set_secret("guarded", "v")
        break
    except Exception:
        time.sleep(0.2)
ppc.begin_delete_secret("guarded").wait()
check("recovery level under purge protection", ppc.get_deleted_secret("guarded").properties.recovery_level == "Recoverable")
refused("purge under purge protection is 403", 403, lambda: ppc.purge_deleted_secret("guarded"))
check("... and the deleted secret stays", ppc.get_deleted_secret("guarded").name == "guarded")

# --- permissions: secret permissions are a list of their own ----------------------------
def principal(name, body):
    requests.post(f"{url}/admin/tenants/default/principals", json={"name": name}, headers=adm, verify=ca).raise_for_status()
    t = requests.post(f"{url}/admin/tenants/default/principals/{name}/tokens", json={}, headers=adm, verify=ca).json()["token"]
    requests.put(f"{url}/admin/vaults/default/policies/{name}", json=body, headers=adm, verify=ca).raise_for_status()
    return SecretClient(url, Cred(t), **opts)


reader = principal("sdk-secret-reader", {"permissions": [], "secret_permissions": ["get", "list"]})
check("a get/list principal can get", reader.get_secret("db-password").value == "correct horse battery staple")
check("... and list", any(p.name == "db-password" for p in reader.list_properties_of_secrets()))
refused("a get/list principal cannot set (403)", 403, lambda: reader.set_secret("db-password", "x"))
refused("... nor update (403)", 403, lambda: reader.update_secret_properties("db-password", enabled=False))
refused("... nor delete (403)", 403, lambda: reader.begin_delete_secret("db-password").result())
refused("... nor purge (403)", 403, lambda: reader.purge_deleted_secret("guarded"))
refused("... nor back up (403)", 403, lambda: reader.backup_secret("db-password"))
refused("... nor restore (403)", 403, lambda: reader.restore_secret_backup(blob))
keys_only = principal("sdk-keys-only", {"permissions": ["all"]})
refused("every key permission grants no secret permission (403)", 403, lambda: keys_only.get_secret("db-password"))
requests.delete(f"{url}/admin/vaults/default/policies/sdk-secret-reader", headers=adm, verify=ca).raise_for_status()
refused("removing the policy takes effect on the next request", 403, lambda: reader.get_secret("db-password"))
try:
    SecretClient(url, Cred("atr1.0000000000000000.AAAA"), **opts).get_secret("db-password")
    check("a bad token is refused with 401", False)
except ClientAuthenticationError:
    check("a bad token is refused with 401", True)

print(f"sdk secrets: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
