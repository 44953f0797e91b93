//! Per-clip cost of the ring reader with audio on and off: open a reader on a ring holding the
//! bundled recording (H.264 + AAC), take every fragment and split it into 262144-byte HDS
//! chunks. Audio off writes a smaller `moof` over a slice of the same payload, so it should
//! cost no more than audio on.
//!
//! Run: `cargo bench -p recorder --bench reader`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use recorder::demux;
use recorder::{
    Fragmenter, FragmenterConfig, PrebufferConfig, PrebufferRing, ReaderOptions, RingReader,
};

/// The demo clip fragmented into a ring that keeps all of it.
fn ring() -> PrebufferRing {
    let file = demux::demux(Bytes::from_static(recorder::demo::DEMO_CLIP_MP4)).unwrap();
    let mut f = Fragmenter::new(FragmenterConfig {
        audio_config: file.audio_config(),
        ..Default::default()
    })
    .unwrap();
    let ring = PrebufferRing::new(PrebufferConfig {
        keep: std::time::Duration::from_secs(3600),
        ..Default::default()
    })
    .unwrap();
    for u in file.media_units() {
        f.push(u).unwrap();
        std::iter::from_fn(|| f.poll_event()).for_each(|e| ring.push_event(e));
    }
    f.finish();
    std::iter::from_fn(|| f.poll_event()).for_each(|e| ring.push_event(e));
    ring
}

fn drain(mut r: RingReader) -> usize {
    let mut chunks = black_box(r.init_segment()).len();
    while let Some(frag) = r.try_next().unwrap() {
        chunks += frag.chunks(262_144).len();
    }
    chunks
}

fn bench(c: &mut Criterion) {
    let ring = ring();
    let mut g = c.benchmark_group("ring_reader_whole_demo_clip");
    for audio in [true, false] {
        let name = if audio { "audio_on" } else { "audio_off" };
        g.bench_function(name, |b| {
            b.iter(|| drain(ring.reader_from_with(0, ReaderOptions { audio }).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
