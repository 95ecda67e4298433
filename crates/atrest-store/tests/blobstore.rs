//! The blob-store conformance suite against an S3-compatible server: with
//! `ATREST_TEST_S3=http://HOST:PORT` (bucket `atrest`, credentials in
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`); without it the test says so and passes
//! (CI sets it, on SeaweedFS). The local directory runs the same suite in the unit tests.

use atrest_store::blobstore::{BlobStore, conformance};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_bucket_passes_the_conformance_suite() {
    let Ok(endpoint) = std::env::var("ATREST_TEST_S3") else {
        eprintln!("ATREST_TEST_S3 is not set: the S3 blob store is not exercised here");
        return;
    };
    let prefix = format!("conformance-{}", hex::encode(atrest_crypto::rand::bytes::<6>().unwrap()));
    let store =
        BlobStore::from_location(&format!("s3://atrest/{prefix}?endpoint={endpoint}&region=us-east-1")).unwrap();
    store.check().await.unwrap();
    conformance::check(Arc::new(store), "r-conformance").await;
}
