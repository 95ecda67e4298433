//! Several stateless nodes over one PostgreSQL (runs when `ATREST_TEST_PG` names a
//! server, as `.ci/run` does): node A is a real `atrest serve` process, node B runs in
//! this process; both share the database and the two root secrets, nothing else.
//!
//! - A re-key job started on A survives A's death: A aborts after its first batch (a real
//!   `abort()`), B takes the job's lease when it expires and finishes it.
//! - Records written on one node read back on the other.
//! - A revocation is honoured by both nodes within the key-cache lifetime, and both
//!   recover when access returns.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Node {
    url: String,
    ca: PathBuf,
}

struct Cluster {
    dir: PathBuf,
    db: String,
    token: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    fn serve_args(&self, name: &str, port: u16) -> Vec<String> {
        let d = |p: &str| self.dir.join(p).to_string_lossy().into_owned();
        [
            "serve",
            "--data-dir",
            &d(name),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
            &self.db,
            "--root-key-file",
            &d("root.key"),
            "--infra-root-key-file",
            &d("infra.key"),
            "--key-cache-ttl",
            "1",
            "--job-batch",
            "25",
            "--job-lease",
            "2",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect()
    }

    fn spawn(&self, name: &str, port: u16, crash_after: Option<u32>) -> (Child, Node) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_atrest"));
        cmd.args(self.serve_args(name, port)).env("ATREST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null());
        if let Some(n) = crash_after {
            cmd.env("ATREST_TEST_CRASH_AFTER_BATCHES", n.to_string());
        }
        let child = cmd.spawn().unwrap();
        let node = Node { url: format!("https://127.0.0.1:{port}"), ca: self.dir.join(name).join("tls/ca.pem") };
        let t = Instant::now();
        while !(node.ca.exists() && self.cli(&node, &["resource", "list"]).0) {
            assert!(t.elapsed() < Duration::from_secs(30), "node {name} did not come up");
            std::thread::sleep(Duration::from_millis(200));
        }
        (child, node)
    }

    fn cli(&self, node: &Node, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_atrest"))
            .args(args)
            .env("ATREST_URL", &node.url)
            .env("ATREST_CA", &node.ca)
            .env("ATREST_TOKEN", &self.token)
            .env("ATREST_DATA_DIR", self.dir.join("none"))
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    fn ok(&self, node: &Node, args: &[&str]) -> String {
        let (ok, out, err) = self.cli(node, args);
        assert!(ok, "atrest {args:?} on {} failed: {err}", node.url);
        out
    }

    fn json(&self, node: &Node, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(node, &a)).unwrap()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn until(secs: u64, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if f() {
            return t.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not happen within {secs} s");
}

#[test]
fn two_nodes_one_database() {
    let Ok(admin) = std::env::var("ATREST_TEST_PG") else {
        eprintln!("skipped: set ATREST_TEST_PG=postgres://USER@HOST:PORT to run the multi-node test");
        return;
    };
    let dir = std::env::temp_dir().join(format!("atrest-multinode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("multinode_{}", std::process::id());
    let status = Command::new("psql")
        .args([&format!("{}/postgres", admin.trim_end_matches('/')), "-q", "-c", &format!("CREATE DATABASE {name}")])
        .status()
        .unwrap();
    assert!(status.success());
    for f in ["root.key", "infra.key"] {
        let bytes = atrest_crypto::rand::bytes::<32>().unwrap();
        std::fs::write(dir.join(f), bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()).unwrap();
    }
    let mut cluster =
        Cluster { dir: dir.clone(), db: format!("{}/{name}", admin.trim_end_matches('/')), token: String::new() };

    // Node A, which will die in the middle of a job.
    let port_a = free_port();
    let token_file = dir.join("a/admin.token");
    let mut a_proc = {
        // The first node creates the deployment (and the admin token) as it starts.
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_atrest"));
        cmd.args(cluster.serve_args("a", port_a))
            .env("ATREST_LOG", "warn")
            .env("ATREST_TEST_CRASH_AFTER_BATCHES", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.spawn().unwrap()
    };
    until(30, "node A's admin token", || token_file.exists());
    cluster.token = std::fs::read_to_string(&token_file).unwrap().trim().to_string();
    let a = Node { url: format!("https://127.0.0.1:{port_a}"), ca: dir.join("a/tls/ca.pem") };
    until(30, "node A", || cluster.cli(&a, &["resource", "list"]).0);

    cluster.ok(&a, &["resource", "create", "bot"]);
    for i in 0..60 {
        cluster.ok(&a, &["record", "put", "bot", &format!("r{i:02}"), "--value", &format!("v{i}")]);
    }
    let job = cluster.json(&a, &["job", "start", "bot", "rekey"]);
    let id = job["id"].as_str().unwrap().to_string();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = a_proc.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "node A did not abort");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "node A should have aborted mid-job");

    // Node B takes the job over once A's lease expires, and finishes it.
    let (mut b_proc, b) = cluster.spawn("b", free_port(), None);
    let mid = cluster.json(&b, &["job", "show", &id]);
    assert_eq!(mid["state"], "running", "{mid}");
    assert!(mid["done"].as_i64().unwrap() >= 25, "A committed its first batch: {mid}");
    let done = cluster.json(&b, &["job", "watch", &id]);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["done"], 60);

    // A comes back; records written on one node read on the other.
    let (mut a_proc, a) = cluster.spawn("a", port_a, None);
    assert_eq!(cluster.ok(&b, &["record", "get", "bot", "r07"]), "v7");
    cluster.ok(&b, &["record", "put", "bot", "from-b", "--value", "hello from b"]);
    assert_eq!(cluster.ok(&a, &["record", "get", "bot", "from-b"]), "hello from b");
    let names = cluster.json(&a, &["record", "list", "bot"]);
    assert_eq!(names["value"].as_array().unwrap().len(), 61);

    // A customer key; its revocation is honoured by both nodes within the bound.
    cluster.ok(&a, &["vault", "update", "default", "--purge-protection"]);
    cluster.ok(&a, &["key", "create", "cmk", "--kty", "oct"]);
    cluster.ok(&a, &["policy", "set", "default", "res-bot", "--permissions", "get,wrapKey,unwrapKey"]);
    cluster.ok(&b, &["resource", "encryption", "set", "bot", "--key-uri", &format!("{}/keys/cmk", b.url)]);
    assert_eq!(cluster.ok(&a, &["record", "get", "bot", "r01"]), "v1");
    cluster.ok(&a, &["policy", "remove", "default", "res-bot"]);
    for node in [&a, &b] {
        let took = until(10, "403 on every node", || {
            let (ok, _, err) = cluster.cli(node, &["record", "get", "bot", "r02"]);
            !ok && err.contains("KeyInaccessible")
        });
        assert!(took < Duration::from_secs(4), "{} took {took:?}", node.url);
    }
    cluster.ok(&b, &["policy", "set", "default", "res-bot", "--permissions", "get,wrapKey,unwrapKey"]);
    for node in [&a, &b] {
        until(10, "recovery on every node", || cluster.cli(node, &["record", "get", "bot", "r02"]).0);
    }
    assert_eq!(cluster.ok(&b, &["record", "get", "bot", "r59"]), "v59");
    for p in [&mut a_proc, &mut b_proc] {
        p.kill().unwrap();
        p.wait().unwrap();
    }
    let _ = Command::new("psql")
        .args([&format!("{}/postgres", admin.trim_end_matches('/')), "-q", "-c", &format!("DROP DATABASE {name}")])
        .status();
}
