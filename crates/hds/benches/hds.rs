//! Throughput of the hot path: sealing 262144-byte data chunks, and encoding one data event's
//! header and metadata. Run: `cargo bench -p hds --bench hds`.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hds::message::{ChunkMeta, encode_data_event};
use hds::{SegmentKind, SessionKeys};

const CHUNK_BYTES: usize = 262_144;

fn meta() -> ChunkMeta {
    ChunkMeta {
        stream_id: 1,
        kind: SegmentKind::MediaFragment,
        data_sequence_number: 2,
        data_chunk_sequence_number: 1,
        is_last_data_chunk: false,
        data_total_size_bytes: Some(371_381),
        end_of_stream: None,
    }
}

fn seal_chunk(c: &mut Criterion) {
    let keys = SessionKeys::from_raw([1; 32], [2; 32]);
    let mut sealer = keys.sealer(hds::Role::Accessory);
    let chunk = vec![0xa5u8; CHUNK_BYTES];
    let mut before = Vec::new();
    let mut after = Vec::new();
    encode_data_event(&meta(), CHUNK_BYTES, &mut before, &mut after).unwrap();
    let mut out = Vec::with_capacity(CHUNK_BYTES + 512);
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Bytes(CHUNK_BYTES as u64));
    g.bench_function("seal_262144_byte_chunk_event", |b| {
        b.iter(|| {
            out.clear();
            sealer
                .seal_parts(&[&before, black_box(&chunk), &after], &mut out)
                .unwrap();
            black_box(&out);
        })
    });
    g.finish();
}

fn connection_segment(c: &mut Criterion) {
    // Whole accessory path: queue a 371381-byte fragment, drain its two frames.
    let keys = SessionKeys::from_raw([1; 32], [2; 32]);
    let frag = Bytes::from(vec![0x5au8; 371_381]);
    let mut g = c.benchmark_group("connection");
    g.throughput(Throughput::Bytes(frag.len() as u64));
    g.bench_function("send_segment_and_poll_transmit_371381_bytes", |b| {
        b.iter_batched(
            || common::ready_connection(&keys),
            |mut conn| {
                let now = Instant::now();
                conn.send_segment(
                    now,
                    1,
                    SegmentKind::MediaInitialization,
                    Bytes::from_static(b"init"),
                    false,
                )
                .unwrap();
                conn.send_segment(now, 1, SegmentKind::MediaFragment, frag.clone(), false)
                    .unwrap();
                let mut out = Vec::with_capacity(400_000);
                while conn.poll_transmit(&mut out) {}
                black_box(out.len())
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn encode_metadata(c: &mut Criterion) {
    let mut before = Vec::with_capacity(128);
    let mut after = Vec::with_capacity(128);
    c.bench_function("message/encode_data_event_header_and_metadata", |b| {
        b.iter(|| {
            before.clear();
            after.clear();
            encode_data_event(black_box(&meta()), CHUNK_BYTES, &mut before, &mut after).unwrap();
            black_box((before.len(), after.len()))
        })
    });
}

criterion_group!(benches, seal_chunk, encode_metadata, connection_segment);
criterion_main!(benches);
