//! The per-viewer send path of live view, minus the socket: one loop of the bundled demo clip
//! (1080p H.264) packetized (RFC 6184, 1368-byte RTP packets for a 1378-byte MTU) and SRTP
//! protected, as `LiveSession` does for each access unit. Prints the clip's real-time length
//! so the figure reads as a share of one core per viewer.
//!
//! Run: `cargo bench -p rtp --bench packetize`.
#![allow(missing_docs, clippy::unwrap_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use recorder::{DemoSource, MediaUnit, ParameterSets, VideoAccessUnit};
use rtp::srtp::{Context, MasterKey, Suite};
use rtp::{Packetizer, PacketizerConfig};

fn clip() -> (Vec<VideoAccessUnit>, ParameterSets, Duration) {
    let mut demo = DemoSource::bundled().unwrap();
    let loop_90k = demo.loop_duration_90k();
    let mut ps = None;
    let mut units = Vec::new();
    loop {
        let (due, unit) = demo.next_unit();
        if due.as_micros() as i64 * 9 / 100 >= loop_90k {
            break;
        }
        match unit {
            MediaUnit::ParameterSets(p) => ps = Some(p),
            MediaUnit::Video(v) => units.push(v),
            MediaUnit::Audio(_) => {}
        }
    }
    (
        units,
        ps.unwrap(),
        Duration::from_micros(loop_90k as u64 * 100 / 9),
    )
}

fn send_all(
    units: &[VideoAccessUnit],
    ps: &ParameterSets,
    packetizer: &mut Packetizer,
    srtp: &mut Context,
) -> (u64, u64) {
    let (mut packets, mut bytes) = (0u64, 0u64);
    for u in units {
        packetizer
            .packetize(&u.data, u.framing, Some(ps), u.pts_90k as u32, &mut |p| {
                srtp.protect_rtp(p).unwrap();
                packets += 1;
                bytes += p.len() as u64;
                black_box(&p);
            })
            .unwrap();
    }
    (packets, bytes)
}

fn bench(c: &mut Criterion) {
    let (units, ps, real_time) = clip();
    let au_bytes: usize = units.iter().map(|u| u.data.len()).sum();
    let master = MasterKey::new(&[1; 16], &[2; 14]).unwrap();
    let mut packetizer = Packetizer::new(PacketizerConfig {
        payload_type: 99,
        ssrc: 1,
        max_packet_bytes: 1378 - 10,
        initial_sequence: 0,
    })
    .unwrap();
    let mut srtp = Context::new(Suite::AesCm128HmacSha1_80, &master);

    // One timed pass outside criterion, for the share-of-a-core figure.
    let rounds = 20;
    let t = Instant::now();
    let mut totals = (0, 0);
    for _ in 0..rounds {
        totals = send_all(&units, &ps, &mut packetizer, &mut srtp);
    }
    let per_loop = t.elapsed() / rounds;
    println!(
        "demo clip: {} access units, {au_bytes} B, {:.1} s real time → {} SRTP packets, {} B; \
         packetize+protect {per_loop:?} per loop = {:.3} % of one core per viewer",
        units.len(),
        real_time.as_secs_f64(),
        totals.0,
        totals.1,
        100.0 * per_loop.as_secs_f64() / real_time.as_secs_f64(),
    );

    let mut g = c.benchmark_group("live_send");
    g.throughput(Throughput::Bytes(au_bytes as u64));
    g.bench_function("packetize_only", |b| {
        b.iter(|| {
            for u in &units {
                packetizer
                    .packetize(&u.data, u.framing, Some(&ps), 0, &mut |p| {
                        black_box(p);
                    })
                    .unwrap();
            }
        })
    });
    g.bench_function("packetize_and_protect", |b| {
        b.iter(|| send_all(&units, &ps, &mut packetizer, &mut srtp))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
