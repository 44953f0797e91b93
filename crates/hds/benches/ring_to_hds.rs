//! The path a recording fragment takes in production: prebuffer ring reader → `send_segment`
//! → `poll_transmit` into a reused frame buffer, one demo-clip fragment per iteration, two ways:
//! * `to_bytes`: the old hand-off, the fragment joined into one `Bytes` (a copy);
//! * `parts`: `Segment::from_parts(frag.parts())`, nothing copied before the frame write.
//!
//! It also prints the payload bytes each way copies before the frame write, found by comparing
//! the segment's memory with the ring's. No allocator is counted: a `GlobalAlloc` needs
//! `unsafe`, which the workspace forbids in every target. Inside `hds` the chunks are checked
//! to be slices of the parts by the unit test
//! `ring_fragment_parts_reach_the_frame_uncopied_and_to_bytes_copies_all`.
//!
//! Run: `cargo bench -p hds --bench ring_to_hds`.
#![allow(missing_docs, clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::hint::black_box;
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hds::{Connection, Segment, SegmentKind, SessionKeys};
use recorder::{ClipFragment, DemoSource, PrebufferConfig, PrebufferRing, RingReader};

/// A ring holding `secs` of the looped demo clip.
fn ring(secs: u64) -> PrebufferRing {
    DemoSource::bundled_ring(PrebufferConfig {
        keep: Duration::from_secs(secs),
        ..PrebufferConfig::default()
    })
    .unwrap()
}

/// Ring fragments in a loop: a reader from the oldest, a new one when it runs dry.
struct Feed {
    ring: PrebufferRing,
    reader: RingReader,
}

impl Feed {
    fn new(ring: PrebufferRing) -> Self {
        let reader = ring.reader_from(0).unwrap();
        Self { ring, reader }
    }

    fn next(&mut self) -> ClipFragment {
        if let Some(f) = self.reader.try_next().unwrap() {
            return f;
        }
        self.reader = self.ring.reader_from(0).unwrap();
        self.reader.try_next().unwrap().unwrap()
    }
}

/// An accessory connection with stream 1 open and its init segment sent.
fn streaming_connection(init: Bytes) -> Connection {
    let now = Instant::now();
    let mut conn = common::ready_connection(&SessionKeys::from_raw([1; 32], [2; 32]));
    conn.send_segment(now, 1, SegmentKind::MediaInitialization, init, false)
        .unwrap();
    let mut sink = Vec::new();
    while conn.poll_transmit(&mut sink) {}
    conn
}

fn memory(b: &Bytes) -> Range<usize> {
    b.as_ptr() as usize..b.as_ptr() as usize + b.len()
}

/// Bytes of `segment` that do not lie in the ring's memory for `frag`: copied before sending.
fn copied_bytes(frag: &ClipFragment, segment: &Segment) -> usize {
    let ring: Vec<_> = frag.parts().iter().map(memory).collect();
    segment
        .parts()
        .iter()
        .filter(|p| {
            let m = memory(p);
            !ring.iter().any(|r| r.start <= m.start && m.end <= r.end)
        })
        .map(Bytes::len)
        .sum()
}

type Variant = (&'static str, fn(&ClipFragment) -> Segment);

const VARIANTS: [Variant; 2] = [
    ("to_bytes", |f| f.to_bytes().into()),
    ("parts", |f| Segment::from_parts(f.parts())),
];

fn ring_to_hds(c: &mut Criterion) {
    let ring = ring(60);
    let mut reader = ring.reader_from(0).unwrap();
    let init = reader.init_segment();
    let frags: Vec<ClipFragment> = std::iter::from_fn(|| reader.try_next().unwrap()).collect();
    drop(reader);
    let total: usize = frags.iter().map(ClipFragment::len).sum();
    let mean = total / frags.len();
    println!(
        "ring: {} demo fragments, {mean} bytes on average ({} .. {})",
        frags.len(),
        frags.iter().map(ClipFragment::len).min().unwrap(),
        frags.iter().map(ClipFragment::len).max().unwrap(),
    );
    for (name, segment) in VARIANTS {
        let copied: usize = frags.iter().map(|f| copied_bytes(f, &segment(f))).sum();
        println!(
            "{name}: {} payload bytes copied before the frame write per fragment",
            copied / frags.len()
        );
    }

    let mut g = c.benchmark_group("ring_to_hds_one_fragment");
    g.throughput(Throughput::Bytes(mean as u64));
    for (name, segment) in VARIANTS {
        let mut feed = Feed::new(ring.clone());
        let mut conn = streaming_connection(init.clone());
        let mut out = Vec::new();
        let now = Instant::now();
        g.bench_function(name, |b| {
            b.iter(|| {
                let frag = feed.next();
                conn.send_segment(now, 1, SegmentKind::MediaFragment, segment(&frag), false)
                    .unwrap();
                // The driver reuses its buffer the same way between socket writes.
                out.clear();
                while conn.poll_transmit(&mut out) {}
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, ring_to_hds);
criterion_main!(benches);
