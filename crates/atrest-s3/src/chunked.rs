//! The aws-chunked body encoding, decoded sans-I/O: feed it bytes as they arrive, take
//! out verified data. Each chunk is released only once it is whole and (for signed
//! streams) its signature — chained from the request's seed signature — has checked; the
//! trailer (checksums) comes out last, its signature checked too. The caller compares the
//! decoded length with `x-amz-decoded-content-length` and the trailer's checksum with the
//! data before anything becomes visible.
//!
//! ```text
//! signed:    HEX;chunk-signature=SIG\r\n DATA \r\n … 0;chunk-signature=SIG\r\n [TRAILERS] \r\n
//! unsigned:  HEX\r\n DATA \r\n … 0\r\n [TRAILERS] \r\n
//! trailers:  name:value\r\n … [x-amz-trailer-signature:SIG\r\n]
//! ```

use crate::error::SigError;
use atrest_crypto::hash::sha256;
use atrest_crypto::kdf::MacKey;

/// Largest chunk accepted (clients send 8 KiB to 8 MiB; a chunk is held until verified).
pub const MAX_CHUNK: usize = 16 << 20;
/// Longest chunk header or trailer line.
const MAX_LINE: usize = 4096;
/// Most trailer lines.
const MAX_TRAILERS: usize = 16;

/// How the chunks are signed.
pub struct Signing {
    /// The request's signing key.
    pub key: MacKey,
    /// `x-amz-date` of the request.
    pub amz_date: String,
    /// The credential scope.
    pub scope: String,
    /// The request's signature.
    pub seed: [u8; 32],
}

/// What the decoder has for the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A verified piece of the body.
    Data(Vec<u8>),
    /// The trailer's headers (names lowercase), verified when the stream is signed.
    Trailers(Vec<(String, String)>),
    /// The body ended; nothing may follow.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Data { len: usize },
    DataEnd,
    Trailers,
    Done,
}

/// An aws-chunked decoder.
pub struct Decoder {
    signing: Option<Signing>,
    /// A trailer may follow the last chunk.
    trailer: bool,
    prev: [u8; 32],
    buf: Vec<u8>,
    state: State,
    chunk_sig: Option<[u8; 32]>,
    trailers: Vec<(String, String)>,
    decoded: u64,
}

impl Decoder {
    /// A decoder for a body signed chunk by chunk (`signing`), or unsigned; `trailer`
    /// when the payload mode announces one.
    #[must_use]
    pub fn new(signing: Option<Signing>, trailer: bool) -> Self {
        let prev = signing.as_ref().map_or([0; 32], |s| s.seed);
        Self {
            signing,
            trailer,
            prev,
            buf: Vec::new(),
            state: State::Header,
            chunk_sig: None,
            trailers: Vec::new(),
            decoded: 0,
        }
    }

    /// Bytes of body decoded so far.
    #[must_use]
    pub fn decoded_len(&self) -> u64 {
        self.decoded
    }

    /// Whether the final chunk and trailer were read.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Adds received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next event, or `None` until more bytes arrive.
    ///
    /// # Errors
    /// A malformed stream (`IncompleteBody` style errors), a chunk or trailer signature
    /// that does not match (`SignatureDoesNotMatch`), bytes after the end.
    pub fn next_event(&mut self) -> Result<Option<Event>, SigError> {
        loop {
            match self.state {
                State::Header => {
                    let Some(line) = self.line()? else { return Ok(None) };
                    let (size, sig) = match line.split_once(';') {
                        Some((size, ext)) => {
                            let sig = ext
                                .strip_prefix("chunk-signature=")
                                .ok_or_else(|| malformed(&format!("unknown chunk extension {ext:?}")))?;
                            let mut s = [0u8; 32];
                            hex::decode_to_slice(sig, &mut s).map_err(|_| malformed("bad chunk-signature"))?;
                            (size, Some(s))
                        }
                        None => (line.as_str(), None),
                    };
                    if sig.is_some() != self.signing.is_some() {
                        return Err(malformed(if sig.is_some() {
                            "a chunk signature in an unsigned stream"
                        } else {
                            "a chunk without its signature"
                        }));
                    }
                    let len = usize::from_str_radix(size, 16).map_err(|_| malformed("bad chunk size"))?;
                    if len > MAX_CHUNK {
                        return Err(malformed(&format!("a chunk of {len} bytes (at most {MAX_CHUNK})")));
                    }
                    self.chunk_sig = sig;
                    if len == 0 {
                        self.check_chunk(&[])?;
                        self.state = State::Trailers;
                    } else {
                        self.state = State::Data { len };
                    }
                }
                State::Data { len } => {
                    if self.buf.len() < len {
                        return Ok(None);
                    }
                    let data: Vec<u8> = self.buf.drain(..len).collect();
                    self.check_chunk(&data)?;
                    self.decoded += len as u64;
                    self.state = State::DataEnd;
                    return Ok(Some(Event::Data(data)));
                }
                State::DataEnd => {
                    if self.buf.len() < 2 {
                        return Ok(None);
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(malformed("a chunk longer than its size"));
                    }
                    self.buf.drain(..2);
                    self.state = State::Header;
                }
                State::Trailers => {
                    let Some(line) = self.line()? else { return Ok(None) };
                    if !line.is_empty() {
                        if !self.trailer {
                            return Err(malformed("a trailer the request did not announce"));
                        }
                        if self.trailers.len() >= MAX_TRAILERS {
                            return Err(malformed("too many trailers"));
                        }
                        let (name, value) =
                            line.split_once(':').ok_or_else(|| malformed("a trailer line without ':'"))?;
                        self.trailers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                        continue;
                    }
                    self.state = State::Done;
                    let mut trailers = std::mem::take(&mut self.trailers);
                    self.check_trailer(&mut trailers)?;
                    if trailers.is_empty() {
                        return Ok(Some(Event::End));
                    }
                    self.buf.shrink_to_fit();
                    return Ok(Some(Event::Trailers(trailers)));
                }
                State::Done => {
                    if !self.buf.is_empty() {
                        return Err(malformed("bytes after the end of the body"));
                    }
                    return Ok(Some(Event::End));
                }
            }
        }
    }

    /// One CRLF-terminated line, without the CRLF.
    fn line(&mut self) -> Result<Option<String>, SigError> {
        let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") else {
            if self.buf.len() > MAX_LINE {
                return Err(malformed("a chunk header or trailer line is too long"));
            }
            return Ok(None);
        };
        if end > MAX_LINE {
            return Err(malformed("a chunk header or trailer line is too long"));
        }
        let line = String::from_utf8(self.buf[..end].to_vec()).map_err(|_| malformed("a line that is not UTF-8"))?;
        self.buf.drain(..end + 2);
        Ok(Some(line))
    }

    fn check_chunk(&mut self, data: &[u8]) -> Result<(), SigError> {
        let (Some(s), Some(claimed)) = (&self.signing, self.chunk_sig) else { return Ok(()) };
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{}\n{}",
            s.amz_date,
            s.scope,
            hex::encode(self.prev),
            hex::encode(sha256(&[])),
            hex::encode(sha256(&[data]))
        );
        s.key.verify(&[sts.as_bytes()], &claimed).map_err(|_| SigError::SignatureMismatch)?;
        self.prev = claimed;
        Ok(())
    }

    /// Signed streams sign their trailer (chained from the last chunk); the signature
    /// line is removed from what the caller gets.
    fn check_trailer(&mut self, trailers: &mut Vec<(String, String)>) -> Result<(), SigError> {
        let sig = trailers.iter().position(|(n, _)| n == "x-amz-trailer-signature").map(|i| trailers.remove(i).1);
        let Some(s) = &self.signing else {
            return if sig.is_some() { Err(malformed("a trailer signature in an unsigned stream")) } else { Ok(()) };
        };
        if trailers.is_empty() && sig.is_none() {
            return Ok(());
        }
        let sig = sig.ok_or_else(|| malformed("a signed stream's trailer without x-amz-trailer-signature"))?;
        let mut claimed = [0u8; 32];
        hex::decode_to_slice(&sig, &mut claimed).map_err(|_| malformed("bad x-amz-trailer-signature"))?;
        let canonical: String = trailers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
        let sts = format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}",
            s.amz_date,
            s.scope,
            hex::encode(self.prev),
            hex::encode(sha256(&[canonical.as_bytes()]))
        );
        s.key.verify(&[sts.as_bytes()], &claimed).map_err(|_| SigError::SignatureMismatch)
    }
}

fn malformed(what: &str) -> SigError {
    SigError::ChunkMalformed(what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigv4::{Claim, Payload, signing_key};

    const SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn claim() -> Claim {
        Claim {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            date: "20130524".into(),
            region: "us-east-1".into(),
            service: "s3".into(),
            signed_headers: vec![],
            signature: String::new(),
            amz_date: "20130524T000000Z".into(),
            expires: None,
            payload: Payload::Streaming,
        }
    }

    fn signing(seed: &str) -> Signing {
        let c = claim();
        Signing {
            key: signing_key(SECRET, &c),
            amz_date: c.amz_date.clone(),
            scope: c.scope(),
            seed: hex::decode(seed).unwrap().try_into().unwrap(),
        }
    }

    /// AWS, "Example: PUT Object in chunks" (66,560 bytes of 'a': 64 KiB, 1 KiB, 0).
    const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
    const SIGS: [&str; 3] = [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ];

    fn aws_body() -> Vec<u8> {
        let mut b = Vec::new();
        for (len, sig) in [(65_536usize, SIGS[0]), (1024, SIGS[1]), (0, SIGS[2])] {
            b.extend_from_slice(format!("{len:x};chunk-signature={sig}\r\n").as_bytes());
            b.extend(std::iter::repeat_n(b'a', len));
            b.extend_from_slice(b"\r\n");
        }
        b
    }

    type Decoded = (Vec<u8>, Vec<(String, String)>);

    fn drain(d: &mut Decoder, input: &[u8], step: usize) -> Result<Decoded, SigError> {
        let (mut data, mut trailers) = (Vec::new(), Vec::new());
        for piece in input.chunks(step) {
            d.feed(piece);
            while let Some(e) = d.next_event()? {
                match e {
                    Event::Data(x) => data.extend(x),
                    Event::Trailers(t) => trailers = t,
                    Event::End => return Ok((data, trailers)),
                }
            }
        }
        Err(malformed("ended early"))
    }

    #[test]
    fn aws_chunked_example_in_any_pieces() {
        for step in [1, 7, 4096, 1 << 20] {
            let mut d = Decoder::new(Some(signing(SEED)), false);
            let (data, trailers) = drain(&mut d, &aws_body(), step).unwrap();
            assert_eq!(data.len(), 66_560);
            assert!(data.iter().all(|&b| b == b'a') && trailers.is_empty());
            assert_eq!(d.decoded_len(), 66_560);
        }
    }

    #[test]
    fn a_changed_byte_or_chunk_order_is_refused_before_release() {
        let mut body = aws_body();
        let i = body.len() / 2;
        body[i] = b'b';
        let mut d = Decoder::new(Some(signing(SEED)), false);
        d.feed(&body);
        // The first (64 KiB) chunk holds the change: nothing is released.
        assert!(matches!(d.next_event(), Err(SigError::SignatureMismatch)));
        // Another seed (another request) does not chain.
        let mut d = Decoder::new(Some(signing(SIGS[0])), false);
        d.feed(&aws_body());
        assert!(matches!(d.next_event(), Err(SigError::SignatureMismatch)));
    }

    #[test]
    fn unsigned_with_trailer() {
        let body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n";
        let mut d = Decoder::new(None, true);
        let (data, trailers) = drain(&mut d, body, 3).unwrap();
        assert_eq!(data, b"hello");
        assert_eq!(trailers, vec![("x-amz-checksum-crc32".to_string(), "NhCmhg==".to_string())]);
        // Not announced, not accepted; a signature in an unsigned stream neither.
        let mut d = Decoder::new(None, false);
        assert!(drain(&mut d, body, 64).is_err());
        let mut d = Decoder::new(None, true);
        assert!(drain(&mut d, b"5;chunk-signature=00\r\nhello\r\n0\r\n\r\n", 64).is_err());
    }

    #[test]
    fn signed_trailer_is_checked() {
        // Built with the same chain the decoder checks, then tampered with.
        let s = signing(SEED);
        let sig = |prev: &[u8; 32], data: &[u8]| -> [u8; 32] {
            let sts = format!(
                "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{}\n{}",
                s.amz_date,
                s.scope,
                hex::encode(prev),
                hex::encode(sha256(&[])),
                hex::encode(sha256(&[data]))
            );
            s.key.sign(&[sts.as_bytes()])
        };
        let seed: [u8; 32] = hex::decode(SEED).unwrap().try_into().unwrap();
        let c1 = sig(&seed, b"hello");
        let c0 = sig(&c1, b"");
        let trailer = "x-amz-checksum-crc32:NhCmhg==\n";
        let sts = format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}",
            s.amz_date,
            s.scope,
            hex::encode(c0),
            hex::encode(sha256(&[trailer.as_bytes()]))
        );
        let ts = hex::encode(s.key.sign(&[sts.as_bytes()]));
        let body = format!(
            "5;chunk-signature={}\r\nhello\r\n0;chunk-signature={}\r\nx-amz-checksum-crc32:NhCmhg==\r\nx-amz-trailer-signature:{ts}\r\n\r\n",
            hex::encode(c1),
            hex::encode(c0)
        );
        let mut d = Decoder::new(Some(signing(SEED)), true);
        let (data, trailers) = drain(&mut d, body.as_bytes(), 5).unwrap();
        assert_eq!((data.as_slice(), trailers.len()), (&b"hello"[..], 1));
        let tampered = body.replace("NhCmhg==", "AAAAAA==");
        let mut d = Decoder::new(Some(signing(SEED)), true);
        assert!(matches!(drain(&mut d, tampered.as_bytes(), 5), Err(SigError::SignatureMismatch)));
    }

    #[test]
    fn malformed_streams() {
        for bad in [&b"zz\r\n"[..], b"5\r\nhelloX\r\n", b"1000001\r\n", b"0\r\n\r\nextra"] {
            let mut d = Decoder::new(None, false);
            d.feed(bad);
            let mut r = Ok(None);
            for _ in 0..8 {
                r = d.next_event();
                if !matches!(r, Ok(Some(Event::Data(_)))) {
                    break;
                }
            }
            // "0\r\n\r\nextra": End first, then the extra bytes are refused.
            if matches!(r, Ok(Some(Event::End))) {
                r = d.next_event();
            }
            assert!(r.is_err(), "{:?}: {r:?}", String::from_utf8_lossy(bad));
        }
    }

    proptest::proptest! {
        /// Any body, cut into any chunk sizes and fed in any pieces, decodes to itself.
        #[test]
        fn unsigned_round_trip(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4000),
            chunk in 1usize..700,
            step in 1usize..300,
        ) {
            let mut body = Vec::new();
            for c in data.chunks(chunk) {
                body.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                body.extend_from_slice(c);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n\r\n");
            let mut d = Decoder::new(None, false);
            let (out, trailers) = drain(&mut d, &body, step).unwrap();
            proptest::prop_assert_eq!(out, data.clone());
            proptest::prop_assert!(trailers.is_empty());
            proptest::prop_assert_eq!(d.decoded_len(), data.len() as u64);
        }
    }
}
