//! HDS value codec: decoding arbitrary bytes never panics, and whatever decodes re-encodes to
//! bytes that decode to the same value (NaN aside, which is never equal to itself).
#![no_main]

use bytes::Bytes;
use hds::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let _ = hds::Message::decode(&input);
    if let Ok(v) = codec::decode(&input) {
        let once = v.to_vec();
        let again = codec::decode(&Bytes::from(once.clone())).expect("our encoding decodes");
        // Compare encodings: byte equality also holds for NaN payloads.
        assert_eq!(again.to_vec(), once);
    }
});
