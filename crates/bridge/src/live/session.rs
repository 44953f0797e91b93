//! [`LiveSession`]: one live-view video stream to one controller, sans-IO (live-view notes
//! §1.6–§1.8, §7.1).
//!
//! The session owns the viewer's [`LiveReader`] (the camera's GOP in progress, then live), the
//! [`Packetizer`] and both SRTP contexts. Access units, datagrams from the controller and `now`
//! go in; SRTP/SRTCP datagrams, [`LiveEvent`]s and the next deadline come out. It never reads a
//! clock or touches a socket: the driver does, and the tests drive it on virtual time.
//!
//! # Pacing
//!
//! ```text
//!  start ──► newest IDR sent at once ──► rest of the GOP at `catch_up_speed` × real time ──►
//!            (the picture)                (RTP timestamps follow the send schedule)
//!      reader empty ──► live: each access unit as it arrives, source spacing
//! ```
//!
//! The frames between the newest IDR and now are needed to decode the present (they are
//! P-frames), so they are sent, but faster than real time, and their RTP timestamps are
//! compressed by the same factor: the receiver plays them as a short fast-forward and then
//! follows live with no lag carried over from the GOP's age. `catch_up_speed` 0 sends the
//! whole GOP as one burst (the lowest delay, the highest peak rate; D17 records the choice).
//!
//! # Ends
//! [`LiveSession::stop`] (117 END, HAP session closed, pairing removed, Active = 0,
//! HomeKitCameraActive = 0, shutdown), no authenticated RTCP for `liveness_timeout`, or the
//! reader failing (source gone, viewer too slow). Every end drops the reader and reports one
//! [`LiveEvent::Ended`]; the driver then drops its socket.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use recorder::{LiveReader, LiveUnit, ParameterSets, ReaderError};
use rtp::rtcp::{self, RtcpPacket};
use rtp::srtp::{Context as Srtp, MasterKey, Suite};
use rtp::{Packetizer, PacketizerConfig, is_rtcp};

/// Default silence (no authenticated RTCP from the controller) after which a stream ends;
/// Scrypted and camera-ffmpeg use 30 s (live-view notes §1.8).
pub const DEFAULT_LIVENESS_TIMEOUT: Duration = Duration::from_secs(30);
/// Default catch-up speed through the GOP backlog (see the module docs and D17).
pub const DEFAULT_CATCH_UP_SPEED: u32 = 4;
/// Smallest MTU a session accepts (an RTP header, an FU-A header, the SRTP tag and some
/// payload).
pub const MIN_MTU: usize = 40;
/// The CNAME in our SDES items.
const CNAME: &str = "hksv-bridge";
/// Most datagrams queued for the driver; beyond it the oldest RTP packets are dropped (the
/// driver is not sending: a viewer that cannot keep up loses frames, the camera does not
/// buffer for it).
const MAX_QUEUED_DATAGRAMS: usize = 4096;

/// What one stream was negotiated with (118 + 117).
#[derive(Debug, Clone)]
pub struct LiveParams {
    /// RTP payload type (117 video RTP parameters; 99 in practice).
    pub payload_type: u8,
    /// Our video SSRC (from our 118 answer), < 2^31.
    pub ssrc: u32,
    /// Largest datagram we send, bytes (117 max MTU; 1378 IPv4 / 1228 IPv6 by default).
    pub mtu: usize,
    /// Sender-report interval (117 min RTCP interval; 0.5 s in practice).
    pub rtcp_interval: Duration,
    /// See [`DEFAULT_LIVENESS_TIMEOUT`].
    pub liveness_timeout: Duration,
    /// See the module docs; 0 = burst.
    pub catch_up_speed: u32,
    /// SRTP suite (118).
    pub suite: Suite,
    /// Key we protect with (the one in our 118 answer).
    pub send_key: MasterKey,
    /// Key the controller protects its RTCP with (its 118 request).
    pub receive_key: MasterKey,
    /// First RTP sequence number (random).
    pub initial_sequence: u16,
    /// RTP timestamp of the first access unit (random).
    pub timestamp_origin: u32,
    /// Wall-clock time at the session's start `now`, for the NTP field of sender reports.
    pub wall_clock_at_start: SystemTime,
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveEnd {
    /// 117 END.
    Stopped,
    /// The HAP session that set the stream up ended (connection closed, pairing removed).
    HapSessionClosed,
    /// CameraRTPStreamManagement Active or HomeKitCameraActive went to 0.
    Disabled,
    /// The bridge is shutting down.
    Shutdown,
    /// No authenticated RTCP for the liveness timeout.
    Silent,
    /// The source ended.
    SourceGone,
    /// The viewer's reader fell behind the camera (the driver could not send fast enough).
    Lagged,
    /// The UDP socket failed.
    SocketFailed,
}

/// Something the driver (logs, status, history) should know.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// The first packet of the first access unit (the IDR) was queued; `latency` is the time
    /// since the session started.
    FirstFrame {
        /// Time from start to the first queued packet.
        latency: Duration,
        /// Access units of the GOP backlog the reader started with (IDR included).
        backlog_units: usize,
    },
    /// The GOP backlog was sent; the stream follows live from here.
    CaughtUp {
        /// Time from start.
        after: Duration,
        /// Access units sent up to here.
        units: u64,
    },
    /// The stream ended; the session sends nothing more.
    Ended {
        /// Why.
        why: LiveEnd,
        /// RTP packets sent.
        packets: u64,
        /// Datagram bytes sent (SRTP included).
        bytes: u64,
        /// Access units sent.
        units: u64,
        /// How long it ran.
        duration: Duration,
    },
}

/// A unit taken from the reader and waiting for its send time (catch-up).
struct Pending {
    unit: Arc<LiveUnit>,
    due: Instant,
}

enum Phase {
    /// Waiting for the first unit (the reader's IDR).
    Starting,
    /// Sending the GOP backlog faster than real time.
    CatchingUp,
    /// Following live.
    Live,
    /// Ended; the reader is gone.
    Ended,
}

/// The media clock of the stream: maps source time (90 kHz) to our send time and RTP time.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// Source DTS of the previous unit.
    prev_dts: i64,
    /// Our stream time of the previous unit, 90 kHz since the first unit.
    prev_out: i64,
}

/// One live-view video stream; see the module docs.
pub struct LiveSession {
    params: LiveParams,
    started: Instant,
    phase: Phase,
    reader: Option<LiveReader>,
    parameter_sets: Option<ParameterSets>,
    packetizer: Packetizer,
    tx: Srtp,
    rx: Srtp,
    clock: Option<Clock>,
    pending: Option<Pending>,
    /// Our stream time and the instant of the last unit sent (for SR RTP timestamps).
    last_sent: Option<(i64, Instant)>,
    out: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    events: VecDeque<LiveEvent>,
    next_report: Instant,
    last_heard: Instant,
    backlog_units: usize,
    packets: u64,
    bytes: u64,
    octets: u64,
    units: u64,
    /// Datagrams from the controller that failed authentication or parsing (dropped).
    rejected: u64,
    /// Authenticated RTCP packets from the controller.
    heard: u64,
}

impl std::fmt::Debug for LiveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSession")
            .field("ssrc", &self.params.ssrc)
            .field("packets", &self.packets)
            .field("units", &self.units)
            .finish_non_exhaustive()
    }
}

/// Why a session could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LiveSetupError {
    /// The MTU leaves no room for an RTP packet.
    #[error("MTU {0} is too small for RTP")]
    Mtu(usize),
    /// A payload type above 127.
    #[error("invalid RTP payload type {0}")]
    PayloadType(u8),
}

impl LiveSession {
    /// A stream that reads `reader` from `now`.
    ///
    /// # Errors
    /// [`LiveSetupError`] for an MTU below [`MIN_MTU`] or a payload type above 127.
    pub fn new(
        now: Instant,
        params: LiveParams,
        reader: LiveReader,
    ) -> Result<Self, LiveSetupError> {
        let tx = Srtp::new(params.suite, &params.send_key);
        let rx = Srtp::new(params.suite, &params.receive_key);
        if params.mtu < MIN_MTU {
            return Err(LiveSetupError::Mtu(params.mtu));
        }
        let packetizer = Packetizer::new(PacketizerConfig {
            payload_type: params.payload_type,
            ssrc: params.ssrc,
            max_packet_bytes: params.mtu - tx.overhead_rtp(),
            initial_sequence: params.initial_sequence,
        })
        .map_err(|_| LiveSetupError::PayloadType(params.payload_type))?;
        let backlog_units = reader.backlog();
        let parameter_sets = reader.parameter_sets();
        Ok(Self {
            started: now,
            phase: Phase::Starting,
            reader: Some(reader),
            parameter_sets,
            packetizer,
            tx,
            rx,
            clock: None,
            pending: None,
            last_sent: None,
            out: VecDeque::new(),
            spare: Vec::new(),
            events: VecDeque::new(),
            // The first SR goes out with the first frame (iOS waits for it; notes §1.8).
            next_report: now,
            last_heard: now,
            backlog_units,
            packets: 0,
            bytes: 0,
            octets: 0,
            units: 0,
            rejected: 0,
            heard: 0,
            params,
        })
    }

    /// The negotiated parameters.
    pub fn params(&self) -> &LiveParams {
        &self.params
    }

    /// The reader to wait on, while the session wants a unit (`None` while a unit waits for
    /// its catch-up send time, and after the end). Hand what it yields to
    /// [`handle_unit`](Self::handle_unit).
    pub fn live_reader(&mut self) -> Option<&mut LiveReader> {
        if self.pending.is_some() || matches!(self.phase, Phase::Ended) {
            return None;
        }
        self.reader.as_mut()
    }

    /// A unit (or the reader's end) from [`live_reader`](Self::live_reader).
    pub fn handle_unit(&mut self, now: Instant, unit: Result<Arc<LiveUnit>, ReaderError>) {
        match unit {
            Ok(u) => {
                self.take(now, u);
                self.pull(now);
            }
            Err(e) => self.reader_failed(now, e),
        }
    }

    /// Takes queued units from the reader as far as pacing allows.
    fn pull(&mut self, now: Instant) {
        while self.pending.is_none() && !matches!(self.phase, Phase::Ended) {
            let Some(reader) = self.reader.as_mut() else {
                return;
            };
            match reader.try_next() {
                Ok(Some(u)) => self.take(now, u),
                Ok(None) => {
                    if matches!(self.phase, Phase::CatchingUp) {
                        self.phase = Phase::Live;
                        self.events.push_back(LiveEvent::CaughtUp {
                            after: now - self.started,
                            units: self.units,
                        });
                    }
                    return;
                }
                Err(e) => {
                    self.reader_failed(now, e);
                    return;
                }
            }
        }
    }

    fn reader_failed(&mut self, now: Instant, e: ReaderError) {
        let why = match e {
            ReaderError::Lagged { .. } => LiveEnd::Lagged,
            // Closed, InitChanged (not produced by live readers) and any later variant.
            _ => LiveEnd::SourceGone,
        };
        self.end(now, why);
    }

    /// Places a unit on the stream clock: sends it now or holds it until its catch-up time.
    fn take(&mut self, now: Instant, unit: Arc<LiveUnit>) {
        let catching_up = !matches!(self.phase, Phase::Live);
        let speed = i64::from(self.params.catch_up_speed);
        let out = match &mut self.clock {
            None => {
                self.clock = Some(Clock {
                    prev_dts: unit.dts_90k,
                    prev_out: 0,
                });
                0
            }
            Some(c) => {
                let step = (unit.dts_90k - c.prev_dts).max(0);
                let step = if catching_up {
                    if speed == 0 { 0 } else { step / speed }
                } else {
                    step
                };
                c.prev_dts = unit.dts_90k;
                c.prev_out += step;
                c.prev_out
            }
        };
        if matches!(self.phase, Phase::Starting) {
            self.phase = Phase::CatchingUp;
        }
        let due = if catching_up {
            self.started + Duration::from_micros(out.max(0) as u64 * 100 / 9)
        } else {
            now
        };
        if due > now {
            self.pending = Some(Pending { unit, due });
        } else {
            self.send_unit(now, &unit, out);
        }
    }

    fn send_unit(&mut self, now: Instant, unit: &LiveUnit, out: i64) {
        let pts_offset = unit.pts_90k - unit.dts_90k;
        let rtp_ts = self
            .params
            .timestamp_origin
            .wrapping_add((out + pts_offset) as u32);
        let first = self.units == 0;
        if unit.is_idr
            && let Some(ps) = self.reader.as_ref().and_then(LiveReader::parameter_sets)
        {
            // The source may have (re)sent its parameter sets since the reader started.
            self.parameter_sets = Some(ps);
        }
        let Self {
            packetizer,
            tx,
            out: queue,
            spare,
            packets,
            bytes,
            parameter_sets,
            ..
        } = self;
        let r = packetizer.packetize(
            &unit.data,
            unit.framing,
            parameter_sets.as_ref(),
            rtp_ts,
            &mut |p| {
                if tx.protect_rtp(p).is_err() {
                    return;
                }
                let mut b = spare.pop().unwrap_or_default();
                b.clear();
                b.extend_from_slice(p);
                *packets += 1;
                *bytes += b.len() as u64;
                if queue.len() >= MAX_QUEUED_DATAGRAMS {
                    queue.pop_front();
                }
                queue.push_back(b);
            },
        );
        let Ok(stats) = r else {
            tracing::debug!("malformed access unit skipped in live view");
            return;
        };
        self.octets += stats.payload_bytes as u64;
        self.units += 1;
        self.last_sent = Some((out, now));
        if first {
            self.events.push_back(LiveEvent::FirstFrame {
                latency: now - self.started,
                backlog_units: self.backlog_units,
            });
            self.send_report(now);
        }
    }

    /// A datagram from the controller on our port: authenticated RTCP counts as liveness;
    /// anything else is dropped (counted in [`rejected`](Self::rejected)).
    pub fn handle_datagram(&mut self, now: Instant, datagram: &mut [u8]) {
        if matches!(self.phase, Phase::Ended) {
            return;
        }
        if !is_rtcp(datagram) {
            // The controller sends no video to us.
            self.rejected += 1;
            return;
        }
        match self.rx.unprotect_rtcp(datagram) {
            Ok(n) => match datagram.get(..n).map(rtcp::parse_compound) {
                Some(Ok(packets)) => {
                    self.last_heard = now;
                    self.heard += 1;
                    if packets.iter().any(|p| matches!(p, RtcpPacket::Bye { .. })) {
                        tracing::debug!("controller sent RTCP BYE");
                    }
                }
                _ => self.rejected += 1,
            },
            Err(_) => self.rejected += 1,
        }
    }

    /// Timers: catch-up sends, sender reports, liveness.
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Ended) {
            return;
        }
        if now.saturating_duration_since(self.last_heard) >= self.params.liveness_timeout {
            self.end(now, LiveEnd::Silent);
            return;
        }
        if let Some(p) = self.pending.take_if(|p| p.due <= now) {
            let out = self.clock.map_or(0, |c| c.prev_out);
            self.send_unit(now, &p.unit, out);
            self.pull(now);
        }
        if now >= self.next_report && self.units > 0 {
            self.send_report(now);
        }
    }

    fn send_report(&mut self, now: Instant) {
        // The RTP time of `now`: the last unit's stream time plus the time since it was sent.
        let rtp_now = self.last_sent.map_or(0, |(out, at)| {
            out + (now.saturating_duration_since(at).as_micros() as i64 * 9 / 100)
        });
        let wall = self.params.wall_clock_at_start + now.saturating_duration_since(self.started);
        let mut b = self.spare.pop().unwrap_or_default();
        b.clear();
        rtcp::write_sender_report(
            &mut b,
            self.params.ssrc,
            wall,
            self.params.timestamp_origin.wrapping_add(rtp_now as u32),
            (self.packets, self.octets),
            CNAME,
        );
        if self.tx.protect_rtcp(&mut b).is_ok() {
            self.bytes += b.len() as u64;
            self.out.push_back(b);
        }
        self.next_report = now + self.params.rtcp_interval;
    }

    /// Ends the stream from outside (see [`LiveEnd`]).
    pub fn stop(&mut self, now: Instant, why: LiveEnd) {
        self.end(now, why);
    }

    fn end(&mut self, now: Instant, why: LiveEnd) {
        if matches!(self.phase, Phase::Ended) {
            return;
        }
        self.phase = Phase::Ended;
        self.reader = None;
        self.pending = None;
        // Nothing more goes out, not even what is queued (END means stop now).
        self.out.clear();
        self.events.push_back(LiveEvent::Ended {
            why,
            packets: self.packets,
            bytes: self.bytes,
            units: self.units,
            duration: now - self.started,
        });
    }

    /// The next datagram to send, swapped into `out` (whose old buffer is reused); `false`
    /// when none is queued.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        match self.out.pop_front() {
            Some(mut b) => {
                std::mem::swap(out, &mut b);
                if self.spare.len() < 64 {
                    self.spare.push(b);
                }
                true
            }
            None => false,
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<LiveEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run; `None` after the end.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if matches!(self.phase, Phase::Ended) {
            return None;
        }
        let mut t = self.last_heard + self.params.liveness_timeout;
        if self.units > 0 {
            t = t.min(self.next_report);
        }
        if let Some(p) = &self.pending {
            t = t.min(p.due);
        }
        Some(t)
    }

    /// The source time of the frame sent last and when, once the stream follows live (during
    /// catch-up the stream runs faster than the source); for the audio's lip sync.
    pub fn source_clock(&self) -> Option<super::audio::SourceClock> {
        match (&self.phase, self.clock, self.last_sent) {
            (Phase::Live, Some(c), Some((_, at))) => Some(super::audio::SourceClock {
                source_90k: c.prev_dts,
                at,
            }),
            _ => None,
        }
    }

    /// Whether the stream ended.
    pub fn is_ended(&self) -> bool {
        matches!(self.phase, Phase::Ended)
    }

    /// Datagrams from the controller that were dropped (unauthenticated or malformed).
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Authenticated RTCP packets from the controller.
    pub fn heard(&self) -> u64 {
        self.heard
    }
}

#[cfg(test)]
mod tests;
