//! The built-in detector on video made by ffmpeg (a real encoder we did not write) and on the
//! bundled real-camera recording.
#![allow(missing_docs, clippy::indexing_slicing)]

mod common;

use common::MovingBox;
use motion::detector::FrameScore;
use motion::{AccessUnit, DecodeMode, Detector, DetectorConfig, FrameOutcome, SkipReason};

/// Runs the detector over a clip; returns the analysed frames' timestamps (90 kHz) and scores.
fn scores(detector: &mut Detector, aus: &[(Vec<u8>, bool, i64)]) -> Vec<(i64, FrameScore)> {
    aus.iter()
        .filter_map(|(data, is_idr, ts)| {
            match detector.push(AccessUnit {
                data,
                is_idr: *is_idr,
                timestamp_90k: *ts,
            }) {
                FrameOutcome::Analysed {
                    timestamp_90k,
                    score,
                } => Some((timestamp_90k, score)),
                _ => None,
            }
        })
        .collect()
}

/// Runs the detector over a clip; returns the timestamps (90 kHz) of frames with motion.
fn run(detector: &mut Detector, aus: &[(Vec<u8>, bool, i64)]) -> Vec<i64> {
    scores(detector, aus)
        .into_iter()
        .filter(|(_, score)| score.motion)
        .map(|(ts, _)| ts)
        .collect()
}

/// A 90 kHz timestamp in seconds, to 2 decimals (for messages).
fn secs(ts: i64) -> f64 {
    (ts as f64 / 900.0).round() / 100.0
}

/// How close the detector came to reporting motion on a clip.
#[derive(Debug)]
#[allow(dead_code, reason = "read through Debug in messages")]
struct Margin {
    analysed: usize,
    /// Changed cells a frame needs to count (the same for every frame of a clip).
    min_cells: u32,
    /// Most changed cells in one frame after warm-up, and when (s; the first such frame).
    max_changed_cells: u32,
    max_at_s: Option<f64>,
    /// Frames (s, changed cells) with at least `min_cells` changed cells.
    frames_at_min_cells: Vec<(f64, u32)>,
    /// Frames reporting motion (s).
    motion_at_s: Vec<f64>,
}

fn margin(scores: &[(i64, FrameScore)]) -> Margin {
    let after_warm_up = || scores.iter().filter(|(_, s)| !s.warming_up);
    let max_changed_cells = after_warm_up()
        .map(|(_, s)| s.changed_cells)
        .max()
        .unwrap_or_default();
    let max_at_s = after_warm_up()
        .find(|(_, s)| max_changed_cells > 0 && s.changed_cells == max_changed_cells)
        .map(|(ts, _)| secs(*ts));
    Margin {
        analysed: scores.len(),
        min_cells: scores.first().map_or(0, |(_, s)| s.min_cells),
        max_changed_cells,
        max_at_s,
        frames_at_min_cells: after_warm_up()
            .filter(|(_, s)| s.changed_cells >= s.min_cells)
            .map(|(ts, s)| (secs(*ts), s.changed_cells))
            .collect(),
        motion_at_s: scores
            .iter()
            .filter(|(_, s)| s.motion)
            .map(|(ts, _)| secs(*ts))
            .collect(),
    }
}

/// lavfi graph of a static scene with structure: a dark band (left quarter) and a bright panel
/// (right of centre) on a mid-gray background; `light` (e.g. `,eq=...`) applied to it, then
/// temporal sensor noise as in [`common::noisy_scene`].
fn textured_scene(width: u32, height: u32, fps: u32, seconds: u32, light: &str) -> String {
    format!(
        "color=c=0x707070:s={width}x{height}:r={fps}:d={seconds},\
         drawbox=x=0:y=0:w=iw/4:h=ih:color=0x303030:t=fill,\
         drawbox=x=iw*5/8:y=ih/4:w=iw/4:h=ih/2:color=0xc8c8c8:t=fill{light},\
         noise=alls=20:allf=t,format=yuv420p"
    )
}

/// x264 options for a camera-like capped bitrate (kbit/s) with a VBV buffer of `buffer_kbit`.
/// One encoder thread: x264's VBV rate control with frame threads is not reproducible (the
/// same input gave different streams from run to run).
fn capped_bitrate(preset: &str, kbit_s: u32, buffer_kbit: u32) -> Vec<String> {
    let rate = format!("{kbit_s}k");
    [
        "-preset",
        preset,
        "-b:v",
        &rate,
        "-maxrate",
        &rate,
        "-bufsize",
        &format!("{buffer_kbit}k"),
        "-threads",
        "1",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn x264(filter: &str, gop: u32, extra: &[String]) -> Vec<u8> {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    common::x264(filter, gop, &extra)
}

/// One decoded picture, seen independently of the detector (openh264, one picture per access
/// unit): mean luma and mean absolute difference from the previous picture, over every 8th
/// pixel of every 8th row.
#[derive(Debug, Clone, Copy)]
struct Picture {
    is_idr: bool,
    mean: f64,
    diff_from_previous: f64,
}

fn decoded_pictures(aus: &[(Vec<u8>, bool, i64)]) -> Vec<Picture> {
    use openh264::formats::YUVSource;
    let mut decoder = openh264::decoder::Decoder::new().unwrap();
    let (mut previous, mut current) = (Vec::<u8>::new(), Vec::<u8>::new());
    aus.iter()
        .map(|(data, is_idr, _)| {
            let picture = decoder
                .decode(data)
                .expect("ffmpeg's stream decodes")
                .expect("one picture per access unit");
            let (width, height) = picture.dimensions();
            let (stride, _, _) = picture.strides();
            current.clear();
            current.extend(
                picture
                    .y()
                    .chunks(stride)
                    .take(height)
                    .step_by(8)
                    .flat_map(|row| row[..width].iter().step_by(8).copied()),
            );
            let n = current.len().max(1) as f64;
            let mean = current.iter().map(|&p| f64::from(p)).sum::<f64>() / n;
            let diff_from_previous = if previous.len() == current.len() {
                current
                    .iter()
                    .zip(&previous)
                    .map(|(&a, &b)| f64::from(a.abs_diff(b)))
                    .sum::<f64>()
                    / n
            } else {
                0.0
            };
            std::mem::swap(&mut previous, &mut current);
            Picture {
                is_idr: *is_idr,
                mean,
                diff_from_previous,
            }
        })
        .collect()
}

/// Mean luma of the pictures shown from `from_s` to `to_s` at a constant `fps`.
fn mean_luma(pictures: &[Picture], fps: u32, from_s: f64, to_s: f64) -> f64 {
    let shown: Vec<f64> = pictures
        .iter()
        .enumerate()
        .filter(|(i, _)| (from_s..to_s).contains(&(*i as f64 / f64::from(fps))))
        .map(|(_, p)| p.mean)
        .collect();
    assert!(!shown.is_empty(), "no pictures in {from_s}..{to_s} s");
    shown.iter().sum::<f64>() / shown.len() as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// Main-stream and sub-stream sizes: (width, height, fps, capped bitrate kbit/s).
const STREAMS: [(u32, u32, u32, u32); 2] = [(1920, 1080, 15, 4000), (640, 360, 15, 512)];

/// A static textured scene whose light changes (`light`, an `eq` filter): the luma mean must
/// rise by more than 25 levels at 3 s and, after a ramp from 5.5 to 8.5 s, end more than 15
/// levels below where it started; at both stream sizes, default settings, no motion is allowed.
fn light_change_is_not_motion(light: &str) {
    for (width, height, fps, kbit_s) in STREAMS {
        let started = std::time::Instant::now();
        let scene = textured_scene(width, height, fps, 10, light);
        let aus = common::access_units(
            &x264(
                &scene,
                2 * fps,
                &capped_bitrate("ultrafast", kbit_s, kbit_s),
            ),
            fps,
        );
        assert_eq!(aus.len(), 10 * fps as usize);
        let pictures = decoded_pictures(&aus);
        let before = mean_luma(&pictures, fps, 2.0, 3.0);
        let raised = mean_luma(&pictures, fps, 3.5, 5.5);
        let after = mean_luma(&pictures, fps, 8.5, 10.0);
        let what = format!("{width}x{height}@{fps}, {kbit_s} kbit/s");
        assert!(
            raised - before > 25.0 && before - after > 15.0,
            "{what}: the light must change: mean luma {before:.1} -> {raised:.1} -> {after:.1}"
        );
        let mut detector = Detector::new(&DetectorConfig::default()).unwrap();
        let margin = margin(&scores(&mut detector, &aus));
        println!(
            "{what}: mean luma {before:.1} -> {raised:.1} -> {after:.1}; {margin:?}; {:.1} s",
            started.elapsed().as_secs_f64()
        );
        // 15 fps under the 5 fps budget: every 3rd frame.
        assert_eq!(margin.analysed, 50, "{what}");
        assert!(
            margin.motion_at_s.is_empty(),
            "{what}: the light change was reported as motion: {margin:?}"
        );
    }
}

#[test]
fn brightness_step_up_and_ramp_down_is_not_motion_on_main_and_sub_stream() {
    // eq's brightness is a fraction of the luma range: +0.12 (+31 levels) at 3 s, then from
    // 5.5 s down to -0.08 over 3 s. An offset: every area gets the same number of levels.
    light_change_is_not_motion(",eq=eval=frame:brightness='0.12*gte(t,3)-0.2*clip((t-5.5)/3,0,1)'");
}

#[test]

fn light_gain_step_up_and_ramp_down_is_not_motion_on_main_and_sub_stream() {
    // A light switched on scales what the scene reflects: bright areas gain more levels than
    // dark ones. eq with contrast c and brightness (c - 1)/2 maps luma Y to c*Y: x1.3 at 3 s,
    // then from 5.5 s down to x0.8 over 3 s (about the same mean luma steps as the offset test).
    let gain = "1+0.3*gte(t,3)-0.5*clip((t-5.5)/3,0,1)";
    light_change_is_not_motion(&format!(
        ",eq=eval=frame:contrast='{gain}':brightness='({gain}-1)/2'"
    ));
}

/// A stream for [`keyframe_pulses`]: (width, height, fps, seconds, kbit/s, VBV buffer kbit).
type CappedStream = (u32, u32, u32, u32, u32, u32);
/// A typical sub-stream under a tight cap, 60 s.
const SUB_STREAM_300K: CappedStream = (640, 360, 15, 60, 300, 150);
/// A main stream under a tight cap, 30 s (720p: 1080p would make the test slow).
const MAIN_STREAM_1M: CappedStream = (1280, 720, 15, 30, 1000, 500);

/// A static textured scene under a tight bitrate cap with a 1 s GOP (an IDR every second, no
/// scene-cut keyframes), as a camera's CBR encoder makes it: the P-frames smooth the noise
/// away, each IDR redraws it, a quality pulse every second. Checks the pulses are there and
/// returns the detector's margin at `sensitivity` for each stream.
fn keyframe_pulses(streams: &[CappedStream], sensitivity: u8) -> Vec<(String, Margin)> {
    streams
        .iter()
        .map(|&(width, height, fps, seconds, kbit_s, buffer)| {
            let started = std::time::Instant::now();
            let what = format!("{width}x{height}@{fps}, {seconds} s, {kbit_s} kbit/s, GOP 1 s");
            let stream = x264(
                &textured_scene(width, height, fps, seconds, ""),
                fps,
                &capped_bitrate("veryfast", kbit_s, buffer),
            );
            let aus = common::access_units(&stream, fps);
            assert_eq!(aus.len(), (seconds * fps) as usize);
            let actual_kbit_s = stream.len() as f64 * 8.0 / 1000.0 / f64::from(seconds);
            assert!(
                (0.8..1.1).contains(&(actual_kbit_s / f64::from(kbit_s))),
                "{what}: the cap holds the rate: {actual_kbit_s:.0} kbit/s"
            );
            assert!(aus.iter().step_by(fps as usize).all(|a| a.1), "{what}");

            let pictures = decoded_pictures(&aus);
            let p_frames = median(
                pictures
                    .iter()
                    .filter(|p| !p.is_idr)
                    .map(|p| p.diff_from_previous)
                    .collect(),
            );
            let keyframes: Vec<f64> = pictures
                .iter()
                .skip(1)
                .filter(|p| p.is_idr)
                .map(|p| p.diff_from_previous)
                .collect();
            let pulses = keyframes.iter().filter(|&&d| d > 4.0 * p_frames).count();
            let pulse = median(keyframes.clone());
            assert!(
                pulses * 10 >= keyframes.len() * 9,
                "{what}: only {pulses} of {} IDRs differ from the picture before by more than \
                 4x the P-frames' median {p_frames:.2}: {keyframes:.2?}",
                keyframes.len()
            );

            let config = DetectorConfig {
                sensitivity,
                ..DetectorConfig::default()
            };
            let mut detector = Detector::new(&config).unwrap();
            let margin = margin(&scores(&mut detector, &aus));
            println!(
                "{what}, sensitivity {sensitivity}: {actual_kbit_s:.0} kbit/s, mean |diff| from \
                 the previous picture at IDRs {pulse:.2} (median), P-frames {p_frames:.2}; \
                 {margin:?}; {:.1} s",
                started.elapsed().as_secs_f64()
            );
            // 15 fps under the 5 fps budget: frames 0, 3, 6, ... are analysed, every IDR too.
            assert_eq!(margin.analysed, (seconds * 5) as usize, "{what}");
            (what, margin)
        })
        .collect()
}

#[test]
fn keyframe_quality_pulses_under_a_bitrate_cap_are_not_motion_on_sub_stream() {
    for (what, margin) in keyframe_pulses(&[SUB_STREAM_300K], 50) {
        assert!(
            margin.motion_at_s.is_empty(),
            "{what}: keyframe pulses reported as motion: {margin:?}"
        );
    }
}

#[test]
fn keyframe_quality_pulses_under_a_bitrate_cap_are_not_motion_on_main_stream() {
    for (what, margin) in keyframe_pulses(&[MAIN_STREAM_1M], 50) {
        assert!(
            margin.motion_at_s.is_empty(),
            "{what}: keyframe pulses reported as motion: {margin:?}"
        );
    }
}

#[test]

fn keyframe_quality_pulses_are_not_motion_at_the_highest_sensitivity() {
    for (what, margin) in keyframe_pulses(&[SUB_STREAM_300K, MAIN_STREAM_1M], 100) {
        assert!(
            margin.motion_at_s.is_empty(),
            "{what}: keyframe pulses reported as motion: {margin:?}"
        );
    }
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
fn moving_box_is_reported_within_one_second_of_entering_on_sub_and_main_stream() {
    struct Case {
        what: &'static str,
        fps: u32,
        seconds: u32,
        entry_s: u32,
        stream: Vec<u8>,
    }
    let cases = [
        Case {
            what: "640x360@10, 64 px box, CRF",
            fps: 10,
            seconds: 12,
            entry_s: 5,
            stream: common::synthetic_clip(640, 360, 10, 12, Some(5), 20),
        },
        Case {
            what: "640x360@15 (sub-stream), 64 px box, 512 kbit/s",
            fps: 15,
            seconds: 10,
            entry_s: 4,
            stream: x264(
                &common::noisy_scene(640, 360, 15, 10, Some(MovingBox::fixed(4))),
                30,
                &capped_bitrate("ultrafast", 512, 512),
            ),
        },
        Case {
            what: "1920x1080@15 (main stream), 192 px box, 4 Mbit/s",
            fps: 15,
            seconds: 10,
            entry_s: 4,
            stream: x264(
                &common::noisy_scene(1920, 1080, 15, 10, Some(MovingBox::scaled(4, 1920, 1080))),
                30,
                &capped_bitrate("ultrafast", 4000, 4000),
            ),
        },
    ];
    for case in cases {
        let aus = common::access_units(&case.stream, case.fps);
        assert_eq!(
            aus.len(),
            (case.seconds * case.fps) as usize,
            "{}",
            case.what
        );
        let entry_90k = i64::from(case.entry_s) * 90_000;
        // The box keeps moving until the end: at 5 analysed frames per second, most frames
        // after entry report motion.
        let analysed_after_entry = (case.seconds - case.entry_s) as usize * 5;
        for sensitivity in [20, 50, 90] {
            let started = std::time::Instant::now();
            let config = DetectorConfig {
                sensitivity,
                ..DetectorConfig::default()
            };
            let mut detector = Detector::new(&config).unwrap();
            let scores = scores(&mut detector, &aus);
            let motion: Vec<i64> = scores
                .iter()
                .filter(|(_, s)| s.motion)
                .map(|(ts, _)| *ts)
                .collect();
            let what = format!("{}, sensitivity {sensitivity}", case.what);
            let first = *motion
                .first()
                .unwrap_or_else(|| panic!("{what}: no motion at all: {:?}", margin(&scores)));
            let changed_after_entry: Vec<u32> = scores
                .iter()
                .filter(|(ts, _)| *ts >= entry_90k)
                .map(|(_, s)| s.changed_cells)
                .collect();
            println!(
                "{what}: first motion at {:.2} s, {} motion frames; changed cells after entry \
                 {}..={} (min_cells {}); {:.1} s",
                secs(first),
                motion.len(),
                changed_after_entry.iter().min().unwrap_or(&0),
                changed_after_entry.iter().max().unwrap_or(&0),
                scores.first().map_or(0, |(_, s)| s.min_cells),
                started.elapsed().as_secs_f64()
            );
            assert!(
                first >= entry_90k,
                "{what}: motion before the box entered: {first}"
            );
            assert!(
                first < entry_90k + 90_000,
                "{what}: first motion {first} is > 1 s after entry"
            );
            assert!(
                motion.len() * 10 >= analysed_after_entry * 7,
                "{what}: only {} motion frames of {analysed_after_entry} analysed after entry",
                motion.len()
            );
        }
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
