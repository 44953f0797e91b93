//! decode → encode → decode gives the same items, and re-encoding is stable.
#![no_main]

use hap_tlv::Tlv8;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(first) = Tlv8::decode(data) else {
        return;
    };
    let bytes = first.encode();
    assert_eq!(bytes.len(), first.encoded_len_bytes());
    let second = Tlv8::decode(&bytes).expect("our own encoding decodes");
    assert_eq!(first, second);
    assert_eq!(second.encode(), bytes);
});
