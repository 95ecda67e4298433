#![no_main]
//! Stream header parser: never panics; whatever it accepts re-encodes to the same bytes
//! and has a valid segment layout.

use atrest_format::{StreamHeader, StreamLayout};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((h, _)) = StreamHeader::parse(data) {
        assert_eq!(&h.encode()[..], &data[..StreamHeader::LEN]);
        assert!(StreamLayout::new(h.segment_size_log2).is_ok());
    }
});
