//! Byte ingest on bytes we did not produce by hand: the recorder's fMP4 output of the bundled
//! real camera clip (split at many points) and ffmpeg-made Annex B.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, missing_docs)]

mod common;
use common::*;

use recorder::MediaUnit;
use recorder::{DemoSource, Fragmenter, FragmenterConfig, FragmenterEvent};
use source::Error;
use source::ingest::{ByteFormat, ByteIngest};

/// The demo clip (a real HKSV camera recording) as one fMP4 byte stream: init + fragments.
fn demo_fmp4() -> (Vec<u8>, usize) {
    let mut demo = DemoSource::bundled().unwrap();
    let mut f = Fragmenter::new(FragmenterConfig {
        audio_config: demo.audio_config().cloned(),
        ..Default::default()
    })
    .unwrap();
    let mut out = Vec::new();
    let mut seq = 0;
    let mut video_samples = 0;
    while seq < 3 {
        let (_, u) = demo.next_unit();
        let _ = f.push(u);
        while let Some(ev) = f.poll_event() {
            match ev {
                FragmenterEvent::Init(i) => out.extend_from_slice(&i.bytes),
                FragmenterEvent::Fragment(fr) => {
                    seq += 1;
                    video_samples += fr.video.samples.len();
                    let t = recorder::fmp4::FragmentTiming {
                        sequence_number: seq,
                        video_decode_time: fr.video.base_decode_time,
                        audio_decode_time: fr.audio.as_ref().map_or(0, |a| a.base_decode_time),
                    };
                    out.extend_from_slice(&fr.to_bytes(&t));
                }
            }
        }
    }
    (out, video_samples)
}

fn ingest_all(data: &[u8], chunk: usize) -> (ByteIngest, Vec<MediaUnit>) {
    let mut ing = ByteIngest::new("test", None);
    let mut units = Vec::new();
    for c in data.chunks(chunk) {
        ing.push(c).unwrap();
        units.extend(std::iter::from_fn(|| ing.pull()));
    }
    ing.finish();
    units.extend(std::iter::from_fn(|| ing.pull()));
    (ing, units)
}

#[test]
fn fmp4_ingest_is_independent_of_chunking() {
    let (stream, video_samples) = demo_fmp4();
    let (ing, whole) = ingest_all(&stream, stream.len());
    assert_eq!(ing.format(), Some(ByteFormat::Fmp4));
    assert_eq!(
        ing.audio_config().map(|a| a.sample_rate_hz),
        Some(32000),
        "fixture-analysis §3: 32 kHz AAC"
    );
    assert!(matches!(whole[0], MediaUnit::ParameterSets(_)));
    let videos: Vec<i64> = whole
        .iter()
        .filter_map(|u| {
            if let MediaUnit::Video(v) = u {
                Some(v.dts_90k.unwrap())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(videos.len(), video_samples);
    assert!(
        videos.windows(2).all(|w| w[1] > w[0]),
        "decode times increase across fragments"
    );
    for chunk in [1, 7, 188, 4096] {
        let (_, units) = ingest_all(&stream, chunk);
        assert_eq!(units.len(), whole.len(), "chunk {chunk}");
        for (a, b) in units.iter().zip(&whole) {
            assert_eq!(a.time_90k(32000), b.time_90k(32000));
        }
    }
}

#[test]
fn annexb_timing_from_option_and_vui() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.h264");
    encode(&file, "160x120", 25, 25, 2, false, &["-f", "h264"]);
    let data = std::fs::read(&file).unwrap();
    let (ing, units) = ingest_all(&data, 1000);
    assert_eq!(ing.format(), Some(ByteFormat::AnnexB));
    assert_eq!(ing.annexb_fps(), Some(25.0), "from the SPS VUI");
    assert_eq!(units.len(), 50);
    let MediaUnit::Video(v) = &units[1] else {
        panic!()
    };
    assert_eq!(v.pts_90k, 3600);
    let mut ing = ByteIngest::new("test", Some(12.5));
    ing.push(&data).unwrap();
    ing.finish();
    let ts: Vec<i64> = std::iter::from_fn(|| ing.pull())
        .filter_map(|u| {
            if let MediaUnit::Video(v) = u {
                Some(v.pts_90k)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(&ts[..3], &[0, 7200, 14400], "fps option wins");
}

#[test]
fn detection_rejects_by_name() {
    let cases: [(&[u8], &str); 3] = [
        (&[0, 0, 0, 1, 0x40, 0x01, 0x0c, 0x01, 0xff], "H.265"),
        (
            &[0xff, 0xd8, 0xff, 0xe0, 0, 0x10, b'J', b'F', b'I'],
            "MJPEG",
        ),
        (&[0, 0, 1, 0x26, 0x01, 0xaf, 0x00, 0x00, 0x00], "H.265"),
    ];
    for (bytes, name) in cases {
        let mut ing = ByteIngest::new("cam", None);
        let err = ing.push(bytes).unwrap_err();
        assert!(
            matches!(&err, Error::UnsupportedCodec { found, .. } if found == name),
            "{err:?}"
        );
    }
    let mut ing = ByteIngest::new("cam", None);
    assert!(matches!(
        ing.push(b"\x00\x00\x00\x08junk!!!!").unwrap_err(),
        Error::Stream { .. }
    ));
    // A huge box is refused instead of buffered.
    let mut ing = ByteIngest::new("cam", None);
    let err = ing
        .push(&[0xff, 0xff, 0xff, 0xff, b'm', b'o', b'o', b'v', 0])
        .unwrap_err();
    assert!(err.to_string().contains("bound"), "{err}");
}
