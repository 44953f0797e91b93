//! hksv-bridge as a library: camera accessories, configuration, CLI and HTTP API.
//! The `hksv-bridge` binary (`main.rs`) is a thin shell over these modules.
#![forbid(unsafe_code)]

pub mod accessory;
pub mod api;
pub mod app;
pub mod camera;
pub mod cli;
pub mod config;
pub mod detector_check;
pub mod host;
pub mod live;
pub mod metrics;
pub mod mqtt_out;
pub mod qr;
pub mod recording;
