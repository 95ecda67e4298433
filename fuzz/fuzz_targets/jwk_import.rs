#![no_main]
//! The key import body (`PUT /keys/{name}`: a JWK with private members, or a secure
//! import blob): JSON parsing and the base64url decoding of every member never panic,
//! and a decoded member re-encodes to the canonical form of what was sent.

use atrest_wire::akv::ImportIn;
use atrest_wire::b64;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<ImportIn>(data) else { return };
    let k = &body.key;
    let public = [&k.n, &k.e, &k.x, &k.y, &k.key_hsm].into_iter().map(|m| m.as_deref());
    let private = [&k.d, &k.p, &k.q, &k.dp, &k.dq, &k.qi, &k.k].into_iter().map(|m| m.as_ref().map(|s| s.expose()));
    for member in public.chain(private).flatten() {
        if let Some(bytes) = b64::decode(member) {
            assert_eq!(b64::decode(&b64::encode(&bytes)), Some(bytes));
        }
    }
});
