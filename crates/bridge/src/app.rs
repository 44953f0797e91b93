//! Runs the configured cameras: one [`MotionHub`] for all of them, each [`Camera`] (state dir,
//! source task and HDS listener) behind its own HAP server (accessory mode: own port, pairing
//! and mDNS record) or one shared bridge (bridge mode), MQTT and the built-in detectors when
//! configured, and the HTTP API; stops on SIGINT/SIGTERM.
//!
//! ```text
//!  signal ─► shutdown watch ─► every camera task, MQTT, API ─► JoinSet drained ─► exit 0
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use motion::MotionHub;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::api::{AccessoryIdentityInfo, ApiError, ApiState, CameraDirectory, CameraSummary};
use crate::camera::{Camera, CameraOptions, DetectorSetting, MediaInput};
use crate::config::{CameraConfig, Config};
use crate::host::begin_host;

/// Longest wait for the tasks to finish after the shutdown signal; a task stuck in I/O past
/// this is aborted so that a service manager's stop never hangs.
pub const SHUTDOWN_GRACE_MS: u64 = 5_000;

/// How long a selftest's temporary pairing may live before the bridge removes it: a selftest
/// takes well under a minute (its recording step is bounded by 3 × its 20 s step timeout).
pub const TEMPORARY_PAIRING_TTL: Duration = Duration::from_secs(300);

/// What [`run_with`] adds to a [`Config`] (the demo flags of the command line).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Toggle MotionDetected of the first camera every this many milliseconds (0 = never).
    /// It sets the characteristic directly: the hub's debounce (10 s minimum on-time by
    /// default) would swallow a fast toggle, and this exists to show controllers events.
    pub demo_motion_ms: u64,
}

/// The running cameras in configuration order, as the HTTP API sees them.
#[derive(Debug, Clone)]
pub struct Cameras {
    by_name: BTreeMap<String, Camera>,
    order: Vec<String>,
}

impl Cameras {
    /// Wraps started cameras (names are unique: the configuration validated them).
    pub fn new(cameras: Vec<Camera>) -> Self {
        let order = cameras.iter().map(|c| c.name().to_owned()).collect();
        let by_name = cameras
            .into_iter()
            .map(|c| (c.name().to_owned(), c))
            .collect();
        Self { by_name, order }
    }

    /// The cameras in configuration order.
    fn in_order(&self) -> impl Iterator<Item = &Camera> {
        self.order.iter().filter_map(|n| self.by_name.get(n))
    }

    fn get(&self, name: &str) -> Result<&Camera, ApiError> {
        self.by_name
            .get(name)
            .ok_or_else(|| ApiError::UnknownCamera(name.to_owned()))
    }
}

impl CameraDirectory for Cameras {
    fn list(&self) -> Vec<CameraSummary> {
        self.in_order()
            .map(|c| {
                let source = c.source_status();
                CameraSummary {
                    name: c.name().to_owned(),
                    motion: c.motion_detected(),
                    recording: c.is_recording(),
                    paired: c.is_paired(),
                    port: c.port(),
                    aid: c.aid(),
                    prebuffer_ms: c.prebuffer_ms(),
                    state: source.state.as_str(),
                    last_error: source.last_error,
                    since: crate::camera::history::rfc3339(source.since),
                }
            })
            .collect()
    }

    fn events(
        &self,
        name: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<crate::camera::history::HistoryEntry>, ApiError> {
        Ok(self.get(name)?.history(before, limit))
    }

    fn live_sessions(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<crate::camera::history::LiveEntry>, ApiError> {
        Ok(self.get(name)?.live_sessions(limit))
    }

    fn detail(&self, name: &str) -> Result<serde_json::Value, ApiError> {
        serde_json::to_value(self.get(name)?.detail()).map_err(|e| ApiError::Failed(e.to_string()))
    }

    fn snapshot(&self, name: &str, width: u32, height: u32) -> Result<Vec<u8>, ApiError> {
        self.get(name)?
            .snapshot_jpeg(width, height)
            .map_err(|e| ApiError::Failed(format!("no snapshot yet: {e}")))
    }

    fn metrics(&self) -> Vec<crate::metrics::CameraMetrics> {
        self.in_order()
            .map(|c| {
                let source = c.source_status();
                crate::metrics::CameraMetrics {
                    name: c.name().to_owned(),
                    source_up: source.state == crate::camera::source_status::SourceState::Streaming,
                    reconnects: source.reconnects,
                    prebuffer_ms: c.prebuffer_ms(),
                    paired: c.is_paired(),
                    motion: c.motion_detected(),
                    recording: c.is_recording(),
                    live_viewers: c.live_viewers() as u64,
                    counters: c.counters(),
                }
            })
            .collect()
    }

    fn ring(&self, name: &str) -> Result<(), ApiError> {
        self.get(name)?
            .ring_doorbell()
            .map_err(|_| ApiError::NotADoorbell(name.to_owned()))
    }

    fn add_temporary_pairing(
        &self,
        name: &str,
        controller_id: &str,
        ltpk: [u8; 32],
    ) -> Result<(), ApiError> {
        self.get(name)?
            .add_temporary_pairing(controller_id, ltpk, TEMPORARY_PAIRING_TTL)
            .map_err(|e| ApiError::Failed(format!("{e:#}")))
    }

    fn remove_temporary_pairing(&self, name: &str, controller_id: &str) -> Result<(), ApiError> {
        self.get(name)?
            .remove_temporary_pairing(controller_id)
            .map_err(|e| ApiError::Failed(format!("{e:#}")))
    }

    fn accessory_identity(&self, name: &str) -> Result<AccessoryIdentityInfo, ApiError> {
        let (pairing_id, ltpk) = self.get(name)?.accessory_identity();
        Ok(AccessoryIdentityInfo { pairing_id, ltpk })
    }
}

/// Runs the bridge until SIGINT or SIGTERM; see [`run_with`].
///
/// # Errors
/// See [`run_with`].
pub async fn run(config: Config) -> anyhow::Result<()> {
    run_with(config, RunOptions::default(), wait_for_signal()).await
}

/// Runs every camera of `config` and the HTTP API until `stop` completes, then stops them and
/// joins every task.
///
/// A source that can never work (bad spec, `rtsps://`, missing file or device:
/// [`Config::preflight_sources`]) stops the bridge before it serves anything. A camera whose
/// network source is down keeps serving HAP (it records nothing; `GET /api/cameras` and the
/// log say why), as do the others; a camera that cannot start at all (state dir unreadable,
/// port taken) stops the bridge at startup, as does an API address that cannot be bound.
///
/// # Errors
/// No cameras, a motion configuration the hub refuses, a camera that cannot start, MQTT that
/// cannot be set up, or the HTTP API failing.
pub async fn run_with(
    config: Config,
    options: RunOptions,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    anyhow::ensure!(!config.cameras.is_empty(), "no cameras configured");
    config.preflight_sources()?;
    let hub = MotionHub::new(
        config
            .cameras
            .iter()
            .map(|c| (c.name.clone(), c.motion.debounce.clone())),
    )
    .context("setting up motion")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let started = start_all(&config, &options, &hub, &mut tasks, &stop_rx).await;
    let (result, api) = match started {
        Ok(mut api) => match supervise(&mut api, stop).await {
            Supervised::Stop => (Ok(()), Some(api)),
            Supervised::ApiEnded(e) => (Err(e), None),
        },
        Err(e) => (Err(e), None),
    };
    info!("shutting down");
    let _ = stop_tx.send(true);
    if let Some(api) = api {
        tasks.spawn(async move {
            if let Ok(Err(e)) = api.await {
                warn!(error = %e, "HTTP API");
            }
        });
    }
    join_all(&mut tasks).await;
    info!("stopped");
    result
}

type ApiTask = tokio::task::JoinHandle<anyhow::Result<()>>;

/// Starts cameras, detectors, MQTT and the API; prints what a user needs to pair.
async fn start_all(
    config: &Config,
    options: &RunOptions,
    hub: &MotionHub,
    tasks: &mut JoinSet<()>,
    stop_rx: &watch::Receiver<bool>,
) -> anyhow::Result<ApiTask> {
    println!("hksv-bridge {}", env!("CARGO_PKG_VERSION"));
    let mut cameras = Vec::with_capacity(config.cameras.len());
    // Every host's cameras start reading before any host waits for its streams.
    let mut pending = Vec::new();
    for (host, members) in config.hap_hosts() {
        let options = members
            .iter()
            .map(|cam| camera_options(config, cam))
            .collect();
        let host_name = host.name.clone();
        let bridge = host.bridge;
        let begun = begin_host(host, options, hub.clone(), tasks, stop_rx.clone())
            .await
            .with_context(|| format!("starting {host_name:?}"))?;
        pending.push((host_name, bridge, begun));
    }
    for (host_name, bridge, begun) in pending {
        let started = begun.serve(tasks).await;
        print_host(&host_name, bridge, &started);
        cameras.extend(started);
    }
    if let Some(mqtt) = config.mqtt.clone() {
        let handle = motion::spawn_mqtt(mqtt, hub.clone()).context("starting MQTT")?;
        if let Some(publisher) = handle.publisher() {
            tasks.spawn(crate::mqtt_out::run(
                publisher,
                cameras.clone(),
                hub.clone(),
                stop_rx.clone(),
            ));
        }
        // The handle owns the client task; keep it until shutdown.
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            drop(handle);
        });
    }
    if options.demo_motion_ms > 0
        && let Some(first) = cameras.first()
    {
        tasks.spawn(demo_motion(
            first.clone(),
            Duration::from_millis(options.demo_motion_ms),
            stop_rx.clone(),
        ));
    }
    let state = ApiState {
        motion: hub.clone(),
        token: config.api.token.clone(),
        cameras: Arc::new(Cameras::new(cameras)),
        selftest_secret: write_selftest_secret(&config.state_root()),
    };
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("binding the HTTP API on {}", config.api.listen))?;
    // The bound address: with port 0 the configured one says nothing.
    let addr = listener.local_addr()?;
    println!("Status page: http://{addr}/");
    println!("HTTP API: http://{addr}/api/cameras");
    Ok(tokio::spawn(crate::api::serve_on(
        listener,
        state,
        stop_rx.clone(),
    )))
}

/// A fresh secret for this run's selftest-pairing routes, written 0600 to the state root
/// (`None`, logged, when it cannot be written: `selftest` then needs a paired-free camera).
fn write_selftest_secret(root: &std::path::Path) -> Option<String> {
    use hap_server::store::{FileStore, Store as _};
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let saved = FileStore::open(root)
        .and_then(|store| store.save(crate::api::SELFTEST_SECRET_FILE, secret.as_bytes()));
    match saved {
        Ok(()) => Some(secret),
        Err(e) => {
            warn!(error = %e, dir = %root.display(), "cannot write the selftest secret; selftest of paired cameras is off");
            None
        }
    }
}

/// How the run ended.
enum Supervised {
    /// The stop signal: the API task is still running and stops with the shutdown watch.
    Stop,
    /// The API ended first (e.g. its port is taken).
    ApiEnded(anyhow::Error),
}

/// Waits for the stop signal or the end of the API task.
async fn supervise(api: &mut ApiTask, stop: impl std::future::Future<Output = ()>) -> Supervised {
    tokio::select! {
        () = stop => Supervised::Stop,
        r = api => Supervised::ApiEnded(match r {
            Ok(Ok(())) => anyhow::anyhow!("the HTTP API stopped unexpectedly"),
            Ok(Err(e)) => e,
            Err(e) => anyhow::anyhow!("the HTTP API task failed: {e}"),
        }),
    }
}

/// Joins every task, aborting the rest after [`SHUTDOWN_GRACE_MS`].
async fn join_all(tasks: &mut JoinSet<()>) {
    let deadline = tokio::time::sleep(Duration::from_millis(SHUTDOWN_GRACE_MS));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = tasks.join_next() => match next {
                None => return,
                Some(Err(e)) if e.is_panic() => warn!(error = %e, "a task panicked"),
                Some(_) => {}
            },
            () = &mut deadline => {
                warn!(left = tasks.len(), "tasks still running after the grace period; aborting them");
                tasks.shutdown().await;
                return;
            }
        }
    }
}

/// What one camera needs from the configuration.
fn camera_options(config: &Config, cam: &CameraConfig) -> CameraOptions {
    CameraOptions {
        name: cam.name.clone(),
        input: MediaInput::Source(cam.source.clone()),
        bind: config.bind,
        port: cam.port,
        setup_code: cam.setup_code.clone(),
        audio: cam.audio,
        doorbell: cam.doorbell,
        max_recording_s: cam.max_recording_s,
        live_streams: cam.live_streams,
        live: config.live.live_config(),
        live_source: cam.live_source.clone().map(MediaInput::Source),
        detector: match cam.motion.detector_wanted(&cam.name, config.mqtt.as_ref()) {
            motion::DetectorChoice::On => DetectorSetting::On(cam.motion.detector.clone()),
            motion::DetectorChoice::Off(why) => DetectorSetting::Off(why),
        },
        detect_source: cam.detect_source.clone().map(MediaInput::Source),
        state_dir: config.state_dir_for(cam),
        mdns: config.mdns,
    }
}

/// Prints what a user needs to pair one HAP server (a camera, or the bridge and its cameras).
fn print_host(name: &str, bridge: bool, cameras: &[Camera]) {
    let Some(first) = cameras.first() else { return };
    let (code, uri) = first.setup_info();
    println!();
    if bridge {
        println!("{name} (bridge)");
        for c in cameras {
            println!("  Camera {:?}: AID {}", c.name(), c.aid());
        }
    } else {
        println!("{name}");
    }
    println!("  Setup code: {code}");
    println!("  Setup URI:  {uri}");
    if !first.is_paired()
        && let Some(qr) = crate::qr::render(&uri)
    {
        println!("{qr}");
    }
    // Unindented: scripts and tests read the port from this line.
    println!("Listening on {}:{}", first.bind(), first.port());
}

/// Toggles MotionDetected of `camera` every `period` (see [`RunOptions::demo_motion_ms`]).
async fn demo_motion(camera: Camera, period: Duration, mut stop: watch::Receiver<bool>) {
    let mut on = false;
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                on = !on;
                camera.set_motion_detected(on);
            }
            _ = stop.changed() => return,
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
