//! S3's error answers: XML with S3's codes and statuses. Each operation maps the data
//! service's errors itself where S3 names them by operation (`NoSuchBucket`,
//! `BucketNotEmpty`, …); the rest go through [`S3Error::from_store`].

use super::xml::Xml;
use atrest_store::StoreError;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An S3 error on its way to the client.
#[derive(Debug)]
pub(crate) struct S3Error {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The bucket or `bucket/key` it is about.
    pub resource: String,
    /// HEAD answers carry no body: the code goes in a header instead.
    pub head: bool,
    /// The request's id (also in `x-amz-request-id`).
    pub request_id: String,
}

impl S3Error {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), resource: String::new(), head: false, request_id: String::new() }
    }

    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AccessDenied", message)
    }

    pub fn not_implemented(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            format!("{what} is not implemented by atrest's S3 front end (docs/s3.md lists what is)"),
        )
    }

    pub fn on(mut self, resource: impl Into<String>) -> Self {
        self.resource = resource.into();
        self
    }

    /// The data service's errors, for operations without a more precise mapping.
    pub fn from_store(e: StoreError) -> Self {
        use StoreError as E;
        let msg = e.to_string();
        match e {
            E::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "NoSuchBucket", msg),
            E::ObjectNotFound(_) => Self::new(StatusCode::NOT_FOUND, "NoSuchKey", msg),
            E::Forbidden(_) => Self::denied(msg),
            E::KeyInaccessible { .. } => Self::new(StatusCode::FORBIDDEN, "KMS.DisabledException", msg),
            E::KeyRejected(_) => Self::bad("InvalidArgument", msg),
            E::PreconditionFailed(_) => Self::new(StatusCode::PRECONDITION_FAILED, "PreconditionFailed", msg),
            E::RangeNotSatisfiable { .. } => Self::new(StatusCode::RANGE_NOT_SATISFIABLE, "InvalidRange", msg),
            E::BadRequest(_) => Self::bad("InvalidArgument", msg),
            E::CustomerKeyRequired(_) => Self::bad("InvalidRequest", msg),
            E::Conflict(_) => Self::new(StatusCode::CONFLICT, "OperationAborted", msg),
            E::Integrity(_) => {
                tracing::error!(error = %msg, "S3 request failed on stored state");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", msg)
            }
            E::Storage(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", msg),
            E::Vault(v) => match v.kind() {
                atrest_vault::ErrorKind::Forbidden | atrest_vault::ErrorKind::Unauthenticated => Self::denied(msg),
                atrest_vault::ErrorKind::Unavailable => {
                    Self::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", msg)
                }
                atrest_vault::ErrorKind::NotFound => Self::new(StatusCode::NOT_FOUND, "NoSuchBucket", msg),
                _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", msg),
            },
            E::Crypto(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", msg),
        }
    }
}

impl From<atrest_s3::SigError> for S3Error {
    fn from(e: atrest_s3::SigError) -> Self {
        let status = match e {
            atrest_s3::SigError::SignatureMismatch
            | atrest_s3::SigError::TimeTooSkewed
            | atrest_s3::SigError::Expired => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for S3Error {
    fn into_response(self) -> Response {
        let mut resp = if self.head {
            Response::builder().status(self.status).body(Body::empty()).unwrap_or_default()
        } else {
            let mut x = Xml::new("Error");
            x.text("Code", self.code);
            x.text("Message", &self.message);
            if !self.resource.is_empty() {
                x.text("Resource", &format!("/{}", self.resource));
            }
            if !self.request_id.is_empty() {
                x.text("RequestId", &self.request_id);
            }
            x.into_response(self.status)
        };
        if let Ok(v) = HeaderValue::from_str(self.code) {
            resp.headers_mut().insert("x-amz-error-code", v);
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp.extensions_mut().insert(crate::api::ErrorCode(self.code.to_string()));
        resp
    }
}
