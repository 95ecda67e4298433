#![no_main]
//! Record header parser: never panics; whatever it accepts re-encodes to the same bytes.

use atrest_format::RecordHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((h, rest)) = RecordHeader::parse(data) {
        assert_eq!(&h.encode()[..], &data[..RecordHeader::LEN]);
        assert_eq!(rest.len(), data.len() - RecordHeader::LEN);
    }
});
