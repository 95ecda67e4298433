#![no_main]
//! ISO-8601 duration parser (rotation policies): never panics or overflows; what it
//! accepts starts with P and is never negative.

use atrest_wire::duration::seconds;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Some(n) = seconds(s) {
        assert!(n >= 0 && s.starts_with('P'), "{s:?} -> {n}");
    }
});
