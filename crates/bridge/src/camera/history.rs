//! Recording history: one entry per motion event, saying whether a hub recorded it, how fast
//! and how it ended — or, when no hub came, why not in plain words. Kept per camera in
//! `history.json` (newest [`MAX_ENTRIES`], written atomically through the camera's [`Store`]).
//!
//! Times are RFC 3339 UTC with milliseconds; durations are milliseconds.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hap_server::store::Store;
use tracing::warn;

use super::lock;
use crate::recording::session::EndReason;

/// Blob in the camera's store.
pub const HISTORY_FILE: &str = "history.json";
/// How long changes gather before they are written (each write is an atomic replace with
/// fsync: its CPU showed in the recording benchmark when every change was written).
pub const WRITE_DELAY: Duration = Duration::from_secs(1);
/// Entries kept.
pub const MAX_ENTRIES: usize = 200;
/// After motion turns off, how long a hub may still open the recording before the entry is
/// closed as "no recording" with its diagnosis.
pub const HUB_GRACE: Duration = Duration::from_secs(10);

/// What the camera's HomeKit state was when motion started: enough to say why no hub came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conditions {
    /// A controller is paired.
    pub paired: bool,
    /// HomeKitCameraActive.
    pub camera_active: bool,
    /// CameraEventRecordingManagement Active.
    pub recording_active: bool,
    /// A recording configuration (209) is selected.
    pub selected: bool,
}

impl Conditions {
    /// Why a hub would not record, most basic cause first; the last line when all look right.
    pub fn diagnosis(self) -> &'static str {
        if !self.paired {
            "no hub asked for a recording: the camera is not paired (hksv-bridge pair-info shows its code)"
        } else if !self.camera_active {
            "no hub asked for a recording: the camera is turned off in the Home app"
        } else if !self.recording_active || !self.selected {
            "no hub asked for a recording: recording is off in the Home app (camera settings → Recording Options: Stream & Allow Recording)"
        } else {
            "no hub asked for a recording: the home hub did not open a data stream (hub unreachable, asleep, or not the camera's recording hub)"
        }
    }
}

/// Blob with the live-view sessions.
pub const LIVE_FILE: &str = "live-history.json";
/// Live-view sessions kept.
pub const MAX_LIVE_ENTRIES: usize = 50;

/// One live-view session (Home app viewer).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveEntry {
    /// When the viewer started it, RFC 3339.
    pub at: String,
    /// The viewer's IP address.
    pub viewer: String,
    /// Size asked for, `1280x720@30`.
    pub requested: Option<String>,
    /// Served from the `live_source` sub-stream.
    pub sub_stream: bool,
    /// START → end, ms.
    pub duration_ms: u64,
    /// START → first packet, ms; `null` when nothing was sent.
    pub first_frame_ms: Option<u64>,
    /// RTP packets sent.
    pub packets: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// How it ended, in words.
    pub end: String,
    /// It never started.
    pub failed_to_start: bool,
    /// What became of the audio, in words (empty in entries from before live audio).
    #[serde(default)]
    pub audio: String,
}

/// `why` in words.
pub fn describe_live_end(why: crate::live::LiveEnd) -> &'static str {
    use crate::live::LiveEnd;
    match why {
        LiveEnd::Stopped => "the viewer closed it",
        LiveEnd::HapSessionClosed => "the viewer's HomeKit connection closed",
        LiveEnd::Disabled => "streaming was turned off in the Home app",
        LiveEnd::Shutdown => "the bridge stopped",
        LiveEnd::Silent => "the viewer stopped answering (no RTCP)",
        LiveEnd::SourceGone => "no video from the source (no keyframe)",
        LiveEnd::Lagged => "the viewer fell behind the camera",
        LiveEnd::SocketFailed => "the UDP socket failed",
    }
}

/// One recording stream a hub opened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordingEntry {
    /// The hub's `dataSend` stream id.
    pub stream_id: i64,
    /// Motion on → `dataSend/open`, ms; `null` when the hub recorded without our motion.
    pub opened_after_ms: Option<u64>,
    /// Prebuffer the hub asked for, ms.
    pub prebuffer_ms: u32,
    /// Prebuffer fragments sent at once.
    pub prebuffer_fragments: u32,
    /// Fragments sent (prebuffer included), once ended.
    pub fragments: u32,
    /// Bytes sent (init segment and fragments, before encryption), once ended.
    pub bytes: u64,
    /// Open → end, ms, once ended.
    pub duration_ms: Option<u64>,
    /// How it ended, in words; `null` while it runs.
    pub end: Option<String>,
    /// The end was a normal one (hub closed with reason 0 or acknowledged our end, camera
    /// off, maximum length).
    pub completed: bool,
}

/// One motion event (or a recording a hub opened without one).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryEntry {
    /// Increasing id (for paging: `?before=id`).
    pub id: u64,
    /// When motion turned on (or the hub opened the stream), RFC 3339.
    pub at: String,
    /// What turned motion on: `detector`, `http`, `mqtt`, `frigate`; `null` for a recording
    /// without our motion.
    pub trigger: Option<String>,
    /// How long motion stayed on, ms; `null` while on.
    pub motion_ms: Option<u64>,
    /// `recording`, `recorded`, `failed` (the stream ended abnormally), `refused` (we refused
    /// the hub's open), `waiting` (motion, no hub yet) or `no recording`.
    pub outcome: String,
    /// The hub's recording, if one was opened.
    pub recording: Option<RecordingEntry>,
    /// Why there was no recording (or why it was refused), in plain words.
    pub diagnosis: Option<String>,
}

#[derive(Debug)]
struct Open {
    /// Index key: the entry's id.
    id: u64,
    motion_on: Option<Instant>,
    motion_off: Option<Instant>,
    conditions: Option<Conditions>,
    opened: Option<Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: VecDeque<HistoryEntry>,
    live: VecDeque<LiveEntry>,
    next_id: u64,
    /// The newest entry, while a hub may still attach to it.
    open: Option<Open>,
    /// Open recording streams: stream id → (entry id, opened at).
    streams: Vec<(i64, u64, Instant)>,
}

/// A camera's history. Changes are written by a small writer thread, so recording events
/// (which come from the HDS path, before the first chunk is sent) never wait for the disk;
/// the last changes are written when the history is dropped.
pub struct History {
    store: Arc<dyn Store>,
    inner: Arc<Mutex<Inner>>,
    camera: String,
    /// Wakes the writer; one pending wake is enough (it writes what is there when it runs).
    dirty: Option<std::sync::mpsc::SyncSender<()>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for History {
    fn drop(&mut self) {
        // The writer writes what a pending wake asked for, then sees the channel closed.
        self.dirty = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Writes both files from `inner`.
fn persist(inner: &Mutex<Inner>, store: &dyn Store, camera: &str) {
    write_files(&lock(inner), store, camera);
}

/// Writes both files from `inner` (the caller holds its lock).
fn write_files(inner: &Inner, store: &dyn Store, camera: &str) {
    let files = [
        (HISTORY_FILE, serde_json::to_vec(&inner.entries)),
        (LIVE_FILE, serde_json::to_vec(&inner.live)),
    ];
    for (file, bytes) in files {
        let result = bytes
            .map_err(std::io::Error::other)
            .and_then(|b| store.save(file, &b));
        if let Err(e) = result {
            warn!(camera, file, error = %e, "cannot save the recording history");
        }
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("camera", &self.camera)
            .finish_non_exhaustive()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `t` as RFC 3339 UTC to the second; the Unix epoch for a clock before it.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    jiff::Timestamp::from_second(secs)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_string()
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let ts = jiff::Timestamp::from_millisecond(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!("{ts:.3}")
}

/// `why` in words, and whether it was a normal end.
pub fn describe_end(why: &EndReason) -> (String, bool) {
    match why {
        EndReason::HubClosed(r) if *r == hds::Reason::NORMAL => {
            ("hub closed the stream (normal)".into(), true)
        }
        EndReason::HubClosed(r) => (format!("hub closed the stream ({r:?})"), false),
        EndReason::HubAcked => ("hub acknowledged the end of the recording".into(), true),
        EndReason::CameraOff => ("the camera was turned off".into(), true),
        EndReason::MaxLength => ("maximum recording length reached".into(), true),
        EndReason::ReaderFailed(e) => (format!("the prebuffer reader failed: {e:?}"), false),
        EndReason::NoInitSegment => (
            "no video from the source in time (no init segment)".into(),
            false,
        ),
        EndReason::NoAck => ("the hub did not acknowledge the end".into(), false),
        EndReason::NotConfigured => ("the recording configuration was cleared".into(), false),
        EndReason::ConnectionClosed(c) => (format!("the hub's connection closed: {c:?}"), false),
    }
}

impl History {
    /// Loads `history.json` from `store` (an unreadable or corrupt file starts empty, with a
    /// warning: the history is a log, not state anything depends on).
    pub fn load(camera: &str, store: Arc<dyn Store>) -> Self {
        let entries: VecDeque<HistoryEntry> = match store.load(HISTORY_FILE) {
            Ok(Some(b)) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                warn!(camera, error = %e, "recording history unreadable; starting a new one");
                VecDeque::new()
            }),
            Ok(None) => VecDeque::new(),
            Err(e) => {
                warn!(camera, error = %e, "recording history unreadable; starting a new one");
                VecDeque::new()
            }
        };
        let next_id = entries.iter().map(|e| e.id).max().map_or(1, |m| m + 1);
        let live: VecDeque<LiveEntry> = match store.load(LIVE_FILE) {
            Ok(Some(b)) => serde_json::from_slice(&b).unwrap_or_default(),
            _ => VecDeque::new(),
        };
        let inner = Arc::new(Mutex::new(Inner {
            entries,
            live,
            next_id,
            ..Inner::default()
        }));
        let (dirty, wakes) = std::sync::mpsc::sync_channel::<()>(1);
        let writer = {
            let (inner, store, camera) = (inner.clone(), store.clone(), camera.to_owned());
            std::thread::Builder::new()
                .name("history".into())
                .spawn(move || {
                    while wakes.recv().is_ok() {
                        // Coalesce: one write for the changes of [`WRITE_DELAY`] (a recording
                        // makes four); at close, at once.
                        let deadline = Instant::now() + WRITE_DELAY;
                        while let Ok(()) =
                            wakes.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                        {
                        }
                        persist(&inner, store.as_ref(), &camera);
                    }
                })
        };
        let (dirty, writer) = match writer {
            Ok(w) => (Some(dirty), Some(w)),
            Err(e) => {
                warn!(camera, error = %e, "no history writer thread; writing inline");
                (None, None)
            }
        };
        Self {
            store,
            inner,
            camera: camera.to_owned(),
            dirty,
            writer,
        }
    }

    /// Writes the files now (tests; shutdown does it by itself).
    pub fn flush(&self) {
        persist(&self.inner, self.store.as_ref(), &self.camera);
    }

    /// Newest first: up to `limit` entries with an id below `before` (all when `None`).
    pub fn page(&self, before: Option<u64>, limit: usize) -> Vec<HistoryEntry> {
        let inner = lock(&self.inner);
        inner
            .entries
            .iter()
            .rev()
            .filter(|e| before.is_none_or(|b| e.id < b))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Live-view sessions, newest first, at most `limit`.
    pub fn live_page(&self, limit: usize) -> Vec<LiveEntry> {
        lock(&self.inner)
            .live
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    /// A live-view session ended.
    pub fn live_ended(&self, r: &crate::live::LiveRecord) {
        let entry = LiveEntry {
            at: rfc3339_ms(r.started),
            viewer: r.viewer.ip().to_canonical().to_string(),
            requested: r.requested.map(|(w, h, fps)| format!("{w}x{h}@{fps}")),
            sub_stream: r.sub_stream,
            duration_ms: ms(r.duration),
            first_frame_ms: r.first_frame.map(ms),
            packets: r.packets,
            bytes: r.bytes,
            end: describe_live_end(r.end).to_owned(),
            failed_to_start: r.failed_to_start,
            audio: r.audio.clone(),
        };
        let mut inner = lock(&self.inner);
        inner.live.push_back(entry);
        while inner.live.len() > MAX_LIVE_ENTRIES {
            inner.live.pop_front();
        }
        self.save(&inner);
    }

    /// Asks the writer to write (it locks `inner` itself, after the caller's guard is gone).
    fn save(&self, inner: &Inner) {
        match &self.dirty {
            // Full: a write is already pending and will include this change.
            Some(tx) => {
                let _ = tx.try_send(());
            }
            None => write_files(inner, self.store.as_ref(), &self.camera),
        }
    }

    /// Appends a new entry (`trigger`, `outcome`) stamped now and returns its id.
    fn new_entry(inner: &mut Inner, trigger: Option<&str>, outcome: &str) -> u64 {
        let id = inner.next_id;
        inner.next_id += 1;
        Self::push(
            inner,
            HistoryEntry {
                id,
                at: rfc3339_ms(SystemTime::now()),
                trigger: trigger.map(str::to_owned),
                motion_ms: None,
                outcome: outcome.into(),
                recording: None,
                diagnosis: None,
            },
        );
        id
    }

    fn push(inner: &mut Inner, entry: HistoryEntry) {
        inner.entries.push_back(entry);
        while inner.entries.len() > MAX_ENTRIES {
            inner.entries.pop_front();
        }
    }

    fn entry_mut(inner: &mut Inner, id: u64) -> Option<&mut HistoryEntry> {
        inner.entries.iter_mut().rev().find(|e| e.id == id)
    }

    /// Closes the open entry if motion ended more than [`HUB_GRACE`] ago without a recording.
    /// Returns when to call again (`None`: nothing pending).
    pub fn tick(&self, now: Instant) -> Option<Instant> {
        let mut inner = lock(&self.inner);
        let open = inner.open.as_ref()?;
        let off = open.motion_off?;
        if open.opened.is_some() {
            inner.open = None;
            return None;
        }
        let due = off + HUB_GRACE;
        if now < due {
            return Some(due);
        }
        let (id, conditions) = (open.id, open.conditions);
        inner.open = None;
        if let Some(e) = Self::entry_mut(&mut inner, id) {
            e.outcome = "no recording".into();
            e.diagnosis = conditions.map(|c| c.diagnosis().to_owned());
        }
        self.save(&inner);
        None
    }

    /// Motion turned on (by `trigger`), with the camera's HomeKit `conditions` then.
    pub fn motion_on(&self, trigger: Option<&str>, conditions: Conditions, now: Instant) {
        self.tick(now);
        let mut inner = lock(&self.inner);
        // Motion again while a hub records: the same clip goes on, so the same entry.
        if let Some(&(_, id, opened)) = inner.streams.last() {
            let motion_on = inner
                .open
                .as_ref()
                .filter(|o| o.id == id)
                .and_then(|o| o.motion_on);
            inner.open = Some(Open {
                id,
                motion_on: motion_on.or(Some(now)),
                motion_off: None,
                conditions: Some(conditions),
                opened: Some(opened),
            });
            if let Some(e) = Self::entry_mut(&mut inner, id) {
                e.motion_ms = None;
            }
            self.save(&inner);
            return;
        }
        // A new event before the previous one's hub came: that one had no recording.
        if let Some(prev) = inner.open.take().filter(|o| o.opened.is_none())
            && let Some(e) = Self::entry_mut(&mut inner, prev.id)
        {
            e.outcome = "no recording".into();
            e.diagnosis = prev.conditions.map(|c| c.diagnosis().to_owned());
        }
        let id = Self::new_entry(&mut inner, trigger, "waiting");
        inner.open = Some(Open {
            id,
            motion_on: Some(now),
            motion_off: None,
            conditions: Some(conditions),
            opened: None,
        });
        self.save(&inner);
    }

    /// Motion turned off.
    pub fn motion_off(&self, now: Instant) {
        let mut inner = lock(&self.inner);
        let Some(open) = inner.open.as_mut() else {
            return;
        };
        if open.motion_off.is_some() {
            return;
        }
        open.motion_off = Some(now);
        let (id, on) = (open.id, open.motion_on);
        if let (Some(e), Some(on)) = (Self::entry_mut(&mut inner, id), on) {
            e.motion_ms = Some(ms(now.saturating_duration_since(on)));
        }
        self.save(&inner);
    }

    /// A hub opened recording stream `stream_id`; attached to the current motion event, or a
    /// new entry when there is none. Returns motion on → open, ms, when it was a motion event.
    pub fn opened(
        &self,
        stream_id: i64,
        prebuffer_ms: u32,
        prebuffer_fragments: usize,
        now: Instant,
    ) -> Option<u64> {
        let mut inner = lock(&self.inner);
        let attach = inner
            .open
            .as_ref()
            .filter(|o| o.opened.is_none())
            .map(|o| (o.id, o.motion_on));
        let (id, motion_on) = match attach {
            Some(a) => a,
            None => (Self::new_entry(&mut inner, None, "recording"), None),
        };
        if let Some(o) = inner.open.as_mut().filter(|o| o.id == id) {
            o.opened = Some(now);
        }
        inner.streams.retain(|(s, _, _)| *s != stream_id);
        inner.streams.push((stream_id, id, now));
        let latency = motion_on.map(|on| ms(now.saturating_duration_since(on)));
        if let Some(e) = Self::entry_mut(&mut inner, id) {
            e.outcome = "recording".into();
            e.diagnosis = None;
            e.recording = Some(RecordingEntry {
                stream_id,
                opened_after_ms: latency,
                prebuffer_ms,
                prebuffer_fragments: u32::try_from(prebuffer_fragments).unwrap_or(u32::MAX),
                fragments: 0,
                bytes: 0,
                duration_ms: None,
                end: None,
                completed: false,
            });
        }
        self.save(&inner);
        latency
    }

    /// We refused a hub's `dataSend/open` (`reason` in words).
    pub fn refused(&self, reason: &str) {
        let mut inner = lock(&self.inner);
        let Some(id) = inner
            .open
            .as_ref()
            .filter(|o| o.opened.is_none())
            .map(|o| o.id)
        else {
            return;
        };
        if let Some(e) = Self::entry_mut(&mut inner, id) {
            e.outcome = "refused".into();
            e.diagnosis = Some(format!("the bridge refused the hub's recording: {reason}"));
        }
        self.save(&inner);
    }

    /// Recording stream `stream_id` ended.
    pub fn ended(&self, stream_id: i64, why: &EndReason, fragments: u32, bytes: u64, now: Instant) {
        let mut inner = lock(&self.inner);
        let Some(pos) = inner.streams.iter().position(|(s, _, _)| *s == stream_id) else {
            return;
        };
        let (_, id, opened) = inner.streams.swap_remove(pos);
        let (end, completed) = describe_end(why);
        if let Some(e) = Self::entry_mut(&mut inner, id) {
            e.outcome = if completed { "recorded" } else { "failed" }.into();
            if let Some(r) = e.recording.as_mut() {
                r.fragments = fragments;
                r.bytes = bytes;
                r.duration_ms = Some(ms(now.saturating_duration_since(opened)));
                r.end = Some(end);
                r.completed = completed;
            }
        }
        self.save(&inner);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use hap_server::store::MemoryStore;

    const ALL_ON: Conditions = Conditions {
        paired: true,
        camera_active: true,
        recording_active: true,
        selected: true,
    };

    #[test]
    fn a_recorded_event_has_its_latencies_and_end() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let h = History::load("cam", store.clone());
        let t0 = Instant::now();
        h.motion_on(Some("http"), ALL_ON, t0);
        h.opened(7, 4000, 1, t0 + Duration::from_millis(120));
        h.motion_off(t0 + Duration::from_secs(5));
        h.ended(
            7,
            &EndReason::HubClosed(hds::Reason::NORMAL),
            4,
            900_000,
            t0 + Duration::from_secs(16),
        );
        let e = &h.page(None, 10)[0];
        assert_eq!(
            (e.outcome.as_str(), e.trigger.as_deref(), e.motion_ms),
            ("recorded", Some("http"), Some(5000))
        );
        let r = e.recording.as_ref().unwrap();
        assert_eq!(
            (r.opened_after_ms, r.fragments, r.bytes, r.duration_ms),
            (Some(120), 4, 900_000, Some(15_880))
        );
        assert!(r.completed);
        // Persisted: a new History reads it back.
        h.flush();
        assert_eq!(History::load("cam", store).page(None, 10), h.page(None, 10));
    }

    #[test]
    fn no_hub_gets_a_diagnosis_after_the_grace_and_the_history_stays_bounded() {
        let h = History::load("cam", Arc::new(MemoryStore::default()));
        let t0 = Instant::now();
        let off = Conditions {
            recording_active: false,
            ..ALL_ON
        };
        h.motion_on(Some("detector"), off, t0);
        h.motion_off(t0 + Duration::from_secs(2));
        assert_eq!(
            h.tick(t0 + Duration::from_secs(3)),
            Some(t0 + Duration::from_secs(12))
        );
        assert_eq!(h.page(None, 1)[0].outcome, "waiting");
        assert_eq!(h.tick(t0 + Duration::from_secs(12)), None);
        let e = &h.page(None, 1)[0];
        assert_eq!(e.outcome, "no recording");
        assert!(
            e.diagnosis.as_deref().unwrap().contains("recording is off"),
            "{e:?}"
        );
        for i in 0..(MAX_ENTRIES as u64 + 5) {
            let t = t0 + Duration::from_secs(100 + i);
            h.motion_on(None, ALL_ON, t);
        }
        let all = h.page(None, usize::MAX);
        assert_eq!(all.len(), MAX_ENTRIES);
        // Paging: newest first, strictly below `before`.
        let first = h.page(None, 3);
        let next = h.page(Some(first[2].id), 3);
        assert_eq!(next[0].id, first[2].id - 1);
        assert!(
            Conditions {
                paired: false,
                ..ALL_ON
            }
            .diagnosis()
            .contains("not paired")
        );
    }

    #[test]
    fn motion_again_during_a_recording_is_the_same_entry_and_a_quick_second_event_closes_the_first()
    {
        let h = History::load("cam", Arc::new(MemoryStore::default()));
        let t0 = Instant::now();
        h.motion_on(Some("http"), ALL_ON, t0);
        h.motion_off(t0 + Duration::from_secs(1));
        // Second event 2 s later, no hub came for the first.
        h.motion_on(Some("http"), ALL_ON, t0 + Duration::from_secs(2));
        let p = h.page(None, 2);
        assert_eq!(
            (p[0].outcome.as_str(), p[1].outcome.as_str()),
            ("waiting", "no recording")
        );
        h.opened(3, 4000, 1, t0 + Duration::from_secs(3));
        h.motion_off(t0 + Duration::from_secs(4));
        h.motion_on(Some("detector"), ALL_ON, t0 + Duration::from_secs(5));
        assert_eq!(
            h.page(None, usize::MAX).len(),
            2,
            "re-trigger joins the running clip"
        );
        assert_eq!(h.page(None, 1)[0].outcome, "recording");
    }

    #[test]
    fn live_sessions_are_kept_newest_first_and_bounded() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let h = History::load("cam", store.clone());
        for i in 0..(MAX_LIVE_ENTRIES as u64 + 3) {
            h.live_ended(&crate::live::LiveRecord {
                viewer: "[::ffff:192.168.1.5]:50000".parse().unwrap(),
                requested: Some((1280, 720, 30)),
                sub_stream: false,
                started: SystemTime::now(),
                duration: Duration::from_millis(1000 + i),
                first_frame: Some(Duration::from_millis(2)),
                packets: 10,
                bytes: 1000,
                end: crate::live::LiveEnd::Stopped,
                failed_to_start: false,
                audio: format!("Opus 16 kHz, 20 ms: {i} packets"),
            });
        }
        let p = h.live_page(usize::MAX);
        assert_eq!(
            p[0].audio,
            format!("Opus 16 kHz, 20 ms: {} packets", MAX_LIVE_ENTRIES + 2)
        );
        assert_eq!(p.len(), MAX_LIVE_ENTRIES);
        assert_eq!(p[0].duration_ms, 1000 + MAX_LIVE_ENTRIES as u64 + 2);
        assert_eq!(
            (p[0].viewer.as_str(), p[0].requested.as_deref()),
            ("192.168.1.5", Some("1280x720@30"))
        );
        assert_eq!(p[0].end, "the viewer closed it");
        h.flush();
        assert_eq!(History::load("cam", store).live_page(1), h.live_page(1));
    }

    #[test]
    fn the_writer_thread_writes_and_drop_waits_for_it() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        {
            let h = History::load("cam", store.clone());
            h.motion_on(Some("http"), ALL_ON, Instant::now());
        }
        let again = History::load("cam", store);
        assert_eq!(again.page(None, 5).len(), 1);
        assert_eq!(again.page(None, 1)[0].trigger.as_deref(), Some("http"));
    }

    #[test]
    fn a_recording_without_motion_and_a_failed_one() {
        let h = History::load("cam", Arc::new(MemoryStore::default()));
        let t0 = Instant::now();
        h.opened(1, 4000, 2, t0);
        h.ended(
            1,
            &EndReason::NoInitSegment,
            0,
            0,
            t0 + Duration::from_secs(5),
        );
        let e = &h.page(None, 1)[0];
        assert_eq!((e.outcome.as_str(), e.trigger.as_deref()), ("failed", None));
        assert!(
            e.recording
                .as_ref()
                .unwrap()
                .end
                .as_deref()
                .unwrap()
                .contains("no video")
        );
    }
}
