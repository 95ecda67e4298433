//! A request body as the S3 front end takes it in: aws-chunked bodies decoded (every
//! chunk signature checked before its bytes go on), and everything hashed as it streams —
//! MD5 (the ETag, `Content-MD5`), SHA-256 when the payload hash was signed, the checksum
//! the client chose. [`Judge::finish`] rules on the whole body once it ended; the data
//! service makes the object visible only if it accepts.

use super::S3Error;
use atrest_crypto::hash::{Sha1, Sha256};
use atrest_s3::chunked::{Decoder, Event, Signing};
use atrest_s3::sigv4::Payload;
use atrest_store::s3::BodyDigest;
use axum::body::Body;
use axum::http::HeaderMap;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use md5::Digest as _;
use std::sync::{Arc, Mutex, PoisonError};

/// A checksum algorithm of `x-amz-checksum-*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algo {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl Algo {
    pub const ALL: [Algo; 5] = [Algo::Crc32, Algo::Crc32c, Algo::Crc64Nvme, Algo::Sha1, Algo::Sha256];

    /// The name S3 uses (`x-amz-sdk-checksum-algorithm`, `ChecksumAlgorithm`).
    pub fn name(self) -> &'static str {
        match self {
            Algo::Crc32 => "CRC32",
            Algo::Crc32c => "CRC32C",
            Algo::Crc64Nvme => "CRC64NVME",
            Algo::Sha1 => "SHA1",
            Algo::Sha256 => "SHA256",
        }
    }

    /// Its header (lower case).
    pub fn header(self) -> &'static str {
        match self {
            Algo::Crc32 => "x-amz-checksum-crc32",
            Algo::Crc32c => "x-amz-checksum-crc32c",
            Algo::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Algo::Sha1 => "x-amz-checksum-sha1",
            Algo::Sha256 => "x-amz-checksum-sha256",
        }
    }

    fn by_header(h: &str) -> Option<Algo> {
        Algo::ALL.into_iter().find(|a| a.header().eq_ignore_ascii_case(h.trim()))
    }
}

enum Sum {
    Crc(Box<crc_fast::Digest>, usize),
    Sha1(Sha1),
    Sha256(Sha256),
}

impl Sum {
    fn new(a: Algo) -> Self {
        use crc_fast::CrcAlgorithm as C;
        match a {
            Algo::Crc32 => Sum::Crc(Box::new(crc_fast::Digest::new(C::Crc32IsoHdlc)), 4),
            Algo::Crc32c => Sum::Crc(Box::new(crc_fast::Digest::new(C::Crc32Iscsi)), 4),
            Algo::Crc64Nvme => Sum::Crc(Box::new(crc_fast::Digest::new(C::Crc64Nvme)), 8),
            Algo::Sha1 => Sum::Sha1(Sha1::default()),
            Algo::Sha256 => Sum::Sha256(Sha256::default()),
        }
    }

    fn update(&mut self, d: &[u8]) {
        match self {
            Sum::Crc(c, _) => c.update(d),
            Sum::Sha1(h) => h.update(d),
            Sum::Sha256(h) => h.update(d),
        }
    }

    /// Base64 of the big-endian value, as S3 sends checksums.
    fn finish(self) -> String {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        match self {
            Sum::Crc(c, n) => b64(&c.finalize().to_be_bytes()[8 - n..]),
            Sum::Sha1(h) => b64(&h.finish()),
            Sum::Sha256(h) => b64(&h.finish()),
        }
    }
}

/// An object's checksum made from its parts' (base64, in order, with their sizes):
/// composite — the algorithm over the concatenated part checksums, `-N` — or, for a CRC,
/// of the full object, the part CRCs combined (no byte is read again).
pub(crate) fn combine_checksums(a: Algo, full: bool, parts: &[(u32, u64, Option<&str>)]) -> Result<String, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut raw = Vec::new();
    for (n, size, sum) in parts {
        let sum = sum.ok_or_else(|| format!("part {n} was uploaded without a {} checksum", a.name()))?;
        let bytes = b64.decode(sum).map_err(|_| format!("part {n}'s {} checksum is not base64", a.name()))?;
        raw.push((*size, bytes));
    }
    if !full {
        let mut s = Sum::new(a);
        for (_, bytes) in &raw {
            s.update(bytes);
        }
        return Ok(format!("{}-{}", s.finish(), raw.len()));
    }
    use crc_fast::CrcAlgorithm as C;
    let (alg, width) = match a {
        Algo::Crc32 => (C::Crc32IsoHdlc, 4),
        Algo::Crc32c => (C::Crc32Iscsi, 4),
        Algo::Crc64Nvme => (C::Crc64Nvme, 8),
        Algo::Sha1 | Algo::Sha256 => return Err(format!("{} cannot be of the full object", a.name())),
    };
    let mut crc: Option<u64> = None;
    for (size, bytes) in raw {
        if bytes.len() != width {
            return Err(format!("a part's {} checksum is not {width} bytes", a.name()));
        }
        let mut v = [0u8; 8];
        v[8 - width..].copy_from_slice(&bytes);
        let part = u64::from_be_bytes(v);
        crc = Some(match crc {
            None => part,
            Some(c) => crc_fast::checksum_combine(alg, c, part, size),
        });
    }
    Ok(b64.encode(&crc.unwrap_or(0).to_be_bytes()[8 - width..]))
}

/// What the request says the body is.
pub(crate) struct Expect {
    pub payload: Payload,
    pub signing: Option<Signing>,
    /// `Content-MD5`.
    pub md5: Option<[u8; 16]>,
    /// The checksum: its algorithm, and its value when sent as a header (else it comes in
    /// the trailer).
    pub checksum: Option<(Algo, Option<String>)>,
    /// `x-amz-decoded-content-length`.
    pub decoded_len: Option<u64>,
}

impl Expect {
    /// Reads what the headers say.
    pub fn from_headers(h: &HeaderMap, payload: Payload, signing: Option<Signing>) -> Result<Self, S3Error> {
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
        let md5 = match get("content-md5") {
            None => None,
            Some(v) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .ok()
                    .and_then(|b| <[u8; 16]>::try_from(b).ok())
                    .ok_or_else(|| S3Error::bad("InvalidDigest", "the Content-MD5 you specified is not valid"))?,
            ),
        };
        let mut checksum = None;
        for a in Algo::ALL {
            if let Some(v) = get(a.header()) {
                if checksum.is_some() {
                    return Err(S3Error::bad("InvalidRequest", "expecting a single x-amz-checksum- header"));
                }
                checksum = Some((a, Some(v.to_string())));
            }
        }
        if let Some(t) = get("x-amz-trailer") {
            let a = Algo::by_header(t).ok_or_else(|| {
                S3Error::bad("InvalidRequest", format!("the trailer {t} is not a checksum this server knows"))
            })?;
            if checksum.is_some() {
                return Err(S3Error::bad("InvalidRequest", "expecting a single x-amz-checksum- header"));
            }
            if !matches!(payload, Payload::StreamingTrailer | Payload::StreamingUnsignedTrailer) {
                return Err(S3Error::bad("InvalidRequest", "x-amz-trailer needs a STREAMING-…-TRAILER payload"));
            }
            checksum = Some((a, None));
        }
        let decoded_len = match get("x-amz-decoded-content-length") {
            None => None,
            Some(v) => Some(v.parse().map_err(|_| {
                S3Error::bad("InvalidArgument", "x-amz-decoded-content-length must be a number of bytes")
            })?),
        };
        let streaming =
            matches!(payload, Payload::Streaming | Payload::StreamingTrailer | Payload::StreamingUnsignedTrailer);
        if streaming && decoded_len.is_none() {
            return Err(S3Error::new(
                axum::http::StatusCode::LENGTH_REQUIRED,
                "MissingContentLength",
                "an aws-chunked body needs x-amz-decoded-content-length",
            ));
        }
        Ok(Self { payload, signing, md5, checksum, decoded_len })
    }
}

struct Seen {
    md5: md5::Md5,
    sha256: Option<Sha256>,
    sum: Option<Sum>,
    trailers: Vec<(String, String)>,
    /// Why the stream stopped early (the S3 error to answer with).
    failure: Option<S3Error>,
}

/// Rules on a body once it was read.
pub(crate) struct Judge {
    seen: Arc<Mutex<Seen>>,
    payload: Payload,
    md5: Option<[u8; 16]>,
    checksum: Option<(Algo, Option<String>)>,
    decoded_len: Option<u64>,
}

struct Reader {
    data: axum::body::BodyDataStream,
    decoder: Option<Decoder>,
    seen: Arc<Mutex<Seen>>,
    done: bool,
}

impl Reader {
    fn record(&self, d: &[u8]) {
        let mut s = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        s.md5.update(d);
        if let Some(h) = &mut s.sha256 {
            h.update(d);
        }
        if let Some(c) = &mut s.sum {
            c.update(d);
        }
    }

    fn fail(mut self, e: S3Error) -> Option<(Result<Bytes, String>, Self)> {
        let text = e.message.clone();
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).failure = Some(e);
        self.done = true;
        Some((Err(text), self))
    }

    async fn step(mut self) -> Option<(Result<Bytes, String>, Self)> {
        if self.done {
            return None;
        }
        loop {
            if let Some(dec) = &mut self.decoder {
                match dec.next_event() {
                    Ok(Some(Event::Data(d))) => {
                        self.record(&d);
                        return Some((Ok(Bytes::from(d)), self));
                    }
                    Ok(Some(Event::Trailers(t))) => {
                        self.seen.lock().unwrap_or_else(PoisonError::into_inner).trailers = t;
                        continue;
                    }
                    Ok(Some(Event::End)) => {
                        self.done = true;
                        return None;
                    }
                    Ok(None) => {}
                    Err(e) => return self.fail(e.into()),
                }
            }
            match self.data.next().await {
                Some(Ok(frame)) => match &mut self.decoder {
                    Some(dec) => dec.feed(&frame),
                    None => {
                        self.record(&frame);
                        return Some((Ok(frame), self));
                    }
                },
                Some(Err(e)) => {
                    return self.fail(S3Error::bad("IncompleteBody", format!("the body could not be read: {e}")));
                }
                None => {
                    if self.decoder.is_some() {
                        return self
                            .fail(S3Error::bad("IncompleteBody", "the aws-chunked body ended before its final chunk"));
                    }
                    self.done = true;
                    return None;
                }
            }
        }
    }
}

/// The body as plaintext chunks, and its judge.
pub(crate) fn take(body: Body, e: Expect) -> (impl Stream<Item = Result<Bytes, String>> + Unpin, Judge) {
    let seen = Arc::new(Mutex::new(Seen {
        md5: md5::Md5::new(),
        sha256: matches!(e.payload, Payload::Sha256(_)).then(Sha256::default),
        sum: e.checksum.as_ref().map(|(a, _)| Sum::new(*a)),
        trailers: Vec::new(),
        failure: None,
    }));
    let decoder = match e.payload {
        Payload::Streaming => Some(Decoder::new(e.signing, false)),
        Payload::StreamingTrailer => Some(Decoder::new(e.signing, true)),
        Payload::StreamingUnsignedTrailer => Some(Decoder::new(None, true)),
        Payload::Unsigned | Payload::Sha256(_) => None,
    };
    let reader = Reader { data: body.into_data_stream(), decoder, seen: seen.clone(), done: false };
    let stream = Box::pin(futures_util::stream::unfold(reader, Reader::step));
    (stream, Judge { seen, payload: e.payload, md5: e.md5, checksum: e.checksum, decoded_len: e.decoded_len })
}

impl Judge {
    /// Why the stream stopped early, if it did.
    pub fn failure(&self) -> Option<S3Error> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).failure.take()
    }

    /// The verdict on a body of `size` bytes that was read to its end.
    pub fn finish(&self, size: u64) -> Result<BodyDigest, S3Error> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = seen.failure.take() {
            return Err(f);
        }
        if let Some(n) = self.decoded_len
            && n != size
        {
            return Err(S3Error::bad(
                "IncompleteBody",
                format!("x-amz-decoded-content-length says {n} bytes, the body decoded to {size}"),
            ));
        }
        if let (Payload::Sha256(want), Some(h)) = (&self.payload, seen.sha256.take())
            && h.finish() != *want
        {
            return Err(S3Error::bad(
                "XAmzContentSHA256Mismatch",
                "the x-amz-content-sha256 you provided does not match what was computed",
            ));
        }
        let md5: [u8; 16] = std::mem::replace(&mut seen.md5, md5::Md5::new()).finalize().into();
        if self.md5.is_some_and(|want| want != md5) {
            return Err(S3Error::bad("BadDigest", "the Content-MD5 you specified did not match what was received"));
        }
        let mut checksums = std::collections::BTreeMap::new();
        if let (Some((algo, sent)), Some(sum)) = (self.checksum.clone(), seen.sum.take()) {
            let sent = match sent {
                Some(v) => v,
                None => seen
                    .trailers
                    .iter()
                    .find(|(n, _)| n == algo.header())
                    .map(|(_, v)| v.trim().to_string())
                    .ok_or_else(|| {
                        S3Error::bad(
                            "InvalidRequest",
                            format!("the trailer announced {} but did not carry it", algo.header()),
                        )
                    })?,
            };
            let got = sum.finish();
            if sent != got {
                return Err(S3Error::bad(
                    "BadDigest",
                    format!("the {} you specified did not match the calculated checksum", algo.name()),
                ));
            }
            checksums.insert(algo.name().to_string(), got);
        }
        Ok(BodyDigest { md5, checksums })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three 5 MiB parts of 'A', 'B' and 'C' (vectors of ceph/s3-tests, checked there
    /// against AWS): part checksums → the object's.
    #[test]
    fn multipart_checksums_combine_as_s3_does() {
        let size = 5 << 20;
        let parts = |sums: [&'static str; 3]| -> Vec<(u32, u64, Option<&'static str>)> {
            sums.iter().enumerate().map(|(i, s)| (i as u32 + 1, size, Some(*s))).collect()
        };
        let sha = parts([
            "275VF5loJr1YYawit0XSHREhkFXYkkPKGuoK0x9VKxI=",
            "mrHwOfjTL5Zwfj74F05HOQGLdUb7E5szdCbxgUSq6NM=",
            "Vw7oB/nKQ5xWb3hNgbyfkvDiivl+U+/Dft48nfJfDow=",
        ]);
        assert_eq!(
            combine_checksums(Algo::Sha256, false, &sha).unwrap(),
            "uWBwpe1dxI4Vw8Gf0X9ynOdw/SS6VBzfWm9giiv1sf4=-3"
        );
        let crc32 = parts(["JRTCyQ==", "QoZTGg==", "YAgjqw=="]);
        assert_eq!(combine_checksums(Algo::Crc32, true, &crc32).unwrap(), "WgDhBQ==");
        let crc64 = parts(["L/E4WYn8v98=", "xW1l19VobYM=", "cK5MnNaWrW4="]);
        assert_eq!(combine_checksums(Algo::Crc64Nvme, true, &crc64).unwrap(), "i+6LR0y3eFo=");
        // The full-object CRC of one body equals the CRC over the whole: combine agrees.
        let (a, b) = (b"hello ".as_slice(), b"world".as_slice());
        let one = |d: &[u8]| {
            let mut s = Sum::new(Algo::Crc32c);
            s.update(d);
            s.finish()
        };
        let (sa, sb) = (one(a), one(b));
        let got =
            combine_checksums(Algo::Crc32c, true, &[(1, 6, Some(sa.as_str())), (2, 5, Some(sb.as_str()))]).unwrap();
        assert_eq!(got, one(b"hello world"));
        // A part without the checksum, or SHA as a full-object checksum, is refused.
        assert!(combine_checksums(Algo::Crc32, true, &[(1, 1, None)]).unwrap_err().contains("part 1"));
        assert!(combine_checksums(Algo::Sha1, true, &[(1, 1, Some("AAAA"))]).is_err());
    }
}
