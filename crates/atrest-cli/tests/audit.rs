//! `atrest audit` on a real data directory written by a real server.

use std::process::Command;

fn atrest(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_atrest")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_list_export_and_a_cut_tail() {
    let dir = std::env::temp_dir().join(format!("atrest-cli-audit-{}", std::process::id()));
    let cfg = atrest_server::ServeConfig {
        data_dir: dir.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    atrest_server::start(cfg.clone()).await.unwrap().shutdown().await;
    let d = dir.to_str().unwrap();

    let (ok, out, err) = atrest(&["audit", "checkpoint", "--data-dir", d]);
    assert!(ok, "{err}");
    assert!(out.contains("wrote 2 checkpoint(s)"), "{out}");
    let (ok, out, err) = atrest(&["audit", "verify", "--data-dir", d]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("ok   default") && out.contains("ok   deployment"), "{out}");
    let (ok, out, _) = atrest(&["audit", "list", "--data-dir", d, "--operation", "set-policy"]);
    assert!(ok && out.contains("set-policy") && out.contains("admin"), "{out}");
    let (ok, out, _) = atrest(&["audit", "export", "--data-dir", d, "--vault", "deployment"]);
    assert!(ok);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["operation"], "create-tenant");

    // Remove the newest entry of the default vault's chain: only the checkpoint shows it.
    let (svc, _) = atrest_server::bootstrap::open_service(&cfg).await.unwrap();
    let vault = svc.vault("default").await.unwrap();
    drop(svc);
    let db = atrest_infra::db::Db::connect(&format!("sqlite://{}/atrest.db", d)).await.unwrap();
    sqlx::query("DELETE FROM audit_log WHERE chain = $1 AND seq = (SELECT MAX(seq) FROM audit_log WHERE chain = $1)")
        .bind(&vault.id)
        .execute(db.pool())
        .await
        .unwrap();
    let (ok, out, err) = atrest(&["audit", "verify", "--data-dir", d]);
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL default") && out.contains("removed from the end"), "{out}");
    assert!(err.contains("1 audit chain(s) failed verification"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
