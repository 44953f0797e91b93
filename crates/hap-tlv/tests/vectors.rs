//! Byte vectors in the style of HomeKitADK `Tests/HAPTLVTest.c`: fragmentation at 255/256/510/511
//! bytes, separators, empty values, malformed input.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

use hap_tlv::{Error, Method, PairingError, Reader, Tlv8, TlvType, Writer};

/// Expected encoding of one value of `len` bytes (all `fill`) of type `ty`, built by hand.
fn fragmented(ty: u8, len: usize, fill: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut left = len;
    loop {
        let n = left.min(255);
        out.push(ty);
        out.push(n as u8);
        out.extend(std::iter::repeat_n(fill, n));
        left -= n;
        if left == 0 {
            break;
        }
    }
    out
}

#[test]
fn fragmentation_boundaries_encode_and_decode() {
    for (len, items) in [
        (0, 1),
        (1, 1),
        (254, 1),
        (255, 1),
        (256, 2),
        (510, 2),
        (511, 3),
        (765, 3),
    ] {
        let value = vec![0xAB; len];
        let mut out = Vec::new();
        Writer::new(&mut out).put(TlvType::PUBLIC_KEY, &value);
        assert_eq!(out, fragmented(3, len, 0xAB), "encoding of {len} bytes");
        assert_eq!(out.len(), len + 2 * items, "{len} bytes → {items} items");

        let decoded = Tlv8::decode(&out).unwrap();
        assert_eq!(decoded.len(), 1, "{len} bytes decode to one item");
        assert_eq!(decoded.get(TlvType::PUBLIC_KEY), Some(&value[..]));
    }
}

#[test]
fn exactly_255_k_has_no_trailing_empty_item() {
    let mut out = Vec::new();
    Writer::new(&mut out).put(TlvType(0x05), &[1; 510]);
    assert_eq!(out.len(), 514);
    assert_eq!(&out[..2], &[0x05, 0xFF]);
    assert_eq!(&out[257..259], &[0x05, 0xFF]);
}

#[test]
fn fragments_joined_then_next_item_kept() {
    // 255 + 3 bytes of type 1, then State=2.
    let mut input = fragmented(1, 258, 0x11);
    input.extend_from_slice(&[0x06, 0x01, 0x02]);
    let items: Vec<_> = Reader::new(&input).collect::<Result<_, _>>().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].ty, TlvType(1));
    assert_eq!(items[0].value.len(), 258);
    assert_eq!(items[1].ty, TlvType::STATE);
    assert_eq!(&*items[1].value, &[2]);
}

#[test]
fn same_type_after_short_item_is_a_new_item() {
    // ADK would reject; we keep both items (documented leniency).
    let input = [0x01, 0x01, 0xAA, 0x01, 0x02, 0xBB, 0xCC];
    let tlv = Tlv8::decode(&input).unwrap();
    let all: Vec<&[u8]> = tlv.get_all(TlvType(1)).collect();
    assert_eq!(all, vec![&[0xAA][..], &[0xBB, 0xCC][..]]);
    assert_eq!(tlv.encode(), input);
}

#[test]
fn empty_continuation_fragment_is_bad_fragment() {
    let mut input = fragmented(4, 255, 0);
    input.extend_from_slice(&[0x04, 0x00]);
    assert_eq!(
        Tlv8::decode(&input),
        Err(Error::BadFragment {
            ty: TlvType::PROOF,
            offset_bytes: 257
        })
    );
}

#[test]
fn separators_split_lists_and_survive_round_trip() {
    // A List Pairings response: State=2, then two pairings separated by FF 00.
    let mut tlv = Tlv8::new();
    tlv.push_u8(TlvType::STATE, 2)
        .push(TlvType::IDENTIFIER, b"A")
        .push(TlvType::PUBLIC_KEY, &[1; 32])
        .push_u8(TlvType::PERMISSIONS, 1)
        .push_separator(TlvType::SEPARATOR)
        .push(TlvType::IDENTIFIER, b"B")
        .push(TlvType::PUBLIC_KEY, &[2; 32])
        .push_u8(TlvType::PERMISSIONS, 0);
    let bytes = tlv.encode();
    assert_eq!(&bytes[bytes.len() - 42..bytes.len() - 40], &[0xFF, 0x00]);
    let back = Tlv8::decode(&bytes).unwrap();
    assert_eq!(back, tlv);
    let lists = back.split_lists(TlvType::SEPARATOR);
    assert_eq!(lists.len(), 2);
    assert_eq!(lists[0].get(TlvType::IDENTIFIER), Some(&b"A"[..]));
    assert_eq!(lists[1].get(TlvType::IDENTIFIER), Some(&b"B"[..]));
    assert_eq!(lists[1].require_u8(TlvType::PERMISSIONS), Ok(0));
    assert_eq!(back.get_all(TlvType::IDENTIFIER).count(), 2);
}

#[test]
fn camera_style_zero_separator_between_same_type_entries() {
    // HAP-NodeJS camera lists: entries of type 1 separated by 00 00.
    let input = [0x01, 0x01, 0x0A, 0x00, 0x00, 0x01, 0x01, 0x0B];
    let tlv = Tlv8::decode(&input).unwrap();
    let lists = tlv.split_lists(TlvType(0));
    assert_eq!(lists.len(), 2);
    assert_eq!(lists[0].get(TlvType(1)), Some(&[0x0A][..]));
    assert_eq!(lists[1].get(TlvType(1)), Some(&[0x0B][..]));
    assert_eq!(tlv.encode(), input);
}

#[test]
fn empty_values_and_unknown_types_round_trip() {
    let input = [0x42, 0x00, 0xFE, 0x02, 0x01, 0x02, 0x06, 0x00];
    let tlv = Tlv8::decode(&input).unwrap();
    assert_eq!(tlv.len(), 3);
    assert_eq!(tlv.get(TlvType(0x42)), Some(&[][..]));
    assert_eq!(tlv.get(TlvType(0xFE)), Some(&[1, 2][..]));
    assert_eq!(tlv.encode(), input);
}

#[test]
fn truncated_inputs_name_the_type() {
    assert_eq!(
        Tlv8::decode(&[0x06]),
        Err(Error::Truncated {
            ty: TlvType::STATE,
            offset_bytes: 0,
            needed_bytes: 2,
            available_bytes: 1
        })
    );
    assert_eq!(
        Tlv8::decode(&[0x06, 0x01, 0x01, 0x03, 0x05, 0x00]),
        Err(Error::Truncated {
            ty: TlvType::PUBLIC_KEY,
            offset_bytes: 3,
            needed_bytes: 7,
            available_bytes: 3
        })
    );
    // Truncated continuation fragment.
    let mut input = fragmented(5, 255, 0);
    input.extend_from_slice(&[0x05, 0x10, 0x00]);
    assert!(matches!(
        Tlv8::decode(&input),
        Err(Error::Truncated {
            ty: TlvType::ENCRYPTED_DATA,
            offset_bytes: 257,
            ..
        })
    ));
}

#[test]
fn reader_stops_after_error() {
    let mut r = Reader::new(&[0x06, 0x01, 0x02, 0x07]);
    assert!(r.next().unwrap().is_ok());
    assert!(r.next().unwrap().is_err());
    assert!(r.next().is_none());
}

#[test]
fn integer_helpers() {
    let mut tlv = Tlv8::new();
    tlv.push_uint_min(TlvType(1), 0)
        .push_uint_min(TlvType(2), 0xFF)
        .push_uint_min(TlvType(3), 0x100)
        .push_uint_min(TlvType(4), 0x0100_0010)
        .push_u16(TlvType(5), 7)
        .push_u32(TlvType(6), 0x0102_0304);
    assert_eq!(tlv.get(TlvType(1)), Some(&[0][..]));
    assert_eq!(tlv.get(TlvType(2)), Some(&[0xFF][..]));
    assert_eq!(tlv.get(TlvType(3)), Some(&[0, 1][..]));
    assert_eq!(tlv.get(TlvType(4)), Some(&[0x10, 0, 0, 1][..]));
    assert_eq!(tlv.get(TlvType(5)), Some(&[7, 0][..]));
    assert_eq!(tlv.get(TlvType(6)), Some(&[4, 3, 2, 1][..]));
    assert_eq!(tlv.get_uint(TlvType(4)), Ok(Some(0x0100_0010)));
    assert_eq!(tlv.get_uint(TlvType(9)), Ok(None));
    assert_eq!(
        tlv.require_uint(TlvType(9)),
        Err(Error::MissingType { ty: TlvType(9) })
    );
    let mut w = Vec::new();
    Writer::new(&mut w)
        .put_uint_min(TlvType(1), 0x1234)
        .put_u64(TlvType(2), 1);
    assert_eq!(w, [1, 2, 0x34, 0x12, 2, 8, 1, 0, 0, 0, 0, 0, 0, 0]);

    let bad = Tlv8::decode(&[0x01, 0x00, 0x02, 0x02, 0, 0]).unwrap();
    assert_eq!(
        bad.get_uint(TlvType(1)),
        Err(Error::BadLength {
            ty: TlvType(1),
            len_bytes: 0,
            min_bytes: 1,
            max_bytes: 8
        })
    );
    assert_eq!(
        bad.require_u8(TlvType(2)),
        Err(Error::BadLength {
            ty: TlvType(2),
            len_bytes: 2,
            min_bytes: 1,
            max_bytes: 1
        })
    );
    assert_eq!(
        bad.require_array::<32>(TlvType(2)),
        Err(Error::BadLength {
            ty: TlvType(2),
            len_bytes: 2,
            min_bytes: 32,
            max_bytes: 32
        })
    );
}

#[test]
fn nested_tlv() {
    let mut inner = Tlv8::new();
    inner.push_u16(TlvType(1), 1920).push_u16(TlvType(2), 1080);
    let mut outer = Tlv8::new();
    outer.push_nested(TlvType(3), &inner).push_u8(TlvType(4), 1);
    let back = Tlv8::decode(&outer.encode()).unwrap();
    assert_eq!(back.nested(TlvType(3)).unwrap(), Some(inner));
    assert_eq!(back.nested(TlvType(9)).unwrap(), None);
    // A malformed nested value is an error, not a panic.
    let broken = Tlv8::decode(&[0x03, 0x01, 0x05]).unwrap();
    assert!(broken.nested(TlvType(3)).is_err());
}

#[test]
fn debug_prints_hex_and_hides_long_values() {
    assert_eq!(format!("{:?}", TlvType::PUBLIC_KEY), "PublicKey(0x03)");
    assert_eq!(format!("{:?}", TlvType(0x2a)), "TlvType(0x2a)");
    assert_eq!(format!("{:?}", Method::PAIR_VERIFY), "PairVerify(0x02)");
    assert_eq!(format!("{:?}", Method(0x40)), "Method(0x40)");
    assert_eq!(format!("{:?}", PairingError::BUSY), "Busy(0x07)");
    assert_eq!(format!("{:?}", PairingError(0x99)), "PairingError(0x99)");
    assert_eq!(PairingError::AUTHENTICATION.0, 2);
    assert_eq!(PairingError::MAX_TRIES.0, 5);
    let mut tlv = Tlv8::new();
    tlv.push_u8(TlvType::STATE, 4)
        .push(TlvType::PROOF, &[0x5A; 64]);
    let dbg = format!("{tlv:?}");
    assert!(dbg.contains("State(0x06): [04]"), "{dbg}");
    assert!(dbg.contains("<64 bytes>"), "{dbg}");
    assert!(!dbg.contains("5a5a"), "{dbg}");
    let err = Error::MissingType { ty: TlvType::SALT };
    assert_eq!(err.to_string(), "TLV item Salt(0x02) is missing");
}

/// HAP-NodeJS `RecordingManagement.spec.ts` SelectedCameraRecordingConfiguration (protocol-notes
/// §3.4): nested TLVs decode to the annotated values and re-encode byte for byte.
#[test]
fn hap_nodejs_selected_recording_configuration() {
    let input = hex::decode(
        "011d0104a00f000002080100000000000000030b01010002060104a00f000002240101000212010101020102\
         0304d00700000404a00f0000030b0102b004020240060301180314010100020f010101020100030103040440000000",
    )
    .unwrap();
    let top = Tlv8::decode(&input).unwrap();
    assert_eq!(top.len(), 3);
    let general = top.nested(TlvType(1)).unwrap().unwrap();
    assert_eq!(general.require_uint(TlvType(1)), Ok(4000), "prebuffer ms");
    assert_eq!(general.get_uint(TlvType(2)), Ok(Some(1)), "trigger: motion");
    let container = general.nested(TlvType(3)).unwrap().unwrap();
    assert_eq!(container.require_u8(TlvType(1)), Ok(0), "fMP4");
    let params = container.nested(TlvType(2)).unwrap().unwrap();
    assert_eq!(params.require_uint(TlvType(1)), Ok(4000), "fragment ms");

    let video = top.nested(TlvType(2)).unwrap().unwrap();
    let vparams = video.nested(TlvType(2)).unwrap().unwrap();
    assert_eq!(vparams.require_u8(TlvType(1)), Ok(1), "Main");
    assert_eq!(vparams.require_u8(TlvType(2)), Ok(2), "level 4.0");
    assert_eq!(vparams.require_uint(TlvType(3)), Ok(2000), "kbit/s");
    assert_eq!(vparams.require_uint(TlvType(4)), Ok(4000), "I-frame ms");
    let attrs = video.nested(TlvType(3)).unwrap().unwrap();
    assert_eq!(attrs.require_uint(TlvType(1)), Ok(1200));
    assert_eq!(attrs.require_uint(TlvType(2)), Ok(1600));
    assert_eq!(attrs.require_u8(TlvType(3)), Ok(24));

    let audio = top.nested(TlvType(3)).unwrap().unwrap();
    let aparams = audio.nested(TlvType(2)).unwrap().unwrap();
    assert_eq!(aparams.require_u8(TlvType(3)), Ok(3), "32 kHz");
    assert_eq!(aparams.require_uint(TlvType(4)), Ok(64), "kbit/s");

    assert_eq!(top.encode(), input);
}

/// HAP-NodeJS supported-video example (protocol-notes §3.2): a `00 00`-separated list of levels
/// inside the codec parameters.
#[test]
fn hap_nodejs_codec_parameters_list() {
    let params = [
        0x01, 0x01, 0x01, 0x02, 0x01, 0x00, 0x00, 0x00, 0x02, 0x01, 0x02,
    ];
    let tlv = Tlv8::decode(&params).unwrap();
    assert_eq!(tlv.require_u8(TlvType(1)), Ok(1));
    let levels: Vec<&[u8]> = tlv.get_all(TlvType(2)).collect();
    assert_eq!(levels, vec![&[0][..], &[2][..]]);
    let lists = tlv.split_lists(TlvType(0));
    assert_eq!(lists.len(), 2);
    assert_eq!(lists[1].require_u8(TlvType(2)), Ok(2));
    assert_eq!(tlv.encode(), params);
}
