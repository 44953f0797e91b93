//! The iPhone's side of live view: the SetupEndpoints (118) and SelectedRTPStreamConfiguration
//! (117) writes a controller sends, as iOS sends them (IPv4, AES_CM_128_HMAC_SHA1_80, H.264
//! Main 4.0 1280x720@30, PT 99, 299 kbit/s, RTCP 0.5 s; live-view notes §1).

use hap_tlv::hksv::{H264Level, H264Profile, VideoAttributes};
use hap_tlv::rtp::{
    EndpointAddress, IpVersion, RtpParameters, SelectedRtpStreamConfiguration,
    SelectedVideoParameters, SessionCommand, SessionId, SetupEndpointsRequest, SrtpParameters,
    SrtpSuite,
};

/// A 118 write for session `session_id`: the controller receives video on 127.0.0.1:`port`
/// (audio on `port` + 2), both media keyed with `key` || `salt`.
pub fn setup_endpoints_request(
    session_id: [u8; 16],
    port: u16,
    key: &[u8],
    salt: &[u8],
) -> Vec<u8> {
    let srtp = SrtpParameters {
        suite: SrtpSuite::AesCm128HmacSha1_80,
        master_key: key.to_vec(),
        master_salt: salt.to_vec(),
    };
    SetupEndpointsRequest {
        session_id: SessionId(session_id),
        controller_address: EndpointAddress {
            ip_version: IpVersion::V4,
            address: "127.0.0.1".into(),
            video_rtp_port: port,
            audio_rtp_port: port.wrapping_add(2),
        },
        video_srtp: srtp.clone(),
        audio_srtp: srtp,
    }
    .encode()
}

/// A 117 write with `command` for session `session_id` and the video parameters iOS asks a
/// local stream with; `max_mtu` `None` leaves the MTU to the accessory's default.
pub fn selected_stream_request(
    session_id: [u8; 16],
    command: SessionCommand,
    max_mtu: Option<u16>,
) -> Vec<u8> {
    SelectedRtpStreamConfiguration {
        session_id: SessionId(session_id),
        command,
        video: Some(SelectedVideoParameters {
            codec: 0,
            profile: Some(H264Profile::Main),
            level: Some(H264Level::L4_0),
            packetization_mode: Some(0),
            attributes: Some(VideoAttributes {
                width: 1280,
                height: 720,
                fps: 30,
            }),
            rtp: Some(RtpParameters {
                payload_type: 99,
                ssrc: 0x0abc_def0,
                max_bitrate_kbps: 299,
                rtcp_interval_s: 0.5,
                max_mtu,
                comfort_noise_payload_type: None,
            }),
        }),
        audio: None,
    }
    .encode()
}
