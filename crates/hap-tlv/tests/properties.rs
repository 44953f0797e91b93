//! Property tests: decode(encode(x)) == x, and decoding arbitrary bytes never panics.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

use hap_tlv::{Reader, Tlv8, TlvType};
use proptest::prelude::*;

/// Item lists a TLV8 encoding can represent: an item whose length is a non-zero multiple of
/// 255 must not be followed by another item of the same type (it would be read as a fragment).
fn representable() -> impl Strategy<Value = Tlv8> {
    prop::collection::vec(
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..700)),
        0..8,
    )
    .prop_map(|items| {
        let mut tlv = Tlv8::new();
        let mut prev: Option<(u8, usize)> = None;
        for (ty, value) in items {
            if let Some((pty, plen)) = prev
                && pty == ty
                && plen > 0
                && plen % 255 == 0
            {
                continue;
            }
            prev = Some((ty, value.len()));
            tlv.push(TlvType(ty), &value);
        }
        tlv
    })
}

proptest! {
    #[test]
    fn decode_encode_round_trip(tlv in representable()) {
        let bytes = tlv.encode();
        prop_assert_eq!(bytes.len(), tlv.encoded_len_bytes());
        let back = Tlv8::decode(&bytes).unwrap();
        prop_assert_eq!(back, tlv);
    }

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1200)) {
        let decoded = Tlv8::decode(&bytes);
        // Whatever decodes re-encodes to something that decodes to the same items.
        if let Ok(tlv) = decoded {
            let again = Tlv8::decode(&tlv.encode()).unwrap();
            prop_assert_eq!(again, tlv);
        }
        // The reader yields at most one item per two input bytes (plus an error).
        let n = Reader::new(&bytes).count();
        prop_assert!(n <= bytes.len() / 2 + 1);
    }

    #[test]
    fn near_255_boundaries(len in 250usize..520, ty in any::<u8>()) {
        let mut tlv = Tlv8::new();
        tlv.push(TlvType(ty), &vec![7; len]);
        let bytes = tlv.encode();
        prop_assert_eq!(bytes.len(), len + 2 * len.div_ceil(255));
        prop_assert_eq!(Tlv8::decode(&bytes).unwrap(), tlv);
    }
}
