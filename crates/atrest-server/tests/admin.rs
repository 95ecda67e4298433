//! The admin API and tenant isolation over real HTTPS: tenants, tenant admins, vaults at
//! their own origin (`NAME.vaults.test` resolved to loopback), principals, tokens
//! (issue, rotate, revoke), access policies taking effect on the next request, and the
//! audit entries every change leaves.

mod common;

use atrest_server::ServeConfig;
use atrest_vault::audit::{AuditFilter, DEPLOYMENT_CHAIN};
use common::{client_builder, temp_dir};
use reqwest::{Client, Method as M, StatusCode};
use serde_json::{Value, json};

const DOMAIN: &str = "vaults.test";

struct Caller<'a> {
    client: &'a Client,
    port: u16,
    token: String,
}

impl Caller<'_> {
    /// `host` is `None` for the bare host (default vault and admin API).
    async fn call(&self, m: M, host: Option<&str>, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let origin = match host {
            Some(v) => format!("https://{v}.{DOMAIN}:{}", self.port),
            None => format!("https://localhost:{}", self.port),
        };
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = if path.starts_with("/admin") {
            format!("{origin}{path}")
        } else {
            format!("{origin}{path}{sep}api-version=7.5")
        };
        let mut req = self.client.request(m, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let s = resp.status();
        let t = resp.text().await.unwrap();
        (s, if t.is_empty() { Value::Null } else { serde_json::from_str(&t).unwrap() })
    }
}

#[tokio::test]
async fn tenants_admins_tokens_policies_and_isolation() {
    let dir = temp_dir("atrest-admin-test");
    let cfg = ServeConfig {
        data_dir: dir.0.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        vault_domain: Some(DOMAIN.into()),
        ..ServeConfig::default()
    };
    let server = atrest_server::start(cfg).await.unwrap();
    let port = server.addr.port();
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let client = client_builder(server.ca_pem.as_ref().unwrap())
        .resolve(&format!("acme-vault.{DOMAIN}"), loopback)
        .resolve(&format!("default.{DOMAIN}"), loopback)
        .build()
        .unwrap();
    let admin = Caller { client: &client, port, token: std::fs::read_to_string(&server.admin_token).unwrap() };

    // The deployment admin creates a tenant and its admin.
    let (s, t) = admin.call(M::POST, None, "/admin/tenants", Some(json!({"name": "acme"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let (s, _) = admin.call(M::POST, None, "/admin/tenants", Some(json!({"name": "acme"}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, p) = admin
        .call(
            M::POST,
            None,
            "/admin/tenants/acme/principals",
            Some(json!({"name": "alice", "kind": "user", "role": "tenant-admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let (s, tok) = admin.call(M::POST, None, "/admin/tenants/acme/principals/alice/tokens", None).await;
    assert_eq!(s, StatusCode::CREATED, "{tok}");
    let alice = Caller { client: &client, port, token: tok["token"].as_str().unwrap().into() };

    // Alice manages her tenant: a vault with purge protection, a service identity, policies.
    let (s, v) = alice
        .call(
            M::POST,
            None,
            "/admin/tenants/acme/vaults",
            Some(json!({"name": "acme-vault", "purge_protection": true})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["url"], format!("https://acme-vault.{DOMAIN}:{port}"));
    let (s, _) = alice.call(M::PATCH, None, "/admin/vaults/acme-vault", Some(json!({"purge_protection": false}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "purge protection cannot be turned off");
    let (s, _) = alice.call(M::POST, None, "/admin/tenants/acme/principals", Some(json!({"name": "app"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, apptok) = alice
        .call(M::POST, None, "/admin/tenants/acme/principals/app/tokens", Some(json!({"ttl_seconds": 3600})))
        .await;
    let app = Caller { client: &client, port, token: apptok["token"].as_str().unwrap().into() };
    let (s, b) = alice
        .call(M::PUT, None, "/admin/vaults/acme-vault/policies/alice", Some(json!({"permissions": ["all"]})))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = alice
        .call(
            M::PUT,
            None,
            "/admin/vaults/acme-vault/policies/app",
            Some(json!({"permissions": ["get", "wrapKey", "unwrapKey"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) =
        alice.call(M::PUT, None, "/admin/vaults/acme-vault/policies/app", Some(json!({"permissions": ["fly"]}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");

    // Keys in acme's vault, at its own origin.
    let (s, k) = alice.call(M::POST, Some("acme-vault"), "/keys/cmk/create", Some(json!({"kty": "oct"}))).await;
    assert_eq!(s, StatusCode::OK, "{k}");
    assert!(k["key"]["kid"].as_str().unwrap().starts_with(&format!("https://acme-vault.{DOMAIN}:{port}/keys/cmk/")));
    let wrap = json!({"alg": "A256KW", "value": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"});
    let (s, _) = app.call(M::POST, Some("acme-vault"), "/keys/cmk//wrapkey", Some(wrap.clone())).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.call(M::POST, Some("acme-vault"), "/keys/other/create", Some(json!({"kty": "oct"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "app may not create");

    // Isolation: alice sees nothing of the default tenant, and her keys API access ends
    // at her tenant's vaults; the default admin holds no policy on acme's vault.
    let (_, list) = alice.call(M::GET, None, "/admin/tenants", None).await;
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    assert_eq!(list["value"][0]["name"], "acme");
    for path in [
        "/admin/tenants/default",
        "/admin/tenants/default/principals",
        "/admin/vaults/default",
        "/admin/vaults/default/policies",
    ] {
        let (s, b) = alice.call(M::GET, None, path, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {b}");
        assert_eq!(b["error"]["code"], "NotFound");
    }
    let (s, _) =
        alice.call(M::PUT, None, "/admin/vaults/default/policies/alice", Some(json!({"permissions": ["get"]}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Another tenant's vault does not exist for them, as in the admin API.
    let (s, b) = alice.call(M::GET, None, "/keys", None).await;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("VaultNotFound")), "{b}");
    let (s, _) = app.call(M::GET, Some("default"), "/keys", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = admin.call(M::GET, Some("acme-vault"), "/keys/cmk", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "the deployment admin holds no key permission on acme's vault");
    // Alice cannot create tenants or deployment admins.
    let (s, b) = alice.call(M::POST, None, "/admin/tenants", Some(json!({"name": "evil"}))).await;
    assert_eq!((s, b["error"]["innererror"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("AdminRoleRequired")));
    let (s, _) = alice
        .call(
            M::POST,
            None,
            "/admin/tenants/acme/principals",
            Some(json!({"name": "root2", "role": "deployment-admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A tenant admin of the default tenant cannot mint or rotate the deployment admin's
    // tokens (that would make it a deployment admin).
    let (s, _) = admin
        .call(
            M::POST,
            None,
            "/admin/tenants/default/principals",
            Some(json!({"name": "dflt-admin", "role": "tenant-admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, dt) = admin.call(M::POST, None, "/admin/tenants/default/principals/dflt-admin/tokens", None).await;
    let dflt = Caller { client: &client, port, token: dt["token"].as_str().unwrap().into() };
    let (s, _) = dflt.call(M::POST, None, "/admin/tenants/default/principals/admin/tokens", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no escalation through the admin's tokens");
    let (s, _) = dflt.call(M::GET, None, "/admin/tenants/default/principals/admin/tokens", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) =
        dflt.call(M::PATCH, None, "/admin/tenants/default/principals/admin", Some(json!({"disabled": true}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = dflt.call(M::POST, None, "/admin/tenants/default/principals/dflt-admin/tokens", None).await;
    assert_eq!(s, StatusCode::CREATED, "its own tokens and its peers' are fine");

    // A member administers nothing but may see its own tokens.
    let (s, _) = app.call(M::GET, None, "/admin/tenants/acme/principals", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.call(M::DELETE, None, "/admin/vaults/acme-vault/policies/app", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, own) = app.call(M::GET, None, "/admin/tenants/acme/principals/app/tokens", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(own.to_string().contains(apptok["id"].as_str().unwrap()) && !own.to_string().contains("atr1."));
    let path = format!("/admin/tenants/acme/principals/app/tokens/{}/rotate", apptok["id"].as_str().unwrap());
    let (s, _) = app.call(M::POST, None, &path, Some(json!({"ttl_seconds": 315_360_000}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a member cannot extend its own token by rotating it");

    // Removing the policy takes effect on the very next request.
    let (s, _) = alice.call(M::DELETE, None, "/admin/vaults/acme-vault/policies/app", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.call(M::POST, Some("acme-vault"), "/keys/cmk//wrapkey", Some(wrap.clone())).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Token rotation: the new token works, the old one no longer does; revocation; disabling.
    let path = format!("/admin/tenants/acme/principals/app/tokens/{}/rotate", apptok["id"].as_str().unwrap());
    let (s, rotated) = alice.call(M::POST, None, &path, None).await;
    assert_eq!(s, StatusCode::CREATED, "{rotated}");
    assert!(rotated["expires"].as_i64().unwrap() > 0, "keeps the lifetime");
    let (s, _) = app.call(M::GET, None, "/admin/whoami", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let app2 = Caller { client: &client, port, token: rotated["token"].as_str().unwrap().into() };
    let (s, me) = app2.call(M::GET, None, "/admin/whoami", None).await;
    assert_eq!((s, me["name"].as_str()), (StatusCode::OK, Some("app")));
    let (s, _) =
        alice.call(M::PATCH, None, "/admin/tenants/acme/principals/app", Some(json!({"disabled": true}))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app2.call(M::GET, None, "/admin/whoami", None).await.0, StatusCode::UNAUTHORIZED);
    alice.call(M::PATCH, None, "/admin/tenants/acme/principals/app", Some(json!({"disabled": false}))).await;
    assert_eq!(app2.call(M::GET, None, "/admin/whoami", None).await.0, StatusCode::OK);
    let path = format!("/admin/tenants/acme/principals/app/tokens/{}", rotated["id"].as_str().unwrap());
    assert_eq!(alice.call(M::DELETE, None, &path, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(app2.call(M::GET, None, "/admin/whoami", None).await.0, StatusCode::UNAUTHORIZED);
    // A token id cannot be reached through another principal's path.
    let path = format!("/admin/tenants/acme/principals/alice/tokens/{}", rotated["id"].as_str().unwrap());
    assert_eq!(alice.call(M::DELETE, None, &path, None).await.0, StatusCode::NOT_FOUND);

    // Every change is in the audit trail: tenants, principals and tokens on the
    // deployment chain, policies and settings on the vault's chain, each attempt and outcome.
    let svc = server.service();
    let ops = |chain: String| async move {
        svc.audit_entries(&chain, &AuditFilter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|r| format!("{} {} {} {}", r.principal, r.operation, r.target, r.result))
            .collect::<Vec<_>>()
    };
    let dep = ops(DEPLOYMENT_CHAIN.to_string()).await;
    for want in [
        "admin create-tenant acme attempt",
        "admin create-tenant acme ok",
        "admin create-tenant acme Conflict",
        "admin create-principal acme/alice ok",
        "admin issue-token acme/alice ok",
        "alice rotate-token acme/app/",
        "alice update-principal acme/app ok",
        "alice revoke-token acme/app/",
        "alice create-tenant evil Forbidden",
        "alice set-policy default/alice NotFound",
        "app remove-policy acme-vault/app Forbidden",
    ] {
        assert!(dep.iter().any(|l| l.starts_with(want)), "missing {want:?} in {dep:#?}");
    }
    let vault_id = svc.vault("acme-vault").await.unwrap().id;
    let vops = ops(vault_id.clone()).await;
    for want in [
        "alice create-vault acme-vault ok",
        "alice set-policy app ok",
        "alice remove-policy app ok",
        "alice update-vault acme-vault Forbidden",
        "alice set-policy app BadParameter",
    ] {
        assert!(vops.iter().any(|l| l == want), "missing {want:?} in {vops:#?}");
    }
    assert!(svc.verify_audit_chain(&vault_id, None).await.unwrap().ok());
    assert!(svc.verify_audit_chain(DEPLOYMENT_CHAIN, None).await.unwrap().ok());
    server.shutdown().await;
}

#[tokio::test]
async fn token_lifetimes_key_dates_and_rotation_policies_are_bounded() {
    let dir = temp_dir("atrest-admin-bounds");
    let cfg = ServeConfig { data_dir: dir.0.clone(), listen: "127.0.0.1:0".parse().unwrap(), ..ServeConfig::default() };
    let server = atrest_server::start(cfg).await.unwrap();
    let client = client_builder(server.ca_pem.as_ref().unwrap()).build().unwrap();
    let admin = Caller {
        client: &client,
        port: server.addr.port(),
        token: std::fs::read_to_string(&server.admin_token).unwrap(),
    };
    let (s, _) = admin.call(M::POST, None, "/admin/tenants/default/principals", Some(json!({"name": "svc1"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let tokens = "/admin/tenants/default/principals/svc1/tokens";
    for ttl in [1_000_000_000_000_i64, 10 * 365 * 86_400 + 1, 0, -5] {
        let (s, e) = admin.call(M::POST, None, tokens, Some(json!({"ttl_seconds": ttl}))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "ttl {ttl}: {e}");
        assert!(e["error"]["message"].as_str().unwrap().contains("ttl_seconds"), "{e}");
    }
    let (s, t) = admin.call(M::POST, None, tokens, Some(json!({"ttl_seconds": 10 * 365 * 86_400}))).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");

    // Key dates: Unix seconds, exp after nbf (create, import, update).
    for attrs in [json!({"nbf": 2_000_000_000, "exp": 1_900_000_000}), json!({"exp": -1}), json!({"nbf": -1})] {
        let (s, e) =
            admin.call(M::POST, None, "/keys/k1/create", Some(json!({"kty": "EC", "attributes": attrs}))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{attrs}: {e}");
        assert_eq!(e["error"]["code"], "BadParameter", "{e}");
    }
    let jwk =
        json!({"kty": "oct", "k": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "key_ops": ["wrapKey", "unwrapKey"]});
    let (s, e) = admin.call(M::PUT, None, "/keys/imported", Some(json!({"key": jwk, "attributes": {"exp": -1}}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("exp"), "{e}");
    let (s, k) = admin
        .call(M::POST, None, "/keys/k1/create", Some(json!({"kty": "EC", "attributes": {"nbf": 1_000_000_000}})))
        .await;
    assert_eq!(s, StatusCode::OK, "{k}");
    let (s, e) = admin.call(M::PATCH, None, "/keys/k1", Some(json!({"attributes": {"exp": 999_999_999}}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("after attributes.nbf"), "{e}");
    let (s, e) = admin.call(M::PATCH, None, "/keys/k1", Some(json!({"attributes": {"exp": 4_000_000_000_i64}}))).await;
    assert_eq!(s, StatusCode::OK, "{e}");

    // A rotation policy has a handful of lifetime actions, not a thousand.
    let notify = json!({"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}});
    let policy = |n: usize| json!({"lifetimeActions": vec![notify.clone(); n], "attributes": {}});
    let (s, e) = admin.call(M::PUT, None, "/keys/k1/rotationpolicy", Some(policy(1000))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{}", e["error"]);
    assert!(e["error"]["message"].as_str().unwrap().contains("at most 10 lifetime actions"), "{e}");
    let (s, e) = admin.call(M::PUT, None, "/keys/k1/rotationpolicy", Some(policy(2))).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    server.shutdown().await;
}
