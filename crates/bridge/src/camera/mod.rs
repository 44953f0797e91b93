//! One HKSV camera accessory, its DataStreamManagement service and HDS listener, and the
//! recording flow. The HAP server it is reached through is its own (accessory mode: own port,
//! pairing and mDNS record) or a bridge shared with other cameras (bridge mode); see
//! [`crate::host`]. Its state dir (`camera-state.json`) is its own either way.
//!
//! ```text
//!  source task ─► Feeder (Fragmenter) ─► PrebufferRing ─► recording session (crate::recording) ─► hub
//!  MotionHub watch ─► MotionDetected (immediate event)        ▲ dataSend/open
//!  HAP writes (handlers, under the Core lock) ─► Shared state ─► control task (persist,
//!                                                mirror StatusActive, wake streams)
//! ```

pub mod counters;
pub mod detail;
pub mod history;
mod media;
mod services;
pub mod snapshot;
pub mod source_status;
mod start;
pub mod state;
pub mod supported;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hap_server::setup::SetupCode;
use hap_server::store::Store;
use hap_server::{CharId, Server, Value};
use motion::MotionHub;
use recorder::PrebufferRing;

use tracing::warn;

use crate::recording::DataStreamTransport;

pub use media::Feeder;
pub(crate) use media::MediaTaps;
pub(crate) use services::serial_for;
pub(crate) use start::{PreparedCamera, prepare};
pub use state::CameraState;
pub(crate) use state::StateCell;
pub use supported::SourceFacts;

/// Where a camera's media comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaInput {
    /// A `source` crate spec (`demo:`, `rtsp://…`, …), read by a task.
    Source(String),
    /// Nobody: the caller pushes units through [`Camera::feeder`] (tests, simulators).
    External,
}

/// What one camera needs to run.
#[derive(Clone)]
pub struct CameraOptions {
    /// Name: mDNS instance name, AccessoryInformation Name, MotionHub key.
    pub name: String,
    /// Media input.
    pub input: MediaInput,
    /// HAP listen address (the HDS listener binds the same address).
    pub bind: IpAddr,
    /// HAP port (0 = any free port).
    pub port: u16,
    /// Setup code; `None` keeps the persisted one or generates one.
    pub setup_code: Option<SetupCode>,
    /// Record audio when the source has AAC.
    pub audio: bool,
    /// Add a Doorbell service.
    pub doorbell: bool,
    /// Longest recording stream, seconds (then close reason 3).
    pub max_recording_s: u32,
    /// Keys, pairings, IDs and `camera-state.json`.
    pub state_dir: PathBuf,
    /// CameraRTPStreamManagement services, i.e. concurrent live viewers (1–4; default 2:
    /// an iPhone and an Apple TV).
    pub live_streams: u8,
    /// Live-view settings.
    pub live: crate::live::LiveConfig,
    /// The camera's sub-stream for small or remote live-view requests (`live_source`);
    /// `None`: every viewer gets the main stream.
    pub live_source: Option<MediaInput>,
    /// The built-in motion detector: on with its settings, or off and why.
    pub detector: DetectorSetting,
    /// What the detector decodes (`detect_source`, usually the camera's low-resolution
    /// sub-stream); `None`: the main stream. Unused while the detector is off.
    pub detect_source: Option<MediaInput>,
    /// Advertise over mDNS.
    pub mdns: bool,
}

/// Whether a camera runs the built-in motion detector.
#[derive(Debug, Clone, PartialEq)]
pub enum DetectorSetting {
    /// It runs with these settings, from the camera's start.
    On(motion::DetectorConfig),
    /// It does not; why (shown in the API and on the status page).
    Off(String),
}

impl std::fmt::Debug for CameraOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraOptions")
            .field("name", &self.name)
            .field("port", &self.port)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

/// Characteristic ids the camera updates from outside a request.
#[derive(Debug, Clone)]
pub(crate) struct Ids {
    motion_detected: CharId,
    status_active: CharId,
    switch_event: Option<CharId>,
    /// 205, 206, 207: re-derived when the source changes.
    supported: [CharId; 3],
    /// StreamingStatus (120) of each RTP service, in service order.
    streaming_status: Vec<CharId>,
}

/// State shared by the HAP handlers, the HDS tasks and the control task.
pub(crate) struct Shared {
    pub(crate) options: CameraOptions,
    /// The persisted HomeKit state and who is told of its changes.
    pub(crate) state: StateCell,
    pub(crate) ring: PrebufferRing,
    /// The HDS endpoint: prepared sessions, port, recording slot.
    pub(crate) transport: Arc<DataStreamTransport>,
    /// What the source delivers (as last seen; persisted in the state too).
    pub(crate) facts: Mutex<Option<SourceFacts>>,
    /// Where the [`Feeder`] hands video besides the fragmenter: detector, snapshots.
    pub(crate) taps: MediaTaps,
    pub(crate) motion: MotionHub,
    /// Live view: the feed, the RTP services and their streams.
    pub(crate) live: Arc<crate::live::LiveView>,
    /// What the `source` is doing (the API's `state`, `last_error`, `since`).
    pub(crate) source: Arc<source_status::SourceTracker>,
    /// What the `detect_source` is doing, when there is one and the detector runs.
    pub(crate) detect_source: Option<Arc<source_status::SourceTracker>>,
    /// Motion events and recordings (`GET /api/cameras/{name}/events`).
    pub(crate) history: Arc<history::History>,
    /// `/metrics` counters.
    pub(crate) counters: counters::Counters,
    /// The source's GOP as last measured: (frames, ms).
    pub(crate) gop: Mutex<Option<(u32, u64)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, CameraState> {
        self.state.lock()
    }

    /// See [`StateCell::update`].
    pub(crate) fn update(&self, f: impl FnOnce(&mut CameraState)) {
        self.state.update(f);
    }

    /// A controller's write, persisted before it is acknowledged ([`StateCell::commit`]); a
    /// failed write answers OutOfResource and changes nothing.
    pub(crate) fn commit_write(
        &self,
        f: impl FnOnce(&mut CameraState),
    ) -> Result<(), hap_server::HapStatus> {
        self.state.commit(f).map_err(|e| {
            tracing::warn!(camera = %self.options.name, error = %e, "could not save a HomeKit setting; the write is refused");
            hap_server::HapStatus::OUT_OF_RESOURCE
        })
    }
}

/// A running camera. Dropping it does not stop it: send `true` on the shutdown channel given to
/// [`Camera::start`] or [`crate::host::start_host`].
#[derive(Clone)]
pub struct Camera {
    shared: Arc<Shared>,
    server: Server,
    /// The HAP server's store (the bridge's in bridge mode): the temporary-pairing list.
    host_store: Arc<dyn Store>,
    port: u16,
    aid: u64,
    ids: Ids,
}

impl std::fmt::Debug for Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Camera")
            .field("name", &self.shared.options.name)
            .field("port", &self.port)
            .field("aid", &self.aid)
            .finish_non_exhaustive()
    }
}

impl Camera {
    /// The HAP server.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The HAP port (the bridge's in bridge mode).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Accessory instance ID: 1 in accessory mode, 2 and up (kept per name) in bridge mode.
    pub fn aid(&self) -> u64 {
        self.aid
    }

    /// The HAP listen address.
    pub fn bind(&self) -> IpAddr {
        self.shared.options.bind
    }

    /// Setup code (`XXX-XX-XXX`) and `X-HM://` setup URI (its paired flag is current).
    pub fn setup_info(&self) -> (String, String) {
        let core = self.server.lock();
        (core.setup_code().as_str().to_owned(), core.setup_uri())
    }

    /// Accessory pairing ID and Ed25519 long-term public key (what a controller verifies).
    pub fn accessory_identity(&self) -> (String, [u8; 32]) {
        let core = self.server.lock();
        let id = core.identity();
        (
            id.pairing_id.clone(),
            id.signing_key.verifying_key().to_bytes(),
        )
    }

    /// Where an embedder pushes the `detect_source` stream when it is
    /// [`MediaInput::External`]; `None` without a `detect_source` or a running detector.
    pub fn detect_feeder(&self) -> Option<media::DetectFeeder> {
        (self.shared.options.detect_source.is_some() && lock(&self.shared.taps.detector).is_some())
            .then(|| media::DetectFeeder::new(self.shared.clone()))
    }

    /// Sets MotionDetected directly, bypassing the [`MotionHub`] and its debounce (the
    /// `--demo-motion-ms` toggle); the next hub change overrides it.
    pub fn set_motion_detected(&self, detected: bool) {
        self.server
            .set_value(self.ids.motion_detected, Value::Bool(detected));
    }

    /// The HDS listener port.
    pub fn hds_port(&self) -> u16 {
        self.shared.transport.port()
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.shared.options.name
    }

    /// Media in the prebuffer ring, ms (0 before the first init segment).
    pub fn prebuffer_ms(&self) -> u64 {
        u64::try_from(self.shared.ring.buffered().as_millis()).unwrap_or(u64::MAX)
    }

    /// The prebuffer ring.
    pub fn ring(&self) -> &PrebufferRing {
        &self.shared.ring
    }

    /// A feeder that turns media units into ring fragments for this camera.
    pub fn feeder(&self) -> Feeder {
        Feeder::new(self.shared.clone())
    }

    /// Live-view streams running now.
    pub fn live_viewers(&self) -> usize {
        self.shared.live.viewers()
    }

    /// The live-view feed (readers start at its newest IDR).
    pub fn live_feed(&self) -> &recorder::LiveFeed {
        &self.shared.live.feed
    }

    /// The `live_source` feed, when the camera has one (with [`MediaInput::External`] the
    /// caller pushes into it).
    pub fn live_sub_feed(&self) -> Option<&recorder::LiveFeed> {
        self.shared.live.sub_feed.as_ref()
    }

    /// Whether a recording stream runs.
    pub fn is_recording(&self) -> bool {
        self.shared.transport.is_recording()
    }

    /// Live HDS connection tasks (a leak check for tests).
    pub fn hds_connections(&self) -> usize {
        self.shared.transport.connections()
    }

    /// Prepared HDS sessions still waiting for their TCP connection.
    pub fn prepared_sessions(&self) -> usize {
        self.shared.transport.prepared_len(now())
    }

    /// A copy of the persisted HomeKit state.
    pub fn state(&self) -> CameraState {
        self.shared.state().clone()
    }

    /// The recording history, newest first: up to `limit` entries with an id below `before`.
    pub fn history(&self, before: Option<u64>, limit: usize) -> Vec<history::HistoryEntry> {
        self.shared.history.page(before, limit)
    }

    /// A JPEG of the latest keyframe at `width`×`height` (blocking: may decode and encode).
    ///
    /// # Errors
    /// No keyframe yet, or it cannot be decoded.
    pub fn snapshot_jpeg(
        &self,
        width: u32,
        height: u32,
    ) -> Result<Vec<u8>, snapshot::SnapshotError> {
        let started = std::time::Instant::now();
        let jpeg = self
            .shared
            .taps
            .snapshots
            .jpeg(width, height)
            .map(|j| j.to_vec());
        self.shared.counters.snapshot(started.elapsed());
        jpeg
    }

    /// The `/metrics` counters now.
    pub fn counters(&self) -> counters::CountersSnapshot {
        self.shared.counters.values()
    }

    /// Live-view sessions, newest first, at most `limit`.
    pub fn live_sessions(&self, limit: usize) -> Vec<history::LiveEntry> {
        self.shared.history.live_page(limit)
    }

    /// What the camera's `source` is doing.
    pub fn source_status(&self) -> source_status::SourceStatus {
        self.shared.source.get()
    }

    /// Whether 205/206/207 describe the source: its stream was seen in this run, or persisted
    /// from an earlier one.
    pub fn knows_source(&self) -> bool {
        lock(&self.shared.facts).is_some()
    }

    /// Whether the camera reads its own `source` (not media fed by the embedder).
    pub fn reads_source(&self) -> bool {
        matches!(self.shared.options.input, MediaInput::Source(_))
    }

    /// Whether any controller is paired.
    pub fn is_paired(&self) -> bool {
        self.server.lock().is_paired()
    }

    /// Whether MotionDetected is on.
    pub fn motion_detected(&self) -> bool {
        self.server.lock().value(self.ids.motion_detected) == Some(&Value::Bool(true))
    }

    /// Doorbell press: ProgrammableSwitchEvent = 0 (single press), sent as an event even though
    /// the value does not change.
    ///
    /// # Errors
    /// When the camera has no Doorbell service.
    pub fn ring_doorbell(&self) -> Result<(), NotADoorbell> {
        let id = self.ids.switch_event.ok_or(NotADoorbell)?;
        let mut core = self.server.lock();
        // Two stores under one lock: the queued event is coalesced to the final 0.
        core.set_value(id, Value::Null, now());
        core.set_value(id, Value::UInt(0), now());
        Ok(())
    }

    /// Adds a temporary admin pairing (the selftest's). It is listed in
    /// [`TEMPORARY_PAIRINGS_FILE`] first, so that it is removed when it outlives `ttl` (a
    /// selftest interrupted) or the bridge restarts (a crash) even if nobody calls
    /// [`remove_temporary_pairing`](Self::remove_temporary_pairing). Adding an existing pairing
    /// with the same key (a selftest that paired with the setup code) only lists it.
    ///
    /// # Errors
    /// When the pairing or the list cannot be stored.
    pub fn add_temporary_pairing(
        &self,
        controller_id: &str,
        ltpk: [u8; 32],
        ttl: Duration,
    ) -> anyhow::Result<()> {
        {
            let mut core = self.server.lock();
            temporary::list(self.host_store.as_ref(), controller_id, true)?;
            core.add_controller_pairing(controller_id, ltpk, true)
                .map_err(|e| anyhow::anyhow!("adding pairing: {e}"))?;
        }
        let camera = self.clone();
        let id = controller_id.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(ttl).await;
            if temporary::is_listed(camera.host_store.as_ref(), &id) {
                warn!(camera = %camera.name(), controller_id = %id, "temporary pairing expired: removing it (selftest interrupted?)");
                if let Err(e) = camera.remove_temporary_pairing(&id) {
                    warn!(camera = %camera.name(), error = %e, "removing an expired temporary pairing");
                }
            }
        });
        Ok(())
    }

    /// Removes a temporary pairing (its sessions close) and unlists it; a pairing that is
    /// already gone is not an error.
    ///
    /// # Errors
    /// When the pairings or the list cannot be stored.
    pub fn remove_temporary_pairing(&self, controller_id: &str) -> anyhow::Result<()> {
        let mut core = self.server.lock();
        if core.find_pairing(controller_id).is_some() {
            core.remove_controller_pairing(controller_id)
                .map_err(|e| anyhow::anyhow!("removing pairing: {e}"))?;
        }
        temporary::list(self.host_store.as_ref(), controller_id, false)
    }
}

/// Blob in the HAP server's store: the controller IDs of temporary pairings still present.
pub const TEMPORARY_PAIRINGS_FILE: &str = "temporary-pairings.json";

pub(crate) mod temporary {
    //! The list of temporary pairings ([`super::TEMPORARY_PAIRINGS_FILE`]). Callers hold the
    //! HAP `Core` lock, which serialises the read-modify-write across a bridge's cameras.

    use hap_server::store::Store;

    use super::TEMPORARY_PAIRINGS_FILE;

    fn load(store: &dyn Store) -> Vec<String> {
        store
            .load(TEMPORARY_PAIRINGS_FILE)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Whether `id` is listed.
    pub(crate) fn is_listed(store: &dyn Store, id: &str) -> bool {
        load(store).iter().any(|x| x == id)
    }

    /// Lists (`on`) or unlists `id`.
    pub(crate) fn list(store: &dyn Store, id: &str, on: bool) -> anyhow::Result<()> {
        let mut ids = load(store);
        let before = ids.len();
        ids.retain(|x| x != id);
        if on {
            ids.push(id.to_owned());
        }
        if on || ids.len() != before {
            store.save(TEMPORARY_PAIRINGS_FILE, &serde_json::to_vec(&ids)?)?;
        }
        Ok(())
    }

    /// Removes every listed pairing from `core` (at start: left by a crash), then the list.
    /// Returns the IDs removed.
    pub(crate) fn purge(core: &mut hap_server::Core, store: &dyn Store) -> Vec<String> {
        let ids = load(store);
        let mut removed = Vec::new();
        for id in &ids {
            if core.find_pairing(id).is_some() && core.remove_controller_pairing(id).is_ok() {
                removed.push(id.clone());
            }
        }
        if !ids.is_empty() {
            let _ = store.save(TEMPORARY_PAIRINGS_FILE, b"[]");
        }
        removed
    }
}

/// The camera has no Doorbell service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a doorbell")]
pub struct NotADoorbell;
