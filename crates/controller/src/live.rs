//! The iPhone's side of live view: the SetupEndpoints (118) and SelectedRTPStreamConfiguration
//! (117) writes a controller sends, as iOS sends them (IPv4, AES_CM_128_HMAC_SHA1_80, H.264
//! Main 4.0 1280x720@30, PT 99, 299 kbit/s, RTCP 0.5 s; live-view notes §1), and a
//! [`Viewer`] that receives, decrypts, reassembles and decodes what the accessory sends.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use hap_tlv::hksv::{H264Level, H264Profile, SampleRate, StreamingAudioCodec, VideoAttributes};
use rtp::rtcp::{ReceiverReport, ReportBlock, RtcpPacket, parse_compound, write_sdes_cname};
use rtp::{Depacketizer, MasterKey, RtpPacket, SrtpContext, is_rtcp};

use crate::hksv::types::RTP_STREAM_MANAGEMENT;
use crate::model::AccessoryDb;
use hap_tlv::rtp::{
    EndpointAddress, IpVersion, RtpParameters, SelectedAudioParameters,
    SelectedRtpStreamConfiguration, SelectedVideoParameters, SessionCommand, SessionId,
    SetupEndpointsRequest, SrtpParameters, SrtpSuite,
};

/// A 118 write for session `session_id`: the controller receives video on 127.0.0.1:`port`
/// (audio on `port` + 2), both media keyed with `key` || `salt`.
pub fn setup_endpoints_request(
    session_id: [u8; 16],
    port: u16,
    key: &[u8],
    salt: &[u8],
) -> Vec<u8> {
    setup_endpoints_request_at(session_id, IpAddr::from([127, 0, 0, 1]), port, key, salt)
}

/// As [`setup_endpoints_request`], receiving on `address` (IPv4 or IPv6).
pub fn setup_endpoints_request_at(
    session_id: [u8; 16],
    address: IpAddr,
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
            ip_version: if address.is_ipv4() {
                IpVersion::V4
            } else {
                IpVersion::V6
            },
            address: address.to_string(),
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
    selected_stream_request_sized(session_id, command, max_mtu, (1280, 720, 30))
}

/// As [`selected_stream_request`], asking for `(width, height, fps)` (the Apple Watch asks
/// 320x240@15).
pub fn selected_stream_request_sized(
    session_id: [u8; 16],
    command: SessionCommand,
    max_mtu: Option<u16>,
    size: (u16, u16, u8),
) -> Vec<u8> {
    selected_stream_request_with_audio(session_id, command, max_mtu, size, None)
}

/// As [`selected_stream_request_sized`], with the audio iOS selects when `audio` is given:
/// Opus, mono, VBR at that sample rate and packet time (ms), PT 110, 24 kbit/s, RTCP every
/// 5 s, comfort noise off (live-view notes §1.2).
pub fn selected_stream_request_with_audio(
    session_id: [u8; 16],
    command: SessionCommand,
    max_mtu: Option<u16>,
    (width, height, fps): (u16, u16, u8),
    audio: Option<(SampleRate, u8)>,
) -> Vec<u8> {
    let audio = audio.map(|(rate, packet_time_ms)| SelectedAudioParameters {
        codec: StreamingAudioCodec::Opus as u8,
        channels: Some(1),
        bitrate_mode: Some(0),
        sample_rate: Some(rate),
        packet_time_ms: Some(packet_time_ms),
        rtp: Some(RtpParameters {
            payload_type: 110,
            ssrc: 0x0abc_def1,
            max_bitrate_kbps: 24,
            rtcp_interval_s: 5.0,
            max_mtu: None,
            comfort_noise_payload_type: Some(13),
        }),
        comfort_noise: false,
    });
    SelectedRtpStreamConfiguration {
        session_id: SessionId(session_id),
        command,
        video: Some(SelectedVideoParameters {
            codec: 0,
            profile: Some(H264Profile::Main),
            level: Some(H264Level::L4_0),
            packetization_mode: Some(0),
            attributes: Some(VideoAttributes { width, height, fps }),
            rtp: Some(RtpParameters {
                payload_type: 99,
                ssrc: 0x0abc_def0,
                max_bitrate_kbps: 299,
                rtcp_interval_s: 0.5,
                max_mtu,
                comfort_noise_payload_type: None,
            }),
        }),
        audio,
    }
    .encode()
}

/// The `(aid, iid)`s of one CameraRTPStreamManagement service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveIds {
    /// 118 SetupEndpoints.
    pub setup_endpoints: (u64, u64),
    /// 117 SelectedRTPStreamConfiguration.
    pub selected: (u64, u64),
    /// 120 StreamingStatus.
    pub streaming_status: (u64, u64),
}

impl LiveIds {
    /// The first RTP stream service of the accessory named `name` (a bridge), else of the only
    /// accessory.
    ///
    /// # Errors
    /// No such accessory, or no complete CameraRTPStreamManagement service.
    pub fn find_named(db: &AccessoryDb, name: &str) -> Result<Self, String> {
        let db = if db.accessories.len() <= 1 {
            db.clone()
        } else {
            db.only(
                db.aid_named(name)
                    .ok_or_else(|| format!("no bridged accessory is named {name:?}"))?,
            )
        };
        Self::each(&db)
            .into_iter()
            .next()
            .ok_or_else(|| "no complete CameraRTPStreamManagement service".to_owned())
    }

    /// Every complete RTP stream service in `db`, in order.
    pub fn each(db: &AccessoryDb) -> Vec<Self> {
        let ids = |c: &str| db.ids_in_each(RTP_STREAM_MANAGEMENT, c);
        let (setup, selected, status) = (ids("118"), ids("117"), ids("120"));
        setup
            .into_iter()
            .zip(selected)
            .zip(status)
            .map(|((setup_endpoints, selected), streaming_status)| Self {
                setup_endpoints,
                selected,
                streaming_status,
            })
            .collect()
    }
}

/// Access units kept for decoding: 40 s at 30 fps.
const MAX_UNITS: usize = 1200;
/// Bound of one reassembled access unit.
const MAX_ACCESS_UNIT_BYTES: usize = 8 << 20;

/// What a [`Viewer`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewerReport {
    /// RTP packets that authenticated.
    pub rtp_packets: u64,
    /// Datagrams refused by SRTP/SRTCP (wrong key, tampered, replayed).
    pub rejected: u64,
    /// Sender reports received.
    pub sender_reports: u64,
    /// SSRCs seen on RTP.
    pub ssrcs: BTreeSet<u32>,
    /// Payload types seen.
    pub payload_types: BTreeSet<u8>,
    /// Largest datagram, bytes.
    pub max_datagram: usize,
    /// Access units dropped by reassembly (gaps, malformed payloads).
    pub broken_units: u64,
    /// Whole access units.
    pub access_units: u64,
    /// NAL unit types of the first access unit.
    pub first_unit_nal_types: Vec<u8>,
    /// When the first packet came, from the viewer's start.
    pub first_packet: Option<Duration>,
    /// When the first access unit that decoded to a picture was complete.
    pub first_picture: Option<Duration>,
    /// Access units that decoded to a picture.
    pub pictures: u64,
    /// Access units the decoder refused.
    pub decode_errors: u64,
    /// Width and height of the first picture.
    pub size: Option<(usize, usize)>,
}

/// The iPhone's receiving side of a video stream, sans-IO: datagrams and their arrival time
/// in; receiver reports out; [`Viewer::finish`] decodes (openh264) and reports.
pub struct Viewer {
    rx: SrtpContext,
    tx: SrtpContext,
    ssrc: u32,
    depacketizer: Depacketizer,
    units: Vec<(Duration, Vec<u8>)>,
    report: ViewerReport,
    highest_sequence: Option<u16>,
    last_sr: Option<(u32, Duration)>,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer")
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl Viewer {
    /// A viewer of an `AES_CM_128_HMAC_SHA1_80` stream keyed with `key`; its own receiver
    /// reports go out as SSRC `ssrc`.
    pub fn new(key: &MasterKey, ssrc: u32) -> Self {
        Self {
            rx: SrtpContext::new(rtp::SrtpSuite::AesCm128HmacSha1_80, key),
            tx: SrtpContext::new(rtp::SrtpSuite::AesCm128HmacSha1_80, key),
            ssrc,
            depacketizer: Depacketizer::new(MAX_ACCESS_UNIT_BYTES),
            units: Vec::new(),
            report: ViewerReport::default(),
            highest_sequence: None,
            last_sr: None,
        }
    }

    /// The whole access units kept so far (the first [`MAX_UNITS`]): when each was complete,
    /// from the viewer's start, and its Annex B bytes.
    pub fn access_units(&self) -> impl Iterator<Item = (Duration, &[u8])> {
        self.units.iter().map(|(at, b)| (*at, b.as_slice()))
    }

    /// What came so far (pictures are counted by [`Viewer::finish`]).
    pub fn report(&self) -> &ViewerReport {
        &self.report
    }

    /// One datagram from the accessory's video port, `at` after the viewer's start.
    pub fn on_datagram(&mut self, datagram: &mut [u8], at: Duration) {
        self.report.max_datagram = self.report.max_datagram.max(datagram.len());
        if is_rtcp(datagram) {
            let Ok(n) = self.rx.unprotect_rtcp(datagram) else {
                self.report.rejected += 1;
                return;
            };
            for p in parse_compound(datagram.get(..n).unwrap_or_default()).unwrap_or_default() {
                if let RtcpPacket::SenderReport(sr) = p {
                    self.report.sender_reports += 1;
                    // The middle 32 bits of the NTP timestamp (RFC 3550 §6.4.1 LSR).
                    self.last_sr = Some(((sr.ntp_timestamp >> 16) as u32, at));
                }
            }
            return;
        }
        let Ok(n) = self.rx.unprotect_rtp(datagram) else {
            self.report.rejected += 1;
            return;
        };
        let Ok(rtp) = RtpPacket::parse(datagram.get(..n).unwrap_or_default()) else {
            self.report.rejected += 1;
            return;
        };
        let r = &mut self.report;
        r.rtp_packets += 1;
        r.first_packet.get_or_insert(at);
        r.ssrcs.insert(rtp.header.ssrc);
        r.payload_types.insert(rtp.header.payload_type);
        self.highest_sequence = Some(rtp.header.sequence_number);
        match self.depacketizer.push(&rtp.header, rtp.payload) {
            Ok(Some(unit)) => {
                r.access_units += 1;
                if r.first_unit_nal_types.is_empty() {
                    r.first_unit_nal_types = unit.nal_types;
                }
                if self.units.len() < MAX_UNITS {
                    self.units.push((at, unit.annex_b));
                }
            }
            Ok(None) => {}
            Err(_) => r.broken_units += 1,
        }
    }

    /// An SRTCP receiver report about the accessory's stream, `at` after the start (iOS sends
    /// one every RTCP interval; the accessory ends a stream whose reports stop).
    pub fn receiver_report(&mut self, at: Duration) -> Vec<u8> {
        let block = ReportBlock {
            ssrc: self.report.ssrcs.first().copied().unwrap_or_default(),
            extended_highest_sequence: self.highest_sequence.map_or(0, u32::from),
            last_sr: self.last_sr.map_or(0, |(lsr, _)| lsr),
            delay_since_last_sr: self.last_sr.map_or(0, |(_, t)| {
                u32::try_from(at.saturating_sub(t).as_micros() * 65_536 / 1_000_000)
                    .unwrap_or(u32::MAX)
            }),
            ..ReportBlock::default()
        };
        let mut out = Vec::with_capacity(64);
        ReceiverReport {
            ssrc: self.ssrc,
            reports: vec![block],
        }
        .write(&mut out);
        write_sdes_cname(&mut out, self.ssrc, "controller");
        // Our own packets cannot fail to protect short of 2^31 reports.
        let _ = self.tx.protect_rtcp(&mut out);
        out
    }

    /// Decodes the kept access units in order and returns the report. CPU-bound: run it off
    /// the async runtime.
    pub fn finish(self) -> ViewerReport {
        use openh264::decoder::{Decoder, DecoderConfig, Flush};
        use openh264::formats::YUVSource as _;
        let mut report = self.report;
        // No flush after each access unit: forced flushes make openh264 fail on the following
        // P frames (as the motion detector found); it then holds one picture back.
        let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
        let decoder = Decoder::with_api_config(openh264::OpenH264API::from_source(), config);
        let Ok(mut decoder) = decoder else {
            report.decode_errors = self.units.len() as u64;
            return report;
        };
        for (at, unit) in &self.units {
            match decoder.decode(unit) {
                Ok(Some(picture)) => {
                    report.pictures += 1;
                    report.size.get_or_insert(picture.dimensions());
                }
                Ok(None) => {}
                Err(_) => report.decode_errors += 1,
            }
            // The first picture out is the first IDR (POC 0): the access unit that
            // completed it is the first one fed that decodes.
            if report.first_picture.is_none() && report.decode_errors == 0 {
                report.first_picture = Some(*at);
            }
        }
        match decoder.flush_remaining() {
            Ok(rest) => {
                if let Some(p) = rest.first() {
                    report.size.get_or_insert(p.dimensions());
                }
                report.pictures += rest.len() as u64;
            }
            Err(_) => report.decode_errors += 1,
        }
        if report.pictures == 0 {
            report.first_picture = None;
        }
        report
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use recorder::{DemoSource, MediaUnit};
    use rtp::{Packetizer, PacketizerConfig};

    use super::*;

    #[test]
    fn viewer_decodes_a_protected_stream_and_refuses_tampered_packets() {
        let key = MasterKey::new(&[7; 16], &[9; 14]).unwrap();
        let mut sender = SrtpContext::new(rtp::SrtpSuite::AesCm128HmacSha1_80, &key);
        let mut p = Packetizer::new(PacketizerConfig {
            payload_type: 99,
            ssrc: 1234,
            max_packet_bytes: 1378 - 10,
            initial_sequence: 1,
        })
        .unwrap();
        let mut demo = DemoSource::bundled().unwrap();
        let (mut ps, mut datagrams, mut units) = (None, Vec::new(), 0);
        while units < 10 {
            match demo.next_unit().1 {
                MediaUnit::ParameterSets(p) => ps = Some(p),
                MediaUnit::Video(v) => {
                    let ts = u32::try_from(v.pts_90k).unwrap();
                    p.packetize(&v.data, v.framing, ps.as_ref(), ts, &mut |pkt| {
                        sender.protect_rtp(pkt).unwrap();
                        datagrams.push(pkt.clone());
                    })
                    .unwrap();
                    units += 1;
                }
                MediaUnit::Audio(_) => {}
            }
        }
        let mut viewer = Viewer::new(&key, 5);
        // A tampered copy of the first packet is refused; the original still decrypts.
        let mut forged = datagrams[0].clone();
        forged[20] ^= 1;
        viewer.on_datagram(&mut forged, Duration::ZERO);
        for (i, d) in datagrams.iter_mut().enumerate() {
            viewer.on_datagram(d, Duration::from_millis(i as u64));
        }
        let rr = viewer.receiver_report(Duration::from_millis(500));
        let report = viewer.finish();
        assert_eq!(report.rejected, 1);
        assert_eq!(report.ssrcs, BTreeSet::from([1234]));
        assert_eq!(report.access_units, 10);
        assert_eq!(report.first_unit_nal_types[..2], [7, 8]);
        assert_eq!(report.pictures, 10, "{report:?}");
        assert_eq!(report.decode_errors, 0);
        assert_eq!(report.size, Some((1920, 1080)));
        // The first picture counts from the last packet of the IDR access unit.
        let idr_end = datagrams
            .iter()
            .position(|d| RtpPacket::parse(d).unwrap().header.marker)
            .unwrap();
        assert_eq!(
            report.first_picture,
            Some(Duration::from_millis(idr_end as u64))
        );
        // The receiver report authenticates with the same key and names the sender.
        let mut rx = SrtpContext::new(rtp::SrtpSuite::AesCm128HmacSha1_80, &key);
        let mut rr = rr;
        let n = rx.unprotect_rtcp(&mut rr).unwrap();
        match &parse_compound(&rr[..n]).unwrap()[0] {
            RtcpPacket::ReceiverReport(r) => assert_eq!(r.reports[0].ssrc, 1234),
            other => panic!("{other:?}"),
        }
    }
}
