//! The session frame codec: arbitrary bytes fed in arbitrary chunks never panic, and a
//! plaintext encrypted by the controller decrypts identically however the wire is split.
#![no_main]

use bytes::BytesMut;
use hap_server::pairing::SharedSecret;
use hap_server::session::SessionCipher;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split_seed, data)) = data.split_first() else {
        return;
    };
    let secret = SharedSecret::from_bytes([0x11; 32]);

    // 1. Untrusted bytes, chunked: errors are fine, panics are not.
    let mut accessory = SessionCipher::accessory(&secret);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let chunk = usize::from(split_seed).max(1);
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        if accessory.decrypt(&mut buf, &mut out).is_err() {
            break;
        }
    }

    // 2. Round trip with the wire split at a data-chosen point.
    let mut controller = SessionCipher::controller(&secret);
    let mut accessory = SessionCipher::accessory(&secret);
    let mut wire = Vec::new();
    controller.encrypt(data, &mut wire);
    let split = usize::from(split_seed) * wire.len() / 255;
    let (a, b) = wire.split_at(split.min(wire.len()));
    let mut buf = BytesMut::from(a);
    let mut out = Vec::new();
    accessory.decrypt(&mut buf, &mut out).expect("first part");
    buf.extend_from_slice(b);
    accessory.decrypt(&mut buf, &mut out).expect("second part");
    assert_eq!(out, data);
    assert!(buf.is_empty());
});
