//! Property tests: codec round trip, decoding arbitrary bytes never panics, and the frame
//! decoder yields the same frames whatever the split points of the byte stream.
#![allow(clippy::indexing_slicing, missing_docs)]

use bytes::{Bytes, BytesMut};
use hds::codec::{self, Value};
use hds::frame::{FrameOpener, FrameSealer, take_frame};
use hds::{Connection, Message};
use proptest::prelude::*;

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        (-50i64..50).prop_map(Value::Int),
        any::<f64>()
            .prop_filter("NaN != NaN", |f| !f.is_nan())
            .prop_map(Value::Float),
        ".{0,40}".prop_map(Value::String),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|v| Value::Data(v.into())),
        any::<[u8; 16]>().prop_map(Value::Uuid),
        (-1e9f64..1e9).prop_map(Value::Date),
    ];
    leaf.prop_recursive(4, 64, 20, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..20).prop_map(Value::Array),
            proptest::collection::vec((".{0,10}".prop_map(Value::String), inner), 0..20)
                .prop_map(Value::Dict),
        ]
    })
}

proptest! {
    #[test]
    fn codec_round_trip(v in value()) {
        let bytes = Bytes::from(v.to_vec());
        prop_assert_eq!(codec::decode(&bytes).unwrap(), v);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let b = Bytes::from(input);
        let _ = codec::decode(&b);
        let _ = Message::decode(&b);
    }

    #[test]
    fn whatever_decodes_re_encodes_stably(v in value(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3)) {
        // The fuzz target hds_codec_roundtrip's property, on mutated valid encodings.
        let mut bytes = v.to_vec();
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        if let Ok(d) = codec::decode(&Bytes::from(bytes)) {
            let once = d.to_vec();
            let again = codec::decode(&Bytes::from(once.clone())).unwrap();
            prop_assert_eq!(again.to_vec(), once);
        }
    }

    #[test]
    fn decoding_mutated_valid_encodings_never_panics(v in value(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut bytes = v.to_vec();
        if !bytes.is_empty() {
            for (i, b) in flips {
                let at = i.index(bytes.len());
                bytes[at] = b;
            }
        }
        let _ = codec::decode(&Bytes::from(bytes));
    }

    #[test]
    fn frame_decoder_yields_the_same_frames_at_every_split(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..5),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let key = [5u8; 32];
        let mut sealer = FrameSealer::new(&key);
        let mut wire = Vec::new();
        for p in &payloads {
            sealer.seal(p, &mut wire).unwrap();
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.push(wire.len());
        points.sort_unstable();
        let mut opener = FrameOpener::new(&key);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut from = 0;
        for to in points {
            buf.extend_from_slice(&wire[from..to]);
            from = to;
            while let Some(f) = take_frame(&mut buf, opener.counter()).unwrap() {
                got.push(opener.open(f).unwrap().to_vec());
            }
        }
        prop_assert_eq!(got, payloads);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn connection_never_panics_on_garbage_after_hello(garbage in proptest::collection::vec(any::<u8>(), 0..600)) {
        let keys = hds::SessionKeys::from_raw([1; 32], [2; 32]);
        let mut conn = Connection::with_keys(&keys, std::time::Instant::now());
        let mut buf = BytesMut::from(&garbage[..]);
        let _ = conn.handle_incoming(std::time::Instant::now(), &mut buf);
        // Garbage sealed with the right key reaches the message layer.
        let mut sealer = keys.sealer(hds::Role::Controller);
        let mut w = Vec::new();
        sealer.seal(&garbage, &mut w).unwrap();
        let mut conn = Connection::with_keys(&keys, std::time::Instant::now());
        let mut buf = BytesMut::from(&w[..]);
        let _ = conn.handle_incoming(std::time::Instant::now(), &mut buf);
    }
}

#[test]
fn every_single_split_point_of_a_real_stream() {
    // Exhaustive for one stream of three frames: split once at every byte offset.
    let key = [8u8; 32];
    let mut sealer = FrameSealer::new(&key);
    let mut wire = Vec::new();
    let payloads: [&[u8]; 3] = [b"first", b"", b"third frame, a bit longer"];
    for p in payloads {
        sealer.seal(p, &mut wire).unwrap();
    }
    for cut in 0..=wire.len() {
        let mut opener = FrameOpener::new(&key);
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut got = Vec::new();
        while let Some(f) = take_frame(&mut buf, opener.counter()).unwrap() {
            got.push(opener.open(f).unwrap());
        }
        buf.extend_from_slice(&wire[cut..]);
        while let Some(f) = take_frame(&mut buf, opener.counter()).unwrap() {
            got.push(opener.open(f).unwrap());
        }
        let got: Vec<&[u8]> = got.iter().map(|b| &b[..]).collect();
        assert_eq!(got, payloads, "split at {cut}");
    }
}
