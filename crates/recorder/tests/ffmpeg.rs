//! Streams encoded by ffmpeg (libx264 + AAC, a peer we did not write) at test time, run through
//! the recorder; every recording must decode cleanly and ffprobe must see each fragment start
//! with a keyframe at the expected time. Missing ffmpeg fails the test (run scripts/test).
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

mod common;
use common::*;

use std::path::Path;

use bytes::Bytes;
use recorder::h264::AnnexBSplitter;
use recorder::{AudioFrame, FragmenterConfig, H264Framing, VideoAccessUnit};
use recorder::{MediaUnit, demux};

struct Case {
    size: &'static str,
    fps: u32,
    gop_frames: u32,
    b_frames: u32,
    audio: bool,
    seconds: u32,
}

fn encode(dir: &Path, c: &Case, out: &str) {
    let src = format!("testsrc2=size={}:rate={}", c.size, c.fps);
    let (g, bf, t) = (
        c.gop_frames.to_string(),
        c.b_frames.to_string(),
        c.seconds.to_string(),
    );
    let mut args = vec!["-f", "lavfi", "-i", &src];
    if c.audio {
        args.extend(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    }
    args.extend([
        "-t",
        &t,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
    ]);
    args.extend([
        "-g",
        &g,
        "-keyint_min",
        &g,
        "-sc_threshold",
        "0",
        "-bf",
        &bf,
    ]);
    if c.audio {
        args.extend(["-c:a", "aac", "-b:a", "64k", "-ac", "1"]);
    }
    let out = dir.join(out);
    let out = out.to_str().unwrap();
    args.push(out);
    ffmpeg(&args);
}

/// Runs the file's samples through the recorder; checks the HKSV invariants, decoding and
/// keyframe placement. Returns the fragments' video durations (90 kHz).
fn record_and_check(
    dir: &Path,
    units: Vec<MediaUnit>,
    config: FragmenterConfig,
    frames: usize,
) -> Vec<u64> {
    let (events, errors) = run_units(config, units);
    assert!(errors.is_empty(), "{errors:?}");
    let recs = recordings(&events);
    assert_eq!(recs.len(), 1);
    let (init, frags) = &recs[0];
    assert_hksv_recording(init, frags);
    let path = dir.join("recording.mp4");
    std::fs::write(&path, concat(init, frags)).unwrap();
    assert_decodes_cleanly(&path);
    let packets = probe_packets(&path, "v:0");
    assert_eq!(packets.len(), frames, "every frame recorded");
    // Each fragment starts with a keyframe at its tfdt. With B-frames our keyframes have
    // composition offset 0 and the B-frames after them negative offsets (trun v1); ffmpeg's
    // mov demuxer then shifts every pts later by the most negative offset, so expect that.
    let min_cto = frags
        .iter()
        .flat_map(|(f, _)| f.video.samples.iter().map(|s| s.composition_offset))
        .min()
        .unwrap_or(0)
        .min(0);
    for (frag, _) in frags {
        assert_eq!(
            frag.video.samples[0].composition_offset, 0,
            "keyframe presented at its tfdt"
        );
        let t = (frag.start_90k() as f64 - f64::from(min_cto)) / 90_000.0;
        let p = packets
            .iter()
            .find(|p| (p.0 - t).abs() < 0.0005)
            .unwrap_or_else(|| panic!("no packet at {t}: {:?}", &packets[..5]));
        assert!(
            p.2,
            "the packet at {t} s starts a fragment and must be a keyframe"
        );
    }
    // Each fragment alone (init + fragment) decodes too, as the hub may cut a clip anywhere.
    for (i, (_, bytes)) in frags.iter().enumerate() {
        let one = dir.join(format!("frag{i}.mp4"));
        let mut v = init.bytes.to_vec();
        v.extend_from_slice(bytes);
        std::fs::write(&one, v).unwrap();
        assert_decodes_cleanly(&one);
    }
    frags.iter().map(|(f, _)| f.duration_90k()).collect()
}

fn mp4_case(c: Case) -> (Vec<u64>, recorder::demux::Mp4File) {
    require_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    encode(dir.path(), &c, "in.mp4");
    let file = demux::demux(Bytes::from(
        std::fs::read(dir.path().join("in.mp4")).unwrap(),
    ))
    .unwrap();
    let config = FragmenterConfig {
        audio_config: file.audio_config(),
        ..Default::default()
    };
    assert_eq!(config.audio_config.is_some(), c.audio);
    let frames = (c.fps * c.seconds) as usize;
    let durations = record_and_check(dir.path(), file.media_units(), config, frames);
    (durations, file)
}

#[test]
fn p1080_30fps_gop_1s_with_aac_groups_gops_into_4s_fragments() {
    let (d, _) = mp4_case(Case {
        size: "1920x1080",
        fps: 30,
        gop_frames: 30,
        b_frames: 0,
        audio: true,
        seconds: 9,
    });
    assert_eq!(
        d,
        vec![360_000, 360_000, 90_000],
        "4 GOPs of 1 s per fragment, then the rest"
    );
}

#[test]
fn p1080_30fps_gop_4s_b_frames_with_aac() {
    let (d, file) = mp4_case(Case {
        size: "1920x1080",
        fps: 30,
        gop_frames: 120,
        b_frames: 2,
        audio: true,
        seconds: 9,
    });
    assert!(
        file.tracks[0]
            .samples
            .iter()
            .any(|s| s.composition_offset != 0),
        "input has B-frames"
    );
    assert_eq!(d, vec![360_000, 360_000, 90_000]);
}

#[test]
fn p720_15fps_gop_10s_without_audio_makes_one_gop_fragments() {
    let (d, _) = mp4_case(Case {
        size: "1280x720",
        fps: 15,
        gop_frames: 150,
        b_frames: 0,
        audio: false,
        seconds: 12,
    });
    assert_eq!(
        d,
        vec![900_000, 180_000],
        "a GOP longer than 4 s is one fragment"
    );
}

/// Splits an ADTS byte stream into frames (ISO/IEC 13818-7 §6.2: 13-bit frame_length).
fn adts_frames(data: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 7 <= data.len() {
        let len = ((data[pos + 3] as usize & 3) << 11)
            | ((data[pos + 4] as usize) << 3)
            | (data[pos + 5] as usize >> 5);
        out.push(Bytes::copy_from_slice(&data[pos..pos + len]));
        pos += len;
    }
    out
}

#[test]
fn p720_15fps_gop_4s_annexb_and_adts_elementary_streams() {
    require_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let c = Case {
        size: "1280x720",
        fps: 15,
        gop_frames: 60,
        b_frames: 0,
        audio: true,
        seconds: 9,
    };
    encode(dir.path(), &c, "in.mp4");
    let input = dir.path().join("in.mp4");
    let input = input.to_str().unwrap();
    let h264 = dir.path().join("in.h264");
    let aac = dir.path().join("in.aac");
    ffmpeg(&[
        "-i",
        input,
        "-map",
        "0:v",
        "-c",
        "copy",
        "-bsf:v",
        "h264_mp4toannexb",
        "-f",
        "h264",
        h264.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-i",
        input,
        "-map",
        "0:a",
        "-c",
        "copy",
        "-f",
        "adts",
        aac.to_str().unwrap(),
    ]);

    // Split the Annex B stream into access units in odd-sized pieces, as a pipe would deliver.
    let mut splitter = AnnexBSplitter::new(4 << 20);
    for piece in std::fs::read(&h264).unwrap().chunks(1317) {
        splitter.push(piece).unwrap();
    }
    splitter.finish();
    let mut units = Vec::new();
    let mut n = 0i64;
    while let Some(au) = splitter.pull() {
        units.push(MediaUnit::Video(VideoAccessUnit {
            pts_90k: n * 6000,
            dts_90k: None,
            data: au,
            framing: H264Framing::AnnexB,
        }));
        n += 1;
    }
    assert_eq!(n, 135, "the splitter found every access unit");
    for (k, frame) in adts_frames(&std::fs::read(&aac).unwrap())
        .into_iter()
        .enumerate()
    {
        units.push(MediaUnit::Audio(AudioFrame {
            pts_samples: k as i64 * 1024,
            data: frame,
        }));
    }
    units.sort_by_key(|u| u.time_90k(48_000));
    // No out-of-band config: SPS/PPS are in band, the AAC config comes from ADTS.
    let d = record_and_check(dir.path(), units, FragmenterConfig::default(), 135);
    assert_eq!(d, vec![360_000, 360_000, 90_000]);
}
