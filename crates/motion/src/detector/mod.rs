//! The built-in motion detector: H.264 access units in, "motion in this frame" out.
//!
//! Decoding is the expensive part, and an H.264 P-frame can only be decoded after every
//! reference picture before it (ITU-T H.264 §8.2.5), so "a few frames per second" cannot skip
//! arbitrary frames. What it can skip:
//! - disposable pictures (`nal_ref_idc == 0`, §7.4.1) that are not due for analysis;
//! - everything but IDR pictures in [`DecodeMode::KeyframesOnly`] (cheapest, latency = GOP);
//! - everything until the next IDR after a frame the decoder rejected or a gap in the input
//!   (a broken reference chain decodes to garbage, which would look like motion).
//!
//! Of the decoded frames at most `max_analysed_fps` per second (stream time) are compared
//! ([`analysis`]). Decoding uses `openh264` (Cisco's decoder, built from bundled source).

pub mod analysis;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use openh264::decoder::{Decoder, DecoderConfig as H264DecoderConfig, Flush};
use openh264::formats::YUVSource;
use recorder::H264Framing;
use recorder::h264;
use serde::{Deserialize, Serialize};

use crate::debounce::MotionSource;
use crate::error::MotionError;
use crate::hub::MotionHub;
pub use analysis::{AnalyserSettings, ExclusionZone, FrameScore, MotionAnalyser};

/// 90 kHz clock rate of H.264 timestamps (RTP and MP4 video timescale).
const CLOCK_90K: i64 = 90_000;

/// Which pictures the detector decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecodeMode {
    /// Every reference picture (needed to decode the next P-frame); disposable pictures only
    /// when due for analysis. Detection latency ≈ 1 / `max_analysed_fps`.
    #[default]
    ReferenceFrames,
    /// IDR pictures only: far cheaper, but motion is seen at most once per GOP.
    KeyframesOnly,
}

/// Settings of the built-in detector for one camera (embedded in the bridge's TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// Run the detector for this camera (the bridge checks this before [`spawn_detector`]).
    /// Default unset: on, unless the camera's motion comes from elsewhere (MQTT, Frigate or
    /// `motion.external`), see [`crate::CameraMotionConfig::detector_wanted`].
    #[serde(default)]
    pub enabled: Option<bool>,
    /// 0 (least sensitive) to 100 (most). Default 50.
    #[serde(default = "default_sensitivity")]
    pub sensitivity: u8,
    /// CPU budget: frames compared per second of stream time. Default 5.
    #[serde(default = "default_max_analysed_fps")]
    pub max_analysed_fps: u32,
    /// Which pictures to decode. Default `reference_frames`.
    #[serde(default)]
    pub decode: DecodeMode,
    /// Analysed frames in a row with change before motion is reported. Default 2.
    #[serde(default = "default_confirm_frames")]
    pub confirm_frames: u32,
    /// Grid columns for the comparison (rows follow the aspect ratio), 4–128. Default 32.
    #[serde(default = "default_grid_columns")]
    pub grid_columns: u32,
    /// Areas to ignore (fractions of the frame). Default none.
    #[serde(default)]
    pub exclude: Vec<ExclusionZone>,
}

fn default_sensitivity() -> u8 {
    50
}
fn default_max_analysed_fps() -> u32 {
    5
}
fn default_confirm_frames() -> u32 {
    2
}
fn default_grid_columns() -> u32 {
    32
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            sensitivity: default_sensitivity(),
            max_analysed_fps: default_max_analysed_fps(),
            decode: DecodeMode::default(),
            confirm_frames: default_confirm_frames(),
            grid_columns: default_grid_columns(),
            exclude: Vec::new(),
        }
    }
}

impl DetectorConfig {
    /// Checks ranges.
    ///
    /// # Errors
    /// [`MotionError::InvalidConfig`] naming the offending field.
    pub fn validate(&self) -> Result<(), MotionError> {
        let bad = |what: &str| Err(MotionError::InvalidConfig(format!("detector: {what}")));
        if self.sensitivity > 100 {
            return bad("sensitivity must be 0–100");
        }
        if self.max_analysed_fps == 0 || self.max_analysed_fps > 60 {
            return bad("max_analysed_fps must be 1–60");
        }
        if self.confirm_frames == 0 {
            return bad("confirm_frames must be at least 1");
        }
        if !(4..=128).contains(&self.grid_columns) {
            return bad("grid_columns must be 4–128");
        }
        if let Some(zone) = self.exclude.iter().find(|z| !z.is_valid()) {
            return bad(&format!(
                "exclusion zone {zone:?} is not within the frame (fractions 0–1)"
            ));
        }
        Ok(())
    }
}

/// One H.264 access unit as the detector takes it.
#[derive(Debug, Clone, Copy)]
pub struct AccessUnit<'a> {
    /// Annex B bytes (start codes before each NAL unit), including SPS/PPS where the stream
    /// carries them.
    pub data: &'a [u8],
    /// Whether it is an IDR picture (a point where decoding can start).
    pub is_idr: bool,
    /// Presentation time on a 90 kHz clock (any origin; only differences are used).
    pub timestamp_90k: i64,
}

/// Why an access unit was not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Disposable picture not due for analysis.
    NotDue,
    /// Not an IDR picture in [`DecodeMode::KeyframesOnly`].
    NotKeyframe,
    /// Waiting for an IDR after a rejected frame or a gap.
    AwaitingIdr,
}

/// What the detector did with one access unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FrameOutcome {
    /// Not given to the decoder.
    Skipped(SkipReason),
    /// The decoder rejected it (counted; decoding resumes at the next IDR).
    Rejected,
    /// Decoded (or consumed, e.g. parameter sets) but not compared.
    Decoded,
    /// Decoded and compared.
    Analysed {
        /// The access unit's timestamp.
        timestamp_90k: i64,
        /// The comparison result.
        score: FrameScore,
    },
}

/// Counters since the detector was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectorStats {
    /// Access units pushed.
    pub access_units: u64,
    /// Access units given to the decoder without error.
    pub decoded: u64,
    /// Frames compared.
    pub analysed: u64,
    /// Analysed frames that reported motion.
    pub motion_frames: u64,
    /// Access units the decoder rejected.
    pub rejected: u64,
    /// Access units skipped (any [`SkipReason`]).
    pub skipped: u64,
    /// Gaps reported with [`Detector::note_gap`].
    pub gaps: u64,
    /// Wall-clock time spent in [`Detector::push`] (decode + compare), in microseconds: the
    /// detector's CPU cost for this camera.
    pub busy_us: u64,
    /// Access units dropped before the detector saw them because its queue was full (the
    /// machine cannot keep up; it then analyses about one frame per GOP).
    pub queue_drops: u64,
    /// Size of the last analysed picture, pixels (0 before the first).
    pub width: u32,
    /// See `width`.
    pub height: u32,
}

/// Decoder plus comparison for one camera. Synchronous and CPU-bound: run it on its own thread
/// ([`spawn_detector`]) or a blocking pool, not on an async executor.
pub struct Detector {
    decoder: Decoder,
    analyser: MotionAnalyser,
    mode: DecodeMode,
    interval_90k: i64,
    awaiting_idr: bool,
    last_analysed_90k: Option<i64>,
    /// Timestamps of pictures given to the decoder and not yet output (decode order; without
    /// B-frames also output order).
    pending_90k: VecDeque<i64>,
    stats: DetectorStats,
}

/// Pictures the decoder may hold back at most (H.264 DPB size limit, §A.3.1).
const MAX_PENDING_PICTURES: usize = 16;

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("mode", &self.mode)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Detector {
    /// Creates a detector (and its H.264 decoder).
    ///
    /// # Errors
    /// [`MotionError::InvalidConfig`] for out-of-range settings, [`MotionError::Decoder`] if
    /// openh264 fails to initialise.
    pub fn new(config: &DetectorConfig) -> Result<Self, MotionError> {
        config.validate()?;
        // No flushing after each unit: openh264 then holds a picture back when the stream does
        // not bound reordering (the bundled real-camera clip), and forced flushes made it fail
        // on the following P-frames. Output timestamps come from `pending_90k` instead.
        let decoder_config = H264DecoderConfig::new().flush_after_decode(Flush::NoFlush);
        let decoder =
            Decoder::with_api_config(openh264::OpenH264API::from_source(), decoder_config)
                .map_err(|e| MotionError::Decoder(e.to_string()))?;
        Ok(Self {
            decoder,
            analyser: MotionAnalyser::new(AnalyserSettings {
                grid_columns: config.grid_columns,
                sensitivity: config.sensitivity,
                confirm_frames: config.confirm_frames,
                exclude: config.exclude.clone(),
            }),
            mode: config.decode,
            interval_90k: CLOCK_90K / i64::from(config.max_analysed_fps.max(1)),
            awaiting_idr: true,
            last_analysed_90k: None,
            pending_90k: VecDeque::new(),
            stats: DetectorStats::default(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> DetectorStats {
        self.stats
    }

    /// Tells the detector that access units were lost: it skips to the next IDR.
    pub fn note_gap(&mut self) {
        self.stats.gaps += 1;
        self.awaiting_idr = true;
    }

    /// Feeds one access unit. Never panics on bad input: frames the decoder rejects are
    /// counted and skipped until the next IDR.
    pub fn push(&mut self, au: AccessUnit<'_>) -> FrameOutcome {
        self.stats.access_units += 1;
        let started = std::time::Instant::now();
        let outcome = self.push_inner(au);
        self.stats.busy_us += u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        match outcome {
            FrameOutcome::Skipped(_) => self.stats.skipped += 1,
            FrameOutcome::Rejected => self.stats.rejected += 1,
            FrameOutcome::Decoded => self.stats.decoded += 1,
            FrameOutcome::Analysed { score, .. } => {
                self.stats.decoded += 1;
                self.stats.analysed += 1;
                self.stats.motion_frames += u64::from(score.motion);
            }
        }
        outcome
    }

    fn push_inner(&mut self, au: AccessUnit<'_>) -> FrameOutcome {
        if au.is_idr {
            self.awaiting_idr = false;
        } else if self.mode == DecodeMode::KeyframesOnly {
            return FrameOutcome::Skipped(SkipReason::NotKeyframe);
        } else if self.awaiting_idr {
            return FrameOutcome::Skipped(SkipReason::AwaitingIdr);
        }
        if !au.is_idr
            && !is_due(self.last_analysed_90k, self.interval_90k, au.timestamp_90k)
            && h264::is_disposable(au.data, H264Framing::AnnexB)
        {
            return FrameOutcome::Skipped(SkipReason::NotDue);
        }
        let decoded = match self.decoder.decode(au.data) {
            Ok(decoded) => decoded,
            Err(e) => {
                tracing::debug!(error = %e, timestamp_90k = au.timestamp_90k, "decoder rejected access unit");
                self.awaiting_idr = true;
                self.pending_90k.clear();
                return FrameOutcome::Rejected;
            }
        };
        if h264::contains_slice(au.data, H264Framing::AnnexB) {
            self.pending_90k.push_back(au.timestamp_90k);
            if self.pending_90k.len() > MAX_PENDING_PICTURES {
                self.pending_90k.pop_front();
            }
        }
        let Some(picture) = decoded else {
            return FrameOutcome::Decoded;
        };
        let timestamp_90k = self.pending_90k.pop_front().unwrap_or(au.timestamp_90k);
        if !is_due(self.last_analysed_90k, self.interval_90k, timestamp_90k) {
            return FrameOutcome::Decoded;
        }
        let (width, height) = picture.dimensions();
        let (stride, _, _) = picture.strides();
        let Some(score) = self.analyser.analyse(picture.y(), width, height, stride) else {
            // The decoder's plane is inconsistent with its own dimensions; treat as rejected.
            self.awaiting_idr = true;
            return FrameOutcome::Rejected;
        };
        self.last_analysed_90k = Some(timestamp_90k);
        self.stats.width = u32::try_from(width).unwrap_or(u32::MAX);
        self.stats.height = u32::try_from(height).unwrap_or(u32::MAX);
        FrameOutcome::Analysed {
            timestamp_90k,
            score,
        }
    }
}

/// Whether a frame at `timestamp_90k` is due for comparison under the CPU budget (one per
/// `interval_90k` after `last`).
fn is_due(last: Option<i64>, interval_90k: i64, timestamp_90k: i64) -> bool {
    // 10 % slack so a 10 fps stream with a 5 fps budget analyses every 2nd frame even when
    // timestamps jitter.
    last.is_none_or(|last| timestamp_90k.saturating_sub(last) >= interval_90k - interval_90k / 10)
}

/// An access unit with owned bytes, for [`DetectorHandle::push`].
#[derive(Debug, Clone)]
pub struct OwnedAccessUnit {
    /// Annex B bytes.
    pub data: Bytes,
    /// Whether it is an IDR picture.
    pub is_idr: bool,
    /// Presentation time, 90 kHz clock.
    pub timestamp_90k: i64,
}

impl OwnedAccessUnit {
    /// The detector's view of a source's access unit: Annex B, with the out-of-band
    /// `parameter_sets` in front of an IDR so decoding can start there. `None` when its NAL
    /// units do not parse.
    pub fn from_video(
        v: &recorder::input::VideoAccessUnit,
        parameter_sets: Option<&recorder::input::ParameterSets>,
    ) -> Option<Self> {
        Some(Self {
            data: h264::to_annex_b(&v.data, v.framing, parameter_sets).ok()?,
            is_idr: h264::contains_idr(&v.data, v.framing),
            timestamp_90k: v.pts_90k,
        })
    }
}

/// Feeds a detector thread; dropping it stops the thread.
#[derive(Debug)]
pub struct DetectorHandle {
    tx: std::sync::mpsc::SyncSender<OwnedAccessUnit>,
    gap: Arc<AtomicBool>,
    stats: Arc<Mutex<DetectorStats>>,
    drops: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
}

impl DetectorHandle {
    /// Queues an access unit without blocking. When the thread is behind, the unit is dropped
    /// (returns `false`) and the detector resumes at the next IDR: an overloaded machine
    /// degrades to about one comparison per GOP instead of falling further behind.
    pub fn push(&self, au: OwnedAccessUnit) -> bool {
        match self.tx.try_send(au) {
            Ok(()) => true,
            Err(_) => {
                self.gap.store(true, Ordering::Relaxed);
                self.drops.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// The detector's counters as of its last processed access unit.
    pub fn stats(&self) -> DetectorStats {
        DetectorStats {
            queue_drops: self.drops.load(Ordering::Relaxed),
            ..*self.stats.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    /// Tells the detector that access units were lost or the source reconnected: it skips to
    /// the next IDR.
    pub fn note_gap(&self) {
        self.gap.store(true, Ordering::Relaxed);
    }

    /// The detector's CPU since it started, in % of one core (`busy_us` over wall time).
    pub fn cpu_percent(&self) -> f64 {
        let wall_us = self.started.elapsed().as_micros().max(1) as f64;
        self.stats().busy_us as f64 * 100.0 / wall_us
    }
}

/// Access units queued per camera before new ones are dropped (about 2 s at 30 fps).
const QUEUE_ACCESS_UNITS: usize = 64;

/// Runs a [`Detector`] for `camera` on its own thread; every analysed frame with motion
/// triggers `hub` with [`MotionSource::Detector`] (a pulse).
///
/// # Errors
/// [`MotionError::UnknownCamera`] if the hub does not know `camera`; the errors of
/// [`Detector::new`].
pub fn spawn_detector(
    hub: MotionHub,
    camera: &str,
    config: &DetectorConfig,
) -> Result<DetectorHandle, MotionError> {
    hub.status(camera)?;
    let mut detector = Detector::new(config)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<OwnedAccessUnit>(QUEUE_ACCESS_UNITS);
    let gap = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Mutex::new(DetectorStats::default()));
    let (thread_gap, thread_stats, camera) =
        (Arc::clone(&gap), Arc::clone(&stats), camera.to_owned());
    std::thread::Builder::new()
        .name(format!("motion-{camera}"))
        .spawn(move || {
            while let Ok(au) = rx.recv() {
                if thread_gap.swap(false, Ordering::Relaxed) {
                    detector.note_gap();
                }
                let outcome = detector.push(AccessUnit {
                    data: &au.data,
                    is_idr: au.is_idr,
                    timestamp_90k: au.timestamp_90k,
                });
                if let FrameOutcome::Analysed { score, .. } = outcome
                    && score.motion
                    && let Err(e) = hub.trigger(&camera, true, MotionSource::Detector)
                {
                    tracing::warn!(camera, error = %e, "detector trigger failed");
                }
                *thread_stats.lock().unwrap_or_else(PoisonError::into_inner) = detector.stats();
            }
        })
        .map_err(|e| MotionError::Decoder(format!("could not start the detector thread: {e}")))?;
    Ok(DetectorHandle {
        tx,
        gap,
        stats,
        drops: std::sync::atomic::AtomicU64::new(0),
        started: std::time::Instant::now(),
    })
}
