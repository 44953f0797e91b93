//! Decoding arbitrary bytes never panics; the reader and `Tlv8::decode` agree.
#![no_main]

use hap_tlv::{Reader, Tlv8};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let items: Result<Vec<_>, _> = Reader::new(data).collect();
    let decoded = Tlv8::decode(data);
    assert_eq!(items.is_ok(), decoded.is_ok());
    if let (Ok(items), Ok(tlv)) = (items, decoded) {
        assert_eq!(items.len(), tlv.len());
        for (a, b) in items.iter().zip(tlv.items()) {
            assert_eq!(a.ty, b.ty);
            assert_eq!(&*a.value, b.value.as_slice());
        }
        let _ = tlv.split_lists(hap_tlv::TlvType::SEPARATOR);
        for item in tlv.items() {
            let _ = Tlv8::decode(&item.value);
        }
    }
});
