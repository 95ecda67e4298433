//! AWS Signature Version 4 for S3, as a verifier: parses the `Authorization` header or
//! the presigned query parameters, rebuilds the canonical request from the request as
//! it arrived, and checks the signature (in constant time), the clock skew and the
//! presigned expiry. What the payload hash says is returned for the caller to enforce on
//! the body (`x-amz-content-sha256`), or to drive the aws-chunked decoder.
//!
//! Reference: the AWS "Signature Version 4 for Amazon S3" pages (header auth, query auth,
//! streaming uploads); the test vectors at the end are theirs.

use crate::error::SigError;
use atrest_crypto::hash::sha256;
use atrest_crypto::kdf::MacKey;

/// The only algorithm accepted (SigV2 and SigV4a are refused).
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Most a request's clock may differ from ours.
pub const MAX_SKEW_SECS: i64 = 15 * 60;
/// Longest lifetime of a presigned URL (7 days).
pub const MAX_EXPIRES_SECS: i64 = 604_800;

/// What `x-amz-content-sha256` (or the presigned default) says about the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// `UNSIGNED-PAYLOAD`: the body is not covered by the signature.
    Unsigned,
    /// The hex SHA-256 of the whole body, to be checked before the body is used.
    Sha256([u8; 32]),
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: aws-chunked, every chunk signed.
    Streaming,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`: signed chunks and a signed trailer.
    StreamingTrailer,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: aws-chunked, unsigned, with a trailer.
    StreamingUnsignedTrailer,
}

impl Payload {
    fn parse(v: &str) -> Result<Self, SigError> {
        Ok(match v {
            "UNSIGNED-PAYLOAD" => Self::Unsigned,
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" => Self::Streaming,
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => Self::StreamingTrailer,
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER" => Self::StreamingUnsignedTrailer,
            h => {
                let mut out = [0u8; 32];
                hex::decode_to_slice(h, &mut out).map_err(|_| {
                    SigError::BadRequest(format!(
                        "x-amz-content-sha256 must be a hex SHA-256, UNSIGNED-PAYLOAD or a STREAMING-… value, not {h:?}"
                    ))
                })?;
                Self::Sha256(out)
            }
        })
    }
}

/// A request as it arrived, as far as signing is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `PUT`, …
    pub method: &'a str,
    /// The path as sent (still percent-encoded).
    pub path: &'a str,
    /// The query string as sent, without `?` (empty if none).
    pub query: &'a str,
    /// Every header, names in any case (`Host` included; for HTTP/2 the caller adds
    /// `host` from `:authority`).
    pub headers: &'a [(&'a str, &'a str)],
}

impl Request<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
    }

    fn query_pairs(&self) -> Result<Vec<(String, String)>, SigError> {
        self.query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                Ok((decode(k)?, decode(v)?))
            })
            .collect()
    }
}

/// What a request's signature claims, parsed, before it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The access key id.
    pub access_key: String,
    /// Scope date, `YYYYMMDD`.
    pub date: String,
    /// Scope region.
    pub region: String,
    /// Scope service (`s3`).
    pub service: String,
    /// Signed header names, lowercase, as listed.
    pub signed_headers: Vec<String>,
    /// The signature (hex, lowercase).
    pub signature: String,
    /// `x-amz-date` (or `X-Amz-Date`), `YYYYMMDDTHHMMSSZ`.
    pub amz_date: String,
    /// Presigned: `X-Amz-Expires` seconds.
    pub expires: Option<i64>,
    /// What the body is.
    pub payload: Payload,
}

impl Claim {
    /// `DATE/REGION/SERVICE/aws4_request`.
    #[must_use]
    pub fn scope(&self) -> String {
        format!("{}/{}/{}/aws4_request", self.date, self.region, self.service)
    }
}

/// Parses the request's SigV4 claim: the `Authorization` header, or the presigned
/// `X-Amz-*` query parameters. `Ok(None)` for an anonymous request (neither).
///
/// # Errors
/// A malformed or unsupported claim (SigV2, SigV4a, missing parts).
pub fn parse(req: &Request<'_>) -> Result<Option<Claim>, SigError> {
    if let Some(auth) = req.header("authorization") {
        return parse_header(req, auth).map(Some);
    }
    let q = req.query_pairs()?;
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("X-Amz-Algorithm").is_none() && get("X-Amz-Signature").is_none() {
        if get("Signature").is_some() || get("AWSAccessKeyId").is_some() {
            return Err(SigError::Unsupported(
                "Signature Version 2 is not supported: sign with Signature Version 4".into(),
            ));
        }
        return Ok(None);
    }
    let bad = |what: &str| SigError::QueryMalformed(format!("the presigned URL {what}"));
    if get("X-Amz-Algorithm") != Some(ALGORITHM) {
        return Err(bad(&format!("must use X-Amz-Algorithm={ALGORITHM}")));
    }
    let cred = get("X-Amz-Credential").ok_or_else(|| bad("has no X-Amz-Credential"))?;
    let (access_key, date, region, service) =
        parse_credential(cred).ok_or_else(|| bad("has a malformed X-Amz-Credential"))?;
    let amz_date = get("X-Amz-Date").ok_or_else(|| bad("has no X-Amz-Date"))?.to_string();
    let expires: i64 = get("X-Amz-Expires")
        .ok_or_else(|| bad("has no X-Amz-Expires"))?
        .parse()
        .map_err(|_| bad("has a malformed X-Amz-Expires"))?;
    if !(1..=MAX_EXPIRES_SECS).contains(&expires) {
        return Err(bad(&format!("X-Amz-Expires must be 1 to {MAX_EXPIRES_SECS} seconds, not {expires}")));
    }
    let signed = get("X-Amz-SignedHeaders").ok_or_else(|| bad("has no X-Amz-SignedHeaders"))?;
    let signature = get("X-Amz-Signature").ok_or_else(|| bad("has no X-Amz-Signature"))?.to_ascii_lowercase();
    // A presigned URL covers no body unless the client signed its hash in a header.
    let payload = match req.header("x-amz-content-sha256") {
        Some(v) => Payload::parse(v)?,
        None => Payload::Unsigned,
    };
    if matches!(payload, Payload::Streaming | Payload::StreamingTrailer | Payload::StreamingUnsignedTrailer) {
        return Err(bad("cannot carry a streaming (aws-chunked) body"));
    }
    Ok(Some(Claim {
        access_key,
        date,
        region,
        service,
        signed_headers: signed.split(';').map(str::to_ascii_lowercase).collect(),
        signature,
        amz_date,
        expires: Some(expires),
        payload,
    }))
}

fn parse_header(req: &Request<'_>, auth: &str) -> Result<Claim, SigError> {
    let bad = |what: &str| SigError::HeaderMalformed(format!("the Authorization header {what}"));
    let Some(rest) = auth.strip_prefix(ALGORITHM) else {
        if auth.starts_with("AWS ") {
            return Err(SigError::Unsupported(
                "Signature Version 2 is not supported: sign with Signature Version 4".into(),
            ));
        }
        return Err(SigError::Unsupported(format!("only {ALGORITHM} signatures are supported")));
    };
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        match part.split_once('=') {
            Some(("Credential", v)) => cred = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => sig = Some(v),
            _ => return Err(bad(&format!("has an unknown part {part:?}"))),
        }
    }
    let cred = cred.ok_or_else(|| bad("has no Credential"))?;
    let (access_key, date, region, service) =
        parse_credential(cred).ok_or_else(|| bad("has a malformed Credential"))?;
    let signed = signed.ok_or_else(|| bad("has no SignedHeaders"))?;
    let signature = sig.ok_or_else(|| bad("has no Signature"))?.to_ascii_lowercase();
    let amz_date = req
        .header("x-amz-date")
        .ok_or_else(|| SigError::HeaderMalformed("the request has no x-amz-date header".into()))?
        .to_string();
    let payload = Payload::parse(req.header("x-amz-content-sha256").ok_or_else(|| {
        SigError::BadRequest(
            "the request has no x-amz-content-sha256 header (every SigV4 request to S3 needs one)".into(),
        )
    })?)?;
    Ok(Claim {
        access_key,
        date,
        region,
        service,
        signed_headers: signed.split(';').map(str::to_ascii_lowercase).collect(),
        signature,
        amz_date,
        expires: None,
        payload,
    })
}

/// `AKID/DATE/REGION/SERVICE/aws4_request`.
fn parse_credential(c: &str) -> Option<(String, String, String, String)> {
    let mut it = c.rsplitn(5, '/');
    let (term, service, region, date, key) = (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
    let ok = term == "aws4_request"
        && date.len() == 8
        && date.bytes().all(|b| b.is_ascii_digit())
        && !key.is_empty()
        && !region.is_empty()
        && !service.is_empty();
    ok.then(|| (key.to_string(), date.to_string(), region.to_string(), service.to_string()))
}

/// Seconds since the Unix epoch of an `x-amz-date` (`YYYYMMDDTHHMMSSZ`).
fn parse_amz_date(d: &str) -> Option<i64> {
    let b = d.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { d.get(r)?.parse().ok() };
    let (y, m, day, hh, mm, ss) = (num(0..4)?, num(4..6)?, num(6..8)?, num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

const ENCODE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

fn decode(s: &str) -> Result<String, SigError> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| SigError::BadRequest("the request URI is not percent-encoded UTF-8".into()))
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, ENCODE).to_string()
}

/// The canonical URI: each path segment decoded once and encoded the AWS way (S3 does
/// not normalize `.` or `//`).
fn canonical_uri(path: &str) -> Result<String, SigError> {
    if path.is_empty() {
        return Ok("/".into());
    }
    let segs: Result<Vec<String>, SigError> = path.split('/').map(|s| decode(s).map(|d| encode(&d))).collect();
    Ok(segs?.join("/"))
}

/// The canonical request (without the `X-Amz-Signature` of a presigned URL).
///
/// # Errors
/// A signed header the request does not carry; an undecodable URI.
pub fn canonical_request(req: &Request<'_>, claim: &Claim, payload_hash: &str) -> Result<String, SigError> {
    let mut q: Vec<(String, String)> = req
        .query_pairs()?
        .into_iter()
        .filter(|(k, _)| k != "X-Amz-Signature")
        .map(|(k, v)| (encode(&k), encode(&v)))
        .collect();
    q.sort();
    let query: Vec<String> = q.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut headers = String::new();
    for name in &claim.signed_headers {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(SigError::HeaderMalformed(format!("the signed header {name} is not in the request")));
        }
        headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    Ok(format!(
        "{}\n{}\n{}\n{headers}\n{}\n{payload_hash}",
        req.method,
        canonical_uri(req.path)?,
        query.join("&"),
        claim.signed_headers.join(";"),
    ))
}

/// The string to sign for a canonical request.
#[must_use]
pub fn string_to_sign(claim: &Claim, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{}\n{}\n{}",
        claim.amz_date,
        claim.scope(),
        hex::encode(sha256(&[canonical_request.as_bytes()]))
    )
}

/// The signing key of a scope, derived from the secret access key.
#[must_use]
pub fn signing_key(secret: &[u8], claim: &Claim) -> MacKey {
    let mut k0 = b"AWS4".to_vec();
    k0.extend_from_slice(secret);
    let date = MacKey::from_raw(&k0).sign(&[claim.date.as_bytes()]);
    k0.fill(0);
    let region = MacKey::from_raw(&date).sign(&[claim.region.as_bytes()]);
    let service = MacKey::from_raw(&region).sign(&[claim.service.as_bytes()]);
    let signing = MacKey::from_raw(&service).sign(&[b"aws4_request"]);
    MacKey::from_raw(&signing)
}

/// A checked request: the payload rule the body must follow, and for streaming bodies
/// the seed signature the first chunk chains from.
#[derive(Debug)]
pub struct Verified {
    /// The access key that signed.
    pub access_key: String,
    /// What the body is.
    pub payload: Payload,
    /// The request's signature (the seed of a signed aws-chunked body).
    pub seed: [u8; 32],
}

/// Checks a claim against the request and the secret of its access key, at `now` (Unix
/// seconds): time (±15 min, or within a presigned URL's lifetime), `host` signed, the
/// scope's date, and the signature in constant time.
///
/// # Errors
/// `RequestTimeTooSkewed`, `AccessDenied` (expired URL), `SignatureDoesNotMatch`,
/// malformed claims.
pub fn verify(req: &Request<'_>, claim: &Claim, secret: &[u8], now: i64) -> Result<Verified, SigError> {
    let t = parse_amz_date(&claim.amz_date)
        .ok_or_else(|| SigError::HeaderMalformed(format!("x-amz-date {:?} is not YYYYMMDDTHHMMSSZ", claim.amz_date)))?;
    if !claim.amz_date.starts_with(&claim.date) {
        return Err(SigError::HeaderMalformed("the credential's date is not the request's date".into()));
    }
    if !claim.signed_headers.iter().any(|h| h == "host") {
        return Err(SigError::HeaderMalformed("the host header must be signed".into()));
    }
    match claim.expires {
        None if (now - t).abs() > MAX_SKEW_SECS => return Err(SigError::TimeTooSkewed),
        Some(_) if t - now > MAX_SKEW_SECS => return Err(SigError::TimeTooSkewed),
        Some(e) if now > t + e => return Err(SigError::Expired),
        _ => {}
    }
    let payload_hash = match &claim.payload {
        Payload::Unsigned => "UNSIGNED-PAYLOAD".to_string(),
        Payload::Sha256(h) => hex::encode(h),
        Payload::Streaming => "STREAMING-AWS4-HMAC-SHA256-PAYLOAD".into(),
        Payload::StreamingTrailer => "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER".into(),
        Payload::StreamingUnsignedTrailer => "STREAMING-UNSIGNED-PAYLOAD-TRAILER".into(),
    };
    // A presigned URL signs the payload as UNSIGNED-PAYLOAD unless a header said otherwise.
    let canonical = canonical_request(req, claim, &payload_hash)?;
    let sts = string_to_sign(claim, &canonical);
    let key = signing_key(secret, claim);
    let mut claimed = [0u8; 32];
    hex::decode_to_slice(&claim.signature, &mut claimed).map_err(|_| SigError::SignatureMismatch)?;
    key.verify(&[sts.as_bytes()], &claimed).map_err(|_| SigError::SignatureMismatch)?;
    Ok(Verified { access_key: claim.access_key.clone(), payload: claim.payload.clone(), seed: claimed })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn at(d: &str) -> i64 {
        parse_amz_date(d).unwrap()
    }

    /// AWS, "Example: GET Object" (header authentication).
    #[test]
    fn aws_get_object_example() {
        let headers = [
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY),
            ("x-amz-date", "20130524T000000Z"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            ),
        ];
        let req = Request { method: "GET", path: "/test.txt", query: "", headers: &headers };
        let claim = parse(&req).unwrap().unwrap();
        assert_eq!(claim.access_key, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(claim.scope(), "20130524/us-east-1/s3/aws4_request");
        let v = verify(&req, &claim, SECRET, at("20130524T000000Z") + 60).unwrap();
        assert_eq!(v.payload, Payload::Sha256(hex::decode(EMPTY).unwrap().try_into().unwrap()));
        // Any change to what was signed, to the secret or to the time is refused.
        assert!(matches!(verify(&req, &claim, b"wrong", at("20130524T000000Z")), Err(SigError::SignatureMismatch)));
        let other = Request { path: "/test.tx", ..req };
        assert!(matches!(verify(&other, &claim, SECRET, at("20130524T000000Z")), Err(SigError::SignatureMismatch)));
        assert!(matches!(
            verify(&req, &claim, SECRET, at("20130524T000000Z") + MAX_SKEW_SECS + 1),
            Err(SigError::TimeTooSkewed)
        ));
    }

    /// AWS, "Example: presigned URL" (query authentication).
    #[test]
    fn aws_presigned_example() {
        let headers = [("Host", "examplebucket.s3.amazonaws.com")];
        let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
        let req = Request { method: "GET", path: "/test.txt", query, headers: &headers };
        let claim = parse(&req).unwrap().unwrap();
        assert_eq!(claim.expires, Some(86_400));
        let t = at("20130524T000000Z");
        verify(&req, &claim, SECRET, t + 3600).unwrap();
        assert!(matches!(verify(&req, &claim, SECRET, t + 86_401), Err(SigError::Expired)));
        let long = query.replace("X-Amz-Expires=86400", "X-Amz-Expires=604801");
        assert!(parse(&Request { query: &long, ..req }).is_err(), "at most 7 days");
    }

    #[test]
    fn sigv2_and_anonymous() {
        let h = [("Authorization", "AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=")];
        let req = Request { method: "GET", path: "/b/k", query: "", headers: &h };
        assert!(matches!(parse(&req), Err(SigError::Unsupported(_))));
        let req =
            Request { method: "GET", path: "/b/k", query: "AWSAccessKeyId=x&Signature=y&Expires=1", headers: &[] };
        assert!(matches!(parse(&req), Err(SigError::Unsupported(_))));
        let req = Request { method: "GET", path: "/b/k", query: "list-type=2", headers: &[] };
        assert_eq!(parse(&req).unwrap(), None);
    }

    #[test]
    fn dates() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20130524T000000Z"), Some(1_369_353_600));
        assert_eq!(parse_amz_date("20240229T235959Z"), Some(1_709_251_199));
        for bad in ["20130524T000000", "2013052T000000Z", "20131324T000000Z", "20130524T250000Z", "x"] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn canonical_uri_encodes_once_the_aws_way() {
        assert_eq!(canonical_uri("/b/a%20b/c~d").unwrap(), "/b/a%20b/c~d");
        assert_eq!(canonical_uri("/b/a b").unwrap(), "/b/a%20b");
        assert_eq!(canonical_uri("/b/%E2%82%AC+x").unwrap(), "/b/%E2%82%AC%2Bx");
        assert_eq!(canonical_uri("/b//k").unwrap(), "/b//k", "S3 keeps empty segments");
        assert_eq!(canonical_uri("").unwrap(), "/");
    }
}
