//! Per-reader audio choice (protocol-notes §6.1: omit the audio track when
//! RecordingAudioActive = 0): the bundled real recording (H.264 + AAC-LC) runs through the
//! fragmenter into a ring, and two readers see it with audio on and off. The video-only clip
//! must have one track everywhere, tile its shorter mdat exactly, share the ring's payload
//! without copying, and decode with ffmpeg (a peer we did not write) as exactly one stream.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

mod common;
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use recorder::demux;
use recorder::{
    ClipFragment, Fragment, FragmenterConfig, FragmenterEvent, PrebufferConfig, PrebufferRing,
    ReaderOptions, RingReader,
};

struct Setup {
    ring: PrebufferRing,
    /// The fragments as stored in the ring (their payloads share the ring's buffers).
    fragments: Vec<Fragment>,
    with_audio: Vec<ClipFragment>,
    without_audio: Vec<ClipFragment>,
    reader_on: RingReader,
    reader_off: RingReader,
}

/// The demo clip through fragmenter and ring; one reader per choice, opened before the first
/// fragment so both see every fragment.
fn setup() -> Setup {
    let file = demux::demux(demo_clip()).unwrap();
    let config = FragmenterConfig {
        audio_config: file.audio_config(),
        ..Default::default()
    };
    assert!(config.audio_config.is_some(), "the demo clip has AAC");
    let (events, errors) = run_units(config, file.media_units());
    assert!(errors.is_empty(), "{errors:?}");
    let ring = PrebufferRing::new(PrebufferConfig {
        reader_queue_len: 1000,
        ..Default::default()
    })
    .unwrap();
    let mut events = events.into_iter();
    match events.next() {
        Some(FragmenterEvent::Init(i)) => {
            assert!(i.config.audio.is_some());
            ring.push_init(i);
        }
        other => panic!("expected the init segment first, got {other:?}"),
    }
    let mut reader_on = ring.reader_from(0).unwrap();
    let mut reader_off = ring
        .reader_from_with(0, ReaderOptions { audio: false })
        .unwrap();
    let mut fragments = Vec::new();
    for e in events {
        let FragmenterEvent::Fragment(f) = e else {
            panic!("one generation only");
        };
        assert!(f.audio.as_ref().is_some_and(|a| !a.samples.is_empty()));
        fragments.push(f.clone());
        ring.push_fragment(f);
    }
    assert!(fragments.len() >= 2, "{} fragments", fragments.len());
    let drain = |r: &mut RingReader| std::iter::from_fn(|| r.try_next().unwrap()).collect();
    let with_audio: Vec<ClipFragment> = drain(&mut reader_on);
    let without_audio: Vec<ClipFragment> = drain(&mut reader_off);
    assert_eq!(with_audio.len(), fragments.len());
    assert_eq!(without_audio.len(), fragments.len());
    Setup {
        ring,
        fragments,
        with_audio,
        without_audio,
        reader_on,
        reader_off,
    }
}

fn handlers(init: &[u8]) -> Vec<String> {
    (0..)
        .map_while(|i| find(init, &format!("moov/trak[{i}]/mdia/hdlr")))
        .map(|h| String::from_utf8_lossy(&h[16..20]).into_owned())
        .collect()
}

fn trex_tracks(init: &[u8]) -> Vec<u32> {
    (0..)
        .map_while(|i| find(init, &format!("moov/mvex/trex[{i}]")))
        .map(|t| be32(t, 12))
        .collect()
}

#[test]
fn audio_off_init_has_only_the_video_trak() {
    let s = setup();
    let on = s.reader_on.init_segment();
    let off = s.reader_off.init_segment();
    assert!(s.reader_on.has_audio());
    assert!(!s.reader_off.has_audio());
    assert_eq!(handlers(&on), ["vide", "soun"]);
    assert_eq!(trex_tracks(&on), [1, 2]);
    assert_eq!(handlers(&off), ["vide"]);
    assert_eq!(trex_tracks(&off), [1]);
    let tkhd = find(&off, "moov/trak/tkhd").unwrap();
    assert_eq!(be32(tkhd, 20), 1, "the one trak is track_ID 1");
    // The video trak itself is byte-identical to the one in the full init segment.
    assert_eq!(find(&off, "moov/trak"), find(&on, "moov/trak[0]"));
    assert_eq!(find(&off, "ftyp"), find(&on, "ftyp"));
}

#[test]
fn audio_off_fragments_have_one_traf_tiling_the_video_only_mdat() {
    let s = setup();
    for (i, ((frag, on), off)) in s
        .fragments
        .iter()
        .zip(&s.with_audio)
        .zip(&s.without_audio)
        .enumerate()
    {
        let on_bytes = on.to_bytes();
        let off_bytes = off.to_bytes();
        // parse_fragment also asserts the trun data offsets tile the mdat exactly.
        let a = parse_fragment(&on_bytes);
        let v = parse_fragment(&off_bytes);
        assert_eq!(a.trafs.len(), 2);
        assert_eq!(v.trafs.len(), 1);
        assert_eq!(v.trafs[0].track_id, 1);
        // Same sequence numbering and rebased video timing as the audio-on clip.
        assert_eq!(v.sequence, i as u32 + 1);
        assert_eq!(off.sequence_number, on.sequence_number);
        assert_eq!(off.duration_90k, on.duration_90k);
        assert_eq!(v.trafs[0].tfdt, a.trafs[0].tfdt);
        assert_eq!(v.trafs[0].sizes(), a.trafs[0].sizes());
        assert_eq!(v.trafs[0].durations(), a.trafs[0].durations());
        // The mdat holds exactly the video samples: the leading part of the shared payload.
        let video_bytes: usize = frag
            .video
            .samples
            .iter()
            .map(|x| x.size_bytes as usize)
            .sum();
        let audio_bytes: usize = frag
            .audio
            .as_ref()
            .unwrap()
            .samples
            .iter()
            .map(|x| x.size_bytes as usize)
            .sum();
        assert!(audio_bytes > 0);
        assert_eq!(v.mdat_payload_len, video_bytes);
        assert_eq!(a.mdat_payload_len, video_bytes + audio_bytes);
        assert_eq!(
            off_bytes[v.moof_len + 8..],
            on_bytes[a.moof_len + 8..a.moof_len + 8 + video_bytes]
        );
        assert_eq!(off.len(), off_bytes.len());
    }
    assert_eq!(s.without_audio[0].sequence_number, 1);
    assert_eq!(
        parse_fragment(&s.without_audio[0].to_bytes()).trafs[0].tfdt,
        0
    );
}

#[test]
fn audio_off_parts_are_slices_of_the_ring_payload() {
    let s = setup();
    let chunk_bytes = 262_144;
    let mut payload_parts = 0;
    for (frag, off) in s.fragments.iter().zip(&s.without_audio) {
        // What the HDS sender takes: the header, then slices of the stored sample buffers.
        let parts = off.parts();
        let joined: Vec<u8> = parts.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(Bytes::from(joined), off.to_bytes());
        let stored: Vec<_> = frag
            .payload
            .parts()
            .iter()
            .map(|p| p.as_ptr_range())
            .collect();
        for p in parts.iter().skip(1) {
            assert!(
                stored.iter().any(|r| r.contains(&p.as_ptr())),
                "payload parts point into the stored payload"
            );
            payload_parts += 1;
        }
        assert_eq!(
            parts.iter().skip(1).map(Bytes::len).sum::<usize>(),
            recorder::fmp4::video_payload_bytes(frag)
        );
        // One-buffer chunks still tile the fragment.
        let chunks = off.chunks(chunk_bytes);
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(Bytes::from(joined), off.to_bytes());
        assert!(chunks.iter().all(|c| c.len() <= chunk_bytes));
        assert_eq!(chunks.len(), off.len().div_ceil(chunk_bytes));
    }
    assert!(payload_parts > 0);
    drop(s.ring);
}

fn ffprobe_streams(path: &Path) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

fn write_clip(path: &Path, init: &Bytes, frags: &[ClipFragment]) {
    let mut v = init.to_vec();
    for f in frags {
        v.extend_from_slice(&f.to_bytes());
    }
    std::fs::write(path, v).unwrap();
}

#[test]
fn ffmpeg_decodes_the_video_only_clip_as_one_stream() {
    require_ffmpeg();
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let off = dir.path().join("video-only.mp4");
    write_clip(&off, &s.reader_off.init_segment(), &s.without_audio);
    assert_decodes_cleanly(&off);
    assert_eq!(ffprobe_streams(&off), ["video"]);
    let frames: usize = s.fragments.iter().map(|f| f.video.samples.len()).sum();
    assert_eq!(probe_packets(&off, "v:0").len(), frames);
    // The control: the same ring with audio on gives both streams.
    let on = dir.path().join("with-audio.mp4");
    write_clip(&on, &s.reader_on.init_segment(), &s.with_audio);
    assert_decodes_cleanly(&on);
    assert_eq!(ffprobe_streams(&on), ["video", "audio"]);
}

#[test]
fn audio_on_is_the_default_and_byte_identical_to_reader() {
    let s = setup();
    let mut default = s.ring.reader_from(0).unwrap();
    let mut explicit = s
        .ring
        .reader_from_with(0, ReaderOptions::default())
        .unwrap();
    assert_eq!(ReaderOptions::default(), ReaderOptions { audio: true });
    assert_eq!(default.init_segment(), explicit.init_segment());
    let mut n = 0;
    while let Some(a) = default.try_next().unwrap() {
        let b = explicit.try_next().unwrap().unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        n += 1;
    }
    assert!(n > 0);
}

#[test]
fn audio_off_on_a_video_only_ring_changes_nothing() {
    let file = demux::demux(demo_clip()).unwrap();
    let config = FragmenterConfig {
        audio_config: file.audio_config(),
        record_audio: false,
        ..Default::default()
    };
    let (events, errors) = run_units(config, file.media_units());
    assert!(errors.is_empty(), "{errors:?}");
    let ring = PrebufferRing::new(PrebufferConfig::default()).unwrap();
    events.into_iter().for_each(|e| ring.push_event(e));
    let mut on = ring.reader(Duration::from_secs(8)).unwrap();
    let mut off = ring
        .reader_with(Duration::from_secs(8), ReaderOptions { audio: false })
        .unwrap();
    assert!(!on.has_audio() && !off.has_audio());
    assert_eq!(handlers(&off.init_segment()), ["vide"]);
    assert_eq!(
        off.init_segment().as_ptr(),
        on.init_segment().as_ptr(),
        "the stored init segment is shared, not rewritten"
    );
    let mut n = 0;
    while let Some(a) = on.try_next().unwrap() {
        let b = off.try_next().unwrap().unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        n += 1;
    }
    assert!(n > 0);
}
