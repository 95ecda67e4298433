#![no_main]
//! Bearer token parser: never panics; whatever it accepts formats back to the same id and
//! secret.

use atrest_wire::token::{format, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Some(b) = parse(s) {
        assert_eq!(b.id.len(), 16);
        let again = format(b.id, &b.secret);
        let back = parse(std::str::from_utf8(&again).unwrap()).expect("a formatted token parses");
        assert_eq!((back.id, &back.secret[..]), (b.id, &b.secret[..]));
    }
});
