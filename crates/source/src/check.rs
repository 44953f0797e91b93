//! `hksv-bridge check SOURCE`: connect, read for a while, and say whether the camera's stream
//! can be recorded by HomeKit Secure Video as is, item by item, with what to change.
//!
//! With an output folder it also writes what a hub would receive: `init.mp4`,
//! `fragment-0001.m4s`, … (the recorder's [`Fragmenter`] output, sequence numbers from 1,
//! decode times from 0) and `clip.mp4` (all of them concatenated, playable).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use recorder::MediaUnit;
use recorder::aac::{AOT_AAC_ELD, AOT_AAC_LC, AudioSpecificConfig};
use recorder::fmp4::FragmentTiming;
use recorder::h264::{self, NalType, SpsInfo};
use recorder::input::VideoAccessUnit;
use recorder::{Fragmenter, FragmenterConfig, FragmenterEvent};
use tokio::time::Instant;

use crate::Error;
use crate::camera::{CameraSource, ReconnectPolicy, SourceEvent, StreamParams};
use crate::spec::SourceSpec;

/// The HKSV fragment length every GOP must fit (protocol-notes §3.4, §6.1).
const FRAGMENT_MS: u64 = 4000;
/// Default check length: long enough to see two keyframes of a 10 s GOP.
pub const DEFAULT_CHECK_SECONDS: u64 = 12;

/// How a check item came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Fine for HKSV.
    Ok,
    /// For information.
    Info,
    /// Works, but worse than it could (or may not work with every hub).
    Warn,
    /// HKSV will not record this correctly until it is changed.
    Fail,
}

/// One verdict line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What was checked: `"codec"`, `"GOP"`, `"audio"`, …
    pub item: &'static str,
    /// The outcome.
    pub level: Level,
    /// What was found and, when not OK, what to change.
    pub message: String,
}

/// Progress, reported about once a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckProgress {
    /// Time since the check started.
    pub elapsed: Duration,
    /// The check length.
    pub total: Duration,
    /// Video access units received.
    pub video_frames: u64,
    /// Complete fragments produced.
    pub fragments: usize,
    /// Reconnects so far.
    pub reconnects: u32,
}

/// What the check measured and concluded.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// The source (credentials redacted).
    pub source: String,
    /// How the stream was carried.
    pub transport: String,
    /// How long the stream was read.
    pub read_ms: u64,
    /// From the SPS.
    pub sps: Option<SpsInfo>,
    /// Video access units received.
    pub video_frames: u64,
    /// Frame rate measured from timestamps.
    pub measured_fps: Option<f64>,
    /// Keyframe interval measured between the last two IDRs: (frames, ms).
    pub gop: Option<(u32, u64)>,
    /// Only one IDR seen: the GOP is at least this long, ms.
    pub gop_at_least_ms: Option<u64>,
    /// Average video bitrate, bits per second.
    pub video_bitrate_bps: Option<u64>,
    /// Frames received before the first IDR (the stream started mid-GOP; they are dropped).
    pub frames_before_first_idr: u64,
    /// Time from the first frame to the first IDR, ms.
    pub first_idr_after_ms: Option<u64>,
    /// The AAC config, if the stream has AAC audio.
    pub audio: Option<AudioSpecificConfig>,
    /// Audio that is present but not recordable.
    pub ignored_audio: Option<String>,
    /// AAC frames received.
    pub audio_frames: u64,
    /// Durations of the complete fragments produced, ms.
    pub fragment_ms: Vec<u64>,
    /// Reconnects during the check, with the last error.
    pub reconnects: u32,
    /// The last connection error, if any.
    pub last_error: Option<String>,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// The verdicts, in display order.
    pub verdicts: Vec<Verdict>,
}

impl CheckReport {
    /// True when no verdict is [`Level::Fail`].
    pub fn is_ready(&self) -> bool {
        self.verdicts.iter().all(|v| v.level != Level::Fail)
    }

    /// The verdict for `item`, if any.
    pub fn verdict(&self, item: &str) -> Option<&Verdict> {
        self.verdicts.iter().find(|v| v.item == item)
    }
}

/// The H.264 profile's name for a `profile_idc` (H.264 Annex A), e.g. `Main` for 77.
pub fn profile_name(idc: u8) -> String {
    match idc {
        66 => "Baseline".into(),
        77 => "Main".into(),
        88 => "Extended".into(),
        100 => "High".into(),
        110 => "High 10".into(),
        122 => "High 4:2:2".into(),
        244 => "High 4:4:4".into(),
        n => format!("profile_idc {n}"),
    }
}

fn aac_name(asc: &AudioSpecificConfig) -> &'static str {
    match asc.object_type {
        AOT_AAC_LC => "AAC-LC",
        AOT_AAC_ELD => "AAC-ELD",
        _ => "AAC",
    }
}

/// Resolutions HomeKit cameras advertise (protocol-notes §3.2; portrait variants accepted).
const HOMEKIT_RESOLUTIONS: &[(u32, u32)] = &[
    (1920, 1080),
    (1280, 720),
    (640, 480),
    (640, 360),
    (1024, 768),
    (1280, 960),
    (1600, 1200),
    (2048, 1536),
    (3840, 2160),
    (2560, 1440),
];

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Camera check: {}", self.source)?;
        writeln!(
            f,
            "  transport   {}, read for {:.1} s",
            self.transport,
            self.read_ms as f64 / 1000.0
        )?;
        match &self.sps {
            Some(s) => writeln!(
                f,
                "  video       H.264 {} profile, level {}.{}, {}x{}",
                profile_name(s.profile_idc),
                s.level_idc / 10,
                s.level_idc % 10,
                s.width,
                s.height
            )?,
            None => writeln!(f, "  video       H.264 (no SPS seen)")?,
        }
        let vui = self
            .sps
            .as_ref()
            .and_then(|s| s.vui_fps)
            .map(|v| format!(" (SPS says {v:.2})"))
            .unwrap_or_default();
        match self.measured_fps {
            Some(fps) => writeln!(
                f,
                "  frame rate  {fps:.2} fps measured{vui}, {} frames",
                self.video_frames
            )?,
            None => writeln!(
                f,
                "  frame rate  unknown{vui}, {} frames",
                self.video_frames
            )?,
        }
        match (self.gop, self.gop_at_least_ms) {
            (Some((frames, ms)), _) => writeln!(f, "  GOP         {frames} frames = {ms} ms")?,
            (None, Some(ms)) => {
                writeln!(f, "  GOP         longer than {ms} ms (one keyframe seen)")?
            }
            _ => writeln!(f, "  GOP         no keyframe seen")?,
        }
        if let Some(b) = self.video_bitrate_bps {
            writeln!(f, "  bitrate     {:.2} Mbit/s", b as f64 / 1e6)?;
        }
        if self.frames_before_first_idr > 0 {
            writeln!(
                f,
                "  start       mid-GOP: {} frames before the first keyframe were dropped ({} ms)",
                self.frames_before_first_idr,
                self.first_idr_after_ms.unwrap_or(0)
            )?;
        }
        match (&self.audio, &self.ignored_audio) {
            (Some(a), _) => writeln!(
                f,
                "  audio       {} {} Hz, {} channel(s), {} frames",
                aac_name(a),
                a.sample_rate_hz,
                a.channels,
                self.audio_frames
            )?,
            (None, Some(n)) => writeln!(f, "  audio       {n} (not recorded)")?,
            (None, None) => writeln!(f, "  audio       none")?,
        }
        let durations: Vec<String> = self.fragment_ms.iter().map(|d| format!("{d} ms")).collect();
        writeln!(
            f,
            "  fragments   {} complete [{}]",
            self.fragment_ms.len(),
            durations.join(", ")
        )?;
        if self.reconnects > 0 {
            writeln!(
                f,
                "  reconnects  {} (last error: {})",
                self.reconnects,
                self.last_error.as_deref().unwrap_or("-")
            )?;
        }
        for p in &self.files {
            writeln!(f, "  wrote       {}", p.display())?;
        }
        writeln!(f, "HKSV verdict:")?;
        for v in &self.verdicts {
            let tag = match v.level {
                Level::Ok => "ok  ",
                Level::Info => "info",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            writeln!(f, "  [{tag}] {:<10} {}", v.item, v.message)?;
        }
        let fails = self
            .verdicts
            .iter()
            .filter(|v| v.level == Level::Fail)
            .count();
        if fails == 0 {
            write!(f, "Ready for HomeKit Secure Video.")
        } else {
            write!(
                f,
                "Not ready for HomeKit Secure Video: {fails} item(s) to fix."
            )
        }
    }
}

/// Measurements gathered while reading.
#[derive(Default)]
struct Stats {
    frames: u64,
    video_bytes: u64,
    first_pts: Option<i64>,
    last_pts: Option<i64>,
    idrs: Vec<(i64, u64)>, // (pts_90k, frame index)
    frames_before_first_idr: u64,
    sps: Option<SpsInfo>,
    audio_frames: u64,
}

impl Stats {
    fn on_video(&mut self, v: &VideoAccessUnit) {
        let t = v.dts_90k.unwrap_or(v.pts_90k);
        if self.sps.is_none() {
            self.sps = h264::find_nal(&v.data, v.framing, NalType::SPS)
                .and_then(|s| SpsInfo::parse(s).ok());
        }
        if h264::contains_idr(&v.data, v.framing) {
            self.idrs.push((t, self.frames));
        } else if self.idrs.is_empty() {
            self.frames_before_first_idr += 1;
        }
        self.first_pts.get_or_insert(t);
        self.last_pts = Some(t);
        self.frames += 1;
        self.video_bytes += v.data.len() as u64;
    }
}

/// Writes the hub's view of the recording.
struct Output {
    dir: PathBuf,
    init: Option<bytes::Bytes>,
    clip: Vec<u8>,
    fragments: u32,
    files: Vec<PathBuf>,
}

impl Output {
    fn write(&mut self, name: &str, data: &[u8]) -> Result<(), Error> {
        let path = self.dir.join(name);
        std::fs::write(&path, data).map_err(|e| Error::Output {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        self.files.push(path);
        Ok(())
    }
}

/// Checks `spec` for `duration` (see [`DEFAULT_CHECK_SECONDS`]), writing the hub's view to
/// `out_dir` when given, calling `progress` about once a second.
///
/// # Errors
/// The source's error when it never delivered video (unreachable, wrong credentials,
/// unsupported codec, stalled); [`Error::Output`] when a file cannot be written.
pub async fn check(
    spec: &SourceSpec,
    duration: Duration,
    out_dir: Option<&Path>,
    progress: impl FnMut(&CheckProgress),
) -> Result<CheckReport, Error> {
    check_observed(spec, duration, out_dir, progress, |_| {}).await
}

/// [`check`], handing every unit it reads to `observe` as well (out-of-band parameter sets
/// as a [`MediaUnit::ParameterSets`] at each connection), e.g. to time a decoder on it.
///
/// # Errors
/// As [`check`].
pub async fn check_observed(
    spec: &SourceSpec,
    duration: Duration,
    out_dir: Option<&Path>,
    progress: impl FnMut(&CheckProgress),
    mut observe: impl FnMut(&MediaUnit),
) -> Result<CheckReport, Error> {
    let policy = ReconnectPolicy {
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(2),
        stall_timeout: Duration::from_secs(5),
        max_consecutive_failures: Some(3),
        ..Default::default()
    };
    let source = crate::open(spec, policy)?;
    // A file has an end: the check stops there instead of replaying it.
    let stop_at_end = matches!(spec, SourceSpec::File { .. });
    run(
        source,
        spec.to_string(),
        duration,
        out_dir,
        progress,
        stop_at_end,
        &mut observe,
    )
    .await
}

/// [`check`] on any [`CameraSource`] (e.g. a simulated one).
///
/// # Errors
/// As [`check`].
pub async fn check_source(
    source: impl CameraSource,
    name: String,
    duration: Duration,
    out_dir: Option<&Path>,
    progress: impl FnMut(&CheckProgress),
) -> Result<CheckReport, Error> {
    run(
        source,
        name,
        duration,
        out_dir,
        progress,
        false,
        &mut |_| {},
    )
    .await
}

async fn run(
    mut source: impl CameraSource,
    name: String,
    duration: Duration,
    out_dir: Option<&Path>,
    mut progress: impl FnMut(&CheckProgress),
    stop_at_end: bool,
    observe: &mut dyn FnMut(&MediaUnit),
) -> Result<CheckReport, Error> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut next_tick = start + Duration::from_secs(1);
    let mut params: Option<StreamParams> = None;
    let mut fragmenter: Option<Fragmenter> = None;
    let mut stats = Stats::default();
    let mut reconnects = 0u32;
    let mut last_error: Option<Error> = None;
    let mut fragment_ms = Vec::new();
    let mut out = match out_dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| Error::Output {
                path: d.display().to_string(),
                detail: e.to_string(),
            })?;
            Some(Output {
                dir: d.to_path_buf(),
                init: None,
                clip: Vec::new(),
                fragments: 0,
                files: Vec::new(),
            })
        }
        None => None,
    };
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if now >= next_tick {
            next_tick += Duration::from_secs(1);
            progress(&CheckProgress {
                elapsed: now - start,
                total: duration,
                video_frames: stats.frames,
                fragments: fragment_ms.len(),
                reconnects,
            });
        }
        // One next_event future at a time, kept across progress ticks (not restarted).
        let event = {
            let next = source.next_event();
            tokio::pin!(next);
            loop {
                tokio::select! {
                    r = &mut next => break Some(r),
                    () = tokio::time::sleep_until(next_tick.min(deadline)) => {
                        let now = Instant::now();
                        if now >= deadline {
                            break None;
                        }
                        next_tick += Duration::from_secs(1);
                        progress(&CheckProgress { elapsed: now - start, total: duration, video_frames: stats.frames, fragments: fragment_ms.len(), reconnects });
                    }
                }
            }
        };
        let event = match event {
            None => break,
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                if stats.frames == 0 {
                    return Err(e);
                }
                last_error = Some(e);
                break;
            }
        };
        match event {
            SourceEvent::Connected { params: p, attempt } => {
                if attempt > 1 && params.is_some() {
                    tracing::info!(camera = %name, attempt, "reconnected");
                }
                if fragmenter.is_none() {
                    let config = FragmenterConfig {
                        audio_config: p.audio.clone(),
                        ..Default::default()
                    };
                    fragmenter = Some(Fragmenter::new(config).map_err(|e| Error::Stream {
                        camera: name.clone(),
                        detail: e.to_string(),
                    })?);
                }
                if let Some(ps) = &p.parameter_sets {
                    observe(&MediaUnit::ParameterSets(ps.clone()));
                }
                if let (Some(ps), Some(fr)) = (&p.parameter_sets, fragmenter.as_mut()) {
                    fr.set_parameter_sets(ps.clone());
                    if stats.sps.is_none() {
                        stats.sps = SpsInfo::parse(&ps.sps).ok();
                    }
                }
                params.get_or_insert(p);
            }
            SourceEvent::Reconnecting {
                error: Error::Ended { .. },
                ..
            } if stop_at_end && stats.frames > 0 => break,
            SourceEvent::Reconnecting { error, .. } => {
                reconnects += 1;
                last_error = Some(error);
            }
            SourceEvent::Unit(unit) => {
                let Some(fr) = fragmenter.as_mut() else {
                    continue;
                };
                match &unit {
                    MediaUnit::ParameterSets(ps) if stats.sps.is_none() => {
                        stats.sps = SpsInfo::parse(&ps.sps).ok();
                    }
                    MediaUnit::ParameterSets(_) => {}
                    MediaUnit::Video(v) => stats.on_video(v),
                    MediaUnit::Audio(_) => stats.audio_frames += 1,
                }
                observe(&unit);
                let _ = fr.push(unit);
                while let Some(ev) = fr.poll_event() {
                    match ev {
                        FragmenterEvent::Init(init) => {
                            if let Some(o) = out.as_mut()
                                && o.init.is_none()
                            {
                                o.write("init.mp4", &init.bytes)?;
                                o.clip.extend_from_slice(&init.bytes);
                                o.init = Some(init.bytes);
                            }
                        }
                        FragmenterEvent::Fragment(frag) => {
                            fragment_ms.push(frag.duration_90k() / 90);
                            if let Some(o) = out.as_mut() {
                                o.fragments += 1;
                                let timing = FragmentTiming {
                                    sequence_number: o.fragments,
                                    video_decode_time: frag.video.base_decode_time,
                                    audio_decode_time: frag
                                        .audio
                                        .as_ref()
                                        .map_or(0, |a| a.base_decode_time),
                                };
                                let bytes = frag.to_bytes(&timing);
                                o.write(&format!("fragment-{:04}.m4s", o.fragments), &bytes)?;
                                o.clip.extend_from_slice(&bytes);
                            }
                        }
                    }
                }
            }
        }
    }
    let read_ms = start.elapsed().as_millis() as u64;
    progress(&CheckProgress {
        elapsed: start.elapsed(),
        total: duration,
        video_frames: stats.frames,
        fragments: fragment_ms.len(),
        reconnects,
    });
    let mut files = Vec::new();
    if let Some(mut o) = out {
        if o.init.is_some() {
            let clip = std::mem::take(&mut o.clip);
            o.write("clip.mp4", &clip)?;
        }
        files = o.files;
    }
    if let Some(fr) = &fragmenter
        && stats.sps.is_none()
    {
        stats.sps = fr.stream_info().sps.clone();
    }
    let params = params.unwrap_or_default();
    let mut report = CheckReport {
        source: name,
        transport: params.transport.clone(),
        read_ms,
        sps: stats.sps.clone(),
        video_frames: stats.frames,
        measured_fps: None,
        gop: None,
        gop_at_least_ms: None,
        video_bitrate_bps: None,
        frames_before_first_idr: stats.frames_before_first_idr,
        first_idr_after_ms: None,
        audio: params.audio.clone(),
        ignored_audio: params.ignored_audio.clone(),
        audio_frames: stats.audio_frames,
        fragment_ms,
        reconnects,
        last_error: last_error.map(|e| e.to_string()),
        files,
        verdicts: Vec::new(),
    };
    if let (Some(first), Some(last)) = (stats.first_pts, stats.last_pts)
        && last > first
        && stats.frames > 1
    {
        let span_90k = (last - first) as f64;
        let fps = (stats.frames - 1) as f64 * 90_000.0 / span_90k;
        report.measured_fps = Some(fps);
        // Bytes over the span plus one frame duration.
        let secs = (span_90k + 90_000.0 / fps) / 90_000.0;
        report.video_bitrate_bps = Some((stats.video_bytes as f64 * 8.0 / secs) as u64);
    }
    if let Some(&(t, _)) = stats.idrs.first() {
        report.first_idr_after_ms = stats.first_pts.map(|f| ((t - f).max(0) / 90) as u64);
    }
    if let [.., (t0, n0), (t1, n1)] = stats.idrs.as_slice() {
        report.gop = Some((
            u32::try_from(n1 - n0).unwrap_or(u32::MAX),
            ((t1 - t0).max(0) / 90) as u64,
        ));
    } else if let (Some(&(t0, _)), Some(last)) = (stats.idrs.first(), stats.last_pts) {
        report.gop_at_least_ms = Some(((last - t0).max(0) / 90) as u64);
    }
    report.verdicts = verdicts(&report);
    Ok(report)
}

/// The GOP verdict of `check` (and the status API): `gop` is `(frames, ms)` between two
/// keyframes, `gop_at_least_ms` the span after a single keyframe, `fps` the frame rate for the
/// advice, `read_ms` how long the stream was read.
pub fn gop_verdict(
    gop: Option<(u32, u64)>,
    gop_at_least_ms: Option<u64>,
    fps: f64,
    read_ms: u64,
) -> (Level, String) {
    let advice = format!(
        "set the camera's I-frame interval to 4 × fps = {} frames",
        (fps * 4.0).round()
    );
    let frame_ms = (1000.0 / fps) as u64 + 20;
    match (gop, gop_at_least_ms) {
        (Some((frames, ms)), _) => {
            let secs = ms as f64 / 1000.0;
            if ms.abs_diff(FRAGMENT_MS) <= frame_ms {
                (
                    Level::Ok,
                    format!("{secs:.1} s ({frames} frames): one 4 s fragment per keyframe"),
                )
            } else if ms > FRAGMENT_MS {
                (
                    Level::Fail,
                    format!("GOP {secs:.1} s: HomeKit expects 4 s — {advice}"),
                )
            } else {
                let per = FRAGMENT_MS.div_ceil(ms.max(1)) * ms;
                let level = if per.abs_diff(FRAGMENT_MS) <= frame_ms {
                    Level::Ok
                } else {
                    Level::Warn
                };
                let msg = if level == Level::Ok {
                    format!(
                        "{secs:.1} s ({frames} frames): fragments group {} GOPs into 4 s",
                        FRAGMENT_MS.div_ceil(ms.max(1))
                    )
                } else {
                    format!(
                        "GOP {secs:.1} s: fragments will be {:.1} s instead of 4 s — {advice}",
                        per as f64 / 1000.0
                    )
                };
                (level, msg)
            }
        }
        (None, Some(ms)) if ms > FRAGMENT_MS + frame_ms => (
            Level::Fail,
            format!(
                "GOP longer than {:.1} s (one keyframe in the check): HomeKit expects 4 s — {advice}",
                ms as f64 / 1000.0
            ),
        ),
        (None, Some(_)) => (
            Level::Warn,
            "only one keyframe seen; run the check longer to measure the GOP".into(),
        ),
        (None, None) => (
            Level::Fail,
            format!(
                "no keyframe (IDR) in {:.1} s — {advice}",
                read_ms as f64 / 1000.0
            ),
        ),
    }
}

fn verdicts(r: &CheckReport) -> Vec<Verdict> {
    let mut v = Vec::new();
    let mut add = |item, level, message: String| {
        v.push(Verdict {
            item,
            level,
            message,
        })
    };
    add(
        "codec",
        Level::Ok,
        "H.264, remuxed without transcoding".into(),
    );
    if let Some(s) = &r.sps {
        let level = if matches!(s.profile_idc, 66 | 77 | 100) {
            Level::Ok
        } else {
            Level::Warn
        };
        let msg = if level == Level::Ok {
            format!(
                "{} (HomeKit offers Baseline, Main and High)",
                profile_name(s.profile_idc)
            )
        } else {
            format!(
                "{}: HomeKit offers Baseline, Main and High; set the camera's H.264 profile to High or Main",
                profile_name(s.profile_idc)
            )
        };
        add("profile", level, msg);
        let lvl = format!("{}.{}", s.level_idc / 10, s.level_idc % 10);
        if s.level_idc <= 41 {
            add(
                "level",
                Level::Ok,
                format!("{lvl} (HomeKit lists 3.1, 3.2, 4.0; hubs accept 4.1)"),
            );
        } else {
            add(
                "level",
                Level::Warn,
                format!(
                    "{lvl}: above the 4.0 HomeKit lists; lower the resolution or bitrate if hubs refuse the clips"
                ),
            );
        }
        let (w, h) = (s.width, s.height);
        if HOMEKIT_RESOLUTIONS
            .iter()
            .any(|&(a, b)| (a, b) == (w, h) || (b, a) == (w, h))
        {
            add("resolution", Level::Ok, format!("{w}x{h}"));
        } else {
            add(
                "resolution",
                Level::Warn,
                format!(
                    "{w}x{h} is not a size HomeKit asks for (1920x1080, 1280x720, …); it is advertised as is and most hubs accept it"
                ),
            );
        }
    }
    match r.measured_fps {
        Some(fps) if fps > 30.5 => add(
            "frame rate",
            Level::Warn,
            format!("{fps:.1} fps: HomeKit records at most 30 fps; set the camera to 30 or less"),
        ),
        Some(fps) if fps < 14.5 => add(
            "frame rate",
            Level::Warn,
            format!("{fps:.1} fps: HomeKit expects 15, 24 or 30 fps"),
        ),
        Some(fps) => add("frame rate", Level::Ok, format!("{fps:.1} fps")),
        None => add(
            "frame rate",
            Level::Fail,
            "no timed video frames received".into(),
        ),
    }
    let fps = r
        .measured_fps
        .or(r.sps.as_ref().and_then(|s| s.vui_fps))
        .unwrap_or(30.0);
    let (level, message) = gop_verdict(r.gop, r.gop_at_least_ms, fps, r.read_ms);
    add("GOP", level, message);
    if r.frames_before_first_idr > 0 {
        add(
            "start",
            Level::Info,
            format!(
                "the stream started mid-GOP: {} frames before the first keyframe were dropped (first keyframe after {} ms)",
                r.frames_before_first_idr,
                r.first_idr_after_ms.unwrap_or(0)
            ),
        );
    }
    if let Some(b) = r.video_bitrate_bps {
        let mbps = b as f64 / 1e6;
        if mbps > 8.0 {
            add(
                "bitrate",
                Level::Warn,
                format!(
                    "{mbps:.2} Mbit/s: high for iCloud uploads; 2–4 Mbit/s is typical for 1080p"
                ),
            );
        } else {
            add("bitrate", Level::Ok, format!("{mbps:.2} Mbit/s"));
        }
    }
    match (&r.audio, &r.ignored_audio) {
        (Some(a), _) => add(
            "audio",
            Level::Ok,
            format!(
                "{} {} Hz, {} channel(s)",
                aac_name(a),
                a.sample_rate_hz,
                a.channels
            ),
        ),
        (None, Some(n)) => add(
            "audio",
            Level::Warn,
            format!(
                "{n} is not recorded: HKSV records AAC; set the camera's audio codec to AAC to record sound"
            ),
        ),
        (None, None) => add(
            "audio",
            Level::Info,
            "no audio: recordings will be silent".into(),
        ),
    }
    if r.fragment_ms.is_empty() {
        add(
            "fragments",
            Level::Fail,
            "no complete fragment was produced (needs two keyframes)".into(),
        );
    } else {
        add(
            "fragments",
            Level::Ok,
            format!("{} complete", r.fragment_ms.len()),
        );
    }
    if r.reconnects > 0 {
        add(
            "connection",
            Level::Warn,
            format!(
                "{} reconnect(s): {}",
                r.reconnects,
                r.last_error.as_deref().unwrap_or("-")
            ),
        );
    }
    v
}
