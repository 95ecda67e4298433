//! SHA-256, and SHA-1 for S3's checksums (integrity of a transfer, never security).

/// SHA-256 over the concatenation of `parts`.
#[must_use]
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Incremental SHA-256, for inputs read in pieces (backup files).
pub struct Sha256(aws_lc_rs::digest::Context);

impl Default for Sha256 {
    fn default() -> Self {
        Self(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
    }
}

impl Sha256 {
    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest.
    #[must_use]
    pub fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

/// Incremental SHA-1: only for S3's `x-amz-checksum-sha1`, a transfer checksum the
/// client chooses (never for a signature, a MAC or a key).
pub struct Sha1(aws_lc_rs::digest::Context);

impl Default for Sha1 {
    fn default() -> Self {
        Self(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY))
    }
}

impl Sha1 {
    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest.
    #[must_use]
    pub fn finish(self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fips_180_abc_sha1() {
        let mut h = super::Sha1::default();
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(hex::encode(h.finish()), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn fips_180_abc() {
        assert_eq!(
            hex::encode(super::sha256(&[b"a", b"bc"])),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut h = super::Sha256::default();
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(h.finish(), super::sha256(&[b"abc"]));
    }
}
