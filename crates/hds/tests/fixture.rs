//! The real recording in `testdata/hksv-example` (Supereg/secure-video-specification, MIT) sent
//! through the accessory `Connection` and received by the `Controller`, in memory.
#![allow(clippy::indexing_slicing, missing_docs)]

mod common;

use bytes::Bytes;
use common::{Pair, recording};
use hds::controller::ControllerEvent;
use hds::{Segment, SegmentKind};
use sha2::{Digest, Sha256};

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// sha256 of upstream `examples/chunks/*` in send order (fixture-analysis.md §1): init as one
/// chunk, then 262144 bytes + remainder for each fragment.
const UPSTREAM_CHUNKS: [(usize, &str); 7] = [
    (
        1143,
        "b222b3cf6a6204e4881f38cc69289063462e7eeca07872d7390f02f5e1e12ad4",
    ),
    (
        262144,
        "32382694bc86739d6df852969f9f60997e4b6a211494d4756ac300768b94a20b",
    ),
    (
        109237,
        "29ea1f6669bf90343fab591a7c0010405044e7b93b8756eaa331cf95b53546b7",
    ),
    (
        262144,
        "75a8de4888f583fe3baec2141b2e4bd5c178909ec495e87bbb2891092177f09e",
    ),
    (
        160345,
        "d4dfa875ffc5d93b43e07cc7e035dad2c6896b60eb2d3e857d0602f3646c4bcd",
    ),
    (
        262144,
        "61ebbb9f9beace9656feaed3c14cfb6bf3a3f7e72298956d3ad1bee577cc2dfa",
    ),
    (
        192919,
        "dbb991f5bc65a7d4834c28839a6ee530b86e8ce61b2d9e26bbd51dad2221983b",
    ),
];
/// sha256 of upstream `examples/fully-assembled.mp4` (1250076 bytes).
const FULLY_ASSEMBLED_SHA256: &str =
    "04ce94a8fd392d0e6a6f0426e69e6076ceaa00addcc823a91e27c5bca7d4e669";

#[test]
fn fixture_chunks_and_reassembly_match_upstream_byte_for_byte() {
    let segments: Vec<Segment> = recording().into_iter().map(Segment::from).collect();
    send_and_check_upstream(segments);
}

#[test]
fn fixture_as_ring_style_parts_gives_the_upstream_chunks() {
    // Each segment as the ring hands it over: the first box (ftyp / moof) in one allocation,
    // the rest (moov / mdat) in another; fragments also with the mdat header apart.
    let segments = recording()
        .into_iter()
        .map(|seg| {
            let first_box = u32::from_be_bytes(seg[..4].try_into().unwrap()) as usize;
            let own = |r: std::ops::Range<usize>| Bytes::copy_from_slice(&seg[r]);
            if &seg[4..8] == b"moof" {
                Segment::from_parts([
                    own(0..first_box),
                    own(first_box..first_box + 8),
                    own(first_box + 8..seg.len()),
                ])
            } else {
                Segment::from_parts([own(0..first_box), own(first_box..seg.len())])
            }
        })
        .collect();
    send_and_check_upstream(segments);
}

fn send_and_check_upstream(segments: Vec<Segment>) {
    let mut pair = Pair::new();
    pair.hello_and_open(1);
    pair.take_controller_events();
    let n = segments.len();
    for (i, seg) in segments.iter().enumerate() {
        let kind = if i == 0 {
            SegmentKind::MediaInitialization
        } else {
            SegmentKind::MediaFragment
        };
        pair.accessory
            .send_segment(pair.now, 1, kind, seg.clone(), i + 1 == n)
            .expect("send_segment");
    }
    pair.drive();
    assert!(
        pair.controller_error.is_none(),
        "{:?}",
        pair.controller_error
    );

    let events = pair.take_controller_events();
    let chunks: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ControllerEvent::Chunk { meta, data } => Some((*meta, data.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(chunks.len(), UPSTREAM_CHUNKS.len());
    for (i, ((meta, data), (len, sha))) in chunks.iter().zip(UPSTREAM_CHUNKS).enumerate() {
        assert_eq!(data.len(), len, "chunk {i} length");
        assert_eq!(sha256_hex(data), sha, "chunk {i} bytes");
        // init = seq 1 as one chunk; fragments 2, 3, 4 as chunks 1 and 2.
        let seq = if i == 0 { 1 } else { 2 + (i as i64 - 1) / 2 };
        assert_eq!(
            meta.data_sequence_number, seq,
            "chunk {i} dataSequenceNumber"
        );
        let chunk_no = if i == 0 { 1 } else { 1 + (i as i64 - 1) % 2 };
        assert_eq!(meta.data_chunk_sequence_number, chunk_no);
        assert_eq!(meta.is_last_data_chunk, chunk_no == 2 || i == 0);
        assert_eq!(meta.data_total_size_bytes.is_some(), chunk_no == 1);
        let expect_eos = match (meta.is_last_data_chunk, i == chunks.len() - 1) {
            (false, _) => None,
            (true, last) => Some(last),
        };
        assert_eq!(meta.end_of_stream, expect_eos, "chunk {i} endOfStream");
    }

    let mut assembled = Vec::new();
    let mut seqs = Vec::new();
    for e in &events {
        if let ControllerEvent::Segment {
            data,
            data_sequence_number,
            end_of_stream,
            ..
        } = e
        {
            assembled.extend_from_slice(data);
            seqs.push((*data_sequence_number, *end_of_stream));
        }
    }
    assert_eq!(seqs, vec![(1, false), (2, false), (3, false), (4, true)]);
    assert_eq!(assembled.len(), 1_250_076);
    assert_eq!(sha256_hex(&assembled), FULLY_ASSEMBLED_SHA256);
    for (seg, got) in recording()
        .iter()
        .zip(events.iter().filter_map(|e| match e {
            ControllerEvent::Segment { data, .. } => Some(data),
            _ => None,
        }))
    {
        assert_eq!(seg, got);
    }
}

#[test]
fn chunks_are_zero_copy_slices_of_the_segment() {
    // The queued chunk must reference the caller's segment memory, not a copy: observable as
    // the segment's Bytes being shared (the accessory holds slices until poll_transmit).
    let mut pair = Pair::new();
    pair.hello_and_open(7);
    let init = recording().remove(0);
    let frag = recording().remove(1);
    pair.accessory
        .send_segment(pair.now, 7, SegmentKind::MediaInitialization, init, false)
        .unwrap();
    let frag_ptr = frag.as_ptr();
    let probe = frag.clone();
    pair.accessory
        .send_segment(pair.now, 7, SegmentKind::MediaFragment, frag, false)
        .unwrap();
    assert_eq!(pair.accessory.queued_frames(), 3);
    // `probe` shares the allocation with the queued chunks: dropping ours leaves it alive and
    // unchanged, and no copy was needed to build the queue.
    assert_eq!(probe.as_ptr(), frag_ptr);
    assert!(
        !probe.is_unique(),
        "queued chunks must share the segment's allocation"
    );
}
