//! The administrative CLI against a real server over HTTPS: tenants, principals, tokens,
//! policies, keys with table and JSON output, and secure import with the README's
//! openssl recipe (run with the real `openssl`).

use std::path::Path;
use std::process::Command;

struct Cli {
    url: String,
    data_dir: String,
}

impl Cli {
    /// Runs `atrest ARGS` with the connection in the environment; off the async runtime,
    /// since the server runs on it.
    async fn run(&self, args: &[&str], token: Option<&str>) -> (bool, String, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_atrest"));
        cmd.args(args).env("ATREST_URL", &self.url).env("ATREST_DATA_DIR", &self.data_dir).env_remove("ATREST_TOKEN");
        if let Some(t) = token {
            cmd.env("ATREST_TOKEN", t);
        }
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args, None).await;
        assert!(ok, "atrest {args:?} failed: {err}");
        out
    }

    async fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&a).await).unwrap()
    }
}

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh").arg("-ec").arg(script).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{script}\n{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn administration_and_keys_over_https() {
    let dir = std::env::temp_dir().join(format!("atrest-cli-manage-{}", std::process::id()));
    let cfg = atrest_server::ServeConfig {
        data_dir: dir.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let server = atrest_server::start(cfg).await.unwrap();
    let cli = Cli { url: format!("https://127.0.0.1:{}", server.addr.port()), data_dir: dir.to_str().unwrap().into() };

    // Token and CA come from the data directory.
    let me = cli.json(&["tenant", "whoami"]).await;
    assert_eq!(me["role"], "deployment-admin");
    cli.ok(&["tenant", "create", "acme"]).await;
    let table = cli.ok(&["tenant", "list"]).await;
    assert!(table.starts_with("NAME") && table.contains("acme") && table.contains("default"), "{table}");
    cli.ok(&["principal", "create", "ops", "--tenant", "acme", "--kind", "user", "--role", "tenant-admin"]).await;
    let tok = cli.json(&["token", "issue", "ops", "--tenant", "acme", "--ttl", "600"]).await;
    let ops_token = tok["token"].as_str().unwrap();
    let (ok, out, _) =
        cli.run(&["vault", "create", "acme-keys", "--tenant", "acme", "--purge-protection"], Some(ops_token)).await;
    assert!(ok && out.contains("purge_protection  true"), "{out}");
    let (ok, _, err) = cli.run(&["principal", "list", "--tenant", "default"], Some(ops_token)).await;
    assert!(!ok && err.contains("404 NotFound"), "{err}");
    let (ok, out, _) =
        cli.run(&["policy", "set", "acme-keys", "ops", "--permissions", "get,list,create"], Some(ops_token)).await;
    assert!(ok && out.contains("get,list"), "{out}");

    // Without a vault domain a tenant's vault answers on a port of its own: the URL printed
    // reaches it (as the SDKs need: one vault per origin), and --vault finds it.
    let (ok, out, _) = cli.run(&["vault", "show", "acme-keys", "--output", "json"], Some(ops_token)).await;
    assert!(ok, "{out}");
    let url = serde_json::from_str::<serde_json::Value>(&out).unwrap()["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("https://127.0.0.1:") && url != cli.url, "{url} vs {}", cli.url);
    let (ok, out, err) = cli
        .run(&["key", "create", "tk", "--vault", "acme-keys", "--kty", "EC", "--output", "json"], Some(ops_token))
        .await;
    assert!(ok, "{err}");
    let kid = serde_json::from_str::<serde_json::Value>(&out).unwrap()["key"]["kid"].as_str().unwrap().to_string();
    assert!(kid.starts_with(&format!("{url}/keys/tk/")), "{kid} is not at {url}");
    let (_, listed, _) = cli.run(&["key", "list", "--vault", "acme-keys"], Some(ops_token)).await;
    assert!(listed.contains("/keys/tk"), "{listed}");
    assert!(!cli.ok(&["key", "list"]).await.contains("/keys/tk"), "the default vault is another vault");
    let (_, out, _) = cli.run(&["policy", "list", "acme-keys"], Some(ops_token)).await;
    assert!(out.starts_with("PRINCIPAL") && out.contains("ops"), "{out}");
    // Secret permissions: a list of their own, shown beside the key permissions.
    let (ok, _, err) = cli
        .run(
            &["policy", "set", "acme-keys", "ops", "--permissions", "all", "--secret-permissions", "get,list"],
            Some(ops_token),
        )
        .await;
    assert!(ok, "{err}");
    let (_, out, _) = cli.run(&["--output", "json", "policy", "list", "acme-keys"], Some(ops_token)).await;
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ops = listed["value"].as_array().unwrap().iter().find(|p| p["principal"] == "ops").unwrap().clone();
    assert_eq!(ops["secret_permissions"], serde_json::json!(["get", "list"]), "{out}");
    let (ok, _, err) = cli
        .run(
            &["policy", "set", "acme-keys", "ops", "--permissions", "all", "--secret-permissions", "fly"],
            Some(ops_token),
        )
        .await;
    assert!(!ok && err.contains("unknown secret permission"), "{err}");
    let (ok, _, err) = cli.run(&["tenant", "create", "x"], Some(ops_token)).await;
    assert!(!ok && err.contains("AdminRoleRequired"), "{err}");

    // Keys in the default vault.
    cli.ok(&["key", "create", "app", "--kty", "EC", "--curve", "P-256", "--tag", "team=a"]).await;
    let shown = cli.ok(&["key", "show", "app"]).await;
    assert!(shown.contains("crv") && shown.contains("P-256") && shown.contains("team"), "{shown}");
    cli.ok(&["key", "update", "app", "--disable"]).await;
    assert_eq!(cli.json(&["key", "show", "app"]).await["attributes"]["enabled"], false);
    // Dates set, then cleared with `none`; a date left out of an update stays.
    cli.ok(&["key", "update", "app", "--exp", "+30d", "--nbf", "1000"]).await;
    let a = cli.json(&["key", "show", "app"]).await["attributes"].clone();
    assert!(a["exp"].as_i64().is_some() && a["nbf"] == 1000, "{a}");
    cli.ok(&["key", "update", "app", "--exp", "none"]).await;
    let a = cli.json(&["key", "show", "app"]).await["attributes"].clone();
    assert!(a.get("exp").is_none_or(serde_json::Value::is_null) && a["nbf"] == 1000, "{a}");
    cli.ok(&["key", "update", "app", "--nbf", "none"]).await;
    let a = cli.json(&["key", "show", "app"]).await["attributes"].clone();
    assert!(a.get("nbf").is_none_or(serde_json::Value::is_null), "{a}");
    cli.ok(&["key", "rotate", "app"]).await;
    assert_eq!(cli.json(&["key", "versions", "app"]).await["value"].as_array().unwrap().len(), 2);
    let policy = cli.json(&["key", "rotation-policy", "app", "--rotate-after", "P90D", "--expiry", "P1Y"]).await;
    assert_eq!(policy["attributes"]["expiryTime"], "P1Y");
    let backup = dir.join("app.backup");
    cli.ok(&["key", "backup", "app", "--out", backup.to_str().unwrap()]).await;
    cli.ok(&["key", "delete", "app"]).await;
    assert!(cli.ok(&["key", "list-deleted"]).await.contains("/deletedkeys/app"));
    cli.ok(&["key", "purge", "app"]).await;
    cli.ok(&["key", "restore", "--in", backup.to_str().unwrap()]).await;
    assert!(cli.ok(&["key", "list"]).await.contains("/keys/app"));

    // Secure import, exactly as the README shows it.
    cli.ok(&["key", "create", "kek", "--kty", "RSA", "--size", "3072", "--ops", "import"]).await;
    // People get a summary: size and thumbprint, never the modulus (JSON has it).
    let table = cli.ok(&["key", "show", "kek"]).await;
    let n = cli.json(&["key", "show", "kek"]).await["key"]["n"].as_str().unwrap().to_string();
    assert!(table.contains("3072") && table.contains("thumbprint") && !table.contains(&n[..40]), "{table}");
    let pem = cli.ok(&["key", "show", "kek", "--pem"]).await;
    std::fs::write(dir.join("kek.pem"), pem).unwrap();
    sh(
        &dir,
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out mykey.pem 2>/dev/null
         openssl pkcs8 -topk8 -nocrypt -in mykey.pem -outform DER -out mykey.der
         openssl rand -out aes.key 32
         openssl pkeyutl -encrypt -pubin -inkey kek.pem -in aes.key -out aes.wrapped \
           -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256
         openssl enc -id-aes256-wrap-pad -iv A65959A6 -K \"$(od -An -tx1 -v aes.key | tr -d ' \\n')\" \
           -in mykey.der -out key.wrapped
         cat aes.wrapped key.wrapped > mykey.byok.bin
         rm aes.key
         openssl ec -in mykey.pem -pubout -out mykey.pub.pem 2>/dev/null",
    );
    let wrapped = dir.join("mykey.byok.bin");
    let imported = cli
        .json(&["key", "import", "mykey", "--kty", "EC", "--wrapped", wrapped.to_str().unwrap(), "--import-key", "kek"])
        .await;
    assert_eq!(imported["key"]["crv"], "P-256");
    // The imported key's public half is the one openssl generated.
    let pubpem = std::fs::read_to_string(dir.join("mykey.pub.pem")).unwrap();
    assert!(pubpem.contains("BEGIN PUBLIC KEY"));
    let out = Command::new("openssl")
        .args(["ec", "-pubin", "-in", "mykey.pub.pem", "-text", "-noout"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace([' ', '\n', ':'], "");
    let x = imported["key"]["x"].as_str().unwrap();
    use base64::Engine as _;
    let x_hex = hex_of(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(x).unwrap());
    assert!(text.contains(&x_hex), "openssl's public key has the imported x");
    // A damaged blob is refused.
    let mut bytes = std::fs::read(&wrapped).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&wrapped, bytes).unwrap();
    let (ok, _, err) = cli
        .run(
            &["key", "import", "bad", "--kty", "EC", "--wrapped", wrapped.to_str().unwrap(), "--import-key", "kek"],
            None,
        )
        .await;
    assert!(!ok && err.contains("does not open"), "{err}");

    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
