//! Typed HKSV camera TLVs: the recording configurations (205, 206, 207, 209), the data stream
//! transport (130, 131) and the RTP streaming values a camera must still expose (114, 115, 116,
//! 120).
//!
//! Layouts: protocol-notes §3.1–§3.7 (HAP-NodeJS `RecordingManagement.ts`,
//! `DataStreamManagement.ts`, `RTPStreamManagement.ts`). Lists are repeated items of one type,
//! separated by zero-length items of type 0 when two entries of the same type follow each other
//! (HAP-NodeJS `encodeList`); the decoders accept them with or without separators.
//!
//! Parsing never panics: malformed bytes give [`Error::Tlv`] (a [`crate::Error`]), values the
//! HKSV tables do not define give [`Error::Unknown`].

use crate::{Tlv8, TlvType};

/// Why a typed HKSV TLV could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Malformed TLV8 (truncated, missing item, wrong length).
    #[error(transparent)]
    Tlv(#[from] crate::Error),
    /// A field holds a value the protocol tables do not define (e.g. an unknown codec).
    #[error("{field}: unknown value {value}")]
    Unknown {
        /// Which field (protocol-notes names).
        field: &'static str,
        /// The value received.
        value: u64,
    },
}

const SEP: TlvType = TlvType(0);

pub(crate) fn t(n: u8) -> TlvType {
    TlvType(n)
}

/// Appends one item per value, with a `00 00` separator between consecutive entries.
fn push_list<'a>(tlv: &mut Tlv8, ty: TlvType, values: impl IntoIterator<Item = &'a [u8]>) {
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            tlv.push_separator(SEP);
        }
        tlv.push(ty, v);
    }
}

pub(crate) fn require_nested(tlv: &Tlv8, ty: TlvType) -> Result<Tlv8, Error> {
    Ok(Tlv8::decode(tlv.require(ty)?)?)
}

/// 206/207 share one shape: a `00 00`-separated list of codec configurations under type 1.
fn encode_codec_list<T>(codecs: &[T], encode: impl Fn(&T) -> Vec<u8>) -> Vec<u8> {
    let items: Vec<Vec<u8>> = codecs.iter().map(encode).collect();
    let mut tlv = Tlv8::new();
    push_list(&mut tlv, t(1), items.iter().map(Vec::as_slice));
    tlv.encode()
}

fn decode_codec_list<T>(
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    Tlv8::decode(bytes)?.get_all(t(1)).map(decode).collect()
}

pub(crate) fn uint<T: TryFrom<u64>>(
    tlv: &Tlv8,
    ty: TlvType,
    field: &'static str,
) -> Result<T, Error> {
    let v = tlv.require_uint(ty)?;
    T::try_from(v).map_err(|_| Error::Unknown { field, value: v })
}

fn one_byte(v: &[u8], ty: TlvType) -> Result<u8, Error> {
    match v {
        [b] => Ok(*b),
        _ => Err(crate::Error::BadLength {
            ty,
            len_bytes: v.len(),
            min_bytes: 1,
            max_bytes: 1,
        }
        .into()),
    }
}

// ---- enums --------------------------------------------------------------------------------

/// Event trigger bitmask (§3.1, 8 bytes LE on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EventTriggers(pub u64);

impl EventTriggers {
    /// Motion (0x01).
    pub const MOTION: Self = Self(0x01);
    /// Doorbell (0x02).
    pub const DOORBELL: Self = Self(0x02);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// H.264 profile code (§3.5; shared with RTP streaming).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum H264Profile {
    /// Constrained Baseline / Baseline (0).
    Baseline = 0,
    /// Main (1).
    Main = 1,
    /// High (2).
    High = 2,
}

/// H.264 level code (§3.5): only three levels exist in HomeKit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum H264Level {
    /// Level 3.1 (0).
    L3_1 = 0,
    /// Level 3.2 (1).
    L3_2 = 1,
    /// Level 4.0 (2).
    L4_0 = 2,
}

/// Recording audio codec (§3.3): NOT the RTP streaming codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordingAudioCodec {
    /// AAC-LC (0).
    AacLc = 0,
    /// AAC-ELD (1).
    AacEld = 1,
}

/// Audio sample rate code (§3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleRate {
    /// 8 kHz (0).
    Hz8000 = 0,
    /// 16 kHz (1).
    Hz16000 = 1,
    /// 24 kHz (2).
    Hz24000 = 2,
    /// 32 kHz (3).
    Hz32000 = 3,
    /// 44.1 kHz (4).
    Hz44100 = 4,
    /// 48 kHz (5).
    Hz48000 = 5,
}

/// Maps a fieldless enum to and from its wire byte without `unsafe` or panics.
macro_rules! code_enum {
    ($ty:ident, $field:literal, [$($v:ident),+]) => {
        impl $ty {
            /// The wire code.
            pub fn code(self) -> u8 {
                self as u8
            }

            /// From the wire code.
            ///
            /// # Errors
            /// [`Error::Unknown`] for a code the protocol does not define.
            pub fn from_code(code: u8) -> Result<Self, Error> {
                $(if code == Self::$v as u8 { return Ok(Self::$v); })+
                Err(Error::Unknown { field: $field, value: u64::from(code) })
            }
        }
    };
}
pub(crate) use code_enum;

code_enum!(H264Profile, "H.264 profile", [Baseline, Main, High]);
code_enum!(H264Level, "H.264 level", [L3_1, L3_2, L4_0]);
code_enum!(
    RecordingAudioCodec,
    "recording audio codec",
    [AacLc, AacEld]
);
code_enum!(
    SampleRate,
    "audio sample rate",
    [Hz8000, Hz16000, Hz24000, Hz32000, Hz44100, Hz48000]
);

impl SampleRate {
    /// The rate in Hz.
    pub fn hz(self) -> u32 {
        match self {
            Self::Hz8000 => 8000,
            Self::Hz16000 => 16000,
            Self::Hz24000 => 24000,
            Self::Hz32000 => 32000,
            Self::Hz44100 => 44100,
            Self::Hz48000 => 48000,
        }
    }

    /// The code for a rate in Hz, if HomeKit defines one.
    pub fn from_hz(hz: u32) -> Option<Self> {
        [
            Self::Hz8000,
            Self::Hz16000,
            Self::Hz24000,
            Self::Hz32000,
            Self::Hz44100,
            Self::Hz48000,
        ]
        .into_iter()
        .find(|r| r.hz() == hz)
    }
}

/// Video codec type 0 = H.264 (§3.2). H.265 (1) is reserved and refused.
const VIDEO_CODEC_H264: u8 = 0;
/// Media container type 0 = fragmented MP4 (§3.1).
pub const CONTAINER_FRAGMENTED_MP4: u8 = 0;

fn check_h264(codec: u8) -> Result<(), Error> {
    if codec == VIDEO_CODEC_H264 {
        Ok(())
    } else {
        Err(Error::Unknown {
            field: "video codec",
            value: u64::from(codec),
        })
    }
}

// ---- 205 ----------------------------------------------------------------------------------

/// One media container configuration (§3.1 type 0x03).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MediaContainer {
    /// Container type; only [`CONTAINER_FRAGMENTED_MP4`] exists.
    pub container_type: u8,
    /// Fragment length, milliseconds.
    pub fragment_length_ms: u32,
}

impl MediaContainer {
    fn encode(&self) -> Tlv8 {
        let mut params = Tlv8::new();
        params.push_u32(t(1), self.fragment_length_ms);
        let mut tlv = Tlv8::new();
        tlv.push_u8(t(1), self.container_type)
            .push_nested(t(2), &params);
        tlv
    }

    fn decode(tlv: &Tlv8) -> Result<Self, Error> {
        let container_type = tlv.require_u8(t(1))?;
        if container_type != CONTAINER_FRAGMENTED_MP4 {
            return Err(Error::Unknown {
                field: "media container type",
                value: u64::from(container_type),
            });
        }
        let params = require_nested(tlv, t(2))?;
        Ok(Self {
            container_type,
            fragment_length_ms: uint(&params, t(1), "fragment length")?,
        })
    }
}

/// SupportedCameraRecordingConfiguration (205, §3.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SupportedCameraRecordingConfiguration {
    /// Prebuffer the camera keeps, milliseconds (≥ 4000).
    pub prebuffer_ms: u32,
    /// Triggers the camera can signal.
    pub event_triggers: EventTriggers,
    /// Container configurations (HAP-NodeJS: one).
    pub containers: Vec<MediaContainer>,
}

impl SupportedCameraRecordingConfiguration {
    /// TLV8 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut tlv = Tlv8::new();
        tlv.push_u32(t(1), self.prebuffer_ms)
            .push_u64(t(2), self.event_triggers.0);
        let items: Vec<Vec<u8>> = self
            .containers
            .iter()
            .map(|c| c.encode().encode())
            .collect();
        push_list(&mut tlv, t(3), items.iter().map(Vec::as_slice));
        tlv.encode()
    }

    /// Parses TLV8 bytes.
    ///
    /// # Errors
    /// [`Error`] for malformed bytes or an unknown container type.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let tlv = Tlv8::decode(bytes)?;
        let containers = tlv
            .get_all(t(3))
            .map(|v| MediaContainer::decode(&Tlv8::decode(v)?))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            prebuffer_ms: uint(&tlv, t(1), "prebuffer length")?,
            event_triggers: EventTriggers(tlv.require_uint(t(2))?),
            containers,
        })
    }
}

// ---- 206 ----------------------------------------------------------------------------------

/// Width, height and frame rate (§3.2 type 0x03).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VideoAttributes {
    /// Pixels.
    pub width: u16,
    /// Pixels.
    pub height: u16,
    /// Frames per second.
    pub fps: u8,
}

impl VideoAttributes {
    fn encode(&self) -> Vec<u8> {
        let mut tlv = Tlv8::new();
        tlv.push_u16(t(1), self.width)
            .push_u16(t(2), self.height)
            .push_u8(t(3), self.fps);
        tlv.encode()
    }

    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let tlv = Tlv8::decode(bytes)?;
        Ok(Self {
            width: uint(&tlv, t(1), "width")?,
            height: uint(&tlv, t(2), "height")?,
            fps: uint(&tlv, t(3), "frame rate")?,
        })
    }
}

/// One video codec configuration of 206 (H.264 only).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VideoCodecConfiguration {
    /// Profiles offered.
    pub profiles: Vec<H264Profile>,
    /// Levels offered.
    pub levels: Vec<H264Level>,
    /// Resolutions and frame rates offered.
    pub attributes: Vec<VideoAttributes>,
}

impl VideoCodecConfiguration {
    fn encode(&self) -> Vec<u8> {
        let profiles: Vec<[u8; 1]> = self.profiles.iter().map(|p| [p.code()]).collect();
        let levels: Vec<[u8; 1]> = self.levels.iter().map(|l| [l.code()]).collect();
        let mut params = Tlv8::new();
        push_list(&mut params, t(1), profiles.iter().map(|b| &b[..]));
        push_list(&mut params, t(2), levels.iter().map(|b| &b[..]));
        let attrs: Vec<Vec<u8>> = self
            .attributes
            .iter()
            .map(VideoAttributes::encode)
            .collect();
        let mut tlv = Tlv8::new();
        tlv.push_u8(t(1), VIDEO_CODEC_H264)
            .push_nested(t(2), &params);
        push_list(&mut tlv, t(3), attrs.iter().map(Vec::as_slice));
        tlv.encode()
    }

    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let tlv = Tlv8::decode(bytes)?;
        check_h264(tlv.require_u8(t(1))?)?;
        let params = require_nested(&tlv, t(2))?;
        Ok(Self {
            profiles: params
                .get_all(t(1))
                .map(|v| H264Profile::from_code(one_byte(v, t(1))?))
                .collect::<Result<_, _>>()?,
            levels: params
                .get_all(t(2))
                .map(|v| H264Level::from_code(one_byte(v, t(2))?))
                .collect::<Result<_, _>>()?,
            attributes: tlv
                .get_all(t(3))
                .map(VideoAttributes::decode)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// SupportedVideoRecordingConfiguration (206, §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SupportedVideoRecordingConfiguration {
    /// Codec configurations (HAP-NodeJS: exactly one, H.264).
    pub codecs: Vec<VideoCodecConfiguration>,
}

impl SupportedVideoRecordingConfiguration {
    /// TLV8 bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_codec_list(&self.codecs, VideoCodecConfiguration::encode)
    }

    /// Parses TLV8 bytes.
    ///
    /// # Errors
    /// [`Error`] for malformed bytes, a codec other than H.264, or unknown profile/level codes.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        Ok(Self {
            codecs: decode_codec_list(bytes, VideoCodecConfiguration::decode)?,
        })
    }
}

// ---- 207 ----------------------------------------------------------------------------------

/// One audio codec configuration of 207.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AudioCodecConfiguration {
    /// Codec.
    pub codec: RecordingAudioCodec,
    /// Channels (≥ 1).
    pub channels: u8,
    /// Bitrate mode: 0 variable, 1 constant.
    pub bitrate_mode: u8,
    /// Sample rates offered.
    pub sample_rates: Vec<SampleRate>,
}

impl AudioCodecConfiguration {
    fn encode(&self) -> Vec<u8> {
        let rates: Vec<[u8; 1]> = self.sample_rates.iter().map(|r| [r.code()]).collect();
        let mut params = Tlv8::new();
        params
            .push_u8(t(1), self.channels)
            .push_u8(t(2), self.bitrate_mode);
        push_list(&mut params, t(3), rates.iter().map(|b| &b[..]));
        let mut tlv = Tlv8::new();
        tlv.push_u8(t(1), self.codec.code())
            .push_nested(t(2), &params);
        tlv.encode()
    }

    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let tlv = Tlv8::decode(bytes)?;
        let codec = RecordingAudioCodec::from_code(tlv.require_u8(t(1))?)?;
        let params = require_nested(&tlv, t(2))?;
        Ok(Self {
            codec,
            channels: params.require_u8(t(1))?,
            bitrate_mode: params.require_u8(t(2))?,
            sample_rates: params
                .get_all(t(3))
                .map(|v| SampleRate::from_code(one_byte(v, t(3))?))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// SupportedAudioRecordingConfiguration (207, §3.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SupportedAudioRecordingConfiguration {
    /// Codec configurations.
    pub codecs: Vec<AudioCodecConfiguration>,
}

impl SupportedAudioRecordingConfiguration {
    /// TLV8 bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_codec_list(&self.codecs, AudioCodecConfiguration::encode)
    }

    /// Parses TLV8 bytes.
    ///
    /// # Errors
    /// [`Error`] for malformed bytes or unknown codec / sample-rate codes.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        Ok(Self {
            codecs: decode_codec_list(bytes, AudioCodecConfiguration::decode)?,
        })
    }
}

// ---- 209 ----------------------------------------------------------------------------------

/// The selected video parameters (§3.4 type 0x02).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SelectedVideo {
    /// Profile.
    pub profile: H264Profile,
    /// Level.
    pub level: H264Level,
    /// Bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// Key frame interval, milliseconds.
    pub iframe_interval_ms: u32,
    /// Resolution and frame rate.
    pub attributes: VideoAttributes,
}

/// The selected audio parameters (§3.4 type 0x03).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SelectedAudio {
    /// Codec.
    pub codec: RecordingAudioCodec,
    /// Channels.
    pub channels: u8,
    /// Bitrate mode: 0 variable, 1 constant.
    pub bitrate_mode: u8,
    /// Sample rate.
    pub sample_rate: SampleRate,
    /// Maximum bitrate, kbit/s.
    pub max_bitrate_kbps: u32,
}

/// SelectedCameraRecordingConfiguration (209, §3.4), written by the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SelectedCameraRecordingConfiguration {
    /// Prebuffer to send before the trigger, milliseconds.
    pub prebuffer_ms: u32,
    /// Triggers the hub enabled.
    pub event_triggers: EventTriggers,
    /// Container.
    pub container: MediaContainer,
    /// Video.
    pub video: SelectedVideo,
    /// Audio (hubs always send it; optional here for robustness).
    pub audio: Option<SelectedAudio>,
}

impl SelectedCameraRecordingConfiguration {
    /// TLV8 bytes, in HAP-NodeJS's item order.
    pub fn encode(&self) -> Vec<u8> {
        let mut general = Tlv8::new();
        general
            .push_u32(t(1), self.prebuffer_ms)
            .push_u64(t(2), self.event_triggers.0)
            .push_nested(t(3), &self.container.encode());
        let v = &self.video;
        let mut vparams = Tlv8::new();
        vparams
            .push_u8(t(1), v.profile.code())
            .push_u8(t(2), v.level.code())
            .push_u32(t(3), v.bitrate_kbps)
            .push_u32(t(4), v.iframe_interval_ms);
        let mut video = Tlv8::new();
        video
            .push_u8(t(1), VIDEO_CODEC_H264)
            .push_nested(t(2), &vparams)
            .push(t(3), &v.attributes.encode());
        let mut top = Tlv8::new();
        top.push_nested(t(1), &general).push_nested(t(2), &video);
        if let Some(a) = &self.audio {
            let mut aparams = Tlv8::new();
            aparams
                .push_u8(t(1), a.channels)
                .push_u8(t(2), a.bitrate_mode)
                .push_u8(t(3), a.sample_rate.code())
                .push_u32(t(4), a.max_bitrate_kbps);
            let mut audio = Tlv8::new();
            audio
                .push_u8(t(1), a.codec.code())
                .push_nested(t(2), &aparams);
            top.push_nested(t(3), &audio);
        }
        top.encode()
    }

    /// Parses the hub's write.
    ///
    /// # Errors
    /// [`Error`] for malformed bytes, a codec other than H.264 / AAC, or unknown codes.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let top = Tlv8::decode(bytes)?;
        let general = require_nested(&top, t(1))?;
        let container = MediaContainer::decode(&require_nested(&general, t(3))?)?;
        let video = require_nested(&top, t(2))?;
        check_h264(video.require_u8(t(1))?)?;
        let vparams = require_nested(&video, t(2))?;
        let video = SelectedVideo {
            profile: H264Profile::from_code(vparams.require_u8(t(1))?)?,
            level: H264Level::from_code(vparams.require_u8(t(2))?)?,
            bitrate_kbps: uint(&vparams, t(3), "video bitrate")?,
            iframe_interval_ms: uint(&vparams, t(4), "I-frame interval")?,
            attributes: VideoAttributes::decode(video.require(t(3))?)?,
        };
        let audio = match top.nested(t(3))? {
            None => None,
            Some(a) => {
                let codec = RecordingAudioCodec::from_code(a.require_u8(t(1))?)?;
                let p = require_nested(&a, t(2))?;
                Some(SelectedAudio {
                    codec,
                    channels: p.require_u8(t(1))?,
                    bitrate_mode: p.require_u8(t(2))?,
                    sample_rate: SampleRate::from_code(p.require_u8(t(3))?)?,
                    max_bitrate_kbps: uint(&p, t(4), "audio bitrate")?,
                })
            }
        };
        Ok(Self {
            prebuffer_ms: uint(&general, t(1), "prebuffer length")?,
            event_triggers: EventTriggers(general.require_uint(t(2))?),
            container,
            video,
            audio,
        })
    }
}

// ---- 130 / 131 ----------------------------------------------------------------------------

/// SupportedDataStreamTransportConfiguration (130, §3.6): one entry, HDS over TCP (type 0).
pub fn supported_data_stream_transport_configuration() -> Vec<u8> {
    let mut entry = Tlv8::new();
    entry.push_u8(t(1), 0);
    let mut tlv = Tlv8::new();
    tlv.push_nested(t(1), &entry);
    tlv.encode()
}

/// A SetupDataStreamTransport (131) write (§3.6).
#[derive(Clone, PartialEq, Eq)]
pub struct SetupDataStreamRequest {
    /// The controller's key salt.
    pub controller_salt: [u8; 32],
}

impl core::fmt::Debug for SetupDataStreamRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SetupDataStreamRequest")
            .finish_non_exhaustive()
    }
}

impl SetupDataStreamRequest {
    /// Parses the write; HAP-NodeJS refuses anything but command 0 (start session), transport
    /// 0 (HDS over TCP) and a 32-byte salt with HAP status -70410.
    ///
    /// # Errors
    /// [`Error::Unknown`] for another command or transport, [`Error::Tlv`] for a missing item
    /// or a salt that is not 32 bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let tlv = Tlv8::decode(bytes)?;
        let command = tlv.require_u8(t(1))?;
        if command != 0 {
            return Err(Error::Unknown {
                field: "session command type",
                value: u64::from(command),
            });
        }
        let transport = tlv.require_u8(t(2))?;
        if transport != 0 {
            return Err(Error::Unknown {
                field: "transport type",
                value: u64::from(transport),
            });
        }
        Ok(Self {
            controller_salt: tlv.require_array::<32>(t(3))?,
        })
    }

    /// TLV8 bytes (the hub's side).
    pub fn encode(&self) -> Vec<u8> {
        let mut tlv = Tlv8::new();
        tlv.push_u8(t(1), 0)
            .push_u8(t(2), 0)
            .push(t(3), &self.controller_salt);
        tlv.encode()
    }
}

/// The SetupDataStreamTransport write-response (§3.6).
#[derive(Clone, PartialEq, Eq)]
pub struct SetupDataStreamResponse {
    /// 0 success, 1 generic error, 2 busy.
    pub status: u8,
    /// HDS TCP port (with status 0).
    pub port: Option<u16>,
    /// Our key salt (only in the write-response, never in a later read).
    pub accessory_salt: Option<[u8; 32]>,
}

impl core::fmt::Debug for SetupDataStreamResponse {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SetupDataStreamResponse")
            .field("status", &self.status)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl SetupDataStreamResponse {
    /// TLV8 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut tlv = Tlv8::new();
        tlv.push_u8(t(1), self.status);
        if let Some(port) = self.port {
            let mut params = Tlv8::new();
            params.push_u16(t(1), port);
            tlv.push_nested(t(2), &params);
        }
        if let Some(salt) = &self.accessory_salt {
            tlv.push(t(3), salt);
        }
        tlv.encode()
    }

    /// Parses TLV8 bytes (the hub's side).
    ///
    /// # Errors
    /// [`Error::Tlv`] for malformed bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let tlv = Tlv8::decode(bytes)?;
        let port = match tlv.nested(t(2))? {
            Some(p) => Some(uint(&p, t(1), "TCP port")?),
            None => None,
        };
        let accessory_salt = match tlv.get(t(3)) {
            Some(_) => Some(tlv.require_array::<32>(t(3))?),
            None => None,
        };
        Ok(Self {
            status: tlv.require_u8(t(1))?,
            port,
            accessory_salt,
        })
    }
}

// ---- RTP streaming (114, 115, 116, 120) ---------------------------------------------------

/// SupportedVideoStreamConfiguration (114, §3.7): one H.264 codec, packetization mode 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportedVideoStreamConfiguration {
    /// Profiles offered.
    pub profiles: Vec<H264Profile>,
    /// Levels offered.
    pub levels: Vec<H264Level>,
    /// Resolutions and frame rates offered.
    pub attributes: Vec<VideoAttributes>,
}

impl SupportedVideoStreamConfiguration {
    /// TLV8 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let profiles: Vec<[u8; 1]> = self.profiles.iter().map(|p| [p.code()]).collect();
        let levels: Vec<[u8; 1]> = self.levels.iter().map(|l| [l.code()]).collect();
        let mut params = Tlv8::new();
        push_list(&mut params, t(1), profiles.iter().map(|b| &b[..]));
        push_list(&mut params, t(2), levels.iter().map(|b| &b[..]));
        params.push_u8(t(3), 0);
        let attrs: Vec<Vec<u8>> = self
            .attributes
            .iter()
            .map(VideoAttributes::encode)
            .collect();
        let mut codec = Tlv8::new();
        codec
            .push_u8(t(1), VIDEO_CODEC_H264)
            .push_nested(t(2), &params);
        push_list(&mut codec, t(3), attrs.iter().map(Vec::as_slice));
        let mut tlv = Tlv8::new();
        tlv.push_nested(t(1), &codec);
        tlv.encode()
    }
}

/// RTP streaming audio codec codes (§3.7; differ from the recording codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamingAudioCodec {
    /// AAC-ELD (2).
    AacEld = 2,
    /// Opus (3).
    Opus = 3,
}

/// SupportedAudioStreamConfiguration (115, §3.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportedAudioStreamConfiguration {
    /// Codec, 1 channel, variable bitrate, with these sample rates (8/16/24 kHz only).
    pub codecs: Vec<(StreamingAudioCodec, Vec<SampleRate>)>,
    /// Comfort noise support.
    pub comfort_noise: bool,
}

impl SupportedAudioStreamConfiguration {
    /// TLV8 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let items: Vec<Vec<u8>> = self
            .codecs
            .iter()
            .map(|(codec, rates)| {
                let rates: Vec<[u8; 1]> = rates.iter().map(|r| [r.code()]).collect();
                let mut params = Tlv8::new();
                params.push_u8(t(1), 1).push_u8(t(2), 0);
                push_list(&mut params, t(3), rates.iter().map(|b| &b[..]));
                let mut c = Tlv8::new();
                c.push_u8(t(1), *codec as u8).push_nested(t(2), &params);
                c.encode()
            })
            .collect();
        let mut tlv = Tlv8::new();
        push_list(&mut tlv, t(1), items.iter().map(Vec::as_slice));
        tlv.push_u8(t(2), u8::from(self.comfort_noise));
        tlv.encode()
    }
}

/// SupportedRTPConfiguration (116, §3.7) with the given SRTP crypto suites (0
/// AES_CM_128_HMAC_SHA1_80, 1 AES_256_CM_HMAC_SHA1_80, 2 none).
pub fn supported_rtp_configuration(suites: &[u8]) -> Vec<u8> {
    let items: Vec<[u8; 1]> = suites.iter().map(|s| [*s]).collect();
    let mut tlv = Tlv8::new();
    push_list(&mut tlv, t(2), items.iter().map(|b| &b[..]));
    tlv.encode()
}

/// StreamingStatus (120, §3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamingStatus {
    /// 0.
    Available = 0,
    /// 1.
    InUse = 1,
    /// 2.
    Unavailable = 2,
}

impl StreamingStatus {
    /// TLV8 bytes.
    pub fn encode(self) -> Vec<u8> {
        let mut tlv = Tlv8::new();
        tlv.push_u8(t(1), self as u8);
        tlv.encode()
    }

    /// Parses TLV8 bytes.
    ///
    /// # Errors
    /// [`Error`] for malformed bytes or an unknown status.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        match Tlv8::decode(bytes)?.require_u8(t(1))? {
            0 => Ok(Self::Available),
            1 => Ok(Self::InUse),
            2 => Ok(Self::Unavailable),
            v => Err(Error::Unknown {
                field: "streaming status",
                value: u64::from(v),
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// §3.1 HAP-NodeJS example: prebuffer 8000, motion + doorbell, fMP4 4000 ms.
    #[test]
    fn supported_camera_recording_configuration_vector() {
        let bytes = hex(
            "01 04 40 1f 00 00 02 08 03 00 00 00 00 00 00 00 03 0b 01 01 00 02 06 01 04 a0 0f 00 00",
        );
        let c = SupportedCameraRecordingConfiguration::decode(&bytes).unwrap();
        assert_eq!(c.prebuffer_ms, 8000);
        assert!(c.event_triggers.contains(EventTriggers::MOTION));
        assert!(c.event_triggers.contains(EventTriggers::DOORBELL));
        assert_eq!(
            c.containers,
            vec![MediaContainer {
                container_type: 0,
                fragment_length_ms: 4000
            }]
        );
        assert_eq!(c.encode(), bytes);
    }

    /// §3.2 HAP-NodeJS example (its first bytes): Main; levels 3.1 and 4.0; 1600x1200@24 first.
    #[test]
    fn supported_video_recording_configuration_vector_prefix() {
        let c = SupportedVideoRecordingConfiguration {
            codecs: vec![VideoCodecConfiguration {
                profiles: vec![H264Profile::Main],
                levels: vec![H264Level::L3_1, H264Level::L4_0],
                attributes: vec![
                    VideoAttributes {
                        width: 1600,
                        height: 1200,
                        fps: 24,
                    },
                    VideoAttributes {
                        width: 1920,
                        height: 1080,
                        fps: 30,
                    },
                ],
            }],
        };
        let bytes = c.encode();
        assert_eq!(bytes[0], 0x01);
        assert_eq!(usize::from(bytes[1]), bytes.len() - 2);
        let expected = hex(
            "01 01 00 02 0b 01 01 01 02 01 00 00 00 02 01 02 03 0b 01 02 40 06 02 02 b0 04 03 01 18 00 00 03 0b",
        );
        assert_eq!(&bytes[2..2 + expected.len()], &expected[..]);
        assert_eq!(
            SupportedVideoRecordingConfiguration::decode(&bytes).unwrap(),
            c
        );
    }

    /// §3.3 HAP-NodeJS example: AAC-LC, mono, variable bitrate, 32 kHz.
    #[test]
    fn supported_audio_recording_configuration_vector() {
        let bytes = hex("01 0e 01 01 00 02 09 01 01 01 02 01 00 03 01 03");
        let c = SupportedAudioRecordingConfiguration::decode(&bytes).unwrap();
        assert_eq!(
            c.codecs,
            vec![AudioCodecConfiguration {
                codec: RecordingAudioCodec::AacLc,
                channels: 1,
                bitrate_mode: 0,
                sample_rates: vec![SampleRate::Hz32000],
            }]
        );
        assert_eq!(c.encode(), bytes);
    }

    const SELECTED_B64_HEX: &str = "011d0104a00f000002080100000000000000030b01010002060104a00f000002240101000212010101020102\
         0304d00700000404a00f0000030b0102b004020240060301180314010100020f010101020100030103040440000000";

    /// §3.4 HAP-NodeJS base64 vector (hex of
    /// `AR0BBKAPAAACCAEAAAAAAAAAAwsBAQACBgEEoA8AAAIkAQEAAhIBAQECAQIDBNAHAAAEBKAPAAADCwECsAQCAkAGAwEYAxQBAQACDwEBAQIBAAMBAwQEQAAAAA==`).
    #[test]
    fn selected_camera_recording_configuration_vector() {
        let bytes = hex(SELECTED_B64_HEX);
        let c = SelectedCameraRecordingConfiguration::decode(&bytes).unwrap();
        assert_eq!(c.prebuffer_ms, 4000);
        assert_eq!(c.event_triggers, EventTriggers::MOTION);
        assert_eq!(c.container.fragment_length_ms, 4000);
        assert_eq!(c.video.profile, H264Profile::Main);
        assert_eq!(c.video.level, H264Level::L4_0);
        assert_eq!(
            (c.video.bitrate_kbps, c.video.iframe_interval_ms),
            (2000, 4000)
        );
        assert_eq!(
            c.video.attributes,
            VideoAttributes {
                width: 1200,
                height: 1600,
                fps: 24
            }
        );
        let a = c.audio.unwrap();
        assert_eq!(a.codec, RecordingAudioCodec::AacLc);
        assert_eq!(
            (a.channels, a.bitrate_mode, a.sample_rate),
            (1, 0, SampleRate::Hz32000)
        );
        assert_eq!(a.max_bitrate_kbps, 64);
        assert_eq!(c.encode(), bytes);
    }

    #[test]
    fn selected_configuration_unknown_codecs_and_malformed_bytes_are_errors() {
        let good = hex(SELECTED_B64_HEX);
        // Video codec byte (H.264 = 0) at offset 35 → 1 (H.265, reserved).
        let mut h265 = good.clone();
        assert_eq!(&h265[33..36], &[0x01, 0x01, 0x00]);
        h265[35] = 1;
        assert!(matches!(
            SelectedCameraRecordingConfiguration::decode(&h265),
            Err(Error::Unknown {
                field: "video codec",
                value: 1
            })
        ));
        // Audio codec (offset 73) → 7.
        let mut audio = good.clone();
        assert_eq!(&audio[71..74], &[0x01, 0x01, 0x00]);
        audio[73] = 7;
        assert!(matches!(
            SelectedCameraRecordingConfiguration::decode(&audio),
            Err(Error::Unknown {
                field: "recording audio codec",
                ..
            })
        ));
        // Cut anywhere but at the end of the video item (audio is optional) → error.
        for cut in (0..good.len()).filter(|c| *c != 69) {
            assert!(
                SelectedCameraRecordingConfiguration::decode(&good[..cut]).is_err(),
                "{cut}"
            );
        }
        // Flipping any byte never panics.
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0xff;
            let _ = SelectedCameraRecordingConfiguration::decode(&b);
        }
    }

    /// §3.6: the real write from hjdhjd/homebridge-unifi-protect #1263, and the rejections.
    #[test]
    fn setup_data_stream_transport_vectors() {
        let bytes = hex(
            "01 01 00 02 01 00 03 20 f0 b7 48 01 43 7e b2 3d 73 6a 72 2e ed 6a 0c b6 8b 59 b5 44 46 68 4e b3 64 19 7b 72 fe 4c 15 db",
        );
        let req = SetupDataStreamRequest::decode(&bytes).unwrap();
        assert_eq!(&req.controller_salt[..4], &[0xf0, 0xb7, 0x48, 0x01]);
        assert_eq!(req.encode(), bytes);
        assert!(!format!("{req:?}").contains("240"), "salt not printed");
        let mut bad = bytes.clone();
        bad[2] = 1;
        assert!(SetupDataStreamRequest::decode(&bad).is_err(), "command 1");
        let mut bad = bytes.clone();
        bad[5] = 1;
        assert!(SetupDataStreamRequest::decode(&bad).is_err(), "transport 1");
        assert!(SetupDataStreamRequest::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut short = bytes[..6].to_vec();
        short.extend_from_slice(&[3, 2, 1, 2]);
        assert!(
            SetupDataStreamRequest::decode(&short).is_err(),
            "2-byte salt"
        );

        let resp = SetupDataStreamResponse {
            status: 0,
            port: Some(0x1234),
            accessory_salt: Some([9; 32]),
        };
        let enc = resp.encode();
        assert_eq!(&enc[..7], &[1, 1, 0, 2, 4, 1, 2]);
        assert_eq!(&enc[7..9], &[0x34, 0x12]);
        assert_eq!(SetupDataStreamResponse::decode(&enc).unwrap(), resp);
        assert_eq!(
            supported_data_stream_transport_configuration(),
            hex("01 03 01 01 00")
        );
    }

    #[test]
    fn rtp_static_values() {
        assert_eq!(StreamingStatus::Available.encode(), vec![1, 1, 0]);
        assert_eq!(
            StreamingStatus::decode(&[1, 1, 2]).unwrap(),
            StreamingStatus::Unavailable
        );
        assert!(StreamingStatus::decode(&[1, 1, 9]).is_err());
        assert_eq!(
            supported_rtp_configuration(&[0, 2]),
            vec![2, 1, 0, 0, 0, 2, 1, 2]
        );
        let v = SupportedVideoStreamConfiguration {
            profiles: vec![H264Profile::Main],
            levels: vec![H264Level::L4_0],
            attributes: vec![VideoAttributes {
                width: 1920,
                height: 1080,
                fps: 30,
            }],
        }
        .encode();
        let outer = Tlv8::decode(&v).unwrap();
        let codec = outer.nested(TlvType(1)).unwrap().unwrap();
        let params = codec.nested(TlvType(2)).unwrap().unwrap();
        assert_eq!(params.require_u8(TlvType(3)), Ok(0), "packetization mode");
        let a = SupportedAudioStreamConfiguration {
            codecs: vec![(
                StreamingAudioCodec::Opus,
                vec![SampleRate::Hz16000, SampleRate::Hz24000],
            )],
            comfort_noise: false,
        }
        .encode();
        let outer = Tlv8::decode(&a).unwrap();
        assert_eq!(
            outer
                .nested(TlvType(1))
                .unwrap()
                .unwrap()
                .require_u8(TlvType(1)),
            Ok(3)
        );
        assert_eq!(outer.require_u8(TlvType(2)), Ok(0));
    }
}
