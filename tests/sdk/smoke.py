"""The official Azure SDK (azure-keyvault-keys) against a running atrest: the compatibility
suite. Prints one line per check and 'sdk: N passed, M failed'."""
import hashlib
import sys
import time

from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm, SignatureAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

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


class Cred:
    def __init__(self, t):
        self.t = t

    def get_token(self, *scopes, **kw):
        return AccessToken(self.t, int(time.time()) + 3600)


opts = dict(verify_challenge_resource=False, connection_verify=ca)
kc = KeyClient(url, Cred(token), **opts)

ec_key = kc.create_ec_key("sdk-ec", curve="P-256")
check("create EC key returns a versioned kid", ec_key.id.startswith(f"{url}/keys/sdk-ec/") and len(ec_key.properties.version) == 32)
check("get latest", kc.get_key("sdk-ec").properties.version == ec_key.properties.version)

rsa_key = kc.create_rsa_key("sdk-rsa", size=2048)
cc = CryptographyClient(rsa_key, Cred(token), **opts)
digest = hashlib.sha256(b"hello").digest()
sig = cc.sign(SignatureAlgorithm.ps256, digest)
# Verify the server's signature locally with the published public key (standard PSS).
n = int.from_bytes(rsa_key.key.n, "big")
e = int.from_bytes(rsa_key.key.e, "big")
pub = rsa.RSAPublicNumbers(e, n).public_key()
try:
    pub.verify(sig.signature, digest, padding.PSS(padding.MGF1(hashes.SHA256()), 32), utils.Prehashed(hashes.SHA256()))
    check("PS256 server signature verifies locally", True)
except Exception:
    check("PS256 server signature verifies locally", False)
# Encrypt locally with the JWK, unwrap on the server.
wrapped = pub.encrypt(b"k" * 32, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
check("RSA-OAEP-256 unwrap on the server", cc.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped).key == b"k" * 32)

ec_cc = CryptographyClient(ec_key, Cred(token), **opts)
es = ec_cc.sign(SignatureAlgorithm.es256, digest)
r, s = int.from_bytes(es.signature[:32], "big"), int.from_bytes(es.signature[32:], "big")
ec_pub = ec.EllipticCurvePublicNumbers(int.from_bytes(ec_key.key.x, "big"), int.from_bytes(ec_key.key.y, "big"), ec.SECP256R1()).public_key()
try:
    ec_pub.verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    check("ES256 server signature (raw r||s) verifies locally", True)
except Exception:
    check("ES256 server signature (raw r||s) verifies locally", False)

for i in range(27):
    kc.create_oct_key(f"page-{i:02d}")
names = [p.name for p in kc.list_properties_of_keys()]
check("paging over more than 25 keys", len(names) == 29 and len(set(names)) == 29)
check("list versions", len(list(kc.list_properties_of_key_versions("sdk-rsa"))) == 1)

kc.begin_delete_key("sdk-ec").wait()
check("delete poller and get_deleted_key", kc.get_deleted_key("sdk-ec").name == "sdk-ec")
try:
    kc.create_ec_key("sdk-ec")
    check("creating a soft-deleted name is refused", False)
except ResourceExistsError:
    check("creating a soft-deleted name is refused", True)
kc.begin_recover_deleted_key("sdk-ec").wait()
check("recover poller", kc.get_key("sdk-ec").name == "sdk-ec")
kc.begin_delete_key("page-00").wait()
kc.purge_deleted_key("page-00")
check("purge", all(d.name != "page-00" for d in kc.list_deleted_keys()))

check("update (disable)", kc.update_key_properties("sdk-ec", enabled=False).properties.enabled is False)
rot = kc.rotate_key("sdk-rsa")
check("rotate makes a new version", rot.properties.version != rsa_key.properties.version)
check("random bytes", len(kc.get_random_bytes(16)) == 16)

try:
    KeyClient(url, Cred("atr1.0000000000000000.AAAA"), **opts).get_key("sdk-rsa")
    check("a bad token is refused with 401", False)
except ClientAuthenticationError:
    check("a bad token is refused with 401", True)
try:
    kc.create_rsa_key("hsm", hardware_protected=True)
    check("RSA-HSM is refused without an HSM backend", False)
except HttpResponseError as err:
    check("RSA-HSM is refused without an HSM backend", err.status_code == 400 and "HSM backend" in str(err))

# Rotation policy.
from azure.keyvault.keys import KeyRotationLifetimeAction, KeyRotationPolicy, KeyRotationPolicyAction
pol = kc.get_key_rotation_policy("sdk-rsa")
check("default rotation policy", pol.id == f"{url}/keys/sdk-rsa/rotationpolicy")
newpol = KeyRotationPolicy(expires_in="P90D", lifetime_actions=[KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P30D")])
got = kc.update_key_rotation_policy("sdk-rsa", newpol)
check("set rotation policy", got.expires_in == "P90D" and got.lifetime_actions[0].action.lower() == "rotate" and got.lifetime_actions[0].time_after_create == "P30D")
check("get rotation policy back", kc.get_key_rotation_policy("sdk-rsa").lifetime_actions[0].time_after_create == "P30D")
rot2 = kc.rotate_key("sdk-rsa")
check("rotation applies the policy's expiryTime", rot2.properties.expires_on is not None)

# Backup and restore.
blob = kc.backup_key("sdk-rsa")
kc.begin_delete_key("sdk-rsa").wait()
kc.purge_deleted_key("sdk-rsa")
back = kc.restore_key_backup(blob)
check("backup, purge and restore keep the versions", back.name == "sdk-rsa" and len(list(kc.list_properties_of_key_versions("sdk-rsa"))) == 3)

# BYOK: import RSA and EC keys generated here; the server must use exactly those keys.
from azure.keyvault.keys import JsonWebKey

def b(i, n=None):
    n = n or (i.bit_length() + 7) // 8
    return i.to_bytes(n, "big")

priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
pn = priv.private_numbers()
jwk = JsonWebKey(kty="RSA", n=b(pn.public_numbers.n), e=b(pn.public_numbers.e), d=b(pn.d), p=b(pn.p), q=b(pn.q),
                 dp=b(pn.dmp1), dq=b(pn.dmq1), qi=b(pn.iqmp), key_ops=["sign", "verify", "unwrapKey", "wrapKey"])
imported = kc.import_key("byok-rsa", jwk)
check("import RSA returns the same modulus", imported.key.n == b(pn.public_numbers.n))
icc = CryptographyClient(imported, Cred(token), **opts)
ct = priv.public_key().encrypt(b"z" * 32, padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None))
check("imported RSA key unwraps RSA-OAEP on the server", icc.unwrap_key(KeyWrapAlgorithm.rsa_oaep, ct).key == b"z" * 32)
ecp = ec.generate_private_key(ec.SECP384R1())
en = ecp.private_numbers()
ejwk = JsonWebKey(kty="EC", crv="P-384", x=b(en.public_numbers.x, 48), y=b(en.public_numbers.y, 48), d=b(en.private_value, 48), key_ops=["sign", "verify"])
ie = kc.import_key("byok-ec", ejwk)
d384 = hashlib.sha384(b"x").digest()
es = CryptographyClient(ie, Cred(token), **opts).sign(SignatureAlgorithm.es384, d384)
r, s_ = int.from_bytes(es.signature[:48], "big"), int.from_bytes(es.signature[48:], "big")
try:
    ecp.public_key().verify(utils.encode_dss_signature(r, s_), d384, ec.ECDSA(utils.Prehashed(hashes.SHA384())))
    check("imported EC key signs ES384 on the server", True)
except Exception:
    check("imported EC key signs ES384 on the server", False)

# --- 403 paths: a principal holding only `get` ----------------------------------------
import json
import os
import requests
from azure.core.rest import HttpRequest
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
from cryptography.hazmat.primitives import serialization

adm = {"Authorization": f"Bearer {token}"}
requests.post(f"{url}/admin/tenants/default/principals", json={"name": "sdk-reader"}, headers=adm, verify=ca).raise_for_status()
rt = requests.post(f"{url}/admin/tenants/default/principals/sdk-reader/tokens", json={}, headers=adm, verify=ca).json()["token"]
requests.put(f"{url}/admin/vaults/default/policies/sdk-reader", json={"permissions": ["get"]}, headers=adm, verify=ca).raise_for_status()
reader = KeyClient(url, Cred(rt), **opts)
check("a get-only principal can get", reader.get_key("sdk-rsa").name == "sdk-rsa")
try:
    reader.create_ec_key("forbidden")
    check("a get-only principal cannot create (403 AccessDenied)", False)
except HttpResponseError as err:
    check("a get-only principal cannot create (403 AccessDenied)", err.status_code == 403 and "grant create" in str(err))
try:
    CryptographyClient(kc.get_key("sdk-rsa"), Cred(rt), **opts).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped)
    check("a get-only principal cannot unwrap (403)", False)
except HttpResponseError as err:
    check("a get-only principal cannot unwrap (403)", err.status_code == 403)
requests.delete(f"{url}/admin/vaults/default/policies/sdk-reader", headers=adm, verify=ca).raise_for_status()
try:
    reader.get_key("sdk-rsa")
    check("removing the policy takes effect on the next request", False)
except HttpResponseError as err:
    check("removing the policy takes effect on the next request", err.status_code == 403)

# --- oct A256KW on the server through send_request (the SDK wraps oct keys locally) ---
oct_key = kc.create_oct_key("sdk-oct")
resp = kc.send_request(HttpRequest("POST", f"/keys/sdk-oct/{oct_key.properties.version}/wrapkey?api-version=7.5",
                                   json={"alg": "A256KW", "value": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}))
resp.raise_for_status()
server_wrapped = resp.json()["value"]
resp = kc.send_request(HttpRequest("POST", f"/keys/sdk-oct/{oct_key.properties.version}/unwrapkey?api-version=7.5",
                                   json={"alg": "A256KW", "value": server_wrapped}))
check("A256KW wrap and unwrap on the server via send_request", resp.json()["value"] == "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
check("/metrics needs a token", requests.get(f"{url}/metrics", verify=ca).status_code == 401)
metrics = requests.get(f"{url}/metrics", headers=adm, verify=ca).text
check("the server saw the wrapKey call", 'atrest_key_operations_total{key="default/sdk-oct",operation="wrapKey",result="ok"} 1' in metrics)

# --- paging over more than 25 versions ---
for _ in range(26):
    kc.create_oct_key("sdk-oct")
check("paging over 27 versions", len(list(kc.list_properties_of_key_versions("sdk-oct"))) == 27)

# --- secure import through the SDK: JsonWebKey.t carries the BYOK blob ----------------
kek = kc.create_rsa_key("sdk-kek", size=2048, key_operations=["import"])
kek_pub = rsa.RSAPublicNumbers(int.from_bytes(kek.key.e, "big"), int.from_bytes(kek.key.n, "big")).public_key()
target = ec.generate_private_key(ec.SECP256R1())
pkcs8 = target.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
aes = os.urandom(32)
ct = kek_pub.encrypt(aes, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
ct += aes_key_wrap_with_padding(aes, pkcs8)
import base64
b64u = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
blob = json.dumps({"schema_version": "1.0.0", "header": {"kid": kek.id, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"},
                   "ciphertext": b64u(ct), "generator": "sdk suite"}).encode()
try:
    byok = kc.import_key("sdk-byok", JsonWebKey(kty="EC", t=blob))
    d = hashlib.sha256(b"byok").digest()
    sig = CryptographyClient(byok, Cred(token), **opts).sign(SignatureAlgorithm.es256, d).signature
    target.public_key().verify(utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")),
                               d, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    check("secure import (key_hsm) through the SDK, then sign on the server", True)
except Exception as err:
    print(err)
    check("secure import (key_hsm) through the SDK, then sign on the server", False)
try:
    CryptographyClient(kek, Cred(token), **opts).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped)
    check("an import key does nothing else", False)
except HttpResponseError as err:
    check("an import key does nothing else", err.status_code == 403)

print(f"sdk: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
