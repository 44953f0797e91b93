//! Command line: subcommands run, check, pair-info, reset, selftest.
//!
//! Each command lists only the flags it uses; `--config` and `--state-dir` go anywhere, the
//! others after the command or before it (`hksv-bridge --port 0 pair-info`). Flags override the
//! environment, which overrides the config file ([`load_config`]). With several cameras the
//! single-camera flags (`--name`, `--source`, `--port`, `--setup-code`) are refused: per-camera
//! settings live in the file.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use hap_server::Core;
use hap_server::setup::SetupCode;
use hap_server::store::{FileStore, Store};

use crate::config::{CameraConfig, Config, HapHostConfig, Mode, Overrides};

/// hap-server's file with the accessory identity and setup code (`core.rs` `ACCESSORY_FILE`).
const ACCESSORY_FILE: &str = "accessory.json";
/// hap-server's file with the controller pairings (`core.rs` `PAIRINGS_FILE`).
const PAIRINGS_FILE: &str = "pairings.json";
/// The camera's persisted HKSV state: selected recording configuration and active flags
/// (`camera::state::STATE_FILE`).
const CAMERA_STATE_FILE: &str = "camera-state.json";

/// `hksv-bridge [FLAGS] [COMMAND]`; without a command it runs the bridge.
#[derive(Debug, Parser)]
#[command(
    name = "hksv-bridge",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("HKSV_BUILD_COMMIT"), ")"),
    about = "Turns cameras into HomeKit Secure Video cameras"
)]
pub struct Cli {
    /// What to do; `run` when absent.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `--config`, `--state-dir`: every command, before or after its name.
    #[command(flatten)]
    pub file: FileArgs,
    /// Camera flags given before the command (or without one, for `run`).
    #[command(flatten)]
    pub host: HostArgs,
    /// Address flags given before the command.
    #[command(flatten)]
    pub net: NetArgs,
    /// `run`'s own flags given without the command.
    #[command(flatten)]
    pub run_only: RunOnlyArgs,
}

/// Where the configuration and state live; every command takes these.
#[derive(Debug, Clone, Default, Args)]
pub struct FileArgs {
    /// Configuration file (TOML, see docs/config.md) [env: HKSV_CONFIG]. Without one: a single
    /// demo camera.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for keys, pairings and IDs, one subdirectory per camera [env: HKSV_STATE_DIR]
    /// [default: $XDG_STATE_HOME/hksv-bridge or ~/.local/state/hksv-bridge].
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// The single camera (or the bridge) a command is about, without a file or with one camera.
#[derive(Debug, Clone, Default, Args)]
pub struct HostArgs {
    /// `accessory` (each camera its own HomeKit accessory) or `bridge` (one bridge carrying
    /// every camera) [env: HKSV_MODE] [default: accessory].
    #[arg(long, value_parser = parse_mode, value_name = "MODE")]
    pub mode: Option<Mode>,
    /// Single camera (or the bridge in bridge mode): HAP TCP port, 0 = any free port
    /// [env: HKSV_PORT] [default: 51826].
    #[arg(long)]
    pub port: Option<u16>,
    /// Single camera (or the bridge in bridge mode): setup code XXX-XX-XXX
    /// [env: HKSV_SETUP_CODE] [default: generated once and kept in the state directory].
    #[arg(long, value_parser = parse_setup_code, value_name = "CODE")]
    pub setup_code: Option<SetupCode>,
    /// Single camera: name shown in the Home app and on mDNS [env: HKSV_NAME] [default: Demo
    /// Camera].
    #[arg(long)]
    pub name: Option<String>,
}

impl HostArgs {
    fn or(&self, outer: &Self) -> Self {
        Self {
            mode: self.mode.or(outer.mode),
            port: self.port.or(outer.port),
            setup_code: self.setup_code.clone().or_else(|| outer.setup_code.clone()),
            name: self.name.clone().or_else(|| outer.name.clone()),
        }
    }
}

/// Addresses the bridge listens on (and the helper commands reach it at).
#[derive(Debug, Clone, Default, Args)]
pub struct NetArgs {
    /// Address the HAP servers listen on [env: HKSV_BIND] [default: 0.0.0.0].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<IpAddr>,
    /// HTTP API listen address [env: HKSV_API_LISTEN] [default: 127.0.0.1:8280].
    #[arg(long, value_name = "ADDR")]
    pub api_listen: Option<SocketAddr>,
}

impl NetArgs {
    fn or(&self, outer: &Self) -> Self {
        Self {
            bind: self.bind.or(outer.bind),
            api_listen: self.api_listen.or(outer.api_listen),
        }
    }
}

/// Flags only `run` takes.
#[derive(Debug, Clone, Default, Args)]
pub struct RunOnlyArgs {
    /// Single camera: video source (rtsp://…, v4l2://…, http(s)://…, tcp://…, a file, -,
    /// exec:…, demo:) [env: HKSV_SOURCE] [default: demo:].
    #[arg(long, value_name = "SPEC")]
    pub source: Option<String>,
    /// Do not advertise over mDNS [env: HKSV_NO_MDNS=1/0, true/false, yes/no, on/off].
    #[arg(long)]
    pub no_mdns: bool,
    /// Demo: toggle motion on the first camera every this many milliseconds (0 = never).
    #[arg(
        long,
        env = "HKSV_DEMO_MOTION_MS",
        default_value_t = 0,
        value_name = "MS"
    )]
    pub demo_motion_ms: u64,
}

impl RunOnlyArgs {
    fn or(&self, outer: &Self) -> Self {
        Self {
            source: self.source.clone().or_else(|| outer.source.clone()),
            no_mdns: self.no_mdns || outer.no_mdns,
            demo_motion_ms: if self.demo_motion_ms != 0 {
                self.demo_motion_ms
            } else {
                outer.demo_motion_ms
            },
        }
    }
}

/// Every flag, merged: a command's own flags over those given before it. Precedence over the
/// environment and the file: flag > `HKSV_*` variable > file > default.
#[derive(Debug, Clone, Default)]
pub struct RunArgs {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--bind`.
    pub bind: Option<IpAddr>,
    /// `--mode`.
    pub mode: Option<Mode>,
    /// `--port`.
    pub port: Option<u16>,
    /// `--setup-code`.
    pub setup_code: Option<SetupCode>,
    /// `--name`.
    pub name: Option<String>,
    /// `--source`.
    pub source: Option<String>,
    /// `--api-listen`.
    pub api_listen: Option<SocketAddr>,
    /// `--no-mdns`.
    pub no_mdns: bool,
    /// `--demo-motion-ms`.
    pub demo_motion_ms: u64,
}

impl Cli {
    /// The flags, merged for the command given.
    pub fn flags(&self) -> RunArgs {
        let (host, net, run) = match &self.command {
            Some(Command::Run { host, net, run }) => (
                host.or(&self.host),
                net.or(&self.net),
                run.or(&self.run_only),
            ),
            Some(
                Command::PairInfo { host, net, .. }
                | Command::Reset { host, net, .. }
                | Command::Selftest { host, net, .. },
            ) => (
                host.or(&self.host),
                net.or(&self.net),
                self.run_only.clone(),
            ),
            Some(Command::Check { .. }) | None => {
                (self.host.clone(), self.net.clone(), self.run_only.clone())
            }
        };
        RunArgs {
            config: self.file.config.clone(),
            state_dir: self.file.state_dir.clone(),
            bind: net.bind,
            mode: host.mode,
            port: host.port,
            setup_code: host.setup_code,
            name: host.name,
            source: run.source,
            api_listen: net.api_listen,
            no_mdns: run.no_mdns,
            demo_motion_ms: run.demo_motion_ms,
        }
    }
}

/// The subcommands. Each lists only the flags it uses (`hksv-bridge check --help`).
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the bridge (the default).
    Run {
        #[command(flatten)]
        #[allow(missing_docs)]
        host: HostArgs,
        #[command(flatten)]
        #[allow(missing_docs)]
        net: NetArgs,
        #[command(flatten)]
        #[allow(missing_docs)]
        run: RunOnlyArgs,
    },
    /// Read a camera stream for a while and say whether HomeKit Secure Video can record it.
    Check {
        /// Source spec (rtsp://…, v4l2://…, a file, demo:, …) or a configured camera's name.
        #[arg(id = "check_source", value_name = "SOURCE")]
        source: String,
        /// How long to read, seconds.
        #[arg(long, default_value_t = source::check::DEFAULT_CHECK_SECONDS)]
        seconds: u64,
        /// Also write what a hub would receive (init.mp4, fragments, clip.mp4) here.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Print each camera's setup code, X-HM:// setup URI and QR code, and what its source is
    /// doing (from the running bridge's API).
    PairInfo {
        /// Only this camera.
        #[arg(id = "camera", value_name = "CAMERA")]
        name: Option<String>,
        #[command(flatten)]
        #[allow(missing_docs)]
        host: HostArgs,
        #[command(flatten)]
        #[allow(missing_docs)]
        net: NetArgs,
    },
    /// Forget a camera's pairings and recording settings (stop the bridge first).
    Reset {
        /// The camera.
        #[arg(id = "camera", value_name = "CAMERA")]
        name: String,
        #[command(flatten)]
        #[allow(missing_docs)]
        host: HostArgs,
        #[command(flatten)]
        #[allow(missing_docs)]
        net: NetArgs,
    },
    /// Pair with a running camera like a home hub, record a clip and check it.
    Selftest {
        /// The camera [default: the first].
        #[arg(id = "camera", value_name = "CAMERA")]
        name: Option<String>,
        /// Where to write the received clip.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        #[command(flatten)]
        #[allow(missing_docs)]
        host: HostArgs,
        #[command(flatten)]
        #[allow(missing_docs)]
        net: NetArgs,
    },
}

impl Command {
    /// `run` with no flags of its own (what no command means).
    pub fn run() -> Self {
        Self::Run {
            host: HostArgs::default(),
            net: NetArgs::default(),
            run: RunOnlyArgs::default(),
        }
    }
}

fn parse_setup_code(s: &str) -> Result<SetupCode, String> {
    SetupCode::parse(s).map_err(|e| e.to_string())
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse()
}

impl RunArgs {
    /// The flags as [`Overrides`].
    pub fn overrides(&self) -> Overrides {
        Overrides {
            state_dir: self.state_dir.clone(),
            bind: self.bind,
            no_mdns: self.no_mdns,
            api_listen: self.api_listen,
            api_token: None,
            mode: self.mode,
            name: self.name.clone().map(|v| ("--name", v)),
            source: self.source.clone().map(|v| ("--source", v)),
            port: self.port.map(|v| ("--port", v)),
            setup_code: self.setup_code.clone().map(|v| ("--setup-code", v)),
        }
    }
}

/// The configuration: the file (`--config`, else `HKSV_CONFIG`, else [`Config::demo`]), then
/// the `HKSV_*` environment, then the flags; validated.
///
/// # Errors
/// An unreadable or invalid file, a bad override, or a configuration that fails
/// [`Config::validate`].
pub fn load_config(args: &RunArgs) -> anyhow::Result<Config> {
    load_config_with(args, &|k| std::env::var(k).ok())
}

/// [`load_config`] with the environment lookup injected (tests pass a map).
///
/// # Errors
/// See [`load_config`].
pub fn load_config_with(
    args: &RunArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Config> {
    let path = args.config.clone().or_else(|| {
        env("HKSV_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let mut config = match &path {
        Some(p) => Config::from_file(p)?,
        None => Config::demo(),
    };
    config.apply_env(env)?;
    config.apply(args.overrides())?;
    config.validate()?;
    Ok(config)
}

fn find_camera<'a>(config: &'a Config, name: &str) -> anyhow::Result<&'a CameraConfig> {
    config.camera(name).with_context(|| {
        let names: Vec<_> = config.cameras.iter().map(|c| c.name.as_str()).collect();
        format!("unknown camera {name:?}; configured: {names:?}")
    })
}

/// Runs the source check and returns the report; progress lines go to `progress`.
/// `source_or_camera` is a source spec or the name of a configured camera.
///
/// The report ends with a "detector" verdict: the built-in detector, run on the stream
/// it would decode (the camera's `detect_source`, read after the main check, or its `source`),
/// with its measured CPU; or why it is off for that camera.
///
/// # Errors
/// An unparsable source or a source that cannot be opened.
pub async fn check_report(
    config: &Config,
    source_or_camera: &str,
    duration: Duration,
    out: Option<&Path>,
    progress: &mut dyn Write,
) -> anyhow::Result<source::CheckReport> {
    let camera = config.camera(source_or_camera);
    let spec_text = camera.map_or(source_or_camera, |c| c.source.as_str());
    let (detector, detect_source) = match camera {
        Some(c) => match c.motion.detector_wanted(&c.name, config.mqtt.as_ref()) {
            motion::DetectorChoice::On => {
                (Ok(c.motion.detector.clone()), c.detect_source.as_deref())
            }
            motion::DetectorChoice::Off(why) => (Err(why), None),
        },
        None => (Ok(motion::DetectorConfig::default()), None),
    };
    let mut probe = match (&detector, detect_source) {
        (Ok(d), None) => Some(crate::detector_check::DetectorProbe::start(d)),
        _ => None,
    };
    let mut report = check_one(spec_text, duration, out, progress, probe.as_mut()).await?;
    let sub_guess =
        crate::detector_check::guess_sub_stream(spec_text).map(|s| source::spec::redact_str(&s));
    match (detector, detect_source, probe) {
        (Err(why), _, _) => report.verdicts.push(source::Verdict {
            item: "detector",
            level: source::Level::Info,
            message: format!("built-in motion detector off: {why}"),
        }),
        (Ok(_), None, Some(probe)) => report.verdicts.push(match probe.finish() {
            Ok(cost) => crate::detector_check::verdict(&cost, "source", sub_guess.as_deref()),
            Err(e) => source::Verdict {
                item: "detector",
                level: source::Level::Warn,
                message: format!("could not run on this stream: {e}"),
            },
        }),
        (Ok(d), Some(sub), _) => {
            let mut probe = crate::detector_check::DetectorProbe::start(&d);
            let sub_report = check_one(sub, duration, None, progress, Some(&mut probe)).await;
            report
                .verdicts
                .push(detect_source_verdict(sub_report, probe));
        }
        (Ok(_), None, None) => {}
    }
    Ok(report)
}

/// The "detector" verdict for a camera's `detect_source` check.
fn detect_source_verdict(
    sub: anyhow::Result<source::CheckReport>,
    probe: crate::detector_check::DetectorProbe,
) -> source::Verdict {
    let fail = |message: String| source::Verdict {
        item: "detector",
        level: source::Level::Fail,
        message,
    };
    let cost = probe.finish();
    let sub = match sub {
        Ok(r) => r,
        Err(e) => {
            return fail(format!(
                "detect_source cannot be read ({e:#}): the detector would never see motion"
            ));
        }
    };
    match cost {
        Ok(cost) => {
            let mut v = crate::detector_check::verdict(&cost, "detect_source", None);
            let fps = sub
                .measured_fps
                .map_or_else(String::new, |f| format!(", {f:.0} fps"));
            v.message = format!("detect_source {}{fps}: {}", sub.source, v.message);
            v
        }
        Err(e) => fail(format!(
            "detect_source {} cannot be decoded: {e}",
            sub.source
        )),
    }
}

/// One source check with progress lines; `probe` sees every unit.
async fn check_one(
    spec_text: &str,
    duration: Duration,
    out: Option<&Path>,
    progress: &mut dyn Write,
    mut probe: Option<&mut crate::detector_check::DetectorProbe>,
) -> anyhow::Result<source::CheckReport> {
    let spec: source::SourceSpec = spec_text
        .parse()
        .with_context(|| format!("source {:?}", source::spec::redact_str(spec_text)))?;
    // Progress is best effort: a closed stderr must not stop the check.
    let _ = writeln!(progress, "Checking {spec} for {} s …", duration.as_secs());
    let observe = |u: &recorder::MediaUnit| {
        if let Some(p) = probe.as_mut() {
            p.observe(u);
        }
    };
    let report = source::check_observed(
        &spec,
        duration,
        out,
        |p| {
            let _ = writeln!(
                progress,
                "  {:>2}/{} s: {} frames, {} fragments{}",
                p.elapsed.as_secs(),
                p.total.as_secs(),
                p.video_frames,
                p.fragments,
                if p.reconnects > 0 {
                    format!(", {} reconnects", p.reconnects)
                } else {
                    String::new()
                }
            );
        },
        observe,
    )
    .await
    .context("check failed")?;
    Ok(report)
}

/// `hksv-bridge check`: progress on stderr, the report on stdout.
///
/// Cancel safety: dropping the future stops the check and closes the source.
///
/// # Errors
/// As [`check_report`], and when the report has a failing item (so the exit code says
/// "not ready").
pub async fn check(
    config: &Config,
    source_or_camera: &str,
    seconds: u64,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let report = check_report(
        config,
        source_or_camera,
        Duration::from_secs(seconds),
        out,
        &mut std::io::stderr(),
    )
    .await?;
    println!("{report}");
    if !report.is_ready() {
        bail!("the stream is not ready for HomeKit Secure Video: see the items marked above");
    }
    Ok(())
}

/// A view of a camera's state directory that reads everything but only writes the
/// accessory file, and only when it does not exist yet (a camera never started).
struct PairInfoStore {
    inner: FileStore,
    first_start: bool,
}

impl Store for PairInfoStore {
    fn load(&self, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        self.inner.load(name)
    }

    fn save(&self, name: &str, data: &[u8]) -> std::io::Result<()> {
        if self.first_start && name == ACCESSORY_FILE {
            self.inner.save(name, data)
        } else {
            Ok(())
        }
    }
}

/// What pair-info shows for one HAP server (a camera in accessory mode, the bridge in bridge
/// mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairInfo {
    /// Camera or bridge name.
    pub name: String,
    /// The cameras it serves (the camera itself in accessory mode).
    pub cameras: Vec<String>,
    /// Whether it is the bridge of bridge mode.
    pub bridge: bool,
    /// HAP port from the configuration (0 = chosen at start).
    pub port: u16,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// `XXX-XX-XXX`.
    pub setup_code: String,
    /// `X-HM://…` (the paired flag is part of it).
    pub setup_uri: String,
    /// Number of controller pairings.
    pub pairings: usize,
}

/// The HAP server that `name` (a camera, or the bridge in bridge mode) is reached through, with
/// the cameras it serves.
fn find_host<'a>(
    config: &'a Config,
    name: &str,
) -> anyhow::Result<(HapHostConfig, Vec<&'a CameraConfig>)> {
    if config.mode == Mode::Bridge && name == config.bridge.name {
        return Ok((config.bridge_host(), config.cameras.iter().collect()));
    }
    let camera = find_camera(config, name)?;
    Ok(config
        .hap_hosts()
        .into_iter()
        .find(|(_, cams)| cams.iter().any(|c| c.name == camera.name))
        .unwrap_or_else(|| (config.hap_host_for(camera), vec![camera])))
}

/// The setup code and URI of the HAP server that serves `camera`, read from its state
/// directory. A server never started gets its identity and code generated and saved now, so
/// `run` uses the same ones; nothing else is written.
///
/// # Errors
/// The state directory cannot be created or holds corrupt files.
pub fn read_pair_info(config: &Config, camera: &CameraConfig) -> anyhow::Result<PairInfo> {
    let (host, cameras) = find_host(config, &camera.name)?;
    read_host_info(&host, &cameras)
}

fn read_host_info(host: &HapHostConfig, cameras: &[&CameraConfig]) -> anyhow::Result<PairInfo> {
    let dir = host.state_dir.clone();
    let inner = FileStore::open(&dir)
        .with_context(|| format!("opening state directory {}", dir.display()))?;
    let first_start = inner.load(ACCESSORY_FILE)?.is_none();
    let core_config = crate::host::core_config(host);
    let store = PairInfoStore { inner, first_start };
    let core = Core::open_without_database(core_config, Arc::new(store), &mut rand::rng())
        .with_context(|| format!("reading state of {:?} in {}", host.name, dir.display()))?;
    Ok(PairInfo {
        name: host.name.clone(),
        cameras: cameras.iter().map(|c| c.name.clone()).collect(),
        bridge: host.bridge,
        port: host.port,
        state_dir: dir,
        setup_code: core.setup_code().as_str().to_owned(),
        setup_uri: core.setup_uri(),
        pairings: core.pairings().len(),
    })
}

/// Writes pair-info for every HAP server, or only the one serving `name` (a camera, or the
/// bridge's name), to `out`.
///
/// # Errors
/// An unknown name, a state directory that cannot be read, or a failed write.
pub fn write_pair_info(
    config: &Config,
    name: Option<&str>,
    running: Option<&[serde_json::Value]>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let hosts = match name {
        Some(n) => vec![find_host(config, n)?],
        None => config.hap_hosts(),
    };
    for (host, cameras) in hosts {
        let info = read_host_info(&host, &cameras)?;
        if info.bridge {
            writeln!(out, "{} (bridge)", info.name)?;
            writeln!(out, "  Cameras:    {}", info.cameras.join(", "))?;
        } else {
            writeln!(out, "{}", info.name)?;
        }
        writeln!(out, "  Setup code: {}", info.setup_code)?;
        writeln!(out, "  Setup URI:  {}", info.setup_uri)?;
        let port = match info.port {
            0 => "any free port".to_owned(),
            p => p.to_string(),
        };
        writeln!(out, "  HAP port:   {port}")?;
        writeln!(out, "  State:      {}", info.state_dir.display())?;
        for cam in &cameras {
            writeln!(out, "  {}", source_line(cam, running, cameras.len() > 1))?;
        }
        if info.pairings > 0 {
            writeln!(
                out,
                "  Paired with {} controller(s); `hksv-bridge reset {:?}` forgets them",
                info.pairings, info.name
            )?;
        } else {
            writeln!(out, "  Not paired: scan this code in the Home app")?;
            if let Some(qr) = crate::qr::render(&info.setup_uri) {
                writeln!(out, "{qr}")?;
            }
        }
    }
    Ok(())
}

/// `Source: …` of `pair-info`: the running bridge's `state`/`since`/`last_error` for the camera
/// when `running` (its `GET /api/cameras`) lists it, else what the preflight finds.
fn source_line(cam: &CameraConfig, running: Option<&[serde_json::Value]>, named: bool) -> String {
    let spec = cam.source.parse::<source::SourceSpec>();
    let shown = spec.as_ref().map_or_else(
        |_| source::spec::redact_str(&cam.source),
        ToString::to_string,
    );
    let label = if named {
        format!("Source ({}):", cam.name)
    } else {
        "Source:    ".to_owned()
    };
    let live = running.and_then(|list| list.iter().find(|c| c["name"] == cam.name.as_str()));
    match live {
        Some(c) => {
            let state = c["state"].as_str().unwrap_or("unknown");
            let since = c["since"].as_str().unwrap_or("?");
            match c["last_error"].as_str() {
                Some(e) if state != "streaming" => {
                    format!("{label} {shown} — {state} since {since}: {e}")
                }
                _ => format!("{label} {shown} — {state} since {since}"),
            }
        }
        None => match spec.and_then(|s| s.preflight()) {
            Err(e) => format!("{label} {shown} — will not start: {e}"),
            Ok(()) => {
                format!("{label} {shown} (the bridge is not running, or its API did not answer)")
            }
        },
    }
}

/// Where a local client reaches a listener bound to `ip`: loopback for the unspecified
/// address (`0.0.0.0`, `::`).
pub fn connect_ip(ip: IpAddr) -> IpAddr {
    if ip.is_unspecified() {
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    } else {
        ip
    }
}

/// [`connect_ip`] with the port.
pub fn connect_addr(listen: SocketAddr) -> SocketAddr {
    SocketAddr::new(connect_ip(listen.ip()), listen.port())
}

/// The running bridge's `GET /api/cameras`, if it answers within 1 s.
pub async fn running_cameras(config: &Config) -> Option<Vec<serde_json::Value>> {
    let url = format!("http://{}/api/cameras", connect_addr(config.api.listen));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(1))
        .build()
        .ok()?;
    let mut req = client.get(url);
    if let Some(token) = &config.api.token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.ok()?.error_for_status().ok()?;
    serde_json::from_str(&resp.text().await.ok()?).ok()
}

/// `hksv-bridge pair-info [NAME]`: prints to stdout, with each source's state from the running
/// bridge when its API answers.
///
/// # Errors
/// See [`write_pair_info`].
pub async fn pair_info(config: &Config, name: Option<&str>) -> anyhow::Result<()> {
    let running = running_cameras(config).await;
    write_pair_info(
        config,
        name,
        running.as_deref(),
        &mut std::io::stdout().lock(),
    )
}

/// `hksv-bridge reset NAME`: deletes the controller pairings of the HAP server that serves
/// `NAME` and the HKSV state (selected recording configuration, active flags) of every camera
/// it serves: one camera in accessory mode, all of them in bridge mode (a bridge is paired as
/// a whole). Identity and setup code stay, so the same QR code pairs it again.
///
/// The bridge must be stopped first: a running bridge keeps both in memory and would write
/// them back. With a fixed port, reset refuses while that port is taken on the configured bind
/// address; with port 0 it cannot tell.
///
/// # Errors
/// Unknown name, the port in use, or a file that cannot be removed.
pub fn reset(config: &Config, name: &str) -> anyhow::Result<()> {
    let removed = reset_files(config, name)?;
    let (host, _) = find_host(config, name)?;
    let cleared = clear_attempts(&host.state_dir)?;
    if cleared > 0 {
        println!("{name}: cleared {cleared} wrong setup-code attempts (pair-setup is open again)");
    }
    if removed.is_empty() {
        println!("{name}: nothing to forget (never paired)");
    } else {
        for f in &removed {
            println!("{name}: removed {}", f.display());
        }
        println!("{name}: pair it again with its setup code (hksv-bridge pair-info)");
    }
    Ok(())
}

/// Clears the persisted wrong-setup-code count in `state_dir` (MaxTries after 100).
fn clear_attempts(state_dir: &std::path::Path) -> anyhow::Result<u32> {
    if !state_dir.exists() {
        return Ok(0);
    }
    let store =
        FileStore::open(state_dir).with_context(|| format!("opening {}", state_dir.display()))?;
    hap_server::core::clear_failed_attempts(&store).with_context(|| {
        format!(
            "clearing the setup-code attempts in {}",
            state_dir.display()
        )
    })
}

/// [`reset`] without printing: returns the files removed.
///
/// # Errors
/// See [`reset`].
pub fn reset_files(config: &Config, name: &str) -> anyhow::Result<Vec<PathBuf>> {
    let (host, cameras) = find_host(config, name)?;
    if host.port != 0 {
        let addr = SocketAddr::new(config.bind, host.port);
        let in_use = std::net::TcpListener::bind(addr)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse);
        if in_use {
            bail!("port {addr} is in use: hksv-bridge seems to be running; stop it before reset");
        }
    }
    let files = std::iter::once(host.state_dir.join(PAIRINGS_FILE)).chain(
        cameras
            .iter()
            .map(|c| config.state_dir_for(c).join(CAMERA_STATE_FILE)),
    );
    let mut removed = Vec::new();
    for path in files {
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    Ok(removed)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("hksv-bridge").chain(args.iter().copied()))
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn no_arguments_runs_the_demo() {
        let cli = parse(&[]).unwrap();
        assert!(cli.command.is_none());
        let c = load_config_with(&cli.flags(), &no_env).unwrap();
        assert_eq!(c, Config::demo());
    }

    #[test]
    fn rejects_adk_invalid_setup_codes() {
        for bad in ["123-45-678", "111-11-111", "12-345-678", "abc"] {
            assert!(parse(&["--setup-code", bad]).is_err(), "{bad}");
        }
        let ok = parse(&["--setup-code", "031-45-154"]).unwrap();
        assert_eq!(ok.flags().setup_code.unwrap().as_str(), "031-45-154");
    }

    #[test]
    fn todays_flags_still_work() {
        // The flags tests/hap_aiohomekit.rs passes.
        let cli = parse(&[
            "--state-dir",
            "/tmp/x",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--setup-code",
            "031-45-154",
            "--name",
            "E2E Cam",
            "--no-mdns",
            "--demo-motion-ms",
            "500",
        ])
        .unwrap();
        assert!(cli.command.is_none() && cli.flags().no_mdns);
        assert_eq!(cli.flags().demo_motion_ms, 500);
        let c = load_config_with(&cli.flags(), &no_env).unwrap();
        assert!(!c.mdns);
        assert_eq!(c.bind, IpAddr::from([127, 0, 0, 1]));
        let cam = &c.cameras[0];
        assert_eq!((cam.name.as_str(), cam.port), ("E2E Cam", 0));
        assert_eq!(cam.setup_code.as_ref().unwrap().as_str(), "031-45-154");
        assert_eq!(c.state_dir_for(cam), Path::new("/tmp/x/e2e-cam"));
    }

    #[test]
    fn subcommands_parse() {
        let c = parse(&["check", "rtsp://cam/1", "--seconds", "5", "--out", "o"]).unwrap();
        match c.command {
            Some(Command::Check {
                source,
                seconds,
                out,
            }) => {
                assert_eq!(
                    (source.as_str(), seconds, out),
                    ("rtsp://cam/1", 5, Some(PathBuf::from("o")))
                );
            }
            other => panic!("{other:?}"),
        }
        // Default check length; check takes no run flags after it, but they may come first.
        assert!(parse(&["check", "demo:", "--source", "x"]).is_err());
        let c = parse(&["--source", "x", "check", "demo:"]).unwrap();
        assert!(matches!(
            c.command,
            Some(Command::Check { seconds: 12, .. })
        ));
        assert_eq!(c.flags().source.as_deref(), Some("x"));
        // A command's own flag wins over the same flag before it.
        let c = parse(&["--port", "1", "run", "--port", "2"]).unwrap();
        assert_eq!(c.flags().port, Some(2));
        let c = parse(&["--port", "1", "pair-info"]).unwrap();
        assert_eq!(c.flags().port, Some(1));

        let c = parse(&["pair-info"]).unwrap();
        assert!(matches!(
            c.command,
            Some(Command::PairInfo { name: None, .. })
        ));
        // Global flags after the subcommand; --name is the flag, the positional the camera.
        let c = parse(&[
            "pair-info",
            "Front Door",
            "--config",
            "b.toml",
            "--name",
            "n",
        ])
        .unwrap();
        assert!(
            matches!(&c.command, Some(Command::PairInfo { name: Some(n), .. }) if n == "Front Door")
        );
        assert_eq!(c.flags().config.as_deref(), Some(Path::new("b.toml")));
        assert_eq!(c.flags().name.as_deref(), Some("n"));

        assert!(matches!(
            parse(&["reset", "Garage"]).unwrap().command,
            Some(Command::Reset { name, .. }) if name == "Garage"
        ));
        assert!(parse(&["reset"]).is_err(), "reset needs a camera");

        let c = parse(&["selftest", "--out", "clip"]).unwrap();
        assert!(matches!(
            c.command,
            Some(Command::Selftest {
                name: None,
                out: Some(_),
                ..
            })
        ));
        assert!(matches!(
            parse(&["run", "--api-listen", "127.0.0.1:9"])
                .unwrap()
                .command,
            Some(Command::Run { .. })
        ));
        assert!(parse(&["frobnicate"]).is_err());
        assert!(parse(&["run", "--api-listen", "9"]).is_err());
    }

    #[test]
    fn no_mdns_from_the_environment_or_the_flag() {
        let cli = parse(&[]).unwrap();
        for (v, mdns) in [
            ("1", false),
            ("yes", false),
            ("ON", false),
            ("0", true),
            ("off", true),
        ] {
            let c = load_config_with(&cli.flags(), &|k| (k == "HKSV_NO_MDNS").then(|| v.into()))
                .unwrap();
            assert_eq!(c.mdns, mdns, "HKSV_NO_MDNS={v}");
        }
        let e = load_config_with(&cli.flags(), &|k| {
            (k == "HKSV_NO_MDNS").then(|| "maybe".into())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("HKSV_NO_MDNS") && e.contains("maybe"), "{e}");
        let cli = parse(&["run", "--no-mdns"]).unwrap();
        assert!(!load_config_with(&cli.flags(), &no_env).unwrap().mdns);
    }

    #[test]
    fn each_command_lists_only_its_flags() {
        use clap::CommandFactory as _;
        let mut cmd = Cli::command();
        cmd.build(); // propagates the global flags
        let help = |cmd: &mut clap::Command, sub: &str| {
            cmd.find_subcommand_mut(sub)
                .map(|c| c.render_long_help().to_string())
                .unwrap_or_default()
        };
        let run = help(&mut cmd, "run");
        for f in [
            "--config",
            "--port",
            "--source",
            "--no-mdns",
            "--demo-motion-ms",
            "--bind",
        ] {
            assert!(run.contains(f), "run lacks {f}: {run}");
        }
        let check = help(&mut cmd, "check");
        assert!(
            check.contains("--seconds") && check.contains("--config"),
            "{check}"
        );
        for f in ["--port", "--source", "--no-mdns", "--setup-code", "--bind"] {
            assert!(!check.contains(f), "check lists {f}: {check}");
        }
        for sub in ["pair-info", "reset", "selftest"] {
            let h = help(&mut cmd, sub);
            assert!(
                h.contains("--setup-code") && h.contains("--state-dir"),
                "{sub}: {h}"
            );
            for f in ["--source", "--no-mdns", "--demo-motion-ms"] {
                assert!(!h.contains(f), "{sub} lists {f}: {h}");
            }
        }
    }

    fn two_camera_file(dir: &Path) -> PathBuf {
        let path = dir.join("bridge.toml");
        std::fs::write(
            &path,
            format!(
                "state_dir = {:?}\n[[cameras]]\nname = \"Front Door\"\nport = 0\n[[cameras]]\nname = \"Garage\"\nport = 0\n",
                dir.join("state")
            ),
        )
        .unwrap();
        path
    }

    #[test]
    fn config_file_env_and_flags_in_that_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = two_camera_file(dir.path());
        let env: HashMap<&str, &str> = [
            ("HKSV_CONFIG", path.to_str().unwrap()),
            ("HKSV_API_LISTEN", "127.0.0.1:1111"),
            ("HKSV_API_TOKEN", "tok"),
        ]
        .into();
        let lookup = |k: &str| env.get(k).map(|v| (*v).to_owned());
        let cli = parse(&["--api-listen", "127.0.0.1:2222"]).unwrap();
        let c = load_config_with(&cli.flags(), &lookup).unwrap();
        assert_eq!(c.cameras.len(), 2);
        assert_eq!(c.api.listen.port(), 2222, "the flag beats the variable");
        assert_eq!(c.api.token.as_deref(), Some("tok"));
        // Single-camera flags are refused with two cameras.
        let cli = parse(&["--port", "5"]).unwrap();
        let e = load_config_with(&cli.flags(), &lookup).unwrap_err();
        assert!(e.to_string().contains("--port"), "{e}");
        // A missing file is an error, not the demo.
        let cli = parse(&["--config", "/nonexistent/hksv.toml"]).unwrap();
        assert!(load_config_with(&cli.flags(), &no_env).is_err());
    }

    #[test]
    fn pair_info_says_what_each_source_is_doing() {
        let dir = tempfile::tempdir().unwrap();
        let cli = parse(&["--config", two_camera_file(dir.path()).to_str().unwrap()]).unwrap();
        let mut config = load_config_with(&cli.flags(), &no_env).unwrap();
        config.cameras[1].source = "rtsp://u:secret@10.0.0.9/s".into();
        let running = [serde_json::json!({
            "name": "Garage", "state": "retrying", "since": "2026-12-07T21:04:05Z",
            "last_error": "rtsp://u:***@10.0.0.9/s: cannot connect: refused",
        })];
        let mut text = Vec::new();
        write_pair_info(&config, Some("Garage"), Some(&running), &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains(
                "retrying since 2026-12-07T21:04:05Z: rtsp://u:***@10.0.0.9/s: cannot connect"
            ),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
        // Not running: what the preflight finds.
        config.cameras[1].source = dir.path().join("gone.mp4").to_str().unwrap().into();
        let mut text = Vec::new();
        write_pair_info(&config, Some("Garage"), None, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("will not start") && text.contains("gone.mp4"),
            "{text}"
        );
        let mut text = Vec::new();
        write_pair_info(&config, Some("Front Door"), None, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("demo: (the bridge is not running"), "{text}");
    }

    #[test]
    fn pair_info_persists_the_code_of_a_new_camera_and_reset_forgets_pairings() {
        let dir = tempfile::tempdir().unwrap();
        let cli = parse(&["--config", two_camera_file(dir.path()).to_str().unwrap()]).unwrap();
        let config = load_config_with(&cli.flags(), &no_env).unwrap();
        let cam = &config.cameras[1];
        let first = read_pair_info(&config, cam).unwrap();
        assert!(
            first.setup_uri.starts_with("X-HM://"),
            "{}",
            first.setup_uri
        );
        assert!(SetupCode::parse(&first.setup_code).is_ok());
        assert_eq!(first.pairings, 0);
        assert_eq!(first.state_dir, dir.path().join("state/garage"));
        // The same code next time: it was persisted, and a real Core (as run opens it) agrees.
        assert_eq!(read_pair_info(&config, cam).unwrap(), first);
        let store = Arc::new(FileStore::open(&first.state_dir).unwrap());
        let core_config = crate::host::core_config(&config.hap_host_for(cam));
        let core = Core::open(core_config, store.clone(), Vec::new(), &mut rand::rng()).unwrap();
        assert_eq!(core.setup_code().as_str(), first.setup_code);
        drop(core);

        let mut text = Vec::new();
        write_pair_info(&config, Some("Garage"), None, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains(&first.setup_code) && text.contains(&first.setup_uri));
        assert!(
            text.contains('█') || text.contains('▀'),
            "QR missing:\n{text}"
        );
        assert!(write_pair_info(&config, Some("Nope"), None, &mut Vec::new()).is_err());

        // A pairing on disk (as hap-server writes it) is counted, then forgotten by reset.
        store
            .save(
                PAIRINGS_FILE,
                br#"[{"controller_id":"C1","ltpk":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","admin":true}]"#,
            )
            .unwrap();
        store.save(CAMERA_STATE_FILE, b"{}").unwrap();
        assert_eq!(read_pair_info(&config, cam).unwrap().pairings, 1);
        let removed = reset_files(&config, "Garage").unwrap();
        assert_eq!(removed.len(), 2);
        let after = read_pair_info(&config, cam).unwrap();
        assert_eq!(after.pairings, 0);
        assert_eq!(
            after.setup_code, first.setup_code,
            "identity and code are kept"
        );
        assert!(reset_files(&config, "Garage").unwrap().is_empty());
        assert!(reset_files(&config, "Nope").is_err());
    }

    #[test]
    fn bridge_mode_pair_info_and_reset_cover_the_whole_bridge() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hksv-bridge.toml");
        std::fs::write(
            &file,
            format!(
                "state_dir = {:?}\nmode = \"bridge\"\n[bridge]\nname = \"Yard\"\nport = 0\n\
                 [[cameras]]\nname = \"Porch\"\n[[cameras]]\nname = \"Garage\"\n",
                dir.path().join("state")
            ),
        )
        .unwrap();
        let cli = parse(&["--config", file.to_str().unwrap()]).unwrap();
        let config = load_config_with(&cli.flags(), &no_env).unwrap();
        let porch = read_pair_info(&config, &config.cameras[0]).unwrap();
        let garage = read_pair_info(&config, &config.cameras[1]).unwrap();
        assert_eq!(
            porch, garage,
            "both cameras are reached through the one bridge"
        );
        assert!(porch.bridge);
        assert_eq!(porch.cameras, ["Porch", "Garage"]);
        assert_eq!(porch.state_dir, dir.path().join("state/_bridge"));

        let mut text = Vec::new();
        write_pair_info(&config, None, None, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text.matches("Setup code:").count(), 1, "{text}");
        assert!(
            text.contains("Yard (bridge)") && text.contains("Porch, Garage"),
            "{text}"
        );

        let bridge_store = FileStore::open(&porch.state_dir).unwrap();
        bridge_store
            .save(
                PAIRINGS_FILE,
                br#"[{"controller_id":"C1","ltpk":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","admin":true}]"#,
            )
            .unwrap();
        for cam in &config.cameras {
            FileStore::open(config.state_dir_for(cam))
                .unwrap()
                .save(CAMERA_STATE_FILE, b"{}")
                .unwrap();
        }
        assert_eq!(
            read_pair_info(&config, &config.cameras[1])
                .unwrap()
                .pairings,
            1
        );
        // Reset by the bridge's name (a camera's name works too): the bridge's pairings and
        // every camera's HKSV state go.
        let removed = reset_files(&config, "Yard").unwrap();
        assert_eq!(removed.len(), 3, "{removed:?}");
        assert_eq!(
            read_pair_info(&config, &config.cameras[0])
                .unwrap()
                .pairings,
            0
        );
        assert!(reset_files(&config, "Porch").unwrap().is_empty());
    }

    #[test]
    fn reset_refuses_while_the_port_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut config = Config::demo();
        config.state_dir = Some(dir.path().to_owned());
        config.bind = IpAddr::from([127, 0, 0, 1]);
        config.cameras[0].port = busy.local_addr().unwrap().port();
        let e = reset_files(&config, crate::config::DEMO_CAMERA_NAME).unwrap_err();
        assert!(e.to_string().contains("running"), "{e}");
        drop(busy);
        reset_files(&config, crate::config::DEMO_CAMERA_NAME).unwrap();
    }

    #[tokio::test]
    async fn check_reads_the_demo_source() {
        let mut progress = Vec::new();
        let report = check_report(
            &Config::demo(),
            crate::config::DEMO_CAMERA_NAME,
            Duration::from_secs(2),
            None,
            &mut progress,
        )
        .await
        .unwrap();
        let text = report.to_string();
        assert!(text.contains("H.264 Main"), "{text}");
        assert!(report.verdict("GOP").is_some(), "{text}");
        assert!(report.video_frames > 0);
        let progress = String::from_utf8(progress).unwrap();
        assert!(progress.starts_with("Checking demo: for 2 s"), "{progress}");
        // The demo's detector is off (its loop cut would look like motion), and check says so.
        let detector = report.verdict("detector").unwrap();
        assert_eq!(detector.level, source::Level::Info);
        assert!(detector.message.contains("off"), "{}", detector.message);
        assert!(
            check_report(
                &Config::demo(),
                "bogus://x",
                Duration::from_secs(1),
                None,
                &mut Vec::new()
            )
            .await
            .is_err()
        );
    }
    #[tokio::test]
    async fn check_of_a_camera_measures_the_detector_on_its_detect_source() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub.mp4");
        let status = std::process::Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-nostdin",
                "-f",
                "lavfi",
                "-i",
            ])
            .arg("testsrc2=s=640x360:r=10:d=4")
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-bf",
                "0",
                "-g",
                "10",
            ])
            .arg(&sub)
            .status()
            .expect("ffmpeg (run scripts/test)");
        assert!(status.success());
        let mut cam = CameraConfig::new("a", "demo:", 0);
        cam.detect_source = Some(sub.display().to_string());
        let mut config = Config::demo();
        config.cameras = vec![cam];
        let report = check_report(&config, "a", Duration::from_secs(2), None, &mut Vec::new())
            .await
            .unwrap();
        let v = report.verdict("detector").unwrap();
        assert_eq!(v.level, source::Level::Ok, "{}", v.message);
        assert!(v.message.contains("640x360 detect_source"), "{}", v.message);
        assert!(v.message.contains("sub.mp4"), "{}", v.message);
        // The main check is still the main stream's.
        assert_eq!(report.sps.as_ref().map(|s| s.width), Some(1920));

        // A detect_source that cannot be read fails the check: no motion would ever come.
        config.cameras[0].detect_source =
            Some(dir.path().join("missing.mp4").display().to_string());
        let report = check_report(&config, "a", Duration::from_secs(2), None, &mut Vec::new())
            .await
            .unwrap();
        let v = report.verdict("detector").unwrap();
        assert_eq!(v.level, source::Level::Fail, "{}", v.message);
        assert!(!report.is_ready());

        // Motion from Frigate: the detector is off, and check says why.
        config.cameras[0].detect_source = None;
        config.mqtt = Some(toml::from_str("[frigate]\n").unwrap());
        let report = check_report(&config, "a", Duration::from_secs(1), None, &mut Vec::new())
            .await
            .unwrap();
        let v = report.verdict("detector").unwrap();
        assert!(v.message.contains("Frigate"), "{}", v.message);
    }
}
