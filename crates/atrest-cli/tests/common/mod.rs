//! Helpers for tests that drive real `atrest` processes: a data directory removed on
//! drop, a server started on a free port and stopped by signal, and CLI calls against it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A temporary directory, removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("atrest-{tag}-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The CLI pointed at a server (its URL, data directory and so its admin token).
#[derive(Clone)]
pub struct Cli {
    pub dir: PathBuf,
    pub url: String,
}

impl Cli {
    /// `atrest ARGS` against the server.
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_atrest"))
            .args(args)
            .env("ATREST_URL", &self.url)
            .env("ATREST_DATA_DIR", &self.dir)
            .env_remove("ATREST_TOKEN")
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "atrest {args:?} failed: {err}");
        out
    }

    /// The exit status of `atrest ARGS` against the server.
    pub fn status(&self, args: &[&str]) -> Option<i32> {
        Command::new(env!("CARGO_BIN_EXE_atrest"))
            .args(args)
            .env("ATREST_URL", &self.url)
            .env("ATREST_DATA_DIR", &self.dir)
            .env_remove("ATREST_TOKEN")
            .output()
            .unwrap()
            .status
            .code()
    }
}

/// A running `atrest serve` on a data directory.
pub struct Server {
    pub child: Child,
    pub cli: Cli,
}

impl std::ops::Deref for Server {
    type Target = Cli;
    fn deref(&self) -> &Cli {
        &self.cli
    }
}

impl Server {
    /// Starts `atrest serve` with `extra` flags and waits until it answers.
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::try_start(dir, extra).unwrap_or_else(|e| panic!("serve failed: {e}"))
    }

    /// Starts `atrest serve`; `Err` with what it printed when it exits instead of serving.
    pub fn try_start(dir: &Path, extra: &[&str]) -> Result<Self, String> {
        Self::try_start_logging(dir, extra, "warn", None)
    }

    /// Starts `atrest serve` logging at `level` into `log` (kept), e.g. `trace`.
    pub fn start_logging(dir: &Path, extra: &[&str], level: &str, log: &Path) -> Self {
        Self::try_start_logging(dir, extra, level, Some(log)).unwrap_or_else(|e| panic!("serve failed: {e}"))
    }

    fn try_start_logging(dir: &Path, extra: &[&str], level: &str, keep: Option<&Path>) -> Result<Self, String> {
        let port = free_port();
        std::fs::create_dir_all(dir).unwrap();
        let log = keep.map_or_else(|| dir.with_extension(format!("serve-{port}.log")), Path::to_path_buf);
        let log_file = std::fs::File::create(&log).unwrap();
        let remove = |log: &Path| {
            if keep.is_none() {
                let _ = std::fs::remove_file(log);
            }
        };
        let child = Command::new(env!("CARGO_BIN_EXE_atrest"))
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            // No fixed S3 port: tests run side by side.
            .args(if extra.contains(&"--s3-listen") { &[][..] } else { &["--s3-listen", "127.0.0.1:0"][..] })
            .args(extra)
            .env_remove("ATREST_CONFIG")
            .env("ATREST_LOG", level)
            // The log (on stdout) goes with stderr into the kept log file, if any.
            .stdout(if keep.is_some() { Stdio::from(log_file.try_clone().unwrap()) } else { Stdio::null() })
            .stderr(log_file)
            .spawn()
            .unwrap();
        let mut s = Self { child, cli: Cli { dir: dir.to_path_buf(), url: format!("https://127.0.0.1:{port}") } };
        let t = Instant::now();
        loop {
            if let Some(status) = s.child.try_wait().unwrap() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                remove(&log);
                return Err(format!("{status}: {text}"));
            }
            if s.run(&["vault", "list"]).0 {
                remove(&log);
                return Ok(s);
            }
            assert!(t.elapsed() < Duration::from_secs(30), "the server did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An HTTPS client trusting the server's generated CA, and its admin token.
    pub fn http(&self) -> (reqwest::Client, String) {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(self.dir.join("tls/ca.pem")).unwrap();
        for c in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder().use_preconfigured_tls(tls).build().unwrap();
        (client, std::fs::read_to_string(self.dir.join("admin.token")).unwrap())
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) {
        let st = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(st.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "serve exited with {status}");
    }

    /// SIGKILL: no shutdown at all.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// `atrest ARGS` with no server (local commands).
pub fn atrest(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_atrest"))
        .args(args)
        .env_remove("ATREST_CONFIG")
        .env_remove("ATREST_DATA_DIR")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}
