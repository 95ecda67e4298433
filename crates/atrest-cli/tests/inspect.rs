//! Runs the real `atrest` binary on files sealed by the crypto crate.

use atrest_crypto::SecretKey;
use atrest_crypto::stream::EncryptingWriter;
use std::io::Write;
use std::process::Command;

fn atrest(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_atrest")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn inspects_records_and_streams_and_refuses_damage() {
    let dir = std::env::temp_dir().join(format!("atrest-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = SecretKey::generate().unwrap();

    let rec = dir.join("obj.rec");
    std::fs::write(&rec, atrest_crypto::record::seal(&key, &[b"r"], b"twelve bytes").unwrap()).unwrap();
    let (ok, out, _) = atrest(&["inspect", rec.to_str().unwrap()]);
    assert!(ok);
    assert!(out.contains("record") && out.contains("plaintext_bytes  12"), "{out}");

    let blob = dir.join("obj.stream");
    let mut w = EncryptingWriter::new(&key, &[b"b"], std::fs::File::create(&blob).unwrap()).unwrap();
    w.write_all(&vec![0u8; 200_000]).unwrap();
    w.finish().unwrap();
    let (ok, out, _) = atrest(&["inspect", "--output", "json", blob.to_str().unwrap()]);
    assert!(ok);
    assert_eq!(
        out.trim(),
        format!(
            "{{\"format\":\"stream\",\"version\":1,\"aead\":\"AES-256-GCM\",\"kdf\":\"HKDF-SHA256\",\"sealed_bytes\":{},\"segment_bytes\":65536,\"segments\":4,\"plaintext_bytes\":200000}}",
            200_000 + 69 + 4 * 16
        )
    );

    // A stream cut 5 bytes into its last segment has an impossible length. (A cut that
    // leaves a plausible length is caught only when the stream is opened with its key.)
    let bytes = std::fs::read(&blob).unwrap();
    std::fs::write(&blob, &bytes[..69 + 3 * (65536 + 16) + 5]).unwrap();
    let (ok, _, err) = atrest(&["inspect", blob.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("truncated or extended"), "{err}");

    let (ok, _, err) = atrest(&["inspect", dir.join("missing").to_str().unwrap()]);
    assert!(!ok && err.contains("cannot open"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
