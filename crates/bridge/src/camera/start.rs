//! Building a camera: [`prepare`] loads its state and binds its HDS listener; the host (see
//! [`crate::host`]) puts its accessory into a HAP server, then [`PreparedCamera::start`] spawns
//! its tasks (HDS listener, control, motion, media).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::Context as _;
use hap_server::core::ResourceHandler;
use hap_server::store::{FileStore, Store};
use hap_server::{Accessory, Database, Server, Value};
use motion::MotionHub;
use recorder::{LiveFeed, LiveFeedConfig, PrebufferConfig, PrebufferRing};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::counters::Counters;
use super::history::{self, Conditions, History};
use super::source_status::{SourceState, SourceTracker};
use super::{
    Camera, CameraOptions, CameraState, DetectorSetting, Ids, MediaInput, MediaTaps, Shared,
    StateCell, lock, media, services, snapshot, supported,
};
use crate::live::{LiveEnd, LiveView, StreamService};
use crate::recording::{
    self, DataStreamTransport, DriverContext, EventSink, RecordingEvent, SessionOptions,
};

/// A camera whose state is loaded and whose HDS listener is bound, not yet served.
pub(crate) struct PreparedCamera {
    shared: Arc<Shared>,
    hds_listener: TcpListener,
    control_rx: mpsc::UnboundedReceiver<()>,
    aid: u64,
}

impl PreparedCamera {
    /// The accessory with its AID.
    pub(crate) fn aid(&self) -> u64 {
        self.aid
    }

    /// The camera's HAP accessory (services and handlers).
    pub(crate) fn accessory(&self) -> Accessory {
        services::camera_accessory(&self.shared, self.aid)
    }

    /// Its `/resource` (snapshot) handler.
    pub(crate) fn resource_handler(&self) -> ResourceHandler {
        snapshot::resource_handler_for(weak(&self.shared), self.aid)
    }

    /// The characteristic ids the camera updates, from the HAP database it was put in.
    ///
    /// # Errors
    /// The accessory lacks MotionDetected or StatusActive.
    pub(crate) fn ids(&self, db: &Database) -> anyhow::Result<Ids> {
        services::ids(
            db,
            self.aid,
            self.shared.options.doorbell,
            self.shared.live.services.len(),
        )
        .context("camera accessory lacks MotionDetected or StatusActive")
    }

    /// Serves the camera through `server` (listening on `port`; `host_store` keeps its
    /// temporary-pairing list) and spawns its tasks into `tasks` until `shutdown`.
    pub(crate) fn start(
        self,
        server: &Server,
        host_store: Arc<dyn Store>,
        port: u16,
        ids: Ids,
        tasks: &mut JoinSet<()>,
        shutdown: &watch::Receiver<bool>,
    ) -> Camera {
        let camera = Camera {
            shared: self.shared.clone(),
            server: server.clone(),
            host_store,
            port,
            aid: self.aid,
            ids,
        };
        info!(camera = %camera.name(), aid = self.aid, port, hds_port = self.shared.transport.port(), "camera ready");
        tasks.spawn(recording::accept_loop(
            self.hds_listener,
            driver_context(&self.shared, server),
            shutdown.clone(),
        ));
        tasks.spawn(control_task(
            camera.clone(),
            self.control_rx,
            shutdown.clone(),
        ));
        tasks.spawn(motion_task(camera.clone(), shutdown.clone()));
        let wake = weak(&self.shared);
        let on_status: crate::live::StatusHook = Arc::new(move || {
            if let Some(shared) = wake.upgrade() {
                shared.state.wake();
            }
        });
        let history = Arc::downgrade(&self.shared.history);
        let on_session: crate::live::SessionHook = Arc::new(move |record| {
            if let Some(h) = history.upgrade() {
                h.live_ended(&record);
            }
        });
        tasks.spawn(self.shared.live.run(
            self.shared.options.name.clone(),
            server.clone(),
            on_status,
            on_session,
            shutdown.clone(),
        ));
        let name = self.shared.options.name.clone();
        if let MediaInput::Source(spec) = &self.shared.options.input {
            tasks.spawn(media::source_task(
                self.shared.source.clone(),
                spec.clone(),
                camera.feeder(),
                shutdown.clone(),
            ));
        }
        if let (Some(MediaInput::Source(spec)), Some(tracker)) = (
            &self.shared.options.detect_source,
            &self.shared.detect_source,
        ) {
            tasks.spawn(media::source_task(
                tracker.clone(),
                spec.clone(),
                media::DetectFeeder::new(self.shared.clone()),
                shutdown.clone(),
            ));
        }
        if let (Some(MediaInput::Source(spec)), Some(feed)) =
            (&self.shared.options.live_source, &self.shared.live.sub_feed)
        {
            tasks.spawn(media::source_task(
                Arc::new(SourceTracker::new(
                    name,
                    "live_source",
                    SourceState::Starting,
                )),
                spec.clone(),
                media::SubStream(feed.clone()),
                shutdown.clone(),
            ));
        }
        camera
    }
}

/// Loads the camera's state from its own directory and binds its HDS listener.
pub(crate) async fn prepare(
    options: CameraOptions,
    motion: &MotionHub,
    aid: u64,
) -> anyhow::Result<PreparedCamera> {
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
    let history = Arc::new(History::load(&options.name, store.clone()));
    let (cell, control_rx) = StateCell::new(state, store);
    let snapshots = snapshot::Snapshots::new(&options.name);
    let live_services = (0..usize::from(options.live_streams.clamp(1, 4)))
        .map(|i| Arc::new(StreamService::new(i, options.live, options.bind)))
        .collect();
    let mut live = LiveView::new(
        LiveFeed::new(LiveFeedConfig::default()),
        options
            .live_source
            .as_ref()
            .map(|_| LiveFeed::new(LiveFeedConfig::default())),
        live_services,
    );
    live.audio = options.audio;
    let live = Arc::new(live);
    let options_name = options.name.clone();
    // Started here, not once the host is up, so it sees the stream from its first keyframe.
    let (detector, detector_off) = match &options.detector {
        DetectorSetting::On(config) => {
            match motion::spawn_detector(motion.clone(), &options.name, config) {
                Ok(handle) => {
                    let input = if options.detect_source.is_some() {
                        "detect_source"
                    } else {
                        "source"
                    };
                    info!(camera = %options.name, input, "motion detector on");
                    (Some(handle), None)
                }
                // The camera still works with HTTP/MQTT motion.
                Err(e) => {
                    warn!(camera = %options.name, error = %e, "motion detector not started");
                    (None, Some(format!("could not start: {e}")))
                }
            }
        }
        DetectorSetting::Off(why) => {
            info!(camera = %options.name, why = %why, "motion detector off");
            (None, Some(why.clone()))
        }
    };
    let detect_source = match (&detector, &options.detect_source) {
        (Some(_), Some(input)) => Some(Arc::new(SourceTracker::new(
            options_name.clone(),
            "detect_source",
            match input {
                MediaInput::Source(_) => SourceState::Starting,
                MediaInput::External => SourceState::Streaming,
            },
        ))),
        _ => None,
    };
    // Media fed by the embedder (tests) flows from the start.
    let source_start = match options.input {
        MediaInput::Source(_) => SourceState::Starting,
        MediaInput::External => SourceState::Streaming,
    };
    let shared = Arc::new(Shared {
        options,
        state: cell,
        ring,
        transport: Arc::new(DataStreamTransport::new(hds_port)),
        facts: Mutex::new(facts),
        taps: MediaTaps {
            detector: Mutex::new(detector),
            detector_off,
            snapshots,
            detector_warned: Mutex::new(None),
        },
        motion: motion.clone(),
        live,
        history,
        counters: super::counters::Counters::default(),
        gop: Mutex::new(None),
        source: Arc::new(SourceTracker::new(options_name, "source", source_start)),
        detect_source,
    });
    Ok(PreparedCamera {
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
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let now = tokio::time::Instant::now().into_std();
        match ev {
            RecordingEvent::Opened {
                stream_id,
                prebuffer_ms,
                prebuffer_fragments,
                ..
            } => {
                Counters::bump(&shared.counters.recordings_opened);
                let latency =
                    shared
                        .history
                        .opened(*stream_id, *prebuffer_ms, *prebuffer_fragments, now);
                if let Some(ms) = latency {
                    shared.counters.observe_open_latency(ms);
                }
            }
            RecordingEvent::Refused { reason, .. } => {
                Counters::bump(&shared.counters.recordings_refused);
                shared.history.refused(&format!("{reason:?}"));
            }
            RecordingEvent::Ended {
                stream_id,
                why,
                fragments,
                bytes,
            } => {
                let c = &shared.counters;
                if history::describe_end(why).1 {
                    Counters::bump(&c.recordings_completed);
                } else {
                    Counters::bump(&c.recordings_failed);
                }
                c.hds_bytes
                    .fetch_add(*bytes, std::sync::atomic::Ordering::Relaxed);
                shared
                    .history
                    .ended(*stream_id, why, *fragments, *bytes, now);
            }
            _ => {}
        }
        let RecordingEvent::Opened { stream_id, .. } = ev else {
            return;
        };
        let Some(sel) = shared.state().selected_configuration() else {
            return;
        };
        let facts = lock(&shared.facts).clone();
        let diffs = supported::differences(&sel, facts.as_ref());
        if !diffs.is_empty() {
            info!(camera = %shared.options.name, stream_id, differences = %diffs.join("; "), "the selection differs from the source");
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
        conditions: shared.state.conditions(),
        motion: shared.motion.clone(),
        server: server.clone(),
        events: Some(events),
    }
}

fn weak(shared: &Arc<Shared>) -> Weak<Shared> {
    Arc::downgrade(shared)
}

/// Persists state changes and mirrors HomeKitCameraActive into StatusActive (§5.5).
async fn control_task(
    camera: Camera,
    mut rx: mpsc::UnboundedReceiver<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(()) = msg else { return };
                while rx.try_recv().is_ok() {}
                let state = camera.shared.state.persist().unwrap_or_else(|e| {
                    warn!(camera = %camera.name(), error = %e, "cannot persist the camera state");
                    camera.shared.state().clone()
                });
                camera.server.set_value(camera.ids.status_active, Value::Bool(state.camera_active));
                // Unchanged values send no event (hap-server compares).
                let sup = services::current_supported(&camera.shared);
                let [c205, c206, c207] = camera.ids.supported;
                camera.server.set_value(c205, Value::Bytes(sup.camera.encode()));
                camera.server.set_value(c206, Value::Bytes(sup.video.encode()));
                camera.server.set_value(c207, Value::Bytes(sup.audio.encode()));
                // Live view: Active = 0 or HomeKitCameraActive = 0 ends every stream (HAP-NodeJS).
                let live = &camera.shared.live;
                if !(state.camera_active && state.rtp_active) {
                    for s in &live.services {
                        s.stop(LiveEnd::Disabled);
                    }
                }
                for (s, id) in live.services.iter().zip(&camera.ids.streaming_status) {
                    camera.server.set_value(*id, Value::Bytes(s.status().encode()));
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// MotionHub → MotionDetected, and each motion event into the recording history.
async fn motion_task(camera: Camera, mut shutdown: watch::Receiver<bool>) {
    let Ok(mut rx) = camera.shared.motion.subscribe(camera.name()) else {
        return;
    };
    let history = camera.shared.history.clone();
    let mut was = false;
    // When the history next needs a look (a motion event waiting for its hub).
    let mut tick: Option<tokio::time::Instant> = None;
    loop {
        let (detected, source) = {
            let m = rx.borrow_and_update();
            (m.detected, m.source)
        };
        camera
            .server
            .set_value(camera.ids.motion_detected, Value::Bool(detected));
        let now = tokio::time::Instant::now();
        if detected && !was {
            let state = camera.shared.state().clone();
            let conditions = Conditions {
                paired: camera.is_paired(),
                camera_active: state.camera_active,
                recording_active: state.recording_active,
                selected: state.selected.is_some(),
            };
            let trigger = source.map(|s| s.to_string());
            if let Some(t) = &trigger {
                camera.shared.counters.motion(t);
            }
            history.motion_on(trigger.as_deref(), conditions, now.into_std());
        } else if !detected && was {
            history.motion_off(now.into_std());
            tick = Some(now + history::HUB_GRACE);
        }
        was = detected;
        loop {
            tokio::select! {
                r = rx.changed() => {
                    if r.is_err() { return }
                    break;
                }
                () = async {
                    match tick {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => {
                    tick = history
                        .tick(tokio::time::Instant::now().into_std())
                        .map(tokio::time::Instant::from_std);
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
