//! The built-in detector on video made by ffmpeg (a real encoder we did not write) and on the
//! bundled real-camera recording.
#![allow(missing_docs, clippy::indexing_slicing)]

mod common;

use motion::{AccessUnit, DecodeMode, Detector, DetectorConfig, FrameOutcome, SkipReason};

/// Runs the detector over a clip; returns the timestamps (90 kHz) of frames with motion.
fn run(detector: &mut Detector, aus: &[(Vec<u8>, bool, i64)]) -> Vec<i64> {
    let mut motion = Vec::new();
    for (data, is_idr, ts) in aus {
        if let FrameOutcome::Analysed {
            timestamp_90k,
            score,
        } = detector.push(AccessUnit {
            data,
            is_idr: *is_idr,
            timestamp_90k: *ts,
        }) && score.motion
        {
            motion.push(timestamp_90k);
        }
    }
    motion
}

#[test]
fn static_noisy_scene_for_60_s_reports_no_motion() {
    let aus = common::access_units(&common::synthetic_clip(640, 360, 10, 60, None, 20), 10);
    assert_eq!(aus.len(), 600, "60 s at 10 fps");
    let mut detector = Detector::new(&DetectorConfig::default()).unwrap();
    let motion = run(&mut detector, &aus);
    let stats = detector.stats();
    println!("static scene: {stats:?}");
    assert!(
        motion.is_empty(),
        "false motion at {:?} s",
        motion
            .iter()
            .map(|t| *t as f64 / 90_000.0)
            .collect::<Vec<_>>()
    );
    assert_eq!(stats.rejected, 0);
    // Budget 5 fps over 60 s of a 10 fps stream: every 2nd frame.
    assert!(
        (295..=305).contains(&stats.analysed),
        "analysed {}",
        stats.analysed
    );
}

#[test]
fn moving_box_is_reported_within_one_second_of_entering() {
    let entry_s = 5;
    let aus = common::access_units(
        &common::synthetic_clip(640, 360, 10, 12, Some(entry_s), 20),
        10,
    );
    for sensitivity in [20, 50, 90] {
        let config = DetectorConfig {
            sensitivity,
            ..DetectorConfig::default()
        };
        let mut detector = Detector::new(&config).unwrap();
        let motion = run(&mut detector, &aus);
        let first = *motion
            .first()
            .unwrap_or_else(|| panic!("sensitivity {sensitivity}: no motion at all"));
        let entry_90k = i64::from(entry_s) * 90_000;
        println!(
            "sensitivity {sensitivity}: first motion at {:.2} s, {} motion frames",
            first as f64 / 90_000.0,
            motion.len()
        );
        assert!(
            first >= entry_90k,
            "sensitivity {sensitivity}: motion before the box entered: {first}"
        );
        assert!(
            first < entry_90k + 90_000,
            "sensitivity {sensitivity}: first motion {first} is > 1 s after entry"
        );
        // The box keeps moving until the end: motion is reported on most analysed frames after entry.
        assert!(
            motion.len() >= 25,
            "sensitivity {sensitivity}: only {} motion frames",
            motion.len()
        );
    }
}

#[test]
fn exclusion_zone_over_the_box_path_suppresses_motion() {
    let aus = common::access_units(&common::synthetic_clip(640, 360, 10, 10, Some(3), 20), 10);
    // The box runs along y = 120..184 of 360 (1/3 of the height) from x = 40 rightwards.
    let zone = motion::ExclusionZone {
        x: 0.0,
        y: 0.25,
        width: 1.0,
        height: 0.3,
    };
    let config = DetectorConfig {
        exclude: vec![zone],
        ..DetectorConfig::default()
    };
    let mut detector = Detector::new(&config).unwrap();
    assert_eq!(run(&mut detector, &aus), Vec::<i64>::new());
    assert!(detector.stats().analysed > 40);
}

#[test]
fn keyframes_only_mode_skips_p_frames_and_still_sees_the_box() {
    // The box enters at 8 s, after the 5 keyframes the detector learns the scene from.
    let aus = common::access_units(&common::synthetic_clip(640, 360, 10, 12, Some(8), 10), 10);
    let config = DetectorConfig {
        decode: DecodeMode::KeyframesOnly,
        confirm_frames: 1,
        ..DetectorConfig::default()
    };
    let mut detector = Detector::new(&config).unwrap();
    let motion = run(&mut detector, &aus);
    let stats = detector.stats();
    println!("keyframes only: {stats:?}, motion at {motion:?}");
    assert_eq!(stats.analysed, 12, "one IDR per second");
    assert_eq!(stats.skipped, 108);
    let first = *motion.first().expect("motion seen on a keyframe");
    assert_eq!(first, 8 * 90_000, "the first keyframe with the box");
}

#[test]
fn frames_the_decoder_rejects_are_skipped_and_counted() {
    let aus = common::access_units(&common::synthetic_clip(320, 180, 10, 4, None, 10), 10);
    let mut detector = Detector::new(&DetectorConfig::default()).unwrap();
    // Before any IDR: skipped, not decoded.
    assert_eq!(
        detector.push(AccessUnit {
            data: &aus[3].0,
            is_idr: false,
            timestamp_90k: 0
        }),
        FrameOutcome::Skipped(SkipReason::AwaitingIdr)
    );
    // Garbage claiming to be an IDR, an empty unit, and a truncated real IDR.
    let garbage: Vec<u8> = (0..4000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut fake_idr = vec![0, 0, 0, 1, 0x65];
    fake_idr.extend_from_slice(&garbage);
    let truncated = &aus[0].0[..aus[0].0.len() / 3];
    let mut outcomes = Vec::new();
    for data in [&fake_idr[..], &[], &[0, 0, 1], truncated, &garbage] {
        outcomes.push(detector.push(AccessUnit {
            data,
            is_idr: true,
            timestamp_90k: 0,
        }));
    }
    println!("bad input outcomes: {outcomes:?}, {:?}", detector.stats());
    assert!(
        detector.stats().rejected >= 1,
        "garbage must be rejected: {outcomes:?}"
    );
    assert!(
        !outcomes
            .iter()
            .any(|o| matches!(o, FrameOutcome::Analysed { .. })),
        "{outcomes:?}"
    );

    // The real stream with a corrupted P-frame in the middle: counted, then resync at an IDR.
    let mut detector = Detector::new(&DetectorConfig::default()).unwrap();
    let mut rejected_at = None;
    for (i, (data, is_idr, ts)) in aus.iter().enumerate() {
        let mut data = data.clone();
        if i == 15 {
            // Keep the NAL header, scramble the slice.
            for b in data.iter_mut().skip(6) {
                *b = b.wrapping_mul(31).wrapping_add(7);
            }
        }
        if detector.push(AccessUnit {
            data: &data,
            is_idr: *is_idr,
            timestamp_90k: *ts,
        }) == FrameOutcome::Rejected
        {
            rejected_at.get_or_insert(i);
        }
    }
    let stats = detector.stats();
    println!("corrupted P-frame: rejected first at {rejected_at:?}, {stats:?}");
    if stats.rejected > 0 {
        // After a rejection the frames up to the next IDR (frame 20) wait for it.
        assert!(stats.skipped >= 1, "{stats:?}");
    }
    // Analysis went on after the corruption (frames 20..40 at 5 fps).
    assert!(stats.analysed >= 15, "{stats:?}");
}

#[test]
fn bundled_real_camera_clip() {
    // A real HKSV recording (1080p Main, CABAC, variable frame rate): a nearly static indoor
    // scene (ffmpeg's scene score stays below 0.04). We report what the detector finds.
    let aus = common::fixture_access_units();
    let idrs = aus.iter().filter(|a| a.1).count();
    assert!(idrs >= 1);
    for sensitivity in [50, 100] {
        let mut detector = Detector::new(&DetectorConfig {
            sensitivity,
            ..DetectorConfig::default()
        })
        .unwrap();
        let motion = run(&mut detector, &aus);
        let stats = detector.stats();
        println!(
            "fixture, sensitivity {sensitivity}: {} access units ({idrs} IDR), {stats:?}; motion at {:?} s; {:.1} ms per analysed frame (debug build)",
            aus.len(),
            motion
                .iter()
                .map(|t| format!("{:.2}", *t as f64 / 90_000.0))
                .collect::<Vec<_>>(),
            stats.busy_us as f64 / 1000.0 / stats.analysed.max(1) as f64,
        );
        assert_eq!(stats.rejected, 0, "a real camera stream decodes cleanly");
        // About 12 s at (up to) 5 analysed frames per second.
        assert!((40..=61).contains(&stats.analysed), "{stats:?}");
    }
}

#[test]
fn a_gap_in_the_input_waits_for_the_next_idr() {
    let aus = common::access_units(&common::synthetic_clip(320, 180, 10, 3, None, 10), 10);
    let mut detector = Detector::new(&DetectorConfig::default()).unwrap();
    for (data, is_idr, ts) in &aus[..5] {
        detector.push(AccessUnit {
            data,
            is_idr: *is_idr,
            timestamp_90k: *ts,
        });
    }
    detector.note_gap();
    let outcomes: Vec<FrameOutcome> = aus[5..]
        .iter()
        .map(|(data, is_idr, ts)| {
            detector.push(AccessUnit {
                data,
                is_idr: *is_idr,
                timestamp_90k: *ts,
            })
        })
        .collect();
    // Frames 5..9 wait; frame 10 is the next IDR and decodes.
    assert!(
        outcomes[..5]
            .iter()
            .all(|o| *o == FrameOutcome::Skipped(SkipReason::AwaitingIdr)),
        "{outcomes:?}"
    );
    assert!(aus[10].1);
    assert!(
        !matches!(
            outcomes[5],
            FrameOutcome::Skipped(_) | FrameOutcome::Rejected
        ),
        "{:?}",
        outcomes[5]
    );
    assert_eq!(detector.stats().gaps, 1);
    assert_eq!(detector.stats().rejected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detector_thread_triggers_the_hub() {
    use motion::{DebounceConfig, MotionHub, MotionSource, OwnedAccessUnit};
    use std::time::Duration;

    let hub = MotionHub::new([(
        "cam",
        DebounceConfig {
            min_on_ms: 1000,
            hold_ms: 500,
            level_max_ms: 10_000,
        },
    )])
    .unwrap();
    assert!(matches!(
        motion::spawn_detector(hub.clone(), "nope", &DetectorConfig::default()),
        Err(motion::MotionError::UnknownCamera { .. })
    ));
    let handle = motion::spawn_detector(hub.clone(), "cam", &DetectorConfig::default()).unwrap();
    let mut rx = hub.subscribe("cam").unwrap();
    let aus = common::access_units(&common::synthetic_clip(640, 360, 10, 8, Some(5), 20), 10);

    // Push one unit at a time and wait until the thread took it (no drops, deterministic).
    let mut pushed = 0u64;
    for (i, (data, is_idr, ts)) in aus.into_iter().enumerate() {
        if i == 50 {
            assert!(
                !rx.borrow().detected,
                "no motion before the box enters at 5 s"
            );
        }
        assert!(handle.push(OwnedAccessUnit {
            data: data.into(),
            is_idr,
            timestamp_90k: ts
        }));
        pushed += 1;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while handle.stats().access_units < pushed {
            assert!(
                std::time::Instant::now() < deadline,
                "detector thread stalled"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // It may already have turned off again on a slow machine; the source is kept.
    let status = *rx.borrow_and_update();
    assert!(status.changes >= 1, "{status:?}, {:?}", handle.stats());
    assert_eq!(status.source, Some(MotionSource::Detector));
    assert!(handle.stats().motion_frames >= 5);
    assert_eq!(handle.stats().queue_drops, 0, "one at a time drops nothing");

    // All at once: the queue (64) overflows, every refused unit is counted as a drop.
    let aus = common::access_units(&common::synthetic_clip(640, 360, 10, 8, Some(5), 20), 10);
    let refused = aus
        .into_iter()
        .map(|(data, is_idr, ts)| {
            handle.push(OwnedAccessUnit {
                data: data.into(),
                is_idr,
                timestamp_90k: ts,
            })
        })
        .filter(|queued| !queued)
        .count() as u64;
    assert!(refused > 0, "80 units at once fit a queue of 64");
    assert_eq!(handle.stats().queue_drops, refused);
}

#[test]
fn corrupted_stream_never_panics_and_every_unit_is_accounted_for() {
    let aus = common::access_units(&common::synthetic_clip(320, 180, 10, 6, Some(2), 10), 10);
    let mut detector = Detector::new(&DetectorConfig {
        max_analysed_fps: 30,
        ..DetectorConfig::default()
    })
    .unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (i, (data, is_idr, ts)) in aus.iter().enumerate() {
        let mut data = data.clone();
        // Every 3rd unit: flip a few bits past the first NAL header, or cut it short.
        if i % 3 == 1 {
            if next() % 4 == 0 {
                data.truncate(data.len() / 2);
            } else {
                for _ in 0..4 {
                    let at = 6 + (next() as usize) % data.len().saturating_sub(6).max(1);
                    if let Some(b) = data.get_mut(at) {
                        *b ^= 1 << (next() % 8);
                    }
                }
            }
        }
        detector.push(AccessUnit {
            data: &data,
            is_idr: *is_idr,
            timestamp_90k: *ts,
        });
    }
    let s = detector.stats();
    println!("corrupted stream: {s:?}");
    assert_eq!(s.access_units, aus.len() as u64);
    assert_eq!(s.decoded + s.rejected + s.skipped, s.access_units, "{s:?}");
    assert!(s.analysed > 0, "{s:?}");
}

#[test]
fn mp4_style_samples_with_out_of_band_parameter_sets_decode_like_annex_b() {
    use bytes::Bytes;
    use recorder::h264::{self, NalType};
    use recorder::{H264Framing, ParameterSets};
    let aus = common::access_units(&common::synthetic_clip(320, 180, 10, 8, Some(4), 20), 10);
    // Take SPS/PPS out of band and length-prefix the rest, as an MP4 muxer does.
    let (mut sps, mut pps) = (Vec::new(), Vec::new());
    let samples: Vec<(Vec<u8>, bool, i64)> = aus
        .iter()
        .map(|(au, idr, ts)| {
            let mut sample = Vec::new();
            for nal in h264::nal_units(au, H264Framing::AnnexB) {
                let nal = nal.unwrap();
                match h264::nal_type(nal) {
                    Some(NalType::SPS) => sps = nal.to_vec(),
                    Some(NalType::PPS) => pps = nal.to_vec(),
                    _ => {
                        sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                        sample.extend_from_slice(nal);
                    }
                }
            }
            (sample, *idr, *ts)
        })
        .collect();
    assert!(!sps.is_empty() && !pps.is_empty());
    let ps = ParameterSets {
        sps: Bytes::from(sps),
        pps: Bytes::from(pps),
    };
    let avcc = H264Framing::Avcc {
        length_size_bytes: 4,
    };
    let converted: Vec<(Vec<u8>, bool, i64)> = samples
        .iter()
        .map(|(s, idr, ts)| {
            // Parameter sets go in front of IDR pictures only.
            let annex_b = h264::to_annex_b(&Bytes::from(s.clone()), avcc, Some(&ps)).unwrap();
            assert_eq!(h264::contains_idr(&annex_b, H264Framing::AnnexB), *idr);
            (annex_b.to_vec(), *idr, *ts)
        })
        .collect();

    let mut direct = Detector::new(&DetectorConfig::default()).unwrap();
    let mut via_mp4 = Detector::new(&DetectorConfig::default()).unwrap();
    let expected = run(&mut direct, &aus);
    assert!(!expected.is_empty());
    assert_eq!(run(&mut via_mp4, &converted), expected);
    assert_eq!(via_mp4.stats().rejected, 0);
}
