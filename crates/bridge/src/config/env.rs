//! Overrides of the file: `HKSV_*` environment variables and command-line flags.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use hap_server::setup::SetupCode;

use super::{Config, ConfigError, Mode};

/// A boolean as people write it in an environment file; errors name `key`.
fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Override {
            key: key.into(),
            reason: format!("{v:?} is not a boolean (1/0, true/false, yes/no, on/off)"),
        }),
    }
}

impl Config {
    /// Applies the `HKSV_*` variables that `env` returns (`std::env::var` in the binary):
    /// `HKSV_STATE_DIR`, `HKSV_BIND`, `HKSV_API_LISTEN`, `HKSV_API_TOKEN`, `HKSV_MODE`,
    /// `HKSV_NO_MDNS` (1/0, true/false, yes/no, on/off), and with
    /// exactly one camera `HKSV_NAME`, `HKSV_SOURCE`, `HKSV_PORT`, `HKSV_SETUP_CODE` (the last
    /// two set the bridge's in bridge mode). Empty values are ignored. (`HKSV_CONFIG` picks the file; see [`crate::cli::load_config`].)
    ///
    /// # Errors
    /// [`ConfigError::Override`] for a value that does not parse, or a single-camera variable
    /// with several cameras configured.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        let mut o = Overrides {
            state_dir: get("HKSV_STATE_DIR").map(PathBuf::from),
            api_token: get("HKSV_API_TOKEN"),
            name: get("HKSV_NAME").map(|v| ("HKSV_NAME", v)),
            source: get("HKSV_SOURCE").map(|v| ("HKSV_SOURCE", v)),
            ..Overrides::default()
        };
        if let Some(v) = get("HKSV_BIND") {
            o.bind = Some(parse_override("HKSV_BIND", &v)?);
        }
        if let Some(v) = get("HKSV_API_LISTEN") {
            o.api_listen = Some(parse_override("HKSV_API_LISTEN", &v)?);
        }
        if let Some(v) = get("HKSV_MODE") {
            o.mode = Some(parse_override("HKSV_MODE", &v)?);
        }
        if let Some(v) = get("HKSV_PORT") {
            o.port = Some(("HKSV_PORT", parse_override("HKSV_PORT", &v)?));
        }
        if let Some(v) = get("HKSV_NO_MDNS") {
            o.no_mdns = parse_bool("HKSV_NO_MDNS", &v)?;
        }
        if let Some(v) = get("HKSV_SETUP_CODE") {
            let code = SetupCode::parse(&v).map_err(|e| ConfigError::Override {
                key: "HKSV_SETUP_CODE".into(),
                reason: e.to_string(),
            })?;
            o.setup_code = Some(("HKSV_SETUP_CODE", code));
        }
        self.apply(o)
    }

    /// Applies overrides (from the environment or flags). In bridge mode the port and setup
    /// code overrides set the bridge's, whatever the number of cameras.
    ///
    /// # Errors
    /// [`ConfigError::Override`] when a single-camera override meets several cameras.
    pub fn apply(&mut self, mut o: Overrides) -> Result<(), ConfigError> {
        if let Some(v) = o.mode {
            self.mode = v;
        }
        if self.mode == Mode::Bridge {
            if let Some((_, v)) = o.port.take() {
                self.bridge.port = v;
            }
            if let Some((_, v)) = o.setup_code.take() {
                self.bridge.setup_code = Some(v);
            }
        }
        if let Some(v) = o.state_dir {
            self.state_dir = Some(v);
        }
        if let Some(v) = o.bind {
            self.bind = v;
        }
        if o.no_mdns {
            self.mdns = false;
        }
        if let Some(v) = o.api_listen {
            self.api.listen = v;
        }
        if let Some(v) = o.api_token {
            self.api.token = Some(v);
        }
        let single = (o.name.as_ref().map(|x| x.0))
            .or(o.source.as_ref().map(|x| x.0))
            .or(o.port.as_ref().map(|x| x.0))
            .or(o.setup_code.as_ref().map(|x| x.0));
        let Some(key) = single else { return Ok(()) };
        let [camera] = self.cameras.as_mut_slice() else {
            return Err(ConfigError::Override {
                key: key.to_owned(),
                reason: format!(
                    "only applies to a single camera, but {} are configured: set it in the config file",
                    self.cameras.len()
                ),
            });
        };
        if let Some((_, v)) = o.name {
            camera.name = v;
        }
        if let Some((_, v)) = o.source {
            camera.source = v;
        }
        if let Some((_, v)) = o.port {
            camera.port = v;
        }
        if let Some((_, v)) = o.setup_code {
            camera.setup_code = Some(v);
        }
        Ok(())
    }
}

/// Values that override the file: from `HKSV_*` variables or command-line flags. Each
/// single-camera field carries the key it came from, for error messages.
#[derive(Default)]
pub struct Overrides {
    /// Root state directory.
    pub state_dir: Option<PathBuf>,
    /// HAP listen address.
    pub bind: Option<IpAddr>,
    /// Turn mDNS off.
    pub no_mdns: bool,
    /// HTTP API listen address.
    pub api_listen: Option<SocketAddr>,
    /// HTTP API token.
    pub api_token: Option<String>,
    /// Accessory or bridge mode.
    pub mode: Option<Mode>,
    /// Single camera: name.
    pub name: Option<(&'static str, String)>,
    /// Single camera: source.
    pub source: Option<(&'static str, String)>,
    /// Single camera: HAP port.
    pub port: Option<(&'static str, u16)>,
    /// Single camera: setup code.
    pub setup_code: Option<(&'static str, SetupCode)>,
}

impl fmt::Debug for Overrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Overrides")
            .field("state_dir", &self.state_dir)
            .field("bind", &self.bind)
            .field("no_mdns", &self.no_mdns)
            .field("api_listen", &self.api_listen)
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .field("mode", &self.mode)
            .field("name", &self.name)
            .field("source", &self.source)
            .field("port", &self.port)
            .field("setup_code", &self.setup_code)
            .finish()
    }
}

fn parse_override<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    v.trim().parse().map_err(|e: T::Err| ConfigError::Override {
        key: key.to_owned(),
        reason: format!("{v:?}: {e}"),
    })
}
