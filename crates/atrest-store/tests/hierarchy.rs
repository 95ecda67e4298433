//! The key hierarchy and the two layers against a real vault (in-memory SQLite): round
//! trips, moved and modified bytes, rotation that never touches data, platform ↔
//! customer keys, and revocation with recovery.

use atrest_crypto::SecretKey;
use atrest_crypto::backend::software::SoftwareBackend;
use atrest_infra::clock::SystemClock;
use atrest_infra::db::Db;
use atrest_store::StoreError;
use atrest_store::hierarchy::{ObjectId, new_resource_key, open_resource_key, rewrap};
use atrest_store::keyvault::{InProcessVault, KeyRef};
use atrest_store::layers::{InfraLayer, Sealed, open, seal};
use atrest_vault::model::VaultSettings;
use atrest_vault::{CreateKey, PrincipalKind, Role, UpdateKey, VaultService};
use std::sync::Arc;

const ID: ObjectId<'static> = ObjectId { resource: "res-1", object: "obj-1", generation: 1 };

struct Env {
    svc: Arc<VaultService>,
    vault: atrest_vault::model::VaultInfo,
    identity: atrest_vault::Principal,
    kv: InProcessVault,
}

async fn env() -> Env {
    let db = Db::connect("sqlite::memory:").await.unwrap();
    atrest_vault::schema::migrate(&db).await.unwrap();
    let root = SecretKey::from_slice(&[9; 32]).unwrap();
    let svc = Arc::new(
        VaultService::new(db, Arc::new(SoftwareBackend::new(&root).unwrap()), &root, Arc::new(SystemClock)).unwrap(),
    );
    let tenant = svc.create_tenant("acme").await.unwrap();
    let vault = svc
        .create_vault(&tenant.id, "acme-keys", VaultSettings { purge_protection: true, ..VaultSettings::default() })
        .await
        .unwrap();
    let identity = svc.create_principal(&tenant, "bot-identity", PrincipalKind::Service, Role::Member).await.unwrap();
    svc.create_key(&vault, "cmk", CreateKey { kty: "RSA".into(), ..CreateKey::default() }).await.unwrap();
    svc.create_key(&vault, "pmk", CreateKey { kty: "oct".into(), ..CreateKey::default() }).await.unwrap();
    let perms = atrest_vault::Permission::parse_list(&["get", "wrapKey", "unwrapKey"]).unwrap();
    svc.set_policy(&vault, &identity, &perms).await.unwrap();
    let kv = InProcessVault::new(svc.clone(), identity.clone(), "bot");
    Env { svc, vault, identity, kv }
}

fn kref(name: &str) -> KeyRef {
    KeyRef { vault: "acme-keys".into(), name: name.into(), version: None }
}

#[tokio::test]
async fn round_trip_moves_and_modified_bytes() {
    let e = env().await;
    let infra = InfraLayer::new(&SecretKey::from_slice(&[1; 32]).unwrap()).unwrap();
    let (rk, _) = new_resource_key(&e.kv, &kref("pmk")).await.unwrap();
    let sealed = seal(&infra, &rk, ID, b"customer record").unwrap();
    assert_eq!(open(&infra, &rk, ID, &sealed).unwrap(), b"customer record");
    assert!(!sealed.body.windows(8).any(|w| w == b"customer"), "no plaintext in storage");

    // Moved to another object, generation or resource: refused.
    for other in
        [ObjectId { object: "obj-2", ..ID }, ObjectId { generation: 2, ..ID }, ObjectId { resource: "res-2", ..ID }]
    {
        assert!(matches!(open(&infra, &rk, other, &sealed), Err(StoreError::Integrity(_))));
    }
    // Any modified byte of the body or of the wrapped data key: refused.
    for i in (0..sealed.body.len()).step_by(7) {
        let mut s = sealed.clone();
        s.body[i] ^= 0x01;
        assert!(open(&infra, &rk, ID, &s).is_err(), "body byte {i}");
    }
    for i in 0..sealed.wrapped_dek.len() {
        let mut s = sealed.clone();
        s.wrapped_dek[i] ^= 0x80;
        assert!(open(&infra, &rk, ID, &s).is_err(), "wrapped key byte {i}");
    }
    // A data key swapped in from another object: refused.
    let other = seal(&infra, &rk, ObjectId { object: "obj-2", ..ID }, b"x").unwrap();
    let swapped = Sealed { body: sealed.body.clone(), wrapped_dek: other.wrapped_dek };
    assert!(open(&infra, &rk, ID, &swapped).is_err());
    // Either layer's key wrong: refused.
    let other_infra = InfraLayer::new(&SecretKey::from_slice(&[2; 32]).unwrap()).unwrap();
    assert!(open(&other_infra, &rk, ID, &sealed).is_err());
    assert!(open(&infra, &SecretKey::generate().unwrap(), ID, &sealed).is_err());
}

#[tokio::test]
async fn rotation_and_key_changes_rewrap_only_the_resource_key() {
    let e = env().await;
    let infra = InfraLayer::new(&SecretKey::from_slice(&[1; 32]).unwrap()).unwrap();
    // Platform key first.
    let (rk, wrapped_pmk) = new_resource_key(&e.kv, &kref("pmk")).await.unwrap();
    let sealed = seal(&infra, &rk, ID, b"data").unwrap();
    // Platform → customer.
    let wrapped_cmk = rewrap(&e.kv, &kref("pmk"), &wrapped_pmk, &kref("cmk")).await.unwrap();
    assert_eq!(wrapped_cmk.alg, "RSA-OAEP-256");
    // The customer rotates their key: re-wrap under the new latest version.
    let v2 = e.svc.rotate_key(&e.vault, "cmk").await.unwrap();
    let wrapped_v2 = rewrap(&e.kv, &kref("cmk"), &wrapped_cmk, &kref("cmk")).await.unwrap();
    assert_eq!(wrapped_v2.version, v2.version);
    assert_ne!(wrapped_v2.version, wrapped_cmk.version);
    // The old wrapping still opens (its version is recorded) until the change completes.
    let old = open_resource_key(&e.kv, &kref("cmk"), &wrapped_cmk).await.unwrap();
    let new = open_resource_key(&e.kv, &kref("cmk"), &wrapped_v2).await.unwrap();
    assert_eq!(old.expose_secret(), new.expose_secret());
    // The data bytes were never touched and open with the re-wrapped key.
    assert_eq!(open(&infra, &new, ID, &sealed).unwrap(), b"data");
    // Customer → platform.
    let back = rewrap(&e.kv, &kref("cmk"), &wrapped_v2, &kref("pmk")).await.unwrap();
    assert_eq!(
        open(&infra, &open_resource_key(&e.kv, &kref("pmk"), &back).await.unwrap(), ID, &sealed).unwrap(),
        b"data"
    );
    // An EC key cannot be a key-encryption key.
    e.svc.create_key(&e.vault, "ec", CreateKey { kty: "EC".into(), ..CreateKey::default() }).await.unwrap();
    let err = new_resource_key(&e.kv, &kref("ec")).await.unwrap_err();
    assert_eq!(err.code(), "KeyInaccessible");
    assert!(err.to_string().contains("RSA"), "{err}");
}

#[tokio::test]
async fn revocation_and_recovery_lose_nothing() {
    let e = env().await;
    let infra = InfraLayer::new(&SecretKey::from_slice(&[1; 32]).unwrap()).unwrap();
    let (rk, wrapped) = new_resource_key(&e.kv, &kref("cmk")).await.unwrap();
    let sealed = seal(&infra, &rk, ID, b"kept").unwrap();
    drop(rk);

    // Policy removed: the vault refuses, with what to do.
    e.svc.remove_policy(&e.vault, &e.identity).await.unwrap();
    let err = open_resource_key(&e.kv, &kref("cmk"), &wrapped).await.unwrap_err();
    assert_eq!(err.code(), "KeyInaccessible");
    assert!(err.to_string().contains("grant get, wrapKey and unwrapKey on the key to principal bot-identity"), "{err}");
    // Access restored: everything opens again.
    let perms = atrest_vault::Permission::parse_list(&["get", "wrapKey", "unwrapKey"]).unwrap();
    e.svc.set_policy(&e.vault, &e.identity, &perms).await.unwrap();
    let rk = open_resource_key(&e.kv, &kref("cmk"), &wrapped).await.unwrap();
    assert_eq!(open(&infra, &rk, ID, &sealed).unwrap(), b"kept");

    // Key disabled: refused; enabled again: back.
    let disable = UpdateKey { enabled: Some(false), ..UpdateKey::default() };
    e.svc.update_key(&e.vault, "cmk", Some(&wrapped.version), disable).await.unwrap();
    let err = open_resource_key(&e.kv, &kref("cmk"), &wrapped).await.unwrap_err();
    assert!(err.to_string().contains("enable the key"), "{err}");
    let enable = UpdateKey { enabled: Some(true), ..UpdateKey::default() };
    e.svc.update_key(&e.vault, "cmk", Some(&wrapped.version), enable).await.unwrap();
    assert!(open_resource_key(&e.kv, &kref("cmk"), &wrapped).await.is_ok());

    // Every use was audited on the vault's chain as the resource's identity.
    let uses = e.svc.audit_entries(&e.vault.id, &atrest_vault::audit::AuditFilter::default()).await.unwrap();
    assert!(uses.iter().any(|r| r.principal == "bot-identity" && r.operation == "unwrapKey"));
    assert!(uses.iter().any(|r| r.principal == "bot-identity" && r.operation == "wrapKey"));
}

#[tokio::test]
async fn the_in_process_client_passes_the_vault_client_conformance_suite() {
    let e = env().await;
    let first = e.svc.get_key(&e.vault, "pmk", None).await.unwrap().version;
    e.svc.rotate_key(&e.vault, "pmk").await.unwrap();
    let fixture = atrest_store::keyvault_conformance::Fixture {
        oct: kref("pmk"),
        oct_first: first,
        rsa: kref("cmk"),
        missing: kref("nope"),
    };
    atrest_store::keyvault_conformance::check(&e.kv, &fixture).await;
}
