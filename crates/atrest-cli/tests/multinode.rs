//! Several stateless nodes over one PostgreSQL and one S3 bucket (runs when
//! `ATREST_TEST_PG` names a PostgreSQL server, as `.ci/run` does; blob bodies go to the
//! S3 server named by `ATREST_TEST_S3`, bucket `atrest`, when it is set): nodes are real
//! `atrest serve` processes sharing the database, the bucket and the two root secrets,
//! nothing else.
//!
//! - A re-key job started on A survives A's death: A aborts after its first batch (a real
//!   `abort()`), B takes the job's lease when it expires and finishes it.
//! - Records and blobs written on one node read back on the other.
//! - A revocation is honoured by both nodes within the key-cache lifetime, and both
//!   recover when access returns.
//! - A batch that outlasts the job lease keeps its node (the lease is renewed while it
//!   runs).
//! - Restore drill: a database dump, a copy of the bucket and the two root secrets make
//!   a fresh deployment that reads everything back and verifies its audit chains.
//! - S3 front end: a multipart upload whose parts arrive at different nodes completes on
//!   either and reads back on both; an access key revoked on one node is refused by the
//!   other on the next request.
//! - Outages: with PostgreSQL or S3 cut off (through a proxy this test controls) calls
//!   fail fast with `ServiceUnavailable` and a message naming what is down, nothing
//!   else breaks, and everything works again when it returns.

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
    /// `--blob-store`, when bodies go to S3.
    blobs: Option<String>,
    /// `--job-lease` in seconds.
    lease_secs: u32,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Nodes that a failed assertion left running (they would go on reconnecting to the
        // shared PostgreSQL): every process whose command line names this cluster's folder.
        let dir = self.dir.to_string_lossy().into_owned();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if pid != std::process::id() && String::from_utf8_lossy(&cmdline).contains(&dir) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
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
            &self.lease_secs.to_string(),
            // Ports the system picks (the S3 test below reads them from the node's output).
            "--s3-listen",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .chain(self.blobs.iter().flat_map(|b| ["--blob-store".to_string(), b.clone()]))
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

/// `--blob-store` for a fresh prefix of bucket `atrest` on the S3 server in
/// `ATREST_TEST_S3` (credentials from the AWS environment variables), if set.
fn bucket(prefix: &str) -> Option<String> {
    let endpoint = std::env::var("ATREST_TEST_S3").ok()?;
    Some(format!("s3://atrest/{prefix}?endpoint={endpoint}&region=us-east-1"))
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| u8::try_from((i * 31 + i / 4093) % 251).unwrap()).collect()
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
    let name = format!("multinode_{}", std::process::id());
    let mut cluster = new_cluster("multinode", create_db(&admin, &name), None);
    let dir = cluster.dir.clone();
    // Without S3, a directory both nodes share (the documented alternative).
    cluster.blobs = bucket(&format!("multinode-{}", std::process::id()))
        .or_else(|| Some(dir.join("shared-blobs").to_string_lossy().into_owned()));

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

    // A comes back; records and blobs written on one node read on the other.
    let (mut a_proc, a) = cluster.spawn("a", port_a, None);
    assert_eq!(cluster.ok(&b, &["record", "get", "bot", "r07"]), "v7");
    let body = dir.join("body.bin");
    std::fs::write(&body, pattern(3 << 20)).unwrap();
    cluster.ok(&a, &["blob", "put", "bot", "photo", &body.to_string_lossy()]);
    let back = dir.join("back.bin");
    cluster.ok(&b, &["blob", "get", "bot", "photo", &back.to_string_lossy()]);
    assert!(std::fs::read(&back).unwrap() == pattern(3 << 20), "a blob written on A reads back on B");
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
    drop_db(&admin, &name);
}

/// Authorization is read on every request, never cached (issue 14 keeps it so): each kind
/// of change made on node A — a secret permission taken away, a policy removed, a key
/// disabled, a principal disabled, a token revoked — refuses the very next request on
/// node B, with no wait.
#[test]
fn every_change_to_authorization_holds_on_the_next_request_of_another_node() {
    let Ok(admin) = std::env::var("ATREST_TEST_PG") else {
        eprintln!("skipped: set ATREST_TEST_PG=postgres://USER@HOST:PORT to run the multi-node test");
        return;
    };
    let name = format!("multinode_auth_{}", std::process::id());
    let mut c = new_cluster("multinode-auth", create_db(&admin, &name), None);
    let (a_proc, a) = first_node(&mut c, "a");
    let (b_proc, b) = c.spawn("b", free_port(), None);
    let app_token = c.dir.join("app.token");
    c.ok(&a, &["principal", "create", "app"]);
    c.ok(&a, &["token", "issue", "app", "--out", &app_token.to_string_lossy()]);
    c.ok(&a, &["policy", "set", "default", "app", "--permissions", "get,wrapKey", "--secret-permissions", "get"]);
    c.ok(&a, &["key", "create", "k", "--kty", "oct"]);
    let value = c.dir.join("value.txt");
    std::fs::write(&value, "s3cr3t").unwrap();
    c.ok(&a, &["secret", "set", "s", "--file", &value.to_string_lossy()]);
    let token = std::fs::read_to_string(&app_token).unwrap().trim().to_string();
    // The app's requests on B: read the secret, wrap with the key (HTTP status, body).
    let get_secret = || {
        let out = Command::new(env!("CARGO_BIN_EXE_atrest"))
            .args(["secret", "show", "s", "--value"])
            .env("ATREST_URL", &b.url)
            .env("ATREST_CA", &b.ca)
            .env("ATREST_TOKEN", &token)
            .env("ATREST_DATA_DIR", c.dir.join("none"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let wrap = || {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "--cacert", &b.ca.to_string_lossy()])
            .args(["-H", &format!("Authorization: Bearer {token}"), "-H", "content-type: application/json"])
            .args(["-d", r#"{"alg":"A256KW","value":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#])
            .arg(format!("{}/keys/k//wrapkey?api-version=7.5", b.url))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
        (code.to_string(), body.to_string())
    };
    assert_eq!(get_secret(), (true, "s3cr3t".to_string()));
    assert_eq!(wrap().0, "200");
    // A secret permission taken away on A.
    c.ok(&a, &["policy", "set", "default", "app", "--permissions", "get,wrapKey"]);
    let (ok, err) = get_secret();
    assert!(!ok && err.contains("403"), "secret read after its permission went: {err}");
    assert_eq!(wrap().0, "200", "the key permissions stay");
    // The policy removed on A.
    c.ok(&a, &["policy", "remove", "default", "app"]);
    assert_eq!(wrap().0, "403");
    c.ok(&a, &["policy", "set", "default", "app", "--permissions", "get,wrapKey"]);
    assert_eq!(wrap().0, "200");
    // The key disabled on A.
    c.ok(&a, &["key", "update", "k", "--disable"]);
    let (code, body) = wrap();
    assert!(code == "403" && body.contains("KeyDisabled"), "{code} {body}");
    c.ok(&a, &["key", "update", "k", "--enable"]);
    assert_eq!(wrap().0, "200");
    // The principal disabled on A.
    c.ok(&a, &["principal", "disable", "app"]);
    assert_eq!(wrap().0, "401");
    c.ok(&a, &["principal", "enable", "app"]);
    assert_eq!(wrap().0, "200");
    // The token revoked on A.
    let tokens = c.json(&a, &["token", "list", "app"]);
    let id = tokens["value"][0]["id"].as_str().unwrap().to_string();
    c.ok(&a, &["token", "revoke", "app", &id]);
    assert_eq!(wrap().0, "401");
    for p in [a_proc, b_proc] {
        stop(p);
    }
    drop_db(&admin, &name);
}

/// Creates database `name` on the server in `admin` and returns its URL.
fn create_db(admin: &str, name: &str) -> String {
    let admin = admin.trim_end_matches('/');
    let st = Command::new("psql")
        .args([&format!("{admin}/postgres"), "-q", "-c", &format!("CREATE DATABASE {name}")])
        .status()
        .unwrap();
    assert!(st.success(), "CREATE DATABASE {name}");
    format!("{admin}/{name}")
}

fn drop_db(admin: &str, name: &str) {
    let admin = admin.trim_end_matches('/');
    let _ = Command::new("psql")
        .args([&format!("{admin}/postgres"), "-q", "-c", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")])
        .status();
}

fn new_cluster(tag: &str, db: String, blobs: Option<String>) -> Cluster {
    let dir = std::env::temp_dir().join(format!("atrest-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["root.key", "infra.key"] {
        let bytes = atrest_crypto::rand::bytes::<32>().unwrap();
        std::fs::write(dir.join(f), bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()).unwrap();
    }
    Cluster { dir, db, token: String::new(), blobs, lease_secs: 2 }
}

/// Starts the first node of a deployment (which creates it) and reads its admin token.
fn first_node(c: &mut Cluster, name: &str) -> (Child, Node) {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atrest"));
    cmd.args(c.serve_args(name, port)).env("ATREST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null());
    let child = cmd.spawn().unwrap();
    let token_file = c.dir.join(name).join("admin.token");
    until(30, "the first node's admin token", || token_file.exists());
    c.token = std::fs::read_to_string(&token_file).unwrap().trim().to_string();
    let node = Node { url: format!("https://127.0.0.1:{port}"), ca: c.dir.join(name).join("tls/ca.pem") };
    until(30, "the first node", || c.cli(&node, &["resource", "list"]).0);
    (child, node)
}

fn stop(mut p: Child) {
    p.kill().unwrap();
    p.wait().unwrap();
}

/// Copies every object under `from/` to `to/` in bucket `atrest` (a bucket backup).
fn copy_prefix(from: &str, to: &str) -> usize {
    use futures_util::StreamExt as _;
    use object_store::{ObjectStore as _, ObjectStoreExt as _};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name("atrest")
            .with_region("us-east-1")
            .with_endpoint(std::env::var("ATREST_TEST_S3").unwrap())
            .with_allow_http(true)
            .build()
            .unwrap();
        let prefix = object_store::path::Path::from(from);
        let mut list = s3.list(Some(&prefix));
        let mut n = 0;
        while let Some(m) = list.next().await {
            let m = m.unwrap();
            let rest = m.location.as_ref().strip_prefix(&format!("{from}/")).unwrap().to_string();
            s3.copy(&m.location, &object_store::path::Path::from(format!("{to}/{rest}"))).await.unwrap();
            n += 1;
        }
        n
    })
}

#[test]
fn restore_into_a_fresh_deployment() {
    let (Ok(admin), Some(_)) = (std::env::var("ATREST_TEST_PG"), std::env::var_os("ATREST_TEST_S3")) else {
        eprintln!("skipped: set ATREST_TEST_PG and ATREST_TEST_S3 to run the restore drill");
        return;
    };
    let pid = std::process::id();
    let (src_db, dst_db) = (format!("restore_src_{pid}"), format!("restore_dst_{pid}"));
    let (src_prefix, dst_prefix) = (format!("restore-src-{pid}"), format!("restore-dst-{pid}"));
    let mut src = new_cluster("restore", create_db(&admin, &src_db), bucket(&src_prefix));

    // A deployment with a customer-key resource holding records, a multipart blob and a
    // message.
    let (node, a) = first_node(&mut src, "a");
    src.ok(&a, &["vault", "update", "default", "--purge-protection"]);
    src.ok(&a, &["key", "create", "cmk", "--kty", "oct"]);
    src.ok(&a, &["resource", "create", "bot"]);
    src.ok(&a, &["policy", "set", "default", "res-bot", "--permissions", "get,wrapKey,unwrapKey"]);
    src.ok(&a, &["resource", "encryption", "set", "bot", "--key-uri", &format!("{}/keys/cmk", a.url)]);
    for i in 0..20 {
        src.ok(&a, &["record", "put", "bot", &format!("r{i:02}"), "--value", &format!("v{i}")]);
    }
    let body = src.dir.join("body.bin");
    std::fs::write(&body, pattern(20 << 20)).unwrap();
    src.ok(&a, &["blob", "put", "bot", "big", &body.to_string_lossy()]);
    src.ok(&a, &["message", "send", "bot", "--body", "still here"]);

    // Backup, in this order: the database dump, then the bucket (bodies never change in
    // place, so every body the dump refers to is in the copy), then the two secrets.
    let dump = src.dir.join("db.dump");
    let st = Command::new("pg_dump").args(["-Fc", "-f", &dump.to_string_lossy(), &src.db]).status().unwrap();
    assert!(st.success(), "pg_dump");
    assert!(copy_prefix(&src_prefix, &dst_prefix) >= 1, "the bucket copy holds the blob body");
    stop(node);
    drop_db(&admin, &src_db);

    // Restore into a fresh deployment: new database, new bucket prefix, new data
    // directory, the same two root secrets.
    let dst_url = create_db(&admin, &dst_db);
    let st = Command::new("pg_restore").args(["--no-owner", "-d", &dst_url, &dump.to_string_lossy()]).status().unwrap();
    assert!(st.success(), "pg_restore");
    let dst = Cluster {
        dir: src.dir.clone(),
        db: dst_url,
        token: src.token.clone(),
        blobs: bucket(&dst_prefix),
        lease_secs: 2,
    };
    let (node, b) = dst.spawn("restored", free_port(), None);
    for i in [0, 7, 19] {
        assert_eq!(dst.ok(&b, &["record", "get", "bot", &format!("r{i:02}")]), format!("v{i}"));
    }
    let back = dst.dir.join("back.bin");
    dst.ok(&b, &["blob", "get", "bot", "big", &back.to_string_lossy()]);
    assert!(std::fs::read(&back).unwrap() == pattern(20 << 20), "the restored blob reads back whole");
    let got = dst.json(&b, &["message", "receive", "bot"]);
    assert!(got.to_string().contains("still here"), "{got}");
    let enc = dst.json(&b, &["resource", "encryption", "show", "bot"]);
    assert!(enc.to_string().contains("/keys/cmk"), "still under the customer key: {enc}");
    let verify = Command::new(env!("CARGO_BIN_EXE_atrest"))
        .args(["audit", "verify", "--data-dir", &dst.dir.join("restored").to_string_lossy(), "--database", &dst.db])
        .args(["--root-key-file", &dst.dir.join("root.key").to_string_lossy()])
        .output()
        .unwrap();
    assert!(verify.status.success(), "audit verify: {}", String::from_utf8_lossy(&verify.stderr));
    stop(node);
    drop_db(&admin, &dst_db);
}

/// A TCP proxy the test can cut: while down, live connections are shut and new ones
/// are closed on accept, as when a server or the network goes away.
struct Proxy {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    live: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start(upstream: std::net::SocketAddr) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let live = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, live2) = (up.clone(), live.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = std::net::TcpStream::connect(upstream) else { continue };
                // Checked under the lock `set_up(false)` drains, so no connection
                // accepted during a cut survives it.
                let mut l = live2.lock().unwrap();
                if !up2.load(Ordering::SeqCst) {
                    continue;
                }
                l.push(client.try_clone().unwrap());
                l.push(server.try_clone().unwrap());
                for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, up, live }
    }

    fn set_up(&self, up: bool) {
        let mut live = self.live.lock().unwrap();
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            for s in live.drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

#[test]
fn outages_of_the_database_and_the_blob_store() {
    let (Ok(admin), Ok(s3)) = (std::env::var("ATREST_TEST_PG"), std::env::var("ATREST_TEST_S3")) else {
        eprintln!("skipped: set ATREST_TEST_PG and ATREST_TEST_S3 to run the outage test");
        return;
    };
    let addr = |url: &str| -> std::net::SocketAddr {
        let hostport = url.split("://").nth(1).unwrap().rsplit('@').next().unwrap().split('/').next().unwrap();
        hostport.parse().unwrap()
    };
    let (pg, bucket_proxy) = (Proxy::start(addr(&admin)), Proxy::start(addr(&s3)));
    let pid = std::process::id();
    let name = format!("outage_{pid}");
    create_db(&admin, &name);
    let user = admin.split("://").nth(1).unwrap().split('@').next().unwrap().to_string();
    let db = format!("postgres://{user}@127.0.0.1:{}/{name}", pg.port);
    let blobs = format!("s3://atrest/outage-{pid}?endpoint=http://127.0.0.1:{}&region=us-east-1", bucket_proxy.port);
    let mut c = new_cluster("outage", db, Some(blobs));
    let (node, a) = first_node(&mut c, "a");
    c.ok(&a, &["resource", "create", "bot"]);
    c.ok(&a, &["record", "put", "bot", "k", "--value", "kept"]);
    let body = c.dir.join("body.bin");
    std::fs::write(&body, pattern(1 << 20)).unwrap();
    c.ok(&a, &["blob", "put", "bot", "b", &body.to_string_lossy()]);
    let back = c.dir.join("back.bin");
    let back_s = back.to_string_lossy().into_owned();

    // S3 down: blob calls fail fast and say which store is down; records still work.
    bucket_proxy.set_up(false);
    let t = Instant::now();
    let (ok, _, err) = c.cli(&a, &["blob", "get", "bot", "b", &back_s]);
    assert!(!ok && err.contains("ServiceUnavailable") && err.contains("the blob store s3://atrest/"), "{err}");
    assert!(!err.contains("IntegrityCheckFailed"), "an outage is not tampering: {err}");
    let (ok, _, err) = c.cli(&a, &["blob", "put", "bot", "b2", &body.to_string_lossy()]);
    assert!(!ok && err.contains("ServiceUnavailable"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(60), "S3 failures took {:?}", t.elapsed());
    assert_eq!(c.ok(&a, &["record", "get", "bot", "k"]), "kept");
    bucket_proxy.set_up(true);
    c.ok(&a, &["blob", "get", "bot", "b", &back_s]);
    assert!(std::fs::read(&back).unwrap() == pattern(1 << 20));
    c.ok(&a, &["blob", "put", "bot", "b2", &body.to_string_lossy()]);

    // PostgreSQL down: calls fail within seconds with a clear message; nothing is lost.
    pg.set_up(false);
    let t = Instant::now();
    let (ok, _, err) = c.cli(&a, &["record", "get", "bot", "k"]);
    assert!(!ok && err.contains("ServiceUnavailable") && err.contains("database is unreachable"), "{err}");
    let (ok, _, err) = c.cli(&a, &["record", "put", "bot", "k2", "--value", "v"]);
    assert!(!ok && err.contains("ServiceUnavailable"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(30), "database failures took {:?}", t.elapsed());
    pg.set_up(true);
    until(20, "recovery after the database returns", || c.cli(&a, &["record", "get", "bot", "k"]).0);
    assert_eq!(c.ok(&a, &["record", "get", "bot", "k"]), "kept");
    c.ok(&a, &["record", "put", "bot", "k2", "--value", "v"]);
    c.ok(&a, &["blob", "get", "bot", "b2", &back_s]);
    assert!(std::fs::read(&back).unwrap() == pattern(1 << 20));
    stop(node);
    drop_db(&admin, &name);
}

/// A batch that outlasts the job lease (one 256 MiB blob re-encrypted under a 1 s lease)
/// keeps its node: the node renews the lease while it works, so the other live node
/// never takes the job over.
#[test]
fn a_long_batch_keeps_its_lease() {
    let Ok(admin) = std::env::var("ATREST_TEST_PG") else {
        eprintln!("skipped: set ATREST_TEST_PG to run the lease test");
        return;
    };
    let pid = std::process::id();
    let name = format!("longbatch_{pid}");
    let db = create_db(&admin, &name);
    let mut c = new_cluster("longbatch", db.clone(), None);
    c.blobs = bucket(&format!("longbatch-{pid}")).or_else(|| Some(c.dir.join("shared-blobs").to_string_lossy().into()));
    c.lease_secs = 1;
    let (a_proc, a) = first_node(&mut c, "a");
    let (b_proc, b) = c.spawn("b", free_port(), None);
    c.ok(&a, &["resource", "create", "bot"]);
    let body = c.dir.join("body.bin");
    std::fs::write(&body, pattern(256 << 20)).unwrap();
    c.ok(&a, &["blob", "put", "bot", "big", &body.to_string_lossy()]);
    let job = c.json(&a, &["job", "start", "bot", "reencrypt"]);
    let id = job["id"].as_str().unwrap().to_string();
    let mut holders = std::collections::BTreeSet::new();
    let t = Instant::now();
    loop {
        let out = Command::new("psql")
            .args([&db, "-Atc", &format!("SELECT holder FROM leases WHERE name = 'job:{id}'")])
            .output()
            .unwrap();
        let holder = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !holder.is_empty() {
            holders.insert(holder);
        }
        if c.json(&b, &["job", "show", &id])["state"] == "succeeded" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(180), "the job did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(t.elapsed() > Duration::from_secs(3), "the batch was too short to outlast the lease: {:?}", t.elapsed());
    assert_eq!(holders.len(), 1, "the job changed nodes while both were alive: {holders:?}");
    let back = c.dir.join("back.bin");
    c.ok(&b, &["blob", "get", "bot", "big", &back.to_string_lossy()]);
    assert!(std::fs::read(&back).unwrap() == pattern(256 << 20));
    stop(a_proc);
    stop(b_proc);
    drop_db(&admin, &name);
}

/// Every vault at an origin of its own, served by every node: a tenant's vault created on
/// A answers on its port on B too (B listens on another address, as another machine
/// would), and bring-your-own-key in that tenant works through a key URI naming it.
#[test]
fn vault_ports_on_every_node() {
    let Ok(admin) = std::env::var("ATREST_TEST_PG") else {
        eprintln!("skipped: set ATREST_TEST_PG=postgres://USER@HOST:PORT to run the multi-node test");
        return;
    };
    let name = format!("vaultports_{}", std::process::id());
    let mut c = new_cluster("vaultports", create_db(&admin, &name), None);
    let (a_proc, a) = first_node(&mut c, "a");
    let port_b = free_port();
    let mut args = c.serve_args("b", port_b);
    let i = args.iter().position(|s| s == "--listen").unwrap();
    args[i + 1] = format!("127.0.0.2:{port_b}");
    args.extend(["--hostname".to_string(), "127.0.0.2".to_string()]);
    let b_out = c.dir.join("b.out");
    let b_proc = Command::new(env!("CARGO_BIN_EXE_atrest"))
        .args(args)
        .env("ATREST_LOG", "warn")
        .stdout(std::fs::File::create(&b_out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let b = Node { url: format!("https://127.0.0.2:{port_b}"), ca: c.dir.join("b/tls/ca.pem") };
    until(30, "node B", || c.cli(&b, &["resource", "list"]).0);
    // B did not create the deployment: it points to the first node's admin token instead
    // of printing a path that does not exist.
    until(10, "node B's start-up lines", || {
        std::fs::read_to_string(&b_out).unwrap_or_default().contains("admin token")
    });
    let said = std::fs::read_to_string(&b_out).unwrap();
    assert!(said.contains("admin token:        none here") && !c.dir.join("b/admin.token").exists(), "{said}");

    c.ok(&a, &["tenant", "create", "shop"]);
    c.ok(&a, &["principal", "create", "ops", "--tenant", "shop", "--kind", "user", "--role", "tenant-admin"]);
    let token = c.json(&a, &["token", "issue", "ops", "--tenant", "shop", "--ttl", "600"])["token"]
        .as_str()
        .unwrap()
        .to_string();
    c.ok(&a, &["vault", "create", "shop-keys", "--tenant", "shop", "--purge-protection"]);
    let url = c.json(&a, &["vault", "show", "shop-keys"])["url"].as_str().unwrap().to_string();
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    assert!(url.starts_with("https://127.0.0.1:") && port != 0, "{url}");
    c.token = token;
    c.ok(&a, &["policy", "set", "shop-keys", "ops", "--permissions", "get,list,create"]);
    // B reads the new port within its refresh (5 s) and serves it at its own address.
    until(15, "node B serving the vault's port", || c.cli(&b, &["key", "list", "--vault", "shop-keys"]).0);
    assert_eq!(c.json(&b, &["vault", "show", "shop-keys"])["url"], format!("https://127.0.0.2:{port}"));
    let kid = c.json(&b, &["key", "create", "cmk", "--vault", "shop-keys", "--kty", "oct"])["key"]["kid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(kid.starts_with(&format!("https://127.0.0.2:{port}/keys/cmk/")), "{kid}");
    assert!(c.ok(&a, &["key", "list", "--vault", "shop-keys"]).contains(&format!("{url}/keys/cmk")));
    // Bring your own key inside the tenant: the resource's identity, the grant, the URI.
    c.ok(&a, &["resource", "create", "orders"]);
    c.ok(&a, &["policy", "set", "shop-keys", "res-orders", "--permissions", "get,wrapKey,unwrapKey"]);
    c.ok(&b, &["resource", "encryption", "set", "orders", "--key-uri", &format!("{url}/keys/cmk")]);
    c.ok(&b, &["record", "put", "orders", "o1", "--value", "two boxes"]);
    assert_eq!(c.ok(&a, &["record", "get", "orders", "o1"]), "two boxes");
    let shown = c.json(&a, &["resource", "show", "orders"]);
    assert_eq!(shown["encryption"]["keySource"], "customer", "{shown}");
    stop(a_proc);
    stop(b_proc);
    drop_db(&admin, &name);
}

/// Starts a node with its stdout in a file; returns its S3 port, read from what it printed.
fn spawn_with_s3(c: &Cluster, name: &str) -> (Child, Node, u16) {
    let port = free_port();
    let out = c.dir.join(format!("{name}.out"));
    let child = Command::new(env!("CARGO_BIN_EXE_atrest"))
        .args(c.serve_args(name, port))
        .env("ATREST_LOG", "warn")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let node = Node { url: format!("https://127.0.0.1:{port}"), ca: c.dir.join(name).join("tls/ca.pem") };
    let mut s3_port = 0;
    until(30, &format!("node {name}'s S3 endpoint"), || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        s3_port = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("S3 endpoint:"))
            .and_then(|l| l.trim().strip_prefix("https://127.0.0.1:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        s3_port != 0
    });
    until(30, &format!("node {name}"), || c.cli(&node, &["resource", "list"]).0);
    (child, node, s3_port)
}

#[test]
fn s3_multipart_across_nodes() {
    let Ok(admin) = std::env::var("ATREST_TEST_PG") else {
        eprintln!("skipped: set ATREST_TEST_PG=postgres://USER@HOST:PORT to run the multi-node test");
        return;
    };
    use object_store::multipart::MultipartStore as _;
    use object_store::{ObjectStoreExt as _, PutPayload};
    let name = format!("s3nodes_{}", std::process::id());
    let mut c = new_cluster("s3nodes", create_db(&admin, &name), bucket(&format!("s3nodes{}", std::process::id())));
    // The first start creates the deployment (and the admin token); then A again, and B,
    // with their S3 ports read from what they print.
    let (a_proc, _) = first_node(&mut c, "a");
    stop(a_proc);
    let (a_proc, a2, a_s3) = spawn_with_s3(&c, "a");
    let (b_proc, b, b_s3) = spawn_with_s3(&c, "b");
    c.ok(&a2, &["resource", "create", "media"]);
    let key = c.json(&a2, &["s3-key", "issue", "admin"]);
    let (id, secret) = (key["id"].as_str().unwrap().to_string(), key["secret"].as_str().unwrap().to_string());
    let client = |node: &Node, port: u16| {
        let cert = object_store::Certificate::from_pem(&std::fs::read(&node.ca).unwrap()).unwrap();
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(format!("https://localhost:{port}"))
            .with_bucket_name("media")
            .with_region("us-east-1")
            .with_access_key_id(&id)
            .with_secret_access_key(&secret)
            .with_virtual_hosted_style_request(false)
            .with_client_options(object_store::ClientOptions::new().with_root_certificate(cert))
            .with_retry(object_store::RetryConfig { max_retries: 0, ..Default::default() })
            .build()
            .unwrap()
    };
    let (sa, sb) = (client(&a2, a_s3), client(&b, b_s3));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let path = object_store::path::Path::from("videos/clip.bin");
        let body = pattern((5 << 20) + 123_456);
        let upload = sa.create_multipart(&path).await.unwrap();
        let p1 = sa.put_part(&path, &upload, 0, PutPayload::from(body[..5 << 20].to_vec())).await.unwrap();
        let p2 = sb.put_part(&path, &upload, 1, PutPayload::from(body[5 << 20..].to_vec())).await.unwrap();
        sb.complete_multipart(&path, &upload, vec![p1, p2]).await.unwrap();
        for s in [&sa, &sb] {
            let got = s.get(&path).await.unwrap().bytes().await.unwrap();
            assert!(got.as_ref() == &body[..], "the object reads back whole on both nodes");
        }
        let r = sb.get_range(&path, (5 << 20) - 10..(5 << 20) + 10).await.unwrap();
        assert_eq!(r.as_ref(), &body[(5 << 20) - 10..(5 << 20) + 10]);
        // Listings on PostgreSQL: key order is byte order (bytea), prefixes roll up.
        use futures_util::TryStreamExt as _;
        use object_store::ObjectStore as _;
        for k in ["videos/b", "videos/a", "videos/Z", "videos/sub/x", "videos/zz"] {
            sa.put(&object_store::path::Path::from(k), PutPayload::from_static(b"x")).await.unwrap();
        }
        let listed: Vec<String> = sb
            .list(Some(&object_store::path::Path::from("videos")))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed, ["videos/Z", "videos/a", "videos/b", "videos/clip.bin", "videos/sub/x", "videos/zz"]);
        let top = sb.list_with_delimiter(Some(&object_store::path::Path::from("videos"))).await.unwrap();
        assert_eq!(top.common_prefixes.iter().map(ToString::to_string).collect::<Vec<_>>(), ["videos/sub"]);
        assert_eq!(top.objects.len(), 5);
    });
    // Revoked on A, refused by B on the next request.
    c.ok(&a2, &["s3-key", "revoke", "admin", &id]);
    rt.block_on(async {
        let e = sb.head(&object_store::path::Path::from("videos/clip.bin")).await.unwrap_err().to_string();
        assert!(e.contains("403"), "{e}");
    });
    stop(a_proc);
    stop(b_proc);
    drop_db(&admin, &name);
}
