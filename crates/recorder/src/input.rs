//! The input model every camera source produces: timestamped H.264 access units and AAC frames.
//!
//! Timestamps are signed 64-bit counts in the unit named by the field: video in 90 kHz ticks
//! (`_90k`, the RTP/MPEG-TS clock), audio in sample-rate ticks (`_samples`). Both tracks of one
//! source must share an origin: audio `pts_samples / sample_rate` and video `pts_90k / 90000`
//! are seconds on the same clock. Sources with 32- or 33-bit wrapping clocks unwrap them first
//! with [`TimestampUnwrapper`].

use bytes::Bytes;

/// How the NAL units of an access unit are delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H264Framing {
    /// Start codes `00 00 01` / `00 00 00 01` (ITU-T H.264 Annex B): RTSP depacketizers,
    /// V4L2, raw `.h264` files.
    AnnexB,
    /// Big-endian length prefixes of `length_size_bytes` (1, 2 or 4) bytes, as in MP4 samples
    /// (ISO/IEC 14496-15 §5.3.3, `lengthSizeMinusOne + 1`).
    Avcc {
        /// Bytes per length prefix.
        length_size_bytes: u8,
    },
}

/// One H.264 access unit (one coded picture, with any SPS/PPS/SEI/AUD that came with it).
#[derive(Debug, Clone)]
pub struct VideoAccessUnit {
    /// Presentation timestamp, 90 kHz.
    pub pts_90k: i64,
    /// Decode timestamp, 90 kHz; `None` means equal to `pts_90k` (no B-frames).
    pub dts_90k: Option<i64>,
    /// The NAL units, framed as `framing` says.
    pub data: Bytes,
    /// How `data` is framed.
    pub framing: H264Framing,
}

/// One AAC frame, raw (needs an AudioSpecificConfig) or with an ADTS header.
#[derive(Debug, Clone)]
pub struct AudioFrame {
    /// Presentation timestamp in sample-rate ticks (1/44100 s for 44.1 kHz audio).
    pub pts_samples: i64,
    /// A raw AAC access unit, or one or more ADTS frames (then `pts_samples` is the first's).
    pub data: Bytes,
}

/// Out-of-band H.264 parameter sets (SDP `sprop-parameter-sets`, an MP4 `avcC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterSets {
    /// One SPS NAL unit, with its NAL header byte, no start code.
    pub sps: Bytes,
    /// One PPS NAL unit, with its NAL header byte, no start code.
    pub pps: Bytes,
}

/// One item a camera source produces, to feed a [`crate::Fragmenter`] with
/// [`crate::Fragmenter::push`].
#[derive(Debug, Clone)]
pub enum MediaUnit {
    /// Out-of-band parameter sets (sent once before the first video unit).
    ParameterSets(ParameterSets),
    /// A video access unit.
    Video(VideoAccessUnit),
    /// An audio frame.
    Audio(AudioFrame),
}

impl MediaUnit {
    /// The unit's presentation time in 90 kHz (for ordering and pacing).
    pub fn time_90k(&self, audio_rate_hz: u32) -> i64 {
        match self {
            Self::ParameterSets(_) => i64::MIN,
            Self::Video(v) => v.dts_90k.unwrap_or(v.pts_90k),
            Self::Audio(a) => {
                (i128::from(a.pts_samples) * 90_000 / i128::from(audio_rate_hz.max(1))) as i64
            }
        }
    }
}

/// Unwraps a wrapping clock (32-bit RTP, 33-bit MPEG-TS) into a monotonic `i64`.
///
/// A step is taken as the shortest signed distance modulo `2^bits`, so jumps of less than half
/// the wrap period in either direction keep their sign.
#[derive(Debug, Clone)]
pub struct TimestampUnwrapper {
    bits: u32,
    last_raw: Option<u64>,
    unwrapped: i64,
}

impl TimestampUnwrapper {
    /// An unwrapper for a `bits`-bit clock (1..=62).
    pub fn new(bits: u32) -> Self {
        Self {
            bits: bits.clamp(1, 62),
            last_raw: None,
            unwrapped: 0,
        }
    }

    /// The unwrapped value of `raw` (only its low `bits` bits are used).
    pub fn unwrap(&mut self, raw: u64) -> i64 {
        let modulus = 1u64 << self.bits;
        let raw = raw & (modulus - 1);
        match self.last_raw {
            None => self.unwrapped = raw as i64,
            Some(last) => {
                let forward = raw.wrapping_sub(last) & (modulus - 1);
                let step = if forward >= modulus / 2 {
                    forward as i64 - modulus as i64
                } else {
                    forward as i64
                };
                self.unwrapped = self.unwrapped.saturating_add(step);
            }
        }
        self.last_raw = Some(raw);
        self.unwrapped
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn unwraps_33_bit_mpeg_ts_clock() {
        let mut u = TimestampUnwrapper::new(33);
        let top = (1u64 << 33) - 3000;
        assert_eq!(u.unwrap(top), top as i64);
        assert_eq!(u.unwrap(0), top as i64 + 3000);
        assert_eq!(u.unwrap(3000), top as i64 + 6000);
        // A small backwards step stays backwards.
        assert_eq!(u.unwrap(1000), top as i64 + 4000);
    }
}
