//! The HAP accessory server that serves cameras: one camera with AID 1 (accessory mode), or a
//! bridge accessory with AID 1 carrying each camera as a bridged accessory with AID 2 and up
//! (bridge mode, HAP specification R2 §2.5.3.2).
//!
//! A bridged camera keeps its AID across restarts and configuration edits: the AIDs are kept
//! per camera (by the [`slug`] of its name) in `aids.json` in the bridge's
//! state directory and never reused, because the Home app files rooms, automations and recordings
//! under the AID.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hap_server::core::{CATEGORY_BRIDGE, CATEGORY_IP_CAMERA, CoreConfig, ResourceHandler};
use hap_server::store::{FileStore, Store};
use hap_server::{Accessory, Core, HapStatus, Server, ServerOptions};
use motion::MotionHub;
use serde_json::Value as Json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::accessory;
use crate::camera::{self, Camera, CameraOptions, PreparedCamera};
use crate::config::{HapHostConfig, slug};

/// Blob in the bridge's store: `{"<camera slug>": aid, …}`.
pub const AIDS_FILE: &str = "aids.json";

impl Camera {
    /// Starts the camera in accessory mode: its own HAP server on `options.port`, with the
    /// identity and pairings in `options.state_dir`; see [`start_host`].
    ///
    /// # Errors
    /// See [`start_host`].
    pub async fn start(
        options: CameraOptions,
        motion: MotionHub,
        tasks: &mut JoinSet<()>,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        let host = HapHostConfig {
            name: options.name.clone(),
            bind: options.bind,
            port: options.port,
            setup_code: options.setup_code.clone(),
            state_dir: options.state_dir.clone(),
            mdns: options.mdns,
            bridge: false,
        };
        let mut cameras = start_host(host, vec![options], motion, tasks, shutdown).await?;
        cameras.pop().context("no camera started")
    }
}

/// The HAP server identity [`Core::open`] gets for `host` (also read by `pair-info`).
pub(crate) fn core_config(host: &HapHostConfig) -> CoreConfig {
    CoreConfig {
        name: host.name.clone(),
        model: accessory::MODEL_NAME.to_owned(),
        category: if host.bridge {
            CATEGORY_BRIDGE
        } else {
            CATEGORY_IP_CAMERA
        },
        setup_code: host.setup_code.clone(),
        firmware_revision: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// Starts one HAP server for `cameras` and each camera's tasks (HDS listener, control, motion,
/// media) into `tasks`; everything stops when `shutdown` becomes `true`. Returns the cameras
/// in the order given.
///
/// # Errors
/// No camera, several cameras without `host.bridge`, a state directory that cannot be opened
/// or is corrupt, or a listener that cannot be bound.
pub async fn start_host(
    host: HapHostConfig,
    cameras: Vec<CameraOptions>,
    motion: MotionHub,
    tasks: &mut JoinSet<()>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Vec<Camera>> {
    Ok(begin_host(host, cameras, motion, tasks, shutdown)
        .await?
        .serve(tasks)
        .await)
}

/// A HAP server whose cameras run (sources read, detectors on) but which is not yet
/// advertised or answering: [`PendingHost::serve`] does that once the sources are known.
/// Beginning every host before serving any lets a multi-camera start wait for all streams at
/// once (one GOP), not one after another.
pub struct PendingHost {
    host: HapHostConfig,
    server: Server,
    listener: TcpListener,
    port: u16,
    cameras: Vec<Camera>,
    shutdown: watch::Receiver<bool>,
}

impl PendingHost {
    /// The cameras, in the order given.
    pub fn cameras(&self) -> &[Camera] {
        &self.cameras
    }

    /// Waits (at most [`SOURCE_FACTS_WAIT`]) until the cameras' streams are known, then
    /// advertises the server and answers HAP; returns the cameras.
    pub async fn serve(self, tasks: &mut JoinSet<()>) -> Vec<Camera> {
        let Self {
            host,
            server,
            listener,
            port,
            cameras,
            shutdown,
        } = self;
        // Hubs select from 205/206/207 once, at pairing: let them describe the source first.
        wait_for_source_facts(&cameras, SOURCE_FACTS_WAIT, &shutdown).await;
        if host.mdns {
            server.advertise(port);
        }
        {
            let server = server.clone();
            let stop = shutdown.clone();
            let name = host.name.clone();
            tasks.spawn(async move {
                if let Err(e) = server.serve(listener, ServerOptions::default(), stop).await {
                    warn!(host = %name, error = %e, "HAP server stopped");
                }
            });
        }
        info!(host = %host.name, port, bridge = host.bridge, cameras = cameras.len(), "HAP server ready");
        cameras
    }
}

/// The first half of [`start_host`]: everything but the wait for the sources and serving.
///
/// # Errors
/// As [`start_host`].
pub async fn begin_host(
    host: HapHostConfig,
    cameras: Vec<CameraOptions>,
    motion: MotionHub,
    tasks: &mut JoinSet<()>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<PendingHost> {
    anyhow::ensure!(!cameras.is_empty(), "no cameras to serve");
    anyhow::ensure!(
        host.bridge || cameras.len() == 1,
        "a camera accessory serves exactly one camera; use bridge mode for several"
    );
    let host_store: Arc<dyn Store> = Arc::new(
        FileStore::open(&host.state_dir)
            .with_context(|| format!("opening state directory {}", host.state_dir.display()))?,
    );
    let aids = if host.bridge {
        let slugs: Vec<String> = cameras.iter().map(|c| slug(&c.name)).collect();
        assign_aids(host_store.as_ref(), &slugs)?
    } else {
        vec![1]
    };
    let mut prepared = Vec::with_capacity(cameras.len());
    for (options, aid) in cameras.into_iter().zip(aids) {
        let name = options.name.clone();
        prepared.push(
            camera::prepare(options, &motion, aid)
                .await
                .with_context(|| format!("camera {name:?}"))?,
        );
    }
    let listener = TcpListener::bind(SocketAddr::new(host.bind, host.port))
        .await
        .with_context(|| format!("binding {}:{}", host.bind, host.port))?;
    let port = listener.local_addr()?.port();

    let mut accessories = Vec::with_capacity(prepared.len() + 1);
    if host.bridge {
        accessories.push(bridge_accessory(&host.name));
    }
    accessories.extend(prepared.iter().map(PreparedCamera::accessory));
    let mut core = Core::open(
        core_config(&host),
        host_store.clone(),
        accessories,
        &mut rand::rng(),
    )
    .context("loading accessory state")?;
    let stale = camera::temporary::purge(&mut core, host_store.as_ref());
    if !stale.is_empty() {
        warn!(host = %host.name, controller_ids = ?stale, "removed temporary (selftest) pairings left by an earlier run");
    }
    core.set_resource_handler(resource_handler(host.bridge, &prepared));
    let mut ids = Vec::with_capacity(prepared.len());
    for p in &prepared {
        ids.push(p.ids(core.database())?);
    }
    let server = Server::new(core);
    let mut started = Vec::with_capacity(prepared.len());
    for (p, ids) in prepared.into_iter().zip(ids) {
        let camera = p.start(&server, host_store.clone(), port, ids, tasks, &shutdown);
        started.push(camera);
    }
    Ok(PendingHost {
        host,
        server,
        listener,
        port,
        cameras: started,
        shutdown,
    })
}

/// Longest wait at start for a camera's first fragment (it gives 205/206/207 the source's
/// resolution, frame rate, profile and audio) before the HAP server is advertised and answers.
pub const SOURCE_FACTS_WAIT: Duration = Duration::from_secs(10);

/// Waits until every camera that reads a source and has no known (or persisted) stream facts
/// has them, its source is down (retrying or failed: no facts soon), `limit` has passed or
/// `shutdown` is set. Each camera still without facts gets one warning: it advertises the
/// defaults until its stream arrives, and then changes them (with events).
async fn wait_for_source_facts(
    cameras: &[Camera],
    limit: Duration,
    shutdown: &watch::Receiver<bool>,
) {
    use crate::camera::source_status::SourceState;
    let pending = |c: &&Camera| c.reads_source() && !c.knows_source();
    let started = tokio::time::Instant::now();
    let n = cameras.iter().filter(pending).count();
    if n > 0 {
        info!(
            cameras = n,
            limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
            "new camera: reading its stream before it is advertised"
        );
    }
    loop {
        let waiting = cameras.iter().filter(pending).any(|c| {
            matches!(
                c.source_status().state,
                SourceState::Starting | SourceState::Streaming
            )
        });
        if !waiting || started.elapsed() >= limit || *shutdown.borrow() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in cameras.iter().filter(pending) {
        let status = c.source_status();
        warn!(
            camera = %c.name(),
            waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            source = status.state.as_str(),
            "source stream not known yet; advertising default recording configurations until it is"
        );
    }
}

/// The bridge accessory (AID 1): AccessoryInformation and ProtocolInformation only.
fn bridge_accessory(name: &str) -> Accessory {
    Accessory::new(1)
        .service(accessory::information(name, &camera::serial_for(name)))
        .service(accessory::protocol_information())
}

/// The AIDs of `slugs` (in order) from [`AIDS_FILE`], giving each new camera the next AID after
/// every AID ever handed out (2 for the first) and saving the map when it grew.
///
/// # Errors
/// The store fails, or the file is corrupt (renumbering would scramble the user's Home).
pub(crate) fn assign_aids(store: &dyn Store, slugs: &[String]) -> anyhow::Result<Vec<u64>> {
    let mut map: BTreeMap<String, u64> = match store.load(AIDS_FILE)? {
        Some(b) => serde_json::from_slice(&b)
            .with_context(|| format!("{AIDS_FILE} is corrupt; restore it from a backup"))?,
        None => BTreeMap::new(),
    };
    let mut next = map.values().copied().max().unwrap_or(1).max(1) + 1;
    let mut grew = false;
    let aids = slugs
        .iter()
        .map(|s| {
            *map.entry(s.clone()).or_insert_with(|| {
                grew = true;
                next += 1;
                next - 1
            })
        })
        .collect();
    if grew {
        store.save(AIDS_FILE, &serde_json::to_vec_pretty(&map)?)?;
    }
    Ok(aids)
}

/// `/resource` (snapshots): the camera's handler in accessory mode; in bridge mode the handler
/// of the camera whose AID the request names (no or an unknown AID → -70409).
fn resource_handler(bridge: bool, cameras: &[PreparedCamera]) -> ResourceHandler {
    let handlers: Vec<(u64, ResourceHandler)> = cameras
        .iter()
        .map(|p| (p.aid(), p.resource_handler()))
        .collect();
    if !bridge && let Some((_, h)) = handlers.first() {
        return h.clone();
    }
    Arc::new(move |ctx, body: &Json| {
        let aid = body.get("aid").and_then(Json::as_u64);
        let (_, handler) = handlers
            .iter()
            .find(|(a, _)| Some(*a) == aid)
            .ok_or(HapStatus::RESOURCE_DOES_NOT_EXIST)?;
        handler(ctx, body)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hap_server::store::MemoryStore;

    fn slugs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn aids_are_kept_per_camera_and_never_reused() {
        let store = MemoryStore::new();
        let first = assign_aids(&store, &slugs(&["porch", "garage"])).unwrap();
        assert_eq!(first, vec![2, 3]);
        // Reordered, one removed, one added: old AIDs stay, the new one does not reuse 2.
        let second = assign_aids(&store, &slugs(&["yard", "garage"])).unwrap();
        assert_eq!(second, vec![4, 3]);
        let third = assign_aids(&store, &slugs(&["porch", "yard"])).unwrap();
        assert_eq!(third, vec![2, 4]);
    }

    #[test]
    fn a_corrupt_aid_file_is_an_error_not_a_renumbering() {
        let store = MemoryStore::new();
        store.save(AIDS_FILE, b"{not json").unwrap();
        let e = assign_aids(&store, &slugs(&["porch"])).unwrap_err();
        assert!(format!("{e:#}").contains(AIDS_FILE), "{e:#}");
    }
}
