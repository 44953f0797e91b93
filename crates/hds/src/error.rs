//! The one error type of this crate, classified by who is to blame.

/// Who caused an [`Error`]: the peer, the cryptography, or our own caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Blame {
    /// The peer sent something the protocol does not allow (close the connection).
    Peer,
    /// A frame failed ChaCha20-Poly1305 authentication (wrong key, tampering, lost frame).
    Crypto,
    /// The caller of this crate used the API wrongly (a bug on our side, not the peer's).
    Local,
}

/// Everything that can go wrong in HDS framing, decoding and the connection state machine.
///
/// Errors caused by a received frame carry `frame_counter`: the nonce counter of that frame in
/// its direction (0 for the first frame), so the frame can be found in a capture.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A frame header announced a payload above [`crate::frame::MAX_PAYLOAD_BYTES`]
    /// (protocol notes §4.3: HAP-NodeJS closes the connection on such a frame).
    #[error(
        "frame {frame_counter}: payload length {payload_bytes} exceeds the HDS maximum 0xFFFFF"
    )]
    FrameTooLarge {
        /// Declared payload length.
        payload_bytes: usize,
        /// Nonce counter the frame would have used.
        frame_counter: u64,
    },
    /// ChaCha20-Poly1305 authentication of a frame failed.
    #[error("frame {frame_counter}: authentication failed")]
    Authentication {
        /// Nonce counter used for the attempt (not advanced).
        frame_counter: u64,
    },
    /// The first frame of a new connection authenticated with no pending prepared session.
    #[error("first frame authenticates with no pending prepared session")]
    UnknownSession,
    /// The value encoding (§4.6) or the payload layout (§4.5) is malformed.
    #[error("frame {frame_counter:?}: malformed payload at byte {offset}: {what}")]
    Malformed {
        /// Counter of the frame carrying the payload, when known.
        frame_counter: Option<u64>,
        /// Byte offset inside the decoded dictionary (or payload) where decoding stopped.
        offset: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// The first message was not a `control/hello` request (§4.4).
    #[error("frame {frame_counter}: expected a control/hello request first")]
    ExpectedHello {
        /// Counter of the offending frame.
        frame_counter: u64,
    },
    /// No `control/hello` arrived within 10 s of the TCP accept (§4.4).
    #[error("no control/hello within 10 s of accept")]
    HelloTimeout,
    /// A `dataSend/data` event arrived for a stream that was never opened.
    #[error("frame {frame_counter}: dataSend/data for stream {stream_id} before open")]
    DataBeforeOpen {
        /// The stream the event named.
        stream_id: i64,
        /// Counter of the offending frame.
        frame_counter: u64,
    },
    /// The controller peer saw something the accessory must not send (used by [`crate::controller`]).
    #[error("frame {frame_counter}: accessory protocol violation: {what}")]
    AccessoryMisbehaved {
        /// Counter of the offending frame.
        frame_counter: u64,
        /// What was wrong.
        what: &'static str,
    },
    /// We were asked to send a payload above [`crate::frame::MAX_PAYLOAD_BYTES`]; refused.
    #[error("refusing to send a {payload_bytes}-byte payload (HDS maximum 0xFFFFF)")]
    PayloadTooLarge {
        /// Length of the payload we refused.
        payload_bytes: usize,
    },
    /// An encoded header dictionary does not fit its one-byte length prefix (§4.5).
    #[error("encoded header is {header_bytes} bytes; at most 255 fit")]
    HeaderTooLarge {
        /// Encoded header length.
        header_bytes: usize,
    },
    /// A command named a stream that is not open on this connection.
    #[error("stream {stream_id} is not open")]
    UnknownStream {
        /// The stream named.
        stream_id: i64,
    },
    /// A command does not fit the stream's state (segment after end of stream, fragment before the
    /// init segment, empty segment).
    #[error("stream {stream_id}: {what}")]
    StreamMisuse {
        /// The stream named.
        stream_id: i64,
        /// What was wrong.
        what: &'static str,
    },
    /// The connection is closed (or not ready yet) and cannot carry the command.
    #[error("connection is not ready: {what}")]
    NotReady {
        /// What state it is in.
        what: &'static str,
    },
    /// The 64-bit nonce counter is exhausted; the connection must be closed.
    #[error("nonce counter exhausted")]
    NonceExhausted,
}

impl Error {
    /// Who is to blame for this error.
    #[must_use]
    pub fn blame(&self) -> Blame {
        match self {
            Error::Authentication { .. } | Error::UnknownSession => Blame::Crypto,
            Error::FrameTooLarge { .. }
            | Error::Malformed { .. }
            | Error::ExpectedHello { .. }
            | Error::HelloTimeout
            | Error::DataBeforeOpen { .. }
            | Error::AccessoryMisbehaved { .. } => Blame::Peer,
            Error::PayloadTooLarge { .. }
            | Error::HeaderTooLarge { .. }
            | Error::UnknownStream { .. }
            | Error::StreamMisuse { .. }
            | Error::NotReady { .. }
            | Error::NonceExhausted => Blame::Local,
        }
    }

    /// Attach the counter of the frame whose payload failed to decode.
    #[must_use]
    pub(crate) fn in_frame(self, counter: u64) -> Self {
        match self {
            Error::Malformed { offset, what, .. } => Error::Malformed {
                frame_counter: Some(counter),
                offset,
                what,
            },
            other => other,
        }
    }
}

pub(crate) fn malformed(offset: usize, what: &'static str) -> Error {
    Error::Malformed {
        frame_counter: None,
        offset,
        what,
    }
}
