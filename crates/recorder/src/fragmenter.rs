//! Access units in, HKSV fragments out: the keyframe-aligned cutter.
//!
//! Sans-IO: push video access units and audio frames in arrival order, then drain
//! [`FragmenterEvent`]s with [`Fragmenter::poll_event`]. An [`FragmenterEvent::Init`] always
//! precedes the first fragment it describes; a new one follows a parameter-set change.
//!
//! Rules (protocol-notes §6.1, fixture-analysis §7):
//! - a stream starts at an IDR; everything before the first IDR is dropped;
//! - a fragment is cut at the first IDR at or after the target length (default 4000 ms);
//!   shorter GOPs are grouped up to the target, a longer GOP is one fragment (and a warning
//!   tells the user to set the camera's I-frame interval);
//! - audio is cut at the AAC frame boundary nearest the video cut (within half a frame);
//! - decode times are continuous from 0 per generation (one init segment): each track's
//!   `tfdt` is the previous `tfdt` plus the previous durations, exactly; a sample's duration is
//!   the distance to the next sample's timestamp, so small clock drift never accumulates;
//! - in-band SPS/PPS/AUD/filler NAL units are removed from samples; parameter sets live only in
//!   `avcC`.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tracing::{debug, warn};

use crate::Error;
use crate::aac::{self, AudioSpecificConfig};
use crate::fmp4::{self, AudioConfig, FragmentData, InitConfig, SampleInfo, TrackRun, VideoConfig};
use crate::h264::{self, NalHeader, NalType, SpsInfo};
use crate::input::{AudioFrame, H264Framing, MediaUnit, ParameterSets, VideoAccessUnit};

/// Fragmenter settings. [`Default`] gives the HKSV values.
#[derive(Debug, Clone)]
pub struct FragmenterConfig {
    /// Target fragment length. Default 4000 ms: the only value HomeKit selects in practice
    /// (protocol-notes §6.1).
    pub fragment_duration: Duration,
    /// Include an audio track (the selected recording configuration has audio and
    /// RecordingAudioActive is 1). Default `true`. When `true` but no AudioSpecificConfig is
    /// known by the first cut (none set here, no ADTS frame seen), the recording has no audio.
    pub record_audio: bool,
    /// Out-of-band AudioSpecificConfig (SDP `config=`, MP4 `esds`). Default `None`.
    pub audio_config: Option<AudioSpecificConfig>,
    /// Bitrate declared in `esds`, bits per second. Default 64000 (as the fixture camera).
    pub audio_bitrate_bps: u32,
    /// A fragment that grows past this without a keyframe is dropped (bounded memory).
    /// Default 20 s.
    pub max_fragment_duration: Duration,
    /// A fragment that grows past this many bytes without a keyframe is dropped. Default
    /// 32 MiB (a 10 s GOP at 20 Mbit/s is 25 MB). At most 256 MiB.
    pub max_fragment_bytes: usize,
    /// A timestamp jump larger than this (either direction) is a discontinuity (camera
    /// reboot, clock wrap that the source did not unwrap): the timeline is re-anchored to
    /// continue seamlessly. Smaller backward steps are rejected as non-monotonic. Default 5 s.
    pub discontinuity_threshold: Duration,
    /// How long a cut waits for audio to reach the cut time before emitting without it.
    /// Default 500 ms.
    pub audio_wait: Duration,
}

impl Default for FragmenterConfig {
    fn default() -> Self {
        Self {
            fragment_duration: Duration::from_millis(4000),
            record_audio: true,
            audio_config: None,
            audio_bitrate_bps: 64_000,
            max_fragment_duration: Duration::from_secs(20),
            max_fragment_bytes: 32 << 20,
            discontinuity_threshold: Duration::from_secs(5),
            audio_wait: Duration::from_millis(500),
        }
    }
}

/// An init segment and the configuration it was written from.
#[derive(Debug, Clone, PartialEq)]
pub struct InitSegment {
    /// `ftyp` + `moov`.
    pub bytes: Bytes,
    /// What it describes.
    pub config: InitConfig,
}

/// A media fragment in shareable form: sample tables plus the `mdat` payload. Its decode
/// times are on the generation's timeline (starting at 0); [`crate::prebuffer`] rebases them
/// per reader.
pub type Fragment = FragmentData;

impl FragmentData {
    /// Start of the fragment on the generation's timeline, 90 kHz.
    pub fn start_90k(&self) -> u64 {
        self.video.base_decode_time
    }

    /// Video duration, 90 kHz.
    pub fn duration_90k(&self) -> u64 {
        self.video.duration()
    }

    /// The complete `moof` + `mdat` bytes with the given timing (copies the payload; the ring
    /// avoids this).
    pub fn to_bytes(&self, timing: &fmp4::FragmentTiming) -> Bytes {
        let mut out = fmp4::write_fragment_header(self, timing);
        for p in self.payload.parts() {
            out.extend_from_slice(p);
        }
        Bytes::from(out)
    }
}

/// What the fragmenter produced.
#[derive(Debug, Clone, PartialEq)]
pub enum FragmenterEvent {
    /// A new init segment: later fragments belong to it.
    Init(InitSegment),
    /// A complete fragment.
    Fragment(Fragment),
}

/// Facts about the source stream, for logs and the bridge's status page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamInfo {
    /// From the current SPS.
    pub sps: Option<SpsInfo>,
    /// Frame rate measured over the last complete GOP.
    pub measured_fps: Option<f64>,
    /// Last complete GOP (keyframe interval), milliseconds.
    pub gop_ms: Option<u64>,
    /// Last complete GOP, frames.
    pub gop_frames: Option<u32>,
    /// Video access units dropped (before the first IDR, bad input, over bounds).
    pub dropped_video_units: u64,
    /// Audio frames dropped (no config, out of order, before the first IDR).
    pub dropped_audio_frames: u64,
}

struct PendingVideo {
    /// Decode time relative to the generation origin, 90 kHz (after re-anchoring).
    dts: i64,
    /// Presentation time relative to the generation origin, 90 kHz.
    pts: i64,
    data: Bytes,
    is_idr: bool,
}

struct PendingAudio {
    /// Presentation time relative to the generation origin, sample-rate ticks.
    pts: i64,
    data: Bytes,
}

struct Generation {
    video: VideoConfig,
    /// Set when the init segment is emitted (at the first cut).
    audio: Option<AudioConfig>,
    init_sent: bool,
    /// Input (offset-corrected) dts and pts of the first IDR, 90 kHz.
    origin_dts_90k: i64,
    origin_pts_90k: i64,
    next_video_dts: u64,
    next_audio_dts: u64,
    video_q: Vec<PendingVideo>,
    video_q_bytes: usize,
    audio_q: VecDeque<PendingAudio>,
    /// Index in `video_q` of the IDR that starts the next fragment, once decided.
    cut: Option<usize>,
    warned_long_gop: bool,
    /// After a bound was hit: drop until the next IDR.
    waiting_for_idr: bool,
}

/// The keyframe-aligned fragmenter. See the module docs.
pub struct Fragmenter {
    config: FragmenterConfig,
    target_90k: i64,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    asc: Option<AudioSpecificConfig>,
    gen_: Option<Generation>,
    events: VecDeque<FragmenterEvent>,
    video_offset_90k: i64,
    last_video_dts: Option<i64>,
    last_frame_duration_90k: i64,
    audio_offset: i64,
    last_audio_pts: Option<i64>,
    /// Audio that arrived before the first IDR (input time + offset), bounded.
    early_audio: VecDeque<PendingAudio>,
    last_idr_dts: Option<i64>,
    frames_since_idr: u32,
    info: StreamInfo,
}

impl std::fmt::Debug for Fragmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fragmenter")
            .field("info", &self.info)
            .field("pending_events", &self.events.len())
            .finish_non_exhaustive()
    }
}

const MAX_EARLY_AUDIO_FRAMES: usize = 64;
/// Bound on queued audio when video stalls (about 30 s of 48 kHz AAC-LC).
const MAX_AUDIO_QUEUE_FRAMES: usize = 1500;

impl Fragmenter {
    /// A fragmenter with `config`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a fragment duration outside 500 ms..=60 s or a byte bound
    /// over 256 MiB.
    pub fn new(config: FragmenterConfig) -> Result<Self, Error> {
        let ms = config.fragment_duration.as_millis();
        if !(500..=60_000).contains(&ms) {
            return Err(Error::InvalidConfig(
                "fragment_duration must be 500 ms..=60 s",
            ));
        }
        if config.max_fragment_bytes > 256 << 20 || config.max_fragment_bytes == 0 {
            return Err(Error::InvalidConfig(
                "max_fragment_bytes must be 1..=256 MiB",
            ));
        }
        Ok(Self {
            target_90k: i64::try_from(ms * 90).unwrap_or(i64::MAX),
            asc: config.audio_config.clone(),
            config,
            sps: None,
            pps: None,
            gen_: None,
            events: VecDeque::new(),
            video_offset_90k: 0,
            last_video_dts: None,
            last_frame_duration_90k: 3000,
            audio_offset: 0,
            last_audio_pts: None,
            early_audio: VecDeque::new(),
            last_idr_dts: None,
            frames_since_idr: 0,
            info: StreamInfo::default(),
        })
    }

    /// Source facts measured so far.
    pub fn stream_info(&self) -> &StreamInfo {
        &self.info
    }

    /// Bytes held in pending (not yet emitted) samples: the fragmenter's memory footprint.
    pub fn pending_bytes(&self) -> usize {
        let early: usize = self.early_audio.iter().map(|a| a.data.len()).sum();
        self.gen_.as_ref().map_or(0, |g| {
            g.video_q_bytes + g.audio_q.iter().map(|a| a.data.len()).sum::<usize>()
        }) + early
    }

    /// Pushes one unit from a source: parameter sets go to [`Fragmenter::set_parameter_sets`],
    /// video to [`Fragmenter::push_video`], audio to [`Fragmenter::push_audio`].
    ///
    /// # Errors
    /// As [`Fragmenter::push_video`] and [`Fragmenter::push_audio`]: the unit was dropped, the
    /// fragmenter stays usable. Parameter sets are never refused.
    pub fn push(&mut self, unit: MediaUnit) -> Result<(), Error> {
        match unit {
            MediaUnit::ParameterSets(ps) => {
                self.set_parameter_sets(ps);
                Ok(())
            }
            MediaUnit::Video(v) => self.push_video(v),
            MediaUnit::Audio(a) => self.push_audio(a),
        }
    }

    /// Sets out-of-band parameter sets; they take effect at the next IDR (as in-band ones do).
    pub fn set_parameter_sets(&mut self, ps: ParameterSets) {
        self.sps = Some(ps.sps);
        self.pps = Some(ps.pps);
    }

    /// Takes the next event, oldest first.
    pub fn poll_event(&mut self) -> Option<FragmenterEvent> {
        self.events.pop_front()
    }

    /// Pushes one video access unit.
    ///
    /// # Errors
    /// The unit was dropped because it is malformed ([`Error::MalformedVideo`]), its SPS is
    /// unparseable ([`Error::BadSps`]), it is an IDR without parameter sets
    /// ([`Error::MissingParameterSets`]), its timestamp went backwards
    /// ([`Error::NonMonotonic`]), or the pending fragment hit a bound
    /// ([`Error::FragmentTooLong`]). The fragmenter stays usable.
    pub fn push_video(&mut self, au: VideoAccessUnit) -> Result<(), Error> {
        let res = self.push_video_inner(au);
        if res.is_err() {
            self.info.dropped_video_units += 1;
        }
        res
    }

    fn push_video_inner(&mut self, au: VideoAccessUnit) -> Result<(), Error> {
        let nals: Vec<&[u8]> = h264::nal_units(&au.data, au.framing).collect::<Result<_, _>>()?;
        let mut is_idr = false;
        let mut has_vcl = false;
        let mut keep_all = true;
        let mut sample_len = 0usize;
        for &nal in &nals {
            let Some(header) = NalHeader::of(nal) else {
                continue; // nal_units yields no empty NAL units
            };
            if header.forbidden_zero_bit() {
                return Err(Error::MalformedVideo("forbidden_zero_bit set"));
            }
            match header.nal_type() {
                NalType::SPS => {
                    self.sps = Some(au.data.slice_ref(nal));
                    keep_all = false;
                }
                NalType::PPS => {
                    self.pps = Some(au.data.slice_ref(nal));
                    keep_all = false;
                }
                t if !kept_in_samples(t) => keep_all = false,
                t => {
                    is_idr |= t == NalType::IDR;
                    has_vcl |= t.is_vcl();
                    sample_len += 4 + nal.len();
                }
            }
        }
        if !has_vcl {
            return Ok(()); // parameter sets or SEI only: nothing to record
        }
        let data = if keep_all
            && au.framing
                == (H264Framing::Avcc {
                    length_size_bytes: 4,
                }) {
            au.data.clone()
        } else {
            let mut out = BytesMut::with_capacity(sample_len);
            for &nal in &nals {
                if !h264::nal_type(nal).is_some_and(kept_in_samples) {
                    continue;
                }
                out.put_u32(
                    u32::try_from(nal.len()).map_err(|_| Error::MalformedVideo("NAL too large"))?,
                );
                out.put_slice(nal);
            }
            out.freeze()
        };

        // Timestamps: offset-corrected, monotonic, discontinuities re-anchored.
        let raw_dts = au.dts_90k.unwrap_or(au.pts_90k);
        let cto_in = au.pts_90k.saturating_sub(raw_dts);
        let mut dts = raw_dts.saturating_add(self.video_offset_90k);
        let threshold =
            i64::try_from(self.config.discontinuity_threshold.as_millis() * 90).unwrap_or(i64::MAX);
        if let Some(last) = self.last_video_dts {
            let delta = dts.saturating_sub(last);
            if delta.abs() > threshold {
                let shift = last + self.last_frame_duration_90k - dts;
                debug!(
                    delta_90k = delta,
                    "video timestamp discontinuity; re-anchoring"
                );
                self.video_offset_90k = self.video_offset_90k.saturating_add(shift);
                dts = last + self.last_frame_duration_90k;
            } else if delta <= 0 {
                return Err(Error::NonMonotonic {
                    track: "video",
                    previous: last,
                    got: dts,
                });
            } else {
                self.last_frame_duration_90k = delta;
            }
        }
        self.last_video_dts = Some(dts);
        let pts = dts.saturating_add(cto_in.max(0));

        if is_idr {
            self.on_idr_stats(dts);
            self.start_or_switch_generation(dts, pts)?;
        } else {
            self.frames_since_idr = self.frames_since_idr.saturating_add(1);
        }
        let Some(g) = self.gen_.as_mut() else {
            return Ok(()); // before the first IDR: dropped by design
        };
        if g.waiting_for_idr && !is_idr {
            return Ok(());
        }
        let rel_dts = dts - g.origin_dts_90k;
        if is_idr {
            if g.waiting_for_idr {
                // Resume after a dropped fragment: continue the timeline where it stopped.
                let shift = g.next_video_dts as i64 - rel_dts;
                g.origin_dts_90k -= shift;
                g.origin_pts_90k -= shift;
                g.waiting_for_idr = false;
                g.audio_q.clear();
            } else if let Some(first) = g.video_q.first() {
                let elapsed = rel_dts - first.dts;
                let tolerance = self.last_frame_duration_90k / 2;
                if elapsed + tolerance >= self.target_90k {
                    if g.cut.is_some() {
                        Self::emit(g, &self.config, self.asc.as_ref(), &mut self.events, None);
                    }
                    let g = self
                        .gen_
                        .as_mut()
                        .ok_or(Error::InvalidConfig("unreachable"))?;
                    g.cut = Some(g.video_q.len());
                    if elapsed > self.target_90k * 3 / 2 && !g.warned_long_gop {
                        g.warned_long_gop = true;
                        let fps = self.info.measured_fps.unwrap_or(30.0);
                        warn!(
                            gop_ms = elapsed / 90,
                            target_ms = self.target_90k / 90,
                            "the camera's keyframe interval is longer than the HKSV fragment \
                             length; set the camera's I-frame interval to 4 × fps ({} frames)",
                            (fps * 4.0).round()
                        );
                    }
                }
            }
        }
        let g = self
            .gen_
            .as_mut()
            .ok_or(Error::InvalidConfig("unreachable"))?;
        let (rel_dts, rel_pts) = (dts - g.origin_dts_90k, pts - g.origin_pts_90k);
        g.video_q_bytes += data.len();
        g.video_q.push(PendingVideo {
            dts: rel_dts,
            pts: rel_pts,
            data,
            is_idr,
        });
        let start = g.video_q.first().map_or(rel_dts, |f| f.dts);
        let max_90k =
            i64::try_from(self.config.max_fragment_duration.as_millis() * 90).unwrap_or(i64::MAX);
        if g.cut.is_none()
            && (g.video_q_bytes > self.config.max_fragment_bytes || rel_dts - start > max_90k)
        {
            let err = Error::FragmentTooLong {
                duration_ms: u64::try_from((rel_dts - start) / 90).unwrap_or(0),
                bytes: g.video_q_bytes,
            };
            g.video_q.clear();
            g.video_q_bytes = 0;
            g.audio_q.clear();
            g.waiting_for_idr = true;
            return Err(err);
        }
        self.try_emit();
        Ok(())
    }

    fn on_idr_stats(&mut self, dts: i64) {
        if let Some(last) = self.last_idr_dts {
            let gop = dts - last;
            if gop > 0 && self.frames_since_idr > 0 {
                let frames = self.frames_since_idr + 1;
                self.info.gop_ms = u64::try_from(gop / 90).ok();
                self.info.gop_frames = Some(frames);
                self.info.measured_fps = Some(f64::from(frames) * 90_000.0 / gop as f64);
            }
        }
        self.last_idr_dts = Some(dts);
        self.frames_since_idr = 0;
    }

    /// At an IDR: start the first generation, or a new one if the parameter sets changed.
    fn start_or_switch_generation(&mut self, dts: i64, pts: i64) -> Result<(), Error> {
        let (Some(sps), Some(pps)) = (self.sps.clone(), self.pps.clone()) else {
            return Err(Error::MissingParameterSets);
        };
        if let Some(g) = &self.gen_
            && g.video.sps == sps
            && g.video.pps == pps
        {
            return Ok(());
        }
        let info = SpsInfo::parse(&sps)?;
        if let Some(mut g) = self.gen_.take() {
            debug!("parameter sets changed; ending the recording generation");
            let end = dts - g.origin_dts_90k;
            if g.cut.is_some() {
                Self::emit(
                    &mut g,
                    &self.config,
                    self.asc.as_ref(),
                    &mut self.events,
                    None,
                );
            }
            if !g.video_q.is_empty() && !g.waiting_for_idr {
                Self::emit(
                    &mut g,
                    &self.config,
                    self.asc.as_ref(),
                    &mut self.events,
                    Some(end),
                );
            }
        }
        self.info.sps = Some(info.clone());
        let mut g = Generation {
            video: VideoConfig { sps, pps, info },
            audio: None,
            init_sent: false,
            origin_dts_90k: dts,
            origin_pts_90k: pts,
            next_video_dts: 0,
            next_audio_dts: 0,
            video_q: Vec::new(),
            video_q_bytes: 0,
            audio_q: VecDeque::new(),
            cut: None,
            warned_long_gop: false,
            waiting_for_idr: false,
        };
        if let Some(asc) = &self.asc {
            let origin = to_samples(pts, asc.sample_rate_hz);
            g.audio_q.extend(
                self.early_audio
                    .drain(..)
                    .map(|a| PendingAudio {
                        pts: a.pts - origin,
                        data: a.data,
                    })
                    .filter(|a| a.pts >= 0),
            );
        }
        self.early_audio.clear();
        self.gen_ = Some(g);
        Ok(())
    }

    /// Pushes one audio frame (raw AAC, or one or more ADTS frames).
    ///
    /// # Errors
    /// The frame was dropped: raw AAC with no AudioSpecificConfig
    /// ([`Error::AudioWithoutConfig`]), a bad ADTS header ([`Error::MalformedAudio`]), or a
    /// timestamp that went backwards ([`Error::NonMonotonic`]).
    pub fn push_audio(&mut self, frame: AudioFrame) -> Result<(), Error> {
        let res = self.push_audio_inner(frame);
        if res.is_err() {
            self.info.dropped_audio_frames += 1;
        }
        res
    }

    fn push_audio_inner(&mut self, frame: AudioFrame) -> Result<(), Error> {
        if !self.config.record_audio {
            return Ok(());
        }
        let mut payloads: Vec<Bytes> = Vec::new();
        if aac::looks_like_adts(&frame.data) {
            for f in aac::parse_adts(&frame.data)? {
                match &self.asc {
                    None => self.asc = Some(f.config.clone()),
                    Some(asc)
                        if asc.sample_rate_hz != f.config.sample_rate_hz
                            || asc.channels != f.config.channels
                            || asc.object_type != f.config.object_type =>
                    {
                        return Err(Error::MalformedAudio(
                            "ADTS header disagrees with the audio config",
                        ));
                    }
                    Some(_) => {}
                }
                payloads.push(frame.data.slice(f.payload));
            }
        } else {
            if self.asc.is_none() {
                return Err(Error::AudioWithoutConfig);
            }
            if frame.data.is_empty() {
                return Err(Error::MalformedAudio("empty AAC frame"));
            }
            payloads.push(frame.data);
        }
        let asc = self.asc.as_ref().ok_or(Error::AudioWithoutConfig)?;
        let spf = i64::from(asc.samples_per_frame);
        let rate = asc.sample_rate_hz;
        let threshold = to_samples(
            i64::try_from(self.config.discontinuity_threshold.as_millis() * 90).unwrap_or(i64::MAX),
            rate,
        );
        let mut pts = frame.pts_samples.saturating_add(self.audio_offset);
        if let Some(last) = self.last_audio_pts {
            let delta = pts.saturating_sub(last);
            if delta.abs() > threshold {
                // Re-anchor onto the video clock when possible, else continue the audio clock.
                let target = self
                    .last_video_dts
                    .map_or(last + spf, |v| to_samples(v, rate).max(last + 1));
                self.audio_offset = self.audio_offset.saturating_add(target - pts);
                pts = target;
            } else if delta <= 0 {
                return Err(Error::NonMonotonic {
                    track: "audio",
                    previous: last,
                    got: pts,
                });
            }
        } else if let Some(v) = self.last_video_dts {
            // First audio frame: if its clock is far from the video clock, anchor it there.
            let v_samples = to_samples(v, rate);
            if (pts - v_samples).abs() > threshold {
                self.audio_offset = self.audio_offset.saturating_add(v_samples - pts);
                pts = v_samples;
            }
        }
        for (k, data) in payloads.into_iter().enumerate() {
            let p = pts + spf * k as i64;
            self.last_audio_pts = Some(p);
            match self.gen_.as_mut() {
                Some(g) if g.init_sent && g.audio.is_none() => {
                    self.info.dropped_audio_frames += 1; // recording started without audio
                }
                Some(g) => {
                    let origin = to_samples(g.origin_pts_90k, rate);
                    if p - origin >= 0 && !g.waiting_for_idr {
                        g.audio_q.push_back(PendingAudio {
                            pts: p - origin,
                            data,
                        });
                        if g.audio_q.len() > MAX_AUDIO_QUEUE_FRAMES {
                            g.audio_q.pop_front();
                            self.info.dropped_audio_frames += 1;
                        }
                    }
                }
                None => {
                    self.early_audio.push_back(PendingAudio { pts: p, data });
                    if self.early_audio.len() > MAX_EARLY_AUDIO_FRAMES {
                        self.early_audio.pop_front();
                    }
                }
            }
        }
        self.try_emit();
        Ok(())
    }

    /// Ends the stream: the fragment in progress is emitted (its last sample gets the previous
    /// frame's duration).
    pub fn finish(&mut self) {
        if let Some(mut g) = self.gen_.take() {
            if g.cut.is_some() {
                Self::emit(
                    &mut g,
                    &self.config,
                    self.asc.as_ref(),
                    &mut self.events,
                    None,
                );
            }
            if let Some(last) = g.video_q.last()
                && !g.waiting_for_idr
            {
                let end = last.dts + self.last_frame_duration_90k.max(1);
                Self::emit(
                    &mut g,
                    &self.config,
                    self.asc.as_ref(),
                    &mut self.events,
                    Some(end),
                );
            }
        }
    }

    fn try_emit(&mut self) {
        let Some(g) = self.gen_.as_mut() else { return };
        let Some(cut) = g.cut else { return };
        let Some(cut_frame) = g.video_q.get(cut) else {
            return;
        };
        let latest = g.video_q.last().map_or(cut_frame.dts, |f| f.dts);
        let audio_expected =
            self.config.record_audio && self.asc.is_some() && !(g.init_sent && g.audio.is_none());
        let audio_ready = match (&self.asc, g.audio_q.back()) {
            _ if !audio_expected => true,
            (Some(asc), Some(last)) => last.pts >= to_samples(cut_frame.pts, asc.sample_rate_hz),
            _ => false,
        };
        let waited = latest - cut_frame.dts
            >= i64::try_from(self.config.audio_wait.as_millis() * 90).unwrap_or(i64::MAX);
        if audio_ready || waited {
            Self::emit(g, &self.config, self.asc.as_ref(), &mut self.events, None);
        }
    }

    /// Emits the fragment `video_q[..cut]` (or all of `video_q` ending at `end_dts` when
    /// `end_dts` is given), with the audio that belongs to it.
    fn emit(
        g: &mut Generation,
        config: &FragmenterConfig,
        asc: Option<&AudioSpecificConfig>,
        events: &mut VecDeque<FragmenterEvent>,
        end_dts: Option<i64>,
    ) {
        let (count, end, end_pts) = match (end_dts, g.cut) {
            (Some(end), _) => (
                g.video_q.len(),
                end,
                end + g.video_q.last().map_or(0, |l| l.pts - l.dts),
            ),
            (None, Some(cut)) => match g.video_q.get(cut) {
                Some(f) => (cut, f.dts, f.pts),
                None => return,
            },
            (None, None) => return,
        };
        g.cut = None;
        if count == 0 {
            return;
        }
        if !g.init_sent {
            g.init_sent = true;
            g.audio = asc.filter(|_| config.record_audio).map(|asc| AudioConfig {
                asc: asc.clone(),
                bitrate_bps: config.audio_bitrate_bps,
            });
            if config.record_audio && g.audio.is_none() {
                // Most often a camera without audio; the embedder reports what the source has.
                debug!("no AudioSpecificConfig known; recording without audio");
            }
            events.push_back(FragmenterEvent::Init(InitSegment {
                bytes: fmp4::write_init_segment(&InitConfig {
                    video: g.video.clone(),
                    audio: g.audio.clone(),
                }),
                config: InitConfig {
                    video: g.video.clone(),
                    audio: g.audio.clone(),
                },
            }));
        }
        let video: Vec<PendingVideo> = g.video_q.drain(..count).collect();
        g.video_q_bytes = g.video_q.iter().map(|v| v.data.len()).sum();
        if let Some(c) = g.cut.as_mut() {
            *c -= count;
        }

        // Video samples: decode times pinned to the continuous timeline.
        let mut samples = Vec::with_capacity(video.len());
        let mut cur = g.next_video_dts as i64;
        for (i, v) in video.iter().enumerate() {
            let next = video.get(i + 1).map_or(end, |n| n.dts);
            let duration = (next - cur).clamp(1, i64::from(u32::MAX));
            let cto = (v.pts - cur).clamp(i64::from(i32::MIN), i64::from(i32::MAX));
            samples.push(SampleInfo {
                duration: duration as u32,
                size_bytes: u32::try_from(v.data.len()).unwrap_or(u32::MAX),
                composition_offset: cto as i32,
                is_sync: v.is_idr,
            });
            cur += duration;
        }
        let video_run = TrackRun {
            base_decode_time: g.next_video_dts,
            samples,
        };
        g.next_video_dts = cur as u64;

        // Audio: frames whose midpoint precedes the video cut's presentation time.
        let mut audio_frames = Vec::new();
        let audio_run = g.audio.as_ref().map(|a| {
            let rate = a.asc.sample_rate_hz;
            let spf = i64::from(a.asc.samples_per_frame);
            let cut_a = to_samples(end_pts, rate);
            // A final fragment (end of stream or of generation) takes all remaining audio.
            let last = end_dts.is_some();
            while g
                .audio_q
                .front()
                .is_some_and(|f| last || f.pts + spf / 2 <= cut_a)
            {
                if let Some(f) = g.audio_q.pop_front() {
                    audio_frames.push(f);
                }
            }
            let mut samples = Vec::with_capacity(audio_frames.len());
            let mut cur = g.next_audio_dts as i64;
            for (i, f) in audio_frames.iter().enumerate() {
                let next = audio_frames
                    .get(i + 1)
                    .or(g.audio_q.front())
                    .map_or(f.pts + spf, |n| n.pts);
                let duration = (next - cur).clamp(1, i64::from(u32::MAX));
                samples.push(SampleInfo {
                    duration: duration as u32,
                    size_bytes: u32::try_from(f.data.len()).unwrap_or(u32::MAX),
                    composition_offset: 0,
                    is_sync: true,
                });
                cur += duration;
            }
            let run = TrackRun {
                base_decode_time: g.next_audio_dts,
                samples,
            };
            g.next_audio_dts = cur as u64;
            run
        });
        if g.audio.is_none() {
            g.audio_q.clear();
        }

        // The samples' own buffers, in mdat order: no copy at the cut.
        let payload = fmp4::Payload::from_parts(
            video
                .into_iter()
                .map(|v| v.data)
                .chain(audio_frames.into_iter().map(|a| a.data)),
        );
        events.push_back(FragmenterEvent::Fragment(FragmentData {
            video: video_run,
            audio: audio_run,
            payload,
        }));
    }
}

/// Whether NAL units of type `t` stay in a recorded sample: parameter sets live only in
/// `avcC`, and delimiters, end markers and filler mean nothing inside one MP4 sample.
fn kept_in_samples(t: NalType) -> bool {
    !matches!(
        t,
        NalType::SPS
            | NalType::PPS
            | NalType::AUD
            | NalType::END_OF_SEQ
            | NalType::END_OF_STREAM
            | NalType::FILLER
    )
}

/// Converts 90 kHz ticks to sample-rate ticks (rounding toward negative infinity).
fn to_samples(t_90k: i64, rate_hz: u32) -> i64 {
    (i128::from(t_90k) * i128::from(rate_hz)).div_euclid(90_000) as i64
}
