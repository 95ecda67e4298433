//! The README's walkthroughs as one story, run as written: every ```sh block the README
//! marks with `<!-- walkthrough` (tenants and a tenant admin, the tenant vault's secrets,
//! secure import into the tenant's vault, the data service with bring-your-own-key inside the tenant), in
//! order, by bash with `set -euo pipefail`, in a directory where a fresh `atrest serve`
//! keeps its data in `./atrest-data` (the CLI's defaults), with `atrest` on the `PATH`.
//! The only change made to the text: the README's addresses (`127.0.0.1:8443`, the first
//! vault port `127.0.0.1:8444`) become this server's, so that tests can run side by side.

mod common;
use common::{Dir, Server, free_port};
use std::process::Command;

/// The marked blocks of `readme`, in order.
fn walkthrough(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(l) = lines.next() {
        if !l.starts_with("<!-- walkthrough") {
            continue;
        }
        assert_eq!(lines.next(), Some("```sh"), "a walkthrough marker must stand right above a ```sh block");
        let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        blocks.push(block.join("\n"));
    }
    blocks
}

#[test]
fn the_readme_walkthroughs_run_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let blocks = walkthrough(&readme);
    assert!(blocks.len() >= 3, "the tenants, secure-import and data-service walkthroughs are marked");
    assert!(blocks.iter().any(|b| b.contains("resource encryption set")), "bring-your-own-key is in the story");

    let dir = Dir::new("readme");
    let vault_port = free_port();
    let server = Server::start(&dir.0.join("atrest-data"), &["--vault-ports", &format!("{vault_port}-{vault_port}")]);
    let addr = server.url.trim_start_matches("https://").to_string();
    // A file the data walkthrough uploads.
    std::fs::write(dir.0.join("cat.jpg"), (0..4096u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();

    let script = format!("set -euo pipefail\nset -x\n{}\n", blocks.join("\n"))
        .replace("127.0.0.1:8443", &addr)
        .replace("127.0.0.1:8444", &format!("127.0.0.1:{vault_port}"));
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_atrest")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&dir.0)
        .env("PATH", path)
        .env_remove("ATREST_TOKEN")
        .env_remove("ATREST_TOKEN_FILE")
        .env_remove("ATREST_URL")
        .env_remove("ATREST_DATA_DIR")
        .env_remove("ATREST_CONFIG")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the walkthrough stopped ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    // What the comments promise.
    assert!(stdout.contains("p4ssw0rd!"), "secret show --value prints the value:\n{stdout}");
    assert!(dir.0.join("db-password.backup").exists(), "the secret backup is written");
    assert!(stdout.contains("hello"), "record get prints the value:\n{stdout}");
    assert!(stdout.lines().any(|l| l.trim() == "1024"), "a 1 KiB range:\n{stdout}");
    assert!(stdout.contains("wake up"), "the message is received:\n{stdout}");
    let alice = std::fs::read_to_string(dir.0.join("alice.token")).unwrap();
    assert!(alice.starts_with("atr1."), "the token went to the file, not the screen");
    assert!(!stdout.contains(alice.trim()), "a token written to a file is not printed");
    server.stop();
}
