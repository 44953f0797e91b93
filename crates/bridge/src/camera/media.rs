//! Source → fragmenter → prebuffer ring, per camera. The ring keeps serving readers while the
//! source reconnects (its timestamps stay continuous, so the fragmenter keeps its timeline).

use std::sync::{Arc, Mutex};

use recorder::MediaUnit;
use recorder::input::{ParameterSets, VideoAccessUnit};
use recorder::{Fragmenter, FragmenterConfig, FragmenterEvent};
use source::{CameraSource as _, ReconnectPolicy, SourceEvent, SourceSpec};
use tokio::sync::watch;
use tracing::{info, warn};

use std::sync::atomic::Ordering::Relaxed;

use super::counters::Counters;
use super::source_status::SourceTracker;
use super::{Shared, SourceFacts, lock};

/// Turns media units into ring fragments and keeps the source facts current.
pub struct Feeder {
    shared: Arc<Shared>,
    /// `None` only if the fragmenter refused its (default) configuration.
    fragmenter: Option<Fragmenter>,
    audio: Option<recorder::aac::AudioSpecificConfig>,
    /// The latest out-of-band SPS/PPS, put in front of IDR pictures for the detector.
    parameter_sets: Option<ParameterSets>,
    /// The main stream feeds the detector (no `detect_source`).
    detects: bool,
}

impl std::fmt::Debug for Feeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feeder").finish_non_exhaustive()
    }
}

impl Feeder {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        let fragmenter = Self::fragmenter(&shared, None);
        let detects = shared.options.detect_source.is_none();
        Self {
            shared,
            fragmenter,
            audio: None,
            parameter_sets: None,
            detects,
        }
    }

    fn fragmenter(
        shared: &Shared,
        audio: Option<recorder::aac::AudioSpecificConfig>,
    ) -> Option<Fragmenter> {
        let config = FragmenterConfig {
            // Audio only when configured on (then advertised); see decisions in the README.
            record_audio: shared.options.audio,
            audio_config: audio,
            ..FragmenterConfig::default()
        };
        Fragmenter::new(config).ok()
    }

    /// A (re)connected source with an out-of-band AAC config.
    pub fn set_audio_config(&mut self, audio: Option<recorder::aac::AudioSpecificConfig>) {
        if self.detects
            && let Some(d) = lock(&self.shared.taps.detector).as_ref()
        {
            // What follows a reconnection may reference pictures the detector never saw.
            d.note_gap();
        }
        self.shared.live.feed.set_audio_config(audio.clone());
        if audio != self.audio {
            self.audio = audio.clone();
            self.fragmenter = Self::fragmenter(&self.shared, audio);
        }
    }

    /// Feeds one unit; finished fragments go to the ring.
    pub fn push(&mut self, unit: MediaUnit) {
        let Some(fragmenter) = self.fragmenter.as_mut() else {
            return;
        };
        self.shared.taps.snapshots.observe(&unit);
        self.shared.live.feed.push(&unit);
        let c = &self.shared.counters;
        match &unit {
            MediaUnit::ParameterSets(ps) => self.parameter_sets = Some(ps.clone()),
            MediaUnit::Video(v) => {
                Counters::bump(&c.video_frames);
                c.video_bytes.fetch_add(v.data.len() as u64, Relaxed);
                if self.detects {
                    detect(&self.shared, self.parameter_sets.as_ref(), v);
                }
            }
            MediaUnit::Audio(_) => Counters::bump(&c.audio_frames),
        }
        let r = fragmenter.push(unit);
        if let Err(e) = r {
            tracing::debug!(error = %e, "unit dropped by the fragmenter");
        }
        while let Some(event) = fragmenter.poll_event() {
            match &event {
                FragmenterEvent::Init(init) => update_facts(&self.shared, fragmenter, init),
                FragmenterEvent::Fragment(_) => {
                    let info = fragmenter.stream_info();
                    if let (Some(frames), Some(ms)) = (info.gop_frames, info.gop_ms) {
                        *lock(&self.shared.gop) = Some((frames, ms));
                    }
                }
            }
            self.shared.ring.push_event(event);
        }
    }
}

/// The consumers of a camera's video besides the fragmenter.
pub(crate) struct MediaTaps {
    /// The built-in motion detector; `None` when it is off or failed to start.
    pub(crate) detector: Mutex<Option<motion::DetectorHandle>>,
    /// Why there is no detector, for the API (`None` while it runs).
    pub(crate) detector_off: Option<String>,
    /// The latest keyframe and the `/resource` JPEG cache.
    pub(crate) snapshots: super::snapshot::Snapshots,
    /// When the "detector cannot keep up" warning was last logged (one a minute at most).
    pub(crate) detector_warned: Mutex<Option<std::time::Instant>>,
}

/// Least time between two "detector cannot keep up" warnings.
const DETECTOR_WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Hands a copy of `v` (as Annex B, SPS/PPS before an IDR) to the camera's motion detector
/// when one is attached; a full detector queue drops it (see `DetectorHandle::push`).
fn detect(shared: &Shared, parameter_sets: Option<&ParameterSets>, v: &VideoAccessUnit) {
    let guard = lock(&shared.taps.detector);
    let Some(detector) = guard.as_ref() else {
        return;
    };
    let Some(au) = motion::OwnedAccessUnit::from_video(v, parameter_sets) else {
        return;
    };
    let queued = detector.push(au);
    if !queued {
        // A starved detector falls back to about one analysis per GOP: say so, once a minute.
        let mut warned = lock(&shared.taps.detector_warned);
        let now = std::time::Instant::now();
        if warned.is_none_or(|t| now.saturating_duration_since(t) >= DETECTOR_WARN_EVERY) {
            *warned = Some(now);
            let st = detector.stats();
            warn!(
                camera = %shared.options.name,
                dropped = st.queue_drops,
                decoded = st.decoded,
                analysed = st.analysed,
                busy_ms = st.busy_us / 1000,
                "the motion detector cannot keep up with this stream and analyses about one frame per GOP; detect on a sub-stream or turn it off"
            );
        }
    }
}

fn update_facts(shared: &Shared, fragmenter: &Fragmenter, init: &recorder::InitSegment) {
    let info = fragmenter.stream_info();
    let Some(sps) = &info.sps else { return };
    let fps = info
        .measured_fps
        .or(sps.vui_fps)
        .map_or(30, |f| f.round().clamp(1.0, 60.0) as u8);
    let facts = SourceFacts {
        width: sps.width,
        height: sps.height,
        fps,
        profile_idc: sps.profile_idc,
        level_idc: sps.level_idc,
        aac_sample_rate_hz: init.config.audio.as_ref().map(|a| a.asc.sample_rate_hz),
        aac_channels: init.config.audio.as_ref().map_or(1, |a| a.asc.channels),
    };
    let mut current = lock(&shared.facts);
    if current.as_ref() == Some(&facts) {
        return;
    }
    let audio = match facts.aac_sample_rate_hz {
        Some(hz) => format!("AAC {hz} Hz, {} channel(s)", facts.aac_channels),
        None => "none".to_owned(),
    };
    info!(
        camera = %shared.options.name,
        resolution = %format_args!("{}x{}", facts.width, facts.height),
        fps = facts.fps,
        profile = %source::check::profile_name(facts.profile_idc),
        level = %format_args!("{}.{}", facts.level_idc / 10, facts.level_idc % 10),
        %audio,
        "source stream"
    );
    *current = Some(facts.clone());
    drop(current);
    // The hub's selection stays: we send the native stream whatever it says, and dropping it
    // would stop recording until the hub re-selects, which it may not do on its own.
    if let Some(sel) = shared.state().selected_configuration() {
        let diffs = super::supported::differences(&sel, Some(&facts));
        if !diffs.is_empty() {
            warn!(camera = %shared.options.name, differences = %diffs.join("; "), "the source no longer matches the selected recording configuration; recording the native stream");
        }
    }
    // Persisted, and 205/206/207 re-derived with events to subscribed hubs (control task).
    shared.update(|s| s.source_facts = Some(facts));
}

/// Where a source's media goes: the recorder path ([`Feeder`]) or a sub-stream's live feed.
pub(super) trait UnitSink: Send {
    /// The source (re)connected; `audio` is its AAC configuration, if any.
    fn connected(&mut self, audio: Option<recorder::aac::AudioSpecificConfig>);
    /// One unit, in source order.
    fn push(&mut self, unit: MediaUnit);
}

impl UnitSink for Feeder {
    fn connected(&mut self, audio: Option<recorder::aac::AudioSpecificConfig>) {
        self.set_audio_config(audio);
    }

    fn push(&mut self, unit: MediaUnit) {
        Feeder::push(self, unit);
    }
}

/// A camera's `detect_source`: its video goes to the motion detector only, never to the
/// recorder or to viewers.
pub struct DetectFeeder {
    shared: Arc<Shared>,
    parameter_sets: Option<ParameterSets>,
}

impl std::fmt::Debug for DetectFeeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetectFeeder").finish_non_exhaustive()
    }
}

impl DetectFeeder {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            parameter_sets: None,
        }
    }

    /// Feeds one unit of the detect stream (audio is ignored).
    pub fn push(&mut self, unit: MediaUnit) {
        match &unit {
            MediaUnit::ParameterSets(ps) => self.parameter_sets = Some(ps.clone()),
            MediaUnit::Video(v) => detect(&self.shared, self.parameter_sets.as_ref(), v),
            MediaUnit::Audio(_) => {}
        }
    }
}

impl UnitSink for DetectFeeder {
    fn connected(&mut self, _audio: Option<recorder::aac::AudioSpecificConfig>) {
        self.parameter_sets = None;
        if let Some(d) = lock(&self.shared.taps.detector).as_ref() {
            d.note_gap();
        }
    }

    fn push(&mut self, unit: MediaUnit) {
        DetectFeeder::push(self, unit);
    }
}

/// A camera's `live_source`: decoded by nobody, recorded by nobody, only read by live viewers.
pub(super) struct SubStream(pub recorder::LiveFeed);

impl UnitSink for SubStream {
    fn connected(&mut self, _audio: Option<recorder::aac::AudioSpecificConfig>) {}

    fn push(&mut self, unit: MediaUnit) {
        self.0.push(&unit);
    }
}

/// Reads source `spec` into `sink` until shutdown; `tracker` keeps (and logs) its state.
pub(super) async fn source_task(
    tracker: Arc<SourceTracker>,
    spec: String,
    mut sink: impl UnitSink,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut source = match spec
        .parse::<SourceSpec>()
        .and_then(|parsed| source::open(&parsed, ReconnectPolicy::default()).map(|s| (parsed, s)))
    {
        Ok(s) => s,
        Err(e) => {
            tracker.failed(&e.to_string());
            return;
        }
    };
    let (parsed, ref mut source) = source;
    let shown = parsed.to_string();
    loop {
        tokio::select! {
            ev = source.next_event() => match ev {
                Ok(SourceEvent::Connected { params, attempt }) => {
                    tracker.connected(&shown, &params.transport, attempt);
                    sink.connected(params.audio.clone());
                    if let Some(ps) = params.parameter_sets {
                        sink.push(MediaUnit::ParameterSets(ps));
                    }
                }
                Ok(SourceEvent::Unit(unit)) => sink.push(unit),
                Ok(SourceEvent::Reconnecting { error, failures, delay }) => {
                    let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                    tracker.retrying(&error.to_string(), failures, ms);
                }
                Err(e) => {
                    tracker.failed(&e.to_string());
                    return;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}
