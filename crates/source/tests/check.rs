//! `check` on ffmpeg-made streams: a 4 s GOP passes, a 10 s GOP fails with the I-frame
//! interval to set, a mid-GOP start is reported, and the written files are what a hub gets.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

mod common;
use common::*;

use std::path::Path;
use std::time::Duration;

use recorder::h264::AnnexBSplitter;
use source::{Level, SourceSpec};

fn file_spec(path: &Path) -> SourceSpec {
    // Read as fast as possible; the check ends at the end of the file.
    format!("file://{}#realtime=false", path.display())
        .parse()
        .unwrap()
}

#[tokio::test]
async fn four_second_gop_with_aac_is_ready_and_files_are_what_a_hub_receives() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gop4.mp4");
    // 10 fps, I-frame every 40 frames = 4 s, AAC; fragmented MP4 as a camera's HTTP stream.
    encode(
        &file,
        "640x360",
        10,
        40,
        21,
        true,
        &["-movflags", "frag_keyframe+empty_moov+default_base_moof"],
    );
    let out = dir.path().join("out");
    let mut ticks = 0;
    let report = source::check(
        &file_spec(&file),
        Duration::from_secs(12),
        Some(&out),
        |_| ticks += 1,
    )
    .await
    .unwrap();
    println!("{report}");
    assert!(ticks >= 1, "progress is reported");
    assert!(report.is_ready(), "{report}");
    assert_eq!(report.gop, Some((40, 4000)));
    assert_eq!(report.verdict("GOP").unwrap().level, Level::Ok);
    let sps = report.sps.as_ref().unwrap();
    assert_eq!((sps.width, sps.height), (640, 360));
    assert!((report.measured_fps.unwrap() - 10.0).abs() < 0.05);
    let asc = report.audio.as_ref().unwrap();
    assert_eq!((asc.sample_rate_hz, asc.channels), (16000, 1));
    assert_eq!(report.frames_before_first_idr, 0);
    // ffmpeg's MP4 gives the first video sample 64 ms more (the AAC priming, 1024 samples at
    // 16 kHz); every later fragment is exactly one GOP.
    let f = &report.fragment_ms;
    assert!(
        f.len() >= 4 && (4000..=4064).contains(&f[0]) && f[1..].iter().all(|&d| d == 4000),
        "{f:?}"
    );

    // The files: init.mp4, fragment-NNNN.m4s (moof+mdat, mfhd sequence from 1), clip.mp4.
    let init = std::fs::read(out.join("init.mp4")).unwrap();
    assert_eq!(&init[4..8], b"ftyp");
    for i in 1..=report.fragment_ms.len() {
        let frag = std::fs::read(out.join(format!("fragment-{i:04}.m4s"))).unwrap();
        assert_eq!(&frag[4..8], b"moof");
        // moof header (8) + mfhd header (8) + version/flags (4) → sequence_number.
        assert_eq!(
            u32::from_be_bytes(frag[20..24].try_into().unwrap()),
            i as u32
        );
    }
    let clip = out.join("clip.mp4");
    let decoded = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(&clip)
        .output()
        .unwrap();
    let frames: u64 = String::from_utf8_lossy(&decoded.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        frames,
        40 * report.fragment_ms.len() as u64,
        "clip.mp4 plays every fragment's frames"
    );
}

#[tokio::test]
async fn ten_second_gop_fails_with_the_interval_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gop10.h264");
    encode(&file, "640x360", 10, 100, 21, false, &["-f", "h264"]);
    let report = source::check(&file_spec(&file), Duration::from_secs(12), None, |_| {})
        .await
        .unwrap();
    println!("{report}");
    assert!(!report.is_ready());
    assert_eq!(report.gop, Some((100, 10_000)));
    let gop = report.verdict("GOP").unwrap();
    assert_eq!(gop.level, Level::Fail);
    assert_eq!(
        gop.message,
        "GOP 10.0 s: HomeKit expects 4 s — set the camera's I-frame interval to 4 × fps = 40 frames"
    );
    assert_eq!(report.verdict("audio").unwrap().level, Level::Info);
    assert!(
        report
            .to_string()
            .contains("Not ready for HomeKit Secure Video: 1 item(s) to fix."),
        "{report}"
    );
}

#[tokio::test]
async fn stream_starting_mid_gop_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.h264");
    encode(&whole, "320x240", 10, 40, 9, false, &["-f", "h264"]);
    // Drop the first 7 access units: the stream now starts 7 frames into a GOP.
    let mut splitter = AnnexBSplitter::new(1 << 24);
    splitter.push(&std::fs::read(&whole).unwrap()).unwrap();
    splitter.finish();
    let aus: Vec<_> = std::iter::from_fn(|| splitter.pull()).collect();
    assert_eq!(aus.len(), 90);
    let cut = dir.path().join("mid-gop.h264");
    std::fs::write(&cut, aus[7..].concat()).unwrap();
    let report = source::check(&file_spec(&cut), Duration::from_secs(12), None, |_| {})
        .await
        .unwrap();
    println!("{report}");
    assert_eq!(report.frames_before_first_idr, 33);
    assert_eq!(report.first_idr_after_ms, Some(3300));
    let start = report.verdict("start").unwrap();
    assert!(
        start.message.contains("mid-GOP") && start.message.contains("33 frames"),
        "{}",
        start.message
    );
}

#[tokio::test(start_paused = true)]
async fn demo_source_checks_on_virtual_time() {
    let report = source::check(&SourceSpec::Demo, Duration::from_secs(12), None, |_| {})
        .await
        .unwrap();
    println!("{report}");
    assert_eq!(report.transport, "bundled demo clip");
    assert!(
        report.video_frames > 100 && report.audio_frames > 100,
        "{report}"
    );
    assert!(!report.fragment_ms.is_empty());
    assert!(report.audio.is_some());
}

/// Regular MP4 files (moov after the mdat, as ffmpeg writes by default, and `+faststart`),
/// with B-frames (composition offsets) and AAC, read by sample offsets: the same verdicts as
/// for the fragmented file.
#[tokio::test]
async fn regular_mp4_files_are_read_moov_first_or_last() {
    let dir = tempfile::tempdir().unwrap();
    for (name, extra) in [
        ("moov-last.mp4", vec!["-bf", "2"]),
        ("faststart.mp4", vec!["-bf", "2", "-movflags", "+faststart"]),
    ] {
        let file = dir.path().join(name);
        encode(&file, "640x360", 10, 40, 13, true, &extra);
        let out = dir.path().join(format!("out-{name}"));
        let report = source::check(
            &file_spec(&file),
            Duration::from_secs(12),
            Some(&out),
            |_| {},
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        println!("{name}:\n{report}");
        assert!(report.is_ready(), "{name}: {report}");
        assert_eq!(report.gop, Some((40, 4000)), "{name}");
        let sps = report.sps.as_ref().unwrap();
        assert_eq!((sps.width, sps.height), (640, 360), "{name}");
        assert!((report.measured_fps.unwrap() - 10.0).abs() < 0.05, "{name}");
        let asc = report.audio.as_ref().unwrap();
        assert_eq!(asc.sample_rate_hz, 16000, "{name}");
        assert!(
            report.fragment_ms.len() >= 2,
            "{name}: {:?}",
            report.fragment_ms
        );
        // What a hub would receive decodes, B-frames and all: every fragment's 40 frames.
        let decoded = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
            .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
            .arg(out.join("clip.mp4"))
            .output()
            .unwrap();
        let frames: u64 = String::from_utf8_lossy(&decoded.stdout)
            .trim()
            .parse()
            .unwrap();
        assert_eq!(frames, 40 * report.fragment_ms.len() as u64, "{name}");
    }
}

/// A regular MP4 over a stream (here stdin-like: a pipe) cannot be read in order: the error
/// says what to send instead, never "sample outside the file".
#[tokio::test]
async fn a_regular_mp4_over_a_stream_says_to_send_fragmented_mp4() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("faststart.mp4");
    encode(
        &file,
        "320x240",
        10,
        40,
        3,
        false,
        &["-movflags", "+faststart"],
    );
    let spec: SourceSpec = format!("exec:cat {}", file.display()).parse().unwrap();
    let e = source::check(&spec, Duration::from_secs(5), None, |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("fragmented MP4") && !e.contains("outside"),
        "{e}"
    );
}
