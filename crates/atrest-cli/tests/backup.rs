//! The backup drill on the embedded default, with real processes: `atrest backup` while
//! the server serves (writes running during it), more writes after, a graceful stop,
//! `atrest restore` into a fresh data directory, and the restored server holding
//! everything acknowledged before the backup, under the old admin token, with its audit
//! trail verified and the restore recorded in it. Then what a restore refuses: a
//! tampered backup, other roots, a data directory in use.

mod common;
use common::{Dir, Server, atrest};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn copy_roots(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["root.key", "infra.key"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

#[test]
fn an_online_backup_restores_everything_acknowledged_before_it() {
    let a = Dir::new("backup-src");
    let server = Server::start(&a.0, &[]);
    server.ok(&["key", "create", "before", "--kty", "EC"]);
    server.ok(&["resource", "create", "bot"]);
    for i in 0..30 {
        server.ok(&["record", "put", "bot", &format!("r{i:02}"), "--value", &format!("value {i}")]);
    }
    let blob: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(a.0.join("in.bin"), &blob).unwrap();
    server.ok(&["blob", "put", "bot", "big.bin", a.0.join("in.bin").to_str().unwrap()]);
    server.ok(&["blob", "put", "bot", "gone.bin", a.0.join("in.bin").to_str().unwrap()]);
    server.ok(&["blob", "put", "bot", "raced.bin", a.0.join("in.bin").to_str().unwrap()]);
    // What a blob deleted between the snapshot and the copy of its body looks like: its
    // row is in the snapshot, its body is gone.
    let bodies: Vec<_> = std::fs::read_dir(a.0.join("blobs"))
        .unwrap()
        .flat_map(|r| std::fs::read_dir(r.unwrap().path()).unwrap().map(|f| f.unwrap().path()).collect::<Vec<_>>())
        .collect();
    assert_eq!(bodies.len(), 3);
    let newest = bodies.iter().max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap()).unwrap();
    std::fs::remove_file(newest).unwrap();

    // Writers keep going while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, s) = (stop.clone(), server.cli.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                s.ok(&["record", "put", "bot", &format!("during{n}"), "--value", "x"]);
                n += 1;
            }
            n
        })
    };
    let b = Dir::new("backup-out");
    let out_dir = b.0.join("b1");
    let (ok, out, err) =
        server.run(&["backup", "--to", out_dir.to_str().unwrap(), "--data-dir", a.0.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("blob bodies") && out.contains("root secrets are not in it"), "{out}");
    assert!(out.contains("left out"), "the blob whose body went is named: {out}");
    stop.store(true, Ordering::Relaxed);
    let during = writer.join().unwrap();
    assert!(during > 0);
    for secret in ["root.key", "infra.key", "admin.token"] {
        assert!(!out_dir.join(secret).exists(), "{secret} must never be in a backup");
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], "atrest-backup");
    assert!(manifest["checkpoints"].as_array().unwrap().len() >= 2, "{manifest}");

    // After the backup: not in it.
    server.ok(&["key", "create", "after", "--kty", "EC"]);
    server.ok(&["record", "put", "bot", "after", "--value", "late"]);
    server.ok(&["blob", "delete", "bot", "gone.bin"]);
    server.stop();

    // Restore into a fresh directory holding only the two roots.
    let c = Dir::new("backup-restored");
    copy_roots(&a.0, &c.0);
    let (ok, out, err) = atrest(&["restore", "--from", out_dir.to_str().unwrap(), "--data-dir", c.0.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("audit chains verified"), "{out}");
    // The users keep their tokens: the old admin token works on the restored deployment.
    std::fs::copy(a.0.join("admin.token"), c.0.join("admin.token")).unwrap();
    let restored = Server::start(&c.0, &[]);
    restored.ok(&["key", "show", "before"]);
    assert!(!restored.run(&["key", "show", "after"]).0, "written after the backup");
    for i in 0..30 {
        assert_eq!(restored.ok(&["record", "get", "bot", &format!("r{i:02}")]), format!("value {i}"));
    }
    assert!(!restored.run(&["record", "get", "bot", "after"]).0);
    let (ok, _, err) = restored.run(&["blob", "get", "bot", "raced.bin", c.0.join("x.bin").to_str().unwrap()]);
    assert!(!ok && err.contains("404"), "a blob left out of the backup is absent, not damaged: {err}");
    for name in ["big.bin", "gone.bin"] {
        let out = c.0.join("out.bin");
        restored.ok(&["blob", "get", "bot", name, out.to_str().unwrap()]);
        assert!(std::fs::read(&out).unwrap() == blob, "{name}");
    }
    // Exit statuses tell a refusal (4) from an unreachable server (3) and a local error (1).
    assert_eq!(restored.status(&["key", "show", "after"]), Some(4));
    assert_eq!(restored.status(&["key", "show", "after", "--url", "https://127.0.0.1:1"]), Some(3));
    assert_eq!(restored.status(&["record", "put", "bot", "x", "--file", "/nonexistent"]), Some(1));
    let scan = restored.ok(&["verify"]);
    assert!(scan.contains("all verify") && scan.contains("resource rows"), "{scan}");
    let verify = restored.ok(&["audit", "verify", "--data-dir", c.0.to_str().unwrap()]);
    assert!(!verify.contains("FAIL"), "{verify}");
    let list = restored.ok(&["audit", "list", "--data-dir", c.0.to_str().unwrap(), "--operation", "restore"]);
    assert!(list.contains("restore"), "{list}");
    restored.stop();

    // A restore into a data directory in use is refused.
    let (ok, _, err) = atrest(&["restore", "--from", out_dir.to_str().unwrap(), "--data-dir", c.0.to_str().unwrap()]);
    assert!(!ok && err.contains("already holds a deployment"), "{err}");
    // Other roots: refused, naming which.
    let d = Dir::new("backup-other-root");
    copy_roots(&a.0, &d.0);
    std::fs::write(d.0.join("root.key"), "11".repeat(32)).unwrap();
    let (ok, _, err) = atrest(&["restore", "--from", out_dir.to_str().unwrap(), "--data-dir", d.0.to_str().unwrap()]);
    assert!(!ok && err.contains("another vault root key"), "{err}");
    assert!(!d.0.join("atrest.db").exists(), "nothing restored");
    // A file changed and the manifest's hash recomputed: the manifest's MAC refuses it.
    let f = Dir::new("backup-rehashed");
    copy_roots(&a.0, &f.0);
    let rehashed = b.0.join("b2");
    std::fs::create_dir_all(&rehashed).unwrap();
    let status =
        std::process::Command::new("cp").arg("-a").arg(format!("{}/.", out_dir.display())).arg(&rehashed).status();
    assert!(status.unwrap().success());
    let mut pem = std::fs::read(rehashed.join("tls/ca.pem")).unwrap();
    pem.extend_from_slice(b"\n");
    std::fs::write(rehashed.join("tls/ca.pem"), &pem).unwrap();
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rehashed.join("manifest.json")).unwrap()).unwrap();
    for f in m["files"].as_array_mut().unwrap() {
        if f["path"] == "tls/ca.pem" {
            f["size"] = pem.len().into();
            let sha: String = atrest_crypto::hash::sha256(&[&pem]).iter().map(|b| format!("{b:02x}")).collect();
            f["sha256"] = sha.into();
        }
    }
    std::fs::write(rehashed.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    let (ok, _, err) = atrest(&["restore", "--from", rehashed.to_str().unwrap(), "--data-dir", f.0.to_str().unwrap()]);
    assert!(!ok && err.contains("manifest does not verify"), "{err}");
    // A byte changed in the backup: refused, naming the file.
    let e = Dir::new("backup-tampered");
    copy_roots(&a.0, &e.0);
    let db = out_dir.join("store.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&db, bytes).unwrap();
    let (ok, _, err) = atrest(&["restore", "--from", out_dir.to_str().unwrap(), "--data-dir", e.0.to_str().unwrap()]);
    assert!(!ok && err.contains("store.db: its contents changed"), "{err}");
    assert!(!e.0.join("atrest.db").exists(), "nothing restored");
}
