#![no_main]
//! Stream length parser: for any segment size and stored length, an accepted length
//! maps back to itself (the encoding is canonical) and never panics or overflows.

use atrest_format::StreamLayout;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let Ok(layout) = StreamLayout::new(data[0]) else { return };
    let ct = u64::from_le_bytes(data[1..9].try_into().unwrap());
    if let Ok(pt) = layout.plaintext_len(ct) {
        assert_eq!(layout.ciphertext_len(pt).unwrap(), ct);
        let n = layout.segment_count(pt);
        assert!(layout.segment_offset(n - 1) < ct);
    }
});
