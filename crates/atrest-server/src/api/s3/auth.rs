//! SigV4 authentication of an S3 request, before its body is read: the access key's
//! secret is unsealed by the vault (nothing cached, so a revoked key or a disabled
//! principal is refused on the next request, on every node), the signature checked in
//! constant time, the principal's rate limit applied. Anonymous requests are refused.

use super::S3Error;
use crate::api::AppState;
use atrest_s3::chunked::Signing;
use atrest_s3::sigv4::{self, Payload};
use atrest_vault::{Principal, VaultError};
use axum::http::{StatusCode, header, request::Parts};

/// Who signed a request, and what its body must be.
pub(crate) struct S3Caller {
    pub principal: Principal,
    pub payload: Payload,
    /// For a body signed chunk by chunk.
    pub signing: Option<Signing>,
}

pub(crate) async fn authenticate(state: &AppState, parts: &Parts) -> Result<S3Caller, S3Error> {
    // Header values as sent; a value that is not UTF-8 is signed as its bytes read lossily
    // (the signature then fails, as it should for a client that sent it unencoded).
    let mut owned = Wiped(
        parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
    );
    if !parts.headers.contains_key(header::HOST)
        && let Some(a) = parts.uri.authority()
    {
        // HTTP/2 carries the host in `:authority`.
        owned.0.push(("host".into(), a.as_str().to_string()));
    }
    let headers: Vec<(&str, &str)> = owned.0.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let req = sigv4::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &headers,
    };
    let claim = sigv4::parse(&req)?.ok_or_else(|| {
        S3Error::denied("anonymous requests are refused: sign requests with an access key (atrest s3-key issue)")
    })?;
    let (principal, secret) = match state.svc.s3_key_secret(&claim.access_key).await {
        Ok(found) => found,
        Err(VaultError::Unauthenticated(_)) => {
            state.metrics.auth_failure("invalid");
            return Err(S3Error::new(
                StatusCode::FORBIDDEN,
                "InvalidAccessKeyId",
                format!(
                    "the access key id {} is unknown, revoked, or its principal is disabled: issue one with \
                     `atrest s3-key issue`",
                    claim.access_key
                ),
            ));
        }
        Err(e) => return Err(S3Error::from_store(e.into())),
    };
    let verified = sigv4::verify(&req, &claim, secret.expose_secret(), state.svc.now()).inspect_err(|_| {
        state.metrics.auth_failure("invalid");
    })?;
    // Every x-amz-* header must be signed, as on S3: otherwise whoever holds a presigned
    // URL could add, say, x-amz-copy-source and read with the signer's rights.
    let unsigned: Vec<&str> = parts
        .headers
        .keys()
        .map(axum::http::HeaderName::as_str)
        .filter(|n| n.starts_with("x-amz-") && !claim.signed_headers.iter().any(|s| s == n))
        .collect();
    if !unsigned.is_empty() {
        state.metrics.auth_failure("invalid");
        return Err(S3Error::denied(format!(
            "There were headers present in the request which were not signed: {}",
            unsigned.join(", ")
        )));
    }
    if let Err(wait) = state.limiter.check(&principal.id) {
        state.metrics.rate_limited();
        return Err(S3Error::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            format!("principal {} is over its request rate limit; retry after {wait} s", principal.name),
        ));
    }
    let signing = matches!(verified.payload, Payload::Streaming | Payload::StreamingTrailer).then(|| Signing {
        key: sigv4::signing_key(secret.expose_secret(), &claim),
        amz_date: claim.amz_date.clone(),
        scope: claim.scope(),
        seed: verified.seed,
    });
    Ok(S3Caller { principal, payload: verified.payload, signing })
}

/// Copies of header values, wiped when dropped: an SSE-C request carries its key in one.
struct Wiped(Vec<(String, String)>);

impl Drop for Wiped {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        for (_, v) in &mut self.0 {
            v.zeroize();
        }
    }
}
