//! Parsers of what arrives from the network, kept apart from the crates that act on it:
//! HTTP `Range` headers, API bearer tokens, ISO-8601 durations (rotation policies),
//! lenient base64url, and the JSON bodies of the AKV keys API (key operations, JWK
//! import, create, update). Pure Rust, no I/O, no crypto, `#![forbid(unsafe_code)]`, so
//! `fuzz/` builds its targets for these in seconds, as for `atrest-format`.
//!
//! Each parser returns `None` (or a plain error) for input it does not accept; the
//! callers turn that into their own typed errors and wire codes.

#![forbid(unsafe_code)]

pub mod akv;
pub mod b64;
pub mod duration;
pub mod range;
pub mod token;
