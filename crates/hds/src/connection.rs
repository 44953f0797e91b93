//! The accessory side of one HDS connection, sans-IO, plus the prepared sessions that new
//! connections are identified against.
//!
//! # API (quinn-proto style)
//!
//! * input: [`Connection::identify`] (first frame), [`Connection::handle_incoming`],
//!   [`Connection::handle_timeout`];
//! * commands: [`Connection::set_camera_state`], [`Connection::send_segment`],
//!   [`Connection::close_stream`], [`Connection::close`];
//! * output, drained after every input or command, in this order: [`Connection::poll_transmit`]
//!   (one frame per call), [`Connection::poll_event`], [`Connection::poll_timeout`].
//!
//! # States
//!
//! ```text
//!  accept ──► Unidentified ──first frame authenticates with a prepared session──► ExpectingHello
//!                 │  no key matches / 10 s                                           │ control/hello request
//!                 ▼                                                                  ▼
//!               Closed ◄──── bad frame, first message not hello, 10 s ──────────── Ready
//!                  ▲                                                                 │
//!                  └──────────── auth failure, malformed payload, data before open ──┘
//!
//!  dataSend stream (one at a time):
//!   open (checks pass) ──► Open ──send_segment(.., end_of_stream = true)──► EndSent (12 s timer)
//!                           │  hub close / close_stream                        │ ack / hub close → gone
//!                           ▼                                                  │ 12 s → we send close 3 (cancelled)
//!                          gone                                                ▼
//!                                                                             gone
//! ```
//!
//! Timers are HAP-NodeJS's (protocol notes §4.4, §5.4): 10 s from accept to hello, 10 s life of a
//! prepared session, 12 s after end of stream before the accessory cancels.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::Error;
use crate::codec::Value;
use crate::frame::{self, FrameOpener, FrameSealer, Role, SessionKeys};
use crate::message::{
    self, ChunkMeta, HdsStatus, Kind, Message, Reason, SegmentKind, protocol, topic,
};
use crate::segment::{Chunker, Segment};

/// A prepared session lives this long waiting for its TCP connection (§4.4).
pub const PREPARED_SESSION_LIFETIME: Duration = Duration::from_secs(10);
/// Largest payload of the first frame, the one that identifies the connection (a hello is
/// ~100 bytes): anyone can connect, so nothing larger is buffered before a key matched.
pub const MAX_FIRST_FRAME_PAYLOAD: usize = 4096;
/// Largest payload the hub may send later (its messages are small control messages: open,
/// ack, close; media flows the other way).
pub const MAX_INCOMING_PAYLOAD: usize = 64 * 1024;

/// The hello must arrive this long after the TCP accept (§4.4).
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// After end of stream, the accessory waits this long for ack/close, then sends close 3 (§5.4).
pub const END_OF_STREAM_TIMEOUT: Duration = Duration::from_secs(12);
/// Largest `data` chunk: 0x40000 bytes (HAP-NodeJS; the fixture's chunks; §4.9).
pub const MAX_CHUNK_BYTES: usize = 0x40000;

/// Keys of one SetupDataStreamTransport write, waiting for its TCP connection.
#[derive(Debug, Clone)]
pub struct PreparedSession {
    keys: SessionKeys,
    expires_at: Instant,
}

impl PreparedSession {
    /// Derive the keys (§4.2) from the pair-verify shared secret of the HAP session that wrote
    /// SetupDataStreamTransport, the controller's salt from the write and our fresh accessory
    /// salt (which goes back in the write response).
    #[must_use]
    pub fn new(
        shared_secret: &[u8; 32],
        controller_salt: &[u8; 32],
        accessory_salt: &[u8; 32],
        now: Instant,
    ) -> Self {
        Self::from_keys(
            SessionKeys::derive(shared_secret, controller_salt, accessory_salt),
            now,
        )
    }

    /// From already derived keys.
    #[must_use]
    pub fn from_keys(keys: SessionKeys, now: Instant) -> Self {
        Self {
            keys,
            expires_at: now + PREPARED_SESSION_LIFETIME,
        }
    }

    /// When it is discarded if no connection was identified with it.
    #[must_use]
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }
}

/// The pending prepared sessions of one HDS listener, each with the caller's tag (e.g. the id of
/// the HAP connection it belongs to, so the HDS connection can be closed with it).
#[derive(Debug)]
pub struct PreparedSessions<T> {
    pending: Vec<(PreparedSession, T)>,
}

impl<T> Default for PreparedSessions<T> {
    fn default() -> Self {
        Self {
            pending: Vec::new(),
        }
    }
}

impl<T> PreparedSessions<T> {
    /// Empty.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a session prepared by a SetupDataStreamTransport write.
    pub fn insert(&mut self, session: PreparedSession, tag: T) {
        self.pending.push((session, tag));
    }

    /// Drop expired sessions.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.pending.retain(|(s, _)| s.expires_at > now);
    }

    /// The next expiry.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.iter().map(|(s, _)| s.expires_at).min()
    }

    /// Number of pending sessions (the listener may close at zero with no connections).
    #[must_use]
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// No pending sessions.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// What the camera allows right now; the bridge keeps it current with
/// [`Connection::set_camera_state`]. Checked on `dataSend/open` in HAP-NodeJS's order (§4.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CameraState {
    /// CameraRecordingManagement `Active` = 1.
    pub recording_active: bool,
    /// CameraOperatingMode `HomeKitCameraActive` = 1.
    pub camera_active: bool,
    /// A SelectedCameraRecordingConfiguration was written.
    pub configuration_selected: bool,
    /// A recording stream of this camera runs on another HDS connection.
    pub recording_elsewhere: bool,
}

/// Which side ended a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// The accessory (this side): `close_stream` or the 12 s timeout.
    Accessory,
    /// The home hub: `ack` or `close`.
    Controller,
}

/// Why the connection closed.
#[derive(Debug, Clone, PartialEq)]
pub enum CloseCause {
    /// [`Connection::close`] was called (e.g. the owning HAP session closed).
    Local,
    /// An error (see [`Error::blame`]).
    Error(Error),
}

/// Something the driver must know about.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The hello was answered; the connection is ready.
    HelloDone,
    /// A `dataSend/open` was accepted: start sending the init segment, then the prebuffer.
    StreamOpened {
        /// Hub-chosen stream id.
        stream_id: i64,
    },
    /// A `dataSend/open` was refused with `reason`.
    OpenRejected {
        /// Hub-chosen stream id (0 if it sent none).
        stream_id: i64,
        /// Reason sent in the response body.
        reason: Reason,
    },
    /// The hub acknowledged the end of stream; the stream is finished.
    AckReceived {
        /// Stream id.
        stream_id: i64,
    },
    /// A stream ended; stop producing its segments.
    StreamClosed {
        /// Stream id.
        stream_id: i64,
        /// Reason given in the close (NORMAL after an ack).
        reason: Reason,
        /// Who ended it.
        by: Initiator,
    },
    /// The connection is closed; drop the socket. Nothing more is transmitted.
    ConnectionClosed {
        /// Why.
        why: CloseCause,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Unidentified,
    ExpectingHello,
    Ready,
    Closed,
}

#[derive(Debug)]
enum Outgoing {
    Payload(Vec<u8>),
    /// A segment, cut into one chunk per `poll_transmit` call.
    Segment(SegmentOut),
}

#[derive(Debug)]
struct SegmentOut {
    stream_id: i64,
    kind: SegmentKind,
    data_sequence_number: i64,
    end_of_stream: bool,
    /// dataChunkSequenceNumber of the next chunk (1-based).
    next_chunk: i64,
    chunks: Chunker,
}

impl SegmentOut {
    /// Seal the next chunk as one `dataSend/data` frame into `out`.
    fn seal_next(&mut self, sealer: &mut FrameSealer, out: &mut Vec<u8>) -> Result<(), Error> {
        let first = self.next_chunk == 1;
        let is_last = self.chunks.next_is_last();
        let meta = ChunkMeta {
            stream_id: self.stream_id,
            kind: self.kind,
            data_sequence_number: self.data_sequence_number,
            data_chunk_sequence_number: self.next_chunk,
            is_last_data_chunk: is_last,
            data_total_size_bytes: first.then_some(self.chunks.segment_len() as u64),
            end_of_stream: is_last.then_some(self.end_of_stream),
        };
        let chunk = self.chunks.next_chunk();
        let reserve = chunk.len() + message::DATA_EVENT_OVERHEAD_BYTES;
        // The only copy of the chunk's bytes: from the caller's parts into the frame, where
        // they are encrypted in place.
        sealer.seal_with(out, reserve, |buf| {
            message::write_data_event(&meta, chunk, buf)
        })?;
        self.chunks.advance();
        self.next_chunk += 1;
        Ok(())
    }
}

#[derive(Debug)]
struct Stream {
    id: i64,
    /// dataSequenceNumber of the next segment (1 = init segment).
    next_sequence_number: i64,
    /// Set once the segment with `end_of_stream` was queued: the 12 s deadline.
    end_deadline: Option<Instant>,
}

/// The accessory side of one HDS connection (see the module docs for the state diagram).
#[derive(Debug)]
pub struct Connection {
    state: State,
    hello_deadline: Instant,
    sealer: Option<FrameSealer>,
    opener: Option<FrameOpener>,
    camera: CameraState,
    stream: Option<Stream>,
    transmits: VecDeque<Outgoing>,
    events: VecDeque<Event>,
    max_chunk_bytes: usize,
}

impl Connection {
    /// A freshly accepted TCP connection, not yet identified.
    #[must_use]
    pub fn accept(now: Instant) -> Self {
        Self {
            state: State::Unidentified,
            hello_deadline: now + HELLO_TIMEOUT,
            sealer: None,
            opener: None,
            camera: CameraState::default(),
            stream: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            max_chunk_bytes: MAX_CHUNK_BYTES,
        }
    }

    /// A connection whose keys are already known (tests, simulators): skips identification.
    #[must_use]
    pub fn with_keys(keys: &SessionKeys, now: Instant) -> Self {
        let mut c = Self::accept(now);
        c.sealer = Some(keys.sealer(Role::Accessory));
        c.opener = Some(keys.opener(Role::Accessory));
        c.state = State::ExpectingHello;
        c
    }

    /// Use smaller chunks than [`MAX_CHUNK_BYTES`] (tests of multi-chunk segments). Clamped to
    /// 1..=`MAX_CHUNK_BYTES`.
    pub fn set_max_chunk_bytes(&mut self, max_chunk_bytes: usize) {
        self.max_chunk_bytes = max_chunk_bytes.clamp(1, MAX_CHUNK_BYTES);
    }

    /// Update what the camera allows (checked on the next `dataSend/open`).
    pub fn set_camera_state(&mut self, camera: CameraState) {
        self.camera = camera;
    }

    /// True once closed; drop the socket after draining events.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// True after the hello exchange.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// The stream currently open, if any.
    #[must_use]
    pub fn open_stream(&self) -> Option<i64> {
        self.stream.as_ref().map(|s| s.id)
    }

    /// Identify an unidentified connection by its first frame (§4.4): try the controller →
    /// accessory key of every pending, unexpired prepared session; the first that authenticates
    /// is removed from `sessions` and its tag returned. The first frame is then processed like
    /// any other (it must be the hello); the rest of `buf` is left for
    /// [`handle_incoming`](Self::handle_incoming).
    ///
    /// Returns `Ok(None)` while `buf` holds no complete frame.
    ///
    /// # Errors
    /// [`Error::UnknownSession`] when no key authenticates, [`Error::FrameTooLarge`], or any error
    /// of processing the first message. Every error closes the connection (also reported as
    /// [`Event::ConnectionClosed`]).
    pub fn identify<T>(
        &mut self,
        now: Instant,
        buf: &mut BytesMut,
        sessions: &mut PreparedSessions<T>,
    ) -> Result<Option<T>, Error> {
        if self.state != State::Unidentified {
            return Err(Error::NotReady {
                what: "identify called on an identified connection",
            });
        }
        sessions.handle_timeout(now);
        let frame = match frame::take_frame_within(buf, 0, MAX_FIRST_FRAME_PAYLOAD) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.fail(e)),
        };
        let mut found = None;
        for (i, (session, _)) in sessions.pending.iter().enumerate() {
            let mut opener = session.keys.opener(Role::Accessory);
            if let Ok(plaintext) = opener.try_open(&frame) {
                found = Some((i, opener, plaintext));
                break;
            }
        }
        let Some((i, opener, plaintext)) = found else {
            tracing::debug!("HDS connection matches no prepared session; closing");
            return Err(self.fail(Error::UnknownSession));
        };
        let (session, tag) = sessions.pending.swap_remove(i);
        self.sealer = Some(session.keys.sealer(Role::Accessory));
        self.opener = Some(opener);
        self.state = State::ExpectingHello;
        self.handle_payload(now, &plaintext, 0)?;
        Ok(Some(tag))
    }

    /// Feed received bytes; complete frames are removed from `buf`, a partial frame stays.
    ///
    /// # Errors
    /// Any error closes the connection (also reported as [`Event::ConnectionClosed`]).
    pub fn handle_incoming(&mut self, now: Instant, buf: &mut BytesMut) -> Result<(), Error> {
        loop {
            match self.state {
                State::Closed => return Ok(()),
                State::Unidentified => {
                    return Err(Error::NotReady {
                        what: "connection not identified yet; call identify first",
                    });
                }
                State::ExpectingHello | State::Ready => {}
            }
            let Some(opener) = self.opener.as_mut() else {
                return Ok(());
            };
            let counter = opener.counter();
            let frame = match frame::take_frame_within(buf, counter, MAX_INCOMING_PAYLOAD) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.fail(e)),
            };
            let plaintext = match opener.open(frame) {
                Ok(p) => p,
                Err(e) => return Err(self.fail(e)),
            };
            self.handle_payload(now, &plaintext, counter)?;
        }
    }

    fn handle_payload(
        &mut self,
        now: Instant,
        plaintext: &Bytes,
        counter: u64,
    ) -> Result<(), Error> {
        let msg = match Message::decode(plaintext) {
            Ok(m) => m,
            Err(e) => return Err(self.fail(e.in_frame(counter))),
        };
        tracing::trace!(protocol = %msg.protocol, topic = %msg.topic, kind = ?msg.kind, "HDS message");
        if self.state == State::ExpectingHello {
            let is_hello = msg.protocol == protocol::CONTROL
                && msg.topic == topic::HELLO
                && matches!(msg.kind, Kind::Request { .. });
            if !is_hello {
                return Err(self.fail(Error::ExpectedHello {
                    frame_counter: counter,
                }));
            }
        }
        self.dispatch(now, msg, counter)
    }

    fn dispatch(&mut self, now: Instant, msg: Message, counter: u64) -> Result<(), Error> {
        let _ = now;
        match (msg.kind, msg.protocol.as_str(), msg.topic.as_str()) {
            (Kind::Response { id, .. }, _, _) => {
                tracing::debug!(id, "HDS response to a request we never sent; ignored");
            }
            (Kind::Request { id }, protocol::CONTROL, topic::HELLO) => {
                self.respond(
                    protocol::CONTROL,
                    topic::HELLO,
                    id,
                    HdsStatus::SUCCESS,
                    Value::Dict(vec![]),
                );
                if self.state == State::ExpectingHello {
                    self.state = State::Ready;
                    self.events.push_back(Event::HelloDone);
                }
            }
            (Kind::Request { id }, protocol::DATA_SEND, topic::OPEN) => {
                self.handle_open(id, &msg.body)
            }
            (Kind::Request { id }, protocol::CONTROL | protocol::DATA_SEND, _) => {
                // HAP-NodeJS leaves such requests unanswered; an error response spares the hub
                // its 10 s request timeout.
                self.respond(
                    &msg.protocol,
                    &msg.topic,
                    id,
                    HdsStatus::PROTOCOL_SPECIFIC_ERROR,
                    Value::dict([("status", Value::Int(Reason::UNSUPPORTED.0))]),
                );
            }
            (Kind::Request { id }, _, _) => {
                self.respond(
                    &msg.protocol,
                    &msg.topic,
                    id,
                    HdsStatus::MISSING_PROTOCOL,
                    Value::Dict(vec![]),
                );
            }
            (Kind::Event, protocol::DATA_SEND, topic::ACK) => {
                let stream_id = msg.body.get("streamId").and_then(Value::as_int);
                // HAP-NodeJS does not check the ack's streamId; we do when it is present.
                if let Some(s) = &self.stream
                    && stream_id.is_none_or(|id| id == s.id)
                {
                    let id = s.id;
                    self.end_stream(id);
                    self.events.push_back(Event::AckReceived { stream_id: id });
                    self.events.push_back(Event::StreamClosed {
                        stream_id: id,
                        reason: Reason::NORMAL,
                        by: Initiator::Controller,
                    });
                }
            }
            (Kind::Event, protocol::DATA_SEND, topic::CLOSE) => {
                let stream_id = msg.body.get("streamId").and_then(Value::as_int);
                let reason = msg
                    .body
                    .get("reason")
                    .and_then(Value::as_int)
                    .map_or(Reason::NORMAL, Reason);
                // Stop at once, no reply; closes for other streams are ignored (HAP-NodeJS).
                if let (Some(s), Some(id)) = (&self.stream, stream_id)
                    && s.id == id
                {
                    self.end_stream(id);
                    self.events.push_back(Event::StreamClosed {
                        stream_id: id,
                        reason,
                        by: Initiator::Controller,
                    });
                }
            }
            (Kind::Event, protocol::DATA_SEND, topic::DATA) => {
                let stream_id = msg
                    .body
                    .get("streamId")
                    .and_then(Value::as_int)
                    .unwrap_or(0);
                if self.stream.as_ref().is_none_or(|s| s.id != stream_id) {
                    return Err(self.fail(Error::DataBeforeOpen {
                        stream_id,
                        frame_counter: counter,
                    }));
                }
                tracing::debug!(stream_id, "hub sent data on our recording stream; ignored");
            }
            (Kind::Event, _, _) => {
                tracing::debug!(protocol = %msg.protocol, topic = %msg.topic, "unhandled HDS event ignored");
            }
        }
        Ok(())
    }

    fn handle_open(&mut self, id: i64, body: &Value) {
        let stream_id = body.get("streamId").and_then(Value::as_int);
        let target = body.get("target").and_then(Value::as_str);
        let kind = body.get("type").and_then(Value::as_str);
        let c = self.camera;
        let reject = if target != Some("controller")
            || kind != Some("ipcamera.recording")
            || stream_id.is_none()
        {
            Some(Reason::UNEXPECTED_FAILURE)
        } else if !c.recording_active || !c.camera_active {
            Some(Reason::NOT_ALLOWED)
        } else if self.stream.is_some() || c.recording_elsewhere {
            Some(Reason::BUSY)
        } else if !c.configuration_selected {
            Some(Reason::INVALID_CONFIGURATION)
        } else {
            None
        };
        let stream_id = stream_id.unwrap_or(0);
        match reject {
            Some(reason) => {
                self.respond(
                    protocol::DATA_SEND,
                    topic::OPEN,
                    id,
                    HdsStatus::PROTOCOL_SPECIFIC_ERROR,
                    Value::dict([("status", Value::Int(reason.0))]),
                );
                self.events
                    .push_back(Event::OpenRejected { stream_id, reason });
            }
            None => {
                self.respond(
                    protocol::DATA_SEND,
                    topic::OPEN,
                    id,
                    HdsStatus::SUCCESS,
                    Value::dict([("status", Value::Int(Reason::NORMAL.0))]),
                );
                self.stream = Some(Stream {
                    id: stream_id,
                    next_sequence_number: 1,
                    end_deadline: None,
                });
                self.events.push_back(Event::StreamOpened { stream_id });
            }
        }
    }

    fn respond(&mut self, proto: &str, top: &str, id: i64, status: HdsStatus, body: Value) {
        self.queue_message(&Message::response(proto, top, id, status, body));
    }

    fn queue_message(&mut self, msg: &Message) {
        let mut payload = Vec::new();
        // Our own headers are far below 255 bytes unless a peer sent a huge topic; then drop it.
        if msg.encode(&mut payload).is_ok() {
            self.transmits.push_back(Outgoing::Payload(payload));
        } else {
            tracing::debug!("HDS reply header too large; not sent");
        }
    }

    /// Forget the stream and drop its chunks not yet handed to `poll_transmit`.
    fn end_stream(&mut self, stream_id: i64) {
        self.stream = None;
        self.transmits
            .retain(|t| !matches!(t, Outgoing::Segment(s) if s.stream_id == stream_id));
    }

    fn fail(&mut self, e: Error) -> Error {
        tracing::debug!(error = %e, "closing HDS connection");
        self.close_with(CloseCause::Error(e.clone()));
        e
    }

    fn close_with(&mut self, why: CloseCause) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.transmits.clear();
        self.stream = None;
        self.events.push_back(Event::ConnectionClosed { why });
    }

    /// Close the connection (e.g. its HAP session closed). Nothing more is sent.
    pub fn close(&mut self) {
        self.close_with(CloseCause::Local);
    }

    /// Queue one segment of the recording on `stream_id`, split into chunks of at most
    /// [`MAX_CHUNK_BYTES`]. `segment` is a `Bytes` or a multi-part [`Segment`] (e.g. a ring
    /// fragment's header and payload); a chunk may span parts, and nothing is copied until
    /// [`poll_transmit`](Self::poll_transmit) writes the chunk into its frame. The first
    /// segment must be the init segment (dataSequenceNumber 1), every later one a fragment
    /// (2, 3, …). With `end_of_stream`, its last chunk carries `endOfStream: true` and the 12 s
    /// wait for the hub's ack starts at `now` (HAP-NodeJS starts it once the chunks are written
    /// to the socket buffer; a driver that drains `poll_transmit` promptly sees the same).
    ///
    /// # Errors
    /// [`Error::UnknownStream`] when the stream is not open (e.g. the hub closed it: stop the
    /// producer), [`Error::StreamMisuse`] for an empty segment, a wrong kind, or a segment after
    /// end of stream, [`Error::NotReady`] before hello or after close.
    pub fn send_segment(
        &mut self,
        now: Instant,
        stream_id: i64,
        kind: SegmentKind,
        segment: impl Into<Segment>,
        end_of_stream: bool,
    ) -> Result<(), Error> {
        let segment = segment.into();
        if self.state != State::Ready {
            return Err(Error::NotReady {
                what: "no hello yet, or closed",
            });
        }
        let max_chunk = self.max_chunk_bytes;
        let stream = self
            .stream
            .as_mut()
            .filter(|s| s.id == stream_id)
            .ok_or(Error::UnknownStream { stream_id })?;
        let misuse = |what| Error::StreamMisuse { stream_id, what };
        if stream.end_deadline.is_some() {
            return Err(misuse("segment after end of stream"));
        }
        if segment.is_empty() {
            // HAP-NodeJS sends nothing for an empty packet, losing endOfStream; we refuse it.
            return Err(misuse("empty segment"));
        }
        let want_init = stream.next_sequence_number == 1;
        if want_init != (kind == SegmentKind::MediaInitialization) {
            return Err(misuse("the init segment must come first, and only once"));
        }
        let seq = stream.next_sequence_number;
        stream.next_sequence_number += 1;
        if end_of_stream {
            stream.end_deadline = Some(now + END_OF_STREAM_TIMEOUT);
        }
        self.transmits.push_back(Outgoing::Segment(SegmentOut {
            stream_id,
            kind,
            data_sequence_number: seq,
            end_of_stream,
            next_chunk: 1,
            chunks: Chunker::new(segment, max_chunk),
        }));
        Ok(())
    }

    /// End `stream_id` from our side with `reason` (1 not allowed when HomeKitCameraActive went
    /// to 0, 5 unexpected failure on pipeline errors; §5.4). Unsent chunks are dropped.
    ///
    /// # Errors
    /// [`Error::UnknownStream`] when it is not open.
    pub fn close_stream(&mut self, stream_id: i64, reason: Reason) -> Result<(), Error> {
        if self.stream.as_ref().is_none_or(|s| s.id != stream_id) {
            return Err(Error::UnknownStream { stream_id });
        }
        self.end_stream(stream_id);
        self.queue_message(&Message::event(
            protocol::DATA_SEND,
            topic::CLOSE,
            Value::dict([
                ("streamId", Value::Int(stream_id)),
                ("reason", Value::Int(reason.0)),
            ]),
        ));
        self.events.push_back(Event::StreamClosed {
            stream_id,
            reason,
            by: Initiator::Accessory,
        });
        Ok(())
    }

    /// Drive timers: the hello deadline and the end-of-stream wait.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Closed => {}
            State::Unidentified | State::ExpectingHello => {
                if now >= self.hello_deadline {
                    let _ = self.fail(Error::HelloTimeout);
                }
            }
            State::Ready => {
                let expired = self
                    .stream
                    .as_ref()
                    .filter(|s| s.end_deadline.is_some_and(|d| now >= d))
                    .map(|s| s.id);
                if let Some(id) = expired {
                    tracing::debug!(
                        stream_id = id,
                        "no ack/close 12 s after end of stream; cancelling"
                    );
                    let _ = self.close_stream(id, Reason::CANCELLED);
                }
            }
        }
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closed => None,
            State::Unidentified | State::ExpectingHello => Some(self.hello_deadline),
            State::Ready => self.stream.as_ref().and_then(|s| s.end_deadline),
        }
    }

    /// Append the next frame to `out`; returns false when there is nothing to send.
    /// One call = one frame, so a driver can stop when its socket is full.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(sealer) = self.sealer.as_mut() else {
            return false;
        };
        let Some(next) = self.transmits.front_mut() else {
            return false;
        };
        let (sealed, done) = match next {
            Outgoing::Payload(p) => (sealer.seal(p, out), true),
            Outgoing::Segment(s) => (s.seal_next(sealer, out), s.chunks.is_done()),
        };
        match sealed {
            Ok(()) => {
                if done {
                    self.transmits.pop_front();
                }
                true
            }
            Err(e) => {
                // A chunk is at most 0x40000 bytes, so only nonce exhaustion gets here.
                let _ = self.fail(e);
                false
            }
        }
    }

    /// Frames queued and not yet handed out by `poll_transmit` (backpressure hint).
    #[must_use]
    pub fn queued_frames(&self) -> usize {
        self.transmits
            .iter()
            .map(|t| match t {
                Outgoing::Payload(_) => 1,
                Outgoing::Segment(s) => s.chunks.remaining_chunks(),
            })
            .sum()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

#[cfg(test)]
impl Connection {
    /// Every queued chunk as (address, length) of the slices it will be written from.
    fn queued_chunk_slices(&self) -> Vec<Vec<(usize, usize)>> {
        self.transmits
            .iter()
            .flat_map(|t| match t {
                Outgoing::Payload(_) => Vec::new(),
                Outgoing::Segment(s) => s.chunks.plan(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)]

    use std::ops::Range;

    use super::*;
    use crate::controller::Controller;

    fn ready(now: Instant) -> Connection {
        let keys = SessionKeys::from_raw([1; 32], [2; 32]);
        let mut conn = Connection::with_keys(&keys, now);
        conn.set_camera_state(CameraState {
            recording_active: true,
            camera_active: true,
            configuration_selected: true,
            recording_elsewhere: false,
        });
        let mut hub = Controller::new(&keys);
        hub.hello();
        hub.open(1);
        let mut wire = Vec::new();
        while hub.poll_transmit(&mut wire) {}
        conn.handle_incoming(now, &mut BytesMut::from(&wire[..]))
            .unwrap();
        drain(&mut conn);
        conn
    }

    fn drain(conn: &mut Connection) -> usize {
        let mut out = Vec::new();
        while conn.poll_transmit(&mut out) {}
        out.len()
    }

    fn memory(b: &Bytes) -> Range<usize> {
        b.as_ptr() as usize..b.as_ptr() as usize + b.len()
    }

    /// Queued chunk bytes that do not point into any of `sources`: bytes copied before sealing.
    fn bytes_outside(conn: &Connection, sources: &[Range<usize>]) -> usize {
        conn.queued_chunk_slices()
            .iter()
            .flatten()
            .filter(|(ptr, len)| {
                !sources
                    .iter()
                    .any(|r| r.contains(ptr) && ptr + len <= r.end)
            })
            .map(|(_, len)| len)
            .sum()
    }

    /// The demo clip's fragments as one ring reader sees them.
    fn ring_fragments() -> Vec<recorder::ClipFragment> {
        let ring =
            recorder::DemoSource::bundled_ring(recorder::PrebufferConfig::default()).unwrap();
        let mut reader = ring.reader(Duration::from_secs(8)).unwrap();
        std::iter::from_fn(|| reader.try_next().unwrap()).collect()
    }

    #[test]
    fn chunks_inside_one_part_are_slices_of_it() {
        let now = Instant::now();
        let mut conn = ready(now);
        let header = Bytes::from(vec![1u8; 1024]);
        let payload = Bytes::from(vec![2u8; 600 * 1024]);
        conn.send_segment(
            now,
            1,
            SegmentKind::MediaInitialization,
            header.clone(),
            false,
        )
        .unwrap();
        let plan = conn.queued_chunk_slices();
        assert_eq!(plan, vec![vec![(header.as_ptr() as usize, 1024)]]);
        drain(&mut conn);

        let seg = Segment::from_parts([header.clone(), Bytes::new(), payload.clone()]);
        conn.send_segment(now, 1, SegmentKind::MediaFragment, seg, false)
            .unwrap();
        let plan = conn.queued_chunk_slices();
        assert_eq!(plan.len(), 3);
        // Chunk 1 spans the seam: all of the header, then the start of the payload.
        assert_eq!(
            plan[0],
            vec![
                (header.as_ptr() as usize, 1024),
                (payload.as_ptr() as usize, MAX_CHUNK_BYTES - 1024),
            ]
        );
        // Chunks 2 and 3 are one slice of the payload each.
        let mut next = payload.as_ptr() as usize + MAX_CHUNK_BYTES - 1024;
        for chunk in &plan[1..] {
            let &[(ptr, len)] = &chunk[..] else {
                panic!("chunk inside one part must be one slice: {chunk:?}");
            };
            assert_eq!(ptr, next);
            assert!(ptr + len <= memory(&payload).end);
            next += len;
        }
        assert_eq!(next, memory(&payload).end);
        // poll_transmit takes one chunk per frame; the rest stay slices of the same memory.
        let mut out = Vec::new();
        assert!(conn.poll_transmit(&mut out));
        assert_eq!(conn.queued_chunk_slices(), plan[1..].to_vec());
        assert_eq!(conn.queued_frames(), 2);
    }

    #[test]
    fn ring_fragment_parts_reach_the_frame_uncopied_and_to_bytes_copies_all() {
        let now = Instant::now();
        let frags = ring_fragments();
        assert!(
            frags.len() >= 2,
            "demo ring holds {} fragments",
            frags.len()
        );
        let mut conn = ready(now);
        conn.send_segment(
            now,
            1,
            SegmentKind::MediaInitialization,
            Bytes::from_static(b"init"),
            false,
        )
        .unwrap();
        drain(&mut conn);
        for f in &frags {
            let ring_memory: Vec<_> = f.parts().iter().map(memory).collect();
            conn.send_segment(
                now,
                1,
                SegmentKind::MediaFragment,
                Segment::from_parts(f.parts()),
                false,
            )
            .unwrap();
            assert_eq!(bytes_outside(&conn, &ring_memory), 0, "parts: no copy");
            let parts_frames = drain(&mut conn);

            conn.send_segment(now, 1, SegmentKind::MediaFragment, f.to_bytes(), false)
                .unwrap();
            assert_eq!(
                bytes_outside(&conn, &ring_memory),
                f.len(),
                "to_bytes copies"
            );
            assert_eq!(
                drain(&mut conn),
                parts_frames,
                "same frame sizes either way"
            );
        }
    }
}
