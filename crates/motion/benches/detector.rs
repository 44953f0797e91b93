//! Detector CPU per analysed frame: decode (openh264) + compare, at 640x360 and 1920x1080, on
//! ffmpeg-made noisy video (worst case for the decoder) and on the bundled real camera clip;
//! plus the comparison alone. Throughput is frames per second of one core.
#![allow(missing_docs, clippy::indexing_slicing)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use motion::detector::{AnalyserSettings, MotionAnalyser};
use motion::{AccessUnit, Detector, DetectorConfig, FrameOutcome};

fn every_frame() -> DetectorConfig {
    // Budget above the stream rate: every frame is decoded and compared.
    DetectorConfig {
        max_analysed_fps: 60,
        ..DetectorConfig::default()
    }
}

fn bench_clip(c: &mut Criterion, name: &str, aus: &[(Vec<u8>, bool, i64)]) {
    let mut group = c.benchmark_group("detector");
    group.throughput(Throughput::Elements(aus.len() as u64));
    group.bench_function(name, |b| {
        b.iter_batched(
            || Detector::new(&every_frame()).unwrap(),
            |mut detector| {
                for (data, is_idr, ts) in aus {
                    let outcome = detector.push(AccessUnit {
                        data,
                        is_idr: *is_idr,
                        timestamp_90k: *ts,
                    });
                    assert!(!matches!(outcome, FrameOutcome::Rejected));
                }
                detector
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn detector(c: &mut Criterion) {
    let small = common::access_units(&common::synthetic_clip(640, 360, 10, 2, Some(0), 20), 10);
    bench_clip(c, "decode_and_compare_640x360_noisy", &small);
    let large = common::access_units(&common::synthetic_clip(1920, 1080, 10, 2, Some(0), 20), 10);
    bench_clip(c, "decode_and_compare_1920x1080_noisy", &large);
    let real = common::fixture_access_units();
    bench_clip(c, "decode_and_compare_1920x1080_real_camera", &real);

    let mut group = c.benchmark_group("compare_only");
    group.throughput(Throughput::Elements(1));
    for (w, h) in [(640usize, 360usize), (1920, 1080)] {
        let plane: Vec<u8> = (0..w * h).map(|i| (i * 7 % 251) as u8).collect();
        let mut analyser = MotionAnalyser::new(AnalyserSettings {
            grid_columns: 32,
            sensitivity: 50,
            confirm_frames: 2,
            exclude: Vec::new(),
        });
        group.bench_function(format!("{w}x{h}"), |b| {
            b.iter(|| analyser.analyse(&plane, w, h, w))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = detector
}
criterion_main!(benches);
