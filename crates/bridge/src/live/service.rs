//! One CameraRTPStreamManagement service's session state: SetupEndpoints (118), the
//! SelectedRTPStreamConfiguration commands (117) and StreamingStatus (120), as HAP-NodeJS's
//! `RTPStreamManagement` answers them (live-view notes §7.1).
//!
//! ```text
//!   Available ──118 write──► Prepared (UDP sockets bound, answer stored for the next GET)
//!      ▲  ▲                     │ 117 START (same session id)
//!      │  └─ 117 END / expiry / │
//!      │     HAP session closed ▼
//!      └──── stream ended ◄── Streaming (a driver task owns the sockets and the LiveSession)
//! ```
//!
//! StreamingStatus is InUse from the 118 write to the end, so a second viewer on the same
//! service is answered busy. Handlers run under the HAP `Core` lock: nothing here blocks
//! (binding a UDP socket is one syscall) or calls back into the server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use hap_server::{ConnectionId, HapStatus};
use hap_tlv::hksv::{SampleRate, StreamingAudioCodec, StreamingStatus};
use hap_tlv::rtp::{
    DEFAULT_MTU_IPV4, DEFAULT_MTU_IPV6, EndpointAddress, IpVersion, SelectedAudioParameters,
    SelectedRtpStreamConfiguration, SessionCommand, SessionId, SetupEndpointsRequest,
    SetupEndpointsResponse, SetupEndpointsStatus, SrtpParameters, SrtpSuite,
};
use rtp::srtp::{MasterKey, Suite};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::audio::AudioParams;
use super::session::{LiveEnd, LiveParams};

/// Settings of a camera's live view (config `[camera.live]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveConfig {
    /// See [`super::DEFAULT_LIVENESS_TIMEOUT`].
    pub liveness_timeout: Duration,
    /// See [`super::DEFAULT_CATCH_UP_SPEED`].
    pub catch_up_speed: u32,
    /// Largest datagram when 117 names no MTU, IPv4 (HAP default 1378).
    pub mtu_ipv4: usize,
    /// The same for IPv6 (HAP default 1228).
    pub mtu_ipv6: usize,
    /// A 118 without a 117 START within this is dropped (the service becomes available).
    pub prepared_ttl: Duration,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            liveness_timeout: super::DEFAULT_LIVENESS_TIMEOUT,
            catch_up_speed: super::DEFAULT_CATCH_UP_SPEED,
            mtu_ipv4: usize::from(DEFAULT_MTU_IPV4),
            mtu_ipv6: usize::from(DEFAULT_MTU_IPV6),
            prepared_ttl: Duration::from_secs(30),
        }
    }
}

/// What the HAP connection that wrote told us about itself.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The HAP connection.
    pub connection_id: ConnectionId,
    /// Our end of it: the UDP sockets bind here. `None`: the camera's bind address.
    pub local_addr: Option<SocketAddr>,
}

/// A stream to start: handed by a 117 START to the driver, which owns it from then on.
#[derive(Debug)]
pub struct StartOrder {
    /// Which of the camera's RTP services.
    pub service: usize,
    /// The HAP connection that set it up (the stream ends when it closes).
    pub connection_id: ConnectionId,
    /// The 118/117 session id.
    pub session_id: SessionId,
    /// Our video socket (RTP out, RTCP in), non-blocking.
    pub video_socket: UdpSocket,
    /// Our audio socket (Opus out, audio RTCP in), non-blocking.
    pub audio_socket: UdpSocket,
    /// Where the controller receives video.
    pub destination: SocketAddr,
    /// Where the controller receives audio (its 118 audio port).
    pub audio_destination: SocketAddr,
    /// The stream's parameters.
    pub params: LiveParams,
    /// The audio's parameters when the viewer asked for Opus we can send (117 selected
    /// audio); `None`: video only.
    pub audio: Option<AudioParams>,
    /// Ends the stream from outside (117 END, Active = 0, shutdown).
    pub stop: watch::Receiver<Option<LiveEnd>>,
    /// The stream's number on this service, for [`StreamService::stream_ended`].
    pub generation: u64,
    /// Requested size (width, height, fps): picks the feed and goes to the logs.
    pub requested: Option<(u16, u16, u8)>,
    /// Requested audio packet time, ms (60 for a remote viewer on a slow link).
    pub audio_packet_time_ms: Option<u8>,
}

impl StartOrder {
    /// Whether a camera's `live_source` (its sub-stream) should serve this request: a small
    /// picture (width below 640, e.g. the Apple Watch's 320x240) or the long audio packets
    /// iOS asks for over a slow remote link (≥ 60 ms), as Scrypted decides.
    pub fn wants_sub_stream(&self) -> bool {
        sub_stream_wanted(self.requested, self.audio_packet_time_ms)
    }
}

fn sub_stream_wanted(requested: Option<(u16, u16, u8)>, audio_packet_time_ms: Option<u8>) -> bool {
    requested.is_some_and(|(w, _, _)| w < 640) || audio_packet_time_ms.is_some_and(|t| t >= 60)
}

struct Prepared {
    session_id: SessionId,
    connection_id: ConnectionId,
    destination: SocketAddr,
    video_socket: UdpSocket,
    audio_socket: UdpSocket,
    suite: Suite,
    key: MasterKey,
    ssrc: u32,
    audio_destination: SocketAddr,
    audio_suite: Suite,
    audio_key: MasterKey,
    audio_ssrc: u32,
    ipv6: bool,
    at: Instant,
}

enum Slot {
    Available,
    Prepared(Box<Prepared>),
    Streaming {
        session_id: SessionId,
        connection_id: ConnectionId,
        stop: watch::Sender<Option<LiveEnd>>,
        generation: u64,
    },
}

struct Inner {
    slot: Slot,
    /// What a GET of 118 answers.
    setup_response: Vec<u8>,
    /// What a GET of 117 answers (the last accepted write).
    selected: Vec<u8>,
    generation: u64,
}

/// One RTP stream management service; see the module docs.
pub struct StreamService {
    index: usize,
    config: LiveConfig,
    fallback_bind: IpAddr,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for StreamService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamService")
            .field("index", &self.index)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// GET 117 while streaming is disabled: session control with command SUSPEND only.
const SUSPENDED_READ: [u8; 5] = [0x01, 0x03, 0x02, 0x01, 0x02];

/// Whether a status changed (then StreamingStatus must be re-sent as an event).
pub type StatusChanged = bool;

fn random_ssrc() -> u32 {
    // < 2^31 (some receivers treat the SSRC as signed) and never 0.
    (rand::random::<u32>() >> 1).max(1)
}

impl StreamService {
    /// Service number `index` of a camera that binds `fallback_bind` when a caller's local
    /// address is unknown.
    pub fn new(index: usize, config: LiveConfig, fallback_bind: IpAddr) -> Self {
        Self {
            index,
            config,
            fallback_bind,
            inner: Mutex::new(Inner {
                slot: Slot::Available,
                setup_response: SetupEndpointsResponse::error().encode(),
                selected: Vec::new(),
                generation: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// StreamingStatus: InUse from SetupEndpoints to the stream's end.
    pub fn status(&self) -> StreamingStatus {
        match self.lock().slot {
            Slot::Available => StreamingStatus::Available,
            _ => StreamingStatus::InUse,
        }
    }

    /// Whether a stream runs.
    pub fn is_streaming(&self) -> bool {
        matches!(self.lock().slot, Slot::Streaming { .. })
    }

    /// GET 118: the answer to the last write (`02 02` while streaming is disabled).
    pub fn read_setup_endpoints(&self, enabled: bool) -> Vec<u8> {
        if !enabled {
            return SetupEndpointsResponse::error().encode();
        }
        self.lock().setup_response.clone()
    }

    /// GET 117: the last accepted write (a SUSPEND command while streaming is disabled, as
    /// HAP-NodeJS answers).
    pub fn read_selected(&self, enabled: bool) -> Vec<u8> {
        if !enabled {
            // `01 { 02 = 2 (suspend) }`, byte for byte what HAP-NodeJS answers.
            return SUSPENDED_READ.to_vec();
        }
        self.lock().selected.clone()
    }

    /// Drops a SetupEndpoints that no START followed within the TTL.
    pub fn expire(&self, now: Instant) -> StatusChanged {
        let mut s = self.lock();
        if let Slot::Prepared(p) = &s.slot
            && now.saturating_duration_since(p.at) >= self.config.prepared_ttl
        {
            debug!(service = self.index, session = ?p.session_id, "SetupEndpoints without START expired");
            s.slot = Slot::Available;
            return true;
        }
        false
    }

    /// 118 write. Errors: -70412 while disabled, -70410 for a malformed request or bad key
    /// lengths (no state change either way). A busy service answers `Busy` on the next read.
    pub fn setup_endpoints(
        &self,
        now: Instant,
        caller: Caller,
        bytes: &[u8],
        enabled: bool,
    ) -> Result<StatusChanged, HapStatus> {
        if !enabled {
            return Err(HapStatus::NOT_ALLOWED_IN_CURRENT_STATE);
        }
        let req = SetupEndpointsRequest::decode(bytes).map_err(|e| {
            warn!(service = self.index, error = %e, "malformed SetupEndpoints");
            HapStatus::INVALID_VALUE_IN_REQUEST
        })?;
        let (suite, key) = srtp_of(&req.video_srtp)?;
        let (audio_suite, audio_key) = srtp_of(&req.audio_srtp)?;
        self.expire(now);
        let mut s = self.lock();
        if !matches!(s.slot, Slot::Available) {
            info!(service = self.index, "SetupEndpoints while in use: busy");
            s.setup_response = SetupEndpointsResponse::busy(req.session_id).encode();
            return Ok(false);
        }
        let Some(destination) = destination(&req.controller_address) else {
            warn!(service = self.index, address = %req.controller_address.address, "SetupEndpoints with an unusable controller address");
            return Err(HapStatus::INVALID_VALUE_IN_REQUEST);
        };
        let local = self.local_ip(caller.local_addr, destination.ip());
        let sockets = bind_pair(local);
        let (video_socket, audio_socket) = match sockets {
            Ok(p) => p,
            Err(e) => {
                warn!(service = self.index, %local, error = %e, "cannot bind live-view sockets");
                s.setup_response = SetupEndpointsResponse::error().encode();
                return Ok(false);
            }
        };
        let (Ok(video_addr), Ok(audio_addr)) =
            (video_socket.local_addr(), audio_socket.local_addr())
        else {
            s.setup_response = SetupEndpointsResponse::error().encode();
            return Ok(false);
        };
        let ssrc = random_ssrc();
        let audio_ssrc = random_ssrc();
        let audio_destination =
            SocketAddr::new(destination.ip(), req.controller_address.audio_rtp_port);
        let ipv6 = local.is_ipv6();
        let response = SetupEndpointsResponse {
            session_id: Some(req.session_id),
            status: SetupEndpointsStatus::Success,
            accessory_address: Some(EndpointAddress {
                ip_version: if ipv6 { IpVersion::V6 } else { IpVersion::V4 },
                address: local.to_string(),
                video_rtp_port: video_addr.port(),
                audio_rtp_port: audio_addr.port(),
            }),
            // Our keys are the controller's, echoed (HAP-NodeJS and every peer do).
            video_srtp: Some(req.video_srtp.clone()),
            audio_srtp: Some(req.audio_srtp.clone()),
            video_ssrc: Some(ssrc),
            audio_ssrc: Some(audio_ssrc),
        };
        s.setup_response = response.encode();
        debug!(service = self.index, session = ?req.session_id, %destination, local = %video_addr, "live view prepared");
        s.slot = Slot::Prepared(Box::new(Prepared {
            session_id: req.session_id,
            connection_id: caller.connection_id,
            destination,
            video_socket,
            audio_socket,
            suite,
            key,
            ssrc,
            audio_destination,
            audio_suite,
            audio_key,
            audio_ssrc,
            ipv6,
            at: now,
        }));
        Ok(true)
    }

    fn local_ip(&self, local: Option<SocketAddr>, controller: IpAddr) -> IpAddr {
        let ip = local.map_or(self.fallback_bind, |a| a.ip());
        match (ip, controller) {
            // A dual-stack listener sees IPv4 controllers as ::ffff:a.b.c.d.
            (IpAddr::V6(v6), IpAddr::V4(_)) => v6
                .to_ipv4_mapped()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V4),
            (IpAddr::V4(_), IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            (ip, _) => ip,
        }
    }

    /// 117 write. START on the prepared session returns the [`StartOrder`]; END stops it;
    /// RECONFIGURE is accepted and logged (passthrough has nothing to change); SUSPEND and
    /// RESUME answer -70410 as HAP-NodeJS does. Errors: -70412 while disabled, -70410 for a
    /// malformed value or another session id (no state change).
    pub fn select(
        &self,
        now: Instant,
        caller: Caller,
        bytes: &[u8],
        enabled: bool,
    ) -> Result<(Option<StartOrder>, StatusChanged), HapStatus> {
        if !enabled {
            return Err(HapStatus::NOT_ALLOWED_IN_CURRENT_STATE);
        }
        self.expire(now);
        let sel = SelectedRtpStreamConfiguration::decode(bytes).map_err(|e| {
            warn!(service = self.index, error = %e, "malformed SelectedRTPStreamConfiguration");
            HapStatus::INVALID_VALUE_IN_REQUEST
        })?;
        let mut s = self.lock();
        let current = match &s.slot {
            Slot::Available => None,
            Slot::Prepared(p) => Some(p.session_id),
            Slot::Streaming { session_id, .. } => Some(*session_id),
        };
        if current != Some(sel.session_id) {
            debug!(service = self.index, session = ?sel.session_id, command = ?sel.command, "117 for an unknown session");
            return Err(HapStatus::INVALID_VALUE_IN_REQUEST);
        }
        match sel.command {
            SessionCommand::Start => {
                let Slot::Prepared(_) = &s.slot else {
                    // START on a running stream: nothing to do.
                    s.selected = bytes.to_vec();
                    return Ok((None, false));
                };
                let video = sel
                    .video
                    .as_ref()
                    .and_then(|v| v.rtp.as_ref().map(|r| (v, r)));
                let Some((video, rtp)) = video else {
                    warn!(service = self.index, "START without video RTP parameters");
                    return Err(HapStatus::INVALID_VALUE_IN_REQUEST);
                };
                if rtp.payload_type > 127 {
                    return Err(HapStatus::INVALID_VALUE_IN_REQUEST);
                }
                let Slot::Prepared(p) = std::mem::replace(&mut s.slot, Slot::Available) else {
                    return Err(HapStatus::INVALID_VALUE_IN_REQUEST);
                };
                let default_mtu = if p.ipv6 {
                    self.config.mtu_ipv6
                } else {
                    self.config.mtu_ipv4
                };
                let mtu = rtp
                    .max_mtu
                    .map_or(default_mtu, usize::from)
                    .clamp(super::session::MIN_MTU, usize::from(u16::MAX));
                let interval = if rtp.rtcp_interval_s.is_finite() && rtp.rtcp_interval_s > 0.0 {
                    Duration::from_secs_f32(rtp.rtcp_interval_s.clamp(0.1, 5.0))
                } else {
                    Duration::from_millis(500)
                };
                let (stop_tx, stop_rx) = watch::channel(None);
                s.generation += 1;
                let generation = s.generation;
                let params = LiveParams {
                    payload_type: rtp.payload_type,
                    ssrc: p.ssrc,
                    mtu,
                    rtcp_interval: interval,
                    liveness_timeout: self.config.liveness_timeout,
                    catch_up_speed: self.config.catch_up_speed,
                    suite: p.suite,
                    send_key: p.key.clone(),
                    receive_key: p.key.clone(),
                    initial_sequence: rand::random(),
                    timestamp_origin: rand::random(),
                    wall_clock_at_start: SystemTime::now(),
                };
                s.slot = Slot::Streaming {
                    session_id: p.session_id,
                    connection_id: p.connection_id,
                    stop: stop_tx,
                    generation,
                };
                s.selected = bytes.to_vec();
                let requested = video.attributes.map(|a| (a.width, a.height, a.fps));
                let audio_packet_time_ms = sel.audio.as_ref().and_then(|a| a.packet_time_ms);
                let audio = sel.audio.as_ref().and_then(|a| {
                    let r = audio_params(a, &p);
                    if r.is_none() {
                        info!(service = self.index, codec = a.codec, sample_rate = ?a.sample_rate, packet_time_ms = ?a.packet_time_ms, "live view without audio: the selected audio is not Opus we send");
                    }
                    r
                });
                Ok((
                    Some(StartOrder {
                        service: self.index,
                        connection_id: caller.connection_id,
                        session_id: p.session_id,
                        video_socket: p.video_socket,
                        audio_socket: p.audio_socket,
                        destination: p.destination,
                        audio_destination: p.audio_destination,
                        params,
                        audio,
                        stop: stop_rx,
                        generation,
                        requested,
                        audio_packet_time_ms,
                    }),
                    false,
                ))
            }
            SessionCommand::End => {
                s.selected = bytes.to_vec();
                match std::mem::replace(&mut s.slot, Slot::Available) {
                    Slot::Streaming { stop, .. } => {
                        stop.send_replace(Some(LiveEnd::Stopped));
                    }
                    Slot::Prepared(_) | Slot::Available => {}
                }
                Ok((None, true))
            }
            SessionCommand::Reconfigure => {
                let size = sel.video.as_ref().and_then(|v| v.attributes);
                let bitrate = sel
                    .video
                    .as_ref()
                    .and_then(|v| v.rtp.as_ref())
                    .map(|r| r.max_bitrate_kbps);
                info!(
                    service = self.index,
                    ?size,
                    ?bitrate,
                    "RECONFIGURE accepted (the camera's own stream is sent unchanged)"
                );
                s.selected = bytes.to_vec();
                Ok((None, false))
            }
            SessionCommand::Suspend | SessionCommand::Resume => {
                debug!(service = self.index, command = ?sel.command, "unhandled 117 command");
                Err(HapStatus::INVALID_VALUE_IN_REQUEST)
            }
        }
    }

    /// The driver's stream `generation` ended: the service is available again (unless a new
    /// stream already took it).
    pub fn stream_ended(&self, generation: u64) -> StatusChanged {
        let mut s = self.lock();
        if let Slot::Streaming { generation: g, .. } = &s.slot
            && *g == generation
        {
            s.slot = Slot::Available;
            return true;
        }
        false
    }

    /// Ends whatever this service has (prepared or streaming) with `why`.
    pub fn stop(&self, why: LiveEnd) -> StatusChanged {
        let mut s = self.lock();
        match std::mem::replace(&mut s.slot, Slot::Available) {
            Slot::Streaming { stop, .. } => {
                stop.send_replace(Some(why));
                true
            }
            Slot::Prepared(_) => true,
            Slot::Available => false,
        }
    }

    /// HAP connection `conn` closed: a session it prepared is dropped (a running stream is
    /// ended by its driver, which waits on the same connection).
    pub fn connection_closed(&self, conn: ConnectionId) -> StatusChanged {
        let mut s = self.lock();
        match &s.slot {
            Slot::Prepared(p) if p.connection_id == conn => {
                s.slot = Slot::Available;
                true
            }
            Slot::Streaming {
                connection_id,
                stop,
                ..
            } if *connection_id == conn => {
                stop.send_replace(Some(LiveEnd::HapSessionClosed));
                s.slot = Slot::Available;
                true
            }
            _ => false,
        }
    }
}

/// The audio session's parameters for a 117 selected audio: Opus (3), one channel, 8/16/24
/// kHz, a packet time of 20/30/40/60 ms and an RTP payload type; `None` for anything else.
fn audio_params(a: &SelectedAudioParameters, p: &Prepared) -> Option<AudioParams> {
    use super::transcode::{OpusTarget, PACKET_TIMES_MS};
    let rtp = a.rtp.as_ref()?;
    let rate = match a.sample_rate? {
        SampleRate::Hz8000 => 8_000,
        SampleRate::Hz16000 => 16_000,
        SampleRate::Hz24000 => 24_000,
        _ => return None,
    };
    let packet_time_ms = a.packet_time_ms.unwrap_or(20);
    let usable = a.codec == StreamingAudioCodec::Opus as u8
        && a.channels.unwrap_or(1) == 1
        && PACKET_TIMES_MS.contains(&packet_time_ms)
        && rtp.payload_type <= 127;
    if !usable {
        return None;
    }
    let rtcp_interval = if rtp.rtcp_interval_s.is_finite() && rtp.rtcp_interval_s > 0.0 {
        Duration::from_secs_f32(rtp.rtcp_interval_s.clamp(0.5, 10.0))
    } else {
        Duration::from_secs(5)
    };
    let kbps = if rtp.max_bitrate_kbps == 0 {
        24
    } else {
        rtp.max_bitrate_kbps
    };
    Some(AudioParams {
        payload_type: rtp.payload_type,
        ssrc: p.audio_ssrc,
        rtcp_interval,
        suite: p.audio_suite,
        send_key: p.audio_key.clone(),
        receive_key: p.audio_key.clone(),
        target: OpusTarget {
            sample_rate_hz: rate,
            packet_time_ms,
            bitrate_bps: u32::from(kbps) * 1000,
        },
        initial_sequence: rand::random(),
        timestamp_origin: rand::random(),
        wall_clock_at_start: SystemTime::now(),
    })
}

fn srtp_of(p: &SrtpParameters) -> Result<(Suite, MasterKey), HapStatus> {
    match p.suite {
        SrtpSuite::AesCm128HmacSha1_80 => MasterKey::new(&p.master_key, &p.master_salt)
            .map(|k| (Suite::AesCm128HmacSha1_80, k))
            .map_err(|_| HapStatus::INVALID_VALUE_IN_REQUEST),
        // We advertise suite 0 only (116); suite 2 ("none") comes with empty keys.
        SrtpSuite::None => Ok((
            Suite::Null,
            MasterKey::new(&[0; 16], &[0; 14]).map_err(|_| HapStatus::INVALID_VALUE_IN_REQUEST)?,
        )),
        SrtpSuite::Aes256CmHmacSha1_80 => Err(HapStatus::INVALID_VALUE_IN_REQUEST),
    }
}

fn destination(a: &EndpointAddress) -> Option<SocketAddr> {
    let ip: IpAddr = a.address.trim().parse().ok()?;
    let family_ok = match a.ip_version {
        IpVersion::V4 => ip.is_ipv4(),
        IpVersion::V6 => ip.is_ipv6(),
    };
    if !family_ok || a.video_rtp_port == 0 || ip.is_unspecified() || ip.is_multicast() {
        return None;
    }
    Some(SocketAddr::new(ip, a.video_rtp_port))
}

fn bind_pair(ip: IpAddr) -> std::io::Result<(UdpSocket, UdpSocket)> {
    let video = UdpSocket::bind(SocketAddr::new(ip, 0))?;
    let audio = UdpSocket::bind(SocketAddr::new(ip, 0))?;
    video.set_nonblocking(true)?;
    audio.set_nonblocking(true)?;
    Ok((video, audio))
}

#[cfg(test)]
mod tests;
