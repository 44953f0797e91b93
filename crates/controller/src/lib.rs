//! A minimal HomeKit controller: the home hub's side, for the end-to-end tests and
//! `hksv-bridge selftest`.
//!
//! ```text
//!  hap::pair_setup ──► keys::PairingKeys (JSON, reusable)
//!  hap::HapClient (pair-verify, encrypted HTTP, EVENT/1.0 channel)
//!      │ model::AccessoryDb (find by service + characteristic type)
//!      ▼
//!  hksv (205/206/207 → 209, Active, SetupDataStreamTransport 131 → HDS port + keys)
//!      ▼
//!  hds_client::HdsClient (hello, dataSend/open, chunks → segments, ack/close)
//!      ▼
//!  checker (every invariant of an HKSV recording; writes clip.mp4)
//! ```
#![forbid(unsafe_code)]

pub mod checker;
pub mod hap;
pub mod hds_client;
pub mod hksv;
pub mod keys;
pub mod live;
pub mod model;
pub mod selftest;

pub use hap::{CharResult, CharWrite, EventValue, HapClient, HapError, Response, pair_setup};
pub use keys::PairingKeys;
pub use model::AccessoryDb;
