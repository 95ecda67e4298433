//! The S3 front end through a real SigV4 client (arrow-rs `object_store`'s AmazonS3, the
//! crate atrest itself uses for S3 bodies) over real TLS: puts (single and streamed),
//! gets with ranges, heads, listings past one page, conditional puts, copies, deletes;
//! refusals for a wrong secret, a revoked key, another tenant's bucket; tampering with a
//! stored body detected. (boto3 and the `aws` CLI run in `tests/s3/`.)

use atrest_server::ServeConfig;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use reqwest::Method;
use serde_json::{Value, json};
mod common;
use common::{client_for, temp_dir};

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(&self, m: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.client.request(m, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

fn s3(server: &atrest_server::Server, ca: &std::path::Path, bucket: &str, id: &str, secret: &str) -> AmazonS3 {
    let cert = object_store::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    AmazonS3Builder::new()
        .with_endpoint(format!("https://localhost:{}", server.s3_addr.port()))
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id(id)
        .with_secret_access_key(secret)
        .with_virtual_hosted_style_request(false)
        .with_client_options(ClientOptions::new().with_root_certificate(cert))
        .with_retry(object_store::RetryConfig { max_retries: 0, ..Default::default() })
        .build()
        .unwrap()
}

async fn issue_key(api: &Api, tenant: &str, principal: &str) -> (String, String) {
    let (s, v) = api.call(Method::POST, &format!("/admin/tenants/{tenant}/principals/{principal}/s3-keys"), None).await;
    assert_eq!(s, 201, "{v}");
    (v["id"].as_str().unwrap().to_string(), v["secret"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn objects_through_a_real_sigv4_client() {
    let dir = temp_dir("atrest-s3");
    let cfg = ServeConfig { data_dir: dir.0.clone(), listen: "127.0.0.1:0".parse().unwrap(), ..ServeConfig::default() };
    let server = atrest_server::start(cfg).await.unwrap();
    let ca = server.ca_pem.clone().unwrap();
    let api = Api {
        client: client_for(&ca),
        base: format!("https://localhost:{}", server.addr.port()),
        token: std::fs::read_to_string(&server.admin_token).unwrap(),
    };
    let (_, me) = api.call(Method::GET, "/admin/whoami", None).await;
    let admin = me["name"].as_str().unwrap().to_string();
    let (id, secret) = issue_key(&api, "default", &admin).await;
    assert!(id.starts_with("ATR") && id.len() == 20 && secret.len() == 40, "{id}");
    // The secret is shown once: listings never carry it.
    let (_, list) = api.call(Method::GET, &format!("/admin/tenants/default/principals/{admin}/s3-keys"), None).await;
    assert!(list.to_string().contains(&id) && !list.to_string().contains(&secret), "{list}");

    // A bucket is a resource: made here through /data, listed and used through S3.
    assert_eq!(api.call(Method::PUT, "/data/resources/photos", None).await.0, 201);
    let store = s3(&server, &ca, "photos", &id, &secret);

    // Put, get, head, ranges.
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let put = store.put(&Path::from("2024/cat.jpg"), PutPayload::from(body.clone())).await.unwrap();
    let md5_etag = put.e_tag.clone().unwrap();
    assert_eq!(md5_etag.trim_matches('"').len(), 32, "an MD5 ETag for SSE-S3: {md5_etag}");
    let got = store.get(&Path::from("2024/cat.jpg")).await.unwrap();
    assert_eq!(got.meta.size, body.len() as u64);
    assert_eq!(got.meta.e_tag.as_deref(), Some(md5_etag.as_str()));
    assert_eq!(got.bytes().await.unwrap().as_ref(), &body[..]);
    let part = store.get_range(&Path::from("2024/cat.jpg"), 70_000..70_010).await.unwrap();
    assert_eq!(part.as_ref(), &body[70_000..70_010]);
    let head = store.head(&Path::from("2024/cat.jpg")).await.unwrap();
    assert_eq!(head.size, body.len() as u64);
    assert!(matches!(store.get(&Path::from("nope")).await, Err(object_store::Error::NotFound { .. })));

    // If-None-Match: * refuses to overwrite; an unconditional put replaces.
    let again =
        store.put_opts(&Path::from("2024/cat.jpg"), PutPayload::from_static(b"x"), PutMode::Create.into()).await;
    assert!(matches!(again, Err(object_store::Error::AlreadyExists { .. })), "{again:?}");
    store.put(&Path::from("2024/cat.jpg"), PutPayload::from_static(b"replaced")).await.unwrap();
    assert_eq!(store.get(&Path::from("2024/cat.jpg")).await.unwrap().bytes().await.unwrap().as_ref(), b"replaced");

    // Multipart: three parts (5 MiB, 5 MiB, 2 MiB) sealed as they arrive; ranges across
    // part boundaries; an aborted upload leaves nothing.
    let big: Vec<u8> = (0..12u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut upload = store.put_multipart(&Path::from("big/blob.bin")).await.unwrap();
    for chunk in big.chunks(5 << 20) {
        upload.put_part(PutPayload::from(chunk.to_vec())).await.unwrap();
    }
    let done = upload.complete().await.unwrap();
    assert!(done.e_tag.as_deref().is_some_and(|e| e.trim_matches('"').ends_with("-3")), "{:?}", done.e_tag);
    let got = store.get(&Path::from("big/blob.bin")).await.unwrap().bytes().await.unwrap();
    assert!(got.as_ref() == &big[..], "the parts read back as one body");
    for (a, b) in [(0usize, 10usize), ((5 << 20) - 3, (5 << 20) + 3), ((10 << 20) - 1, (12 << 20))] {
        let part = store.get_range(&Path::from("big/blob.bin"), (a as u64)..(b as u64)).await.unwrap();
        assert_eq!(part.as_ref(), &big[a..b], "range {a}..{b}");
    }
    let mut aborted = store.put_multipart(&Path::from("big/aborted.bin")).await.unwrap();
    aborted.put_part(PutPayload::from(vec![1u8; 1000])).await.unwrap();
    aborted.abort().await.unwrap();
    assert!(matches!(store.head(&Path::from("big/aborted.bin")).await, Err(object_store::Error::NotFound { .. })));
    let files = |dir: &std::path::Path| -> usize {
        std::fs::read_dir(dir).map_or(0, |d| d.map(|e| std::fs::read_dir(e.unwrap().path()).unwrap().count()).sum())
    };
    let before = files(&dir.0.join("blobs"));
    // Replacing a multipart object retires its parts.
    store.put(&Path::from("big/blob.bin"), PutPayload::from_static(b"small now")).await.unwrap();
    assert_eq!(files(&dir.0.join("blobs")), before - 2, "three parts gone, one body added");
    assert_eq!(store.get(&Path::from("big/blob.bin")).await.unwrap().bytes().await.unwrap().as_ref(), b"small now");

    // Listing past one page (1,000 keys), with and without a delimiter.
    futures_util::stream::iter(0..1005)
        .map(|i| {
            let store = store.clone();
            async move { store.put(&Path::from(format!("many/{i:04}")), PutPayload::from_static(b"m")).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let listed: Vec<_> = store.list(Some(&Path::from("many"))).try_collect().await.unwrap();
    assert_eq!(listed.len(), 1005);
    let mut keys: Vec<String> = listed.iter().map(|m| m.location.to_string()).collect();
    let sorted = {
        let mut k = keys.clone();
        k.sort();
        k
    };
    assert_eq!(keys, sorted, "listed in key order");
    keys.dedup();
    assert_eq!(keys.len(), 1005);
    let top = store.list_with_delimiter(None).await.unwrap();
    let prefixes: Vec<String> = top.common_prefixes.iter().map(ToString::to_string).collect();
    assert_eq!(prefixes, vec!["2024", "big", "many"]);
    assert!(top.objects.is_empty());

    // Copy, then delete; deleting a missing key succeeds, as on S3.
    store.copy(&Path::from("2024/cat.jpg"), &Path::from("2024/cat-copy.jpg")).await.unwrap();
    assert_eq!(store.get(&Path::from("2024/cat-copy.jpg")).await.unwrap().bytes().await.unwrap().as_ref(), b"replaced");
    store.delete(&Path::from("2024/cat.jpg")).await.unwrap();
    store.delete(&Path::from("2024/cat.jpg")).await.unwrap();
    assert!(matches!(store.head(&Path::from("2024/cat.jpg")).await, Err(object_store::Error::NotFound { .. })));

    // Tampering with a stored body is detected, not served: one byte flipped in the middle
    // of every body file.
    let mut flipped = 0;
    for res in std::fs::read_dir(dir.0.join("blobs")).unwrap() {
        for f in std::fs::read_dir(res.unwrap().path()).unwrap() {
            let path = f.unwrap().path();
            let mut bytes = std::fs::read(&path).unwrap();
            let n = bytes.len();
            bytes[n / 2] ^= 1;
            std::fs::write(&path, bytes).unwrap();
            flipped += 1;
        }
    }
    assert!(flipped > 1000, "{flipped}");
    match store.get(&Path::from("2024/cat-copy.jpg")).await {
        Ok(r) => assert!(r.bytes().await.is_err(), "a tampered body must not be served whole"),
        Err(e) => assert!(e.to_string().contains("500"), "{e}"),
    }

    // A wrong secret, another tenant's bucket, then a revoked key: all refused.
    let wrong = s3(&server, &ca, "photos", &id, &"0".repeat(40));
    let e = wrong.head(&Path::from("many/0001")).await.unwrap_err().to_string();
    assert!(e.contains("403"), "{e}");
    api.call(Method::POST, "/admin/tenants", Some(json!({"name": "acme"}))).await;
    api.call(Method::POST, "/admin/tenants/acme/principals", Some(json!({"name": "ann", "role": "tenant-admin"})))
        .await;
    let (aid, asecret) = issue_key(&api, "acme", "ann").await;
    let theirs = s3(&server, &ca, "photos", &aid, &asecret);
    let e = theirs.head(&Path::from("many/0001")).await.unwrap_err().to_string();
    assert!(e.contains("404") || e.contains("NotFound"), "another tenant's bucket answers as absent: {e}");
    let (s, _) =
        api.call(Method::DELETE, &format!("/admin/tenants/default/principals/{admin}/s3-keys/{id}"), None).await;
    assert_eq!(s, 204);
    let e = store.head(&Path::from("many/0001")).await.unwrap_err().to_string();
    assert!(e.contains("403"), "a revoked key is refused on the next request: {e}");
    server.shutdown().await;
}
