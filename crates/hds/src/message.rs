//! HDS messages: `header_len u8 ‖ header dict ‖ message dict` (protocol notes §4.5, §4.7).
//!
//! The header says which protocol and topic the message belongs to and whether it is an
//! event, a request (with `id`) or a response (with `id` and `status`). Both dictionaries are
//! encoded independently (separate back-reference tables).

use std::fmt;

use bytes::Bytes;

use crate::Error;
use crate::codec::{self, Encoder, Value};
use crate::error::malformed;

/// Protocol names (§4.7).
pub mod protocol {
    /// `control` (hello).
    pub const CONTROL: &str = "control";
    /// `dataSend` (open, data, ack, close).
    pub const DATA_SEND: &str = "dataSend";
    /// `targetControl` (Siri remotes; not used by cameras).
    pub const TARGET_CONTROL: &str = "targetControl";
}

/// Topic names (§4.7).
pub mod topic {
    /// `control/hello` request.
    pub const HELLO: &str = "hello";
    /// `dataSend/open` request.
    pub const OPEN: &str = "open";
    /// `dataSend/data` event.
    pub const DATA: &str = "data";
    /// `dataSend/ack` event.
    pub const ACK: &str = "ack";
    /// `dataSend/close` event.
    pub const CLOSE: &str = "close";
}

macro_rules! wire_int {
    ($(#[$m:meta])* $name:ident { $($(#[$cm:meta])* $c:ident = $v:expr,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub i64);
        impl $name {
            $($(#[$cm])* pub const $c: $name = $name($v);)*
            fn name(self) -> Option<&'static str> {
                match self.0 { $($v => Some(stringify!($c)),)* _ => None }
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{}::{}", stringify!($name), n),
                    None => write!(f, "{}({:#x})", stringify!($name), self.0),
                }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    };
}

wire_int! {
    /// Response header `status` (HDSStatus, §4.7). Unknown values round-trip.
    HdsStatus {
        /// 0.
        SUCCESS = 0,
        /// 1.
        OUT_OF_MEMORY = 1,
        /// 2.
        TIMEOUT = 2,
        /// 3.
        HEADER_ERROR = 3,
        /// 4.
        PAYLOAD_ERROR = 4,
        /// 5: no handler for the protocol.
        MISSING_PROTOCOL = 5,
        /// 6: the message body's `status` holds a [`Reason`].
        PROTOCOL_SPECIFIC_ERROR = 6,
    }
}

wire_int! {
    /// Protocol-specific reason (dataSend `close` `reason`, rejected `open` `status`; §4.7).
    Reason {
        /// 0.
        NORMAL = 0,
        /// 1: recording or camera inactive.
        NOT_ALLOWED = 1,
        /// 2: another recording stream is running.
        BUSY = 2,
        /// 3: accessory gave up waiting for ack/close.
        CANCELLED = 3,
        /// 4.
        UNSUPPORTED = 4,
        /// 5: bad open target/type, pipeline error.
        UNEXPECTED_FAILURE = 5,
        /// 6.
        TIMEOUT = 6,
        /// 7.
        BAD_DATA = 7,
        /// 8.
        PROTOCOL_ERROR = 8,
        /// 9: no selected recording configuration.
        INVALID_CONFIGURATION = 9,
    }
}

/// What kind of message the header describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Header key `event`.
    Event,
    /// Header key `request` plus `id`.
    Request {
        /// Chosen by the sender; echoed in the response.
        id: i64,
    },
    /// Header key `response` plus `id` and `status`.
    Response {
        /// The request's id.
        id: i64,
        /// HDSStatus.
        status: HdsStatus,
    },
}

/// One decoded or to-be-sent HDS message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Header `protocol`.
    pub protocol: String,
    /// Value of the `event` / `request` / `response` header key.
    pub topic: String,
    /// Event, request or response.
    pub kind: Kind,
    /// The message dictionary.
    pub body: Value,
}

impl Message {
    /// An event.
    #[must_use]
    pub fn event(protocol: &str, topic: &str, body: Value) -> Self {
        Self::new(protocol, topic, Kind::Event, body)
    }

    /// A request.
    #[must_use]
    pub fn request(protocol: &str, topic: &str, id: i64, body: Value) -> Self {
        Self::new(protocol, topic, Kind::Request { id }, body)
    }

    /// A response.
    #[must_use]
    pub fn response(protocol: &str, topic: &str, id: i64, status: HdsStatus, body: Value) -> Self {
        Self::new(protocol, topic, Kind::Response { id, status }, body)
    }

    fn new(protocol: &str, topic: &str, kind: Kind, body: Value) -> Self {
        Self {
            protocol: protocol.to_owned(),
            topic: topic.to_owned(),
            kind,
            body,
        }
    }

    /// Append the plaintext payload (`header_len ‖ header ‖ body`) to `out`.
    ///
    /// Header key order and widths follow HAP-NodeJS (`protocol`, topic key, `id`, `status`; `id`
    /// and `status` as int64), the shape hubs have long accepted.
    ///
    /// # Errors
    /// [`Error::HeaderTooLarge`] when the header exceeds 255 bytes (nothing usable is written).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        encode_header(out, &self.protocol, &self.topic, self.kind)?;
        self.body.encode(out);
        Ok(())
    }

    /// Decode a plaintext payload. Bytes after the message dictionary are ignored (HAP-NodeJS
    /// only logs them); data values are zero-copy slices of `payload`.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a bad layout, bad encoding, or a header without `protocol` and
    /// one of `event`/`request`/`response` (with an integer `id`, and `status` for responses).
    pub fn decode(payload: &Bytes) -> Result<Self, Error> {
        let Some((&header_len, _)) = payload.split_first() else {
            return Err(malformed(0, "empty payload"));
        };
        let header_end = 1 + usize::from(header_len);
        if header_end > payload.len() {
            return Err(malformed(0, "header length exceeds the payload"));
        }
        let header = codec::decode(&payload.slice(1..header_end)).map_err(|e| shift(e, 1))?;
        let (body, _used) =
            codec::decode_prefix(&payload.slice(header_end..)).map_err(|e| shift(e, header_end))?;
        let protocol = header
            .get("protocol")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(1, "header has no protocol string"))?
            .to_owned();
        let int = |key: &str| header.get(key).and_then(Value::as_int);
        let (topic, kind) = if let Some(t) = header.get("event") {
            (t, Kind::Event)
        } else if let Some(t) = header.get("request") {
            let id = int("id").ok_or_else(|| malformed(1, "request header has no integer id"))?;
            (t, Kind::Request { id })
        } else if let Some(t) = header.get("response") {
            let id = int("id").ok_or_else(|| malformed(1, "response header has no integer id"))?;
            let status = int("status")
                .ok_or_else(|| malformed(1, "response header has no integer status"))?;
            (
                t,
                Kind::Response {
                    id,
                    status: HdsStatus(status),
                },
            )
        } else {
            return Err(malformed(1, "header has no event/request/response key"));
        };
        let topic = topic
            .as_str()
            .ok_or_else(|| malformed(1, "topic is not a string"))?
            .to_owned();
        Ok(Self {
            protocol,
            topic,
            kind,
            body,
        })
    }
}

fn shift(e: Error, by: usize) -> Error {
    match e {
        Error::Malformed {
            frame_counter,
            offset,
            what,
        } => Error::Malformed {
            frame_counter,
            offset: offset.saturating_add(by),
            what,
        },
        other => other,
    }
}

/// Append `header_len ‖ header` for a message; the caller appends the body.
pub(crate) fn encode_header(
    out: &mut Vec<u8>,
    protocol: &str,
    topic: &str,
    kind: Kind,
) -> Result<(), Error> {
    let len_at = out.len();
    out.push(0);
    let start = out.len();
    let mut e = Encoder::new(out);
    let (topic_key, count) = match kind {
        Kind::Event => ("event", 2),
        Kind::Request { .. } => ("request", 3),
        Kind::Response { .. } => ("response", 4),
    };
    e.dict_start(count);
    e.string("protocol");
    e.string(protocol);
    e.string(topic_key);
    e.string(topic);
    match kind {
        Kind::Event => {}
        Kind::Request { id } => {
            e.string("id");
            e.int64(id);
        }
        Kind::Response { id, status } => {
            e.string("id");
            e.int64(id);
            e.string("status");
            e.int64(status.0);
        }
    }
    let header_bytes = out.len() - start;
    let len = u8::try_from(header_bytes).map_err(|_| Error::HeaderTooLarge { header_bytes })?;
    if let Some(b) = out.get_mut(len_at) {
        *b = len;
    }
    Ok(())
}

/// Which segment of a recording a `dataSend/data` chunk belongs to (§4.9 `dataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    /// `mediaInitialization`: the init segment (ftyp + moov), dataSequenceNumber 1.
    MediaInitialization,
    /// `mediaFragment`: one moof + mdat fragment, dataSequenceNumber 2, 3, …
    MediaFragment,
}

impl SegmentKind {
    /// The `dataType` string.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SegmentKind::MediaInitialization => "mediaInitialization",
            SegmentKind::MediaFragment => "mediaFragment",
        }
    }

    /// Parse a `dataType` string.
    #[must_use]
    pub fn from_wire(s: &str) -> Option<Self> {
        match s {
            "mediaInitialization" => Some(SegmentKind::MediaInitialization),
            "mediaFragment" => Some(SegmentKind::MediaFragment),
            _ => None,
        }
    }
}

/// Metadata of one `dataSend/data` chunk (§4.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    /// Stream the chunk belongs to.
    pub stream_id: i64,
    /// `dataType`.
    pub kind: SegmentKind,
    /// `dataSequenceNumber`: 1 for the init segment, then 2, 3, …
    pub data_sequence_number: i64,
    /// `dataChunkSequenceNumber`: 1-based within the segment.
    pub data_chunk_sequence_number: i64,
    /// `isLastDataChunk`.
    pub is_last_data_chunk: bool,
    /// `dataTotalSize`: the whole segment's length, only on chunk 1.
    pub data_total_size_bytes: Option<u64>,
    /// `endOfStream`: present (false) on the last chunk of every segment, true on the last chunk
    /// of the recording; absent otherwise.
    pub end_of_stream: Option<bool>,
}

/// Upper bound of a data event's payload bytes other than the chunk (header, keys, metadata);
/// 176 for the fixture's chunks (§7).
pub(crate) const DATA_EVENT_OVERHEAD_BYTES: usize = 256;

/// Plaintext payload bytes of a data event that come before the chunk's bytes, and after.
///
/// Writing the chunk bytes between the two pieces avoids building a [`Value`] (or copying the
/// chunk) per event. Key order as HAP-NodeJS: streamId, packets, endOfStream; packet: data,
/// metadata; metadata: dataType, dataSequenceNumber, dataChunkSequenceNumber, isLastDataChunk,
/// dataTotalSize (§4.9).
///
/// # Errors
/// Only [`Error::HeaderTooLarge`], which cannot happen for this fixed header.
pub fn encode_data_event(
    meta: &ChunkMeta,
    chunk_bytes: usize,
    before: &mut Vec<u8>,
    after: &mut Vec<u8>,
) -> Result<(), Error> {
    data_event_head(meta, chunk_bytes, before)?;
    data_event_tail(meta, after);
    Ok(())
}

/// Append the whole plaintext payload of one data event to `out`, its chunk given as slices
/// (the parts of a multi-part segment it covers), written in place between the head and the
/// metadata: the chunk's bytes are copied once, into `out`.
///
/// # Errors
/// As [`encode_data_event`].
pub fn write_data_event<'a, I>(meta: &ChunkMeta, chunk: I, out: &mut Vec<u8>) -> Result<(), Error>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: Clone,
{
    let chunk = chunk.into_iter();
    let chunk_bytes = chunk.clone().map(<[u8]>::len).sum();
    data_event_head(meta, chunk_bytes, out)?;
    chunk.for_each(|s| out.extend_from_slice(s));
    data_event_tail(meta, out);
    Ok(())
}

fn data_event_head(meta: &ChunkMeta, chunk_bytes: usize, out: &mut Vec<u8>) -> Result<(), Error> {
    encode_header(out, protocol::DATA_SEND, topic::DATA, Kind::Event)?;
    let mut e = Encoder::new(out);
    e.dict_start(if meta.end_of_stream.is_some() { 3 } else { 2 });
    e.string("streamId");
    e.int(meta.stream_id);
    e.string("packets");
    e.array_start(1);
    e.dict_start(2);
    e.string("data");
    e.data_header(chunk_bytes);
    Ok(())
}

fn data_event_tail(meta: &ChunkMeta, out: &mut Vec<u8>) {
    let mut e = Encoder::new(out);
    e.string("metadata");
    e.dict_start(if meta.data_total_size_bytes.is_some() {
        5
    } else {
        4
    });
    e.string("dataType");
    e.string(meta.kind.as_str());
    e.string("dataSequenceNumber");
    e.int(meta.data_sequence_number);
    e.string("dataChunkSequenceNumber");
    e.int(meta.data_chunk_sequence_number);
    e.string("isLastDataChunk");
    e.bool(meta.is_last_data_chunk);
    if let Some(total) = meta.data_total_size_bytes {
        e.string("dataTotalSize");
        e.int(i64::try_from(total).unwrap_or(i64::MAX));
    }
    if let Some(eos) = meta.end_of_stream {
        e.string("endOfStream");
        e.bool(eos);
    }
}

/// The whole plaintext payload of one data event carrying `chunk`.
///
/// # Errors
/// As [`encode_data_event`].
pub fn data_event_payload(meta: &ChunkMeta, chunk: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(chunk.len() + DATA_EVENT_OVERHEAD_BYTES);
    write_data_event(meta, [chunk], &mut out)?;
    Ok(out)
}

/// Parse a `dataSend/data` event body into its chunk (zero-copy) and metadata.
///
/// # Errors
/// [`Error::Malformed`] when a required key is missing or has the wrong type, or the event does
/// not carry exactly one packet (HAP-NodeJS always sends one; we only send one).
pub fn parse_data_event(body: &Value) -> Result<(Bytes, ChunkMeta), Error> {
    let bad = |what| malformed(0, what);
    let stream_id = body
        .get("streamId")
        .and_then(Value::as_int)
        .ok_or(bad("data: no streamId"))?;
    let packet = match body.get("packets") {
        Some(Value::Array(p)) if p.len() == 1 => p.first().ok_or(bad("data: no packet"))?,
        _ => return Err(bad("data: packets is not a one-element array")),
    };
    let data = packet
        .get("data")
        .and_then(Value::as_data)
        .ok_or(bad("data: packet has no data"))?
        .clone();
    let meta = packet.get("metadata").ok_or(bad("data: no metadata"))?;
    let kind = meta
        .get("dataType")
        .and_then(Value::as_str)
        .and_then(SegmentKind::from_wire)
        .ok_or(bad("data: unknown dataType"))?;
    let int = |k| meta.get(k).and_then(Value::as_int);
    Ok((
        data,
        ChunkMeta {
            stream_id,
            kind,
            data_sequence_number: int("dataSequenceNumber")
                .ok_or(bad("data: no dataSequenceNumber"))?,
            data_chunk_sequence_number: int("dataChunkSequenceNumber")
                .ok_or(bad("data: no dataChunkSequenceNumber"))?,
            is_last_data_chunk: meta
                .get("isLastDataChunk")
                .and_then(Value::as_bool)
                .ok_or(bad("data: no isLastDataChunk"))?,
            data_total_size_bytes: int("dataTotalSize").and_then(|t| u64::try_from(t).ok()),
            end_of_stream: body.get("endOfStream").and_then(Value::as_bool),
        },
    ))
}
