//! [`AacToOpus`]: the camera's AAC-LC access units → mono PCM → the requested rate → Opus
//! packets of exactly the requested packet time (live-view notes §3; issue 13; D22).
//!
//! ```text
//!  LiveAudio (AAC-LC, any rate, 1–2 ch) ─► symphonia AAC decoder ─► downmix to mono
//!     ─► rubato FFT resampler (only when the rate differs) ─► 10/20/40/60 ms Opus frames
//!     (opus-rs, VoIP) ─► one Opus packet per packet time (30 ms = three 10 ms frames, code 3)
//! ```
//!
//! Every packet carries the source time of its first sample (90 kHz, the video's clock), so
//! the RTP side can stamp it and map it for lip sync. A gap or jump in the source's audio
//! timestamps, or a new AudioSpecificConfig, flushes what is buffered and marks the next packet
//! [`OpusPacket::discontinuity`]. Corrupt access units are skipped with an error; a decoder
//! that panics on hostile input is replaced, never unwinds into the stream.

use std::sync::Arc;

use audioadapter_buffers::direct::SequentialSliceOfVecs;
use recorder::LiveAudio;
use recorder::aac::AudioSpecificConfig;
use rubato::{Fft, FixedSync, Resampler};
use symphonia_codec_aac::AacDecoder;
use symphonia_core::codecs::audio::well_known::CODEC_ID_AAC;
use symphonia_core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia_core::packet::PacketRef;
use symphonia_core::units::{Duration as Samples, Timestamp};

/// Opus sample rates HomeKit asks for (115 sample-rate codes 0/1/2).
pub const OPUS_RATES_HZ: [u32; 3] = [8_000, 16_000, 24_000];
/// RTP packet times (ms) HomeKit asks for (117 audio parameters 04).
pub const PACKET_TIMES_MS: [u8; 4] = [20, 30, 40, 60];
/// Largest Opus packet we produce, bytes (RFC 6716 allows 1275 per frame; 24 kbit/s × 60 ms
/// is ~180 B).
const MAX_PACKET_BYTES: usize = 1500;
/// Source audio rates we resample from.
const SOURCE_RATES_HZ: std::ops::RangeInclusive<u32> = 7_350..=96_000;
/// A source timestamp this far (in source samples) from where the previous unit ended is a
/// gap or a jump: half an AAC frame.
const JUMP_SAMPLES: i64 = 512;

/// What the viewer asked for (117 selected audio).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpusTarget {
    /// 8000, 16000 or 24000 Hz: the RTP clock rate too.
    pub sample_rate_hz: u32,
    /// 20, 30, 40 or 60 ms per RTP packet.
    pub packet_time_ms: u8,
    /// Encoder bitrate, bit/s (VBR target; 117 max bitrate, 24 kbit/s in practice).
    pub bitrate_bps: u32,
}

impl OpusTarget {
    /// Samples per packet at the target rate (320 for 20 ms at 16 kHz).
    pub fn packet_samples(&self) -> usize {
        (self.sample_rate_hz as usize) * usize::from(self.packet_time_ms) / 1000
    }
}

/// One Opus packet of exactly [`OpusTarget::packet_samples`] samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusPacket {
    /// The Opus packet (RFC 6716 §3): the RTP payload.
    pub data: Vec<u8>,
    /// Source time of its first sample, 90 kHz.
    pub source_90k: i64,
    /// Samples were dropped or the source jumped before this packet.
    pub discontinuity: bool,
}

/// Why a target or a unit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranscodeError {
    /// A sample rate or packet time HomeKit does not use.
    #[error("unsupported Opus target: {0}")]
    Target(String),
    /// The source's audio is not AAC-LC mono/stereo at a usual rate.
    #[error("unsupported source audio: {0}")]
    Source(String),
    /// One access unit could not be decoded (skipped).
    #[error("AAC decode error: {0}")]
    Decode(String),
    /// The Opus encoder refused a frame (the packet is dropped).
    #[error("Opus encode error: {0}")]
    Encode(&'static str),
}

/// The decoder, resampler and their buffers for one source configuration.
struct Chain {
    config: Arc<AudioSpecificConfig>,
    decoder: AacDecoder,
    /// `None` when the source rate is the target rate.
    resampler: Option<Resampler32>,
}

/// A fixed-input FFT resampler with its input and output buffers.
struct Resampler32 {
    fft: Fft<f32>,
    input: Vec<Vec<f32>>,
    output: Vec<Vec<f32>>,
    /// Output samples still to drop: the resampler's delay after a reset.
    skip: usize,
}

/// The AAC-LC → Opus path of one viewer; see the module docs.
pub struct AacToOpus {
    target: OpusTarget,
    encoder: opus_rs::OpusEncoder,
    /// Opus frame size, samples, and frames per packet (1, or 3 × 10 ms for 30 ms).
    frame_samples: usize,
    frames_per_packet: usize,
    chain: Option<Chain>,
    /// Mono PCM at the source rate, waiting for the resampler.
    pending_in: Vec<f32>,
    /// Mono PCM at the target rate, waiting for a full packet; its first sample's source
    /// time (90 kHz).
    pcm: Vec<f32>,
    pcm_start_90k: Option<i64>,
    /// Where the previous unit ended, source samples.
    expected_pts: Option<i64>,
    discontinuity: bool,
    scratch: Vec<f32>,
    frame_out: Vec<u8>,
    /// Access units decoded.
    pub decoded: u64,
    /// Access units skipped as undecodable.
    pub corrupt: u64,
}

impl std::fmt::Debug for AacToOpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AacToOpus")
            .field("target", &self.target)
            .field("decoded", &self.decoded)
            .field("corrupt", &self.corrupt)
            .finish_non_exhaustive()
    }
}

impl AacToOpus {
    /// A transcoder for `target`.
    ///
    /// # Errors
    /// [`TranscodeError::Target`] for a rate other than 8/16/24 kHz or a packet time other
    /// than 20/30/40/60 ms.
    pub fn new(target: OpusTarget) -> Result<Self, TranscodeError> {
        if !OPUS_RATES_HZ.contains(&target.sample_rate_hz) {
            return Err(TranscodeError::Target(format!(
                "{} Hz",
                target.sample_rate_hz
            )));
        }
        if !PACKET_TIMES_MS.contains(&target.packet_time_ms) {
            return Err(TranscodeError::Target(format!(
                "{} ms packets",
                target.packet_time_ms
            )));
        }
        let rate = target.sample_rate_hz as usize;
        let (frame_ms, frames_per_packet) = match target.packet_time_ms {
            30 => (10, 3),
            t => (usize::from(t), 1),
        };
        let mut encoder =
            opus_rs::OpusEncoder::new(target.sample_rate_hz as i32, 1, opus_rs::Application::Voip)
                .map_err(|e| TranscodeError::Target(e.to_owned()))?;
        encoder.bitrate_bps = target.bitrate_bps.clamp(6_000, 64_000) as i32;
        encoder.use_cbr = false;
        // Complexity 1: a sixth of libopus's default (10) in CPU, for a camera's microphone
        // (D22; `cargo bench -p bridge --bench transcode`).
        encoder.complexity = 1;
        Ok(Self {
            target,
            encoder,
            frame_samples: rate * frame_ms / 1000,
            frames_per_packet,
            chain: None,
            pending_in: Vec::new(),
            pcm: Vec::new(),
            pcm_start_90k: None,
            expected_pts: None,
            discontinuity: false,
            scratch: Vec::new(),
            frame_out: vec![0; MAX_PACKET_BYTES],
            decoded: 0,
            corrupt: 0,
        })
    }

    /// What it encodes to.
    pub fn target(&self) -> OpusTarget {
        self.target
    }

    /// Decodes one access unit and appends every packet it completes to `out`.
    ///
    /// # Errors
    /// [`TranscodeError::Source`] for a configuration it cannot decode (every unit of that
    /// configuration fails the same way), [`TranscodeError::Decode`] for one corrupt unit,
    /// [`TranscodeError::Encode`] when the encoder refused a frame. The transcoder stays
    /// usable after any of them.
    pub fn push(
        &mut self,
        unit: &LiveAudio,
        out: &mut Vec<OpusPacket>,
    ) -> Result<(), TranscodeError> {
        if self.chain.as_ref().is_none_or(|c| c.config != unit.config) {
            self.flush();
            self.chain = Some(self.new_chain(&unit.config)?);
            self.expected_pts = None;
        }
        let rate = i64::from(unit.config.sample_rate_hz);
        if let Some(expected) = self.expected_pts
            && (unit.pts_samples - expected).abs() > JUMP_SAMPLES
        {
            // A gap or a jump: what is buffered no longer joins up with what follows.
            self.flush();
            if let Some(r) = self.chain.as_mut().and_then(|c| c.resampler.as_mut()) {
                r.reset();
            }
        }
        self.decode(unit)?;
        self.decoded += 1;
        let frames = self.scratch.len() as i64;
        self.expected_pts = Some(unit.pts_samples + frames);
        if self.pending_in.is_empty() && self.pcm_start_90k.is_none() {
            // The first samples after a (re)start: they begin at this unit's time.
            self.pcm_start_90k = Some(unit.pts_samples * 90_000 / rate.max(1));
        }
        self.pending_in.append(&mut self.scratch);
        self.resample();
        self.encode_ready(out)
    }

    fn new_chain(&self, config: &Arc<AudioSpecificConfig>) -> Result<Chain, TranscodeError> {
        if config.object_type != recorder::aac::AOT_AAC_LC {
            return Err(TranscodeError::Source(format!(
                "audio object type {} (only AAC-LC)",
                config.object_type
            )));
        }
        if !(1..=2).contains(&config.channels) {
            return Err(TranscodeError::Source(format!(
                "{} channels",
                config.channels
            )));
        }
        if !SOURCE_RATES_HZ.contains(&config.sample_rate_hz) {
            return Err(TranscodeError::Source(format!(
                "{} Hz",
                config.sample_rate_hz
            )));
        }
        let mut params = AudioCodecParameters::new();
        params
            .for_codec(CODEC_ID_AAC)
            .with_sample_rate(config.sample_rate_hz)
            .with_extra_data(config.bytes.to_vec().into_boxed_slice());
        let decoder = AacDecoder::try_new(&params, &AudioDecoderOptions::default())
            .map_err(|e| TranscodeError::Source(e.to_string()))?;
        let resampler = if config.sample_rate_hz == self.target.sample_rate_hz {
            None
        } else {
            let fft = Fft::<f32>::new(
                config.sample_rate_hz as usize,
                self.target.sample_rate_hz as usize,
                config.samples_per_frame.max(256) as usize,
                1,
                FixedSync::Input,
            )
            .map_err(|e| TranscodeError::Source(e.to_string()))?;
            let input = vec![vec![0.0; fft.input_frames_max()]];
            let output = vec![vec![0.0; fft.output_frames_max()]];
            let skip = fft.output_delay();
            Some(Resampler32 {
                fft,
                input,
                output,
                skip,
            })
        };
        Ok(Chain {
            config: Arc::clone(config),
            decoder,
            resampler,
        })
    }

    /// Decodes `unit` into `scratch` as mono f32.
    fn decode(&mut self, unit: &LiveAudio) -> Result<(), TranscodeError> {
        self.scratch.clear();
        let Some(chain) = self.chain.as_mut() else {
            return Ok(());
        };
        let channels = usize::from(chain.config.channels).max(1);
        let expected = channels * chain.config.samples_per_frame as usize;
        let packet = PacketRef::new(
            0,
            Timestamp::new(unit.pts_samples),
            Samples::new(u64::from(chain.config.samples_per_frame)),
            &unit.data,
        );
        let mut interleaved = std::mem::take(&mut self.scratch);
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            chain
                .decoder
                .decode_ref(&packet)
                .map(|buf| buf.copy_to_vec_interleaved::<f32>(&mut interleaved))
                .map_err(|e| e.to_string())
        }));
        let result = match decoded {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(TranscodeError::Decode(e)),
            Err(_) => {
                // The decoder's state is unknown after a panic: start a fresh one.
                let config = Arc::clone(&chain.config);
                self.chain = None;
                self.chain = Some(self.new_chain(&config)?);
                Err(TranscodeError::Decode("decoder panicked".to_owned()))
            }
        };
        if let Err(e) = result {
            self.corrupt += 1;
            self.scratch = interleaved;
            self.scratch.clear();
            return Err(e);
        }
        if interleaved.len() != expected {
            // AAC-LC yields exactly one frame per access unit; anything else is not audio.
            self.corrupt += 1;
            let got = interleaved.len();
            self.scratch = interleaved;
            self.scratch.clear();
            return Err(TranscodeError::Decode(format!(
                "{got} samples decoded, {expected} expected"
            )));
        }
        if channels == 1 {
            self.scratch = interleaved;
        } else {
            self.scratch.clear();
            self.scratch.extend(
                interleaved
                    .chunks_exact(channels)
                    .map(|f| f.iter().sum::<f32>() / channels as f32),
            );
        }
        Ok(())
    }

    /// Moves `pending_in` through the resampler (or straight) into `pcm`.
    fn resample(&mut self) {
        let Some(chain) = self.chain.as_mut() else {
            return;
        };
        let Some(r) = chain.resampler.as_mut() else {
            self.pcm.append(&mut self.pending_in);
            return;
        };
        loop {
            let need = r.fft.input_frames_next();
            if self.pending_in.len() < need {
                return;
            }
            let (Some(input), Some(output)) = (r.input.first_mut(), r.output.first()) else {
                return;
            };
            input.clear();
            input.extend(self.pending_in.drain(..need));
            let out_len = output.len();
            let (Ok(inp), Ok(mut outp)) = (
                SequentialSliceOfVecs::new(&r.input, 1, need),
                SequentialSliceOfVecs::new_mut(&mut r.output, 1, out_len),
            ) else {
                return;
            };
            let Ok((_, written)) = r.fft.process_into_buffer(&inp, &mut outp, None) else {
                return;
            };
            let Some(produced) = r.output.first().and_then(|o| o.get(..written)) else {
                return;
            };
            let dropped = r.skip.min(produced.len());
            r.skip -= dropped;
            self.pcm
                .extend_from_slice(produced.get(dropped..).unwrap_or_default());
        }
    }

    /// Encodes every full packet in `pcm`.
    fn encode_ready(&mut self, out: &mut Vec<OpusPacket>) -> Result<(), TranscodeError> {
        let packet_samples = self.target.packet_samples();
        let mut result = Ok(());
        while self.pcm.len() >= packet_samples {
            let start = self.pcm_start_90k.unwrap_or(0);
            let r = self.encode_packet();
            let samples_90k =
                (packet_samples as i64) * 90_000 / i64::from(self.target.sample_rate_hz);
            self.pcm.drain(..packet_samples);
            self.pcm_start_90k = Some(start + samples_90k);
            match r {
                Ok(data) => out.push(OpusPacket {
                    data,
                    source_90k: start,
                    discontinuity: std::mem::take(&mut self.discontinuity),
                }),
                Err(e) => {
                    self.discontinuity = true;
                    result = Err(e);
                }
            }
        }
        result
    }

    /// One packet from the front of `pcm`.
    fn encode_packet(&mut self) -> Result<Vec<u8>, TranscodeError> {
        let n = self.frame_samples;
        let mut frames = Vec::with_capacity(self.frames_per_packet);
        for i in 0..self.frames_per_packet {
            let pcm = self
                .pcm
                .get(i * n..(i + 1) * n)
                .ok_or(TranscodeError::Encode("short frame"))?;
            let len = self
                .encoder
                .encode(pcm, n, &mut self.frame_out)
                .map_err(TranscodeError::Encode)?;
            frames.push(
                self.frame_out
                    .get(..len)
                    .ok_or(TranscodeError::Encode("encoder overran its buffer"))?
                    .to_vec(),
            );
        }
        match frames.len() {
            1 => frames.pop().ok_or(TranscodeError::Encode("no frame")),
            _ => code3_packet(&frames),
        }
    }

    /// Drops buffered samples (a gap, a new configuration): the next packet is a
    /// discontinuity.
    fn flush(&mut self) {
        if !self.pcm.is_empty() || !self.pending_in.is_empty() || self.expected_pts.is_some() {
            self.discontinuity = true;
        }
        self.pcm.clear();
        self.pending_in.clear();
        self.pcm_start_90k = None;
    }
}

impl Resampler32 {
    fn reset(&mut self) {
        self.fft.reset();
        self.skip = self.fft.output_delay();
    }
}

/// Joins single-frame Opus packets (code 0, one configuration) into one code-3 packet with
/// VBR frame lengths (RFC 6716 §3.2.5).
///
/// # Errors
/// A packet that is not code 0, or packets whose TOC configurations differ.
pub fn code3_packet(frames: &[Vec<u8>]) -> Result<Vec<u8>, TranscodeError> {
    let toc = frames
        .first()
        .and_then(|f| f.first())
        .copied()
        .ok_or(TranscodeError::Encode("empty frame"))?;
    if frames.len() > 48 {
        return Err(TranscodeError::Encode("too many frames"));
    }
    let mut out = Vec::with_capacity(frames.iter().map(Vec::len).sum::<usize>() + 8);
    out.push((toc & 0xfc) | 3);
    out.push(0x80 | frames.len() as u8);
    let mut bodies = Vec::with_capacity(frames.len());
    for f in frames {
        let (&t, body) = f
            .split_first()
            .ok_or(TranscodeError::Encode("empty frame"))?;
        if t & 0x03 != 0 || t & 0xfc != toc & 0xfc {
            return Err(TranscodeError::Encode(
                "frames differ in configuration or are not code 0",
            ));
        }
        bodies.push(body);
    }
    let (last, rest) = bodies
        .split_last()
        .ok_or(TranscodeError::Encode("no frame"))?;
    for b in rest {
        let len = b.len();
        if len < 252 {
            out.push(len as u8);
        } else if len <= 1275 {
            let first = 252 + (len & 3);
            out.push(first as u8);
            out.push(((len - first) / 4) as u8);
        } else {
            return Err(TranscodeError::Encode("frame too long"));
        }
    }
    for b in rest {
        out.extend_from_slice(b);
    }
    out.extend_from_slice(last);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests;
