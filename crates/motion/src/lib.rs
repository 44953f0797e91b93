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
    /// The camera's motion comes from outside: HTTP calls (a doorbell, a home automation) or
    /// another system. The built-in detector is then off unless `detector.enabled = true`.
    /// MQTT topics and Frigate need no such flag (see [`Self::detector_wanted`]). Default
    /// `false`.
    #[serde(default)]
    pub external: bool,
}

/// Whether a camera runs the built-in detector, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectorChoice {
    /// It runs.
    On,
    /// It does not; the reason, for the logs and the status page.
    Off(String),
}

impl CameraMotionConfig {
    /// Whether the built-in detector runs for camera `name` given the MQTT settings:
    /// `detector.enabled` when set; otherwise on unless a plain MQTT topic drives the camera,
    /// Frigate does (its `cameras` map names it, or the map is empty: same names), or
    /// `external` is set. Two motion sources for one camera would record twice as often.
    pub fn detector_wanted(&self, name: &str, mqtt: Option<&MqttConfig>) -> DetectorChoice {
        match self.detector.enabled {
            Some(true) => return DetectorChoice::On,
            Some(false) => return DetectorChoice::Off("motion.detector.enabled = false".into()),
            None => {}
        }
        let off = |why: &str| {
            DetectorChoice::Off(format!(
                "{why}; set motion.detector.enabled = true to run it as well"
            ))
        };
        if let Some(mqtt) = mqtt {
            if let Some(t) = mqtt.topics.iter().find(|t| t.camera == name) {
                return off(&format!("motion comes from MQTT topic {:?}", t.topic));
            }
            if let Some(f) = &mqtt.frigate
                && (f.cameras.is_empty() || f.cameras.values().any(|c| c == name))
            {
                return off("motion comes from Frigate");
            }
        }
        if self.external {
            return off("motion comes from outside (motion.external = true)");
        }
        DetectorChoice::On
    }
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

    #[test]
    fn detector_is_on_unless_motion_comes_from_elsewhere() {
        let plain = CameraMotionConfig::default();
        assert_eq!(plain.detector_wanted("a", None), DetectorChoice::On);
        let mqtt: MqttConfig =
            toml::from_str("[[topics]]\ntopic = \"cams/a\"\ncamera = \"a\"\n").unwrap();
        assert!(
            matches!(plain.detector_wanted("a", Some(&mqtt)), DetectorChoice::Off(w) if w.contains("cams/a"))
        );
        assert_eq!(plain.detector_wanted("b", Some(&mqtt)), DetectorChoice::On);
        // Frigate without a map: every camera; with one, only the mapped ones.
        let frigate: MqttConfig = toml::from_str("[frigate]\n").unwrap();
        assert!(
            matches!(plain.detector_wanted("b", Some(&frigate)), DetectorChoice::Off(w) if w.contains("Frigate"))
        );
        let mapped: MqttConfig = toml::from_str("[frigate.cameras]\nfront_door = \"a\"\n").unwrap();
        assert!(matches!(
            plain.detector_wanted("a", Some(&mapped)),
            DetectorChoice::Off(_)
        ));
        assert_eq!(
            plain.detector_wanted("b", Some(&mapped)),
            DetectorChoice::On
        );
        let external: CameraMotionConfig = toml::from_str("external = true\n").unwrap();
        assert!(
            matches!(external.detector_wanted("b", None), DetectorChoice::Off(w) if w.contains("external"))
        );
        // An explicit setting wins either way.
        let forced: CameraMotionConfig =
            toml::from_str("external = true\n[detector]\nenabled = true\n").unwrap();
        assert_eq!(
            forced.detector_wanted("a", Some(&frigate)),
            DetectorChoice::On
        );
        let off: CameraMotionConfig = toml::from_str("[detector]\nenabled = false\n").unwrap();
        assert!(matches!(
            off.detector_wanted("a", None),
            DetectorChoice::Off(_)
        ));
    }
}
