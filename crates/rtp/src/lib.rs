//! Live-view media transport for HomeKit camera streams, sans-IO: bytes in, bytes out, no
//! sockets and no clock of its own.
//!
//! - [`packet`]: the RTP fixed header (RFC 3550 §5.1) and RTP/RTCP demultiplexing on one port
//!   (RFC 5761 §4);
//! - [`h264`]: RFC 6184 packetization mode 1 (single NAL unit, STAP-A, FU-A) within a datagram
//!   bound, parameter sets in band before each IDR;
//! - [`depacketize`]: the receiving side of mode 1, back into Annex B access units (for the
//!   controller's viewer);
//! - [`rtcp`]: sender and receiver reports, SDES CNAME, a bounded compound-packet parser;
//! - [`srtp`]: SRTP/SRTCP `AES_CM_128_HMAC_SHA1_80` (RFC 3711), with replay protection.
//!
//! The bridge's live-view session drives these; the controller crate uses the receiving side
//! to play the iPhone in tests.

pub mod depacketize;
pub mod h264;
pub mod packet;
pub mod rtcp;
pub mod srtp;

pub use depacketize::{AccessUnit, DepacketizeError, Depacketizer};
pub use h264::{PacketizeError, PacketizeStats, Packetizer, PacketizerConfig};
pub use packet::{RtpHeader, RtpPacket, is_rtcp};
pub use srtp::{Context as SrtpContext, MasterKey, Suite as SrtpSuite};
