#![no_main]
//! Range header parser: never panics; whatever it accepts selects bytes inside the body
//! (or is refused as unsatisfiable), for any body size.

use atrest_wire::range::{parse, resolve};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().unwrap());
    let Ok(value) = std::str::from_utf8(&data[8..]) else { return };
    let range = parse(value);
    if let Ok((offset, len)) = resolve(range, size) {
        assert!(offset.checked_add(len).is_some_and(|end| end <= size), "{value:?} of {size}");
        assert!(range.is_none() || len > 0 || size == 0, "{value:?} of {size} selects nothing yet is satisfiable");
    }
});
