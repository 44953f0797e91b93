//! Bad input never panics, never grows memory without bound, and is reported as an error or
//! resynchronised at the next keyframe.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

mod common;
use common::*;

use bytes::Bytes;
use recorder::{
    AudioFrame, Error, Fragmenter, FragmenterConfig, FragmenterEvent, H264Framing, VideoAccessUnit,
};

const FRAME_90K: i64 = 3000; // 30 fps

fn no_audio() -> FragmenterConfig {
    FragmenterConfig {
        record_audio: false,
        ..Default::default()
    }
}

fn drain(f: &mut Fragmenter) -> Vec<FragmenterEvent> {
    std::iter::from_fn(|| f.poll_event()).collect()
}

/// Feeds `seconds` of 30 fps video with an IDR every `gop` frames, starting at frame `from`.
fn feed(f: &mut Fragmenter, sps: &[u8], from: i64, frames: i64, gop: i64) {
    for n in from..from + frames {
        let idr = n % gop == 0;
        f.push_video(video(
            n * FRAME_90K,
            annexb_au(idr.then_some(sps), idr, 500, n as u8),
        ))
        .unwrap();
    }
}

#[test]
fn garbage_bytes_are_rejected_and_the_stream_recovers() {
    let mut f = Fragmenter::new(no_audio()).unwrap();
    for junk in [
        &b"hello world"[..],
        &[0xff; 64],
        &[],
        &[0, 0, 1],
        &[0, 0, 1, 0xe5, 1, 2],
    ] {
        let r = f.push_video(video(0, Bytes::copy_from_slice(junk)));
        assert!(
            matches!(r, Ok(()) | Err(Error::MalformedVideo(_))),
            "{junk:?}: {r:?}"
        );
    }
    assert!(matches!(
        f.push_video(video(0, Bytes::from_static(b"garbage"))),
        Err(Error::MalformedVideo(_))
    ));
    let sps = make_sps(80, 45);
    feed(&mut f, &sps, 1, 300, 30);
    f.finish();
    let recs = recordings(&drain(&mut f));
    assert_eq!(recs.len(), 1);
    assert_hksv_recording(&recs[0].0, &recs[0].1);
    assert_eq!(recs[0].0.config.video.info.width, 1280);
}

#[test]
fn truncated_nal_units_are_errors() {
    let mut f = Fragmenter::new(no_audio()).unwrap();
    let au = |data: &'static [u8]| VideoAccessUnit {
        pts_90k: 0,
        dts_90k: None,
        data: Bytes::from_static(data),
        framing: H264Framing::Avcc {
            length_size_bytes: 4,
        },
    };
    assert!(matches!(
        f.push_video(au(&[0, 0, 0, 9, 0x65, 1, 2])),
        Err(Error::MalformedVideo(_))
    ));
    assert!(matches!(
        f.push_video(au(&[0, 0])),
        Err(Error::MalformedVideo(_))
    ));
    // forbidden_zero_bit
    assert!(matches!(
        f.push_video(au(&[0, 0, 0, 2, 0xe5, 1])),
        Err(Error::MalformedVideo(_))
    ));
    // An IDR with no parameter sets anywhere.
    assert_eq!(
        f.push_video(au(&[0, 0, 0, 2, 0x65, 0x88])),
        Err(Error::MissingParameterSets)
    );
    // A truncated SPS is a parse error, not a panic.
    let mut bad = vec![0, 0, 0, 1];
    bad.extend_from_slice(&make_sps(80, 45)[..4]);
    bad.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65, 0x88]);
    let r = f.push_video(video(3000, Bytes::from(bad)));
    assert!(matches!(r, Err(Error::BadSps(_))), "{r:?}");
    assert_eq!(f.stream_info().dropped_video_units, 5);
}

#[test]
fn no_idr_for_a_long_time_keeps_memory_bounded() {
    let config = FragmenterConfig {
        record_audio: false,
        max_fragment_duration: std::time::Duration::from_secs(10),
        ..Default::default()
    };
    let mut f = Fragmenter::new(config).unwrap();
    // 10 minutes of P-frames before any IDR: all dropped, nothing held.
    for n in 0..18_000 {
        f.push_video(video(n * FRAME_90K, annexb_au(None, false, 1000, 7)))
            .unwrap();
        assert_eq!(f.pending_bytes(), 0);
    }
    // One IDR, then P-frames forever: the pending fragment is dropped at the 10 s bound.
    let sps = make_sps(80, 45);
    let start = 18_000;
    f.push_video(video(
        start * FRAME_90K,
        annexb_au(Some(&sps), true, 1000, 1),
    ))
    .unwrap();
    let mut too_long = 0;
    let mut peak = 0;
    for n in start + 1..start + 3000 {
        match f.push_video(video(n * FRAME_90K, annexb_au(None, false, 1000, 7))) {
            Ok(()) => {}
            Err(Error::FragmentTooLong { duration_ms, .. }) => {
                too_long += 1;
                assert!(
                    duration_ms > 10_000 && duration_ms < 10_100,
                    "{duration_ms}"
                );
            }
            Err(e) => panic!("{e}"),
        }
        peak = peak.max(f.pending_bytes());
    }
    assert_eq!(
        too_long, 1,
        "dropped once, then waits for an IDR without holding frames"
    );
    assert!(
        peak < 301 * 1010,
        "peak {peak} bytes: at most 10 s of frames"
    );
    assert_eq!(f.pending_bytes(), 0);
    // The next IDR resumes recording.
    feed(&mut f, &sps, start + 3000, 300, 30);
    f.finish();
    let recs = recordings(&drain(&mut f));
    assert_eq!(recs.len(), 1);
    assert_hksv_recording(&recs[0].0, &recs[0].1);
}

#[test]
fn sps_resolution_change_starts_a_new_init_segment() {
    let mut f = Fragmenter::new(no_audio()).unwrap();
    let (small, large) = (make_sps(80, 45), make_sps(120, 68));
    feed(&mut f, &small, 0, 250, 30); // 8.3 s at 1280x720
    for n in 250..550 {
        let idr = n % 30 == 0;
        f.push_video(video(
            n * FRAME_90K,
            annexb_au(idr.then_some(&large[..]), idr, 500, 3),
        ))
        .unwrap();
    }
    f.finish();
    let events = drain(&mut f);
    let recs = recordings(&events);
    assert_eq!(recs.len(), 2, "a new init segment after the change");
    assert_eq!(recs[0].0.config.video.info.width, 1280);
    assert_eq!(
        (
            recs[1].0.config.video.info.width,
            recs[1].0.config.video.info.height
        ),
        (1920, 1088)
    );
    for (init, frags) in &recs {
        assert_hksv_recording(init, frags);
        // Each init holds exactly its own SPS.
        assert_eq!(
            find(&init.bytes, "moov/trak/mdia/minf/stbl/stsd/avc1/avcC").unwrap()[16],
            0x67
        );
    }
    // The change came at frame 270 (first IDR with the new SPS): the old recording ends there.
    let old_frames: usize = recs[0].1.iter().map(|(f, _)| f.video.samples.len()).sum();
    assert_eq!(old_frames, 270);
    let new_frames: usize = recs[1].1.iter().map(|(f, _)| f.video.samples.len()).sum();
    assert_eq!(new_frames, 280);
    // No in-band parameter sets in any sample: every sample is one 4-byte-length slice NAL.
    for (_, frags) in &recs {
        for (frag, _) in frags {
            assert_eq!(frag.payload.to_bytes()[4] & 0x1f, 5);
        }
    }
}

#[test]
fn non_monotonic_timestamps_are_rejected_and_jumps_re_anchored() {
    let mut f = Fragmenter::new(no_audio()).unwrap();
    let sps = make_sps(80, 45);
    feed(&mut f, &sps, 0, 100, 30);
    // Repeat and step back a little: rejected.
    let r = f.push_video(video(99 * FRAME_90K, annexb_au(None, false, 100, 1)));
    assert!(
        matches!(r, Err(Error::NonMonotonic { track: "video", .. })),
        "{r:?}"
    );
    let r = f.push_video(video(50 * FRAME_90K, annexb_au(None, false, 100, 1)));
    assert!(matches!(r, Err(Error::NonMonotonic { .. })), "{r:?}");
    // A huge jump (camera clock reset / unhandled wrap): re-anchored, timeline continuous.
    let jump = 1i64 << 33;
    for n in 100..400 {
        let idr = n % 30 == 0;
        f.push_video(video(
            jump + n * FRAME_90K,
            annexb_au(idr.then_some(&sps[..]), idr, 500, 2),
        ))
        .unwrap();
    }
    // A jump backwards to 0: also re-anchored.
    for n in 0..200 {
        let idr = n % 30 == 0;
        f.push_video(video(
            n * FRAME_90K,
            annexb_au(idr.then_some(&sps[..]), idr, 500, 2),
        ))
        .unwrap();
    }
    f.finish();
    let recs = recordings(&drain(&mut f));
    assert_eq!(recs.len(), 1);
    assert_hksv_recording(&recs[0].0, &recs[0].1);
    let total_90k: u64 = recs[0].1.iter().map(|(f, _)| f.duration_90k()).sum();
    assert_eq!(
        total_90k,
        600 * FRAME_90K as u64,
        "every accepted frame lasts one frame time"
    );
}

#[test]
fn aac_without_config_is_an_error_until_adts_provides_one() {
    let mut f = Fragmenter::new(FragmenterConfig::default()).unwrap();
    let raw = AudioFrame {
        pts_samples: 0,
        data: Bytes::from_static(&[0x21, 0x10, 0x05]),
    };
    assert_eq!(f.push_audio(raw.clone()), Err(Error::AudioWithoutConfig));
    // Malformed ADTS (length past the end).
    let mut bad = adts_frame(10);
    bad.truncate(12);
    assert!(matches!(
        f.push_audio(AudioFrame {
            pts_samples: 0,
            data: Bytes::from(bad)
        }),
        Err(Error::MalformedAudio(_))
    ));
    // A real ADTS frame configures 48 kHz mono AAC-LC; raw frames are then accepted.
    let sps = make_sps(80, 45);
    let mut t_audio = 0i64;
    for n in 0..300i64 {
        let idr = n % 30 == 0;
        f.push_video(video(
            n * FRAME_90K,
            annexb_au(idr.then_some(&sps[..]), idr, 300, 5),
        ))
        .unwrap();
        while t_audio * 90_000 / 48_000 <= n * FRAME_90K {
            let data = if t_audio == 0 {
                Bytes::from(adts_frame(50))
            } else {
                Bytes::from_static(&[0x21, 0x10, 0x05])
            };
            f.push_audio(AudioFrame {
                pts_samples: t_audio,
                data,
            })
            .unwrap();
            t_audio += 1024;
        }
    }
    f.finish();
    let recs = recordings(&drain(&mut f));
    let (init, frags) = &recs[0];
    let audio = init
        .config
        .audio
        .as_ref()
        .expect("audio track from the ADTS header");
    assert_eq!((audio.asc.sample_rate_hz, audio.asc.channels), (48_000, 1));
    assert_hksv_recording(init, frags);
    let a_samples: usize = frags
        .iter()
        .map(|(f, _)| f.audio.as_ref().unwrap().samples.len())
        .sum();
    assert_eq!(a_samples as i64, t_audio / 1024);
    // Audio cut within one AAC frame of the video cut.
    for (frag, _) in frags {
        let v_end = (frag.video.base_decode_time + frag.video.duration()) as f64 / 90_000.0;
        let a = frag.audio.as_ref().unwrap();
        let a_end = (a.base_decode_time + a.duration()) as f64 / 48_000.0;
        assert!(
            (v_end - a_end).abs() <= 1024.0 / 48_000.0,
            "video ends {v_end}, audio {a_end}"
        );
    }
}
