//! One camera as `GET /api/cameras/{name}` (and the status page) shows it: source state and
//! facts with the GOP verdict, pairing state (controller ids only, never keys; the setup code
//! only while unpaired), the HomeKit switches, the selected recording configuration, the
//! prebuffer and live viewers.

use serde::Serialize;

use super::{Camera, MediaInput};

/// See the module docs. Durations in ms; times RFC 3339.
#[derive(Debug, Clone, Serialize)]
pub struct CameraDetail {
    /// Configured name.
    pub name: String,
    /// HAP port and accessory id it is reached at.
    pub port: u16,
    /// AID.
    pub aid: u64,
    /// The source spec, credentials redacted.
    pub source: String,
    /// `starting`, `streaming`, `retrying`, `failed`.
    pub state: &'static str,
    /// The source's last error.
    pub last_error: Option<String>,
    /// When `state` was entered (RFC 3339, s).
    pub since: String,
    /// Failed source sessions and attempts since start.
    pub reconnects: u64,
    /// What the source delivers; `null` before its first fragment (and never persisted).
    pub stream: Option<StreamFacts>,
    /// GOP verdict (`check`'s rule on the live stream): `ok`, `warn`, `fail`, `info`.
    pub gop_level: Option<&'static str>,
    /// The verdict's words, with the fix when not OK.
    pub gop_message: Option<String>,
    /// Paired with at least one controller.
    pub paired: bool,
    /// Paired controllers: pairing id and admin bit.
    pub controllers: Vec<Controller>,
    /// Setup code, only while unpaired.
    pub setup_code: Option<String>,
    /// `X-HM://` setup URI, only while unpaired.
    pub setup_uri: Option<String>,
    /// The HomeKit switches the hub sets.
    pub homekit: Switches,
    /// The selected recording configuration (209), if any.
    pub selected: Option<Selected>,
    /// Media in the prebuffer ring, ms.
    pub prebuffer_ms: u64,
    /// MotionDetected.
    pub motion: bool,
    /// A hub's recording stream is open.
    pub recording: bool,
    /// Live-view streams running.
    pub live_viewers: usize,
    /// The built-in motion detector's counters since it started; `null` when it is off.
    pub detector: Option<DetectorDetail>,
    /// Why the built-in detector is off (`null` while it runs), e.g. "motion comes from
    /// Frigate; …".
    pub detector_off: Option<String>,
}

/// The built-in detector's work (`motion::DetectorStats`).
#[derive(Debug, Clone, Serialize)]
pub struct DetectorDetail {
    /// Access units it was handed.
    pub access_units: u64,
    /// Access units decoded.
    pub decoded: u64,
    /// Frames compared.
    pub analysed: u64,
    /// Compared frames that showed motion.
    pub motion_frames: u64,
    /// Access units skipped (between samples, or until the next IDR after a gap).
    pub skipped: u64,
    /// Access units the decoder refused.
    pub rejected: u64,
    /// Access units dropped because the detector was behind (then it analyses about one
    /// frame per GOP; the log says so once a minute).
    pub queue_drops: u64,
    /// Time spent decoding and comparing, ms.
    pub busy_ms: u64,
    /// `busy_ms` over the time since it started: its CPU, % of one core.
    pub cpu_percent: f64,
    /// What it decodes: `source` (the main stream) or `detect_source`.
    pub input: &'static str,
    /// The `detect_source`'s state (`starting`, `streaming`, `retrying`, `failed`); `null`
    /// when it decodes `source`.
    pub input_state: Option<&'static str>,
    /// The `detect_source`'s last error.
    pub input_error: Option<String>,
    /// Size of the pictures it analyses, e.g. `640x360`; `null` before the first.
    pub resolution: Option<String>,
}

/// The source's stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamFacts {
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Frames per second (rounded).
    pub fps: u8,
    /// H.264 profile name.
    pub profile: String,
    /// H.264 level, e.g. `4.1`.
    pub level: String,
    /// AAC sample rate, Hz; `null` without audio.
    pub audio_hz: Option<u32>,
    /// GOP, frames and ms, once two keyframes were seen.
    pub gop_frames: Option<u32>,
    /// GOP, ms.
    pub gop_ms: Option<u64>,
}

/// A paired controller (no key).
#[derive(Debug, Clone, Serialize)]
pub struct Controller {
    /// Controller pairing id.
    pub id: String,
    /// May add and remove pairings.
    pub admin: bool,
}

/// The HomeKit switches.
#[derive(Debug, Clone, Serialize)]
pub struct Switches {
    /// HomeKitCameraActive (camera on in the Home app).
    pub camera_active: bool,
    /// CameraEventRecordingManagement Active (recording on).
    pub recording_active: bool,
    /// RecordingAudioActive.
    pub recording_audio_active: bool,
    /// CameraRTPStreamManagement Active (live view allowed).
    pub streaming_active: bool,
    /// EventSnapshotsActive.
    pub event_snapshots_active: bool,
    /// PeriodicSnapshotsActive.
    pub periodic_snapshots_active: bool,
}

/// What the hub selected (209).
#[derive(Debug, Clone, Serialize)]
pub struct Selected {
    /// `1920x1080`.
    pub resolution: String,
    /// Frames per second.
    pub fps: u8,
    /// Profile name.
    pub profile: String,
    /// Prebuffer asked for, ms.
    pub prebuffer_ms: u32,
    /// Fragment length, ms.
    pub fragment_ms: u32,
    /// Audio sample rate, Hz, when audio was selected.
    pub audio_hz: Option<u32>,
    /// Where the selection differs from what the source delivers (we send the native stream).
    pub differences: Vec<String>,
}

impl Camera {
    /// The camera's detail (see [`CameraDetail`]).
    pub fn detail(&self) -> CameraDetail {
        let shared = &self.shared;
        let source = self.source_status();
        let input = shared.detect_source.as_ref().map(|t| t.get());
        let facts = super::lock(&shared.facts).clone();
        let gop = *super::lock(&shared.gop);
        let stream = facts.as_ref().map(|f| StreamFacts {
            width: f.width,
            height: f.height,
            fps: f.fps,
            profile: source::check::profile_name(f.profile_idc),
            level: format!("{}.{}", f.level_idc / 10, f.level_idc % 10),
            audio_hz: f.aac_sample_rate_hz,
            gop_frames: gop.map(|g| g.0),
            gop_ms: gop.map(|g| g.1),
        });
        let (gop_level, gop_message) = match (&facts, gop) {
            (Some(f), Some((frames, ms))) => {
                let (level, message) =
                    source::check::gop_verdict(Some((frames, ms)), None, f64::from(f.fps), 0);
                (Some(level_word(level)), Some(message))
            }
            _ => (None, None),
        };
        let state = shared.state().clone();
        let selected = state.selected_configuration().map(|sel| {
            let a = sel.video.attributes;
            let differences = super::supported::differences(&sel, facts.as_ref());
            Selected {
                resolution: format!("{}x{}", a.width, a.height),
                fps: a.fps,
                profile: format!("{:?}", sel.video.profile),
                prebuffer_ms: sel.prebuffer_ms,
                fragment_ms: sel.container.fragment_length_ms,
                audio_hz: sel.audio.map(|au| au.sample_rate.hz()),
                differences,
            }
        });
        let (paired, controllers, setup_code, setup_uri) = {
            let core = self.server.lock();
            let controllers: Vec<Controller> = core
                .pairings()
                .iter()
                .map(|p| Controller {
                    id: p.controller_id.clone(),
                    admin: p.admin,
                })
                .collect();
            let paired = core.is_paired();
            let code = (!paired).then(|| core.setup_code().as_str().to_owned());
            let uri = (!paired).then(|| core.setup_uri());
            (paired, controllers, code, uri)
        };
        CameraDetail {
            name: self.name().to_owned(),
            port: self.port(),
            aid: self.aid(),
            source: match &shared.options.input {
                MediaInput::Source(spec) => spec
                    .parse::<source::SourceSpec>()
                    .map_or_else(|_| source::spec::redact_str(spec), |s| s.to_string()),
                MediaInput::External => "external".to_owned(),
            },
            state: source.state.as_str(),
            last_error: source.last_error,
            since: super::history::rfc3339(source.since),
            reconnects: source.reconnects,
            stream,
            gop_level,
            gop_message,
            paired,
            controllers,
            setup_code,
            setup_uri,
            homekit: Switches {
                camera_active: state.camera_active,
                recording_active: state.recording_active,
                recording_audio_active: state.recording_audio_active,
                streaming_active: state.rtp_active,
                event_snapshots_active: state.event_snapshots_active,
                periodic_snapshots_active: state.periodic_snapshots_active,
            },
            selected,
            prebuffer_ms: self.prebuffer_ms(),
            motion: self.motion_detected(),
            recording: self.is_recording(),
            live_viewers: self.live_viewers(),
            detector: super::lock(&shared.taps.detector).as_ref().map(|d| {
                let st = d.stats();
                DetectorDetail {
                    access_units: st.access_units,
                    decoded: st.decoded,
                    analysed: st.analysed,
                    motion_frames: st.motion_frames,
                    skipped: st.skipped,
                    rejected: st.rejected,
                    queue_drops: st.queue_drops,
                    busy_ms: st.busy_us / 1000,
                    // Two decimals: enough to tell 0.4 % from 4 %.
                    cpu_percent: (d.cpu_percent() * 100.0).round() / 100.0,
                    input: if shared.options.detect_source.is_some() {
                        "detect_source"
                    } else {
                        "source"
                    },
                    input_state: input.as_ref().map(|s| s.state.as_str()),
                    input_error: input.as_ref().and_then(|s| s.last_error.clone()),
                    resolution: (st.width > 0).then(|| format!("{}x{}", st.width, st.height)),
                }
            }),
            detector_off: shared.taps.detector_off.clone(),
        }
    }
}

fn level_word(level: source::Level) -> &'static str {
    match level {
        source::Level::Ok => "ok",
        source::Level::Info => "info",
        source::Level::Warn => "warn",
        source::Level::Fail => "fail",
    }
}
