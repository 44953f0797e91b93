//! AAC helpers: the AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) and ADTS headers
//! (ISO/IEC 13818-7 §6.2 / 14496-3 §1.A.2).

use bytes::Bytes;

use crate::Error;

/// Sampling frequencies by `samplingFrequencyIndex` (ISO/IEC 14496-3 Table 1.18).
const SAMPLE_RATES_HZ: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// AAC-LC `audioObjectType`.
pub const AOT_AAC_LC: u8 = 2;
/// AAC-ELD `audioObjectType` (the other codec HKSV allows, protocol-notes §6.1).
pub const AOT_AAC_ELD: u8 = 39;

/// A parsed AudioSpecificConfig, keeping its original bytes for `esds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// The raw bytes, copied into `esds` unchanged.
    pub bytes: Bytes,
    /// `audioObjectType` (2 = AAC-LC, 39 = AAC-ELD).
    pub object_type: u8,
    /// Sample rate in Hz; also the audio track's timescale.
    pub sample_rate_hz: u32,
    /// `channelConfiguration` (1 = mono, 2 = stereo).
    pub channels: u8,
    /// Samples per AAC frame: 1024/960 for AAC-LC, 512/480 for AAC-ELD.
    pub samples_per_frame: u32,
}

/// A tiny MSB-first bit reader over untrusted bytes.
struct Bits<'a> {
    data: &'a [u8],
    pos_bits: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: u32) -> Result<u32, Error> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self
                .data
                .get(self.pos_bits / 8)
                .ok_or(Error::MalformedAudio("AudioSpecificConfig truncated"))?;
            let bit = (byte >> (7 - (self.pos_bits % 8))) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos_bits += 1;
        }
        Ok(v)
    }
}

impl AudioSpecificConfig {
    /// Parses an AudioSpecificConfig.
    ///
    /// # Errors
    /// [`Error::MalformedAudio`] if it is truncated, uses a reserved sampling index, has no
    /// channel configuration, or is neither AAC-LC nor AAC-ELD.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Bits {
            data: bytes,
            pos_bits: 0,
        };
        let mut object_type = r.read(5)?;
        if object_type == 31 {
            object_type = 32 + r.read(6)?;
        }
        let freq_index = r.read(4)?;
        let sample_rate_hz = if freq_index == 15 {
            r.read(24)?
        } else {
            *SAMPLE_RATES_HZ
                .get(freq_index as usize)
                .ok_or(Error::MalformedAudio("reserved samplingFrequencyIndex"))?
        };
        let channels = r.read(4)?;
        if channels == 0 || channels > 7 {
            return Err(Error::MalformedAudio("unsupported channelConfiguration"));
        }
        if sample_rate_hz == 0 {
            return Err(Error::MalformedAudio("zero sample rate"));
        }
        let frame_length_flag = r.read(1)?;
        let samples_per_frame = match (object_type, frame_length_flag) {
            (2, 0) => 1024,
            (2, _) => 960,
            (39, 0) => 512,
            (39, _) => 480,
            _ => {
                return Err(Error::MalformedAudio(
                    "only AAC-LC and AAC-ELD are supported",
                ));
            }
        };
        Ok(Self {
            bytes: Bytes::copy_from_slice(bytes),
            object_type: object_type as u8,
            sample_rate_hz,
            channels: channels as u8,
            samples_per_frame,
        })
    }

    /// Builds the two-byte AAC-LC config that an ADTS header implies.
    fn from_adts(profile: u8, freq_index: u8, channels: u8) -> Result<Self, Error> {
        let aot = profile + 1;
        let b0 = (aot << 3) | (freq_index >> 1);
        let b1 = ((freq_index & 1) << 7) | (channels << 3);
        Self::parse(&[b0, b1])
    }
}

/// One ADTS frame found in a buffer.
#[derive(Debug)]
pub(crate) struct AdtsFrame {
    /// The config the header implies.
    pub(crate) config: AudioSpecificConfig,
    /// Byte range of the raw AAC payload inside the buffer.
    pub(crate) payload: std::ops::Range<usize>,
}

/// True if `data` starts with an ADTS sync word and a plausible fixed header.
pub(crate) fn looks_like_adts(data: &[u8]) -> bool {
    matches!(data, [0xff, b1, ..] if b1 & 0xf6 == 0xf0)
}

/// Parses consecutive ADTS frames covering all of `data` (a source may hand several at once).
///
/// # Errors
/// [`Error::MalformedAudio`] on a bad header, a frame length past the end, CRC-protected
/// multi-block frames (unsupported) or trailing bytes.
pub(crate) fn parse_adts(data: &[u8]) -> Result<Vec<AdtsFrame>, Error> {
    let mut frames = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let h = data
            .get(pos..pos + 7)
            .ok_or(Error::MalformedAudio("truncated ADTS header"))?;
        let &[b0, b1, b2, b3, b4, b5, b6] = h else {
            return Err(Error::MalformedAudio("truncated ADTS header"));
        };
        if b0 != 0xff || b1 & 0xf6 != 0xf0 {
            return Err(Error::MalformedAudio("bad ADTS sync word"));
        }
        let protection_absent = b1 & 1 == 1;
        let profile = b2 >> 6;
        let freq_index = (b2 >> 2) & 0xf;
        let channels = ((b2 & 1) << 2) | (b3 >> 6);
        let frame_len = (usize::from(b3 & 3) << 11) | (usize::from(b4) << 3) | usize::from(b5 >> 5);
        let raw_blocks = (b6 & 3) + 1;
        let header_len = if protection_absent { 7 } else { 9 };
        if raw_blocks != 1 {
            return Err(Error::MalformedAudio(
                "multi-block ADTS frames are unsupported",
            ));
        }
        if frame_len <= header_len || pos + frame_len > data.len() {
            return Err(Error::MalformedAudio("ADTS frame length out of range"));
        }
        let config = AudioSpecificConfig::from_adts(profile, freq_index, channels)?;
        frames.push(AdtsFrame {
            config,
            payload: pos + header_len..pos + frame_len,
        });
        pos += frame_len;
    }
    Ok(frames)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn fixture_asc_is_aac_lc_32k_mono() {
        // fixture-analysis §3: AudioSpecificConfig `12 88`.
        let asc = AudioSpecificConfig::parse(&[0x12, 0x88]).unwrap();
        assert_eq!(
            (
                asc.object_type,
                asc.sample_rate_hz,
                asc.channels,
                asc.samples_per_frame
            ),
            (2, 32000, 1, 1024)
        );
    }

    #[test]
    fn eld_uses_escape_object_type() {
        // AOT 39 = 31 + escape 7; 16 kHz (index 8), mono, frameLengthFlag 0 → 512 samples.
        // bits: 11111 000111 1000 0001 0 ...
        let asc = AudioSpecificConfig::parse(&[0xf8, 0xf0, 0x20, 0x00]).unwrap();
        assert_eq!(
            (asc.object_type, asc.sample_rate_hz, asc.channels),
            (39, 16000, 1)
        );
        assert_eq!(asc.samples_per_frame, 512);
    }

    #[test]
    fn adts_round_trip_and_errors() {
        // AAC-LC (profile 1), 48 kHz (index 3), stereo, 10-byte frame (7 header + 3 payload).
        let frame = [0xff, 0xf1, 0x4c, 0x80, 0x01, 0x5f, 0xfc, 1, 2, 3];
        let frames = parse_adts(&frame).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].payload, 7..10);
        assert_eq!(frames[0].config.sample_rate_hz, 48000);
        assert_eq!(frames[0].config.channels, 2);
        assert_eq!(&frames[0].config.bytes[..], &[0x11, 0x90]);
        assert!(parse_adts(&frame[..9]).is_err());
        assert!(parse_adts(&[0xff, 0xf1, 0x4c]).is_err());
        assert!(AudioSpecificConfig::parse(&[0x12]).is_err());
    }
}
