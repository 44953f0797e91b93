//! Live audio's AAC-LC → Opus path (`bridge::live::transcode`) on the bundled clip's audio
//! (AAC-LC 32 kHz mono): the whole path per requested target, and its stages. Criterion's
//! time is per second of audio, so 1 ms here is 0.1 % of a core per viewer.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use std::sync::Arc;

use bridge::live::transcode::{AacToOpus, OpusTarget};
use criterion::{Criterion, criterion_group, criterion_main};
use recorder::{DemoSource, LiveAudio, MediaUnit};

/// One second of the clip's audio.
fn one_second() -> Vec<LiveAudio> {
    let mut demo = DemoSource::bundled().unwrap();
    let config = Arc::new(demo.audio_config().unwrap().clone());
    let frames = (config.sample_rate_hz / config.samples_per_frame) as usize + 1;
    let mut out = Vec::new();
    while out.len() < frames {
        if let (_, MediaUnit::Audio(a)) = demo.next_unit() {
            out.push(LiveAudio {
                pts_samples: a.pts_samples,
                data: a.data,
                config: Arc::clone(&config),
            });
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let units = one_second();
    let mut g = c.benchmark_group("aac_to_opus_per_audio_second");
    for (rate, ms) in [(16_000, 20), (24_000, 20), (8_000, 60)] {
        let target = OpusTarget {
            sample_rate_hz: rate,
            packet_time_ms: ms,
            bitrate_bps: 24_000,
        };
        g.bench_function(format!("{rate}Hz_{ms}ms"), |b| {
            let mut t = AacToOpus::new(target).unwrap();
            let mut out = Vec::new();
            let mut shift = 0i64;
            b.iter(|| {
                out.clear();
                // Contiguous time across iterations: no discontinuity resets.
                for u in &units {
                    let u = LiveAudio {
                        pts_samples: u.pts_samples + shift,
                        ..u.clone()
                    };
                    let _ = t.push(&u, &mut out);
                }
                shift += units.len() as i64 * 1024;
                out.len()
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);

fn stages(c: &mut Criterion) {
    use symphonia_core::codecs::audio::well_known::CODEC_ID_AAC;
    use symphonia_core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
    let units = one_second();
    let mut g = c.benchmark_group("stages_per_audio_second");
    let config = units[0].config.clone();
    g.bench_function("aac_decode_32k", |b| {
        let mut params = AudioCodecParameters::new();
        params
            .for_codec(CODEC_ID_AAC)
            .with_sample_rate(config.sample_rate_hz)
            .with_extra_data(config.bytes.to_vec().into_boxed_slice());
        let mut d =
            symphonia_codec_aac::AacDecoder::try_new(&params, &AudioDecoderOptions::default())
                .unwrap();
        let mut pcm: Vec<f32> = Vec::new();
        b.iter(|| {
            for u in &units {
                let p = symphonia_core::packet::PacketRef::new(
                    0,
                    symphonia_core::units::Timestamp::new(u.pts_samples),
                    symphonia_core::units::Duration::new(1024),
                    &u.data,
                );
                d.decode_ref(&p).unwrap().copy_to_vec_interleaved(&mut pcm);
            }
        });
    });
    for chunk in [1024usize, 2048] {
        g.bench_function(format!("rubato_fft_32k_to_16k_chunk{chunk}"), |b| {
            use audioadapter_buffers::direct::SequentialSliceOfVecs;
            use rubato::Resampler as _;
            let mut r = rubato::Fft::<f32>::new(32_000, 16_000, chunk, 1, rubato::FixedSync::Input)
                .unwrap();
            let input = vec![vec![0.1f32; r.input_frames_max()]];
            let mut output = vec![vec![0.0f32; r.output_frames_max()]];
            b.iter(|| {
                for _ in 0..32_000 / chunk {
                    let n = r.input_frames_next();
                    let inp = SequentialSliceOfVecs::new(&input, 1, n).unwrap();
                    let len = output[0].len();
                    let mut outp = SequentialSliceOfVecs::new_mut(&mut output, 1, len).unwrap();
                    r.process_into_buffer(&inp, &mut outp, None).unwrap();
                }
            });
        });
    }
    for complexity in [0, 1, 2, 5, 10] {
        g.bench_function(format!("opus_encode_16k_20ms_c{complexity}"), |b| {
            let mut e = opus_rs::OpusEncoder::new(16_000, 1, opus_rs::Application::Voip).unwrap();
            e.bitrate_bps = 24_000;
            e.complexity = complexity;
            let tone: Vec<f32> = (0..16_000)
                .map(|i| 0.3 * (i as f32 * 440.0 * 2.0 * std::f32::consts::PI / 16_000.0).sin())
                .collect();
            let mut out = vec![0u8; 1500];
            b.iter(|| {
                for f in tone.chunks_exact(320) {
                    e.encode(f, 320, &mut out).unwrap();
                }
            });
        });
    }
    g.finish();
}

criterion_group!(stage_benches, stages);
criterion_main!(benches, stage_benches);
