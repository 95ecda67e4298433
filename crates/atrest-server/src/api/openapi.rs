//! The OpenAPI 3 description served at `/openapi.json`, built from the route table below
//! (so nothing is fetched or generated at build time). Bodies follow the AKV keys and
//! secrets APIs (`../shared/akv-keys-api.md`, `../shared/akv-secrets-api.md`); the admin
//! API's JSON is described in the README.

use serde_json::{Map, Value, json};

/// (method, path, operationId, summary, permission or role).
const ROUTES: &[(&str, &str, &str, &str, &str)] = &[
    ("post", "/keys/{name}/create", "CreateKey", "Create a key (RSA, EC, oct) or a new version of it", "create"),
    ("put", "/keys/{name}", "ImportKey", "Import a key (JWK, or secure import via key_hsm)", "import"),
    ("get", "/keys", "GetKeys", "List keys (paged, nextLink)", "list"),
    ("get", "/keys/{name}/versions", "GetKeyVersions", "List a key's versions (paged)", "list"),
    ("get", "/keys/{name}/{version}", "GetKey", "Get a key version (empty version = latest)", "get"),
    ("patch", "/keys/{name}/{version}", "UpdateKey", "Update enabled, nbf, exp, key_ops, tags", "update"),
    ("delete", "/keys/{name}", "DeleteKey", "Soft-delete a key (all versions)", "delete"),
    ("post", "/keys/{name}/rotate", "RotateKey", "Create a new version now", "rotate"),
    ("get", "/keys/{name}/rotationpolicy", "GetKeyRotationPolicy", "Get the rotation policy", "getrotationpolicy"),
    ("put", "/keys/{name}/rotationpolicy", "UpdateKeyRotationPolicy", "Set the rotation policy", "setrotationpolicy"),
    ("post", "/keys/{name}/backup", "BackupKey", "Encrypted backup of all versions", "backup"),
    ("post", "/keys/restore", "RestoreKey", "Restore a backup (same deployment only)", "restore"),
    ("post", "/keys/{name}/{version}/encrypt", "Encrypt", "RSA-OAEP, RSA-OAEP-256, A256GCM", "encrypt"),
    ("post", "/keys/{name}/{version}/decrypt", "Decrypt", "RSA-OAEP, RSA-OAEP-256, A256GCM", "decrypt"),
    ("post", "/keys/{name}/{version}/wrapkey", "WrapKey", "RSA-OAEP, RSA-OAEP-256, A256KW", "wrapKey"),
    (
        "post",
        "/keys/{name}/{version}/unwrapkey",
        "UnwrapKey",
        "RSA-OAEP, RSA-OAEP-256, A256KW (RSA1_5 if allowed)",
        "unwrapKey",
    ),
    ("post", "/keys/{name}/{version}/sign", "Sign", "RS256, PS256, ES256, ES384 over a digest", "sign"),
    ("post", "/keys/{name}/{version}/verify", "Verify", "Verify a signature over a digest", "verify"),
    ("get", "/deletedkeys", "GetDeletedKeys", "List soft-deleted keys (paged)", "list"),
    ("get", "/deletedkeys/{name}", "GetDeletedKey", "Get a soft-deleted key", "get"),
    (
        "delete",
        "/deletedkeys/{name}",
        "PurgeDeletedKey",
        "Purge (refused under purge protection before the date)",
        "purge",
    ),
    ("post", "/deletedkeys/{name}/recover", "RecoverDeletedKey", "Recover a soft-deleted key", "recover"),
    ("post", "/rng", "GetRandomBytes", "Random bytes (1-128)", "member of the vault's tenant"),
    ("put", "/secrets/{name}", "SetSecret", "Set a secret: a new version (value ≤ 25,600 bytes)", "secret set"),
    ("get", "/secrets", "GetSecrets", "List secrets (paged, versionless ids, no values)", "secret list"),
    ("get", "/secrets/{name}/versions", "GetSecretVersions", "List a secret's versions (paged)", "secret list"),
    ("get", "/secrets/{name}/{version}", "GetSecret", "Get a secret version's value (empty = latest)", "secret get"),
    ("patch", "/secrets/{name}/{version}", "UpdateSecret", "Update contentType, tags, enabled, nbf, exp", "secret set"),
    ("delete", "/secrets/{name}", "DeleteSecret", "Soft-delete a secret (all versions)", "secret delete"),
    ("post", "/secrets/{name}/backup", "BackupSecret", "Encrypted backup of all versions", "secret backup"),
    ("post", "/secrets/restore", "RestoreSecret", "Restore a backup (same deployment only)", "secret restore"),
    ("get", "/deletedsecrets", "GetDeletedSecrets", "List soft-deleted secrets (paged)", "secret list"),
    ("get", "/deletedsecrets/{name}", "GetDeletedSecret", "Get a soft-deleted secret (no value)", "secret get"),
    (
        "delete",
        "/deletedsecrets/{name}",
        "PurgeDeletedSecret",
        "Purge (204; 403 under purge protection)",
        "secret purge",
    ),
    (
        "post",
        "/deletedsecrets/{name}/recover",
        "RecoverDeletedSecret",
        "Recover a soft-deleted secret",
        "secret recover",
    ),
    ("get", "/data/resources", "DataListResources", "Resources the caller holds a role on", "any principal"),
    ("put", "/data/resources/{resource}", "DataCreateResource", "Create a resource (platform keys)", "tenant-admin"),
    ("get", "/data/resources/{resource}", "DataGetResource", "State, encryption, identity", "reader"),
    ("delete", "/data/resources/{resource}", "DataDeleteResource", "Delete by crypto-erasure", "owner"),
    ("get", "/data/resources/{resource}/encryption", "DataGetEncryption", "Key source, URI, version", "reader"),
    (
        "put",
        "/data/resources/{resource}/encryption",
        "DataSetEncryption",
        "{keySource: platform|customer, keyUri?, credential?}: validates, re-wraps",
        "owner",
    ),
    ("put", "/data/resources/{resource}/diagnostics", "DataSetDiagnostics", "{dataAudit: bool}", "owner"),
    ("get", "/data/resources/{resource}/roles", "DataListRoles", "Roles granted", "owner"),
    ("put", "/data/resources/{resource}/roles/{principal}", "DataSetRole", "{role: reader|writer|owner}", "owner"),
    ("delete", "/data/resources/{resource}/roles/{principal}", "DataRemoveRole", "Remove a role", "owner"),
    ("get", "/data/resources/{resource}/records", "DataListRecords", "?prefix&after&limit", "reader"),
    (
        "put",
        "/data/resources/{resource}/records/{key}",
        "DataPutRecord",
        "Raw body; If-Match, If-None-Match: *",
        "writer",
    ),
    ("get", "/data/resources/{resource}/records/{key}", "DataGetRecord", "Raw body with ETag", "reader"),
    ("delete", "/data/resources/{resource}/records/{key}", "DataDeleteRecord", "Crypto-erasure; If-Match", "writer"),
    ("get", "/data/resources/{resource}/blobs", "DataListBlobs", "?prefix&after&limit", "reader"),
    ("put", "/data/resources/{resource}/blobs/{name}", "DataPutBlob", "Streamed raw body; If-Match", "writer"),
    (
        "get",
        "/data/resources/{resource}/blobs/{name}",
        "DataGetBlob",
        "Streamed; Range: bytes=… (416 with Content-Range: bytes */LEN outside the blob)",
        "reader",
    ),
    ("delete", "/data/resources/{resource}/blobs/{name}", "DataDeleteBlob", "Crypto-erasure", "writer"),
    ("post", "/data/resources/{resource}/messages", "DataSendMessage", "Raw body; ?ttl (≤ 86400 s)", "writer"),
    (
        "post",
        "/data/resources/{resource}/messages/receive",
        "DataReceiveMessages",
        "?max&visibility; bodies in base64",
        "writer",
    ),
    ("delete", "/data/resources/{resource}/messages/{id}", "DataAckMessage", "?receipt", "writer"),
    ("post", "/data/resources/{resource}/jobs", "DataStartJob", "{kind: rekey|reencrypt}", "owner"),
    ("get", "/data/resources/{resource}/jobs", "DataListResourceJobs", "Jobs of a resource", "owner"),
    ("get", "/data/jobs", "DataListJobs", "Jobs on resources the caller owns", "owner"),
    ("get", "/data/jobs/{id}", "DataGetJob", "State and progress", "owner"),
    ("get", "/data/key-usage", "DataKeyUsage", "Which resources use which key versions", "tenant-admin"),
    ("get", "/admin/whoami", "AdminWhoami", "The caller's principal", "any principal"),
    (
        "post",
        "/admin/verify",
        "AdminVerify",
        "Scan every data-service row against its MAC and resource",
        "deployment-admin",
    ),
    ("get", "/admin/tenants", "AdminListTenants", "Tenants the caller can see", "any principal"),
    ("post", "/admin/tenants", "AdminCreateTenant", "Create a tenant", "deployment-admin"),
    ("get", "/admin/tenants/{tenant}", "AdminGetTenant", "A tenant", "member of the tenant"),
    ("get", "/admin/tenants/{tenant}/principals", "AdminListPrincipals", "Principals of a tenant", "tenant-admin"),
    (
        "post",
        "/admin/tenants/{tenant}/principals",
        "AdminCreatePrincipal",
        "Create a principal {name, kind, role}",
        "tenant-admin",
    ),
    (
        "get",
        "/admin/tenants/{tenant}/principals/{principal}",
        "AdminGetPrincipal",
        "A principal",
        "tenant-admin or self",
    ),
    (
        "patch",
        "/admin/tenants/{tenant}/principals/{principal}",
        "AdminUpdatePrincipal",
        "Enable or disable {disabled}",
        "tenant-admin",
    ),
    (
        "get",
        "/admin/tenants/{tenant}/principals/{principal}/tokens",
        "AdminListTokens",
        "Token ids and dates",
        "tenant-admin or self",
    ),
    (
        "post",
        "/admin/tenants/{tenant}/principals/{principal}/tokens",
        "AdminIssueToken",
        "Issue a token {ttl_seconds} (1 s to 10 years; none for res-NAME identities)",
        "tenant-admin",
    ),
    (
        "delete",
        "/admin/tenants/{tenant}/principals/{principal}/tokens/{id}",
        "AdminRevokeToken",
        "Revoke a token",
        "tenant-admin or self",
    ),
    (
        "post",
        "/admin/tenants/{tenant}/principals/{principal}/tokens/{id}/rotate",
        "AdminRotateToken",
        "Replace a token",
        "tenant-admin or self",
    ),
    (
        "get",
        "/admin/tenants/{tenant}/principals/{principal}/s3-keys",
        "AdminListS3Keys",
        "S3 access key ids and dates (never the secrets)",
        "tenant-admin or self",
    ),
    (
        "post",
        "/admin/tenants/{tenant}/principals/{principal}/s3-keys",
        "AdminIssueS3Key",
        "Issue an S3 access key; the secret is in this answer only (none for res-NAME identities)",
        "tenant-admin",
    ),
    (
        "delete",
        "/admin/tenants/{tenant}/principals/{principal}/s3-keys/{id}",
        "AdminRevokeS3Key",
        "Revoke an S3 access key (the next request signed with it is refused, on every node)",
        "tenant-admin or self",
    ),
    ("get", "/admin/tenants/{tenant}/vaults", "AdminListVaults", "Vaults of a tenant", "tenant-admin"),
    (
        "post",
        "/admin/tenants/{tenant}/vaults",
        "AdminCreateVault",
        "Create a vault {name, retention_days, purge_protection, allow_rsa1_5}",
        "tenant-admin",
    ),
    ("get", "/admin/vaults/{vault}", "AdminGetVault", "Vault settings and URL", "tenant-admin"),
    (
        "patch",
        "/admin/vaults/{vault}",
        "AdminUpdateVault",
        "Change settings (purge protection cannot be turned off)",
        "tenant-admin",
    ),
    ("get", "/admin/vaults/{vault}/policies", "AdminListPolicies", "Access policies of a vault", "tenant-admin"),
    (
        "put",
        "/admin/vaults/{vault}/policies/{principal}",
        "AdminSetPolicy",
        "Grant permissions {permissions}",
        "tenant-admin",
    ),
    ("delete", "/admin/vaults/{vault}/policies/{principal}", "AdminRemovePolicy", "Remove a policy", "tenant-admin"),
    ("get", "/healthz", "Health", "Liveness", "none"),
    ("get", "/readyz", "Ready", "Readiness and operational warnings", "none"),
    ("get", "/metrics", "Metrics", "Prometheus metrics", "the metrics token or a deployment-admin token"),
    ("get", "/audit/signing-key", "AuditSigningKey", "Public JWK that signs audit checkpoints", "none"),
];

/// The document.
pub(crate) fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for (method, path, id, summary, who) in ROUTES {
        let public = *who == "none";
        let mut params: Vec<Value> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let keys_api =
            ["/keys", "/deletedkeys", "/rng", "/secrets", "/deletedsecrets"].iter().any(|p| path.starts_with(p));
        if keys_api {
            params.push(json!({"name": "api-version", "in": "query", "required": true, "schema": {"type": "string", "example": "7.5"}}));
        }
        let mut op = json!({
            "operationId": id,
            "summary": summary,
            "description": if public { "No authentication.".to_string() } else { format!("Requires: {who}.") },
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                "401": {"description": "No valid bearer token (WWW-Authenticate challenge)"},
                "403": {"description": "Not permitted, or refused by the key's state", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "429": {"description": "Rate limited (Retry-After)"}
            }
        });
        if public {
            op["security"] = json!([]);
        }
        if matches!(*method, "post" | "put" | "patch") {
            op["requestBody"] =
                json!({"required": false, "content": {"application/json": {"schema": {"type": "object"}}}});
        }
        paths.entry((*path).to_string()).or_insert_with(|| json!({}))[*method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "atrest",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Key vault (Azure Key Vault keys and secrets API subset), administration API, and the encrypted data service (/data)."
        },
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"},
                    "innererror": {"type": "object", "properties": {"code": {"type": "string"}}}
                }}}}
            }
        },
        "paths": paths
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_described_once() {
        let d = super::document();
        let n: usize = d["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(n, super::ROUTES.len());
        assert_eq!(d["paths"]["/keys/{name}/{version}/unwrapkey"]["post"]["operationId"], "UnwrapKey");
        assert_eq!(d["paths"]["/data/resources/{resource}/blobs/{name}"]["get"]["operationId"], "DataGetBlob");
        let metrics = &d["paths"]["/metrics"]["get"];
        assert!(metrics.get("security").is_none(), "/metrics needs a token");
        assert_eq!(metrics["parameters"].as_array().unwrap().len(), 0, "no api-version outside the keys API");
    }
}
