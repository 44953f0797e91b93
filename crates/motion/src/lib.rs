//! Motion for hksv-bridge: tells the bridge when a camera sees motion.
//!
//! ```text
//!  HTTP trigger ─┐
//!  MQTT (plain / Frigate) ─┼─► MotionHub::trigger(camera, detected, source)
//!  built-in detector ─┘            │ per camera: MotionState (debounce, pure)
//!   (H.264 AUs → openh264 →        ▼
//!    luma grid → compare)    watch::Receiver<MotionStatus> ──► bridge (MotionDetected)
//! ```
//!
//! - [`debounce`]: the pure state machine (min on-time, hold after the last pulse, level
//!   sources with a cap); `now` in, transitions out.
//! - [`hub`]: [`MotionHub`], the registry keyed by camera name, with a timer task per camera.
//! - [`detector`]: the frame-difference detector and its thread.
//! - [`mqtt`]: plain topics and Frigate events over `rumqttc`, reconnecting.
//!
//! H.264 NAL units are read with `recorder::h264`.
//!
//! It knows nothing about HAP or fMP4.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use motion::{DebounceConfig, MotionHub, MotionSource};
//! let hub = MotionHub::new([("front", DebounceConfig::default())]).unwrap();
//! let mut changes = hub.subscribe("front").unwrap();
//! assert!(hub.trigger("front", true, MotionSource::Http).unwrap().detected);
//! assert!(changes.has_changed().unwrap());
//! assert!(hub.trigger("garage", true, MotionSource::Http).is_err()); // HTTP: 404
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod debounce;
pub mod detector;
mod error;
pub mod hub;
pub mod mqtt;

pub use debounce::{DebounceConfig, MotionSource, MotionState, Transition};
pub use detector::{
    AccessUnit, DecodeMode, Detector, DetectorConfig, DetectorHandle, DetectorStats, ExclusionZone,
    FrameOutcome, OwnedAccessUnit, SkipReason, spawn_detector,
};
pub use error::MotionError;
pub use hub::{MotionHub, MotionStatus};
pub use mqtt::{
    FrigateConfig, MqttConfig, MqttHandle, MqttPublisher, MqttStatus, PayloadError, PlainTopic,
    parse_plain_payload, spawn_mqtt,
};

use serde::{Deserialize, Serialize};

/// Per-camera motion settings (embedded in the bridge's camera TOML).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraMotionConfig {
    /// Debounce timing. Defaults: see [`DebounceConfig`].
    #[serde(default)]
    pub debounce: DebounceConfig,
    /// Built-in detector. Defaults: see [`DetectorConfig`].
    #[serde(default)]
    pub detector: DetectorConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_config_from_toml_with_defaults_and_unknown_fields_rejected() {
        let c: CameraMotionConfig = toml::from_str(
            "[debounce]\nmin_on_ms = 2000\n[detector]\nsensitivity = 80\nexclude = [{ x = 0.0, y = 0.0, width = 1.0, height = 0.1 }]\n",
        )
        .unwrap();
        assert_eq!(c.debounce.min_on_ms, 2000);
        assert_eq!(c.debounce.hold_ms, 5000);
        assert_eq!(c.detector.sensitivity, 80);
        assert_eq!(c.detector.max_analysed_fps, 5);
        assert_eq!(c.detector.exclude.len(), 1);
        c.detector.validate().unwrap();
        assert!(toml::from_str::<CameraMotionConfig>("[detector]\nsensitivty = 1\n").is_err());
        let bad: CameraMotionConfig = toml::from_str("[detector]\nsensitivity = 101\n").unwrap();
        assert!(bad.detector.validate().is_err());

        let m: MqttConfig =
            toml::from_str("port = 1884\n[frigate]\nlabels = [\"person\", \"car\"]\n[[topics]]\ntopic = \"a/+\"\ncamera = \"x\"\n")
                .unwrap();
        assert_eq!(
            (m.port, m.host.as_str(), m.reconnect_max_ms),
            (1884, "127.0.0.1", 30_000)
        );
        assert_eq!(m.frigate.unwrap().topic, "frigate/events");
        assert!(toml::from_str::<MqttConfig>("prot = 1\n").is_err());
    }
}
