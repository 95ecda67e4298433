//! `atrest secret …` against a real `atrest serve` over TLS, and where a secret's value
//! must never be: not in any file of the data directory (databases, WALs), not in the
//! server's trace-level log, not in `/metrics`, not in the audit export.

mod common;

use common::{Dir, Server};
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// `atrest ARGS` against the server with `stdin` piped in.
fn with_stdin(s: &Server, args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_atrest"))
        .args(args)
        .env("ATREST_URL", &s.url)
        .env("ATREST_DATA_DIR", &s.dir)
        .env_remove("ATREST_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

#[test]
fn secrets_from_the_cli_and_where_values_never_go() {
    let dir = Dir::new("secrets");
    let data = dir.0.join("data");
    let log = dir.0.join("serve.log");
    let s = Server::start_logging(&data, &[], "trace", &log);
    let canary = format!("canary-{}", std::process::id() as u64 * 7919 + 0x5eed);
    let second = format!("second-{canary}");

    // set from stdin, byte for byte; the value is not echoed.
    let (ok, out, err) = with_stdin(
        &s,
        &["secret", "set", "app-password", "--content-type", "text/plain", "--tag", "env=prod"],
        canary.as_bytes(),
    );
    assert!(ok, "{err}");
    assert!(!out.contains(&canary), "set does not print the value: {out}");
    assert!(out.contains("text/plain") && out.contains("/secrets/app-password/"), "{out}");
    let shown = s.ok(&["secret", "show", "app-password"]);
    assert!(!shown.contains(&canary) && shown.contains("env") && shown.contains("enabled"), "{shown}");
    assert_eq!(s.ok(&["secret", "show", "app-password", "--value"]), canary, "exactly the value, nothing added");
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["--output", "json", "secret", "show", "app-password", "--value"])).unwrap();
    assert_eq!(json["value"], canary.as_str());
    let first_version = json["id"].as_str().unwrap().rsplit('/').next().unwrap().to_string();

    // set from a file; versions; show an older version.
    let file = dir.0.join("value.txt");
    std::fs::write(&file, &second).unwrap();
    s.ok(&["secret", "set", "app-password", "--file", file.to_str().unwrap()]);
    assert_eq!(s.ok(&["secret", "show", "app-password", "--value"]), second);
    assert_eq!(s.ok(&["secret", "show", "app-password", "--version", &first_version, "--value"]), canary);
    let versions = s.ok(&["secret", "versions", "app-password"]);
    assert_eq!(versions.lines().count(), 3, "a header and two versions: {versions}");
    assert!(s.ok(&["secret", "list"]).contains("app-password"));
    let (ok, _, err) = with_stdin(&s, &["secret", "set", "binary"], &[0xff, 0xfe, 0]);
    assert!(!ok && err.contains("not UTF-8"), "{err}");

    // update: disable (the value is refused, with what to do), enable, content type.
    s.ok(&["secret", "update", "app-password", "--version", &first_version, "--disable"]);
    let (ok, _, err) = s.run(&["secret", "show", "app-password", "--version", &first_version, "--value"]);
    assert!(!ok && err.contains("disabled secret"), "{err}");
    s.ok(&["secret", "update", "app-password", "--version", &first_version, "--enable", "--content-type", "pw"]);
    assert!(s.ok(&["secret", "show", "app-password", "--version", &first_version]).contains("pw"));

    // delete, recover, backup, purge, restore.
    s.ok(&["secret", "delete", "app-password"]);
    assert!(s.ok(&["secret", "list-deleted"]).contains("deletedsecrets/app-password"));
    let (ok, _, err) = s.run(&["secret", "show", "app-password"]);
    assert!(!ok && err.contains("SecretNotFound"), "{err}");
    s.ok(&["secret", "recover", "app-password"]);
    let blob = dir.0.join("app-password.backup");
    s.ok(&["secret", "backup", "app-password", "--out", blob.to_str().unwrap()]);
    s.ok(&["secret", "delete", "app-password"]);
    s.ok(&["secret", "purge", "app-password"]);
    s.ok(&["secret", "restore", "--in", blob.to_str().unwrap()]);
    assert_eq!(s.ok(&["secret", "show", "app-password", "--version", &first_version, "--value"]), canary);

    // /metrics counts secrets per vault, never a name or a value.
    let (http, token) = s.http();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let metrics = rt.block_on(async {
        http.get(format!("{}/metrics", s.url)).bearer_auth(token.trim()).send().await.unwrap().text().await.unwrap()
    });
    assert!(
        metrics.contains("atrest_secret_operations_total{vault=\"default\",operation=\"get-secret\",result=\"ok\"}")
    );
    assert!(!metrics.contains(&canary) && !metrics.contains("app-password"), "{metrics}");
    s.stop();

    // Every read of a value is in the audit trail; no value is.
    let (ok, audit, err) = common::atrest(&["audit", "export", "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(audit.contains("\"get-secret\"") && audit.contains("\"set-secret\"") && audit.contains("app-password"));
    assert!(!audit.contains(&canary), "the audit export holds no value");

    // Nowhere in the data directory (databases, WALs, anything) nor in the trace log.
    for v in [&canary, &second] {
        assert_eq!(files_containing(&data, v.as_bytes()), Vec::<String>::new(), "{v} found in the data directory");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("TRACE"), "the server logged at trace level");
    assert!(!text.contains(&canary) && !text.contains(&second), "a value in the trace log");
}
