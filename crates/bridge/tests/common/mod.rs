//! Shared setup of the in-process camera tests.
#![allow(dead_code, clippy::unwrap_used)] // each test file uses part of it

use std::path::Path;

use bridge::camera::{CameraOptions, MediaInput};
use hap_server::setup::SetupCode;

/// Camera "Cam" on 127.0.0.1, any free port, media pushed by the test (`MediaInput::External`),
/// no audio, no doorbell, 180 s cap, no mDNS; state in `dir`; setup code `code` (else
/// generated). Tests change fields with struct update syntax.
pub(crate) fn options(dir: &Path, code: Option<&str>) -> CameraOptions {
    CameraOptions {
        name: "Cam".into(),
        input: MediaInput::External,
        bind: "127.0.0.1".parse().unwrap(),
        port: 0,
        setup_code: code.map(|c| SetupCode::parse(c).unwrap()),
        audio: false,
        doorbell: false,
        max_recording_s: 180,
        state_dir: dir.to_path_buf(),
        mdns: false,
        live_streams: 2,
        live: bridge::live::LiveConfig::default(),
        live_source: None,
        detector: bridge::camera::DetectorSetting::Off("not in this test".into()),
        detect_source: None,
    }
}
