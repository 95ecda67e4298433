//! Blobs stream in constant memory: the process's peak RSS while a 1 GiB blob goes up
//! and down over HTTPS is no higher than for a 256 MiB one (client and server share the
//! process, so this bounds both). Linux only (reads and resets `VmHWM`).

mod common;

use atrest_server::ServeConfig;
use common::{client_for, temp_dir};
use futures_util::StreamExt;

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 =
        s.lines().find(|l| l.starts_with("VmHWM:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024.0
}

fn generated(len: u64) -> reqwest::Body {
    let chunk = bytes::Bytes::from(vec![0xa5u8; 256 * 1024]);
    let n = len.div_ceil(chunk.len() as u64);
    reqwest::Body::wrap_stream(futures_util::stream::iter((0..n).map(move |i| {
        let take = (len - i * chunk.len() as u64).min(chunk.len() as u64) as usize;
        Ok::<_, std::io::Error>(chunk.slice(..take))
    })))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_memory_is_flat_from_256_mib_to_1_gib() {
    if !std::path::Path::new("/proc/self/clear_refs").exists() {
        eprintln!("skipped: needs Linux /proc");
        return;
    }
    let dir = temp_dir("atrest-memory");
    // With ATREST_TEST_S3 (see tests/data.rs) the bodies go to S3: a part buffer and a
    // read window per transfer, still flat.
    let blob_store = std::env::var("ATREST_TEST_S3")
        .ok()
        .map(|e| format!("s3://atrest/memory-{}?endpoint={e}&region=us-east-1", std::process::id()));
    let cfg = ServeConfig {
        data_dir: dir.0.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        blob_store,
        ..ServeConfig::default()
    };
    let server = atrest_server::start(cfg).await.unwrap();
    let client = client_for(server.ca_pem.as_ref().unwrap());
    let token = std::fs::read_to_string(&server.admin_token).unwrap().trim().to_string();
    let base = format!("https://localhost:{}", server.addr.port());
    let r = client.put(format!("{base}/data/resources/mem")).bearer_auth(&token).send().await.unwrap();
    assert!(r.status().is_success());
    let mut peaks = Vec::new();
    for (name, mib) in [("small", 256u64), ("large", 1024)] {
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let len = mib << 20;
        let url = format!("{base}/data/resources/mem/blobs/{name}");
        let r = client.put(&url).bearer_auth(&token).body(generated(len)).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let r = client.get(&url).bearer_auth(&token).send().await.unwrap();
        let mut got = 0u64;
        let mut s = r.bytes_stream();
        while let Some(c) = s.next().await {
            let c = c.unwrap();
            assert!(c.iter().all(|&b| b == 0xa5));
            got += c.len() as u64;
        }
        assert_eq!(got, len);
        peaks.push(peak_rss_mib());
        // The blob file on disk is sealed twice: about the plaintext size, never smaller.
        let r = client.delete(&url).bearer_auth(&token).send().await.unwrap();
        assert!(r.status().is_success());
    }
    eprintln!("peak RSS: {:.0} MiB for 256 MiB, {:.0} MiB for 1 GiB", peaks[0], peaks[1]);
    assert!(peaks[1] < peaks[0] + 32.0, "memory grew with the blob size: {peaks:?} MiB");
    assert!(peaks[1] < 128.0, "peak RSS {:.0} MiB is over 128 MiB", peaks[1]);
    server.shutdown().await;
}
