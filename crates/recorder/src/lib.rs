//! # recorder: H.264/AAC access units → HKSV fMP4 fragments → per-camera prebuffer ring
//!
//! ```text
//!  camera source (RTSP / V4L2 / pipe / DemoSource)        src/source/ (later), demo.rs
//!    │ MediaUnit: ParameterSets | Video | Audio            input.rs
//!    │ VideoAccessUnit {pts_90k, dts_90k, Annex B | AVCC}   (NAL units: h264.rs)
//!    │ AudioFrame {pts_samples, raw AAC | ADTS}
//!    ▼
//!  Fragmenter (sans-IO)                                   fragmenter.rs
//!    │ drops until the first IDR, strips in-band SPS/PPS, cuts at the first IDR ≥ 4 s,
//!    │ cuts audio at the nearest AAC frame boundary, keeps tfdt continuous
//!    │ FragmenterEvent::Init(ftyp+moov) | ::Fragment(sample tables + mdat payload)
//!    ▼
//!  PrebufferRing (keeps ≥ 8 s, ≤ max bytes)               prebuffer.rs
//!    │ reader(prebuffer) → init segment, stored fragments from T, then live ones;
//!    │ each reader gets its own moof (sequence 1, tfdt 0) over the shared payload Bytes
//!    ▼
//!  HDS dataSend (bridge / hds crates): ClipFragment::parts() → hds::Segment, chunked
//!    into ≤ 262144-byte slices without copying the payload
//!
//!  LiveFeed (live view, live.rs): the access units since the newest IDR, one reader per
//!    viewer that starts there and follows live
//! ```
//!
//! The fMP4 byte layout (module [`fmp4`]) follows a real HKSV camera recording; the rules
//! and their sources are in that module's docs. Nothing here does IO, reads a clock or spawns
//! a task: the bridge drives it.
//!
//! ```
//! use recorder::{Fragmenter, FragmenterConfig, PrebufferRing, PrebufferConfig, DemoSource};
//!
//! let mut source = DemoSource::bundled().unwrap();
//! let mut config = FragmenterConfig::default();
//! config.audio_config = source.audio_config().cloned();
//! let mut fragmenter = Fragmenter::new(config).unwrap();
//! let ring = PrebufferRing::new(PrebufferConfig::default()).unwrap();
//! while ring.buffered().as_secs() < 8 {
//!     let (_due, unit) = source.next_unit(); // a live caller sleeps until `_due`
//!     let _ = fragmenter.push(unit); // an error drops only this unit
//!     while let Some(event) = fragmenter.poll_event() {
//!         ring.push_event(event);
//!     }
//! }
//! let mut reader = ring.reader(std::time::Duration::from_secs(4)).unwrap();
//! assert!(reader.init_segment().starts_with(&[0, 0, 0, 0x1c, b'f', b't', b'y', b'p']));
//! let first = reader.try_next().unwrap().unwrap();
//! assert_eq!(first.sequence_number, 1);
//! ```
#![forbid(unsafe_code)]

pub mod aac;
pub mod demo;
pub mod demux;
mod error;
pub mod fmp4;
pub mod fragmenter;
pub mod h264;
pub mod input;
pub mod live;
pub mod prebuffer;

pub use demo::DemoSource;
pub use error::{Error, ReaderError};
pub use fragmenter::{
    Fragment, Fragmenter, FragmenterConfig, FragmenterEvent, InitSegment, StreamInfo,
};
pub use input::{
    AudioFrame, H264Framing, MediaUnit, ParameterSets, TimestampUnwrapper, VideoAccessUnit,
};
pub use live::{AudioReader, LiveAudio, LiveFeed, LiveFeedConfig, LiveReader, LiveUnit};
pub use prebuffer::{ClipFragment, PrebufferConfig, PrebufferRing, ReaderOptions, RingReader};

/// Internals exposed for the fuzz targets only; not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::h264::AnnexBSplitter;

    /// Splits Annex B bytes into NAL units (the parser the fragmenter uses); their count.
    pub fn split_annexb(data: &[u8]) -> Result<usize, crate::Error> {
        crate::h264::nal_units(data, crate::H264Framing::AnnexB)
            .try_fold(0, |n, nal| nal.map(|_| n + 1))
    }
}
