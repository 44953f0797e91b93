//! Multi-part segments on the wire: a segment given as parts (a ring fragment's `moof` header
//! and payload, or any split) goes out as exactly the frames of the same bytes given as one
//! `Bytes`, and the controller decodes the same chunks and metadata.
#![allow(clippy::indexing_slicing, missing_docs)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Pair, recording};
use hds::controller::ControllerEvent;
use hds::message::ChunkMeta;
use hds::{Segment, SegmentKind};

const MAX: usize = 262_144;

/// Send `segments` (the last with end of stream) on a fresh pair; the accessory's wire bytes
/// for them and the controller's events.
fn send(segments: Vec<(SegmentKind, Segment)>) -> (Vec<u8>, Vec<ControllerEvent>) {
    let mut pair = Pair::new();
    pair.hello_and_open(1);
    pair.take_controller_events();
    let n = segments.len();
    for (i, (kind, seg)) in segments.into_iter().enumerate() {
        pair.accessory
            .send_segment(pair.now, 1, kind, seg, i + 1 == n)
            .unwrap();
    }
    let mut wire = Vec::new();
    while pair.accessory.poll_transmit(&mut wire) {}
    pair.to_controller.extend_from_slice(&wire);
    pair.drive();
    assert!(
        pair.controller_error.is_none(),
        "{:?}",
        pair.controller_error
    );
    (wire, pair.take_controller_events())
}

fn chunks(events: &[ControllerEvent]) -> Vec<(ChunkMeta, Bytes)> {
    events
        .iter()
        .filter_map(|e| match e {
            ControllerEvent::Chunk { meta, data } => Some((*meta, data.clone())),
            _ => None,
        })
        .collect()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7 + i / 251) as u8).wrapping_add(seed))
        .collect()
}

/// Each piece in its own allocation, as the ring's header and payload are.
fn parts(pieces: &[&[u8]]) -> Segment {
    Segment::from_parts(pieces.iter().map(|p| Bytes::copy_from_slice(p)))
}

#[test]
fn parts_split_around_chunk_boundaries_go_out_like_one_bytes() {
    let init = recording().remove(0);
    let header = pattern(1024, 1);
    let payload = pattern(600 * 1024, 2);
    let joined: Vec<u8> = [&header[..], &payload[..]].concat();
    let (one_wire, one_events) = send(vec![
        (SegmentKind::MediaInitialization, init.clone().into()),
        (
            SegmentKind::MediaFragment,
            Bytes::from(joined.clone()).into(),
        ),
    ]);
    let one_chunks = chunks(&one_events);
    // The reference: init in one chunk, the fragment in 262144 + 262144 + rest.
    let sizes: Vec<_> = one_chunks.iter().map(|(_, d)| d.len()).collect();
    assert_eq!(sizes, vec![init.len(), MAX, MAX, joined.len() - 2 * MAX]);

    // Header | payload with the payload cut exactly at, just before and just after the first
    // and second chunk boundaries, an empty part in the middle, and the init in two parts.
    for seam in [MAX - 1, MAX, MAX + 1, 2 * MAX - 1, 2 * MAX, 2 * MAX + 1] {
        let cut = seam - header.len();
        let (wire, events) = send(vec![
            (
                SegmentKind::MediaInitialization,
                parts(&[&init[..40], &init[40..]]),
            ),
            (
                SegmentKind::MediaFragment,
                parts(&[&header, &payload[..cut], &[], &payload[cut..]]),
            ),
        ]);
        assert_eq!(chunks(&events), one_chunks, "seam {seam}: chunks");
        assert_eq!(events, one_events, "seam {seam}: events");
        assert!(wire == one_wire, "seam {seam}: wire bytes differ");
    }

    // Metadata of the fragment's chunks, spelled out.
    let metas: Vec<_> = one_chunks[1..].iter().map(|(m, _)| *m).collect();
    for (i, m) in metas.iter().enumerate() {
        assert_eq!(m.data_sequence_number, 2);
        assert_eq!(m.data_chunk_sequence_number, i as i64 + 1);
        assert_eq!(m.is_last_data_chunk, i == 2);
        assert_eq!(
            m.data_total_size_bytes,
            (i == 0).then_some(joined.len() as u64)
        );
        assert_eq!(m.end_of_stream, (i == 2).then_some(true));
    }
    assert!(one_events.iter().any(|e| matches!(
        e,
        ControllerEvent::Segment { data, end_of_stream: true, .. } if data[..] == joined[..]
    )));
}

#[test]
fn empty_parts_only_is_an_empty_segment_and_refused() {
    let mut pair = Pair::new();
    pair.hello_and_open(1);
    let seg = Segment::from_parts([Bytes::new(), Bytes::new()]);
    assert!(seg.is_empty());
    assert!(matches!(
        pair.accessory
            .send_segment(pair.now, 1, SegmentKind::MediaInitialization, seg, false),
        Err(hds::Error::StreamMisuse { .. })
    ));
}

#[test]
fn ring_fragment_parts_go_out_like_to_bytes() {
    let ring = recorder::DemoSource::bundled_ring(recorder::PrebufferConfig::default()).unwrap();
    let mut reader = ring.reader(Duration::from_secs(8)).unwrap();
    let init = reader.init_segment();
    let frags: Vec<_> = std::iter::from_fn(|| reader.try_next().unwrap()).collect();
    assert!(frags.len() >= 2);

    let with = |segment: fn(&recorder::ClipFragment) -> Segment| {
        let mut segs = vec![(SegmentKind::MediaInitialization, init.clone().into())];
        segs.extend(
            frags
                .iter()
                .map(|f| (SegmentKind::MediaFragment, segment(f))),
        );
        send(segs)
    };
    let (joined_wire, joined_events) = with(|f| f.to_bytes().into());
    let (parts_wire, parts_events) = with(|f| Segment::from_parts(f.parts()));
    assert_eq!(parts_events, joined_events);
    assert!(parts_wire == joined_wire, "wire bytes differ");
    let received: Vec<_> = parts_events
        .iter()
        .filter_map(|e| match e {
            ControllerEvent::Segment {
                kind: SegmentKind::MediaFragment,
                data,
                ..
            } => Some(data.clone()),
            _ => None,
        })
        .collect();
    let sent: Vec<_> = frags.iter().map(recorder::ClipFragment::to_bytes).collect();
    assert_eq!(received, sent);
}
