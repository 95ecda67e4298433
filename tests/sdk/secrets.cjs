// The official Azure SDK for JavaScript (@azure/keyvault-secrets) against a running atrest:
// every operation of SecretClient. Prints one line per check and
// 'sdk js secrets: N passed, M failed'. Usage (the CA through NODE_EXTRA_CA_CERTS):
//   NODE_PATH=DIR/node_modules NODE_EXTRA_CA_CERTS=ca.pem node secrets.cjs URL TOKEN_FILE
const fs = require("fs");
const { SecretClient } = require("@azure/keyvault-secrets");

const [url, tokenFile] = process.argv.slice(2);
const token = fs.readFileSync(tokenFile, "utf8").trim();
let passed = 0;
let failed = 0;

function check(name, cond) {
  if (cond) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}`);
  }
}

async function refused(name, status, f, text) {
  try {
    await f();
    check(name, false);
  } catch (err) {
    // `text`: in the message, the error code, or the parsed body (its innererror).
    const seen = `${err.message} ${err.code} ${JSON.stringify(err.details ?? {})}`;
    const ok = err.statusCode === status && (text === undefined || seen.includes(text));
    if (!ok) console.log(`     got ${err.statusCode} ${err.code}: ${err.message}`);
    check(name, ok);
  }
}

const cred = (t) => ({ getToken: async () => ({ token: t, expiresOnTimestamp: Date.now() + 3600_000 }) });
const opts = { disableChallengeResourceVerification: true };
const fast = { intervalInMs: 100 };
const client = (t, u = url) => new SecretClient(u, cred(t), opts);
const all = async (it) => {
  const out = [];
  for await (const x of it) out.push(x);
  return out;
};
const admin = async (method, path, body) => {
  const r = await fetch(`${url}/admin${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return r.status === 204 ? null : r.json();
};

(async () => {
  const sc = client(token);

  // --- set and get ---
  const s1 = await sc.setSecret("js-password", "hunter2", { contentType: "text/plain", tags: { app: "billing" } });
  check("set returns a versioned id at the vault's origin", s1.properties.id === `${url}/secrets/js-password/${s1.properties.version}`
    && /^[0-9a-f]{32}$/.test(s1.properties.version));
  const g = await sc.getSecret("js-password");
  check("get latest: value, content type, tags", g.value === "hunter2" && g.properties.contentType === "text/plain"
    && g.properties.tags.app === "billing");
  const s2 = await sc.setSecret("js-password", "second");
  check("every set is a new version, inheriting nothing", s2.properties.version !== s1.properties.version
    && !s2.properties.contentType);
  check("get a version", (await sc.getSecret("js-password", { version: s1.properties.version })).value === "hunter2");
  await refused("an unknown secret is 404 SecretNotFound", 404, () => sc.getSecret("js-none"), "SecretNotFound");

  // --- values and limits ---
  for (const [name, value] of [["unicode", "pässwörd ✓ 密码 🔑"], ["empty", ""], ["blanks", "  a\r\nb\n\t "]]) {
    await sc.setSecret(`js-${name}`, value);
    check(`${name} value round-trips`, (await sc.getSecret(`js-${name}`)).value === value);
  }
  const big = "x".repeat(25600);
  check("a 25,600-byte value is accepted", (await sc.setSecret("js-big", big)).value === big);
  await refused("a 25,601-byte value is refused (400)", 400, () => sc.setSecret("js-big2", big + "x"));
  const tags = (n) => Object.fromEntries([...Array(n).keys()].map((i) => [`t${i}`, "v"]));
  await refused("16 tags are refused (400)", 400, () => sc.setSecret("js-tags", "x", { tags: tags(16) }));
  check("15 tags are accepted", Object.keys((await sc.setSecret("js-tags", "x", { tags: tags(15) })).properties.tags).length === 15);

  // --- update, disabled version ---
  const u = await sc.updateSecretProperties("js-password", s2.properties.version, { contentType: "pw", tags: { r: "1" } });
  check("update changes attributes, not the version", u.contentType === "pw" && u.version === s2.properties.version);
  await sc.updateSecretProperties("js-password", s1.properties.version, { enabled: false });
  await refused("a disabled version is 403 SecretDisabled", 403,
    () => sc.getSecret("js-password", { version: s1.properties.version }), "SecretDisabled");
  const versions = await all(sc.listPropertiesOfSecretVersions("js-password"));
  check("a disabled version is listed with enabled false", versions.some((p) => p.version === s1.properties.version && p.enabled === false));
  await sc.updateSecretProperties("js-password", s1.properties.version, { enabled: true });
  check("enabled again", (await sc.getSecret("js-password", { version: s1.properties.version })).value === "hunter2");

  // --- paging ---
  for (let i = 0; i < 27; i++) await sc.setSecret(`js-page-${String(i).padStart(2, "0")}`, `v${i}`);
  const props = await all(sc.listPropertiesOfSecrets());
  check("paging over more than 25 secrets", props.filter((p) => p.name.startsWith("js-page-")).length === 27);
  check("list items have versionless ids", props.every((p) => p.id === `${url}/secrets/${p.name}`));
  for (let i = 0; i < 26; i++) await sc.setSecret("js-many", "v");
  check("paging over 26 versions", (await all(sc.listPropertiesOfSecretVersions("js-many"))).length === 26);

  // --- delete, recover, purge ---
  const d = await (await sc.beginDeleteSecret("js-password", fast)).pollUntilDone();
  check("delete poller", d.name === "js-password" && d.properties.recoveryId === `${url}/deletedsecrets/js-password`);
  check("getDeletedSecret", (await sc.getDeletedSecret("js-password")).name === "js-password");
  check("listDeletedSecrets", (await all(sc.listDeletedSecrets())).some((x) => x.name === "js-password"));
  await refused("set on a soft-deleted name is 409", 409, () => sc.setSecret("js-password", "x"));
  await (await sc.beginRecoverDeletedSecret("js-password", fast)).pollUntilDone();
  check("recover poller brings back the versions",
    (await sc.getSecret("js-password", { version: s1.properties.version })).value === "hunter2");
  await (await sc.beginDeleteSecret("js-page-00", fast)).pollUntilDone();
  await sc.purgeDeletedSecret("js-page-00");
  check("purge", !(await all(sc.listDeletedSecrets())).some((x) => x.name === "js-page-00"));

  // --- backup, restore ---
  const blob = await sc.backupSecret("js-password");
  check("a backup does not contain the value", !Buffer.from(blob).includes("hunter2"));
  await refused("restore while the name exists is 409", 409, () => sc.restoreSecretBackup(blob));
  await (await sc.beginDeleteSecret("js-password", fast)).pollUntilDone();
  await sc.purgeDeletedSecret("js-password");
  const back = await sc.restoreSecretBackup(blob);
  const ids = (await all(sc.listPropertiesOfSecretVersions("js-password"))).map((p) => p.version).sort();
  check("restore after purge keeps the version ids", back.name === "js-password"
    && JSON.stringify(ids) === JSON.stringify([s1.properties.version, s2.properties.version].sort()));
  check("restored values", (await sc.getSecret("js-password", { version: s1.properties.version })).value === "hunter2");
  await refused("a garbage backup is 400", 400, () => sc.restoreSecretBackup(new Uint8Array([1, 2, 3, 4])));

  // --- purge protection ---
  const v = await admin("POST", "/tenants/default/vaults", { name: "js-pp", purge_protection: true });
  await admin("PUT", "/vaults/js-pp/policies/admin", { secret_permissions: ["all"] });
  const pp = client(token, v.url.replace(/\/$/, ""));
  for (let i = 0; i < 50; i++) {
    try {
      await pp.setSecret("guarded", "v");
      break;
    } catch (e) {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  await (await pp.beginDeleteSecret("guarded", fast)).pollUntilDone();
  await refused("purge under purge protection is 403", 403, () => pp.purgeDeletedSecret("guarded"));
  check("... the deleted secret stays", (await pp.getDeletedSecret("guarded")).name === "guarded");

  // --- permissions ---
  await admin("POST", "/tenants/default/principals", { name: "js-reader" });
  const rt = (await admin("POST", "/tenants/default/principals/js-reader/tokens", {})).token;
  await admin("PUT", "/vaults/default/policies/js-reader", { permissions: ["all"], secret_permissions: ["get", "list"] });
  const reader = client(rt);
  check("a get/list principal can get", (await reader.getSecret("js-password")).value === "second");
  await refused("... cannot set (403)", 403, () => reader.setSecret("js-password", "x"));
  await refused("... cannot update (403)", 403, () => reader.updateSecretProperties("js-password", "", { enabled: false }));
  await refused("... cannot delete (403)", 403, async () => (await reader.beginDeleteSecret("js-password", fast)).pollUntilDone());
  await refused("... cannot purge (403)", 403, () => reader.purgeDeletedSecret("js-page-01"));
  await refused("... cannot back up (403)", 403, () => reader.backupSecret("js-password"));
  await refused("... cannot restore (403)", 403, () => reader.restoreSecretBackup(blob));
  await admin("PUT", "/vaults/default/policies/js-reader", { permissions: ["all"] });
  await refused("key permissions grant no secret permission (403)", 403, () => reader.getSecret("js-password"));
  await refused("a bad token is 401", 401, () => client("atr1.0000000000000000.AAAA").getSecret("js-password"));

  console.log(`sdk js secrets: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})().catch((e) => {
  console.log(`FAIL unexpected error: ${e.stack || e}`);
  process.exit(1);
});
