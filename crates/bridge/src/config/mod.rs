//! `hksv-bridge.toml` configuration with `HKSV_*` environment overrides.
//!
//! Precedence, lowest first: defaults → config file → `HKSV_*` environment → command-line
//! flags ([`crate::cli::load_config`]). The reference with every key is `docs/config.md`.
//!
//! ```
//! let config = bridge::config::Config::from_toml_str(
//!     "[[cameras]]\nname = \"Front Door\"\nsource = \"rtsp://cam/s1\"\n",
//! )
//! .unwrap();
//! config.validate().unwrap();
//! assert_eq!(config.cameras[0].port, 51826);
//! assert!(config.state_dir_for(&config.cameras[0]).ends_with("front-door"));
//! ```
//!
//! | module | job |
//! | --- | --- |
//! | this one | the runtime model ([`Config`], [`CameraConfig`], [`HapHostConfig`]), validation, errors |
//! | `file` | the TOML file as serde reads it, resolved into the runtime model (default ports) |
//! | `env` | `HKSV_*` variables and command-line flags ([`Overrides`]) applied over it |

mod env;
mod file;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use hap_server::setup::SetupCode;
use motion::{CameraMotionConfig, MqttConfig};
use serde::Deserialize;

pub use env::Overrides;
use file::{ConfigFile, default_bind, default_max_recording_s, default_source, default_true};

/// HAP port of the first camera; camera `i` defaults to `DEFAULT_HAP_PORT + i`. 51826 is the
/// port HAP-NodeJS/homebridge made customary.
pub const DEFAULT_HAP_PORT: u16 = 51826;
/// Where the HTTP API listens by default: loopback only.
pub const DEFAULT_API_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8280);
/// Default cap on one recording, seconds.
pub const DEFAULT_MAX_RECORDING_S: u32 = 180;
/// Default `live_streams`: two RTP services, so an iPhone and an Apple TV can watch at once.
pub const DEFAULT_LIVE_STREAMS: u8 = 2;
/// Accepted `live_streams`.
pub const LIVE_STREAMS_RANGE: std::ops::RangeInclusive<u8> = 1..=4;
/// Accepted `max_recording_s`. The lower bound leaves room for the 4 s prebuffer plus two
/// 4000 ms fragments (protocol-notes §3.4); the upper bound stops a stuck motion sensor from
/// streaming for hours. Our policy, not a HomeKit rule.
pub const MAX_RECORDING_S_RANGE: RangeInclusive<u32> = 12..=3600;
/// Longest camera name, in characters (HAP `Name` and the mDNS instance name are limited to
/// 64 bytes; names are usually ASCII).
pub const MAX_NAME_CHARS: usize = 64;
/// Name of the demo camera of [`Config::demo`].
pub const DEMO_CAMERA_NAME: &str = "Demo Camera";
/// Default name of the bridge accessory in bridge mode.
pub const DEFAULT_BRIDGE_NAME: &str = "HKSV Bridge";
/// Subdirectory of the state root that holds the bridge accessory's identity and pairings in
/// bridge mode. [`slug`] never yields `_`, so no camera can share it.
pub const BRIDGE_STATE_DIR: &str = "_bridge";
/// Most cameras one bridge may carry: HAP allows 150 accessories per bridge, the bridge itself
/// included (HAP specification R2 §2.5.3.2; HAP-NodeJS enforces the same).
pub const MAX_BRIDGED_CAMERAS: usize = 149;

/// How the cameras are exposed to HomeKit (`mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Each camera is its own HAP accessory with its own port, pairing and mDNS record: one
    /// slow camera cannot stall another, and each is added (and removed) in the Home app on
    /// its own. The default, as Scrypted recommends since iOS 15.5.
    #[default]
    Accessory,
    /// One HAP bridge (AID 1) carries every camera as a bridged accessory (AID 2 and up, kept
    /// per camera name across restarts): one setup code, one port, one mDNS record.
    Bridge,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "accessory" => Ok(Self::Accessory),
            "bridge" => Ok(Self::Bridge),
            other => Err(format!("{other:?} is neither \"accessory\" nor \"bridge\"")),
        }
    }
}

/// The bridge accessory of [`Mode::Bridge`] (`[bridge]`).
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeConfig {
    /// Name in the Home app and mDNS instance name. Default [`DEFAULT_BRIDGE_NAME`].
    pub name: String,
    /// HAP TCP port. Default [`DEFAULT_HAP_PORT`]; 0 = any free port. In bridge mode `HKSV_PORT`
    /// and `--port` set this.
    pub port: u16,
    /// Setup code `XXX-XX-XXX`. Default: generated on first start and kept in
    /// `<state root>/_bridge`. In bridge mode `HKSV_SETUP_CODE` and `--setup-code` set this.
    pub setup_code: Option<SetupCode>,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_BRIDGE_NAME.to_owned(),
            port: DEFAULT_HAP_PORT,
            setup_code: None,
        }
    }
}

/// The HAP accessory server a camera is reached through: its own in [`Mode::Accessory`], the
/// bridge in [`Mode::Bridge`].
#[derive(Debug, Clone, PartialEq)]
pub struct HapHostConfig {
    /// mDNS instance name (the camera's or the bridge's name); in bridge mode also the bridge
    /// accessory's Name.
    pub name: String,
    /// HAP listen address ([`Config::bind`]).
    pub bind: IpAddr,
    /// HAP TCP port (0 = any free port).
    pub port: u16,
    /// Setup code; `None` keeps the persisted one or generates one.
    pub setup_code: Option<SetupCode>,
    /// Where its identity, setup code and pairings are kept.
    pub state_dir: PathBuf,
    /// Advertise over mDNS ([`Config::mdns`]).
    pub mdns: bool,
    /// Whether this is the bridge of [`Mode::Bridge`]: a bridge accessory with AID 1, cameras
    /// from AID 2.
    pub bridge: bool,
}

/// The whole configuration (the file `hksv-bridge.toml`, after overrides).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Root of the per-camera state directories (keys, pairings, recording configuration).
    /// Default: [`default_state_dir`]. Env `HKSV_STATE_DIR`, flag `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// Address the HAP servers of all cameras listen on. Default `0.0.0.0`. Env `HKSV_BIND`,
    /// flag `--bind`.
    pub bind: IpAddr,
    /// Advertise the cameras over mDNS (Bonjour). Default `true`. Flag `--no-mdns`.
    pub mdns: bool,
    /// The HTTP API.
    pub api: ApiConfig,
    /// Motion from an MQTT broker (plain topics, Frigate). Default: off.
    pub mqtt: Option<MqttConfig>,
    /// Accessory mode (default) or bridge mode. Env `HKSV_MODE`.
    pub mode: Mode,
    /// The bridge accessory; used in [`Mode::Bridge`] only.
    pub bridge: BridgeConfig,
    /// The cameras. Default: none in a file; [`Config::demo`] when there is no file.
    pub cameras: Vec<CameraConfig>,
    /// Live-view tuning shared by every camera (`[live]`).
    pub live: LiveSettings,
}

/// Live-view tuning (`[live]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveSettings {
    /// How much faster than real time the frames between the newest keyframe and now are sent
    /// when a viewer starts, within [`CATCH_UP_SPEED_RANGE`]; 0 sends them at once (D17).
    /// Default 4.
    pub catch_up_speed: u32,
    /// A stream ends after this many seconds without an RTCP receiver report from the viewer,
    /// within [`SILENCE_TIMEOUT_S_RANGE`]. Default 30.
    pub silence_timeout_s: u32,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            catch_up_speed: crate::live::DEFAULT_CATCH_UP_SPEED,
            silence_timeout_s: 30,
        }
    }
}

/// Accepted `[live] catch_up_speed`.
pub const CATCH_UP_SPEED_RANGE: RangeInclusive<u32> = 0..=16;
/// Accepted `[live] silence_timeout_s`: iOS reports every 0.5 s; below 5 s a brief Wi-Fi
/// stall would end the stream.
pub const SILENCE_TIMEOUT_S_RANGE: RangeInclusive<u32> = 5..=300;

impl LiveSettings {
    /// The session settings these give.
    pub fn live_config(&self) -> crate::live::LiveConfig {
        crate::live::LiveConfig {
            catch_up_speed: self.catch_up_speed,
            liveness_timeout: std::time::Duration::from_secs(u64::from(self.silence_timeout_s)),
            ..crate::live::LiveConfig::default()
        }
    }
}

/// The HTTP API (`[api]`).
#[derive(Clone, PartialEq)]
pub struct ApiConfig {
    /// Listen address. Default [`DEFAULT_API_LISTEN`] (`127.0.0.1:8280`). Env
    /// `HKSV_API_LISTEN`, flag `--api-listen`.
    pub listen: SocketAddr,
    /// Bearer token every call must carry when set. Default: none. Env `HKSV_API_TOKEN`.
    /// Never printed by `Debug`.
    pub token: Option<String>,
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_API_LISTEN,
            token: None,
        }
    }
}

/// One camera (`[[cameras]]`).
#[derive(Debug, Clone, PartialEq)]
pub struct CameraConfig {
    /// Unique name: the accessory name in the Home app, the URL segment of the HTTP API
    /// (`/api/cameras/{name}/…`, percent-encoded by clients) and the state subdirectory
    /// (see [`slug`]). Required in a file. Env `HKSV_NAME`, flag `--name` (single camera).
    pub name: String,
    /// Where the video comes from (`source` crate syntax: `rtsp://…`, `v4l2://…`, `http(s)://…`,
    /// `tcp://…`, a file, `-`, `exec:…`, `demo:`). Default `"demo:"`. Env `HKSV_SOURCE`, flag
    /// `--source` (single camera).
    pub source: String,
    /// HAP TCP port. Default [`DEFAULT_HAP_PORT`] + the camera's index; 0 = any free port.
    /// Env `HKSV_PORT`, flag `--port` (single camera). Accessory mode only: setting it in
    /// bridge mode is an error.
    pub port: u16,
    /// Setup code `XXX-XX-XXX`. Default: generated on first start and kept in the camera's
    /// state directory. Env `HKSV_SETUP_CODE`, flag `--setup-code` (single camera). Accessory
    /// mode only, like `port`.
    pub setup_code: Option<SetupCode>,
    /// Record audio when the source carries AAC. Default `true`.
    pub audio: bool,
    /// Expose a doorbell (the API's `ring` presses it). Default `false`.
    pub doorbell: bool,
    /// Longest recording, seconds, within [`MAX_RECORDING_S_RANGE`]. Default
    /// [`DEFAULT_MAX_RECORDING_S`].
    pub max_recording_s: u32,
    /// Concurrent live viewers (CameraRTPStreamManagement services), within
    /// [`LIVE_STREAMS_RANGE`]. Default [`DEFAULT_LIVE_STREAMS`] (an iPhone and an Apple TV).
    pub live_streams: u8,
    /// The camera's sub-stream (any source spec), streamed to live viewers that ask for a
    /// width below 640 or 60 ms audio packets; never recorded. Default: none.
    pub live_source: Option<String>,
    /// The stream the built-in motion detector decodes (any source spec), usually the
    /// camera's low-resolution sub-stream; never recorded or streamed. Default: none (the
    /// detector decodes `source`).
    pub detect_source: Option<String>,
    /// Motion debounce and the built-in detector. Defaults: see [`CameraMotionConfig`].
    pub motion: CameraMotionConfig,
}

impl CameraConfig {
    /// A camera with every optional setting at its default.
    pub fn new(name: impl Into<String>, source: impl Into<String>, port: u16) -> Self {
        Self {
            name: name.into(),
            source: source.into(),
            port,
            setup_code: None,
            audio: default_true(),
            doorbell: false,
            max_recording_s: default_max_recording_s(),
            live_streams: DEFAULT_LIVE_STREAMS,
            live_source: None,
            detect_source: None,
            motion: CameraMotionConfig::default(),
        }
    }

    /// `("source", source)` and, when set, `("live_source", …)` and `("detect_source", …)`:
    /// key and spec.
    pub fn sources(&self) -> impl Iterator<Item = (&'static str, &str)> {
        std::iter::once(("source", self.source.as_str()))
            .chain(self.live_source.as_deref().map(|s| ("live_source", s)))
            .chain(self.detect_source.as_deref().map(|s| ("detect_source", s)))
    }
}

/// The default index-based HAP port of camera `index`, saturating at 65535.
pub fn default_port_for(index: usize) -> u16 {
    u16::try_from(index)
        .ok()
        .and_then(|i| DEFAULT_HAP_PORT.checked_add(i))
        .unwrap_or(u16::MAX)
}

/// Why a configuration was refused. Messages name the key and the camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The file is not valid TOML or has an unknown key or a bad value.
    Parse(String),
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        reason: String,
    },
    /// No `[[cameras]]`.
    NoCameras,
    /// Two cameras with the same name, or names that map to the same state directory.
    DuplicateName {
        /// The second name.
        name: String,
        /// The camera it collides with.
        other: String,
    },
    /// Two cameras on the same (non-zero) HAP port.
    DuplicatePort {
        /// The port.
        port: u16,
        /// The second camera.
        camera: String,
        /// The camera it collides with.
        other: String,
    },
    /// A name that is empty, too long, has control characters or `/`, or surrounding spaces.
    BadName {
        /// The name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A setup code that [`SetupCode::parse`] refuses.
    BadSetupCode(String),
    /// `max_recording_s` outside [`MAX_RECORDING_S_RANGE`].
    MaxRecording {
        /// The camera.
        camera: String,
        /// The value.
        value: u32,
    },
    /// An MQTT mapping names a camera that is not configured.
    UnknownMqttCamera(String),
    /// Another invalid value (motion detector, empty token, …).
    Invalid(String),
    /// An `HKSV_*` variable or flag that does not parse.
    Override {
        /// `HKSV_PORT`, `--port`, …
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Parse(e) => write!(f, "invalid configuration: {e}"),
            Self::Read { path, reason } => write!(f, "cannot read {}: {reason}", path.display()),
            Self::NoCameras => f.write_str("no cameras configured: add a [[cameras]] section"),
            Self::DuplicateName { name, other } if name == other => {
                write!(f, "camera name {name:?} is used twice")
            }
            Self::DuplicateName { name, other } => write!(
                f,
                "cameras {other:?} and {name:?} would share the state directory {:?}: rename one",
                slug(name)
            ),
            Self::DuplicatePort {
                port,
                camera,
                other,
            } => write!(
                f,
                "cameras {other:?} and {camera:?} both use HAP port {port}: give each its own port"
            ),
            Self::BadName { name, reason } => write!(f, "camera name {name:?}: {reason}"),
            Self::BadSetupCode(e) => write!(f, "setup code: {e}"),
            Self::MaxRecording { camera, value } => write!(
                f,
                "camera {camera:?}: max_recording_s = {value} is outside {}–{}",
                MAX_RECORDING_S_RANGE.start(),
                MAX_RECORDING_S_RANGE.end()
            ),
            Self::UnknownMqttCamera(c) => {
                write!(
                    f,
                    "mqtt: mapping names camera {c:?}, which is not configured"
                )
            }
            Self::Invalid(e) => f.write_str(e),
            Self::Override { key, reason } => write!(f, "{key}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The filesystem-safe, stable directory name of a camera: the name lower-cased, every run of
/// characters other than letters and digits replaced by one `-`, leading and trailing `-`
/// removed. `"Front Door"` → `front-door`, `"Garage #2"` → `garage-2`. It only depends on the
/// name, so renaming a camera starts it afresh (new identity, new pairing).
pub fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.chars() {
        if c.is_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.extend(c.to_lowercase());
        } else {
            dash = true;
        }
    }
    out
}

/// `$XDG_STATE_HOME/hksv-bridge`, else `$HOME/.local/state/hksv-bridge` (XDG base directory
/// spec), else `./hksv-bridge-state`.
pub fn default_state_dir() -> PathBuf {
    default_state_dir_from(&|k| std::env::var_os(k).and_then(|v| v.into_string().ok()))
}

/// [`default_state_dir`] with the environment lookup injected (for tests).
pub fn default_state_dir_from(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(x) = env("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("hksv-bridge");
    }
    if let Some(h) = env("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/state/hksv-bridge");
    }
    PathBuf::from("hksv-bridge-state")
}

fn check_name(name: &str) -> Result<(), ConfigError> {
    let bad = |reason| {
        Err(ConfigError::BadName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.trim().is_empty() {
        return bad("must not be empty");
    }
    if name.trim() != name {
        return bad("must not start or end with spaces");
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return bad("longer than 64 characters");
    }
    if name.chars().any(char::is_control) {
        return bad("must not contain control characters");
    }
    // Decoded `%2F` would still split the API path at many proxies.
    if name.contains(['/', '\\']) {
        return bad("must not contain / or \\ (it is a URL path segment)");
    }
    if slug(name).is_empty() {
        return bad("needs at least one letter or digit");
    }
    Ok(())
}

impl Config {
    /// The configuration used without a file: one camera [`DEMO_CAMERA_NAME`] on `demo:` (the
    /// bundled clip), port [`DEFAULT_HAP_PORT`], the built-in detector off (motion from the
    /// API or `--demo-motion-ms`), everything else at its default.
    pub fn demo() -> Self {
        let mut demo_camera =
            CameraConfig::new(DEMO_CAMERA_NAME, default_source(), DEFAULT_HAP_PORT);
        // The bundled clip loops every ~12 s and the detector sees the cut as motion, so a
        // paired demo would record almost all the time: its motion comes from the API
        // (`POST /api/cameras/Demo%20Camera/motion`) or `--demo-motion-ms` instead.
        demo_camera.motion.detector.enabled = Some(false);
        Self {
            state_dir: None,
            bind: default_bind(),
            mdns: true,
            api: ApiConfig::default(),
            mqtt: None,
            mode: Mode::Accessory,
            bridge: BridgeConfig::default(),
            cameras: vec![demo_camera],
            live: LiveSettings::default(),
        }
    }

    /// Parses a TOML document (unknown keys are errors). Does not [`validate`](Self::validate).
    ///
    /// # Errors
    /// [`ConfigError::Parse`] with the TOML error (line, column, key).
    pub fn from_toml_str(s: &str) -> Result<Self, ConfigError> {
        toml::from_str::<ConfigFile>(s)
            .map_err(|e| ConfigError::Parse(e.to_string()))?
            .try_into()
    }

    /// Reads and parses `path`. Does not [`validate`](Self::validate).
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`] (naming the file).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::from_toml_str(&text).map_err(|e| match e {
            ConfigError::Parse(e) => ConfigError::Parse(format!("{}: {e}", path.display())),
            other => other,
        })
    }

    /// The root state directory: `state_dir` or [`default_state_dir`].
    pub fn state_root(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(default_state_dir)
    }

    /// The camera's own state directory: `<state root>/<slug(name)>` (see [`slug`]).
    pub fn state_dir_for(&self, camera: &CameraConfig) -> PathBuf {
        self.state_root().join(slug(&camera.name))
    }

    /// The HAP accessory server that serves `camera` (see [`HapHostConfig`]).
    pub fn hap_host_for(&self, camera: &CameraConfig) -> HapHostConfig {
        match self.mode {
            Mode::Accessory => HapHostConfig {
                name: camera.name.clone(),
                bind: self.bind,
                mdns: self.mdns,
                port: camera.port,
                setup_code: camera.setup_code.clone(),
                state_dir: self.state_dir_for(camera),
                bridge: false,
            },
            Mode::Bridge => self.bridge_host(),
        }
    }

    /// The bridge's HAP server (meaningful in [`Mode::Bridge`]): `[bridge]` settings, state
    /// in `<state root>/`[`BRIDGE_STATE_DIR`].
    pub fn bridge_host(&self) -> HapHostConfig {
        HapHostConfig {
            name: self.bridge.name.clone(),
            bind: self.bind,
            mdns: self.mdns,
            port: self.bridge.port,
            setup_code: self.bridge.setup_code.clone(),
            state_dir: self.state_root().join(BRIDGE_STATE_DIR),
            bridge: true,
        }
    }

    /// Every HAP server with the cameras it serves, in configuration order.
    pub fn hap_hosts(&self) -> Vec<(HapHostConfig, Vec<&CameraConfig>)> {
        match self.mode {
            Mode::Accessory => self
                .cameras
                .iter()
                .map(|c| (self.hap_host_for(c), vec![c]))
                .collect(),
            Mode::Bridge => vec![(self.bridge_host(), self.cameras.iter().collect())],
        }
    }

    /// What `run` checks before it serves anything: every camera's `source`, `live_source` and `detect_source`
    /// parse and pass [`source::SourceSpec::preflight`] (a scheme this build serves, an existing
    /// file or device). A camera that can never record is refused at start rather than paired.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the camera and the key.
    pub fn preflight_sources(&self) -> Result<(), ConfigError> {
        for c in &self.cameras {
            for (key, spec) in c.sources() {
                spec.parse::<source::SourceSpec>()
                    .and_then(|s| s.preflight())
                    .map_err(|e| {
                        ConfigError::Invalid(format!("camera {:?}: {key}: {e}", c.name))
                    })?;
            }
        }
        Ok(())
    }

    /// The camera called `name`.
    pub fn camera(&self, name: &str) -> Option<&CameraConfig> {
        self.cameras.iter().find(|c| c.name == name)
    }

    /// Checks everything that can be checked without running: at least one camera, names
    /// usable in URLs and unique (also as state directories), distinct non-zero ports,
    /// `max_recording_s` bounds, motion detector settings, MQTT mappings naming configured
    /// cameras, a non-empty API token.
    ///
    /// # Errors
    /// The first problem found, as a [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cameras.is_empty() {
            return Err(ConfigError::NoCameras);
        }
        let mut names: HashSet<&str> = HashSet::new();
        let mut slugs: HashMap<String, &str> = HashMap::new();
        let mut ports: HashMap<u16, &str> = HashMap::new();
        for c in &self.cameras {
            check_name(&c.name)?;
            if !names.insert(&c.name) {
                return Err(ConfigError::DuplicateName {
                    name: c.name.clone(),
                    other: c.name.clone(),
                });
            }
            if let Some(other) = slugs.insert(slug(&c.name), &c.name) {
                return Err(ConfigError::DuplicateName {
                    name: c.name.clone(),
                    other: other.to_owned(),
                });
            }
            let own_port = self.mode == Mode::Accessory && c.port != 0;
            if let Some(other) = own_port.then(|| ports.insert(c.port, &c.name)).flatten() {
                return Err(ConfigError::DuplicatePort {
                    port: c.port,
                    camera: c.name.clone(),
                    other: other.to_owned(),
                });
            }
            if !MAX_RECORDING_S_RANGE.contains(&c.max_recording_s) {
                return Err(ConfigError::MaxRecording {
                    camera: c.name.clone(),
                    value: c.max_recording_s,
                });
            }
            if !LIVE_STREAMS_RANGE.contains(&c.live_streams) {
                return Err(ConfigError::Invalid(format!(
                    "camera {:?}: live_streams = {} is outside {}–{}",
                    c.name,
                    c.live_streams,
                    LIVE_STREAMS_RANGE.start(),
                    LIVE_STREAMS_RANGE.end()
                )));
            }
            for (key, value) in [
                ("live_source", &c.live_source),
                ("detect_source", &c.detect_source),
            ] {
                if value.as_ref().is_some_and(|s| s.trim().is_empty()) {
                    return Err(ConfigError::Invalid(format!(
                        "camera {:?}: {key} is empty (leave it out to use the main stream)",
                        c.name
                    )));
                }
            }
            if c.source.trim().is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "camera {:?}: source is empty",
                    c.name
                )));
            }
            for (key, spec) in c.sources() {
                spec.parse::<source::SourceSpec>().map_err(|e| {
                    ConfigError::Invalid(format!("camera {:?}: {key}: {e}", c.name))
                })?;
            }
            c.motion
                .detector
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("camera {:?}: motion: {e}", c.name)))?;
        }
        if !CATCH_UP_SPEED_RANGE.contains(&self.live.catch_up_speed) {
            return Err(ConfigError::Invalid(format!(
                "[live] catch_up_speed = {} is outside {}–{}",
                self.live.catch_up_speed,
                CATCH_UP_SPEED_RANGE.start(),
                CATCH_UP_SPEED_RANGE.end()
            )));
        }
        if !SILENCE_TIMEOUT_S_RANGE.contains(&self.live.silence_timeout_s) {
            return Err(ConfigError::Invalid(format!(
                "[live] silence_timeout_s = {} is outside {}–{}",
                self.live.silence_timeout_s,
                SILENCE_TIMEOUT_S_RANGE.start(),
                SILENCE_TIMEOUT_S_RANGE.end()
            )));
        }
        if self.mode == Mode::Bridge {
            check_name(&self.bridge.name).map_err(|e| match e {
                ConfigError::BadName { name, reason } => {
                    ConfigError::Invalid(format!("bridge name {name:?}: {reason}"))
                }
                other => other,
            })?;
            if self.cameras.len() > MAX_BRIDGED_CAMERAS {
                return Err(ConfigError::Invalid(format!(
                    "{} cameras: a HomeKit bridge carries at most {MAX_BRIDGED_CAMERAS}; use mode = \"accessory\"",
                    self.cameras.len()
                )));
            }
        }
        if let Some(m) = &self.mqtt {
            let mapped = m
                .topics
                .iter()
                .map(|t| &t.camera)
                .chain(m.frigate.iter().flat_map(|f| f.cameras.values()));
            for camera in mapped {
                if !names.contains(camera.as_str()) {
                    return Err(ConfigError::UnknownMqttCamera(camera.clone()));
                }
            }
        }
        if self
            .api
            .token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(ConfigError::Invalid("api.token is empty".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const FULL: &str = r#"
state_dir = "/var/lib/hksv-bridge"
bind = "192.168.1.10"
mdns = false

[api]
listen = "0.0.0.0:9000"
token = "s3cret-token"

[mqtt]
host = "broker.lan"
[[mqtt.topics]]
topic = "cams/front/motion"
camera = "Front Door"
[mqtt.frigate]
cameras = { front_cam = "Front Door", garage = "Garage" }

[[cameras]]
name = "Front Door"
source = "rtsp://user:pass@cam/s1"
port = 51900
setup_code = "031-45-154"
audio = false
doorbell = true
max_recording_s = 60
live_source = "rtsp://user:pass@cam/s2"
detect_source = "rtsp://user:pass@cam/s3"
motion = { debounce = { min_on_ms = 2000 }, detector = { sensitivity = 80 }, external = true }

[[cameras]]
name = "Garage"
"#;

    #[test]
    fn full_example_parses_every_key() {
        let c = Config::from_toml_str(FULL).unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.state_dir.as_deref(),
            Some(Path::new("/var/lib/hksv-bridge"))
        );
        assert_eq!(c.bind, "192.168.1.10".parse::<IpAddr>().unwrap());
        assert!(!c.mdns);
        assert_eq!(c.api.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.api.token.as_deref(), Some("s3cret-token"));
        let m = c.mqtt.as_ref().unwrap();
        assert_eq!(m.host, "broker.lan");
        assert_eq!(m.topics[0].camera, "Front Door");
        let f = &c.cameras[0];
        assert_eq!(
            (f.name.as_str(), f.source.as_str(), f.port),
            ("Front Door", "rtsp://user:pass@cam/s1", 51900)
        );
        assert_eq!(f.setup_code.as_ref().unwrap().as_str(), "031-45-154");
        assert!(!f.audio && f.doorbell);
        assert_eq!(f.max_recording_s, 60);
        assert_eq!(f.live_source.as_deref(), Some("rtsp://user:pass@cam/s2"));
        assert_eq!(f.motion.debounce.min_on_ms, 2000);
        assert_eq!(f.motion.detector.sensitivity, 80);
        assert_eq!(f.detect_source.as_deref(), Some("rtsp://user:pass@cam/s3"));
        assert!(f.motion.external);
        // The second camera is at index 1: default port 51826 + 1, other defaults.
        let g = &c.cameras[1];
        assert_eq!((g.source.as_str(), g.port), ("demo:", 51827));
        assert!(g.audio && !g.doorbell && g.setup_code.is_none());
        assert_eq!(g.max_recording_s, DEFAULT_MAX_RECORDING_S);
        assert!(g.live_source.is_none() && g.detect_source.is_none());
        assert_eq!(
            c.state_dir_for(g),
            Path::new("/var/lib/hksv-bridge").join("garage")
        );
    }

    #[test]
    fn the_repository_example_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hksv-bridge.example.toml");
        let c = Config::from_file(&path).unwrap();
        c.validate().unwrap();
        assert!(!c.cameras.is_empty());
    }

    #[test]
    fn defaults_of_a_minimal_file() {
        let c = Config::from_toml_str("[[cameras]]\nname = \"a\"\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert!(c.mdns);
        assert_eq!(c.api.listen, DEFAULT_API_LISTEN);
        assert!(c.api.token.is_none() && c.mqtt.is_none() && c.state_dir.is_none());
        assert_eq!(c.cameras[0], CameraConfig::new("a", "demo:", 51826));
        // An [api] table without listen keeps the default address.
        let c = Config::from_toml_str("[api]\ntoken = \"t\"\n[[cameras]]\nname = \"a\"\n").unwrap();
        assert_eq!(c.api.listen, DEFAULT_API_LISTEN);
    }

    #[test]
    fn live_settings_parse_default_and_are_bounded() {
        let c = Config::from_toml_str("[[cameras]]\nname = \"a\"\n").unwrap();
        assert_eq!(c.live, LiveSettings::default());
        assert_eq!(c.live.live_config().catch_up_speed, 4);
        assert_eq!(
            c.live.live_config().liveness_timeout,
            std::time::Duration::from_secs(30)
        );
        let c = Config::from_toml_str(
            "[live]\ncatch_up_speed = 0\nsilence_timeout_s = 10\n[[cameras]]\nname = \"a\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.live.live_config().catch_up_speed, 0);
        assert_eq!(
            c.live.live_config().liveness_timeout,
            std::time::Duration::from_secs(10)
        );
        for bad in [
            "catch_up_speed = 17",
            "silence_timeout_s = 2",
            "silence_timeout_s = 301",
        ] {
            let c = Config::from_toml_str(&format!("[live]\n{bad}\n[[cameras]]\nname = \"a\"\n"))
                .unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("[live]"), "{bad}: {e}");
        }
        let e =
            Config::from_toml_str("[live]\nspeed = 1\n[[cameras]]\nname = \"a\"\n").unwrap_err();
        assert!(e.to_string().contains("speed"), "{e}");
    }

    #[test]
    fn demo_is_valid_and_has_one_camera() {
        let d = Config::demo();
        d.validate().unwrap();
        assert!(
            d.cameras[0].motion.detector.enabled == Some(false),
            "the looped clip's cut is not motion"
        );
        assert_eq!(d.cameras.len(), 1);
        assert_eq!(
            (
                d.cameras[0].name.as_str(),
                d.cameras[0].source.as_str(),
                d.cameras[0].port
            ),
            (DEMO_CAMERA_NAME, "demo:", DEFAULT_HAP_PORT)
        );
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let e = Config::from_toml_str("[[cameras]]\nname = \"a\"\nprot = 1\n").unwrap_err();
        assert!(e.to_string().contains("prot"), "{e}");
        let e = Config::from_toml_str("colour = 1\n").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = Config::from_toml_str("[[cameras]]\nsource = \"demo:\"\n").unwrap_err();
        assert!(e.to_string().contains("name"), "{e}");
        for bad in ["123-45-678", "111-11-111", "1234"] {
            let e = Config::from_toml_str(&format!(
                "[[cameras]]\nname = \"a\"\nsetup_code = \"{bad}\"\n"
            ))
            .unwrap_err();
            assert!(e.to_string().contains("setup_code"), "{bad}: {e}");
        }
        let e = Config::from_toml_str("bind = \"not-an-ip\"\n").unwrap_err();
        assert!(e.to_string().contains("bind"), "{e}");
    }

    fn two(a: &str, b: &str) -> Config {
        let mut c = Config::demo();
        c.cameras = vec![
            CameraConfig::new(a, "demo:", 1),
            CameraConfig::new(b, "demo:", 2),
        ];
        c
    }

    #[test]
    fn validation_errors() {
        let mut c = Config::demo();
        c.cameras.clear();
        assert_eq!(c.validate(), Err(ConfigError::NoCameras));

        assert!(matches!(
            two("Front", "Front").validate(),
            Err(ConfigError::DuplicateName { .. })
        ));
        // Distinct names, same state directory.
        let e = two("Front Door", "front-door").validate().unwrap_err();
        assert!(e.to_string().contains("front-door"), "{e}");

        let mut c = two("a", "b");
        c.cameras[1].port = 1;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::DuplicatePort { port: 1, .. })
        ));
        // Port 0 (any free port) may repeat.
        c.cameras[0].port = 0;
        c.cameras[1].port = 0;
        c.validate().unwrap();

        for bad in ["", " x", "a/b", "a\\b", "tab\tname", "!!!", &"x".repeat(65)] {
            assert!(
                matches!(two(bad, "ok").validate(), Err(ConfigError::BadName { .. })),
                "{bad:?}"
            );
        }
        // Spaces, Unicode and # are fine: clients percent-encode them.
        two("Haustür #2", "Front Door").validate().unwrap();

        for (v, ok) in [(11, false), (12, true), (3600, true), (3601, false)] {
            let mut c = Config::demo();
            c.cameras[0].max_recording_s = v;
            assert_eq!(c.validate().is_ok(), ok, "{v}");
        }

        let mut c = Config::demo();
        c.cameras[0].motion.detector.sensitivity = 101;
        assert!(matches!(c.validate(), Err(ConfigError::Invalid(_))));

        let mut c = Config::demo();
        c.api.token = Some(" ".into());
        assert!(matches!(c.validate(), Err(ConfigError::Invalid(_))));

        for (empty, bad_spec) in [("live_source", "ftp://x"), ("detect_source", "bogus://x")] {
            let mut c = Config::demo();
            let set = |c: &mut Config, v: &str| match empty {
                "live_source" => c.cameras[0].live_source = Some(v.into()),
                _ => c.cameras[0].detect_source = Some(v.into()),
            };
            set(&mut c, " ");
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(empty) && e.contains("empty"), "{e}");
            set(&mut c, bad_spec);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(empty), "{e}");
        }
    }

    #[test]
    fn mqtt_mappings_must_name_configured_cameras() {
        let text = "[mqtt]\n[[mqtt.topics]]\ntopic = \"x\"\ncamera = \"Nope\"\n[[cameras]]\nname = \"a\"\n";
        let e = Config::from_toml_str(text).unwrap().validate().unwrap_err();
        assert_eq!(e, ConfigError::UnknownMqttCamera("Nope".into()));
        assert!(e.to_string().contains("\"Nope\""));
        let text = "[mqtt.frigate]\ncameras = { f = \"Ghost\" }\n[[cameras]]\nname = \"a\"\n";
        let e = Config::from_toml_str(text).unwrap().validate().unwrap_err();
        assert_eq!(e, ConfigError::UnknownMqttCamera("Ghost".into()));
        let text = "[mqtt.frigate]\ncameras = { f = \"a\" }\n[[cameras]]\nname = \"a\"\n";
        Config::from_toml_str(text).unwrap().validate().unwrap();
    }

    #[test]
    fn env_overrides() {
        let mut c = Config::demo();
        c.apply_env(&env_of(&[
            ("HKSV_STATE_DIR", "/srv/state"),
            ("HKSV_BIND", "127.0.0.1"),
            ("HKSV_API_LISTEN", "127.0.0.1:1234"),
            ("HKSV_API_TOKEN", "tok"),
            ("HKSV_NAME", "Porch"),
            ("HKSV_SOURCE", "rtsp://cam/1"),
            ("HKSV_PORT", "0"),
            ("HKSV_SETUP_CODE", "03145154"),
            ("HKSV_UNRELATED", "x"),
        ]))
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.state_dir.as_deref(), Some(Path::new("/srv/state")));
        assert_eq!(c.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(c.api.listen.port(), 1234);
        assert_eq!(c.api.token.as_deref(), Some("tok"));
        let cam = &c.cameras[0];
        assert_eq!(
            (cam.name.as_str(), cam.source.as_str(), cam.port),
            ("Porch", "rtsp://cam/1", 0)
        );
        assert_eq!(cam.setup_code.as_ref().unwrap().as_str(), "031-45-154");
        assert_eq!(c.state_dir_for(cam), Path::new("/srv/state/porch"));

        // Empty variables are ignored; no variables change nothing.
        let mut d = Config::demo();
        d.apply_env(&env_of(&[("HKSV_PORT", "")])).unwrap();
        assert_eq!(d, Config::demo());
    }

    #[test]
    fn env_override_errors() {
        for (k, v) in [
            ("HKSV_PORT", "70000"),
            ("HKSV_BIND", "nowhere"),
            ("HKSV_API_LISTEN", "8280"),
            ("HKSV_SETUP_CODE", "123-45-678"),
        ] {
            let e = Config::demo().apply_env(&env_of(&[(k, v)])).unwrap_err();
            assert!(e.to_string().starts_with(k), "{e}");
        }
        // Single-camera variables are refused when several cameras are configured.
        let e = two("a", "b")
            .apply_env(&env_of(&[("HKSV_PORT", "1")]))
            .unwrap_err();
        assert!(e.to_string().contains("single camera"), "{e}");
    }

    #[test]
    fn slugs_are_stable_and_safe() {
        assert_eq!(slug("Front Door"), "front-door");
        assert_eq!(slug("  Garage  #2 "), "garage-2");
        assert_eq!(slug("Haustür"), "haustür");
        assert_eq!(slug("../../etc"), "etc");
        assert_eq!(slug("///"), "");
    }

    #[test]
    fn default_state_dir_follows_xdg() {
        assert_eq!(
            default_state_dir_from(&env_of(&[("XDG_STATE_HOME", "/x"), ("HOME", "/h")])),
            Path::new("/x/hksv-bridge")
        );
        assert_eq!(
            default_state_dir_from(&env_of(&[("XDG_STATE_HOME", ""), ("HOME", "/h")])),
            Path::new("/h/.local/state/hksv-bridge")
        );
        assert_eq!(
            default_state_dir_from(&env_of(&[])),
            Path::new("hksv-bridge-state")
        );
    }

    #[test]
    fn debug_hides_the_token_and_setup_code() {
        let c = Config::from_toml_str(FULL).unwrap();
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("s3cret-token") && !dbg.contains("031-45-154"),
            "{dbg}"
        );
    }

    #[test]
    fn bridge_mode_from_the_file() {
        let c = Config::from_toml_str(
            "mode = \"bridge\"\nstate_dir = \"/s\"\n[bridge]\nname = \"Yard Bridge\"\nport = 5000\nsetup_code = \"031-45-154\"\n\
             [[cameras]]\nname = \"Porch\"\n[[cameras]]\nname = \"Garage\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.mode, Mode::Bridge);
        let hosts = c.hap_hosts();
        assert_eq!(hosts.len(), 1, "one HAP server for every camera");
        let (host, cams) = &hosts[0];
        assert_eq!(
            (host.name.as_str(), host.port, host.bridge),
            ("Yard Bridge", 5000, true)
        );
        assert_eq!(host.state_dir, Path::new("/s").join(BRIDGE_STATE_DIR));
        assert_eq!(
            host.setup_code.as_ref().map(SetupCode::as_str),
            Some("031-45-154")
        );
        let names: Vec<_> = cams.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Porch", "Garage"]);
        // Camera state stays per camera.
        assert_eq!(c.state_dir_for(cams[1]), Path::new("/s/garage"));

        let d = Config::from_toml_str("mode = \"bridge\"\n[[cameras]]\nname = \"A\"\n").unwrap();
        assert_eq!(d.bridge, BridgeConfig::default());
        assert_eq!(d.bridge_host().port, DEFAULT_HAP_PORT);

        let a = Config::from_toml_str("[[cameras]]\nname = \"A\"\n[[cameras]]\nname = \"B\"\n")
            .unwrap();
        let hosts = a.hap_hosts();
        assert_eq!(hosts.len(), 2, "accessory mode: one HAP server per camera");
        assert_eq!(hosts[1].0.port, DEFAULT_HAP_PORT + 1);
        assert!(!hosts[1].0.bridge);
    }

    #[test]
    fn bridge_mode_refuses_settings_that_would_be_ignored() {
        let e =
            Config::from_toml_str("mode = \"bridge\"\n[[cameras]]\nname = \"A\"\nport = 5001\n")
                .unwrap_err();
        assert!(e.to_string().contains("[bridge]"), "{e}");
        let e = Config::from_toml_str(
            "mode = \"bridge\"\n[[cameras]]\nname = \"A\"\nsetup_code = \"031-45-154\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("[bridge]"), "{e}");
        let e =
            Config::from_toml_str("[bridge]\nport = 1\n[[cameras]]\nname = \"A\"\n").unwrap_err();
        assert!(e.to_string().contains("mode"), "{e}");
        let e = Config::from_toml_str("mode = \"hub\"\n").unwrap_err();
        assert!(e.to_string().contains("mode"), "{e}");

        let mut many = Config::demo();
        many.mode = Mode::Bridge;
        many.cameras = (0..=MAX_BRIDGED_CAMERAS)
            .map(|i| CameraConfig::new(format!("Cam {i}"), "demo:", 0))
            .collect();
        assert!(matches!(many.validate(), Err(ConfigError::Invalid(_))));
        many.cameras.pop();
        many.validate().unwrap();

        let mut bad_name = Config::demo();
        bad_name.mode = Mode::Bridge;
        bad_name.bridge.name = " ".into();
        assert!(
            bad_name
                .validate()
                .unwrap_err()
                .to_string()
                .contains("bridge name")
        );
    }

    #[test]
    fn bridge_mode_ports_do_not_collide_and_overrides_set_the_bridge() {
        // Same camera ports are fine in bridge mode: cameras have no port of their own.
        let mut c = two("Front", "Back");
        c.cameras[1].port = c.cameras[0].port;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::DuplicatePort { .. })
        ));
        c.apply_env(&env_of(&[
            ("HKSV_MODE", "bridge"),
            ("HKSV_PORT", "6000"),
            ("HKSV_SETUP_CODE", "031-45-154"),
        ]))
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.mode, Mode::Bridge);
        assert_eq!(
            c.bridge.port, 6000,
            "HKSV_PORT is the bridge's port with two cameras"
        );
        assert!(c.bridge.setup_code.is_some());
        assert!(c.apply_env(&env_of(&[("HKSV_MODE", "both")])).is_err());
    }
}
