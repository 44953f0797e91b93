//! The recorder against a real HKSV recording (shared/fixtures/hksv-example, MIT, from
//! Supereg/secure-video-specification; the same bytes are bundled as assets/demo.mp4).
//!
//! We demux the camera's recording, feed its samples through the fragmenter, and compare our
//! init segment and fragments with the camera's. Intended differences (documented in
//! `recorder::fmp4`): 90 kHz video timescale instead of 1 kHz, and one trun per keyframe
//! instead of eight ~0.5 s runs interleaved with audio.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

mod common;
use common::*;

use recorder::demux;
use recorder::{FragmenterConfig, PrebufferConfig, PrebufferRing};

fn fixture_config() -> FragmenterConfig {
    let file = demux::demux(demo_clip()).unwrap();
    FragmenterConfig {
        audio_config: file.audio_config(),
        audio_bitrate_bps: 64_000,
        ..Default::default()
    }
}

fn our_recording() -> (
    recorder::InitSegment,
    Vec<(recorder::Fragment, bytes::Bytes)>,
) {
    let file = demux::demux(demo_clip()).unwrap();
    let (events, errors) = run_units(fixture_config(), file.media_units());
    assert!(errors.is_empty(), "{errors:?}");
    let mut recs = recordings(&events);
    assert_eq!(recs.len(), 1, "one init segment");
    recs.pop().unwrap()
}

#[test]
fn bundled_clip_is_the_shared_fixture() {
    let shared = std::fs::read(shared_fixture("fully-assembled.mp4"))
        .expect("shared fixtures missing: the workspace expects ../shared next to it");
    assert_eq!(&shared[..], recorder::demo::DEMO_CLIP_MP4);
}

#[test]
fn init_segment_matches_the_camera_byte_for_byte_except_video_timescale() {
    let (init, _) = our_recording();
    let mut expected = std::fs::read(shared_fixture("fragments/mediaInitialization.mp4")).unwrap();
    // Intended difference: our video mdhd timescale is 90000 (the camera wrote 1000).
    let mdhd = find(&expected, "moov/trak[0]/mdia/mdhd").unwrap();
    let at = mdhd.as_ptr() as usize - expected.as_ptr() as usize + 20;
    assert_eq!(be32(&expected, at), 1000);
    expected[at..at + 4].copy_from_slice(&90_000u32.to_be_bytes());
    assert_eq!(tree(&init.bytes), tree(&expected));
    assert_eq!(hex::encode(&init.bytes), hex::encode(&expected));
}

#[test]
fn fragments_match_the_camera_structurally() {
    let (_, frags) = our_recording();
    let fixture_names = ["sequence2.mp4", "sequence3.mp4", "sequence4.mp4"];
    assert_eq!(frags.len(), fixture_names.len());
    let camera_file = std::fs::read(shared_fixture("fully-assembled.mp4")).unwrap();
    let camera = demux::demux(bytes::Bytes::from(camera_file)).unwrap();
    let mut video_idx = 0;
    let mut audio_idx = 0;
    for (n, ((frag, ours), name)) in frags.iter().zip(fixture_names).enumerate() {
        let theirs = std::fs::read(shared_fixture(&format!("fragments/{name}"))).unwrap();
        let (a, b) = (parse_fragment(ours), parse_fragment(&theirs));
        assert_eq!(a.sequence, b.sequence, "mfhd sequence");
        assert_eq!(a.trafs.len(), 2);
        let last = n == frags.len() - 1;
        for (ta, tb) in a.trafs.iter().zip(&b.trafs) {
            let video = ta.track_id == 1;
            assert_eq!(ta.track_id, tb.track_id);
            assert_eq!(ta.tfhd_flags, tb.tfhd_flags, "tfhd flags");
            assert_eq!(ta.default_sample_flags, tb.default_sample_flags);
            assert_eq!((ta.tfdt_version, 1), (tb.tfdt_version, 1));
            let scale = if video { 90 } else { 1 };
            assert_eq!(
                ta.tfdt,
                tb.tfdt * scale,
                "tfdt of track {} in {name}",
                ta.track_id
            );
            assert_eq!(ta.sizes(), tb.sizes(), "sample sizes");
            assert_eq!(ta.sync_flags(0), tb.sync_flags(0), "sync flags");
            let mut da = ta.durations();
            let mut db: Vec<u32> = tb.durations().iter().map(|d| d * scale as u32).collect();
            if last {
                // The camera knew the next fragment's start; at end of stream we repeat the
                // previous frame's duration instead.
                da.pop();
                db.pop();
            }
            assert_eq!(
                da, db,
                "sample durations of track {} in {name}",
                ta.track_id
            );
            // Run flags: the camera's first video run is 0x305, audio runs 0x301.
            assert_eq!(ta.truns[0].flags, tb.truns[0].flags);
            assert_eq!(
                ta.truns[0].first_sample_flags,
                tb.truns[0].first_sample_flags
            );
        }
        // Sample bytes are the camera's, unchanged (no in-band parameter sets to strip).
        let payload = frag.payload.to_bytes();
        let mut off = 0usize;
        for s in &frag.video.samples {
            let cam = &camera.tracks[0].samples[video_idx];
            assert_eq!(
                &payload[off..off + s.size_bytes as usize],
                &camera.data[cam.range.clone()]
            );
            off += s.size_bytes as usize;
            video_idx += 1;
        }
        for s in &frag.audio.as_ref().unwrap().samples {
            let cam = &camera.tracks[1].samples[audio_idx];
            assert_eq!(
                &payload[off..off + s.size_bytes as usize],
                &camera.data[cam.range.clone()]
            );
            off += s.size_bytes as usize;
            audio_idx += 1;
        }
        assert_eq!(off, frag.payload.len());
    }
    assert_eq!(
        video_idx, 193,
        "all video frames recorded (fixture-analysis §6)"
    );
    assert_eq!(audio_idx, 372, "all audio frames recorded");
}

#[test]
fn ring_reader_rebases_every_clip_to_sequence_1_and_tfdt_0() {
    let file = demux::demux(demo_clip()).unwrap();
    let (events, _) = run_units(fixture_config(), file.media_units());
    let ring = PrebufferRing::new(PrebufferConfig::default()).unwrap();
    for e in events {
        ring.push_event(e);
    }
    // Fragments of 4004, 4000 and 3950 ms (at end of stream the last frame repeats the
    // previous 50 ms duration): the newest two, 7950 ms, are within the ring's 100 ms slack
    // of 8 s, so the first is dropped.
    assert_eq!(ring.buffered().as_millis(), 7_950);
    assert!(
        ring.bytes_held() > 800_000 && ring.bytes_held() < 900_000,
        "{}",
        ring.bytes_held()
    );
    let mut reader = ring.reader(std::time::Duration::from_millis(7000)).unwrap();
    let mut clip = reader.init_segment().to_vec();
    let mut expect_tfdt = (0u64, 0u64);
    let mut seq = 1;
    while let Ok(Some(f)) = reader.try_next() {
        let bytes = f.to_bytes();
        let chunks = f.chunks(262_144);
        assert_eq!(
            chunks.concat(),
            bytes.to_vec(),
            "chunks rejoin to the fragment"
        );
        assert!(
            chunks[..chunks.len() - 1]
                .iter()
                .all(|c| c.len() == 262_144)
        );
        let s = parse_fragment(&bytes);
        assert_eq!(s.sequence, seq);
        assert_eq!(
            (s.trafs[0].tfdt, s.trafs[1].tfdt),
            expect_tfdt,
            "tfdt continuous from 0"
        );
        expect_tfdt = (
            expect_tfdt.0 + s.trafs[0].duration(),
            expect_tfdt.1 + s.trafs[1].duration(),
        );
        seq += 1;
        clip.extend_from_slice(&bytes);
    }
    assert_eq!(
        seq, 3,
        "7 s back from the end (4.954 s) is inside the second fragment"
    );
    common::require_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, &clip).unwrap();
    assert_decodes_cleanly(&path);
    let packets = probe_packets(&path, "v:0");
    assert!(
        packets[0].2 && packets[0].0.abs() < 1e-6,
        "clip starts with a keyframe at 0: {:?}",
        packets[0]
    );
}

#[test]
fn fixture_recording_through_our_writer_decodes_cleanly() {
    common::require_ffmpeg();
    let (init, frags) = our_recording();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours.mp4");
    std::fs::write(&path, concat(&init, &frags)).unwrap();
    assert_decodes_cleanly(&path);
    let v = probe_packets(&path, "v:0");
    assert_eq!(v.len(), 193);
    let a = probe_packets(&path, "a:0");
    assert_eq!(a.len(), 372);
    // Each fragment starts with a keyframe at its tfdt: 0, 4.004, 8.004 s.
    for t in [0.0, 4.004, 8.004] {
        let p = v
            .iter()
            .find(|p| (p.0 - t).abs() < 1e-3)
            .unwrap_or_else(|| panic!("no packet at {t}"));
        assert!(p.2, "packet at {t} is a keyframe");
    }
    assert_eq!(v.iter().filter(|p| p.2).count(), 3);
}

/// FNV-1a 64: a stable digest without another dependency.
fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Brittle on purpose (moonfire-nvr's rule): if this fails, the bytes we write changed. Check
/// the change is intended, bump `recorder::fmp4::FORMAT_VERSION`, and update the digest.
#[test]
fn output_digest_is_pinned_to_the_format_version() {
    let (init, frags) = our_recording();
    let all = concat(&init, &frags);
    assert_eq!(
        (
            recorder::fmp4::FORMAT_VERSION,
            all.len(),
            format!("{:016x}", fnv1a64(&all))
        ),
        (1, 1_249_236, "a3d25ccfd5503802".to_owned())
    );
}

#[test]
fn sps_facts_and_measured_stream_info() {
    let file = demux::demux(demo_clip()).unwrap();
    let recorder::demux::TrackKind::Video { parameter_sets, .. } = &file.tracks[0].kind else {
        panic!("track 1 is video")
    };
    let info = recorder::h264::SpsInfo::parse(&parameter_sets.sps).unwrap();
    // fixture-analysis §3: Main@4.1, 1920x1088 cropped to 1080, VUI claims 24 fps.
    assert_eq!(
        (info.profile_idc, info.level_idc, info.width, info.height),
        (77, 41, 1920, 1080)
    );
    assert_eq!(info.vui_fps, Some(24.0));
    // The real rate, measured from timestamps, is about 16 fps with 4 s GOPs (§5).
    let mut f = recorder::Fragmenter::new(fixture_config()).unwrap();
    for u in file.media_units() {
        let _ = f.push(u);
    }
    let s = f.stream_info();
    assert_eq!(s.gop_frames, Some(64));
    assert_eq!(s.gop_ms, Some(4000));
    assert!(
        (s.measured_fps.unwrap() - 16.0).abs() < 0.01,
        "{:?}",
        s.measured_fps
    );
    assert_eq!(s.sps.as_ref().unwrap().width, 1920);
}
