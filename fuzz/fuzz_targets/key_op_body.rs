#![no_main]
//! Key operation bodies (wrapKey, unwrapKey, encrypt, decrypt, sign; verify): JSON parsing
//! and the base64url decoding of every byte member never panic.

use atrest_wire::akv::{OpIn, VerifyIn};
use atrest_wire::b64;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(op) = serde_json::from_slice::<OpIn>(data) {
        for member in [Some(&op.value), op.iv.as_ref(), op.aad.as_ref(), op.tag.as_ref()].into_iter().flatten() {
            let _ = b64::decode(member);
        }
    }
    if let Ok(v) = serde_json::from_slice::<VerifyIn>(data) {
        let _ = (b64::decode(&v.digest), b64::decode(&v.value));
    }
});
