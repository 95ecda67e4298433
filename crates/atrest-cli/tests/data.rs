//! The data-service CLI against a real `atrest serve` process: the README walkthrough
//! (resource, records, blob with a range, messages, encryption, key usage), then a
//! re-key job whose server is killed in the middle (a real `abort()` after two
//! committed batches), restarted, and seen to finish with every object readable.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Env {
    dir: PathBuf,
    url: String,
    port: u16,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Env {
    fn serve(&self, crash_after_batches: Option<u32>) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_atrest"));
        cmd.args(["serve", "--data-dir"])
            .arg(&self.dir)
            .args([
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--s3-listen",
                "127.0.0.1:0",
                "--job-batch",
                "50",
                "--key-cache-ttl",
                "1",
            ])
            .env_remove("ATREST_CONFIG")
            .env("ATREST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(n) = crash_after_batches {
            cmd.env("ATREST_TEST_CRASH_AFTER_BATCHES", n.to_string());
        }
        let child = cmd.spawn().unwrap();
        let t = Instant::now();
        while !self.run(&["resource", "list"]).0 {
            assert!(t.elapsed() < Duration::from_secs(30), "the server did not come up");
            std::thread::sleep(Duration::from_millis(200));
        }
        child
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_atrest"))
            .args(args)
            .env("ATREST_URL", &self.url)
            .env("ATREST_DATA_DIR", &self.dir)
            .env_remove("ATREST_TOKEN")
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "atrest {args:?} failed: {err}");
        out
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn walkthrough_and_rekey_job_survives_a_crash() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("atrest-cli-data-{}", std::process::id()));
    let env = Env { dir: dir.clone(), url: format!("https://127.0.0.1:{port}"), port };
    let mut server = env.serve(None);

    // The walkthrough.
    env.ok(&["resource", "create", "bot"]);
    let shown = env.ok(&["resource", "show", "bot"]);
    assert!(shown.contains("key-inaccessible") || shown.contains("active"), "{shown}");
    env.ok(&["record", "put", "bot", "greeting", "--value", "hello"]);
    assert_eq!(env.ok(&["record", "get", "bot", "greeting"]), "hello");
    let blob: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    write(&dir.join("in.bin"), &blob);
    env.ok(&["blob", "put", "bot", "photos/cat.bin", dir.join("in.bin").to_str().unwrap()]);
    env.ok(&["blob", "get", "bot", "photos/cat.bin", dir.join("out.bin").to_str().unwrap()]);
    assert!(std::fs::read(dir.join("out.bin")).unwrap() == blob);
    env.ok(&["blob", "get", "bot", "photos/cat.bin", dir.join("part.bin").to_str().unwrap(), "--range", "100-199"]);
    assert_eq!(std::fs::read(dir.join("part.bin")).unwrap(), &blob[100..200]);
    let list = env.ok(&["blob", "list", "bot"]);
    assert!(list.starts_with("NAME") && list.contains("photos/cat.bin") && list.contains("1000000"), "{list}");
    env.ok(&["message", "send", "bot", "--body", "wake up", "--ttl", "600"]);
    let got = env.json(&["message", "receive", "bot"]);
    let m = &got["value"][0];
    assert_eq!(m["text"], "wake up");
    env.ok(&["message", "ack", "bot", m["id"].as_str().unwrap(), m["receipt"].as_str().unwrap()]);
    // A customer key through the CLI, then the usage inventory.
    env.ok(&["vault", "update", "default", "--purge-protection"]);
    env.ok(&["key", "create", "cmk", "--kty", "RSA"]);
    env.ok(&["policy", "set", "default", "res-bot", "--permissions", "get,wrapKey,unwrapKey"]);
    let (ok, _, err) = env.run(&["resource", "encryption", "set", "bot", "--key-uri", "https://127.0.0.1:1/keys/nope"]);
    assert!(!ok && err.contains("400"), "{err}");
    env.ok(&["resource", "encryption", "set", "bot", "--key-uri", &format!("{}/keys/cmk", env.url)]);
    let usage = env.ok(&["key", "usage"]);
    assert!(usage.contains("/keys/cmk") && usage.contains("bot") && usage.contains("true"), "{usage}");
    let (ok, _, err) = env.run(&["resource", "delete", "bot"]);
    assert!(!ok && err.contains("--yes"), "{err}");

    // Enough records for several job batches (50 each).
    for i in 0..240 {
        env.ok(&["record", "put", "bot", &format!("r{i:03}"), "--value", &format!("value {i}")]);
    }
    server.kill().unwrap();
    server.wait().unwrap();

    // Re-key; the server aborts after two committed batches.
    let mut server = env.serve(Some(2));
    let job = env.json(&["job", "start", "bot", "rekey"]);
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["total"], 242);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = server.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "the server did not abort");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "the drill should have aborted the server");

    // Restarted, the job resumes from its last committed batch and finishes.
    let mut server = env.serve(None);
    let mid = env.json(&["job", "show", &id]);
    assert!(mid["done"].as_i64().unwrap() >= 100, "{mid}");
    let done = env.json(&["job", "watch", &id]);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["done"], 242);
    // Every object's data key opens under the new resource key (list opens each).
    let names = env.json(&["record", "list", "bot"]);
    assert_eq!(names["value"].as_array().unwrap().len(), 241);
    for i in (0..240).step_by(7) {
        assert_eq!(env.ok(&["record", "get", "bot", &format!("r{i:03}")]), format!("value {i}"));
    }
    env.ok(&["blob", "get", "bot", "photos/cat.bin", dir.join("out2.bin").to_str().unwrap()]);
    assert!(std::fs::read(dir.join("out2.bin")).unwrap() == blob);
    let shown = env.json(&["resource", "show", "bot"]);
    assert_eq!(shown["encryption"]["rekeyInProgress"], false, "the old resource key is destroyed");

    // Re-encrypt rewrites data under new data keys; everything still reads.
    let job = env.json(&["job", "start", "bot", "reencrypt"]);
    let done = env.json(&["job", "watch", job["id"].as_str().unwrap()]);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(env.ok(&["record", "get", "bot", "r123"]), "value 123");
    env.ok(&["blob", "get", "bot", "photos/cat.bin", dir.join("out3.bin").to_str().unwrap()]);
    assert!(std::fs::read(dir.join("out3.bin")).unwrap() == blob);
    let jobs = env.ok(&["job", "list"]);
    assert!(jobs.contains("rekey") && jobs.contains("reencrypt"), "{jobs}");
    env.ok(&["resource", "delete", "bot", "--yes"]);
    server.kill().unwrap();
    server.wait().unwrap();
}
