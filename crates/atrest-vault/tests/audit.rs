//! The audit chain: appends verify; edits, deletions, insertions, reordering and forged
//! entries are reported; a cut tail is caught with a signed checkpoint.

use atrest_crypto::SecretKey;
use atrest_crypto::backend::software::SoftwareBackend;
use atrest_infra::clock::ManualClock;
use atrest_infra::db::Db;
use atrest_vault::VaultService;
use atrest_vault::audit::AuditFilter;
use serde_json::json;
use std::sync::Arc;

async fn svc() -> (VaultService, Db, String) {
    let url = std::env::var("ATREST_TEST_DATABASE_URL").unwrap_or_else(|_| "sqlite::memory:".into());
    let db = Db::connect(&url).await.unwrap();
    atrest_vault::schema::migrate(&db).await.unwrap();
    let root = SecretKey::from_slice(&[8; 32]).unwrap();
    let s = VaultService::new(
        db.clone(),
        Arc::new(SoftwareBackend::new(&root).unwrap()),
        &root,
        Arc::new(ManualClock::new(1000)),
    )
    .unwrap();
    let chain = format!("c{}", hex::encode(atrest_crypto::rand::bytes::<6>().unwrap()));
    (s, db, chain)
}

async fn fill(s: &VaultService, chain: &str, n: usize) {
    for i in 0..n {
        let op = if i % 2 == 0 { "unwrapKey" } else { "create" };
        s.audit(chain, "app", op, &format!("key-{i}"), "ok", &json!({"alg": "RSA-OAEP-256"})).await.unwrap();
    }
}

async fn exec(db: &Db, sql: &str, chain: &str) {
    sqlx::query(sql).bind(chain).execute(db.pool()).await.unwrap();
}

#[tokio::test]
async fn an_untouched_chain_verifies_and_filters() {
    let (s, _db, chain) = svc().await;
    fill(&s, &chain, 6).await;
    let r = s.verify_audit_chain(&chain, None).await.unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.entries, 6);
    let unwraps = s
        .audit_entries(&chain, &AuditFilter { operation: Some("unwrapKey".into()), ..AuditFilter::default() })
        .await
        .unwrap();
    assert_eq!(unwraps.len(), 3);
    let one =
        s.audit_entries(&chain, &AuditFilter { target: Some("key-4".into()), ..AuditFilter::default() }).await.unwrap();
    assert_eq!(one[0].seq, 5);
    let cp = s.audit_checkpoint(&chain).await.unwrap();
    assert!(s.verify_audit_chain(&chain, Some(&cp)).await.unwrap().ok());
    assert_eq!(s.audit_signing_jwk().await.unwrap()["kid"], cp.key_id);
}

#[tokio::test]
async fn an_edited_entry_is_reported() {
    let (s, db, chain) = svc().await;
    fill(&s, &chain, 5).await;
    exec(&db, "UPDATE audit_log SET principal = 'someone-else' WHERE chain = $1 AND seq = 3", &chain).await;
    let r = s.verify_audit_chain(&chain, None).await.unwrap();
    assert!(r.problems.iter().any(|p| p.contains("entry 3 was edited")), "{:?}", r.problems);
}

#[tokio::test]
async fn a_deleted_entry_is_reported() {
    let (s, db, chain) = svc().await;
    fill(&s, &chain, 5).await;
    exec(&db, "DELETE FROM audit_log WHERE chain = $1 AND seq = 2", &chain).await;
    let r = s.verify_audit_chain(&chain, None).await.unwrap();
    assert!(r.problems.iter().any(|p| p.contains("entry 2 is missing")), "{:?}", r.problems);
}

#[tokio::test]
async fn reordered_entries_are_reported() {
    let (s, db, chain) = svc().await;
    fill(&s, &chain, 5).await;
    exec(&db, "UPDATE audit_log SET seq = 100 WHERE chain = $1 AND seq = 2", &chain).await;
    exec(&db, "UPDATE audit_log SET seq = 2 WHERE chain = $1 AND seq = 3", &chain).await;
    exec(&db, "UPDATE audit_log SET seq = 3 WHERE chain = $1 AND seq = 100", &chain).await;
    let r = s.verify_audit_chain(&chain, None).await.unwrap();
    assert!(r.problems.iter().any(|p| p.contains("does not follow")), "{:?}", r.problems);
}

#[tokio::test]
async fn an_inserted_entry_is_reported() {
    let (s, db, chain) = svc().await;
    fill(&s, &chain, 3).await;
    // Append a forged entry whose link and hash are right, but whose MAC cannot be.
    let last = s.audit_entries(&chain, &AuditFilter::default()).await.unwrap().pop().unwrap();
    sqlx::query(
        "INSERT INTO audit_log (chain, seq, time, principal, operation, target, result, detail, prev_hash, hash, mac) \
         SELECT chain, 4, time, principal, operation, target, result, detail, hash, hash, mac FROM audit_log WHERE chain = $1 AND seq = 3",
    )
    .bind(&chain)
    .execute(db.pool())
    .await
    .unwrap();
    let r = s.verify_audit_chain(&chain, None).await.unwrap();
    assert!(!r.ok());
    assert!(r.problems.iter().any(|p| p.contains("entry 4")), "{:?} (last was {})", r.problems, last.seq);
}

#[tokio::test]
async fn a_cut_tail_needs_a_checkpoint_to_be_seen() {
    let (s, db, chain) = svc().await;
    fill(&s, &chain, 4).await;
    let cp = s.audit_checkpoint(&chain).await.unwrap();
    assert_eq!(cp.count, 4);
    fill(&s, &chain, 2).await;
    exec(&db, "DELETE FROM audit_log WHERE chain = $1 AND seq >= 4", &chain).await;
    let without = s.verify_audit_chain(&chain, None).await.unwrap();
    assert!(without.ok(), "a shorter chain is self-consistent");
    let with = s.verify_audit_chain(&chain, Some(&cp)).await.unwrap();
    assert!(with.problems.iter().any(|p| p.contains("removed from the end")), "{:?}", with.problems);
    // A checkpoint with a forged count fails its signature.
    let mut forged = cp.clone();
    forged.count = 3;
    let r = s.verify_audit_chain(&chain, Some(&forged)).await.unwrap();
    assert!(r.problems.iter().any(|p| p.contains("signature")), "{:?}", r.problems);
}
