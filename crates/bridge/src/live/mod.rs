//! HomeKit live view: CameraRTPStreamManagement sessions that send the camera's own H.264
//! over SRTP, starting at the newest IDR (live-view notes; `docs/architecture.md`, "Live view").
//!
//! ```text
//!  LiveFeed (camera::Feeder) ─► LiveReader ─► LiveSession (sans-IO) ─► SRTP datagrams ─► UDP
//!                                              ▲ RTCP from the controller (liveness)
//! ```

pub mod audio;
mod driver;
pub mod opus_feed;
pub mod service;
pub mod session;
pub mod transcode;

pub use driver::{FIRST_IDR_WAIT, LiveRecord, LiveView, SessionHook, StatusHook};
pub use service::{Caller, LiveConfig, StartOrder, StreamService};
pub use session::{
    DEFAULT_CATCH_UP_SPEED, DEFAULT_LIVENESS_TIMEOUT, LiveEnd, LiveEvent, LiveParams, LiveSession,
    LiveSetupError, MIN_MTU,
};
