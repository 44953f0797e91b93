//! [`AudioSession`]: the live-view audio stream of one viewer, sans-IO (live-view notes §1.9,
//! §3; issue 13).
//!
//! ```text
//!  OpusSubscription (the camera's shared AAC-LC → Opus feed for this target) ─► RTP (PT, SSRC
//!  from 117/118; timestamp at the requested rate, + packet time × rate per packet) ─► SRTP
//!  (audio keys) ─► datagrams to the audio port; sender reports every audio RTCP interval, on
//!  the video's clock
//! ```
//!
//! # Lip sync
//! Both streams' sender reports map "now" to the media time of the same source instant: the
//! driver hands the session the video's [`SourceClock`] (the source time of the frame it sent
//! last and when), and the audio report's RTP timestamp is the audio time of that source
//! instant. A receiver that aligns the two streams by their reports (RFC 3550 §6.4.1) plays a
//! sound and the frame it was captured with together. Without a video clock (before the first
//! frame, or a sub-stream with its own clock) the audio maps its own send times.
//!
//! # Failures
//! An audio failure never ends the video: a source the transcoder cannot take (AAC-ELD, five
//! channels), too many corrupt units in a row, or a feed that fell behind ends the audio
//! alone with [`AudioEvent::Dropped`] (`live::opus_feed`).

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use rtp::packet::RtpHeader;
use rtp::rtcp;
use rtp::srtp::{Context as Srtp, MasterKey, Suite};

use super::opus_feed::OpusSubscription;
use super::transcode::{OpusPacket, OpusTarget};
/// Most datagrams queued for the driver (beyond it the oldest are dropped).
const MAX_QUEUED: usize = 256;
/// The CNAME in our SDES items (the video's, so a receiver groups the two streams).
const CNAME: &str = "hksv-bridge";

/// What the audio stream was negotiated with (118 + 117 selected audio).
#[derive(Debug, Clone)]
pub struct AudioParams {
    /// RTP payload type (117 audio RTP parameters; 110 in practice).
    pub payload_type: u8,
    /// Our audio SSRC (118 answer).
    pub ssrc: u32,
    /// Sender-report interval (117 audio RTCP interval; 5 s in practice).
    pub rtcp_interval: Duration,
    /// SRTP suite (118).
    pub suite: Suite,
    /// Key we protect with (our 118 answer's audio key).
    pub send_key: MasterKey,
    /// Key the controller protects its audio RTCP with (its 118 request).
    pub receive_key: MasterKey,
    /// Rate, packet time and bitrate asked for.
    pub target: OpusTarget,
    /// First RTP sequence number (random).
    pub initial_sequence: u16,
    /// RTP timestamp of the first packet (random).
    pub timestamp_origin: u32,
    /// Wall-clock time at the session's start `now`, for the NTP field of sender reports.
    pub wall_clock_at_start: SystemTime,
}

/// The source time (90 kHz) that a stream presents at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceClock {
    /// Source time, 90 kHz.
    pub source_90k: i64,
    /// When it was presented (sent).
    pub at: Instant,
}

impl SourceClock {
    /// The source time at `now`.
    pub fn at(&self, now: Instant) -> i64 {
        let d = match now.checked_duration_since(self.at) {
            Some(after) => after.as_micros() as i64,
            None => -(self.at.saturating_duration_since(now).as_micros() as i64),
        };
        self.source_90k + d * 9 / 100
    }
}

/// Something the driver should log.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioEvent {
    /// The first audio packet was queued.
    Started,
    /// The audio ended for this session; the video goes on.
    Dropped {
        /// Why, for the log.
        reason: String,
    },
}

/// The live audio of one viewer; see the module docs.
pub struct AudioSession {
    params: AudioParams,
    started: Instant,
    sub: Option<OpusSubscription>,
    tx: Srtp,
    rx: Srtp,
    sequence: u16,
    /// RTP time (since the origin) and source time of the last packet, and when it went.
    last: Option<(u32, i64, Instant)>,
    video_clock: Option<SourceClock>,
    encoded: Vec<OpusPacket>,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<AudioEvent>,
    next_report: Option<Instant>,
    /// RTP packets sent.
    pub packets: u64,
    /// Payload bytes sent (for sender reports).
    octets: u64,
    /// Datagram bytes queued.
    pub bytes: u64,
    /// Authenticated RTCP packets from the controller on the audio port.
    pub heard: u64,
    /// Datagrams on the audio port that failed authentication or parsing.
    pub rejected: u64,
    /// Why the audio was dropped, once it was.
    pub dropped: Option<String>,
}

impl std::fmt::Debug for AudioSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioSession")
            .field("ssrc", &self.params.ssrc)
            .field("packets", &self.packets)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl AudioSession {
    /// An audio stream of `sub`'s packets from `now` (`sub` encodes `params.target`).
    pub fn new(now: Instant, params: AudioParams, sub: OpusSubscription) -> Self {
        Self {
            started: now,
            sub: Some(sub),
            tx: Srtp::new(params.suite, &params.send_key),
            rx: Srtp::new(params.suite, &params.receive_key),
            sequence: params.initial_sequence,
            last: None,
            video_clock: None,
            encoded: Vec::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            next_report: None,
            packets: 0,
            octets: 0,
            bytes: 0,
            heard: 0,
            rejected: 0,
            dropped: None,
            params,
        }
    }

    /// The negotiated parameters.
    pub fn params(&self) -> &AudioParams {
        &self.params
    }

    /// Whether it still reads the source (not dropped or stopped).
    pub fn has_reader(&self) -> bool {
        self.sub.is_some()
    }

    /// The video's clock, for lip sync (see the module docs).
    pub fn set_video_clock(&mut self, clock: Option<SourceClock>) {
        self.video_clock = clock;
    }

    /// Sends what the feed has for this viewer (transcoding the camera's new audio if no
    /// other viewer of this target did yet); while `muted` the packets are taken and dropped.
    pub fn pull(&mut self, now: Instant, muted: bool) {
        let Some(sub) = self.sub.as_mut() else {
            return;
        };
        let mut encoded = std::mem::take(&mut self.encoded);
        encoded.clear();
        let r = sub.drain(&mut encoded);
        if !muted {
            for p in &encoded {
                self.send_packet(now, p);
            }
        }
        self.encoded = encoded;
        if let Err(why) = r {
            self.drop_audio(why);
        }
    }

    fn send_packet(&mut self, now: Instant, p: &OpusPacket) {
        let samples = self.params.target.packet_samples() as u32;
        let rate = i64::from(self.params.target.sample_rate_hz);
        let rtp = match self.last {
            None => 0,
            Some((prev, prev_src, _)) if p.discontinuity => {
                // Time went on in the source while nothing was sent: so does the RTP clock.
                let gap = (p.source_90k - prev_src) * rate / 90_000;
                prev.wrapping_add(u32::try_from(gap).unwrap_or(0).max(samples))
            }
            Some((prev, _, _)) => prev.wrapping_add(samples),
        };
        let mut b = Vec::with_capacity(12 + p.data.len() + self.tx.overhead_rtp());
        RtpHeader {
            // RFC 7587 §4.2: the marker only on the first packet of a talkspurt; we send no DTX.
            marker: self.packets == 0,
            payload_type: self.params.payload_type,
            sequence_number: self.sequence,
            timestamp: self.params.timestamp_origin.wrapping_add(rtp),
            ssrc: self.params.ssrc,
        }
        .write(&mut b);
        b.extend_from_slice(&p.data);
        if self.tx.protect_rtp(&mut b).is_err() {
            return;
        }
        self.sequence = self.sequence.wrapping_add(1);
        self.last = Some((rtp, p.source_90k, now));
        self.packets += 1;
        self.octets += p.data.len() as u64;
        self.queue(b);
        if self.packets == 1 {
            self.events.push_back(AudioEvent::Started);
            self.send_report(now);
        }
    }

    fn queue(&mut self, b: Vec<u8>) {
        self.bytes += b.len() as u64;
        if self.out.len() >= MAX_QUEUED {
            self.out.pop_front();
        }
        self.out.push_back(b);
    }

    /// A datagram from the controller on our audio port: authenticated RTCP is counted;
    /// anything else (including audio: we have no speaker) is dropped.
    pub fn handle_datagram(&mut self, datagram: &mut [u8]) {
        if !rtp::is_rtcp(datagram) {
            self.rejected += 1;
            return;
        }
        match self.rx.unprotect_rtcp(datagram) {
            Ok(n)
                if datagram
                    .get(..n)
                    .map(rtcp::parse_compound)
                    .is_some_and(|r| r.is_ok()) =>
            {
                self.heard += 1;
            }
            _ => self.rejected += 1,
        }
    }

    /// Timers: sender reports.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_report.is_some_and(|t| t <= now) && self.dropped.is_none() {
            self.send_report(now);
        }
    }

    fn send_report(&mut self, now: Instant) {
        let Some((rtp, src, at)) = self.last else {
            return;
        };
        let rate = i64::from(self.params.target.sample_rate_hz);
        // The source instant presented now (the video's, else our own send clock) in audio time.
        let src_now = match self.video_clock {
            Some(c) => c.at(now),
            None => SourceClock {
                source_90k: src,
                at,
            }
            .at(now),
        };
        let rtp_now = i64::from(rtp) + (src_now - src) * rate / 90_000;
        let wall = self.params.wall_clock_at_start + now.saturating_duration_since(self.started);
        let mut b = Vec::with_capacity(80);
        rtcp::write_sender_report(
            &mut b,
            self.params.ssrc,
            wall,
            self.params.timestamp_origin.wrapping_add(rtp_now as u32),
            (self.packets, self.octets),
            CNAME,
        );
        if self.tx.protect_rtcp(&mut b).is_ok() {
            self.queue(b);
        }
        self.next_report = Some(now + self.params.rtcp_interval);
    }

    fn drop_audio(&mut self, reason: String) {
        if self.dropped.is_some() {
            return;
        }
        self.sub = None;
        self.next_report = None;
        self.dropped = Some(reason.clone());
        self.events.push_back(AudioEvent::Dropped { reason });
    }

    /// Ends the audio (the video ended): nothing more goes out.
    pub fn stop(&mut self) {
        self.sub = None;
        self.next_report = None;
        self.out.clear();
    }

    /// The next datagram to send; `false` when none is queued.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        match self.out.pop_front() {
            Some(b) => {
                *out = b;
                true
            }
            None => false,
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<AudioEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_report
    }

    /// Access units its feed decoded and skipped as corrupt (shared with the other viewers
    /// of the same target).
    pub fn units(&self) -> Option<(u64, u64)> {
        self.sub.as_ref().map(|s| s.feed().units())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests;
