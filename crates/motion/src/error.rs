//! The crate's error type.

/// What can go wrong when feeding or configuring motion sources.
///
/// Peer input (MQTT payloads, video frames) never produces these: malformed input is logged,
/// counted and ignored where it arrives.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MotionError {
    /// A trigger or subscription named a camera the hub does not know (HTTP answers 404).
    #[error("unknown camera {camera:?}")]
    UnknownCamera {
        /// The name as given by the caller.
        camera: String,
    },
    /// The same camera name was registered twice.
    #[error("camera {camera:?} is registered twice")]
    DuplicateCamera {
        /// The repeated name.
        camera: String,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid motion configuration: {0}")]
    InvalidConfig(String),
    /// The H.264 decoder could not be created.
    #[error("could not create the H.264 decoder: {0}")]
    Decoder(String),
}
