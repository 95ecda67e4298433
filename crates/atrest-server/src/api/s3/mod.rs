//! The S3 front end, on a listener of its own (`--s3-listen`): path-style requests
//! (`/BUCKET/KEY`), SigV4 only (`auth.rs`, before the body is read), S3's XML and error
//! codes (`xml.rs`, `error.rs`), bodies decoded and verified as they stream (`body.rs`).
//! The operations (`ops.rs`) are thin: buckets are data-service resources, objects are its
//! S3 objects (`atrest_store::s3`), so both encryption layers, the resource roles, the
//! customer-key checks and revocation apply as they do on `/data`.

mod auth;
mod body;
mod error;
mod ops;
mod xml;

pub(crate) use error::S3Error;

use super::AppState;
use std::sync::Arc;

/// The S3 router (one handler: S3 dispatches on method, path and query together).
pub(crate) fn router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new().fallback(ops::dispatch).with_state(state)
}

/// A bounded label for metrics.
pub(crate) fn route_label(method: &axum::http::Method, path: &str) -> String {
    let depth = path.trim_start_matches('/').splitn(2, '/').filter(|s| !s.is_empty()).count();
    let what = match depth {
        0 => "service",
        1 => "bucket",
        _ => "object",
    };
    format!("s3 {} {what}", method.as_str())
}
