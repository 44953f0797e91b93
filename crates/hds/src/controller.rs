//! The home hub's side of an HDS connection: says hello, opens a recording stream, checks and
//! reassembles the `data` chunks into segments, acks or closes. Sans-IO like
//! [`crate::Connection`]; used by this crate's two-party tests, and meant for the bridge's hub
//! simulator and `selftest`.
//!
//! It checks what a hub relies on (§4.9): the init segment first as dataSequenceNumber 1,
//! sequence numbers rising by one, chunk numbers from 1, `dataTotalSize` on chunk 1 only and equal
//! to the reassembled size, `endOfStream` present exactly on last chunks, chunks of at most
//! 262144 bytes. A violation closes the connection with [`Error::AccessoryMisbehaved`].

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use crate::Error;
use crate::codec::Value;
use crate::connection::MAX_CHUNK_BYTES;
use crate::frame::{self, FrameOpener, FrameSealer, Role, SessionKeys};
use crate::message::{
    self, ChunkMeta, HdsStatus, Kind, Message, Reason, SegmentKind, protocol, topic,
};

/// Something the controller's user must know about.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ControllerEvent {
    /// The accessory answered hello with status 0.
    HelloDone,
    /// `dataSend/open` accepted.
    OpenAccepted {
        /// Stream id we chose.
        stream_id: i64,
    },
    /// `dataSend/open` refused.
    OpenRejected {
        /// Stream id we chose.
        stream_id: i64,
        /// Response header status (6 for a protocol-specific refusal).
        status: HdsStatus,
        /// Body `status`.
        reason: Reason,
    },
    /// One `data` chunk as received (before reassembly).
    Chunk {
        /// Its metadata.
        meta: ChunkMeta,
        /// Its bytes (zero-copy slice of the decrypted frame).
        data: Bytes,
    },
    /// A complete segment.
    Segment {
        /// Stream id.
        stream_id: i64,
        /// Init segment or fragment.
        kind: SegmentKind,
        /// dataSequenceNumber.
        data_sequence_number: i64,
        /// Reassembled bytes.
        data: Bytes,
        /// The accessory ended the recording with this segment.
        end_of_stream: bool,
    },
    /// The accessory closed a stream.
    StreamClosed {
        /// Stream id.
        stream_id: i64,
        /// Reason it gave.
        reason: Reason,
    },
    /// Any other message (e.g. responses to requests sent with [`Controller::send`]).
    Other(Message),
    /// The controller closed the connection because of an error.
    ConnectionClosed {
        /// Why.
        why: Error,
    },
}

#[derive(Debug)]
enum Pending {
    Hello,
    Open { stream_id: i64 },
    Raw,
}

#[derive(Debug)]
struct Partial {
    kind: SegmentKind,
    seq: i64,
    total_bytes: u64,
    next_chunk: i64,
    buf: BytesMut,
    first: Option<Bytes>,
}

#[derive(Debug, Default)]
struct Reassembly {
    next_seq: i64,
    partial: Option<Partial>,
    ended: bool,
}

/// The controller (hub) side of one HDS connection.
#[derive(Debug)]
pub struct Controller {
    sealer: FrameSealer,
    opener: FrameOpener,
    next_request_id: i64,
    pending: HashMap<i64, Pending>,
    streams: HashMap<i64, Reassembly>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<ControllerEvent>,
    closed: bool,
}

impl Controller {
    /// A controller for an HDS session with these keys.
    #[must_use]
    pub fn new(keys: &SessionKeys) -> Self {
        Self {
            sealer: keys.sealer(Role::Controller),
            opener: keys.opener(Role::Controller),
            next_request_id: 1,
            pending: HashMap::new(),
            streams: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            closed: false,
        }
    }

    /// Use request ids from `id` on (HAP-NodeJS-style hubs use random 32-bit ids).
    pub fn set_next_request_id(&mut self, id: i64) {
        self.next_request_id = id;
    }

    fn request(&mut self, proto: &str, top: &str, body: Value, pending: Pending) -> i64 {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1);
        self.pending.insert(id, pending);
        self.queue(&Message::request(proto, top, id, body));
        id
    }

    fn queue(&mut self, msg: &Message) {
        let mut p = Vec::new();
        if msg.encode(&mut p).is_ok() {
            self.transmits.push_back(p);
        }
    }

    /// Send `control/hello` (message `{}`); returns the request id.
    pub fn hello(&mut self) -> i64 {
        self.request(
            protocol::CONTROL,
            topic::HELLO,
            Value::Dict(vec![]),
            Pending::Hello,
        )
    }

    /// Send `dataSend/open` for an HKSV recording on `stream_id`; returns the request id.
    pub fn open(&mut self, stream_id: i64) -> i64 {
        let body = Value::dict([
            ("target", Value::String("controller".into())),
            ("type", Value::String("ipcamera.recording".into())),
            ("streamId", Value::Int(stream_id)),
        ]);
        self.open_with(stream_id, body)
    }

    /// Send `dataSend/open` with a custom body (tests of the accessory's checks).
    pub fn open_with(&mut self, stream_id: i64, body: Value) -> i64 {
        self.streams.insert(
            stream_id,
            Reassembly {
                next_seq: 1,
                ..Reassembly::default()
            },
        );
        self.request(
            protocol::DATA_SEND,
            topic::OPEN,
            body,
            Pending::Open { stream_id },
        )
    }

    /// Send `dataSend/ack {streamId, endOfStream: true}`.
    pub fn ack(&mut self, stream_id: i64) {
        self.queue(&Message::event(
            protocol::DATA_SEND,
            topic::ACK,
            Value::dict([
                ("streamId", Value::Int(stream_id)),
                ("endOfStream", Value::Bool(true)),
            ]),
        ));
    }

    /// Send `dataSend/close {streamId, reason}` and forget the stream.
    pub fn close_stream(&mut self, stream_id: i64, reason: Reason) {
        self.streams.remove(&stream_id);
        self.queue(&Message::event(
            protocol::DATA_SEND,
            topic::CLOSE,
            Value::dict([
                ("streamId", Value::Int(stream_id)),
                ("reason", Value::Int(reason.0)),
            ]),
        ));
    }

    /// Send any message (bad-input tests). A request's response comes back as
    /// [`ControllerEvent::Other`].
    pub fn send(&mut self, msg: &Message) {
        if let Kind::Request { id } = msg.kind {
            self.pending.insert(id, Pending::Raw);
        }
        self.queue(msg);
    }

    /// Append the next frame to `out`; false when nothing is queued.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        match self.transmits.pop_front() {
            Some(p) => self.sealer.seal(&p, out).is_ok(),
            None => false,
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ControllerEvent> {
        self.events.pop_front()
    }

    /// True after an error closed it.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Feed bytes received from the accessory.
    ///
    /// # Errors
    /// Framing, authentication, decoding or accessory-protocol errors; each closes the
    /// controller (also reported as [`ControllerEvent::ConnectionClosed`]).
    pub fn handle_incoming(&mut self, buf: &mut BytesMut) -> Result<(), Error> {
        while !self.closed {
            let counter = self.opener.counter();
            let result = frame::take_frame(buf, counter).and_then(|f| match f {
                None => Ok(None),
                Some(f) => self.opener.open(f).map(Some),
            });
            let plaintext = match result {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.fail(e)),
            };
            let handled = Message::decode(&plaintext)
                .map_err(|e| e.in_frame(counter))
                .and_then(|m| self.dispatch(m, counter));
            if let Err(e) = handled {
                return Err(self.fail(e));
            }
        }
        Ok(())
    }

    fn fail(&mut self, e: Error) -> Error {
        self.closed = true;
        self.events
            .push_back(ControllerEvent::ConnectionClosed { why: e.clone() });
        e
    }

    fn dispatch(&mut self, msg: Message, counter: u64) -> Result<(), Error> {
        let bad = |what| Error::AccessoryMisbehaved {
            frame_counter: counter,
            what,
        };
        match (msg.kind, msg.protocol.as_str(), msg.topic.as_str()) {
            (Kind::Response { id, status }, _, _) => match self.pending.remove(&id) {
                Some(Pending::Hello) if status == HdsStatus::SUCCESS => {
                    self.events.push_back(ControllerEvent::HelloDone);
                }
                Some(Pending::Hello) => return Err(bad("hello refused")),
                Some(Pending::Open { stream_id }) => {
                    let reason = msg
                        .body
                        .get("status")
                        .and_then(Value::as_int)
                        .map_or(Reason::NORMAL, Reason);
                    if status == HdsStatus::SUCCESS {
                        self.events
                            .push_back(ControllerEvent::OpenAccepted { stream_id });
                    } else {
                        self.streams.remove(&stream_id);
                        self.events.push_back(ControllerEvent::OpenRejected {
                            stream_id,
                            status,
                            reason,
                        });
                    }
                }
                Some(Pending::Raw) => self.events.push_back(ControllerEvent::Other(msg)),
                None => return Err(bad("response to a request we never sent")),
            },
            (Kind::Event, protocol::DATA_SEND, topic::DATA) => {
                let (data, meta) =
                    message::parse_data_event(&msg.body).map_err(|e| e.in_frame(counter))?;
                self.chunk(data, meta, counter)?;
            }
            (Kind::Event, protocol::DATA_SEND, topic::CLOSE) => {
                let stream_id = msg
                    .body
                    .get("streamId")
                    .and_then(Value::as_int)
                    .unwrap_or(0);
                let reason = msg
                    .body
                    .get("reason")
                    .and_then(Value::as_int)
                    .map_or(Reason::NORMAL, Reason);
                self.streams.remove(&stream_id);
                self.events
                    .push_back(ControllerEvent::StreamClosed { stream_id, reason });
            }
            _ => self.events.push_back(ControllerEvent::Other(msg)),
        }
        Ok(())
    }

    fn chunk(&mut self, data: Bytes, meta: ChunkMeta, counter: u64) -> Result<(), Error> {
        let bad = |what| Error::AccessoryMisbehaved {
            frame_counter: counter,
            what,
        };
        let r = self
            .streams
            .get_mut(&meta.stream_id)
            .ok_or(bad("data for a stream that is not open"))?;
        if r.ended {
            return Err(bad("data after endOfStream"));
        }
        if data.len() > MAX_CHUNK_BYTES {
            return Err(bad("chunk larger than 262144 bytes"));
        }
        if meta.end_of_stream.is_some() != meta.is_last_data_chunk {
            return Err(bad("endOfStream must be present exactly on last chunks"));
        }
        if meta.data_chunk_sequence_number == 1 {
            if r.partial.is_some() {
                return Err(bad("new segment before the last chunk of the previous one"));
            }
            if meta.data_sequence_number != r.next_seq {
                return Err(bad("dataSequenceNumber out of order"));
            }
            let want = if r.next_seq == 1 {
                SegmentKind::MediaInitialization
            } else {
                SegmentKind::MediaFragment
            };
            if meta.kind != want {
                return Err(bad("dataType does not fit dataSequenceNumber"));
            }
            let total = meta
                .data_total_size_bytes
                .ok_or(bad("dataTotalSize missing on chunk 1"))?;
            r.next_seq += 1;
            r.partial = Some(Partial {
                kind: meta.kind,
                seq: meta.data_sequence_number,
                total_bytes: total,
                next_chunk: 2,
                buf: BytesMut::new(),
                first: Some(data.clone()),
            });
        } else {
            let p = r.partial.as_mut().ok_or(bad("chunk > 1 without chunk 1"))?;
            if meta.data_total_size_bytes.is_some() {
                return Err(bad("dataTotalSize on a chunk other than 1"));
            }
            if meta.data_chunk_sequence_number != p.next_chunk
                || meta.data_sequence_number != p.seq
                || meta.kind != p.kind
            {
                return Err(bad("dataChunkSequenceNumber out of order"));
            }
            p.next_chunk += 1;
            if let Some(first) = p.first.take() {
                p.buf.extend_from_slice(&first);
            }
            p.buf.extend_from_slice(&data);
        }
        self.events.push_back(ControllerEvent::Chunk {
            meta,
            data: data.clone(),
        });
        if meta.is_last_data_chunk {
            let p = r.partial.take().ok_or(bad("last chunk without chunk 1"))?;
            // A one-chunk segment stays a zero-copy slice of its frame.
            let whole = match p.first {
                Some(first) => first,
                None => p.buf.freeze(),
            };
            if whole.len() as u64 != p.total_bytes {
                return Err(bad("reassembled size differs from dataTotalSize"));
            }
            let end_of_stream = meta.end_of_stream == Some(true);
            r.ended = end_of_stream;
            self.events.push_back(ControllerEvent::Segment {
                stream_id: meta.stream_id,
                kind: p.kind,
                data_sequence_number: p.seq,
                data: whole,
                end_of_stream,
            });
        }
        Ok(())
    }
}
