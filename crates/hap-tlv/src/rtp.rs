//! Typed live-view TLVs of CameraRTPStreamManagement: SetupEndpoints (118, request and
//! read-back) and SelectedRTPStreamConfiguration (117).
//!
//! Layouts: live-view-notes §1.2 (HAP-NodeJS `RTPStreamManagement.ts`, go2rtc
//! `ch117_selected_stream.go` / `ch118_setup_endpoints.go`). All integers little-endian; items
//! are read in any order (iOS puts the SRTP suite after key and salt). Parsing never panics.

use crate::hksv::{
    Error, H264Level, H264Profile, SampleRate, VideoAttributes, code_enum, require_nested, t, uint,
};
use crate::{Tlv8, TlvType};

/// Default max MTU for IPv4 when 117 carries none.
pub const DEFAULT_MTU_IPV4: u16 = 1378;
/// Default max MTU for IPv6 when 117 carries none.
pub const DEFAULT_MTU_IPV6: u16 = 1228;

fn nested(tlv: &Tlv8, ty: TlvType) -> Result<Option<Tlv8>, Error> {
    Ok(tlv.nested(ty)?)
}

fn opt_uint<T: TryFrom<u64>>(
    tlv: &Tlv8,
    ty: TlvType,
    field: &'static str,
) -> Result<Option<T>, Error> {
    match tlv.get_uint(ty)? {
        None => Ok(None),
        Some(v) => T::try_from(v)
            .map(Some)
            .map_err(|_| Error::Unknown { field, value: v }),
    }
}

/// Streaming sample-rate code (0 = 8k, 1 = 16k, 2 = 24k); same codes as [`SampleRate`], but
/// only these three are valid for live view.
pub fn streaming_sample_rate(code: u8) -> Result<SampleRate, Error> {
    match code {
        0 => Ok(SampleRate::Hz8000),
        1 => Ok(SampleRate::Hz16000),
        2 => Ok(SampleRate::Hz24000),
        _ => Err(Error::Unknown {
            field: "streaming sample rate",
            value: u64::from(code),
        }),
    }
}

/// The 16-byte session id (a raw UUID).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 16]);

impl core::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SessionId(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

impl SessionId {
    fn decode(tlv: &Tlv8, ty: TlvType) -> Result<Self, Error> {
        Ok(Self(tlv.require_array::<16>(ty)?))
    }
}

/// IP version of an endpoint address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4 (0).
    V4 = 0,
    /// IPv6 (1).
    V6 = 1,
}

/// SRTP crypto suite (116 / 118).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    /// AES_CM_128_HMAC_SHA1_80 (0).
    AesCm128HmacSha1_80 = 0,
    /// AES_256_CM_HMAC_SHA1_80 (1).
    Aes256CmHmacSha1_80 = 1,
    /// No encryption (2).
    None = 2,
}

/// Session command of 117.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionCommand {
    /// End (0).
    End = 0,
    /// Start (1).
    Start = 1,
    /// Suspend (2).
    Suspend = 2,
    /// Resume (3).
    Resume = 3,
    /// Reconfigure (4).
    Reconfigure = 4,
}

/// Status of the SetupEndpoints read-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetupEndpointsStatus {
    /// Success (0).
    Success = 0,
    /// Busy (1).
    Busy = 1,
    /// Error (2).
    Error = 2,
}

code_enum!(IpVersion, "IP version", [V4, V6]);
code_enum!(
    SrtpSuite,
    "SRTP suite",
    [AesCm128HmacSha1_80, Aes256CmHmacSha1_80, None]
);
code_enum!(
    SessionCommand,
    "session command",
    [End, Start, Suspend, Resume, Reconfigure]
);
code_enum!(
    SetupEndpointsStatus,
    "setup endpoints status",
    [Success, Busy, Error]
);

/// An address with its video and audio RTP ports (118 type 03).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointAddress {
    /// IP version.
    pub ip_version: IpVersion,
    /// Address as text.
    pub address: String,
    /// Video RTP (and RTCP) port.
    pub video_rtp_port: u16,
    /// Audio RTP (and RTCP) port.
    pub audio_rtp_port: u16,
}

impl EndpointAddress {
    fn encode(&self) -> Vec<u8> {
        let mut tlv = Tlv8::new();
        tlv.push_u8(t(1), self.ip_version.code())
            .push(t(2), self.address.as_bytes())
            .push_u16(t(3), self.video_rtp_port)
            .push_u16(t(4), self.audio_rtp_port);
        tlv.encode()
    }

    fn decode(tlv: &Tlv8) -> Result<Self, Error> {
        let address = core::str::from_utf8(tlv.require(t(2))?)
            .map_err(|_| Error::Unknown {
                field: "address (not UTF-8)",
                value: 0,
            })?
            .to_owned();
        Ok(Self {
            ip_version: IpVersion::from_code(uint(tlv, t(1), "IP version")?)?,
            address,
            video_rtp_port: uint(tlv, t(3), "video RTP port")?,
            audio_rtp_port: uint(tlv, t(4), "audio RTP port")?,
        })
    }
}

/// SRTP suite, master key and salt (118 types 04/05). Debug never prints key or salt.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SrtpParameters {
    /// Crypto suite.
    pub suite: SrtpSuite,
    /// Master key (16 B suite 0, 32 B suite 1, empty for none).
    pub master_key: Vec<u8>,
    /// Master salt (14 B, empty for none).
    pub master_salt: Vec<u8>,
}

impl core::fmt::Debug for SrtpParameters {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SrtpParameters")
            .field("suite", &self.suite)
            .field("master_key_len", &self.master_key.len())
            .field("master_salt_len", &self.master_salt.len())
            .finish()
    }
}

fn check_len(ty: TlvType, v: &[u8], want: usize) -> Result<(), Error> {
    if v.len() == want {
        Ok(())
    } else {
        Err(crate::Error::BadLength {
            ty,
            len_bytes: v.len(),
            min_bytes: want,
            max_bytes: want,
        }
        .into())
    }
}

impl SrtpParameters {
    fn encode(&self) -> Vec<u8> {
        let mut tlv = Tlv8::new();
        tlv.push_u8(t(1), self.suite.code())
            .push(t(2), &self.master_key)
            .push(t(3), &self.master_salt);
        tlv.encode()
    }

    fn decode(tlv: &Tlv8) -> Result<Self, Error> {
        let suite = SrtpSuite::from_code(uint(tlv, t(1), "SRTP suite")?)?;
        let key = tlv.get(t(2)).unwrap_or_default();
        let salt = tlv.get(t(3)).unwrap_or_default();
        let (key_len, salt_len) = match suite {
            SrtpSuite::AesCm128HmacSha1_80 => (16, 14),
            SrtpSuite::Aes256CmHmacSha1_80 => (32, 14),
            SrtpSuite::None => (0, 0),
        };
        check_len(t(2), key, key_len)?;
        check_len(t(3), salt, salt_len)?;
        Ok(Self {
            suite,
            master_key: key.to_vec(),
            master_salt: salt.to_vec(),
        })
    }
}

/// 118 write from the controller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SetupEndpointsRequest {
    /// Session id.
    pub session_id: SessionId,
    /// Where the controller receives (and sends from).
    pub controller_address: EndpointAddress,
    /// Video SRTP parameters (the controller's).
    pub video_srtp: SrtpParameters,
    /// Audio SRTP parameters (the controller's).
    pub audio_srtp: SrtpParameters,
}

impl SetupEndpointsRequest {
    /// Decodes a 118 write.
    ///
    /// # Errors
    /// Malformed TLV, missing items, wrong lengths or unknown codes.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let tlv = Tlv8::decode(bytes)?;
        Ok(Self {
            session_id: SessionId::decode(&tlv, t(1))?,
            controller_address: EndpointAddress::decode(&require_nested(&tlv, t(3))?)?,
            video_srtp: SrtpParameters::decode(&require_nested(&tlv, t(4))?)?,
            audio_srtp: SrtpParameters::decode(&require_nested(&tlv, t(5))?)?,
        })
    }

    /// Encodes a 118 write.
    pub fn encode(&self) -> Vec<u8> {
        let mut tlv = Tlv8::new();
        tlv.push(t(1), &self.session_id.0)
            .push_vec(t(3), self.controller_address.encode())
            .push_vec(t(4), self.video_srtp.encode())
            .push_vec(t(5), self.audio_srtp.encode());
        tlv.encode()
    }
}

/// 118 read-back from the accessory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SetupEndpointsResponse {
    /// Session id (absent in the initial/error value).
    pub session_id: Option<SessionId>,
    /// Status.
    pub status: SetupEndpointsStatus,
    /// The accessory's address and ports.
    pub accessory_address: Option<EndpointAddress>,
    /// Video SRTP parameters the accessory sends with.
    pub video_srtp: Option<SrtpParameters>,
    /// Audio SRTP parameters the accessory sends with.
    pub audio_srtp: Option<SrtpParameters>,
    /// The accessory's video SSRC.
    pub video_ssrc: Option<u32>,
    /// The accessory's audio SSRC.
    pub audio_ssrc: Option<u32>,
}

impl SetupEndpointsResponse {
    /// Busy answer: `01 id, 02 01`.
    pub fn busy(session_id: SessionId) -> Self {
        Self {
            session_id: Some(session_id),
            status: SetupEndpointsStatus::Busy,
            ..Self::error()
        }
    }

    /// Initial/error value: only `02 02`.
    pub fn error() -> Self {
        Self {
            session_id: None,
            status: SetupEndpointsStatus::Error,
            accessory_address: None,
            video_srtp: None,
            audio_srtp: None,
            video_ssrc: None,
            audio_ssrc: None,
        }
    }

    /// Encodes the read-back value.
    pub fn encode(&self) -> Vec<u8> {
        let mut tlv = Tlv8::new();
        if let Some(id) = &self.session_id {
            tlv.push(t(1), &id.0);
        }
        tlv.push_u8(t(2), self.status.code());
        if let Some(a) = &self.accessory_address {
            tlv.push_vec(t(3), a.encode());
        }
        if let Some(s) = &self.video_srtp {
            tlv.push_vec(t(4), s.encode());
        }
        if let Some(s) = &self.audio_srtp {
            tlv.push_vec(t(5), s.encode());
        }
        if let Some(v) = self.video_ssrc {
            tlv.push_u32(t(6), v);
        }
        if let Some(v) = self.audio_ssrc {
            tlv.push_u32(t(7), v);
        }
        tlv.encode()
    }

    /// Decodes the read-back value.
    ///
    /// # Errors
    /// Malformed TLV, missing status, wrong lengths or unknown codes.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let tlv = Tlv8::decode(bytes)?;
        let session_id = match tlv.get(t(1)) {
            Some(_) => Some(SessionId::decode(&tlv, t(1))?),
            None => None,
        };
        Ok(Self {
            session_id,
            status: SetupEndpointsStatus::from_code(uint(&tlv, t(2), "status")?)?,
            accessory_address: nested(&tlv, t(3))?
                .map(|n| EndpointAddress::decode(&n))
                .transpose()?,
            video_srtp: nested(&tlv, t(4))?
                .map(|n| SrtpParameters::decode(&n))
                .transpose()?,
            audio_srtp: nested(&tlv, t(5))?
                .map(|n| SrtpParameters::decode(&n))
                .transpose()?,
            video_ssrc: opt_uint(&tlv, t(6), "video SSRC")?,
            audio_ssrc: opt_uint(&tlv, t(7), "audio SSRC")?,
        })
    }
}

/// RTP parameters of a selected stream (117 video 04 / audio 03).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RtpParameters {
    /// Payload type.
    pub payload_type: u8,
    /// The controller's SSRC.
    pub ssrc: u32,
    /// Max bitrate in kbit/s.
    pub max_bitrate_kbps: u16,
    /// Min RTCP interval in seconds (0.5 when absent).
    pub rtcp_interval_s: f32,
    /// Max MTU (video only).
    pub max_mtu: Option<u16>,
    /// Comfort-noise payload type (audio only).
    pub comfort_noise_payload_type: Option<u8>,
}

impl RtpParameters {
    fn encode(&self) -> Vec<u8> {
        let mut tlv = Tlv8::new();
        tlv.push_u8(t(1), self.payload_type)
            .push_u32(t(2), self.ssrc)
            .push_u16(t(3), self.max_bitrate_kbps)
            .push(t(4), &self.rtcp_interval_s.to_le_bytes());
        if let Some(m) = self.max_mtu {
            tlv.push_u16(t(5), m);
        }
        if let Some(p) = self.comfort_noise_payload_type {
            tlv.push_u8(t(6), p);
        }
        tlv.encode()
    }

    fn decode(tlv: &Tlv8) -> Result<Self, Error> {
        let rtcp_interval_s = match tlv.get(t(4)) {
            None => 0.5,
            Some(_) => f32::from_le_bytes(tlv.require_array::<4>(t(4))?),
        };
        Ok(Self {
            payload_type: uint(tlv, t(1), "payload type")?,
            ssrc: uint(tlv, t(2), "SSRC")?,
            max_bitrate_kbps: uint(tlv, t(3), "max bitrate")?,
            rtcp_interval_s,
            max_mtu: opt_uint(tlv, t(5), "max MTU")?,
            comfort_noise_payload_type: opt_uint(tlv, t(6), "comfort-noise payload type")?,
        })
    }
}

/// Selected video parameters (117 type 02).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelectedVideoParameters {
    /// Codec (0 = H.264; 0 when absent).
    pub codec: u8,
    /// H.264 profile.
    pub profile: Option<H264Profile>,
    /// H.264 level.
    pub level: Option<H264Level>,
    /// Packetization mode.
    pub packetization_mode: Option<u8>,
    /// Width, height, fps.
    pub attributes: Option<VideoAttributes>,
    /// RTP parameters.
    pub rtp: Option<RtpParameters>,
}

impl SelectedVideoParameters {
    fn encode(&self) -> Vec<u8> {
        let mut tlv = Tlv8::new();
        tlv.push_u8(t(1), self.codec);
        let mut params = Tlv8::new();
        if let Some(p) = self.profile {
            params.push_u8(t(1), p.code());
        }
        if let Some(l) = self.level {
            params.push_u8(t(2), l.code());
        }
        if let Some(m) = self.packetization_mode {
            params.push_u8(t(3), m);
        }
        if !params.is_empty() {
            tlv.push_nested(t(2), &params);
        }
        if let Some(a) = &self.attributes {
            let mut at = Tlv8::new();
            at.push_u16(t(1), a.width)
                .push_u16(t(2), a.height)
                .push_u8(t(3), a.fps);
            tlv.push_nested(t(3), &at);
        }
        if let Some(r) = &self.rtp {
            tlv.push_vec(t(4), r.encode());
        }
        tlv.encode()
    }

    fn decode(tlv: &Tlv8) -> Result<Self, Error> {
        let params = nested(tlv, t(2))?.unwrap_or_default();
        let attributes = match nested(tlv, t(3))? {
            None => None,
            Some(a) => Some(VideoAttributes {
                width: uint(&a, t(1), "width")?,
                height: uint(&a, t(2), "height")?,
                fps: uint(&a, t(3), "frame rate")?,
            }),
        };
        Ok(Self {
            codec: opt_uint(tlv, t(1), "video codec")?.unwrap_or(0),
            profile: opt_uint(&params, t(1), "H.264 profile")?
                .map(H264Profile::from_code)
                .transpose()?,
            level: opt_uint(&params, t(2), "H.264 level")?
                .map(H264Level::from_code)
                .transpose()?,
            packetization_mode: opt_uint(&params, t(3), "packetization mode")?,
            attributes,
            rtp: nested(tlv, t(4))?
                .map(|n| RtpParameters::decode(&n))
                .transpose()?,
        })
    }
}

/// Selected audio parameters (117 type 03).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelectedAudioParameters {
    /// Streaming codec code (2 AAC-ELD, 3 Opus; 0 when absent).
    pub codec: u8,
    /// Channels.
    pub channels: Option<u8>,
    /// Bitrate mode (0 variable, 1 constant).
    pub bitrate_mode: Option<u8>,
    /// Sample rate (streaming codes 0/1/2 only).
    pub sample_rate: Option<SampleRate>,
    /// RTP packet time in ms.
    pub packet_time_ms: Option<u8>,
    /// RTP parameters.
    pub rtp: Option<RtpParameters>,
    /// Comfort noise enabled.
    pub comfort_noise: bool,
}

impl SelectedAudioParameters {
    fn encode(&self) -> Vec<u8> {
        let mut tlv = Tlv8::new();
        tlv.push_u8(t(1), self.codec);
        let mut params = Tlv8::new();
        if let Some(c) = self.channels {
            params.push_u8(t(1), c);
        }
        if let Some(m) = self.bitrate_mode {
            params.push_u8(t(2), m);
        }
        if let Some(s) = self.sample_rate {
            params.push_u8(t(3), s.code());
        }
        if let Some(p) = self.packet_time_ms {
            params.push_u8(t(4), p);
        }
        if !params.is_empty() {
            tlv.push_nested(t(2), &params);
        }
        if let Some(r) = &self.rtp {
            tlv.push_vec(t(3), r.encode());
        }
        tlv.push_u8(t(4), u8::from(self.comfort_noise));
        tlv.encode()
    }

    fn decode(tlv: &Tlv8) -> Result<Self, Error> {
        let params = nested(tlv, t(2))?.unwrap_or_default();
        Ok(Self {
            codec: opt_uint(tlv, t(1), "audio codec")?.unwrap_or(0),
            channels: opt_uint(&params, t(1), "channels")?,
            bitrate_mode: opt_uint(&params, t(2), "bitrate mode")?,
            sample_rate: opt_uint(&params, t(3), "sample rate")?
                .map(streaming_sample_rate)
                .transpose()?,
            packet_time_ms: opt_uint(&params, t(4), "packet time")?,
            rtp: nested(tlv, t(3))?
                .map(|n| RtpParameters::decode(&n))
                .transpose()?,
            comfort_noise: opt_uint::<u8>(tlv, t(4), "comfort noise")?.unwrap_or(0) != 0,
        })
    }
}

/// 117 write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelectedRtpStreamConfiguration {
    /// Session id.
    pub session_id: SessionId,
    /// Command.
    pub command: SessionCommand,
    /// Selected video.
    pub video: Option<SelectedVideoParameters>,
    /// Selected audio.
    pub audio: Option<SelectedAudioParameters>,
}

impl SelectedRtpStreamConfiguration {
    /// Decodes a 117 write.
    ///
    /// # Errors
    /// Malformed TLV, missing session control, unknown command or codes.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let tlv = Tlv8::decode(bytes)?;
        let control = require_nested(&tlv, t(1))?;
        Ok(Self {
            session_id: SessionId::decode(&control, t(1))?,
            command: SessionCommand::from_code(uint(&control, t(2), "session command")?)?,
            video: nested(&tlv, t(2))?
                .map(|n| SelectedVideoParameters::decode(&n))
                .transpose()?,
            audio: nested(&tlv, t(3))?
                .map(|n| SelectedAudioParameters::decode(&n))
                .transpose()?,
        })
    }

    /// Encodes a 117 write.
    pub fn encode(&self) -> Vec<u8> {
        let mut control = Tlv8::new();
        control
            .push(t(1), &self.session_id.0)
            .push_u8(t(2), self.command.code());
        let mut tlv = Tlv8::new();
        tlv.push_nested(t(1), &control);
        if let Some(v) = &self.video {
            tlv.push_vec(t(2), v.encode());
        }
        if let Some(a) = &self.audio {
            tlv.push_vec(t(3), a.encode());
        }
        tlv.encode()
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use base64::Engine as _;

    const NODEJS_530: &str = "ARDbkcSCf1tMyJpV7RqvnIZDAxsBAQACDjE5Mi4xNjguMTc4Ljk4AwJnwwQCrt0EJQIQTfvNwVCPX2DO1U8lhF5KpgMO9LCuNVdME7fR5F9R4UgBAQAFJQIQMwXqbCc4p2JYnbVlh5rLmwMOuOc+susKJ7p+d2hlqvEBAQA=";
    const DIDEL_3: &str = "ARB7Rs3hdkBLEJlnJ3bHeBfcAxsBAQACDjE5Mi4xNjguMTc4LjM3AwKI5AQCmdYEJQIQN7oMKWwxJRoFsp3AnorThQMOVPEcDKV6PH2q+KeVWnUBAQAFJQIQmi/hjvT5tGmQemJKqyne0AMOHJUqMjpD2OCtlUmCvJIBAQA=";
    const FOSCAM_6: &str =
        "ARAM6rgNOsJD24pPEEMg1G/eAxYBAQACCTEwLjAuMS42OAMCwsEEAqj3BAcCAAMAAQECBQcCAAMAAQEC";

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    fn srtp0(k: u8) -> SrtpParameters {
        SrtpParameters {
            suite: SrtpSuite::AesCm128HmacSha1_80,
            master_key: vec![k; 16],
            master_salt: vec![k ^ 0xff; 14],
        }
    }

    fn request() -> SetupEndpointsRequest {
        SetupEndpointsRequest {
            session_id: SessionId([7; 16]),
            controller_address: EndpointAddress {
                ip_version: IpVersion::V6,
                address: "fe80::1".into(),
                video_rtp_port: 50000,
                audio_rtp_port: 50001,
            },
            video_srtp: srtp0(0xab),
            audio_srtp: SrtpParameters {
                suite: SrtpSuite::Aes256CmHmacSha1_80,
                master_key: vec![3; 32],
                master_salt: vec![4; 14],
            },
        }
    }

    fn start() -> SelectedRtpStreamConfiguration {
        SelectedRtpStreamConfiguration {
            session_id: SessionId([9; 16]),
            command: SessionCommand::Start,
            video: Some(SelectedVideoParameters {
                codec: 0,
                profile: Some(H264Profile::High),
                level: Some(H264Level::L4_0),
                packetization_mode: Some(0),
                attributes: Some(VideoAttributes {
                    width: 1280,
                    height: 720,
                    fps: 30,
                }),
                rtp: Some(RtpParameters {
                    payload_type: 99,
                    ssrc: 0x1234_5678,
                    max_bitrate_kbps: 299,
                    rtcp_interval_s: 0.5,
                    max_mtu: Some(DEFAULT_MTU_IPV4),
                    comfort_noise_payload_type: None,
                }),
            }),
            audio: Some(SelectedAudioParameters {
                codec: 3,
                channels: Some(1),
                bitrate_mode: Some(0),
                sample_rate: Some(SampleRate::Hz16000),
                packet_time_ms: Some(20),
                rtp: Some(RtpParameters {
                    payload_type: 110,
                    ssrc: 0xdead_beef,
                    max_bitrate_kbps: 24,
                    rtcp_interval_s: 5.0,
                    max_mtu: None,
                    comfort_noise_payload_type: Some(13),
                }),
                comfort_noise: false,
            }),
        }
    }

    #[test]
    fn decodes_hap_nodejs_530() {
        let r = SetupEndpointsRequest::decode(&b64(NODEJS_530)).unwrap();
        assert_eq!(
            hex::encode(r.session_id.0),
            "db91c4827f5b4cc89a55ed1aaf9c8643"
        );
        assert_eq!(
            format!("{:?}", r.session_id),
            "SessionId(db91c4827f5b4cc89a55ed1aaf9c8643)"
        );
        assert_eq!(r.controller_address.ip_version, IpVersion::V4);
        assert_eq!(r.controller_address.address, "192.168.178.98");
        assert_eq!(r.controller_address.video_rtp_port, 0xc367);
        assert_eq!(r.controller_address.audio_rtp_port, 0xddae);
        for s in [&r.video_srtp, &r.audio_srtp] {
            assert_eq!(s.suite, SrtpSuite::AesCm128HmacSha1_80);
            assert_eq!(s.master_key.len(), 16);
            assert_eq!(s.master_salt.len(), 14);
        }
        assert_eq!(r.video_srtp.master_key[..2], [0x4d, 0xfb]);
        assert_ne!(r.video_srtp, r.audio_srtp);
    }

    #[test]
    fn decodes_didel_3() {
        let r = SetupEndpointsRequest::decode(&b64(DIDEL_3)).unwrap();
        assert_eq!(hex::encode(&r.session_id.0[..4]), "7b46cde1");
        assert_eq!(r.controller_address.address, "192.168.178.37");
        assert_eq!(r.controller_address.video_rtp_port, 0xe488);
        assert_eq!(r.controller_address.audio_rtp_port, 0xd699);
        assert_eq!(r.audio_srtp.suite, SrtpSuite::AesCm128HmacSha1_80);
        assert_eq!(r.audio_srtp.master_key.len(), 16);
    }

    #[test]
    fn decodes_foscam_6_suite_none() {
        let r = SetupEndpointsRequest::decode(&b64(FOSCAM_6)).unwrap();
        assert_eq!(hex::encode(&r.session_id.0[..4]), "0ceab80d");
        assert_eq!(r.controller_address.address, "10.0.1.68");
        assert_eq!(r.controller_address.video_rtp_port, 0xc1c2);
        assert_eq!(r.controller_address.audio_rtp_port, 0xf7a8);
        for s in [&r.video_srtp, &r.audio_srtp] {
            assert_eq!(s.suite, SrtpSuite::None);
            assert!(s.master_key.is_empty() && s.master_salt.is_empty());
        }
    }

    #[test]
    fn request_round_trip() {
        let r = request();
        assert_eq!(SetupEndpointsRequest::decode(&r.encode()).unwrap(), r);
        let ios = SetupEndpointsRequest::decode(&b64(NODEJS_530)).unwrap();
        assert_eq!(SetupEndpointsRequest::decode(&ios.encode()).unwrap(), ios);
    }

    #[test]
    fn response_round_trips() {
        let full = SetupEndpointsResponse {
            session_id: Some(SessionId([1; 16])),
            status: SetupEndpointsStatus::Success,
            accessory_address: Some(EndpointAddress {
                ip_version: IpVersion::V4,
                address: "192.168.1.10".into(),
                video_rtp_port: 40000,
                audio_rtp_port: 40002,
            }),
            video_srtp: Some(srtp0(1)),
            audio_srtp: Some(srtp0(2)),
            video_ssrc: Some(0x7fff_0001),
            audio_ssrc: Some(42),
        };
        assert_eq!(
            SetupEndpointsResponse::decode(&full.encode()).unwrap(),
            full
        );
        let busy = SetupEndpointsResponse::busy(SessionId([5; 16]));
        let bytes = busy.encode();
        assert_eq!(bytes.len(), 18 + 3);
        assert_eq!(bytes[18..], [2, 1, 1]);
        assert_eq!(SetupEndpointsResponse::decode(&bytes).unwrap(), busy);
        let err = SetupEndpointsResponse::error();
        assert_eq!(err.encode(), [2, 1, 2]);
        assert_eq!(SetupEndpointsResponse::decode(&[2, 1, 2]).unwrap(), err);
    }

    #[test]
    fn selected_round_trips() {
        let s = start();
        assert_eq!(
            SelectedRtpStreamConfiguration::decode(&s.encode()).unwrap(),
            s
        );

        let end = SelectedRtpStreamConfiguration {
            session_id: SessionId([2; 16]),
            command: SessionCommand::End,
            video: None,
            audio: None,
        };
        let bytes = end.encode();
        assert_eq!(bytes.len(), 2 + 18 + 3);
        assert_eq!(SelectedRtpStreamConfiguration::decode(&bytes).unwrap(), end);

        let mut reconf = start();
        reconf.command = SessionCommand::Reconfigure;
        reconf.audio = None;
        if let Some(v) = reconf.video.as_mut() {
            v.profile = None;
            v.level = None;
            v.packetization_mode = None;
        }
        let back = SelectedRtpStreamConfiguration::decode(&reconf.encode()).unwrap();
        assert_eq!(back, reconf);
        assert_eq!(back.video.unwrap().rtp.unwrap().max_bitrate_kbps, 299);
    }

    #[test]
    fn lenient_rtp_params() {
        // PT packed as u16, fps as u16, no RTCP interval, no codec.
        let mut rtp = Tlv8::new();
        rtp.push_u16(t(1), 99).push_u32(t(2), 5).push_u32(t(3), 300);
        let mut attr = Tlv8::new();
        attr.push_u16(t(1), 640)
            .push_u16(t(2), 360)
            .push_u16(t(3), 15);
        let mut video = Tlv8::new();
        video.push_nested(t(3), &attr).push_nested(t(4), &rtp);
        let mut control = Tlv8::new();
        control.push(t(1), &[1; 16]).push_u8(t(2), 4);
        let mut tlv = Tlv8::new();
        tlv.push_nested(t(1), &control).push_nested(t(2), &video);
        let s = SelectedRtpStreamConfiguration::decode(&tlv.encode()).unwrap();
        let v = s.video.unwrap();
        assert_eq!(v.codec, 0);
        assert_eq!(v.attributes.unwrap().fps, 15);
        let r = v.rtp.unwrap();
        assert_eq!((r.payload_type, r.max_bitrate_kbps), (99, 300));
        assert!((r.rtcp_interval_s - 0.5).abs() < f32::EPSILON);
        assert_eq!(r.max_mtu, None);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let good = b64(NODEJS_530);
        for n in [1, 5, 17, 40, good.len() - 1] {
            assert!(SetupEndpointsRequest::decode(&good[..n]).is_err(), "{n}");
        }
        // Session id of 15 bytes.
        let mut r = request().encode();
        r[1] = 15;
        r.remove(2);
        assert!(SetupEndpointsRequest::decode(&r).is_err());
        // Wrong key length for suite 0.
        let mut bad = request();
        bad.video_srtp.master_key.pop();
        assert!(SetupEndpointsRequest::decode(&bad.encode()).is_err());
        let mut bad = request();
        bad.audio_srtp.master_key.truncate(16);
        assert!(SetupEndpointsRequest::decode(&bad.encode()).is_err());
        // Unknown suite 3.
        let mut s = Tlv8::new();
        s.push_u8(t(1), 3).push(t(2), &[0; 16]).push(t(3), &[0; 14]);
        assert!(matches!(
            SrtpParameters::decode(&s),
            Err(Error::Unknown { value: 3, .. })
        ));
        // Unknown command 9.
        let mut bytes = start().encode();
        let pos = bytes.windows(3).position(|w| w == [2, 1, 1]).unwrap();
        bytes[pos + 2] = 9;
        assert!(matches!(
            SelectedRtpStreamConfiguration::decode(&bytes),
            Err(Error::Unknown { value: 9, .. })
        ));
        assert!(SelectedRtpStreamConfiguration::decode(&[]).is_err());
        assert!(SetupEndpointsResponse::decode(&[2, 1, 7]).is_err());
        assert!(SetupEndpointsResponse::decode(&[1, 3, 0, 0, 0, 2, 1, 0]).is_err());
    }

    #[test]
    fn srtp_debug_hides_secrets() {
        let s = srtp0(0xab);
        let d = format!("{s:?}");
        assert!(
            !d.contains("abab") && !d.contains("ABAB") && !d.contains("171"),
            "{d}"
        );
        assert!(d.contains("16") && d.contains("14"), "{d}");
        let r = format!("{:?}", request());
        assert!(!r.contains("abab") && !r.contains("171, 171"), "{r}");
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = SetupEndpointsRequest::decode(&bytes);
            let _ = SetupEndpointsResponse::decode(&bytes);
            let _ = SelectedRtpStreamConfiguration::decode(&bytes);
        }

        #[test]
        fn mutated_valid_inputs_never_panic(i in 0usize..400, b in proptest::num::u8::ANY, cut in 0usize..400) {
            for mut v in [request().encode(), start().encode(), b64(NODEJS_530)] {
                let n = v.len();
                v[i % n] = b;
                v.truncate(cut.max(1));
                let _ = SetupEndpointsRequest::decode(&v);
                let _ = SetupEndpointsResponse::decode(&v);
                let _ = SelectedRtpStreamConfiguration::decode(&v);
            }
        }
    }
}
