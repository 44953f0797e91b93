//! Byte-stream ingest (`source::ingest::ByteIngest`) on arbitrary bytes, as a pipe or TCP socket
//! delivers them: the first byte chooses how the rest is chunked. Never panics, and
//! - the units do not depend on the chunking (the crate's own chunking test, for any input);
//! - Annex B: only video units, in Annex B framing, never empty, frame `n` at
//!   `round(n × 90000 / fps)` with the fps the ingest reports (module docs);
//! - fMP4: parameter sets come before the first video unit (`MediaUnit::ParameterSets` docs);
//! - every unit then goes through the recorder's fragmenter as the bridge feeds it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recorder::MediaUnit;
use recorder::{Fragmenter, FragmenterConfig, H264Framing};
use source::ingest::{ByteFormat, ByteIngest};

/// What one run produced, comparable across chunkings.
#[derive(Debug, PartialEq)]
struct Outcome {
    units: Vec<Unit>,
    error: bool,
    format: Option<ByteFormat>,
    fps: Option<f64>,
}

/// A [`MediaUnit`] reduced to comparable parts.
#[derive(Debug, PartialEq)]
enum Unit {
    ParameterSets(Vec<u8>, Vec<u8>),
    Video(i64, Option<i64>, Vec<u8>, String),
    Audio(i64, Vec<u8>),
}

fn unit_of(u: &MediaUnit) -> Unit {
    match u {
        MediaUnit::ParameterSets(ps) => Unit::ParameterSets(ps.sps.to_vec(), ps.pps.to_vec()),
        MediaUnit::Video(v) => Unit::Video(
            v.pts_90k,
            v.dts_90k,
            v.data.to_vec(),
            format!("{:?}", v.framing),
        ),
        MediaUnit::Audio(a) => Unit::Audio(a.pts_samples, a.data.to_vec()),
    }
}

/// Chunk lengths from a seed: 0 → one push; otherwise a small xorshift picks lengths up to a
/// bound (1, 8, 64 or 4096 bytes, by the seed's low bits).
fn chunks(seed: u8, data: &[u8]) -> Vec<&[u8]> {
    if seed == 0 {
        return vec![data];
    }
    let max = [1usize, 8, 64, 4096][usize::from(seed & 3)];
    let mut state = u32::from(seed) | 0x9e37_7900;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % max + 1).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    out
}

/// Pushes the chunks (stopping at the first error: the source then drops the ingest), pulls
/// after every push as the session does, and feeds the fragmenter when asked.
fn run(pieces: &[&[u8]], fragment: bool) -> Outcome {
    let mut ingest = ByteIngest::new("fuzz", None);
    let mut units = Vec::new();
    let mut error = false;
    let mut fragmenter: Option<Fragmenter> = None;
    let mut feed = |ingest: &mut ByteIngest, units: &mut Vec<Unit>| {
        if fragment && fragmenter.is_none() && ingest.is_ready() {
            // As the bridge does on Connected: the audio config is known once ready.
            let config = FragmenterConfig {
                audio_config: ingest.audio_config().cloned(),
                ..Default::default()
            };
            fragmenter = Some(Fragmenter::new(config).expect("default config is valid"));
        }
        while let Some(u) = ingest.pull() {
            units.push(unit_of(&u));
            if let Some(f) = fragmenter.as_mut() {
                let _ = f.push(u);
                while f.poll_event().is_some() {}
            }
        }
    };
    for piece in pieces {
        if ingest.push(piece).is_err() {
            error = true;
            break;
        }
        assert!(!ingest.is_ready() || ingest.format().is_some());
        feed(&mut ingest, &mut units);
    }
    if !error {
        ingest.finish();
    }
    feed(&mut ingest, &mut units);
    if let Some(f) = fragmenter.as_mut() {
        f.finish();
        while f.poll_event().is_some() {}
    }
    Outcome {
        units,
        error,
        format: ingest.format(),
        fps: ingest.annexb_fps(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let whole = run(&[stream], true);

    match whole.format {
        Some(ByteFormat::AnnexB) => {
            let fps = whole.fps.expect("Annex B has a frame rate after finish");
            for (n, u) in whole.units.iter().enumerate() {
                let Unit::Video(pts, dts, data, framing) = u else {
                    panic!("Annex B yields video only: {u:?}");
                };
                assert_eq!(
                    *pts,
                    (n as f64 * 90_000.0 / fps).round() as i64,
                    "frame {n} at {fps} fps"
                );
                assert_eq!(*dts, None);
                assert!(!data.is_empty());
                assert_eq!(*framing, format!("{:?}", H264Framing::AnnexB));
            }
        }
        Some(ByteFormat::Fmp4) => {
            let first_video = whole
                .units
                .iter()
                .position(|u| matches!(u, Unit::Video(..)));
            let first_ps = whole
                .units
                .iter()
                .position(|u| matches!(u, Unit::ParameterSets(..)));
            if let Some(v) = first_video {
                assert!(
                    first_ps.is_some_and(|p| p < v),
                    "parameter sets before video"
                );
            }
        }
        None => assert!(whole.units.is_empty()),
    }

    if seed != 0 {
        let chunked = run(&chunks(seed, stream), false);
        assert_eq!(chunked, whole, "chunking seed {seed}");
    }
});
