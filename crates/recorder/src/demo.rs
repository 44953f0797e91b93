//! The demo camera: replays the bundled real HKSV recording (`assets/demo.mp4`, see
//! `assets/SOURCE.md`) as access units, looping forever with continuous timestamps.
//!
//! Pure: [`DemoSource::next_unit`] returns each unit with the time it is due, measured from
//! the start of playback; the caller sleeps until then.

use std::time::Duration;

use bytes::Bytes;

use crate::Error;
use crate::aac::AudioSpecificConfig;
use crate::demux;
use crate::fragmenter::{Fragmenter, FragmenterConfig};
use crate::input::MediaUnit;
use crate::prebuffer::{PrebufferConfig, PrebufferRing};

/// The bundled clip (MIT, from Supereg/secure-video-specification; see `assets/SOURCE.md`).
pub static DEMO_CLIP_MP4: &[u8] = include_bytes!("../assets/demo.mp4");

/// Replays an MP4 file as a live camera.
#[derive(Debug, Clone)]
pub struct DemoSource {
    /// One loop's units (parameter sets excluded), in decode order.
    units: Vec<MediaUnit>,
    parameter_sets: Option<MediaUnit>,
    audio_config: Option<AudioSpecificConfig>,
    audio_rate_hz: u32,
    loop_90k: i64,
    start_90k: i64,
    loop_index: i64,
    pos: usize,
}

impl DemoSource {
    /// The bundled demo clip.
    ///
    /// # Errors
    /// Never in practice (the clip is tested); [`Error::MalformedMp4`] if it were corrupt.
    pub fn bundled() -> Result<Self, Error> {
        Self::from_mp4(Bytes::from_static(DEMO_CLIP_MP4))
    }

    /// Replays any MP4 (plain or fragmented) with an H.264 track and optionally AAC.
    ///
    /// # Errors
    /// [`Error::MalformedMp4`] if it cannot be demuxed or has no video samples.
    pub fn from_mp4(data: Bytes) -> Result<Self, Error> {
        let file = demux::demux(data)?;
        let audio_config = file.audio_config();
        let audio_rate_hz = audio_config.as_ref().map_or(1, |a| a.sample_rate_hz);
        let mut units = file.media_units();
        let parameter_sets = match units.first() {
            Some(MediaUnit::ParameterSets(_)) => Some(units.remove(0)),
            _ => None,
        };
        let mut start = i64::MAX;
        let mut end = i64::MIN;
        for t in &file.tracks {
            let ts = i128::from(t.timescale);
            if let (Some(f), Some(l)) = (t.samples.first(), t.samples.last()) {
                start = start.min((i128::from(f.dts) * 90_000 / ts) as i64);
                end = end.max((i128::from(l.dts + i64::from(l.duration)) * 90_000 / ts) as i64);
            }
        }
        if !units.iter().any(|u| matches!(u, MediaUnit::Video(_))) || end <= start {
            return Err(Error::MalformedMp4("no video samples to replay".into()));
        }
        Ok(Self {
            units,
            parameter_sets,
            audio_config,
            audio_rate_hz,
            loop_90k: end - start,
            start_90k: start,
            loop_index: 0,
            pos: 0,
        })
    }

    /// The clip's AudioSpecificConfig, if it has audio.
    pub fn audio_config(&self) -> Option<&AudioSpecificConfig> {
        self.audio_config.as_ref()
    }

    /// Length of one loop, 90 kHz.
    pub fn loop_duration_90k(&self) -> i64 {
        self.loop_90k
    }

    /// The next unit and when it is due after playback started. Parameter sets come first
    /// (due at 0); then video and audio forever, each loop shifted by the loop length.
    pub fn next_unit(&mut self) -> (Duration, MediaUnit) {
        if let Some(ps) = self.parameter_sets.take() {
            return (Duration::ZERO, ps);
        }
        if self.pos >= self.units.len() {
            self.pos = 0;
            self.loop_index += 1;
        }
        let shift_90k = self.loop_index.saturating_mul(self.loop_90k);
        let shift_samples =
            (i128::from(shift_90k) * i128::from(self.audio_rate_hz) / 90_000) as i64;
        let mut unit = self
            .units
            .get(self.pos)
            .cloned()
            .unwrap_or(MediaUnit::ParameterSets(crate::input::ParameterSets {
                sps: Bytes::new(),
                pps: Bytes::new(),
            }));
        self.pos += 1;
        match &mut unit {
            MediaUnit::Video(v) => {
                v.pts_90k += shift_90k;
                v.dts_90k = v.dts_90k.map(|d| d + shift_90k);
            }
            MediaUnit::Audio(a) => a.pts_samples += shift_samples,
            MediaUnit::ParameterSets(_) => {}
        }
        let due_90k = (unit.time_90k(self.audio_rate_hz) - self.start_90k).max(0);
        (Duration::from_micros(due_90k as u64 * 100 / 9), unit)
    }

    /// A ring filled at once (no clock) from the bundled clip, looped as needed, through a
    /// default fragmenter with the clip's audio, until it buffers `config.keep` — or until
    /// `config.max_bytes` stops it growing (at most two loops more than `keep` needs). For
    /// examples, tests and benches that want a full prebuffer.
    ///
    /// # Errors
    /// As [`PrebufferRing::new`] and [`Fragmenter::new`].
    pub fn bundled_ring(config: PrebufferConfig) -> Result<PrebufferRing, Error> {
        let mut source = Self::bundled()?;
        let keep = config.keep;
        let ring = PrebufferRing::new(config)?;
        let mut fragmenter = Fragmenter::new(FragmenterConfig {
            audio_config: source.audio_config().cloned(),
            ..FragmenterConfig::default()
        })?;
        let loops = keep.as_micros() * 9 / 100 / source.loop_90k.max(1) as u128 + 2;
        let max_units = source.units.len().saturating_mul(loops as usize);
        for _ in 0..max_units {
            // Full as the ring counts it: within its slack of `keep`.
            let slack = Duration::from_micros(crate::prebuffer::SLACK_90K * 100 / 9);
            if ring.buffered() + slack >= keep {
                break;
            }
            // A unit the fragmenter refuses is dropped, as a live camera's would be.
            let _ = fragmenter.push(source.next_unit().1);
            while let Some(event) = fragmenter.poll_event() {
                ring.push_event(event);
            }
        }
        Ok(ring)
    }
}
