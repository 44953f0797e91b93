//! # source: camera sources for hksv-bridge
//!
//! Every camera ends as a stream of timestamped H.264 access units, AAC frames and codec
//! parameters ([`recorder::MediaUnit`]) for the recorder's fragmenter. This crate
//! opens them from a `source` string ([`SourceSpec`]) and keeps them alive; it does not
//! fragment, buffer or decode.
//!
//! ```text
//!  "rtsp://…" / "v4l2://…" / "http://…" / "tcp://…" / file / "-" / "exec:…" / "demo:"
//!    │ SourceSpec::from_str (credentials redacted in Display/Debug)
//!    ▼
//!  AnyConnector ── connect ──► session (retina RTSP | V4L2 thread | ByteIngest | DemoSource)
//!    │                          │ MediaUnit …
//!    ▼                          ▼
//!  ReconnectingSource: backoff (1 s doubling to 30 s), stall watchdog (10 s), timestamps
//!    │ continuous across reconnects
//!    ▼ SourceEvent::{Connected, Unit, Reconnecting}
//!  bridge: recorder::Fragmenter → PrebufferRing          check(): report + files
//! ```
//!
//! ```no_run
//! use source::{CameraSource, ReconnectPolicy, SourceEvent, SourceSpec};
//! # async fn run() -> Result<(), source::Error> {
//! let spec: SourceSpec = "rtsp://admin:secret@192.168.1.20/stream1".parse()?;
//! let mut camera = source::open(&spec, ReconnectPolicy::default())?;
//! loop {
//!     match camera.next_event().await? {
//!         SourceEvent::Connected { params, .. } => println!("{spec}: {}", params.transport),
//!         SourceEvent::Unit(_unit) => { /* fragmenter.push(_unit) */ }
//!         SourceEvent::Reconnecting { error, delay, .. } => println!("{error}; retry in {delay:?}"),
//!     }
//! }
//! # }
//! ```
#![forbid(unsafe_code)]

mod any;
pub mod bytestream;
pub mod camera;
pub mod check;
pub mod demo;
mod error;
pub mod ingest;
pub mod mp4file;
pub mod rtsp;
pub mod spec;
pub mod testing;
pub mod v4l2;

pub use any::{AnyConnector, AnySession, Source, open};
pub use camera::{
    CameraSource, Connector, MediaSession, ReconnectPolicy, ReconnectingSource, SourceEvent,
    StreamParams,
};
pub use check::{CheckProgress, CheckReport, Level, Verdict, check, check_observed, check_source};
pub use error::Error;
pub use spec::{ByteStreamOptions, RtspTransport, SourceSpec, V4l2Params};
