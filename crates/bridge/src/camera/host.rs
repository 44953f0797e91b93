//! The HAP accessory server that serves cameras: one camera with AID 1 (accessory mode), or a
//! bridge accessory with AID 1 carrying each camera as a bridged accessory with AID 2 and up
//! (bridge mode, HAP specification R2 §2.5.3.2).
//!
//! A bridged camera keeps its AID across restarts and configuration edits: the AIDs are kept
//! per camera (by the [`slug`] of its name) in `aids.json` in the bridge's
//! state directory and never reused, because the Home app files rooms, automations and recordings
//! under the AID.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::Context as _;
use hap_server::core::{CATEGORY_BRIDGE, CATEGORY_IP_CAMERA, CoreConfig, ResourceHandler};
use hap_server::setup::SetupCode;
use hap_server::store::{FileStore, Store};
use hap_server::{Accessory, Core, HapStatus, Server, ServerOptions};
use motion::MotionHub;
use recorder::{PrebufferConfig, PrebufferRing};
use serde_json::Value as Json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::{
    Camera, CameraOptions, CameraState, Control, MediaInput, Shared, conditions, control_task,
    media, motion_task, services, snapshot, supported,
};
use crate::accessory;
use crate::config::slug;
use crate::recording::{
    self, DataStreamTransport, DriverContext, EventSink, RecordingEvent, SessionOptions,
};

/// Blob in the bridge's store: `{"<camera slug>": aid, …}`.
pub const AIDS_FILE: &str = "aids.json";

/// The HAP server of [`start_host`].
#[derive(Clone)]
pub struct HostOptions {
    /// mDNS instance name; in bridge mode also the bridge accessory's Name.
    pub name: String,
    /// HAP listen address.
    pub bind: IpAddr,
    /// HAP port (0 = any free port).
    pub port: u16,
    /// Setup code; `None` keeps the persisted one or generates one.
    pub setup_code: Option<SetupCode>,
    /// Identity, setup code, pairings, IIDs (and AIDs in bridge mode).
    pub state_dir: PathBuf,
    /// Advertise over mDNS.
    pub mdns: bool,
    /// Bridge mode: a bridge accessory with AID 1, cameras from AID 2.
    pub bridge: bool,
}

impl std::fmt::Debug for HostOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostOptions")
            .field("name", &self.name)
            .field("port", &self.port)
            .field("state_dir", &self.state_dir)
            .field("bridge", &self.bridge)
            .finish_non_exhaustive()
    }
}

/// A camera whose state is loaded and whose HDS listener is bound, not yet served.
struct Prepared {
    shared: Arc<Shared>,
    hds_listener: TcpListener,
    control_rx: mpsc::UnboundedReceiver<Control>,
    aid: u64,
}

/// Starts one HAP server for `cameras` and each camera's tasks (HDS listener, control, motion,
/// media) into `tasks`; everything stops when `shutdown` becomes `true`. Returns the cameras
/// in the order given.
///
/// # Errors
/// No camera, several cameras without `host.bridge`, a state directory that cannot be opened
/// or is corrupt, or a listener that cannot be bound.
pub async fn start_host(
    host: HostOptions,
    cameras: Vec<CameraOptions>,
    motion: MotionHub,
    tasks: &mut JoinSet<()>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Vec<Camera>> {
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
            prepare(options, &motion, aid)
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
    accessories.extend(
        prepared
            .iter()
            .map(|p| services::camera_accessory(&p.shared, p.aid)),
    );
    let mut core = Core::open(
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
        },
        host_store.clone(),
        accessories,
        &mut rand::rng(),
    )
    .context("loading accessory state")?;
    let stale = super::temporary::purge(&mut core, host_store.as_ref());
    if !stale.is_empty() {
        warn!(host = %host.name, controller_ids = ?stale, "removed temporary (selftest) pairings left by an earlier run");
    }
    core.set_resource_handler(resource_handler(host.bridge, &prepared));
    let mut ids = Vec::with_capacity(prepared.len());
    for p in &prepared {
        ids.push(
            services::ids(core.database(), p.aid, p.shared.options.doorbell)
                .context("camera accessory lacks MotionDetected or StatusActive")?,
        );
    }
    let server = Server::new(core);
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
    info!(host = %host.name, port, bridge = host.bridge, cameras = prepared.len(), "HAP server ready");

    let mut started = Vec::with_capacity(prepared.len());
    for (p, ids) in prepared.into_iter().zip(ids) {
        let camera = Camera {
            shared: p.shared.clone(),
            server: server.clone(),
            host_store: host_store.clone(),
            port,
            aid: p.aid,
            ids,
        };
        info!(camera = %camera.name(), aid = p.aid, port, hds_port = p.shared.transport.port(), "camera ready");
        tasks.spawn(recording::accept_loop(
            p.hds_listener,
            driver_context(&p.shared, &server),
            shutdown.clone(),
        ));
        tasks.spawn(control_task(camera.clone(), p.control_rx, shutdown.clone()));
        tasks.spawn(motion_task(camera.clone(), shutdown.clone()));
        if let MediaInput::Source(spec) = &p.shared.options.input {
            tasks.spawn(media::source_task(
                spec.clone(),
                camera.feeder(),
                shutdown.clone(),
            ));
        }
        started.push(camera);
    }
    Ok(started)
}

/// Loads the camera's state from its own directory and binds its HDS listener.
async fn prepare(options: CameraOptions, motion: &MotionHub, aid: u64) -> anyhow::Result<Prepared> {
    if !motion.contains(&options.name) {
        anyhow::bail!(
            "camera {:?} is not registered with the motion hub",
            options.name
        );
    }
    let store: Arc<dyn Store> = Arc::new(
        FileStore::open(&options.state_dir)
            .with_context(|| format!("opening state directory {}", options.state_dir.display()))?,
    );
    let state = CameraState::load(store.as_ref());
    let facts = state.source_facts.clone();
    let hds_listener = TcpListener::bind(SocketAddr::new(options.bind, 0))
        .await
        .with_context(|| format!("binding the HDS listener on {}", options.bind))?;
    let hds_port = hds_listener.local_addr()?.port();
    let ring = PrebufferRing::new(PrebufferConfig::default())?;
    let (control, control_rx) = mpsc::unbounded_channel();
    let (conditions, _) = watch::channel(conditions(&state));
    let snapshots = snapshot::Snapshots::new(&options.name);
    let shared = Arc::new(Shared {
        options,
        state: Mutex::new(state),
        store,
        ring,
        transport: Arc::new(DataStreamTransport::new(hds_port)),
        facts: Mutex::new(facts),
        detector: Mutex::new(None),
        motion: motion.clone(),
        conditions,
        control,
        snapshots,
    });
    Ok(Prepared {
        shared,
        hds_listener,
        control_rx,
        aid,
    })
}

/// What the camera's HDS connections need; their events are logged with how the selection
/// differs from what the source delivers.
fn driver_context(shared: &Arc<Shared>, server: &Server) -> DriverContext {
    let weak = weak(shared);
    let events: EventSink = Arc::new(move |ev| {
        let (RecordingEvent::Opened { stream_id, .. }, Some(shared)) = (ev, weak.upgrade()) else {
            return;
        };
        let Some(sel) = shared.state().selected_configuration() else {
            return;
        };
        let facts = super::lock(&shared.facts).clone();
        let diffs = supported::differences(&sel, facts.as_ref());
        if !diffs.is_empty() {
            info!(camera = %shared.options.name, stream_id, ?diffs, "the selection differs from the source");
        }
    });
    DriverContext {
        camera: shared.options.name.clone(),
        transport: shared.transport.clone(),
        ring: shared.ring.clone(),
        options: SessionOptions {
            audio_configured: shared.options.audio,
            max_recording: Duration::from_secs(u64::from(shared.options.max_recording_s.max(1))),
            init_wait: recording::session::INIT_WAIT,
        },
        conditions: shared.conditions.subscribe(),
        motion: shared.motion.clone(),
        server: server.clone(),
        events: Some(events),
    }
}

/// The bridge accessory (AID 1): AccessoryInformation and ProtocolInformation only.
fn bridge_accessory(name: &str) -> Accessory {
    Accessory::new(1)
        .service(accessory::information(name, &services::serial_for(name)))
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
fn resource_handler(bridge: bool, cameras: &[Prepared]) -> ResourceHandler {
    let handlers: Vec<(u64, ResourceHandler)> = cameras
        .iter()
        .map(|p| {
            (
                p.aid,
                snapshot::resource_handler_for(weak(&p.shared), p.aid),
            )
        })
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

fn weak(shared: &Arc<Shared>) -> Weak<Shared> {
    Arc::downgrade(shared)
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
