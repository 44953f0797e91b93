//! Property: any sequence of access units, audio frames and junk yields either valid HKSV
//! fragments or errors — never a panic, never an invalid fragment.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

mod common;
use common::*;

use bytes::Bytes;
use proptest::prelude::*;
use recorder::{AudioFrame, Fragmenter, FragmenterConfig, VideoAccessUnit};

#[derive(Debug, Clone)]
enum Op {
    Video {
        idr: bool,
        sps: Option<u8>,
        dt_90k: i64,
        len: usize,
    },
    Junk(Vec<u8>),
    AudioAdts {
        dt_samples: i64,
        len: usize,
    },
    AudioRaw {
        dt_samples: i64,
        len: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (prop::bool::weighted(0.1), prop::option::weighted(0.3, 0u8..3), -4000i64..20_000, 1usize..3000)
            .prop_map(|(idr, sps, dt_90k, len)| Op::Video { idr, sps, dt_90k, len }),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Op::Junk),
        2 => (-2000i64..4000, 1usize..400).prop_map(|(dt_samples, len)| Op::AudioAdts { dt_samples, len }),
        1 => (-2000i64..4000, 0usize..400).prop_map(|(dt_samples, len)| Op::AudioRaw { dt_samples, len }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_input_gives_valid_fragments_or_errors(ops in prop::collection::vec(op(), 1..600), record_audio: bool) {
        let config = FragmenterConfig { record_audio, ..Default::default() };
        let mut f = Fragmenter::new(config).unwrap();
        let sps = [make_sps(80, 45), make_sps(120, 68), make_sps(40, 30)];
        let (mut t_video, mut t_audio) = (0i64, 0i64);
        let mut events = Vec::new();
        for op in ops {
            let _ = match op {
                Op::Video { idr, sps: which, dt_90k, len } => {
                    t_video += dt_90k;
                    let ps = which.map(|i| &sps[usize::from(i)][..]);
                    f.push_video(video(t_video, annexb_au(ps, idr, len, 9)))
                }
                Op::Junk(data) => f.push_video(VideoAccessUnit {
                    pts_90k: t_video,
                    dts_90k: None,
                    data: Bytes::from(data),
                    framing: recorder::H264Framing::Avcc { length_size_bytes: 4 },
                }),
                Op::AudioAdts { dt_samples, len } => {
                    t_audio += dt_samples;
                    f.push_audio(AudioFrame { pts_samples: t_audio, data: Bytes::from(adts_frame(len)) })
                }
                Op::AudioRaw { dt_samples, len } => {
                    t_audio += dt_samples;
                    f.push_audio(AudioFrame { pts_samples: t_audio, data: Bytes::from(vec![0x21; len]) })
                }
            };
            events.extend(std::iter::from_fn(|| f.poll_event()));
            // Bounded: never more than the configured fragment bound plus one unit.
            prop_assert!(f.pending_bytes() <= (32 << 20) + 4000);
        }
        f.finish();
        events.extend(std::iter::from_fn(|| f.poll_event()));
        for (init, frags) in recordings(&events) {
            assert_hksv_recording(&init, &frags);
            for (frag, _) in &frags {
                prop_assert!(!frag.video.samples.is_empty());
                let sizes: usize = frag.video.samples.iter().chain(frag.audio.iter().flat_map(|a| a.samples.iter()))
                    .map(|s| s.size_bytes as usize).sum();
                prop_assert_eq!(sizes, frag.payload.len());
            }
        }
    }
}
