//! The vault domain end to end on an in-memory SQLite database with a driven clock:
//! key types, versions, paging, attributes and the AKV operation rules, soft delete,
//! recover, purge and purge protection, the sweeper, and tampering with stored rows.

use atrest_crypto::SecretKey;
use atrest_crypto::backend::software::SoftwareBackend;
use atrest_infra::clock::ManualClock;
use atrest_infra::db::Db;
use atrest_vault::model::{VaultInfo, VaultSettings};
use atrest_vault::{CreateKey, KeyOp, OpInput, PrincipalKind, Refusal, Role, UpdateKey, VaultError, VaultService};
use atrest_vault::{Permission, SecretPermission};
use std::sync::Arc;

const T0: i64 = 1_700_000_000;

struct Env {
    svc: VaultService,
    clock: ManualClock,
    vault: VaultInfo,
    db: Db,
}

/// `ATREST_TEST_DATABASE_URL` (e.g. a throwaway PostgreSQL) replaces the default
/// in-memory SQLite; every test uses its own vault, so tests can share one database.
async fn env_with(settings: VaultSettings) -> Env {
    let url = std::env::var("ATREST_TEST_DATABASE_URL").unwrap_or_else(|_| "sqlite::memory:".into());
    let db = Db::connect(&url).await.unwrap();
    atrest_vault::schema::migrate(&db).await.unwrap();
    atrest_vault::schema::migrate(&db).await.unwrap(); // idempotent
    let root = SecretKey::from_slice(&[5; 32]).unwrap();
    let clock = ManualClock::new(T0);
    let svc =
        VaultService::new(db.clone(), Arc::new(SoftwareBackend::new(&root).unwrap()), &root, Arc::new(clock.clone()))
            .unwrap();
    let name = format!("v{}", hex::encode(atrest_crypto::rand::bytes::<6>().unwrap()));
    let vault = svc.create_vault("tenant-1", &name, settings).await.unwrap();
    Env { svc, clock, vault, db }
}

async fn env() -> Env {
    env_with(VaultSettings::default()).await
}

fn oct() -> CreateKey {
    CreateKey { kty: "oct".into(), ..CreateKey::default() }
}

fn op(alg: &str, value: &[u8]) -> OpInput {
    OpInput { alg: alg.into(), value: atrest_crypto::SecretBytes::new(value.to_vec()), ..OpInput::default() }
}

fn refusal(e: VaultError) -> Refusal {
    match e {
        VaultError::Forbidden { reason, .. } => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn versions_rotation_and_latest() {
    let e = env().await;
    let v1 = e.svc.create_key(&e.vault, "Key-1", oct()).await.unwrap();
    assert_eq!(v1.version.len(), 32);
    assert_eq!(v1.key_ops, ["encrypt", "decrypt", "wrapKey", "unwrapKey"]);
    assert_eq!(v1.attributes.recovery_level, "Recoverable+Purgeable");
    e.clock.advance(10);
    let v2 = e.svc.create_key(&e.vault, "key-1", oct()).await.unwrap();
    assert_eq!(v2.name, "Key-1", "names match case-insensitively and keep their first spelling");
    let v3 = e.svc.rotate_key(&e.vault, "KEY-1").await.unwrap();
    assert_eq!(e.svc.get_key(&e.vault, "key-1", None).await.unwrap().version, v3.version);
    assert_eq!(e.svc.get_key(&e.vault, "key-1", Some("")).await.unwrap().version, v3.version);
    assert_eq!(e.svc.get_key(&e.vault, "key-1", Some(&v1.version)).await.unwrap(), v1);
    let versions = e.svc.list_versions(&e.vault, "key-1", None, None).await.unwrap();
    assert_eq!(
        versions.items.iter().map(|b| b.version.clone()).collect::<Vec<_>>(),
        [v1.version, v2.version, v3.version]
    );
    assert!(matches!(e.svc.get_key(&e.vault, "key-1", Some("0123")).await, Err(VaultError::NotFound(_))));
    assert!(matches!(e.svc.get_key(&e.vault, "nope", None).await, Err(VaultError::NotFound(_))));
}

#[tokio::test]
async fn paging_over_more_than_25_keys() {
    let e = env().await;
    for i in 0..30 {
        e.svc.create_key(&e.vault, &format!("k{i:02}"), oct()).await.unwrap();
    }
    let p1 = e.svc.list_keys(&e.vault, None, None).await.unwrap();
    assert_eq!(p1.items.len(), 25);
    let token = p1.next.clone().unwrap();
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "token must be URL-safe");
    let p2 = e.svc.list_keys(&e.vault, None, Some(&token)).await.unwrap();
    assert_eq!(p2.items.len(), 5);
    assert!(p2.next.is_none());
    let mut all: Vec<_> = p1.items.iter().chain(&p2.items).map(|b| b.name.clone()).collect();
    all.dedup();
    assert_eq!(all.len(), 30);
    let small = e.svc.list_keys(&e.vault, Some(7), None).await.unwrap();
    assert_eq!(small.items.len(), 7);
    assert!(matches!(e.svc.list_keys(&e.vault, Some(26), None).await, Err(VaultError::BadParameter(_))));
    assert!(matches!(e.svc.list_keys(&e.vault, None, Some("zz")).await, Err(VaultError::BadParameter(_))));
}

#[tokio::test]
async fn key_types_and_refusals() {
    let e = env().await;
    let rsa = e.svc.create_key(&e.vault, "rsa", CreateKey { kty: "RSA".into(), ..CreateKey::default() }).await.unwrap();
    assert_eq!(atrest_vault::model::b64u_decode(rsa.public.n.as_deref().unwrap(), "n").unwrap().len(), 256);
    assert_eq!(rsa.public.e.as_deref(), Some("AQAB"));
    let ec = e
        .svc
        .create_key(&e.vault, "ec", CreateKey { kty: "EC".into(), crv: Some("P-384".into()), ..CreateKey::default() })
        .await
        .unwrap();
    assert_eq!(ec.key_ops, ["sign", "verify"]);
    assert_eq!(atrest_vault::model::b64u_decode(ec.public.x.as_deref().unwrap(), "x").unwrap().len(), 48);
    let hsm =
        e.svc.create_key(&e.vault, "h", CreateKey { kty: "RSA-HSM".into(), ..CreateKey::default() }).await.unwrap_err();
    assert!(hsm.to_string().contains("needs an HSM backend"), "{hsm}");
    for bad in [
        CreateKey { kty: "oct".into(), key_size: Some(128), ..CreateKey::default() },
        CreateKey { kty: "RSA".into(), key_size: Some(1024), ..CreateKey::default() },
        CreateKey { kty: "EC".into(), crv: Some("P-521".into()), ..CreateKey::default() },
        CreateKey { kty: "EC".into(), key_ops: Some(vec!["encrypt".into()]), ..CreateKey::default() },
        CreateKey { kty: "DSA".into(), ..CreateKey::default() },
    ] {
        assert!(matches!(e.svc.create_key(&e.vault, "bad", bad).await, Err(VaultError::BadParameter(_))));
    }
    assert!(matches!(e.svc.create_key(&e.vault, "bad name!", oct()).await, Err(VaultError::BadParameter(_))));
}

#[tokio::test]
async fn operations_round_trip_and_verify_locally() {
    let e = env().await;
    e.svc.create_key(&e.vault, "aes", oct()).await.unwrap();
    let w = e.svc.operate(&e.vault, "aes", None, KeyOp::WrapKey, op("A256KW", &[9; 32])).await.unwrap();
    let u =
        e.svc.operate(&e.vault, "aes", None, KeyOp::UnwrapKey, op("A256KW", w.value.expose_secret())).await.unwrap();
    assert_eq!(u.value.expose_secret(), &[9; 32]);

    let enc = e
        .svc
        .operate(
            &e.vault,
            "aes",
            None,
            KeyOp::Encrypt,
            OpInput { aad: Some(b"ctx".to_vec()), ..op("A256GCM", b"hello") },
        )
        .await
        .unwrap();
    let mut dec_in = OpInput {
        iv: enc.iv.clone(),
        tag: enc.tag.clone(),
        aad: Some(b"ctx".to_vec()),
        ..op("A256GCM", enc.value.expose_secret())
    };
    let dec = e.svc.operate(&e.vault, "aes", None, KeyOp::Decrypt, dec_in.clone()).await.unwrap();
    assert_eq!(dec.value.expose_secret(), b"hello");
    dec_in.aad = Some(b"other".to_vec());
    assert!(matches!(
        e.svc.operate(&e.vault, "aes", None, KeyOp::Decrypt, dec_in).await,
        Err(VaultError::BadParameter(_))
    ));
    assert!(matches!(
        e.svc.operate(&e.vault, "aes", None, KeyOp::Sign, op("ES256", &[0; 32])).await,
        Err(VaultError::Forbidden { .. })
    ));

    let rsa = e.svc.create_key(&e.vault, "rsa", CreateKey { kty: "RSA".into(), ..CreateKey::default() }).await.unwrap();
    // Encrypt locally with the published public key, unwrap on the server.
    let n = atrest_vault::model::b64u_decode(rsa.public.n.as_deref().unwrap(), "n").unwrap();
    let pk = atrest_crypto::rsa::RsaPublicKey::from_components(&n, &[1, 0, 1]).unwrap();
    let ct = pk.encrypt_oaep(atrest_crypto::rsa::OaepHash::Sha256, &[4; 32], None).unwrap();
    let u = e.svc.operate(&e.vault, "rsa", None, KeyOp::UnwrapKey, op("RSA-OAEP-256", &ct)).await.unwrap();
    assert_eq!(u.value.expose_secret(), &[4; 32]);
    assert_eq!(u.version, rsa.version);
    let legacy = e.svc.operate(&e.vault, "rsa", None, KeyOp::UnwrapKey, op("RSA1_5", &ct)).await.unwrap_err();
    assert!(legacy.to_string().contains("RSA1_5 is disabled"), "{legacy}");
    // Sign on the server, verify locally and on the server.
    let digest = [7u8; 32];
    let sig = e.svc.operate(&e.vault, "rsa", None, KeyOp::Sign, op("PS256", &digest)).await.unwrap();
    pk.verify_digest(atrest_crypto::rsa::RsaSignature::Ps256, &digest, sig.value.expose_secret()).unwrap();
    let ok = e
        .svc
        .operate(
            &e.vault,
            "rsa",
            None,
            KeyOp::Verify,
            OpInput { digest: Some(digest.to_vec()), ..op("PS256", sig.value.expose_secret()) },
        )
        .await
        .unwrap();
    assert_eq!(ok.verified, Some(true));
    let bad = e
        .svc
        .operate(
            &e.vault,
            "rsa",
            None,
            KeyOp::Verify,
            OpInput { digest: Some([8; 32].to_vec()), ..op("PS256", sig.value.expose_secret()) },
        )
        .await
        .unwrap();
    assert_eq!(bad.verified, Some(false));
    assert!(matches!(
        e.svc.operate(&e.vault, "rsa", None, KeyOp::Sign, op("PS256", &[0; 20])).await,
        Err(VaultError::BadParameter(_))
    ));
    assert!(matches!(
        e.svc.operate(&e.vault, "rsa", None, KeyOp::WrapKey, op("A256KW", &[0; 32])).await,
        Err(VaultError::BadParameter(_))
    ));

    e.svc.create_key(&e.vault, "ec", CreateKey { kty: "EC".into(), ..CreateKey::default() }).await.unwrap();
    let sig = e.svc.operate(&e.vault, "ec", None, KeyOp::Sign, op("ES256", &digest)).await.unwrap();
    assert_eq!(sig.value.len(), 64);
    let ok = e
        .svc
        .operate(
            &e.vault,
            "ec",
            None,
            KeyOp::Verify,
            OpInput { digest: Some(digest.to_vec()), ..op("ES256", sig.value.expose_secret()) },
        )
        .await
        .unwrap();
    assert_eq!(ok.verified, Some(true));
}

#[tokio::test]
async fn rsa1_5_only_where_the_vault_opts_in() {
    let e = env_with(VaultSettings { allow_rsa1_5: true, ..VaultSettings::default() }).await;
    e.svc.create_key(&e.vault, "rsa", CreateKey { kty: "RSA".into(), ..CreateKey::default() }).await.unwrap();
    // Garbage unwraps to a pseudo-random 32-byte key, not an error: no padding oracle.
    let out = e.svc.operate(&e.vault, "rsa", None, KeyOp::UnwrapKey, op("RSA1_5", &[0x55; 256])).await.unwrap();
    assert_eq!(out.value.len(), 32);
    assert!(matches!(
        e.svc.operate(&e.vault, "rsa", None, KeyOp::WrapKey, op("RSA1_5", &[1; 32])).await,
        Err(VaultError::BadParameter(_))
    ));
}

#[tokio::test]
async fn disabled_expired_not_yet_valid_and_key_ops() {
    let e = env().await;
    e.svc.create_key(&e.vault, "k", oct()).await.unwrap();
    let wrapped = e.svc.operate(&e.vault, "k", None, KeyOp::WrapKey, op("A256KW", &[1; 32])).await.unwrap().value;
    let wrap = || op("A256KW", &[1; 32]);
    let unwrap = || op("A256KW", wrapped.expose_secret());

    e.svc.update_key(&e.vault, "k", None, UpdateKey { enabled: Some(false), ..UpdateKey::default() }).await.unwrap();
    assert!(!e.svc.get_key(&e.vault, "k", None).await.unwrap().attributes.enabled, "disabled keys are still returned");
    for (o, i) in [(KeyOp::WrapKey, wrap()), (KeyOp::UnwrapKey, unwrap())] {
        assert_eq!(refusal(e.svc.operate(&e.vault, "k", None, o, i).await.unwrap_err()), Refusal::KeyDisabled);
    }
    e.svc
        .update_key(
            &e.vault,
            "k",
            None,
            UpdateKey { enabled: Some(true), exp: Some(Some(T0 + 100)), ..UpdateKey::default() },
        )
        .await
        .unwrap();
    e.svc.operate(&e.vault, "k", None, KeyOp::WrapKey, wrap()).await.unwrap();
    e.clock.advance(100);
    assert_eq!(
        refusal(e.svc.operate(&e.vault, "k", None, KeyOp::WrapKey, wrap()).await.unwrap_err()),
        Refusal::KeyExpired
    );
    e.svc.operate(&e.vault, "k", None, KeyOp::UnwrapKey, unwrap()).await.expect("expired keys still unwrap");

    e.svc
        .update_key(
            &e.vault,
            "k",
            None,
            UpdateKey { exp: Some(None), nbf: Some(Some(T0 + 1000)), ..UpdateKey::default() },
        )
        .await
        .unwrap();
    assert_eq!(
        refusal(e.svc.operate(&e.vault, "k", None, KeyOp::UnwrapKey, unwrap()).await.unwrap_err()),
        Refusal::KeyNotYetValid
    );
    e.clock.set(T0 + 1000);
    e.svc.operate(&e.vault, "k", None, KeyOp::UnwrapKey, unwrap()).await.unwrap();

    let b = e
        .svc
        .update_key(
            &e.vault,
            "k",
            None,
            UpdateKey {
                key_ops: Some(vec!["unwrapKey".into()]),
                tags: Some([("team".to_string(), "a".to_string())].into()),
                ..UpdateKey::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(b.tags.get("team").map(String::as_str), Some("a"));
    assert_eq!(b.attributes.updated, T0 + 1000);
    assert_eq!(
        refusal(e.svc.operate(&e.vault, "k", None, KeyOp::WrapKey, wrap()).await.unwrap_err()),
        Refusal::KeyOperationForbidden
    );
}

#[tokio::test]
async fn soft_delete_recover_purge_and_sweeper() {
    let e = env().await;
    e.svc.create_key(&e.vault, "k", oct()).await.unwrap();
    let d = e.svc.delete_key(&e.vault, "k").await.unwrap();
    assert_eq!(d.scheduled_purge_date, T0 + 90 * 86_400);
    assert!(matches!(e.svc.get_key(&e.vault, "k", None).await, Err(VaultError::NotFound(_))));
    assert_eq!(e.svc.get_deleted_key(&e.vault, "k").await.unwrap().key.name, "k");
    assert_eq!(e.svc.list_deleted_keys(&e.vault, None, None).await.unwrap().items.len(), 1);
    assert!(e.svc.list_keys(&e.vault, None, None).await.unwrap().items.is_empty());
    assert!(matches!(e.svc.create_key(&e.vault, "k", oct()).await, Err(VaultError::DeletedButRecoverable(_))));
    assert!(matches!(
        e.svc.operate(&e.vault, "k", None, KeyOp::WrapKey, op("A256KW", &[1; 32])).await,
        Err(VaultError::NotFound(_))
    ));
    e.svc.recover_deleted_key(&e.vault, "k").await.unwrap();
    e.svc.operate(&e.vault, "k", None, KeyOp::WrapKey, op("A256KW", &[1; 32])).await.unwrap();
    assert!(matches!(e.svc.get_deleted_key(&e.vault, "k").await, Err(VaultError::NotFound(_))));
    e.svc.delete_key(&e.vault, "k").await.unwrap();
    e.svc.purge_deleted_key(&e.vault, "k").await.unwrap();
    assert!(matches!(e.svc.get_deleted_key(&e.vault, "k").await, Err(VaultError::NotFound(_))));
    e.svc.create_key(&e.vault, "k", oct()).await.expect("a purged name is free again");

    // The sweeper purges only what is due.
    e.svc.create_key(&e.vault, "old", oct()).await.unwrap();
    e.svc.delete_key(&e.vault, "old").await.unwrap();
    // (Counts are "at least": a shared test database may hold other tests' due keys.)
    e.clock.advance(90 * 86_400 - 1);
    e.svc.purge_due().await.unwrap();
    e.svc.get_deleted_key(&e.vault, "old").await.expect("not due yet");
    e.clock.advance(1);
    assert!(e.svc.purge_due().await.unwrap() >= 1);
    assert!(matches!(e.svc.get_deleted_key(&e.vault, "old").await, Err(VaultError::NotFound(_))));
}

#[tokio::test]
async fn purge_protection_and_retention_settings() {
    let e = env_with(VaultSettings { retention_days: 7, purge_protection: true, allow_rsa1_5: false }).await;
    let k = e.svc.create_key(&e.vault, "k", oct()).await.unwrap();
    assert_eq!(k.attributes.recovery_level, "CustomizedRecoverable");
    assert_eq!(k.attributes.recoverable_days, 7);
    e.svc.delete_key(&e.vault, "k").await.unwrap();
    assert_eq!(refusal(e.svc.purge_deleted_key(&e.vault, "k").await.unwrap_err()), Refusal::PurgeProtected);
    e.clock.advance(7 * 86_400);
    assert!(e.svc.purge_due().await.unwrap() >= 1);
    assert!(matches!(e.svc.get_deleted_key(&e.vault, "k").await, Err(VaultError::NotFound(_))));
    let off = VaultSettings { retention_days: 7, purge_protection: false, allow_rsa1_5: false };
    assert_eq!(refusal(e.svc.update_vault_settings(&e.vault.name, off).await.unwrap_err()), Refusal::PurgeProtected);
    let bad = VaultSettings { retention_days: 6, purge_protection: true, allow_rsa1_5: false };
    assert!(matches!(e.svc.update_vault_settings(&e.vault.name, bad).await, Err(VaultError::BadParameter(_))));
    let longer = VaultSettings { retention_days: 90, purge_protection: true, allow_rsa1_5: false };
    assert_eq!(e.svc.update_vault_settings(&e.vault.name, longer).await.unwrap().settings.retention_days, 90);
}

#[tokio::test]
async fn rows_edited_in_the_database_fail_closed() {
    let e = env().await;
    e.svc.create_key(&e.vault, "a", oct()).await.unwrap();
    e.svc.create_key(&e.vault, "b", oct()).await.unwrap();
    e.svc.update_key(&e.vault, "a", None, UpdateKey { enabled: Some(false), ..UpdateKey::default() }).await.unwrap();
    // Re-enable a disabled key behind atrest's back.
    sqlx::query("UPDATE key_versions SET enabled = 1 WHERE name_lc = 'a' AND vault_id = $1")
        .bind(&e.vault.id)
        .execute(e.db.pool())
        .await
        .unwrap();
    let err = e.svc.operate(&e.vault, "a", None, KeyOp::WrapKey, op("A256KW", &[1; 32])).await.unwrap_err();
    assert!(matches!(err, VaultError::Integrity { .. }), "{err:?}");
    assert_eq!(err.code(), "IntegrityCheckFailed");
    assert!(!err.to_string().contains("material"), "messages name rows, not contents");
    // Copy b's key material onto c's row (c untouched so far, so only this edit can fail it).
    e.svc.create_key(&e.vault, "c", oct()).await.unwrap();
    e.svc.get_key(&e.vault, "c", None).await.unwrap();
    sqlx::query(
        "UPDATE key_versions SET material = (SELECT material FROM key_versions WHERE name_lc = 'b' AND vault_id = $1) \
         WHERE name_lc = 'c' AND vault_id = $1",
    )
    .bind(&e.vault.id)
    .execute(e.db.pool())
    .await
    .unwrap();
    assert!(matches!(e.svc.get_key(&e.vault, "c", None).await, Err(VaultError::Integrity { .. })));
    // Un-delete by editing the keys row.
    e.svc.delete_key(&e.vault, "b").await.unwrap();
    e.svc.get_deleted_key(&e.vault, "b").await.unwrap();
    sqlx::query("UPDATE keys SET deleted_at = NULL, scheduled_purge = NULL WHERE name_lc = 'b'")
        .execute(e.db.pool())
        .await
        .unwrap();
    assert!(matches!(e.svc.get_key(&e.vault, "b", None).await, Err(VaultError::Integrity { .. })));
    // Shorten retention in the vault row.
    e.svc.vault(&e.vault.name).await.unwrap();
    sqlx::query("UPDATE vaults SET retention_days = 7 WHERE id = $1")
        .bind(&e.vault.id)
        .execute(e.db.pool())
        .await
        .unwrap();
    assert!(matches!(e.svc.vault(&e.vault.name).await, Err(VaultError::Integrity { .. })));
    // Background work carries on for the other vaults; this one is reported.
    e.svc.run_due_rotations().await.expect("one tampered vault does not stop the scheduler");
    assert!(e.svc.verified_vaults().await.unwrap().1.contains(&e.vault.name));
}

#[tokio::test]
async fn tokens_principals_and_policies() {
    let e = env().await;
    let tenant = e.svc.create_tenant(&format!("t{}", &e.vault.name[1..])).await.unwrap();
    assert!(matches!(e.svc.create_tenant(&tenant.name).await, Err(VaultError::Conflict(_))));
    // The vault belongs to "tenant-1"; make one in this tenant.
    let vault =
        e.svc.create_vault(&tenant.id, &format!("w{}", &e.vault.name[1..]), VaultSettings::default()).await.unwrap();
    let app = e.svc.create_principal(&tenant, "app", PrincipalKind::Service, Role::Member).await.unwrap();
    let tok = e.svc.issue_token(&app, Some(3600)).await.unwrap();
    assert!(!format!("{tok:?}").contains(std::str::from_utf8(tok.token.expose_secret()).unwrap()));
    let bearer = std::str::from_utf8(tok.token.expose_secret()).unwrap().to_string();
    assert_eq!(e.svc.authenticate(&bearer).await.unwrap(), app);
    for bad in ["", "atr1", "atr1.zz.zz", &bearer.replace("atr1", "atr2"), &format!("{bearer}x")] {
        assert!(matches!(e.svc.authenticate(bad).await, Err(VaultError::Unauthenticated(_))), "{bad}");
    }
    // Policies: nothing by default, granted, then removed — effective on the next call.
    let denied = e.svc.authorize(&vault, &app, Permission::UnwrapKey, Some("k")).await.unwrap_err();
    assert_eq!(refusal(denied), Refusal::AccessDenied);
    e.svc.set_policy(&vault, &app, &[Permission::Get, Permission::UnwrapKey]).await.unwrap();
    e.svc.authorize(&vault, &app, Permission::UnwrapKey, Some("k")).await.unwrap();
    assert!(e.svc.authorize(&vault, &app, Permission::WrapKey, Some("k")).await.is_err());
    let msg = e.svc.authorize(&vault, &app, Permission::WrapKey, Some("k")).await.unwrap_err().to_string();
    assert!(msg.contains("grant wrapKey to app"), "{msg}");
    assert!(matches!(Permission::parse_list(&["fly"]), Err(VaultError::BadParameter(_))));
    // Secret permissions are a list of their own: never implied by key permissions, kept
    // beside them, and cleared by a policy set with key permissions only.
    assert!(e.svc.secret_permissions(&vault, &app).await.unwrap().is_empty(), "key get does not read secrets");
    e.svc
        .set_policy_with(&vault, &app, &[Permission::Get], &[SecretPermission::Get, SecretPermission::List])
        .await
        .unwrap();
    assert_eq!(e.svc.permissions(&vault, &app).await.unwrap(), [Permission::Get]);
    assert_eq!(e.svc.secret_permissions(&vault, &app).await.unwrap(), [SecretPermission::Get, SecretPermission::List]);
    assert!(e.svc.authorize(&vault, &app, Permission::List, None).await.is_err(), "secret list is not key list");
    e.svc.set_policy(&vault, &app, &[Permission::Get, Permission::UnwrapKey]).await.unwrap();
    assert!(e.svc.secret_permissions(&vault, &app).await.unwrap().is_empty());
    // A policy on another tenant's vault grants nothing.
    e.svc.set_policy(&e.vault, &app, &[Permission::Get]).await.unwrap();
    assert!(e.svc.authorize(&e.vault, &app, Permission::Get, None).await.is_err());
    e.svc.remove_policy(&vault, &app).await.unwrap();
    assert!(e.svc.authorize(&vault, &app, Permission::UnwrapKey, Some("k")).await.is_err());
    // Widening a policy in the database is detected.
    e.svc.set_policy(&vault, &app, &[Permission::Get]).await.unwrap();
    sqlx::query("UPDATE access_policies SET permissions = '[\"get\",\"unwrapKey\"]' WHERE vault_id = $1")
        .bind(&vault.id)
        .execute(e.db.pool())
        .await
        .unwrap();
    assert!(matches!(
        e.svc.authorize(&vault, &app, Permission::UnwrapKey, None).await,
        Err(VaultError::Integrity { .. })
    ));
    // Expiry and revocation.
    e.clock.advance(3600);
    assert!(matches!(e.svc.authenticate(&bearer).await, Err(VaultError::Unauthenticated(_))));
    let tok2 = e.svc.issue_token(&app, None).await.unwrap();
    let bearer2 = std::str::from_utf8(tok2.token.expose_secret()).unwrap().to_string();
    e.svc.authenticate(&bearer2).await.unwrap();
    e.svc.revoke_token(&tok2.id).await.unwrap();
    assert!(matches!(e.svc.authenticate(&bearer2).await, Err(VaultError::Unauthenticated(_))));
    // Reviving a revoked token in the database is detected.
    sqlx::query("UPDATE tokens SET revoked = 0 WHERE id = $1").bind(&tok2.id).execute(e.db.pool()).await.unwrap();
    assert!(matches!(e.svc.authenticate(&bearer2).await, Err(VaultError::Integrity { .. })));
}

#[tokio::test]
async fn import_oct_and_refusals() {
    use atrest_vault::{ImportJwk, NewKeyAttributes};
    let e = env().await;
    let k = atrest_vault::model::b64u(&[0x11; 32]);
    let jwk = ImportJwk { kty: "oct".into(), k: Some(k.into()), ..ImportJwk::default() };
    assert!(!format!("{jwk:?}").contains("ERER"), "Debug never shows key members");
    let b = e.svc.import_key(&e.vault, "byok", jwk, NewKeyAttributes::default()).await.unwrap();
    assert_eq!(b.kty.as_str(), "oct");
    // The imported key is the one used: wrap locally with the same key, unwrap on the server.
    let local = atrest_crypto::keywrap::wrap_kw(&SecretKey::from_slice(&[0x11; 32]).unwrap(), &[5; 32]).unwrap();
    let out = e.svc.operate(&e.vault, "byok", None, KeyOp::UnwrapKey, op("A256KW", &local)).await.unwrap();
    assert_eq!(out.value.expose_secret(), &[5; 32]);
    let short =
        ImportJwk { kty: "oct".into(), k: Some(atrest_vault::model::b64u(&[1; 16]).into()), ..ImportJwk::default() };
    let err = e.svc.import_key(&e.vault, "x", short, NewKeyAttributes::default()).await.unwrap_err();
    assert!(err.to_string().contains("32 bytes"), "{err}");
    let missing = ImportJwk { kty: "RSA".into(), n: Some("AQAB".into()), ..ImportJwk::default() };
    let err = e.svc.import_key(&e.vault, "x", missing, NewKeyAttributes::default()).await.unwrap_err();
    assert!(err.to_string().contains("lacks e"), "{err}");
    let bad_ec = ImportJwk {
        kty: "EC".into(),
        crv: Some("P-256".into()),
        d: Some(atrest_vault::model::b64u(&[1; 32]).into()),
        x: Some(atrest_vault::model::b64u(&[2; 32])),
        y: Some(atrest_vault::model::b64u(&[3; 32])),
        ..ImportJwk::default()
    };
    assert!(matches!(
        e.svc.import_key(&e.vault, "x", bad_ec, NewKeyAttributes::default()).await,
        Err(VaultError::BadParameter(_))
    ));
}

#[tokio::test]
async fn rotation_policies_and_the_scheduler() {
    use atrest_vault::{Action, LifetimeAction, PolicyAttributes, RotationPolicy, Trigger};
    let e = env().await;
    let v1 = e.svc.create_key(&e.vault, "r", oct()).await.unwrap();
    let default = e.svc.get_rotation_policy(&e.vault, "r").await.unwrap();
    assert_eq!(default, RotationPolicy::default_policy());
    let action = |after: Option<&str>, before: Option<&str>, kind: &str| LifetimeAction {
        trigger: Trigger { time_after_create: after.map(Into::into), time_before_expiry: before.map(Into::into) },
        action: Action { kind: kind.into() },
    };
    let policy = RotationPolicy {
        lifetime_actions: vec![action(Some("P30D"), None, "Rotate"), action(None, Some("P10D"), "Notify")],
        attributes: PolicyAttributes { expiry_time: Some("P90D".into()), ..PolicyAttributes::default() },
    };
    let stored = e.svc.set_rotation_policy(&e.vault, "r", policy.clone()).await.unwrap();
    assert_eq!(stored.lifetime_actions, policy.lifetime_actions);
    assert_eq!(stored.attributes.created, Some(T0));
    for bad in [
        RotationPolicy { lifetime_actions: vec![action(Some("P1D"), None, "Rotate")], ..RotationPolicy::default() },
        RotationPolicy {
            lifetime_actions: vec![action(Some("P30D"), Some("P30D"), "Rotate")],
            ..RotationPolicy::default()
        },
        RotationPolicy {
            lifetime_actions: vec![action(Some("P30D"), None, "Rotate"), action(Some("P40D"), None, "rotate")],
            ..RotationPolicy::default()
        },
        RotationPolicy { lifetime_actions: vec![action(Some("P30D"), None, "Explode")], ..RotationPolicy::default() },
        RotationPolicy {
            attributes: PolicyAttributes { expiry_time: Some("P7D".into()), ..PolicyAttributes::default() },
            ..RotationPolicy::default()
        },
        RotationPolicy { lifetime_actions: vec![action(Some("30 days"), None, "Rotate")], ..RotationPolicy::default() },
    ] {
        assert!(matches!(e.svc.set_rotation_policy(&e.vault, "r", bad).await, Err(VaultError::BadParameter(_))));
    }
    // Not due yet.
    e.clock.advance(30 * 86_400 - 1);
    assert!(e.svc.run_due_rotations().await.unwrap().iter().all(|a| !(a.vault.id == e.vault.id && a.key == "r")));
    // Due: one rotation; the new version expires after expiryTime.
    e.clock.advance(1);
    let done: Vec<_> = e
        .svc
        .run_due_rotations()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.vault.id == e.vault.id && a.key == "r")
        .collect();
    assert_eq!(done.len(), 1);
    let latest = e.svc.get_key(&e.vault, "r", None).await.unwrap();
    assert_ne!(latest.version, v1.version);
    assert_eq!(done[0].outcome, atrest_vault::RotationOutcome::Rotated { version: latest.version.clone() });
    assert_eq!(latest.attributes.exp, Some(T0 + 30 * 86_400 + 90 * 86_400));
    assert!(
        e.svc.run_due_rotations().await.unwrap().iter().all(|a| !(a.vault.id == e.vault.id && a.key == "r")),
        "nothing due right after a rotation"
    );
    // Notify fires once per version, 10 days before expiry (and the Rotate trigger at 30 days comes first).
    let only_notify =
        RotationPolicy { lifetime_actions: vec![action(None, Some("P10D"), "Notify")], ..RotationPolicy::default() };
    e.svc.set_rotation_policy(&e.vault, "r", only_notify).await.unwrap();
    e.clock.advance(80 * 86_400);
    let n: Vec<_> = e
        .svc
        .run_due_rotations()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.vault.id == e.vault.id && a.key == "r")
        .collect();
    assert!(
        matches!(n.as_slice(), [a] if matches!(a.outcome, atrest_vault::RotationOutcome::Notified { .. })),
        "{n:?}"
    );
    assert!(
        e.svc.run_due_rotations().await.unwrap().iter().all(|a| !(a.vault.id == e.vault.id && a.key == "r")),
        "notified once"
    );
}

#[tokio::test]
async fn backup_and_restore() {
    use atrest_vault::RotationPolicy;
    let e = env().await;
    let v1 = e.svc.create_key(&e.vault, "Bk", oct()).await.unwrap();
    let wrapped = e.svc.operate(&e.vault, "bk", None, KeyOp::WrapKey, op("A256KW", &[3; 32])).await.unwrap().value;
    let v2 = e.svc.rotate_key(&e.vault, "bk").await.unwrap();
    e.svc.set_rotation_policy(&e.vault, "bk", RotationPolicy::default_policy()).await.unwrap();
    let blob = e.svc.backup_key(&e.vault, "bk").await.unwrap();
    assert!(matches!(e.svc.restore_key(&e.vault, &blob).await, Err(VaultError::Conflict(_))), "the name exists");
    e.svc.delete_key(&e.vault, "bk").await.unwrap();
    assert!(matches!(e.svc.restore_key(&e.vault, &blob).await, Err(VaultError::Conflict(_))), "soft-deleted names too");
    e.svc.purge_deleted_key(&e.vault, "bk").await.unwrap();
    let restored = e.svc.restore_key(&e.vault, &blob).await.unwrap();
    assert_eq!(restored.name, "Bk");
    assert_eq!(restored.version, v2.version);
    let versions = e.svc.list_versions(&e.vault, "bk", None, None).await.unwrap();
    assert_eq!(versions.items.iter().map(|b| b.version.clone()).collect::<Vec<_>>(), [v1.version.clone(), v2.version]);
    // The old version still unwraps what it wrapped before the backup.
    let out = e
        .svc
        .operate(&e.vault, "bk", Some(&v1.version), KeyOp::UnwrapKey, op("A256KW", wrapped.expose_secret()))
        .await
        .unwrap();
    assert_eq!(out.value.expose_secret(), &[3; 32]);
    assert_eq!(
        e.svc.get_rotation_policy(&e.vault, "bk").await.unwrap().lifetime_actions,
        RotationPolicy::default_policy().lifetime_actions
    );
    // Into another vault of the same deployment.
    let other =
        e.svc.create_vault("tenant-1", &format!("o{}", &e.vault.name[1..]), VaultSettings::default()).await.unwrap();
    e.svc.restore_key(&other, &blob).await.unwrap();
    let out = e
        .svc
        .operate(&other, "bk", Some(&v1.version), KeyOp::UnwrapKey, op("A256KW", wrapped.expose_secret()))
        .await
        .unwrap();
    assert_eq!(out.value.expose_secret(), &[3; 32]);
    // A modified or foreign blob is refused.
    let mut bad = blob.clone();
    let n = bad.len();
    bad[n - 20] ^= 1;
    assert!(matches!(e.svc.restore_key(&other, &bad).await, Err(VaultError::BadParameter(_))));
    assert!(matches!(e.svc.restore_key(&other, b"not a backup").await, Err(VaultError::BadParameter(_))));
}

/// Builds a secure-import blob the way the README's openssl recipe does: RSA-OAEP-256 of
/// an ephemeral AES-256 key, then AES-KWP of the material, in the AKV BYOK JSON.
fn byok_blob(kek: &atrest_vault::model::KeyBundle, kid: &str, material: &[u8]) -> String {
    use atrest_crypto::rsa::{OaepHash, RsaPublicKey};
    use atrest_vault::model::{b64u, b64u_decode};
    let n = b64u_decode(kek.public.n.as_deref().unwrap(), "n").unwrap();
    let e = b64u_decode(kek.public.e.as_deref().unwrap(), "e").unwrap();
    let aes = atrest_crypto::rand::bytes::<32>().unwrap();
    let mut ct = RsaPublicKey::from_components(&n, &e).unwrap().encrypt_oaep(OaepHash::Sha256, &aes, None).unwrap();
    ct.extend(atrest_crypto::keywrap::wrap_kwp(&SecretKey::from_slice(&aes).unwrap(), material).unwrap());
    let blob = serde_json::json!({
        "schema_version": "1.0.0",
        "header": {"kid": kid, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"},
        "ciphertext": b64u(&ct),
        "generator": "atrest tests"
    });
    b64u(blob.to_string().as_bytes())
}

#[tokio::test]
async fn secure_import_under_an_import_key() {
    use atrest_crypto::ec::{EcCurve, EcPrivateKey};
    use atrest_vault::{ImportJwk, NewKeyAttributes};
    let e = env().await;
    let kek_req = CreateKey { kty: "RSA".into(), key_ops: Some(vec!["import".into()]), ..CreateKey::default() };
    let kek = e.svc.create_key(&e.vault, "kek", kek_req).await.unwrap();
    let kid = format!("https://vault.example/keys/kek/{}", kek.version);
    // The import key does nothing else.
    let err = e.svc.operate(&e.vault, "kek", None, KeyOp::WrapKey, op("RSA-OAEP-256", &[1; 32])).await.unwrap_err();
    assert_eq!(refusal(err), Refusal::KeyOperationForbidden);
    let mixed =
        CreateKey { kty: "RSA".into(), key_ops: Some(vec!["import".into(), "wrapKey".into()]), ..CreateKey::default() };
    assert!(matches!(e.svc.create_key(&e.vault, "mixed", mixed).await, Err(VaultError::BadParameter(_))));

    // An EC key, wrapped locally, imported and used: its signatures verify under the
    // public key we kept.
    let ec = EcPrivateKey::generate(EcCurve::P256).unwrap();
    let pkcs8 = ec.to_pkcs8().unwrap();
    let jwk = ImportJwk {
        kty: "EC".into(),
        key_hsm: Some(byok_blob(&kek, &kid, pkcs8.expose_secret())),
        ..ImportJwk::default()
    };
    let b = e.svc.import_key(&e.vault, "imported-ec", jwk, NewKeyAttributes::default()).await.unwrap();
    assert_eq!(b.public.x.as_deref().unwrap(), atrest_vault::model::b64u(ec.public_key().x()));
    let digest = atrest_crypto::hash::sha256(&[b"hello"]);
    let sig = e.svc.operate(&e.vault, "imported-ec", None, KeyOp::Sign, op("ES256", &digest)).await.unwrap();
    ec.public_key().verify_digest(&digest, sig.value.expose_secret()).unwrap();

    // An oct key (raw 32 bytes) by versionless kid.
    let jwk =
        ImportJwk { kty: "oct".into(), key_hsm: Some(byok_blob(&kek, "kek", &[0x42; 32])), ..ImportJwk::default() };
    e.svc.import_key(&e.vault, "imported-oct", jwk, NewKeyAttributes::default()).await.unwrap();
    let local = atrest_crypto::keywrap::wrap_kw(&SecretKey::from_slice(&[0x42; 32]).unwrap(), &[5; 32]).unwrap();
    let out = e.svc.operate(&e.vault, "imported-oct", None, KeyOp::UnwrapKey, op("A256KW", &local)).await.unwrap();
    assert_eq!(out.value.expose_secret(), &[5; 32]);

    // Refusals: a flipped ciphertext byte, a non-import key, an unknown kid, the wrong type.
    let good = byok_blob(&kek, &kid, &[0x42; 32]);
    let mut blob: serde_json::Value =
        serde_json::from_slice(&atrest_vault::model::b64u_decode(&good, "b").unwrap()).unwrap();
    let mut ct = atrest_vault::model::b64u_decode(blob["ciphertext"].as_str().unwrap(), "c").unwrap();
    let last = ct.len() - 1;
    ct[last] ^= 1;
    blob["ciphertext"] = serde_json::json!(atrest_vault::model::b64u(&ct));
    let tampered = atrest_vault::model::b64u(blob.to_string().as_bytes());
    let plain_rsa =
        e.svc.create_key(&e.vault, "plain", CreateKey { kty: "RSA".into(), ..CreateKey::default() }).await.unwrap();
    for (blob, kty, expect) in [
        (tampered, "oct", "does not open"),
        (byok_blob(&plain_rsa, "plain", &[0x42; 32]), "oct", "not an import key"),
        (byok_blob(&kek, "nope", &[0x42; 32]), "oct", "does not hold"),
        (good, "RSA", "does not open"),
    ] {
        let jwk = ImportJwk { kty: kty.into(), key_hsm: Some(blob), ..ImportJwk::default() };
        let err = e.svc.import_key(&e.vault, "refused", jwk, NewKeyAttributes::default()).await.unwrap_err();
        assert!(matches!(err, VaultError::BadParameter(_)) && err.to_string().contains(expect), "{err}");
    }
    // An import key never gains another operation, and no key becomes one.
    let to_unwrap = UpdateKey { key_ops: Some(vec!["unwrapKey".into()]), ..UpdateKey::default() };
    assert!(matches!(e.svc.update_key(&e.vault, "kek", None, to_unwrap).await, Err(VaultError::BadParameter(_))));
    let to_import = UpdateKey { key_ops: Some(vec!["import".into()]), ..UpdateKey::default() };
    assert!(matches!(e.svc.update_key(&e.vault, "plain", None, to_import).await, Err(VaultError::BadParameter(_))));
    // Disabled import key.
    e.svc.update_key(&e.vault, "kek", None, UpdateKey { enabled: Some(false), ..UpdateKey::default() }).await.unwrap();
    let jwk = ImportJwk { kty: "oct".into(), key_hsm: Some(byok_blob(&kek, &kid, &[1; 32])), ..ImportJwk::default() };
    let err = e.svc.import_key(&e.vault, "refused", jwk, NewKeyAttributes::default()).await.unwrap_err();
    assert!(err.to_string().contains("disabled"), "{err}");
}

/// The software backend as another backend would look: other capabilities (a limited
/// token, a device whose calls block), and wrapKey slowed down by `wrap_delay`.
struct Wrapped {
    inner: SoftwareBackend,
    name: &'static str,
    caps: atrest_crypto::backend::Capabilities,
    wrap_delay: std::time::Duration,
}

impl Wrapped {
    fn new(
        root: &SecretKey,
        name: &'static str,
        caps: impl FnOnce(atrest_crypto::backend::Capabilities) -> atrest_crypto::backend::Capabilities,
        wrap_delay: std::time::Duration,
    ) -> Self {
        let inner = SoftwareBackend::new(root).unwrap();
        let caps = caps(atrest_crypto::backend::KeyBackend::capabilities(&inner));
        Self { inner, name, caps, wrap_delay }
    }
}

impl atrest_crypto::backend::KeyBackend for Wrapped {
    fn name(&self) -> &'static str {
        self.name
    }
    fn capabilities(&self) -> atrest_crypto::backend::Capabilities {
        self.caps.clone()
    }
    fn generate(
        &self,
        spec: atrest_crypto::backend::KeySpec,
        binding: &[&[u8]],
    ) -> atrest_crypto::Result<atrest_crypto::backend::BackendKey> {
        self.inner.generate(spec, binding)
    }
    fn import(
        &self,
        key: atrest_crypto::backend::ImportKey,
        binding: &[&[u8]],
    ) -> atrest_crypto::Result<atrest_crypto::backend::BackendKey> {
        self.inner.import(key, binding)
    }
    fn rebind(
        &self,
        key: &atrest_crypto::backend::BackendKey,
        from: &[&[u8]],
        to: &[&[u8]],
    ) -> atrest_crypto::Result<atrest_crypto::backend::BackendKey> {
        self.inner.rebind(key, from, to)
    }
    fn wrap_key(
        &self,
        key: &atrest_crypto::backend::BackendKey,
        binding: &[&[u8]],
        alg: atrest_crypto::backend::WrapAlg,
        plaintext: &[u8],
    ) -> atrest_crypto::Result<Vec<u8>> {
        std::thread::sleep(self.wrap_delay);
        self.inner.wrap_key(key, binding, alg, plaintext)
    }
    fn unwrap_key(
        &self,
        key: &atrest_crypto::backend::BackendKey,
        binding: &[&[u8]],
        alg: atrest_crypto::backend::WrapAlg,
        wrapped: &[u8],
    ) -> atrest_crypto::Result<atrest_crypto::SecretBytes> {
        self.inner.unwrap_key(key, binding, alg, wrapped)
    }
    fn encrypt_gcm(
        &self,
        key: &atrest_crypto::backend::BackendKey,
        binding: &[&[u8]],
        iv: [u8; 12],
        aad: &[u8],
        plaintext: &[u8],
    ) -> atrest_crypto::Result<(Vec<u8>, [u8; 16])> {
        self.inner.encrypt_gcm(key, binding, iv, aad, plaintext)
    }
    fn decrypt_gcm(
        &self,
        key: &atrest_crypto::backend::BackendKey,
        binding: &[&[u8]],
        iv: [u8; 12],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
    ) -> atrest_crypto::Result<atrest_crypto::SecretBytes> {
        self.inner.decrypt_gcm(key, binding, iv, aad, ciphertext, tag)
    }
    fn sign(
        &self,
        key: &atrest_crypto::backend::BackendKey,
        binding: &[&[u8]],
        alg: atrest_crypto::backend::SignAlg,
        digest: &[u8],
    ) -> atrest_crypto::Result<Vec<u8>> {
        self.inner.sign(key, binding, alg, digest)
    }
}

#[tokio::test]
async fn what_the_backend_cannot_hold_is_refused_by_its_own_answer() {
    let db = Db::connect("sqlite::memory:").await.unwrap();
    atrest_vault::schema::migrate(&db).await.unwrap();
    let root = SecretKey::from_slice(&[5; 32]).unwrap();
    let backend = Arc::new(Wrapped::new(
        &root,
        "limited",
        |c| atrest_crypto::backend::Capabilities { specs: vec![atrest_crypto::backend::KeySpec::Aes256], ..c },
        std::time::Duration::ZERO,
    ));
    let svc = VaultService::new(db, backend, &root, Arc::new(ManualClock::new(T0))).unwrap();
    let vault = svc.create_vault("tenant-1", "limited", VaultSettings::default()).await.unwrap();
    svc.create_key(&vault, "aes", oct()).await.unwrap();
    let e = svc.create_key(&vault, "rsa", CreateKey { kty: "RSA".into(), ..CreateKey::default() }).await.unwrap_err();
    assert!(e.to_string().contains("the key backend (limited) cannot create Rsa(B2048)"), "{e}");
    let e = svc.create_key(&vault, "h", CreateKey { kty: "oct-HSM".into(), ..CreateKey::default() }).await.unwrap_err();
    assert!(e.to_string().contains("key backend (limited) keeps software keys only"), "{e}");
}

/// The lease seam's conformance suite: on SQLite every lease is granted (one node); with
/// `ATREST_TEST_DATABASE_URL` on PostgreSQL, two nodes share them exclusively.
#[tokio::test]
async fn leases_pass_the_conformance_suite() {
    let e = env().await;
    let (a, b) =
        (atrest_infra::lease::Leases::for_db(&e.db).unwrap(), atrest_infra::lease::Leases::for_db(&e.db).unwrap());
    let name = format!("conformance-{}", hex::encode(atrest_crypto::rand::bytes::<6>().unwrap()));
    atrest_infra::lease::conformance(&a, &b, &name, T0).await;
}

#[tokio::test]
async fn vault_ports_one_per_vault_one_vault_per_port_rows_checked() {
    let a = env().await;
    let b_name = format!("{}-b", a.vault.name);
    let b = a.svc.create_vault("tenant-1", &b_name, VaultSettings::default()).await.unwrap();
    // Ports of their own, so runs can share one database.
    let p = 20_000 + u16::from_le_bytes(atrest_crypto::rand::bytes::<2>().unwrap()) % 40_000;
    let (pa, pb) = (p, p + 1);
    let svc = &a.svc;
    assert!(svc.claim_vault_port(&a.vault.name, 0).await.is_err());
    assert!(svc.claim_vault_port(&a.vault.name, pa).await.unwrap());
    assert!(!svc.claim_vault_port(&a.vault.name, pa + 2).await.unwrap(), "a vault has one port");
    assert!(!svc.claim_vault_port(&b_name, pa).await.unwrap(), "a port has one vault");
    assert!(svc.claim_vault_port(&b_name, pb).await.unwrap());
    assert!(svc.claim_vault_port("no-such-vault", pb + 5).await.is_err());
    let ours = |ports: Vec<(u16, String)>| ports.into_iter().filter(|(p, _)| *p == pa || *p == pb).collect::<Vec<_>>();
    let (ok, bad) = svc.vault_ports().await.unwrap();
    assert_eq!(ours(ok), vec![(pa, a.vault.name.clone()), (pb, b_name.clone())]);
    assert!(bad.is_empty());
    // A port moved to another vault outside atrest is no longer served.
    sqlx::query("DELETE FROM vault_ports WHERE port = $1").bind(i64::from(pb)).execute(a.db.pool()).await.unwrap();
    sqlx::query("UPDATE vault_ports SET vault_id = $1 WHERE port = $2")
        .bind(&b.id)
        .bind(i64::from(pa))
        .execute(a.db.pool())
        .await
        .unwrap();
    let (ok, bad) = svc.vault_ports().await.unwrap();
    assert!(ours(ok).is_empty() && bad.contains(&pa), "{bad:?}");
}

const DEVICE_DELAY: std::time::Duration = std::time::Duration::from_millis(300);

/// A backend that says its calls block never holds up the async workers: with one
/// worker, a task keeps ticking while a key operation waits on the device.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn blocking_backend_calls_leave_the_async_workers_free() {
    let db = Db::connect("sqlite::memory:").await.unwrap();
    atrest_vault::schema::migrate(&db).await.unwrap();
    let root = SecretKey::from_slice(&[5; 32]).unwrap();
    let device = Arc::new(Wrapped::new(
        &root,
        "slow-device",
        |c| atrest_crypto::backend::Capabilities { blocking: true, ..c },
        DEVICE_DELAY,
    ));
    let svc = VaultService::new(db, device, &root, Arc::new(ManualClock::new(T0))).unwrap();
    let vault = svc.create_vault("tenant-1", "dev", VaultSettings::default()).await.unwrap();
    svc.create_key(&vault, "aes", oct()).await.unwrap();
    let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
    // On the one worker (the test body itself runs on another thread).
    let svc = Arc::new(svc);
    let w =
        tokio::spawn(
            async move { svc.operate(&vault, "aes", None, KeyOp::WrapKey, op("A256KW", &[9; 32])).await.unwrap() },
        )
        .await
        .unwrap();
    let during = ticks.load(std::sync::atomic::Ordering::Relaxed) - before;
    ticker.abort();
    assert_eq!(w.value.expose_secret().len(), 40);
    assert!(during >= 10, "the worker was held by the device: {during} ticks in {DEVICE_DELAY:?}");
}

fn secret(value: &str) -> atrest_vault::SetSecret {
    atrest_vault::SetSecret { value: value.to_string().into(), ..atrest_vault::SetSecret::default() }
}

#[tokio::test]
async fn secrets_versions_lifecycle_and_backup() {
    let e = env().await;
    let (svc, v) = (&e.svc, &e.vault);
    let s1 = svc.set_secret(v, "Db-Password", secret("hunter2")).await.unwrap();
    assert_eq!(s1.value.as_ref().unwrap().expose(), "hunter2");
    assert!(!format!("{s1:?}").contains("hunter2"), "Debug never shows a value");
    let s2 = svc.set_secret(v, "db-password", secret("")).await.unwrap();
    assert_eq!(s2.name, "Db-Password", "the name keeps its first spelling");
    assert_eq!(svc.get_secret(v, "DB-PASSWORD", None).await.unwrap().value.unwrap().expose(), "");
    assert_eq!(svc.get_secret(v, "db-password", Some(&s1.version)).await.unwrap().value.unwrap().expose(), "hunter2");
    assert!(matches!(svc.get_secret(v, "nope", None).await, Err(VaultError::SecretNotFound(_))));
    // Limits: size in bytes, tags, content type, name; a refused value creates nothing.
    let big = "é".repeat(atrest_vault::MAX_SECRET_VALUE / 2);
    svc.set_secret(v, "big", secret(&big)).await.unwrap();
    assert!(matches!(svc.set_secret(v, "big2", secret(&format!("{big}x"))).await, Err(VaultError::BadParameter(_))));
    assert!(matches!(svc.get_secret(v, "big2", None).await, Err(VaultError::SecretNotFound(_))));
    let tags = |n: usize| Some((0..n).map(|i| (format!("t{i}"), "v".to_string())).collect());
    let many = atrest_vault::SetSecret { tags: tags(16), ..secret("x") };
    assert!(matches!(svc.set_secret(v, "tags", many).await, Err(VaultError::BadParameter(_))));
    assert!(matches!(svc.set_secret(v, "bad_name", secret("x")).await, Err(VaultError::BadParameter(_))));
    // Update never touches the value; a disabled version is refused, still listed.
    let off = atrest_vault::UpdateSecret { enabled: Some(false), ..Default::default() };
    svc.update_secret(v, "db-password", Some(&s1.version), off).await.unwrap();
    let err = svc.get_secret(v, "db-password", Some(&s1.version)).await.unwrap_err();
    assert_eq!(refusal(err), Refusal::SecretDisabled);
    let listed = svc.list_secret_versions(v, "db-password", None, None).await.unwrap();
    assert_eq!(listed.items.iter().map(|b| b.attributes.enabled).collect::<Vec<_>>(), [false, true]);
    assert!(listed.items.iter().all(|b| b.value.is_none()));
    // Paging over more than 25 names.
    for i in 0..26 {
        svc.set_secret(v, &format!("p{i:02}"), secret("x")).await.unwrap();
    }
    let first = svc.list_secrets(v, None, None).await.unwrap();
    let rest = svc.list_secrets(v, None, first.next.as_deref()).await.unwrap();
    assert_eq!((first.items.len(), rest.items.len(), rest.next), (25, 3, None));
    // Soft delete, the name refused while deleted, recover, purge, the sweeper.
    svc.delete_secret(v, "db-password").await.unwrap();
    assert!(matches!(svc.get_secret(v, "db-password", None).await, Err(VaultError::SecretNotFound(_))));
    assert!(matches!(svc.set_secret(v, "db-password", secret("x")).await, Err(VaultError::DeletedButRecoverable(_))));
    svc.recover_deleted_secret(v, "db-password").await.unwrap();
    assert!(matches!(svc.purge_deleted_secret(v, "db-password").await, Err(VaultError::SecretNotFound(_))));
    svc.delete_secret(v, "p00").await.unwrap();
    e.clock.advance(90 * 86_400);
    assert!(svc.purge_due().await.unwrap() >= 1);
    assert!(matches!(svc.get_deleted_secret(v, "p00").await, Err(VaultError::SecretNotFound(_))));
    // Backup: sealed (no value in it), restored with the same version ids after a purge,
    // into this vault or another of the deployment; a foreign or altered blob is refused.
    let blob = svc.backup_secret(v, "db-password").await.unwrap();
    assert!(!blob.windows(7).any(|w| w == b"hunter2"));
    assert!(matches!(svc.restore_secret(v, &blob).await, Err(VaultError::Conflict(_))));
    svc.delete_secret(v, "db-password").await.unwrap();
    assert!(matches!(svc.restore_secret(v, &blob).await, Err(VaultError::DeletedButRecoverable(_))));
    svc.purge_deleted_secret(v, "db-password").await.unwrap();
    svc.restore_secret(v, &blob).await.unwrap();
    let restored = svc.list_secret_versions(v, "db-password", None, None).await.unwrap();
    assert_eq!(restored.items.iter().map(|b| b.version.clone()).collect::<Vec<_>>(), [s1.version.clone(), s2.version]);
    let other = svc.create_vault("tenant-1", &format!("o{}", &v.name[1..]), VaultSettings::default()).await.unwrap();
    svc.restore_secret(&other, &blob).await.unwrap();
    let on = atrest_vault::UpdateSecret { enabled: Some(true), ..Default::default() };
    svc.update_secret(&other, "db-password", Some(&s1.version), on).await.unwrap();
    assert_eq!(
        svc.get_secret(&other, "db-password", Some(&s1.version)).await.unwrap().value.unwrap().expose(),
        "hunter2"
    );
    let mut altered = blob.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    assert!(matches!(svc.restore_secret(&other, &altered).await, Err(VaultError::BadParameter(_))));
    let key_blob = {
        svc.create_key(v, "k", oct()).await.unwrap();
        svc.backup_key(v, "k").await.unwrap()
    };
    assert!(matches!(svc.restore_secret(&other, &key_blob).await, Err(VaultError::BadParameter(_))), "a key backup");
}

#[tokio::test]
async fn secret_values_are_sealed_and_rows_fail_closed() {
    let e = env().await;
    let (svc, v) = (&e.svc, &e.vault);
    let canary = "canary-6f1c2b9e-value";
    let a = svc.set_secret(v, "a", secret(canary)).await.unwrap();
    let b = svc.set_secret(v, "b", secret("other")).await.unwrap();
    let rows: Vec<(Vec<u8>, Vec<u8>)> =
        sqlx::query_as("SELECT sealed, wrapped_key FROM secret_versions WHERE vault_id = $1")
            .bind(&v.id)
            .fetch_all(e.db.pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), 2);
    for (sealed, wrapped) in &rows {
        assert!(!sealed.windows(canary.len()).any(|w| w == canary.as_bytes()), "the value is stored sealed");
        assert_eq!(wrapped.len(), 40, "a 32-byte data key wrapped with A256KW");
    }
    // Another version's sealed value or data key moved onto this row: refused by its MAC.
    let original: (Vec<u8>, Vec<u8>, Vec<u8>) =
        sqlx::query_as("SELECT sealed, wrapped_key, mac FROM secret_versions WHERE version = $1")
            .bind(&a.version)
            .fetch_one(e.db.pool())
            .await
            .unwrap();
    for col in ["sealed", "wrapped_key"] {
        sqlx::query(&format!(
            "UPDATE secret_versions SET {col} = (SELECT {col} FROM secret_versions WHERE version = $1) \
             WHERE version = $2"
        ))
        .bind(&b.version)
        .bind(&a.version)
        .execute(e.db.pool())
        .await
        .unwrap();
        assert!(matches!(svc.get_secret(v, "a", None).await, Err(VaultError::Integrity { .. })), "{col}");
        sqlx::query("UPDATE secret_versions SET sealed = $1, wrapped_key = $2 WHERE version = $3")
            .bind(&original.0)
            .bind(&original.1)
            .bind(&a.version)
            .execute(e.db.pool())
            .await
            .unwrap();
        assert_eq!(svc.get_secret(v, "a", None).await.unwrap().value.unwrap().expose(), canary, "put back");
    }
    // Even with a valid row MAC (made with the root key), b's sealed value and data key on
    // a's row do not open: the record's context binds (vault, name, version).
    let row: (i64, i64, i64, i64, String, String) = sqlx::query_as(
        "SELECT seq, enabled, created, updated, content_type, tags FROM secret_versions WHERE version = $1",
    )
    .bind(&a.version)
    .fetch_one(e.db.pool())
    .await
    .unwrap();
    let (b_sealed, b_wrapped): (Vec<u8>, Vec<u8>) =
        sqlx::query_as("SELECT sealed, wrapped_key FROM secret_versions WHERE version = $1")
            .bind(&b.version)
            .fetch_one(e.db.pool())
            .await
            .unwrap();
    use atrest_infra::rowmac::{Field, RowMac};
    let rowmac = RowMac::new(&SecretKey::from_slice(&[5; 32]).unwrap()).unwrap();
    let mac = rowmac.tag(
        "secret_versions",
        &[
            Field::Text(&v.id),
            Field::Text("a"),
            Field::Text(&a.version),
            Field::Int(row.0),
            Field::Int(row.1),
            Field::OptInt(None),
            Field::OptInt(None),
            Field::Int(row.2),
            Field::Int(row.3),
            Field::Text(&row.4),
            Field::Text(&row.5),
            Field::Bytes(&b_wrapped),
            Field::Bytes(&b_sealed),
        ],
    );
    sqlx::query("UPDATE secret_versions SET sealed = $1, wrapped_key = $2, mac = $3 WHERE version = $4")
        .bind(&b_sealed)
        .bind(&b_wrapped)
        .bind(&mac)
        .bind(&a.version)
        .execute(e.db.pool())
        .await
        .unwrap();
    let err = svc.get_secret(v, "a", None).await.unwrap_err();
    assert!(
        matches!(&err, VaultError::Integrity { what } if what.contains("value of secret version")),
        "the row verifies, the value does not open: {err:?}"
    );
    assert_eq!(svc.get_secret(v, "b", None).await.unwrap().value.unwrap().expose(), "other");
    // Re-enabling a disabled version in the database is detected.
    let off = atrest_vault::UpdateSecret { enabled: Some(false), ..Default::default() };
    svc.update_secret(v, "b", None, off).await.unwrap();
    sqlx::query("UPDATE secret_versions SET enabled = 1 WHERE version = $1")
        .bind(&b.version)
        .execute(e.db.pool())
        .await
        .unwrap();
    assert!(matches!(svc.get_secret(v, "b", None).await, Err(VaultError::Integrity { .. })));
}

#[tokio::test]
async fn secret_permissions_are_never_implied() {
    let e = env().await;
    let tenant = e.svc.create_tenant(&format!("s{}", &e.vault.name[1..])).await.unwrap();
    let vault =
        e.svc.create_vault(&tenant.id, &format!("x{}", &e.vault.name[1..]), VaultSettings::default()).await.unwrap();
    let app = e.svc.create_principal(&tenant, "app", PrincipalKind::Service, Role::Member).await.unwrap();
    e.svc.set_policy(&vault, &app, &Permission::ALL).await.unwrap();
    let denied = e.svc.authorize_secret(&vault, &app, SecretPermission::Get, Some("s")).await.unwrap_err();
    assert_eq!(refusal(denied), Refusal::AccessDenied, "every key permission, no secret one");
    e.svc.set_policy_with(&vault, &app, &[], &[SecretPermission::Get]).await.unwrap();
    e.svc.authorize_secret(&vault, &app, SecretPermission::Get, Some("s")).await.unwrap();
    assert!(e.svc.authorize_secret(&vault, &app, SecretPermission::Set, Some("s")).await.is_err());
    // A data-service resource identity holds key get/wrapKey/unwrapKey and can be given
    // no secret permission at all.
    let res = atrest_vault::resource_identity_name("orders");
    let id = e.svc.create_principal(&tenant, &res, PrincipalKind::Service, Role::Member).await.unwrap();
    e.svc.set_policy(&vault, &id, &[Permission::Get, Permission::WrapKey, Permission::UnwrapKey]).await.unwrap();
    let denied = e.svc.authorize_secret(&vault, &id, SecretPermission::Get, Some("s")).await.unwrap_err();
    assert_eq!(refusal(denied), Refusal::AccessDenied);
    let err = e.svc.set_policy_with(&vault, &id, &[Permission::Get], &[SecretPermission::Get]).await.unwrap_err();
    assert_eq!(refusal(err), Refusal::DataServiceIdentity);
}

/// Concurrent writers to one secret (real concurrency on PostgreSQL, where nothing
/// serializes them; CI runs this file there too): no version is lost or shares a number,
/// and a disable is never undone by an update that read the row before it.
#[tokio::test]
async fn concurrent_secret_writes_lose_nothing() {
    let e = env().await;
    let (svc, v) = (&e.svc, &e.vault);
    let first = svc.set_secret(v, "c", secret("0")).await.unwrap();
    let sets = |i: usize| async move {
        for j in 0..5 {
            svc.set_secret(v, "c", secret(&format!("{i}-{j}"))).await.unwrap();
        }
    };
    tokio::join!(sets(1), sets(2), sets(3), sets(4));
    let mut versions = Vec::new();
    let mut token = None;
    loop {
        let page = svc.list_secret_versions(v, "c", None, token.as_deref()).await.unwrap();
        versions.extend(page.items.into_iter().map(|b| b.version));
        match page.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(versions.len(), 21, "every set made a version, and paging by number sees each once");
    versions.sort();
    versions.dedup();
    assert_eq!(versions.len(), 21);
    let off = async {
        let u = atrest_vault::UpdateSecret { enabled: Some(false), ..Default::default() };
        svc.update_secret(v, "c", Some(&first.version), u).await.unwrap();
    };
    let retag = |i: usize| {
        let version = first.version.clone();
        async move {
            for j in 0..5 {
                let tags = Some([(format!("t{i}"), j.to_string())].into_iter().collect());
                let u = atrest_vault::UpdateSecret { tags, ..Default::default() };
                svc.update_secret(v, "c", Some(&version), u).await.unwrap();
            }
        }
    };
    tokio::join!(retag(1), off, retag(2));
    let listed = svc.list_secret_versions(v, "c", Some(1), None).await.unwrap();
    assert!(!listed.items[0].attributes.enabled, "the disable stands");
    assert_eq!(refusal(svc.get_secret(v, "c", Some(&first.version)).await.unwrap_err()), Refusal::SecretDisabled);
}
