//! The camera's persisted HomeKit state (§2.5): the operating-mode switches, recording
//! `Active`, RecordingAudioActive and the selected recording configuration, kept across
//! restarts in `camera-state.json` in the camera's state dir (written atomically, 0600, by
//! hap-server's [`FileStore`](hap_server::store::FileStore)).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use base64::engine::general_purpose::STANDARD as BASE64;
use hap_server::store::Store;
use hap_tlv::hksv::SelectedCameraRecordingConfiguration;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::SourceFacts;
use crate::recording::{Conditions, Selection};

/// The camera's [`CameraState`] as the HAP handlers, the recording sessions and the control
/// task share it. Every change goes through [`StateCell::update`], which hands the recording
/// [`Conditions`] to the sessions at once and wakes the control task (which persists the state
/// and mirrors it into StatusActive and 205–207).
pub(crate) struct StateCell {
    state: Mutex<CameraState>,
    store: Arc<dyn Store>,
    conditions: watch::Sender<Conditions>,
    changed: mpsc::UnboundedSender<()>,
}

impl StateCell {
    /// A cell over `state` (loaded from `store`); the receiver wakes the control task.
    pub(crate) fn new(
        state: CameraState,
        store: Arc<dyn Store>,
    ) -> (Self, mpsc::UnboundedReceiver<()>) {
        let (conditions, _) = watch::channel(state.recording_conditions());
        let (changed, rx) = mpsc::unbounded_channel();
        let cell = Self {
            state: Mutex::new(state),
            store,
            conditions,
            changed,
        };
        (cell, rx)
    }

    /// The state (hold the guard briefly: handlers run under the HAP `Core` lock).
    pub(crate) fn lock(&self) -> MutexGuard<'_, CameraState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `f`, then hands the new conditions to the recording sessions and wakes the
    /// control task.
    pub(crate) fn update(&self, f: impl FnOnce(&mut CameraState)) {
        let conditions = {
            let mut state = self.lock();
            f(&mut state);
            state.recording_conditions()
        };
        self.changed(conditions);
    }

    /// Hands `conditions` to the recording sessions (if they changed) and wakes the control
    /// task.
    fn changed(&self, conditions: Conditions) {
        self.conditions
            .send_if_modified(|c| std::mem::replace(c, conditions) != conditions);
        let _ = self.changed.send(());
    }

    /// For a controller's write: applies `f` to a copy, writes that atomically, and only then
    /// makes it the state (as [`StateCell::update`] does), so a write is acknowledged only
    /// once it survives a crash. A failed write leaves memory and disk as they were.
    ///
    /// # Errors
    /// IO errors of the store (a full disk).
    pub(crate) fn commit(&self, f: impl FnOnce(&mut CameraState)) -> std::io::Result<()> {
        let conditions = {
            let mut state = self.lock();
            let mut next = state.clone();
            f(&mut next);
            if next != *state {
                next.save(self.store.as_ref())?;
                *state = next;
            }
            state.recording_conditions()
        };
        self.changed(conditions);
        Ok(())
    }

    /// Wakes the control task without a state change (a StreamingStatus changed).
    pub(crate) fn wake(&self) {
        let _ = self.changed.send(());
    }

    /// Writes the current state atomically and returns it.
    ///
    /// # Errors
    /// IO errors of the store; the state in memory is kept.
    pub(crate) fn persist(&self) -> std::io::Result<CameraState> {
        // Saved under the lock, like `commit`: an older snapshot must never be renamed over
        // a newer one.
        let state = self.lock();
        state.save(self.store.as_ref())?;
        Ok(state.clone())
    }

    /// The recording conditions, current and future.
    pub(crate) fn conditions(&self) -> watch::Receiver<Conditions> {
        self.conditions.subscribe()
    }
}

/// Blob name in the camera's store.
pub const STATE_FILE: &str = "camera-state.json";

/// What the Home app set. Defaults are HAP-NodeJS's initial values (§2.5): recording off,
/// everything else on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CameraState {
    /// CameraOperatingMode HomeKitCameraActive.
    pub camera_active: bool,
    /// CameraOperatingMode EventSnapshotsActive.
    pub event_snapshots_active: bool,
    /// CameraOperatingMode PeriodicSnapshotsActive.
    pub periodic_snapshots_active: bool,
    /// CameraRTPStreamManagement Active.
    pub rtp_active: bool,
    /// CameraEventRecordingManagement Active.
    pub recording_active: bool,
    /// RecordingAudioActive.
    pub recording_audio_active: bool,
    /// The last SelectedCameraRecordingConfiguration written (TLV8, base64 in the file).
    #[serde(with = "b64_opt")]
    pub selected: Option<Vec<u8>>,
    /// What the source delivered when last seen: 205/206/207 are derived from it, so a hub
    /// reads the same values after a restart, before the source has reconnected.
    pub source_facts: Option<SourceFacts>,
}

impl Default for CameraState {
    fn default() -> Self {
        Self {
            camera_active: true,
            event_snapshots_active: true,
            periodic_snapshots_active: true,
            rtp_active: true,
            recording_active: false,
            recording_audio_active: false,
            selected: None,
            source_facts: None,
        }
    }
}

impl CameraState {
    /// Loads the state; a missing or unreadable file gives the defaults (logged), and a stored
    /// selection that no longer parses is dropped.
    pub fn load(store: &dyn Store) -> Self {
        let mut state = match store.load(STATE_FILE) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "camera state file is corrupt; using defaults");
                Self::default()
            }),
            Ok(None) => Self::default(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the camera state; using defaults");
                Self::default()
            }
        };
        if state.selected_configuration().is_none() {
            state.selected = None;
        }
        state
    }

    /// Writes the state atomically.
    ///
    /// # Errors
    /// IO errors of the store.
    pub fn save(&self, store: &dyn Store) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        store.save(STATE_FILE, &json)
    }

    /// What a recording session needs to know of this state.
    pub fn recording_conditions(&self) -> Conditions {
        Conditions {
            recording_active: self.recording_active,
            camera_active: self.camera_active,
            recording_audio_active: self.recording_audio_active,
            selection: self.selected_configuration().map(|sel| Selection {
                prebuffer_ms: sel.prebuffer_ms,
                audio: sel.audio.is_some(),
            }),
        }
    }

    /// The parsed selected recording configuration.
    pub fn selected_configuration(&self) -> Option<SelectedCameraRecordingConfiguration> {
        self.selected
            .as_deref()
            .and_then(|b| SelectedCameraRecordingConfiguration::decode(b).ok())
    }
}

mod b64_opt {
    use super::BASE64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&BASE64.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| BASE64.decode(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}
