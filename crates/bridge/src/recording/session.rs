//! [`RecordingSession`]: one HDS connection of one camera and the HKSV recording stream on it,
//! sans-IO (protocol notes §4.9, §5.3, §5.4; `docs/architecture.md`, "The recording flow").
//!
//! The session owns the [`hds::Connection`] and, while a `dataSend` stream runs, the prebuffer
//! ring reader and the camera's recording slot. Bytes, camera conditions, motion and `now` go
//! in; bytes, [`RecordingEvent`]s and the next deadline come out. It never reads a clock,
//! sleeps or touches a socket: the driver ([`super::driver`]) does, and the tests drive it on
//! virtual time against [`hds::controller::Controller`].
//!
//! # States of the recording stream
//!
//! ```text
//!                 dataSend/open accepted by hds
//!   Idle ─────────────────────────────────────────┐
//!    ▲  ▲  slot taken → close 2 (busy)           │ slot acquired
//!    │  │  nothing selected → close 9            ▼
//!    │  └───────────────────────────────  (ring has an init segment?)
//!    │                                      no │            │ yes: init segment + prebuffer
//!    │                                         ▼            ▼
//!    │        give up after `init_wait`   WaitingForInit ──► Streaming ─── fragments ──┐
//!    │◄──────── close 5 ──────────────────────┘   retry      │  ▲                     │
//!    │                                                        │  └─────────────────────┘
//!    │◄── camera off → close 1, max length → close 3,         │ motion ended: the next
//!    │    reader broken → close 5, hub close                  │ fragment has endOfStream
//!    │                                                        ▼
//!    │◄──────────── hub ack / hub close / 12 s → close 3 ── Ending
//!    │
//!   any state ── connection closed (HAP session gone, socket gone, shutdown, bad frame) ──► Closed
//! ```
//!
//! Every exit from `WaitingForInit`, `Streaming` and `Ending` drops the reader and the slot
//! guard with the state value, and reports one [`RecordingEvent::Ended`].
//!
//! # Driving it
//! After every input, drain in this order: [`poll_transmit`](RecordingSession::poll_transmit)
//! (one frame a call) → [`poll_event`](RecordingSession::poll_event) →
//! [`poll_timeout`](RecordingSession::poll_timeout). While
//! [`fragment_reader`](RecordingSession::fragment_reader) is `Some`, wait on it and hand what it
//! yields to [`handle_fragment`](RecordingSession::handle_fragment).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hds::{
    CloseCause, Connection, Event, Initiator, PreparedSessions, Reason, Segment, SegmentKind,
};
use recorder::{ClipFragment, PrebufferRing, ReaderError, ReaderOptions, RingReader};

use super::slot::{RecordingSlot, SlotGuard};

/// How long a `dataSend/open` waits for the camera's first init segment (a source still
/// starting: the fragmenter emits it with the first fragment, a few seconds in) before it is
/// closed with reason 5: one 4 s fragment plus margin, under a hub's stall timeout.
pub const INIT_WAIT: Duration = Duration::from_secs(6);
/// How often a waiting open looks at the ring again.
pub const INIT_RETRY: Duration = Duration::from_millis(100);

/// What the camera allows and asks for right now (its HomeKit switches and selection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Conditions {
    /// CameraEventRecordingManagement `Active` = 1.
    pub recording_active: bool,
    /// CameraOperatingMode `HomeKitCameraActive` = 1; 0 ends a running recording (reason 1).
    pub camera_active: bool,
    /// `RecordingAudioActive` = 1 (read when a stream opens).
    pub recording_audio_active: bool,
    /// The selected recording configuration, if any (read when a stream opens).
    pub selection: Option<Selection>,
}

/// The parts of a SelectedCameraRecordingConfiguration (209) a recording uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// Prebuffer the hub asked for, ms (4000 or 8000 in practice; protocol notes §3.4).
    pub prebuffer_ms: u32,
    /// The selection has an audio codec (209 item 3).
    pub audio: bool,
}

/// Fixed settings of a camera's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    /// The camera is configured to record audio (`audio = true`).
    pub audio_configured: bool,
    /// Longest recording stream, then close reason 3 (`max_recording_s`; at least 1 s).
    pub max_recording: Duration,
    /// See [`INIT_WAIT`].
    pub init_wait: Duration,
}

/// Why the connection was closed from our side ([`RecordingSession::close`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalClose {
    /// The HAP session that prepared this HDS session ended (socket closed, pairing removed).
    HapSessionClosed,
    /// The TCP socket closed or failed (including keep-alive giving up on a vanished hub).
    SocketClosed,
    /// The bridge is shutting down.
    Shutdown,
}

/// How a recording stream ended.
#[derive(Debug, Clone, PartialEq)]
pub enum EndReason {
    /// The hub sent `close` with this reason (0 = normal).
    HubClosed(Reason),
    /// The hub acknowledged our endOfStream.
    HubAcked,
    /// HomeKitCameraActive went to 0: we closed with reason 1.
    CameraOff,
    /// `max_recording_s` reached: we closed with reason 3.
    MaxLength,
    /// The prebuffer reader failed (fell behind, init segment changed, ring closed): reason 5.
    ReaderFailed(ReaderError),
    /// No init segment arrived within [`SessionOptions::init_wait`]: reason 5.
    NoInitSegment,
    /// No ack or close within 12 s of our endOfStream: hds closed with reason 3.
    NoAck,
    /// The selection was cleared while waiting for the init segment: reason 9.
    NotConfigured,
    /// The HDS connection closed under the stream.
    ConnectionClosed(ConnectionEnd),
}

/// Why an HDS connection closed.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionEnd {
    /// We closed it ([`RecordingSession::close`]).
    Local(LocalClose),
    /// The peer misbehaved or a frame failed authentication.
    Error(hds::Error),
}

/// Something the driver (logs, history, metrics) should know.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordingEvent {
    /// The hub opened a stream and the init segment and prebuffer are queued.
    Opened {
        /// Hub-chosen stream id.
        stream_id: i64,
        /// Prebuffer asked for, ms.
        prebuffer_ms: u32,
        /// Prebuffer fragments queued at once.
        prebuffer_fragments: usize,
        /// The clip has an audio track.
        audio: bool,
    },
    /// The hub opened a stream before the camera's first init segment; waiting for it.
    WaitingForInit {
        /// Stream id.
        stream_id: i64,
    },
    /// A `dataSend/open` was refused (by hds's checks, or busy / nothing selected here).
    Refused {
        /// Stream id.
        stream_id: i64,
        /// Reason sent to the hub.
        reason: Reason,
    },
    /// A stream that was [`Opened`](Self::Opened) or waiting ended.
    Ended {
        /// Stream id.
        stream_id: i64,
        /// Why.
        why: EndReason,
        /// Media fragments queued (prebuffer included).
        fragments: u32,
        /// Bytes queued (init segment and fragments, before encryption).
        bytes: u64,
    },
    /// The connection is closed; drop the socket. Nothing more happens.
    ConnectionClosed(ConnectionEnd),
}

#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    fragments: u32,
    bytes: u64,
}

#[derive(Debug)]
struct WaitingForInit {
    stream_id: i64,
    give_up_at: Instant,
    next_try: Instant,
    slot: SlotGuard,
}

#[derive(Debug)]
struct Streaming {
    stream_id: i64,
    reader: RingReader,
    /// Motion ended: the next fragment carries endOfStream.
    end_after_next: bool,
    deadline: Instant,
    sent: Sent,
    slot: SlotGuard,
}

#[derive(Debug)]
struct Ending {
    stream_id: i64,
    sent: Sent,
    /// Held until the hub's ack/close: a new recording must not start meanwhile.
    _slot: SlotGuard,
}

#[derive(Debug)]
enum Stream {
    Idle,
    WaitingForInit(WaitingForInit),
    Streaming(Streaming),
    Ending(Ending),
}

impl Stream {
    fn id(&self) -> Option<i64> {
        match self {
            Self::Idle => None,
            Self::WaitingForInit(w) => Some(w.stream_id),
            Self::Streaming(s) => Some(s.stream_id),
            Self::Ending(e) => Some(e.stream_id),
        }
    }

    fn sent(&self) -> Sent {
        match self {
            Self::Idle | Self::WaitingForInit(_) => Sent::default(),
            Self::Streaming(s) => s.sent,
            Self::Ending(e) => e.sent,
        }
    }
}

/// One HDS connection of a camera and its recording stream (see the module docs).
#[derive(Debug)]
pub struct RecordingSession {
    conn: Connection,
    ring: PrebufferRing,
    slot: RecordingSlot,
    options: SessionOptions,
    conditions: Conditions,
    motion: bool,
    stream: Stream,
    events: VecDeque<RecordingEvent>,
    /// Set by [`RecordingSession::close`] before hds reports the close.
    local_close: Option<LocalClose>,
    closed: bool,
}

impl RecordingSession {
    /// A session over `conn` (fresh from [`Connection::accept`], or keyed for tests) serving
    /// `ring`, sharing the camera's recording `slot` with the camera's other connections.
    pub fn new(
        conn: Connection,
        ring: PrebufferRing,
        slot: RecordingSlot,
        options: SessionOptions,
    ) -> Self {
        Self {
            conn,
            ring,
            slot,
            options,
            conditions: Conditions::default(),
            motion: false,
            stream: Stream::Idle,
            events: VecDeque::new(),
            local_close: None,
            closed: false,
        }
    }

    /// Identifies a new connection by its first frame against the prepared sessions
    /// ([`Connection::identify`]); `Ok(Some(tag))` names the HAP connection that prepared it.
    ///
    /// # Errors
    /// As [`Connection::identify`]; every error closes the connection.
    pub fn identify<T>(
        &mut self,
        now: Instant,
        buf: &mut BytesMut,
        prepared: &mut PreparedSessions<T>,
    ) -> Result<Option<T>, hds::Error> {
        let r = self.conn.identify(now, buf, prepared);
        self.process(now);
        r
    }

    /// Bytes from the socket (after identification).
    ///
    /// # Errors
    /// As [`Connection::handle_incoming`]; the connection is then closed and reported.
    pub fn handle_incoming(&mut self, now: Instant, buf: &mut BytesMut) -> Result<(), hds::Error> {
        self.conn.set_camera_state(self.hds_state());
        let r = self.conn.handle_incoming(now, buf);
        self.process(now);
        r
    }

    /// The camera's switches or selection changed. HomeKitCameraActive = 0 ends a running or
    /// waiting recording with reason 1; the rest applies to the next `dataSend/open`.
    pub fn set_conditions(&mut self, now: Instant, conditions: Conditions) {
        self.conditions = conditions;
        self.conn.set_camera_state(self.hds_state());
        if !conditions.camera_active
            && matches!(
                self.stream,
                Stream::Streaming(_) | Stream::WaitingForInit(_)
            )
        {
            self.end_ours(Reason::NOT_ALLOWED, EndReason::CameraOff);
        }
        self.process(now);
    }

    /// MotionDetected changed. While streaming, `false` makes the next fragment the last
    /// (endOfStream) and `true` before that keeps the stream going.
    pub fn set_motion(&mut self, detected: bool) {
        self.motion = detected;
        if let Stream::Streaming(s) = &mut self.stream {
            s.end_after_next = !detected;
        }
    }

    /// The reader to wait on while streaming; hand what it yields to
    /// [`handle_fragment`](Self::handle_fragment). `None` in every other state.
    pub fn fragment_reader(&mut self) -> Option<&mut RingReader> {
        match &mut self.stream {
            Stream::Streaming(s) => Some(&mut s.reader),
            _ => None,
        }
    }

    /// One result of the [`fragment_reader`](Self::fragment_reader); then sends whatever else
    /// the reader holds.
    pub fn handle_fragment(&mut self, now: Instant, fragment: Result<ClipFragment, ReaderError>) {
        self.on_fragment(now, fragment);
        self.drain_reader(now);
        self.process(now);
    }

    /// Sends every fragment the reader holds now (no waiting).
    pub fn drain_ring(&mut self, now: Instant) {
        self.drain_reader(now);
        self.process(now);
    }

    /// Timers: hds's (hello, end of stream), the recording's length and the wait for an init
    /// segment.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.conn.handle_timeout(now);
        self.process(now);
        match &mut self.stream {
            Stream::Streaming(s) if now >= s.deadline => {
                self.end_ours(Reason::CANCELLED, EndReason::MaxLength);
            }
            Stream::WaitingForInit(w) if now >= w.next_try => {
                w.next_try = now + INIT_RETRY;
                let (stream_id, give_up) = (w.stream_id, now >= w.give_up_at);
                self.try_start(now, stream_id, give_up);
            }
            _ => {}
        }
        self.process(now);
    }

    /// Closes the connection (nothing more is sent) and ends its stream.
    pub fn close(&mut self, now: Instant, why: LocalClose) {
        if self.closed {
            return;
        }
        self.local_close = Some(why);
        self.end_stream(EndReason::ConnectionClosed(ConnectionEnd::Local(why)));
        self.conn.close();
        self.process(now);
    }

    /// The next frame to write, appended to `out`; `false` when there is none.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        self.conn.poll_transmit(out)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<RecordingEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ours = match &self.stream {
            Stream::Streaming(s) => Some(s.deadline),
            Stream::WaitingForInit(w) => Some(w.next_try),
            Stream::Idle | Stream::Ending(_) => None,
        };
        [self.conn.poll_timeout(), ours].into_iter().flatten().min()
    }

    /// Whether the connection is closed (drop the socket once events are drained).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The stream id of the recording this connection serves, if any.
    pub fn stream_id(&self) -> Option<i64> {
        self.stream.id()
    }

    fn hds_state(&self) -> hds::CameraState {
        let ours = self.stream.id().is_some();
        hds::CameraState {
            recording_active: self.conditions.recording_active,
            camera_active: self.conditions.camera_active,
            configuration_selected: self.conditions.selection.is_some(),
            recording_elsewhere: !ours && self.slot.is_taken(),
        }
    }

    /// Handles hds's events.
    fn process(&mut self, now: Instant) {
        while let Some(ev) = self.conn.poll_event() {
            match ev {
                Event::StreamOpened { stream_id } => self.on_open(now, stream_id),
                Event::OpenRejected { stream_id, reason } => {
                    self.events
                        .push_back(RecordingEvent::Refused { stream_id, reason });
                }
                Event::AckReceived { stream_id } if self.stream.id() == Some(stream_id) => {
                    self.end_stream(EndReason::HubAcked);
                }
                Event::StreamClosed {
                    stream_id,
                    reason,
                    by,
                } if self.stream.id() == Some(stream_id) => {
                    // Our own close_stream calls leave the stream first, so an accessory-side
                    // close here is hds's 12 s end-of-stream timeout.
                    let why = match by {
                        Initiator::Controller => EndReason::HubClosed(reason),
                        Initiator::Accessory => EndReason::NoAck,
                    };
                    self.end_stream(why);
                }
                Event::ConnectionClosed { why } => {
                    let end = match why {
                        CloseCause::Error(e) => ConnectionEnd::Error(e),
                        CloseCause::Local => {
                            ConnectionEnd::Local(self.local_close.unwrap_or(LocalClose::Shutdown))
                        }
                    };
                    self.end_stream(EndReason::ConnectionClosed(end.clone()));
                    self.closed = true;
                    self.events.push_back(RecordingEvent::ConnectionClosed(end));
                }
                _ => {}
            }
        }
    }

    fn on_open(&mut self, now: Instant, stream_id: i64) {
        if self.conditions.selection.is_none() {
            // hds checks this too (from `hds_state`); kept for a selection cleared meanwhile.
            let _ = self
                .conn
                .close_stream(stream_id, Reason::INVALID_CONFIGURATION);
            self.events.push_back(RecordingEvent::Refused {
                stream_id,
                reason: Reason::INVALID_CONFIGURATION,
            });
            return;
        }
        // hds refuses a second open on this connection, and `hds_state` says busy when another
        // connection holds the slot; the slot can still have been taken in between.
        let Some(slot) = self.slot.try_acquire() else {
            let _ = self.conn.close_stream(stream_id, Reason::BUSY);
            self.events.push_back(RecordingEvent::Refused {
                stream_id,
                reason: Reason::BUSY,
            });
            return;
        };
        self.stream = Stream::WaitingForInit(WaitingForInit {
            stream_id,
            give_up_at: now + self.options.init_wait,
            next_try: now,
            slot,
        });
        if !self.try_start(now, stream_id, false) {
            self.events
                .push_back(RecordingEvent::WaitingForInit { stream_id });
            if let Stream::WaitingForInit(w) = &mut self.stream {
                w.next_try = now + INIT_RETRY;
            }
        }
    }

    /// From `WaitingForInit`: opens a reader and sends the init segment and the prebuffer.
    /// Returns `false` while the ring has no init segment and `give_up` is not set.
    fn try_start(&mut self, now: Instant, stream_id: i64, give_up: bool) -> bool {
        let Some(sel) = self.conditions.selection else {
            self.end_ours(Reason::INVALID_CONFIGURATION, EndReason::NotConfigured);
            return true;
        };
        // Audio only when configured, wanted (RecordingAudioActive, §6.1) and selected; the
        // reader adds "the source has AAC".
        let audio = ReaderOptions {
            audio: self.options.audio_configured
                && self.conditions.recording_audio_active
                && sel.audio,
        };
        let prebuffer = Duration::from_millis(u64::from(sel.prebuffer_ms));
        let Some(mut reader) = self.ring.reader_with(prebuffer, audio) else {
            if give_up {
                self.end_ours(Reason::UNEXPECTED_FAILURE, EndReason::NoInitSegment);
                return true;
            }
            return false;
        };
        let Stream::WaitingForInit(waiting) = std::mem::replace(&mut self.stream, Stream::Idle)
        else {
            return true;
        };
        let init = reader.init_segment();
        let mut sent = Sent {
            fragments: 0,
            bytes: init.len() as u64,
        };
        if self
            .conn
            .send_segment(
                now,
                stream_id,
                SegmentKind::MediaInitialization,
                init,
                false,
            )
            .is_err()
        {
            return true;
        }
        // The prebuffer goes out at once; the hub asked for it.
        let mut backlog = 0;
        let mut failed = None;
        loop {
            match reader.try_next() {
                Ok(Some(f)) => {
                    sent.bytes += f.len() as u64;
                    if self
                        .conn
                        .send_segment(
                            now,
                            stream_id,
                            SegmentKind::MediaFragment,
                            segment(&f),
                            false,
                        )
                        .is_err()
                    {
                        return true;
                    }
                    sent.fragments += 1;
                    backlog += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        self.events.push_back(RecordingEvent::Opened {
            stream_id,
            prebuffer_ms: sel.prebuffer_ms,
            prebuffer_fragments: backlog,
            audio: reader.has_audio(),
        });
        self.stream = Stream::Streaming(Streaming {
            stream_id,
            reader,
            end_after_next: !self.motion,
            deadline: now + self.options.max_recording.max(Duration::from_secs(1)),
            sent,
            slot: waiting.slot,
        });
        if let Some(e) = failed {
            self.end_ours(Reason::UNEXPECTED_FAILURE, EndReason::ReaderFailed(e));
        }
        true
    }

    fn drain_reader(&mut self, now: Instant) {
        loop {
            let next = match &mut self.stream {
                Stream::Streaming(s) => s.reader.try_next(),
                _ => return,
            };
            match next {
                Ok(Some(f)) => self.on_fragment(now, Ok(f)),
                Ok(None) => return,
                Err(e) => self.on_fragment(now, Err(e)),
            }
        }
    }

    fn on_fragment(&mut self, now: Instant, fragment: Result<ClipFragment, ReaderError>) {
        let Stream::Streaming(s) = &mut self.stream else {
            return;
        };
        let f = match fragment {
            Ok(f) => f,
            Err(e) => {
                self.end_ours(Reason::UNEXPECTED_FAILURE, EndReason::ReaderFailed(e));
                return;
            }
        };
        let eos = s.end_after_next;
        let sent = self.conn.send_segment(
            now,
            s.stream_id,
            SegmentKind::MediaFragment,
            segment(&f),
            eos,
        );
        if sent.is_err() {
            // hds no longer has the stream (its events say why); stop producing.
            return;
        }
        s.sent.fragments += 1;
        s.sent.bytes += f.len() as u64;
        if eos && let Stream::Streaming(s) = std::mem::replace(&mut self.stream, Stream::Idle) {
            self.stream = Stream::Ending(Ending {
                stream_id: s.stream_id,
                sent: s.sent,
                _slot: s.slot,
            });
        }
    }

    /// Ends the stream from our side: `close` with `reason` to the hub, then [`Self::end_stream`].
    fn end_ours(&mut self, reason: Reason, why: EndReason) {
        if let Some(id) = self.stream.id() {
            let _ = self.conn.close_stream(id, reason);
        }
        self.end_stream(why);
    }

    /// Leaves the current stream (dropping its reader and slot) and reports why.
    fn end_stream(&mut self, why: EndReason) {
        let old = std::mem::replace(&mut self.stream, Stream::Idle);
        let Some(stream_id) = old.id() else { return };
        let sent = old.sent();
        drop(old);
        self.events.push_back(RecordingEvent::Ended {
            stream_id,
            why,
            fragments: sent.fragments,
            bytes: sent.bytes,
        });
    }
}

/// One fragment as hds sends it: its fresh `moof` and the ring's shared `mdat` payload as two
/// parts, so no payload byte is copied before encryption (hds crate docs, "Copies on the send
/// path").
fn segment(f: &ClipFragment) -> Segment {
    Segment::from_parts(f.parts())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests;
