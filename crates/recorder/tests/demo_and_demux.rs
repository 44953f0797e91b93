//! The demo camera loops the bundled clip with continuous timestamps and real-time pacing, and
//! the demuxer survives corrupted and truncated files.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

mod common;
use common::*;

use std::time::Duration;

use bytes::Bytes;
use recorder::{DemoSource, Fragmenter, FragmenterConfig, FragmenterEvent};
use recorder::{MediaUnit, demux};

#[test]
fn demo_source_loops_with_continuous_timestamps_and_pacing() {
    let mut src = DemoSource::bundled().unwrap();
    assert_eq!(
        src.loop_duration_90k(),
        12_003 * 90,
        "fixture: 12.003 s (fixture-analysis §6)"
    );
    let config = FragmenterConfig {
        audio_config: src.audio_config().cloned(),
        ..Default::default()
    };
    let mut f = Fragmenter::new(config).unwrap();
    let (mut last_due, mut last_video, mut last_audio) = (Duration::ZERO, i64::MIN, i64::MIN);
    let mut events = Vec::new();
    let mut videos = 0;
    // Three loops: 3 × 193 video frames plus their audio.
    while videos < 3 * 193 {
        let (due, unit) = src.next_unit();
        assert!(
            due >= last_due || matches!(unit, MediaUnit::Audio(_)),
            "pacing never goes back for video"
        );
        last_due = last_due.max(due);
        match &unit {
            MediaUnit::ParameterSets(_) => {}
            MediaUnit::Video(v) => {
                assert!(v.dts_90k.unwrap() > last_video);
                last_video = v.dts_90k.unwrap();
                videos += 1;
            }
            MediaUnit::Audio(a) => {
                assert!(a.pts_samples > last_audio);
                last_audio = a.pts_samples;
            }
        }
        f.push(unit).unwrap();
        events.extend(std::iter::from_fn(|| f.poll_event()));
    }
    // Due time tracks media time: the last video frame of loop 3 is due near 3 × 12.003 s.
    assert!(
        (last_due.as_secs_f64() - (3.0 * 12.003 - 0.1)).abs() < 0.2,
        "{last_due:?}"
    );
    f.finish();
    events.extend(std::iter::from_fn(|| f.poll_event()));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, FragmenterEvent::Init(_)))
            .count(),
        1
    );
    let recs = recordings(&events);
    assert_hksv_recording(&recs[0].0, &recs[0].1);
    assert_eq!(
        recs[0].1.len(),
        9,
        "3 fragments per loop, none lost at the loop seams"
    );
}

#[test]
fn demuxer_survives_truncation_and_corruption() {
    // A small complete recording (our writer, synthetic frames, ADTS audio) and a camera init.
    let mut f = Fragmenter::new(FragmenterConfig::default()).unwrap();
    let sps = make_sps(20, 15);
    for n in 0..200i64 {
        let idr = n % 60 == 0;
        f.push_video(video(
            n * 3000,
            annexb_au(idr.then_some(&sps[..]), idr, 20, 3),
        ))
        .unwrap();
        let _ = f.push_audio(recorder::AudioFrame {
            pts_samples: n * 1600,
            data: Bytes::from(adts_frame(9)),
        });
    }
    f.finish();
    let events: Vec<_> = std::iter::from_fn(|| f.poll_event()).collect();
    let recs = recordings(&events);
    let file = concat(&recs[0].0, &recs[0].1);
    let camera_init = std::fs::read(shared_fixture("fragments/mediaInitialization.mp4")).unwrap();
    let ours = demux::demux(Bytes::from(file.clone())).unwrap();
    assert_eq!(
        (ours.tracks[0].samples.len(), ours.tracks[1].samples.len()),
        (200, 200)
    );
    for len in 0..file.len() {
        let _ = demux::demux(Bytes::copy_from_slice(&file[..len]));
    }
    for pos in 0..camera_init.len() {
        let mut bad = camera_init.clone();
        bad[pos] ^= 0xff;
        let _ = demux::demux(Bytes::from(bad));
    }
    let mut parsed = 0;
    for pos in (0..file.len()).step_by(3) {
        for v in [0x00, 0xff] {
            let mut bad = file.clone();
            bad[pos] = v;
            if let Ok(f) = demux::demux(Bytes::from(bad)) {
                parsed += 1;
                for s in f.tracks.iter().flat_map(|t| t.samples.iter()) {
                    assert!(s.range.end <= file.len());
                }
                let _ = f.media_units();
            }
        }
    }
    assert!(parsed > 0, "some corruptions are harmless and still parse");
    // The whole fixture demuxes fragmented (moof) samples with the right counts.
    let whole = demux::demux(demo_clip()).unwrap();
    assert_eq!(
        (whole.tracks[0].samples.len(), whole.tracks[1].samples.len()),
        (193, 372)
    );
    assert_eq!(
        whole.tracks[0].samples.iter().filter(|s| s.is_sync).count(),
        3
    );
}

#[test]
fn bundled_ring_fills_to_keep_and_stops_when_max_bytes_caps_it() {
    let ring = DemoSource::bundled_ring(recorder::PrebufferConfig::default()).unwrap();
    // Full as the ring counts it: 8 s within its 100 ms slack.
    assert!(
        ring.buffered() >= Duration::from_millis(7_900),
        "{:?}",
        ring.buffered()
    );
    let mut reader = ring.reader(Duration::from_secs(8)).unwrap();
    assert!(reader.try_next().unwrap().is_some());

    // A byte cap below one fragment keeps one fragment: the fill must still end.
    let capped = DemoSource::bundled_ring(recorder::PrebufferConfig {
        max_bytes: 1,
        ..recorder::PrebufferConfig::default()
    })
    .unwrap();
    assert!(capped.buffered() < Duration::from_secs(8));
    assert!(capped.buffered() > Duration::ZERO);
}
