//! Round trip: fuzzed access units go through the fragmenter; whatever init segment and
//! fragments come out must demux again with our own reader, giving back exactly the samples
//! we wrote (count, sizes, durations, sync flags).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use recorder::fmp4::FragmentTiming;
use recorder::{
    AudioFrame, Fragmenter, FragmenterConfig, FragmenterEvent, H264Framing, VideoAccessUnit,
};

/// Fixture SPS (fixture-analysis §3) and PPS.
const SPS: &[u8] = &[
    0x67, 0x4d, 0x00, 0x29, 0x9a, 0x64, 0x03, 0xc0, 0x11, 0x3f, 0x2e, 0x02, 0xdc, 0x04, 0x04, 0x05,
    0x00, 0x00, 0x03, 0x03, 0xe8, 0x00, 0x00, 0xbb, 0x80, 0xe8, 0x60, 0x03, 0x0b, 0x00, 0x00, 0xc2,
    0xb4, 0xbb, 0xcb, 0x8d, 0x0c, 0x00, 0x61, 0x60, 0x00, 0x18, 0x56, 0x97, 0x79, 0x70, 0xa0,
];
const PPS: &[u8] = &[0x68, 0xee, 0x3c, 0x80];

fuzz_target!(|data: &[u8]| {
    let asc = recorder::aac::AudioSpecificConfig::parse(&[0x12, 0x88]).ok();
    let config = FragmenterConfig {
        audio_config: asc,
        ..Default::default()
    };
    let mut f = Fragmenter::new(config).unwrap();
    f.set_parameter_sets(recorder::ParameterSets {
        sps: Bytes::from_static(SPS),
        pps: Bytes::from_static(PPS),
    });
    let (mut tv, mut ta) = (0i64, 0i64);
    let mut events = Vec::new();
    for op in data.chunks(3) {
        let &[kind, a, b] = op else { break };
        if kind & 1 == 0 {
            tv += i64::from(a) * 400;
            let idr = kind & 0x0e == 0;
            let mut au = vec![0, 0, 0, 0, if idr { 0x65 } else { 0x41 }];
            au.extend(std::iter::repeat_n(b, usize::from(b)));
            let len = (au.len() - 4) as u32;
            au[..4].copy_from_slice(&len.to_be_bytes());
            let _ = f.push_video(VideoAccessUnit {
                pts_90k: tv,
                dts_90k: None,
                data: Bytes::from(au),
                framing: H264Framing::Avcc {
                    length_size_bytes: 4,
                },
            });
        } else {
            ta += i64::from(a) * 16;
            let _ = f.push_audio(AudioFrame {
                pts_samples: ta,
                data: Bytes::from(vec![0x21; usize::from(b) + 1]),
            });
        }
        events.extend(std::iter::from_fn(|| f.poll_event()));
    }
    f.finish();
    events.extend(std::iter::from_fn(|| f.poll_event()));
    let mut file = Vec::new();
    let mut written = Vec::new();
    for e in events {
        match e {
            FragmenterEvent::Init(init) => {
                if !file.is_empty() {
                    break; // check the first recording only
                }
                file.extend_from_slice(&init.bytes);
            }
            FragmenterEvent::Fragment(frag) => {
                let timing = FragmentTiming {
                    sequence_number: written.len() as u32 + 1,
                    video_decode_time: frag.video.base_decode_time,
                    audio_decode_time: frag.audio.as_ref().map_or(0, |a| a.base_decode_time),
                };
                file.extend_from_slice(&frag.to_bytes(&timing));
                written.push(frag);
            }
        }
    }
    if file.is_empty() {
        return;
    }
    let parsed = recorder::demux::demux(Bytes::from(file)).expect("we must read what we write");
    let video: Vec<_> = written
        .iter()
        .flat_map(|f| f.video.samples.iter())
        .collect();
    let got = &parsed.tracks[0].samples;
    assert_eq!(got.len(), video.len());
    for (g, w) in got.iter().zip(video) {
        assert_eq!(
            (g.range.len() as u32, g.duration, g.is_sync),
            (w.size_bytes, w.duration, w.is_sync)
        );
    }
});
