//! `hksv-bridge.toml` as serde reads it (unknown keys are errors; ports still unresolved), and
//! its resolution into the runtime model ([`Config`]). Key reference: `docs/config.md`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use hap_server::setup::SetupCode;
use motion::{CameraMotionConfig, MqttConfig};
use serde::{Deserialize, Deserializer};

use super::*;

// ---- the file as serde sees it (ports still unresolved) ----

/// Top level of `hksv-bridge.toml`; defaults are on [`Config`]'s fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    #[serde(default)]
    state_dir: Option<PathBuf>,
    #[serde(default = "default_bind")]
    bind: IpAddr,
    #[serde(default = "default_true")]
    mdns: bool,
    #[serde(default)]
    api: ApiFile,
    #[serde(default)]
    mqtt: Option<MqttConfig>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    bridge: Option<BridgeFile>,
    #[serde(default)]
    cameras: Vec<CameraFile>,
    #[serde(default)]
    live: LiveSettings,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BridgeFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default, deserialize_with = "deserialize_setup_code")]
    setup_code: Option<SetupCode>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiFile {
    #[serde(default = "default_api_listen")]
    listen: Option<SocketAddr>,
    #[serde(default)]
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CameraFile {
    name: String,
    #[serde(default = "default_source")]
    source: String,
    /// `None`: [`DEFAULT_HAP_PORT`] + index, resolved once the index is known.
    #[serde(default)]
    port: Option<u16>,
    #[serde(default, deserialize_with = "deserialize_setup_code")]
    setup_code: Option<SetupCode>,
    #[serde(default = "default_true")]
    audio: bool,
    #[serde(default)]
    doorbell: bool,
    #[serde(default = "default_max_recording_s")]
    max_recording_s: u32,
    #[serde(default = "default_live_streams")]
    live_streams: u8,
    #[serde(default)]
    live_source: Option<String>,
    #[serde(default)]
    detect_source: Option<String>,
    #[serde(default)]
    motion: CameraMotionConfig,
}

pub(super) fn default_bind() -> IpAddr {
    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}
pub(super) fn default_true() -> bool {
    true
}
pub(super) fn default_api_listen() -> Option<SocketAddr> {
    Some(DEFAULT_API_LISTEN)
}
pub(super) fn default_source() -> String {
    "demo:".to_owned()
}
pub(super) fn default_max_recording_s() -> u32 {
    DEFAULT_MAX_RECORDING_S
}
pub(super) fn default_live_streams() -> u8 {
    super::DEFAULT_LIVE_STREAMS
}

fn deserialize_setup_code<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SetupCode>, D::Error> {
    let s = String::deserialize(d)?;
    SetupCode::parse(&s)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("setup_code: {e}")))
}

impl TryFrom<ConfigFile> for Config {
    type Error = ConfigError;

    fn try_from(f: ConfigFile) -> Result<Self, ConfigError> {
        match f.mode {
            Mode::Accessory if f.bridge.is_some() => {
                return Err(ConfigError::Invalid(
                    "[bridge] is only used with mode = \"bridge\"".into(),
                ));
            }
            Mode::Bridge => {
                // Silently ignoring a camera's own port or code would leave the user scanning a
                // code that never works.
                if let Some(c) = f
                    .cameras
                    .iter()
                    .find(|c| c.port.is_some() || c.setup_code.is_some())
                {
                    return Err(ConfigError::Invalid(format!(
                        "camera {:?}: port and setup_code belong in [bridge] when mode = \"bridge\"",
                        c.name
                    )));
                }
            }
            Mode::Accessory => {}
        }
        let cameras = f
            .cameras
            .into_iter()
            .enumerate()
            .map(|(i, c)| CameraConfig {
                port: c.port.unwrap_or_else(|| default_port_for(i)),
                name: c.name,
                source: c.source,
                setup_code: c.setup_code,
                audio: c.audio,
                doorbell: c.doorbell,
                max_recording_s: c.max_recording_s,
                live_streams: c.live_streams,
                live_source: c.live_source,
                detect_source: c.detect_source,
                motion: c.motion,
            })
            .collect();
        let bridge = f
            .bridge
            .map_or_else(BridgeConfig::default, |b| BridgeConfig {
                name: b.name.unwrap_or_else(|| DEFAULT_BRIDGE_NAME.to_owned()),
                port: b.port.unwrap_or(DEFAULT_HAP_PORT),
                setup_code: b.setup_code,
            });
        Ok(Self {
            state_dir: f.state_dir,
            bind: f.bind,
            mdns: f.mdns,
            api: ApiConfig {
                listen: f.api.listen.unwrap_or(DEFAULT_API_LISTEN),
                token: f.api.token,
            },
            mqtt: f.mqtt,
            mode: f.mode,
            bridge,
            cameras,
            live: f.live,
        })
    }
}
