//! Why a request's signature or aws-chunked body was refused, with the S3 error code a
//! front end answers with.

/// A refused signature or body.
#[derive(Debug, thiserror::Error)]
pub enum SigError {
    /// The request is malformed in a way that is not about the signature's parts.
    #[error("{0}")]
    BadRequest(String),
    /// The `Authorization` header is malformed.
    #[error("{0}")]
    HeaderMalformed(String),
    /// The presigned query parameters are malformed.
    #[error("{0}")]
    QueryMalformed(String),
    /// A scheme this server does not speak (SigV2, SigV4a).
    #[error("{0}")]
    Unsupported(String),
    /// The signature does not match what the request carries.
    #[error(
        "the request signature does not match the one computed: check the secret access key and that the \
         request was not changed after signing"
    )]
    SignatureMismatch,
    /// The request's time is more than 15 minutes from the server's.
    #[error("the difference between the request time and the server's time is too large (at most 15 minutes)")]
    TimeTooSkewed,
    /// A presigned URL past its lifetime.
    #[error("the presigned URL has expired")]
    Expired,
    /// An aws-chunked body that does not parse.
    #[error("the aws-chunked body is malformed: {0}")]
    ChunkMalformed(String),
}

impl SigError {
    /// The S3 error code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) | Self::Unsupported(_) => "InvalidRequest",
            Self::HeaderMalformed(_) => "AuthorizationHeaderMalformed",
            Self::QueryMalformed(_) => "AuthorizationQueryParametersError",
            Self::SignatureMismatch => "SignatureDoesNotMatch",
            Self::TimeTooSkewed => "RequestTimeTooSkewed",
            Self::Expired => "AccessDenied",
            Self::ChunkMalformed(_) => "IncompleteBody",
        }
    }
}
