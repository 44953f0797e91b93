//! HomeKit Data Stream (HDS), sans-IO: encrypted frames, the value codec, messages, and the
//! `dataSend` recording streams of an HKSV camera.
//!
//! ```text
//!  recorder (init segment as Bytes, fragments as moof header + shared payload)
//!        │ send_segment(now, stream_id, kind, Segment (Bytes or parts), end_of_stream)
//!        ▼
//!  connection::Connection ── message ── codec ── frame (ChaCha20-Poly1305) ──► poll_transmit ──► TCP
//!        ▲                                                                       handle_incoming ◄── TCP
//!        │ events: HelloDone, StreamOpened, AckReceived, StreamClosed, ConnectionClosed
//!  bridge (camera state, timers, socket)
//! ```
//!
//! What it does not do: sockets, timers, the DataStreamManagement HAP service (the bridge turns
//! a SetupDataStreamTransport write into a [`PreparedSession`] with [`PreparedSession::new`]).
//! Bytes and `now` go in, events and bytes come out.
//!
//! Layers: [`frame`] (type, 24-bit length, AEAD, nonce counters, key derivation), [`codec`]
//! (the OPACK-style values), [`message`] (header + body, statuses, reasons, data events),
//! [`connection`] (accessory state machine), [`controller`] (the hub's side, for tests, the
//! bridge's hub simulator and `selftest`).
//!
//! # Copies on the send path
//! A segment's bytes are copied once: [`Connection::poll_transmit`] writes each chunk's slices
//! (of the parts given to [`Connection::send_segment`]) straight into the caller's frame
//! buffer, between the data event's head and metadata, and ChaCha20-Poly1305 encrypts them
//! there in place. That copy stays because the ciphertext must not overwrite the caller's
//! plaintext, which other prebuffer readers share. Before it nothing is copied: a
//! [`Segment`] keeps its parts (`Bytes`) apart, and a chunk, cut only when its frame is
//! sealed, is the list of sub-slices of the parts it covers, so a chunk across a part
//! boundary needs no join. The per-chunk metadata is encoded into the frame buffer as well,
//! so a chunk allocates nothing unless the caller's buffer must grow (reuse it). Joining the
//! parts before the call, as `recorder`'s `ClipFragment::to_bytes` does, adds a copy.
//!
//! # Quirks of HAP-NodeJS 2.2.3 we deliberately do not copy
//! Protocol notes §4.6 and §7; our cross-check test runs its parser.
//! * Its reader rejects the inline integer tag 0x2F (39): we decode it, and write 39 as int8.
//! * Its reader decodes inline data 0x70–0x90 to `undefined`: we decode it, and only write the
//!   0x91–0x94 length forms.
//! * Its reader also enters booleans, −1 and inline integers into the back-reference table,
//!   disagreeing with its own writer: we follow the writer (only multi-byte scalars) and never
//!   write back-references ourselves.
//! * Its int64 writer only handles 0 ≤ v < 2^32: we write full 64-bit values.
//! * A second `dataSend/open` while a stream runs gets no response there: we answer busy (2).
//! * Requests for unknown protocols/topics go unanswered there: we answer with status 5
//!   (missing protocol) or 6 + reason 4 (unsupported).
//! * An empty packet produces no event there (losing `endOfStream`): we refuse empty segments.
//! * A first frame that fails authentication kills its whole process (§7): here it only closes
//!   that connection.
//!
//! # Example
//! ```
//! use std::time::Instant;
//! use bytes::{Bytes, BytesMut};
//! use hds::{CameraState, Connection, Event, PreparedSession, PreparedSessions, SegmentKind};
//! use hds::controller::{Controller, ControllerEvent};
//!
//! let now = Instant::now();
//! let (secret, c_salt, a_salt) = ([7u8; 32], [1u8; 32], [2u8; 32]);
//! let mut sessions = PreparedSessions::new();
//! sessions.insert(PreparedSession::new(&secret, &c_salt, &a_salt, now), "hap-conn-1");
//! let mut hub = Controller::new(&hds::SessionKeys::derive(&secret, &c_salt, &a_salt));
//! let mut cam = Connection::accept(now);
//! cam.set_camera_state(CameraState { recording_active: true, camera_active: true,
//!     configuration_selected: true, recording_elsewhere: false });
//!
//! hub.hello();
//! let mut wire = BytesMut::new();
//! let mut out = Vec::new();
//! while hub.poll_transmit(&mut out) {}
//! wire.extend_from_slice(&out);
//! assert_eq!(cam.identify(now, &mut wire, &mut sessions).unwrap(), Some("hap-conn-1"));
//! assert_eq!(cam.poll_event(), Some(Event::HelloDone));
//! # let _ = (Bytes::new(), SegmentKind::MediaFragment, ControllerEvent::HelloDone);
//! ```
#![forbid(unsafe_code)]

pub mod codec;
pub mod connection;
pub mod controller;
mod error;
pub mod frame;
pub mod message;
mod segment;

pub use codec::Value;
pub use connection::{
    CameraState, CloseCause, Connection, Event, Initiator, MAX_FIRST_FRAME_PAYLOAD,
    MAX_INCOMING_PAYLOAD, PreparedSession, PreparedSessions,
};
pub use error::{Blame, Error};
pub use frame::{Role, SessionKeys};
pub use message::{HdsStatus, Kind, Message, Reason, SegmentKind};
pub use segment::Segment;
