//! Byte-ingest throughput on the bundled real camera clip: as fMP4 (the recorder's own
//! fragments) and as Annex B (its samples with start codes), pushed in 64 KiB reads.
#![allow(missing_docs, clippy::unwrap_used, clippy::indexing_slicing)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use recorder::MediaUnit;
use recorder::h264;
use recorder::{DemoSource, Fragmenter, FragmenterConfig, FragmenterEvent};
use source::ingest::ByteIngest;

/// (fMP4 stream, Annex B stream) of about 12 s of the demo clip.
fn inputs() -> (Vec<u8>, Vec<u8>) {
    let mut demo = DemoSource::bundled().unwrap();
    let mut f = Fragmenter::new(FragmenterConfig {
        audio_config: demo.audio_config().cloned(),
        ..Default::default()
    })
    .unwrap();
    let (mut fmp4, mut annexb) = (Vec::new(), Vec::new());
    let mut seq = 0;
    while seq < 3 {
        let (_, u) = demo.next_unit();
        match &u {
            MediaUnit::ParameterSets(ps) => {
                for nal in [&ps.sps, &ps.pps] {
                    annexb.extend_from_slice(&[0, 0, 0, 1]);
                    annexb.extend_from_slice(nal);
                }
            }
            MediaUnit::Video(v) => {
                annexb.extend_from_slice(&h264::to_annex_b(&v.data, v.framing, None).unwrap());
            }
            MediaUnit::Audio(_) => {}
        }
        let _ = f.push(u);
        while let Some(ev) = f.poll_event() {
            match ev {
                FragmenterEvent::Init(i) => fmp4.extend_from_slice(&i.bytes),
                FragmenterEvent::Fragment(fr) => {
                    seq += 1;
                    let t = recorder::fmp4::FragmentTiming {
                        sequence_number: seq,
                        video_decode_time: fr.video.base_decode_time,
                        audio_decode_time: 0,
                    };
                    fmp4.extend_from_slice(&fr.to_bytes(&t));
                }
            }
        }
    }
    (fmp4, annexb)
}

fn run(data: &[u8]) -> usize {
    let mut ing = ByteIngest::new("bench", None);
    let mut n = 0;
    for c in data.chunks(64 * 1024) {
        ing.push(c).unwrap();
        n += std::iter::from_fn(|| ing.pull()).count();
    }
    ing.finish();
    n + std::iter::from_fn(|| ing.pull()).count()
}

fn bench(c: &mut Criterion) {
    let (fmp4, annexb) = inputs();
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Bytes(fmp4.len() as u64));
    g.bench_function("fmp4_12s_demo", |b| b.iter(|| run(&fmp4)));
    g.throughput(Throughput::Bytes(annexb.len() as u64));
    g.bench_function("annexb_12s_demo", |b| b.iter(|| run(&annexb)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
