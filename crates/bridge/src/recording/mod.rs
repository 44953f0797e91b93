//! HKSV recording: a camera's HomeKit Data Stream endpoint and the recording stream on each
//! HDS connection (protocol notes §4, §5; `docs/architecture.md`, "The recording flow").
//!
//! ```text
//!  131 write ─► DataStreamTransport::setup ─► prepared session ─┐        transport.rs
//!  HDS listener ─► connection task (driver) ────────────────────┤        driver.rs
//!     bytes, conditions, motion, ring fragments, now ─► RecordingSession ─► frames, events
//!                                                         (sans-IO)       session.rs
//!  one RecordingSlot per camera: one dataSend stream at a time            slot.rs
//! ```
//!
//! The session decides everything (what to refuse, when to end and with which reason); the
//! driver only does IO and time, so every close path is tested on virtual time in
//! `session.rs` without a socket.

mod driver;
pub mod session;
pub mod slot;
pub mod transport;

pub use driver::{DriverContext, EventSink, MAX_CONNECTIONS, accept_loop};
pub use session::{
    Conditions, ConnectionEnd, EndReason, LocalClose, RecordingEvent, RecordingSession, Selection,
    SessionOptions,
};
pub use slot::{RecordingSlot, SlotGuard};
pub use transport::DataStreamTransport;
