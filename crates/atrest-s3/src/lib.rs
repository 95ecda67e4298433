//! The S3 protocol as atrest speaks it, without I/O: AWS Signature Version 4 verification
//! (`sigv4`: the `Authorization` header and presigned URLs) and the aws-chunked body
//! encoding with its chunk and trailer signatures (`chunked`). Primitives come from
//! `atrest-crypto` (AWS-LC), signatures are compared in constant time, and SigV2 is
//! refused. The HTTP front end that uses this is the S3 issue's next step.
#![forbid(unsafe_code)]

pub mod chunked;
mod error;
pub mod sigv4;

pub use error::SigError;
