//! What a new user meets first: shell completions, help text that says what the binary
//! is, logs without colour codes when they go to a file, and errors that read
//! `STATUS CODE: message` with the code once.

mod common;
use common::{Dir, Server, atrest};
use std::process::{Command, Stdio};

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let (ok, out, err) = atrest(&["completions", shell]);
        assert!(ok, "{shell}: {err}");
        assert!(out.contains("atrest") && out.contains("backup") && out.len() > 1000, "{shell}: {out}");
    }
    let (ok, _, err) = atrest(&["completions", "cmd"]);
    assert!(!ok && err.contains("invalid value"), "{err}");
}

#[test]
fn help_says_what_the_binary_is() {
    let (ok, out, _) = atrest(&["--help"]);
    assert!(ok);
    assert!(!out.contains("as it lands") && out.contains("backup") && out.contains("completions"), "{out}");
}

/// `atrest serve` with its log (stdout, at `level`) in a file, once it answers.
fn serve_logging_to_a_file(dir: &Dir, level: &str, extra: &[&str]) -> (Server, std::path::PathBuf) {
    let log = dir.0.join("serve.log");
    let port = common::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_atrest"))
        .args(["serve", "--data-dir"])
        .arg(dir.0.join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--s3-listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("ATREST_CONFIG")
        .env("ATREST_LOG", level)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server =
        Server { child, cli: common::Cli { dir: dir.0.join("data"), url: format!("https://127.0.0.1:{port}") } };
    let t = std::time::Instant::now();
    while !server.run(&["vault", "list"]).0 {
        assert!(t.elapsed() < std::time::Duration::from_secs(30), "the server did not come up");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    (server, log)
}

#[test]
fn logs_to_a_file_carry_no_colour_codes_and_codes_are_not_doubled() {
    let dir = Dir::new("ux-logs");
    let (server, log) = serve_logging_to_a_file(&dir, "info", &[]);
    // A data-service refusal: its code once, then the message.
    server.ok(&["resource", "create", "bot"]);
    let (ok, _, err) = server.run(&["record", "get", "bot", "missing"]);
    assert!(!ok);
    let first = err.split_whitespace().nth(2).unwrap_or_default().trim_end_matches(':').to_string();
    assert!(!first.is_empty() && err.matches(first.as_str()).count() == 1, "the code is said twice: {err}");
    server.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("INFO") || text.contains("WARN"), "nothing was logged: {text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a log file: {text:?}");
}

/// A certificate the CLI refuses is explained with what to do: a name the certificate
/// does not cover (a vault domain the server was not started with), or a CA this CLI
/// does not trust.
#[test]
fn tls_refusals_say_what_to_do() {
    let dir = Dir::new("ux-tls");
    let (server, log) = serve_logging_to_a_file(&dir, "warn", &["--vault-domain", "vault.test"]);
    server.ok(&["vault", "create", "payments"]);
    server.ok(&["policy", "set", "payments", "admin", "--permissions", "get,list"]);
    // The server covers *.vault.test, not *.other.test.
    let (ok, _, err) = server.run(&["key", "list", "--vault", "payments", "--vault-domain", "other.test"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("does not name payments.other.test") && err.contains("--vault-domain"),
        "no advice for a name the certificate does not cover: {err}"
    );
    assert_eq!(server.status(&["key", "list", "--vault", "payments", "--vault-domain", "other.test"]), Some(3));
    // The right domain works.
    server.ok(&["key", "list", "--vault", "payments", "--vault-domain", "vault.test"]);
    // A CA that did not sign the server's certificate.
    let (ok, _, err) = server.run(&["vault", "list", "--ca", "/etc/ssl/certs/ca-certificates.crt"]);
    assert!(!ok && err.contains("not signed by a CA this CLI trusts") && err.contains("--ca"), "{err}");
    server.stop();
    // The server says which name a client wanted that its certificate lacks, once.
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("payments.other.test").count(), 1, "{text}");
    assert!(!text.contains("payments.vault.test"), "a covered name is not reported: {text}");
}

/// `--output` is global: before the command or after it.
#[test]
fn output_is_a_global_option() {
    let dir = Dir::new("ux-output");
    let server = Server::start(&dir.0.join("data"), &[]);
    for args in [
        &["--output", "json", "tenant", "list"][..],
        &["tenant", "list", "--output", "json"],
        &["tenant", "--output", "json", "list"],
    ] {
        let out = server.ok(args);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"));
        assert!(v["value"].as_array().is_some_and(|t| !t.is_empty()), "{args:?}: {out}");
    }
    assert!(server.ok(&["tenant", "list"]).starts_with("NAME"), "tables by default");
    server.stop();
}

/// Expiry as in Azure Key Vault: once the customer key's version expires the resource
/// keeps reading and writing (its key still unwraps) and says why in a warning; what
/// needs a new wrap — a re-key, a key change onto the expired version — is refused,
/// naming the expiry, and the resource stays active.
#[test]
fn an_expired_customer_key_warns_and_refuses_only_new_wraps() {
    let dir = Dir::new("ux-expiry");
    let server = Server::start(&dir.0.join("data"), &["--key-follow-interval", "1", "--key-cache-ttl", "1"]);
    server.ok(&["vault", "update", "default", "--purge-protection"]);
    server.ok(&["resource", "create", "bot"]);
    server.ok(&["key", "create", "cmk", "--kty", "oct", "--exp", "+4s"]);
    server.ok(&["policy", "set", "default", "res-bot", "--permissions", "get,wrapKey,unwrapKey"]);
    let uri = format!("{}/keys/cmk", server.url);
    server.ok(&["resource", "encryption", "set", "bot", "--key-uri", &uri]);
    server.ok(&["record", "put", "bot", "a", "--value", "before"]);
    std::thread::sleep(std::time::Duration::from_secs(5));
    // Past exp: reads and writes go on.
    server.ok(&["record", "put", "bot", "b", "--value", "after"]);
    assert_eq!(server.ok(&["record", "get", "bot", "a"]), "before");
    let t = std::time::Instant::now();
    let shown = loop {
        let v: serde_json::Value =
            serde_json::from_str(&server.ok(&["resource", "show", "bot", "--output", "json"])).unwrap();
        if v["warning"].as_str().is_some_and(|w| w.contains("expired")) || t.elapsed().as_secs() > 10 {
            break v;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(shown["state"], "active", "{shown}");
    assert!(shown["warning"].as_str().is_some_and(|w| w.contains("keys/cmk") && w.contains("expired")), "{shown}");
    // A re-key needs wrapKey: refused, naming the expiry; the resource stays active.
    let (ok, _, err) = server.run(&["job", "start", "bot", "rekey"]);
    assert!(!ok && err.contains("expired"), "{err}");
    let (ok, _, err) = server.run(&["resource", "encryption", "set", "bot", "--key-uri", &uri]);
    assert!(!ok && err.contains("expired"), "{err}");
    let v: serde_json::Value =
        serde_json::from_str(&server.ok(&["resource", "show", "bot", "--output", "json"])).unwrap();
    assert_eq!(v["state"], "active", "{v}");
    assert_eq!(server.ok(&["record", "get", "bot", "b"]), "after");
    server.stop();
}
