//! HKSV snapshots: `POST /resource` → a JPEG of the latest keyframe (protocol notes §1.9, §5.6).
//!
//! hap-server calls the `/resource` handler synchronously **under the Core lock**. Snapshots are
//! lazy: with nobody asking, nothing is decoded (only the latest IDR access unit is kept, its
//! bytes shared with the fragmenter).
//!
//! ```text
//!  Feeder::push ─► Snapshots::observe (keeps the latest IDR access unit + SPS/PPS; wakes the
//!                    │                  thread only while snapshots are asked for)
//!                    ▼ wake
//!  snapshot thread: openh264 decode (≤ 1 per keyframe, ≤ 1 per MIN_REFRESH) ─► RGB frame ─►
//!                   JPEGs for the sizes asked for lately; after RECENT_SIZE_WINDOW without a
//!                   request: frees the decoder, the frame and the JPEGs
//!  /resource handler: rules (§5.6) ─► cached JPEG for (W, H) of the current frame, else
//!                     (first request after an idle window) decode the latest keyframe now,
//!                     and (first request at a new size) scale + encode now
//! ```
//!
//! A snapshot is therefore as old as the latest keyframe (one GOP, typically 1–4 s), which is
//! what the Home app shows as a still anyway. Output is exactly the requested size: the frame is
//! scaled to *cover* W×H keeping its aspect ratio and centre-cropped (ffmpeg's
//! `scale=W:H:force_original_aspect_ratio=increase,crop=W:H`), with an area-average filter.
//!
//! Measured once (release, the demo clip's 1920×1080 IDR, shared 2-core machine): decode +
//! RGB ≈ 31 ms, scale to 640×360 ≈ 19 ms, scale + encode ≈ 26 ms. The first request after an
//! idle window pays decode + encode under the Core lock, the first at a new size the latter;
//! later ones are cache hits re-encoded in the background on each keyframe. Idle, the camera
//! holds no decoder (openh264 keeps its picture buffers) and no RGB frame (6 MB at 1080p).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hap_server::HapStatus;
use hap_server::core::ResourceHandler;
use recorder::MediaUnit;
use recorder::h264::{self, NalType};
use recorder::{ParameterSets, VideoAccessUnit};
use serde_json::Value as Json;

use super::{CameraState, Shared, lock};

/// JPEG quality (1–100) of snapshots.
pub(crate) const JPEG_QUALITY: u8 = 80;
/// Keyframes are decoded at most this often (a camera with 1 s GOPs costs one decode a second).
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Sizes asked for within this window are re-encoded in the background on each new frame;
/// keyframes are decoded in the background only within this window of the latest request.
const RECENT_SIZE_WINDOW: Duration = Duration::from_secs(60);
/// At most this many sizes are kept in the cache (the Home app asks for one or two).
const MAX_CACHED_SIZES: usize = 4;
/// Largest accepted request side, pixels (a JPEG side is a u16; 4K is the largest camera).
pub(crate) const MAX_SIDE_PX: u32 = 4096;

/// A snapshot request after the `resource-type` check (§1.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotRequest {
    pub(crate) width_px: u32,
    pub(crate) height_px: u32,
    /// 0 = periodic, 1 = event; `None` when absent (pre-HKSV controllers).
    pub(crate) reason: Option<u64>,
}

/// Parses a `/resource` body for the accessory `aid`. `Ok(None)`: not an image request for
/// this accessory (→ 404 -70409, as HAP-NodeJS answers other resource types and unknown aids);
/// a body without `aid` is for this accessory.
///
/// # Errors
/// -70410 when the image size is missing, not an integer, 0 or above [`MAX_SIDE_PX`].
pub(crate) fn parse_request(body: &Json, aid: u64) -> Result<Option<SnapshotRequest>, HapStatus> {
    if body.get("resource-type").and_then(Json::as_str) != Some("image") {
        return Ok(None);
    }
    if let Some(asked) = body.get("aid").filter(|a| !a.is_null())
        && asked.as_u64() != Some(aid)
    {
        return Ok(None);
    }
    let side = |key: &str| {
        body.get(key)
            .and_then(Json::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| (1..=MAX_SIDE_PX).contains(v))
            .ok_or(HapStatus::INVALID_VALUE_IN_REQUEST)
    };
    Ok(Some(SnapshotRequest {
        width_px: side("image-width")?,
        height_px: side("image-height")?,
        reason: body.get("reason").and_then(Json::as_u64),
    }))
}

/// Whether the camera's switches allow a snapshot, in HAP-NodeJS's order (§5.6).
///
/// # Errors
/// -70412 (not allowed in current state) or -70401 (insufficient privileges: the switch is off
/// and the controller gave no reason).
pub(crate) fn check_allowed(state: &CameraState, reason: Option<u64>) -> Result<(), HapStatus> {
    const PERIODIC: u64 = 0;
    const EVENT: u64 = 1;
    if !state.rtp_active || !state.camera_active {
        return Err(HapStatus::NOT_ALLOWED_IN_CURRENT_STATE);
    }
    if !state.event_snapshots_active {
        match reason {
            None => return Err(HapStatus::INSUFFICIENT_PRIVILEGES),
            Some(EVENT) => return Err(HapStatus::NOT_ALLOWED_IN_CURRENT_STATE),
            Some(_) => {}
        }
    }
    if !state.periodic_snapshots_active {
        match reason {
            None => return Err(HapStatus::INSUFFICIENT_PRIVILEGES),
            Some(PERIODIC) => return Err(HapStatus::NOT_ALLOWED_IN_CURRENT_STATE),
            Some(_) => {}
        }
    }
    Ok(())
}

/// The `/resource` handler for the camera with accessory instance ID `aid` (1 in accessory
/// mode, 2 and up behind a bridge): requests naming another `aid` → `Ok(None)` (404). Holds the
/// camera weakly (the Core that owns the handler is itself owned by the camera).
pub(crate) fn resource_handler_for(shared: Weak<Shared>, aid: u64) -> ResourceHandler {
    Arc::new(move |_ctx, body| {
        let Some(request) = parse_request(body, aid)? else {
            return Ok(None);
        };
        let shared = shared
            .upgrade()
            .ok_or(HapStatus::SERVICE_COMMUNICATION_FAILURE)?;
        check_allowed(&shared.state(), request.reason)?;
        let started = std::time::Instant::now();
        let jpeg = shared
            .taps
            .snapshots
            .jpeg(request.width_px, request.height_px);
        shared.counters.snapshot(started.elapsed());
        match jpeg {
            Ok(jpeg) => Ok(Some(jpeg.to_vec())),
            Err(e) => {
                tracing::debug!(camera = %shared.options.name, error = %e, "no snapshot");
                Err(HapStatus::SERVICE_COMMUNICATION_FAILURE)
            }
        }
    })
}

/// Why no snapshot could be made (→ -70402).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// No keyframe has been decoded yet (source not connected, or first GOP still pending).
    #[error("no keyframe decoded yet")]
    NoKeyframe,
    /// openh264 rejected the keyframe.
    #[error("decoding the keyframe failed: {0}")]
    Decode(String),
    /// Scaling or JPEG encoding failed.
    #[error("encoding the snapshot failed: {0}")]
    Encode(String),
}

/// The latest IDR access unit with its parameter sets, as one Annex B byte string that
/// decodes on its own.
#[derive(Debug, Clone)]
pub struct Keyframe {
    /// SPS, PPS, then the access unit's NAL units, each after a `00 00 00 01` start code.
    pub annexb: Bytes,
    /// Presentation time, 90 kHz.
    pub pts_90k: i64,
}

impl Keyframe {
    /// A self-contained keyframe from an access unit, or `None` if it holds no IDR slice.
    /// `parameter_sets` (out of band) go first; in-band SPS/PPS in the unit come after and win.
    pub fn from_access_unit(
        parameter_sets: Option<&ParameterSets>,
        au: &VideoAccessUnit,
    ) -> Option<Self> {
        if h264::first_slice_type(&au.data, au.framing) != Some(NalType::IDR) {
            return None;
        }
        let annexb = h264::to_annex_b(&au.data, au.framing, parameter_sets).ok()?;
        Some(Self {
            annexb,
            pts_90k: au.pts_90k,
        })
    }
}

/// A decoded frame, packed RGB (3 bytes a pixel, no padding).
#[derive(Debug, Clone)]
pub struct RgbFrame {
    /// Width, pixels.
    pub width_px: usize,
    /// Height, pixels.
    pub height_px: usize,
    /// `width_px * height_px * 3` bytes, row-major.
    pub rgb: Vec<u8>,
}

/// Decodes one self-contained keyframe (from [`Keyframe::annexb`]) with openh264.
///
/// # Errors
/// [`SnapshotError::Decode`] when openh264 fails or yields no picture.
pub fn decode_keyframe(annexb: &[u8]) -> Result<RgbFrame, SnapshotError> {
    let mut decoder =
        openh264::decoder::Decoder::new().map_err(|e| SnapshotError::Decode(e.to_string()))?;
    decode_with(&mut decoder, annexb)
}

fn decode_with(
    decoder: &mut openh264::decoder::Decoder,
    annexb: &[u8],
) -> Result<RgbFrame, SnapshotError> {
    use openh264::formats::YUVSource as _;
    let to_rgb = |yuv: &openh264::decoder::DecodedYUV<'_>| {
        let (w, h) = yuv.dimensions();
        let mut rgb = vec![0; w * h * 3];
        yuv.write_rgb8(&mut rgb);
        RgbFrame {
            width_px: w,
            height_px: h,
            rgb,
        }
    };
    let decoded = decoder
        .decode(annexb)
        .map_err(|e| SnapshotError::Decode(e.to_string()))?;
    if let Some(yuv) = decoded {
        return Ok(to_rgb(&yuv));
    }
    // A stream that does not bound reordering makes openh264 hold the picture back.
    let frames = decoder
        .flush_remaining()
        .map_err(|e| SnapshotError::Decode(e.to_string()))?;
    frames
        .last()
        .map(to_rgb)
        .ok_or_else(|| SnapshotError::Decode("no picture in the keyframe".into()))
}

/// One output sample's source pixels: `weights` apply to `start..start + weights.len()`.
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// Area-average taps mapping `[offset, offset + span)` of the source axis onto `dst` samples.
fn taps(src_len: usize, offset: f64, span: f64, dst: usize) -> Vec<Taps> {
    let step = span / dst as f64;
    (0..dst)
        .map(|i| {
            let a = offset + step * i as f64;
            let b = (a + step).min(src_len as f64);
            let first = (a.floor() as usize).min(src_len - 1);
            let last = ((b.ceil() as usize).max(first + 1)).min(src_len);
            let mut weights: Vec<f32> = (first..last)
                .map(|k| ((b.min(k as f64 + 1.0) - a.max(k as f64)).max(0.0)) as f32)
                .collect();
            let sum: f32 = weights.iter().sum();
            if sum > 0.0 {
                weights.iter_mut().for_each(|w| *w /= sum);
            } else {
                weights = vec![0.0; last - first];
                if let Some(w) = weights.first_mut() {
                    *w = 1.0;
                }
            }
            Taps {
                start: first,
                weights,
            }
        })
        .collect()
}

/// Scales packed RGB to exactly `dst_w`×`dst_h`, keeping the aspect ratio: scale to cover,
/// centre-crop, area-average (a box filter weighted by overlap; up-scaling degrades to
/// nearest/linear blends). `None` when a size is 0 or `src` is shorter than `src_w*src_h*3`.
pub fn scale_cover_rgb(
    src: &[u8],
    src_w: usize,
    src_h: usize,
    dst_w: usize,
    dst_h: usize,
) -> Option<Vec<u8>> {
    if src_w == 0 || src_h == 0 || dst_w == 0 || dst_h == 0 || src.len() < src_w * src_h * 3 {
        return None;
    }
    let scale = (dst_w as f64 / src_w as f64).max(dst_h as f64 / src_h as f64);
    let (span_x, span_y) = (dst_w as f64 / scale, dst_h as f64 / scale);
    let (off_x, off_y) = ((src_w as f64 - span_x) / 2.0, (src_h as f64 - span_y) / 2.0);
    let tx = taps(src_w, off_x.max(0.0), span_x, dst_w);
    let ty = taps(src_h, off_y.max(0.0), span_y, dst_h);
    let row_first = ty.first().map_or(0, |t| t.start);
    let row_end = ty
        .iter()
        .map(|t| t.start + t.weights.len())
        .max()
        .unwrap_or(0);
    // Horizontal pass over the rows the vertical taps use.
    let mut mid = vec![0f32; (row_end - row_first) * dst_w * 3];
    for (y, out_row) in (row_first..row_end).zip(mid.chunks_exact_mut(dst_w * 3)) {
        let row = src.get(y * src_w * 3..(y + 1) * src_w * 3)?;
        for (t, out) in tx.iter().zip(out_row.chunks_exact_mut(3)) {
            let px = row.get(t.start * 3..(t.start + t.weights.len()) * 3)?;
            let mut acc = [0f32; 3];
            for (p, w) in px.chunks_exact(3).zip(&t.weights) {
                for (a, c) in acc.iter_mut().zip(p) {
                    *a += f32::from(*c) * w;
                }
            }
            out.copy_from_slice(&acc);
        }
    }
    // Vertical pass.
    let mut dst = vec![0u8; dst_w * dst_h * 3];
    let row_len = dst_w * 3;
    for (t, out_row) in ty.iter().zip(dst.chunks_exact_mut(row_len)) {
        let mut acc = vec![0f32; row_len];
        for (k, w) in t.weights.iter().enumerate() {
            let r = t.start + k - row_first;
            let row = mid.get(r * row_len..(r + 1) * row_len)?;
            for (a, v) in acc.iter_mut().zip(row) {
                *a += v * w;
            }
        }
        for (o, a) in out_row.iter_mut().zip(&acc) {
            *o = a.round().clamp(0.0, 255.0) as u8;
        }
    }
    Some(dst)
}

/// Scales `frame` to `width`×`height` (cover + crop) and encodes a baseline JPEG.
///
/// # Errors
/// [`SnapshotError::Encode`] for a size of 0 or above 65535, or an encoder failure.
pub fn encode_snapshot(
    frame: &RgbFrame,
    width_px: u32,
    height_px: u32,
) -> Result<Vec<u8>, SnapshotError> {
    let (w, h) = (
        u16::try_from(width_px).map_err(|_| SnapshotError::Encode("width above 65535".into()))?,
        u16::try_from(height_px).map_err(|_| SnapshotError::Encode("height above 65535".into()))?,
    );
    let scaled = if (usize::from(w), usize::from(h)) == (frame.width_px, frame.height_px) {
        None
    } else {
        Some(
            scale_cover_rgb(
                &frame.rgb,
                frame.width_px,
                frame.height_px,
                usize::from(w),
                usize::from(h),
            )
            .ok_or_else(|| SnapshotError::Encode("cannot scale the frame".into()))?,
        )
    };
    let rgb = scaled.as_deref().unwrap_or(&frame.rgb);
    let mut jpeg = Vec::with_capacity(usize::from(w) * usize::from(h) / 4);
    jpeg_encoder::Encoder::new(&mut jpeg, JPEG_QUALITY)
        .encode(rgb, w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| SnapshotError::Encode(e.to_string()))?;
    Ok(jpeg)
}

struct CachedJpeg {
    /// Generation of the frame it was made from.
    generation: u64,
    jpeg: Arc<[u8]>,
    last_requested: Instant,
}

struct DecodedFrame {
    generation: u64,
    frame: Arc<RgbFrame>,
}

/// The latest IDR access unit as the source gave it (its bytes shared, not copied) with the
/// parameter sets in force; made into a [`Keyframe`] only when decoded.
#[derive(Clone)]
struct LatestKeyframe {
    /// Bumped per keyframe (1 = the first).
    generation: u64,
    parameter_sets: Option<ParameterSets>,
    au: VideoAccessUnit,
}

#[derive(Default)]
struct Inner {
    parameter_sets: Mutex<Option<ParameterSets>>,
    latest: Mutex<Option<LatestKeyframe>>,
    frame: Mutex<Option<DecodedFrame>>,
    cache: Mutex<HashMap<(u32, u32), CachedJpeg>>,
    /// Shared by the request path and the thread; held while decoding, so each keyframe is
    /// decoded at most once. `None` until the first request and after an idle window.
    decoder: Mutex<Option<openh264::decoder::Decoder>>,
    /// When a snapshot was last asked for: keyframes are decoded in the background only within
    /// [`RECENT_SIZE_WINDOW`] of it.
    last_request: Mutex<Option<Instant>>,
    /// Keyframe decodes attempted so far (tests).
    decodes: AtomicU64,
}

impl Inner {
    /// A snapshot was asked for within [`RECENT_SIZE_WINDOW`] of `now`.
    fn in_demand(&self, now: Instant) -> bool {
        lock(&self.last_request)
            .is_some_and(|t| now.saturating_duration_since(t) <= RECENT_SIZE_WINDOW)
    }

    /// The decoded frame of the latest keyframe, decoding it now unless that was done already
    /// (by the thread or an earlier request).
    ///
    /// # Errors
    /// [`SnapshotError::NoKeyframe`] before the first keyframe; decode errors.
    fn decode_latest(&self, name: &str) -> Result<(u64, Arc<RgbFrame>), SnapshotError> {
        let mut decoder = lock(&self.decoder);
        let latest = lock(&self.latest)
            .clone()
            .ok_or(SnapshotError::NoKeyframe)?;
        if let Some(f) = lock(&self.frame).as_ref()
            && f.generation >= latest.generation
        {
            return Ok((f.generation, f.frame.clone()));
        }
        let keyframe = Keyframe::from_access_unit(latest.parameter_sets.as_ref(), &latest.au)
            .ok_or_else(|| SnapshotError::Decode("no IDR slice".into()))?;
        let d = match decoder.as_mut() {
            Some(d) => d,
            None => decoder.insert(
                openh264::decoder::Decoder::new()
                    .map_err(|e| SnapshotError::Decode(e.to_string()))?,
            ),
        };
        self.decodes.fetch_add(1, Ordering::Relaxed);
        let frame = match decode_with(d, &keyframe.annexb) {
            Ok(f) => Arc::new(f),
            Err(e) => {
                tracing::debug!(camera = %name, error = %e, "keyframe not decoded");
                *decoder = None; // start clean on the next keyframe
                return Err(e);
            }
        };
        *lock(&self.frame) = Some(DecodedFrame {
            generation: latest.generation,
            frame: frame.clone(),
        });
        Ok((latest.generation, frame))
    }

    /// Drops the decoder, the decoded frame and the JPEG cache (no request lately); the next
    /// request decodes afresh.
    fn release(&self) {
        let _decoding = lock(&self.decoder).take();
        *lock(&self.frame) = None;
        lock(&self.cache).clear();
    }
}

/// Per camera: the latest keyframe (bytes shared with the fragmenter), and once snapshots are
/// asked for its decoded frame and the JPEG cache, refreshed by a background thread while
/// requests keep coming (started by the first request; it ends when this is dropped).
pub(crate) struct Snapshots {
    name: String,
    inner: Arc<Inner>,
    wake: OnceLock<Mutex<mpsc::Sender<()>>>,
}

impl Snapshots {
    pub(crate) fn new(camera: &str) -> Self {
        Self {
            name: camera.to_owned(),
            inner: Arc::default(),
            wake: OnceLock::new(),
        }
    }

    /// Looks at a unit on its way to the fragmenter: keeps parameter sets and the latest IDR
    /// access unit (a reference, no copy). Cheap for every unit: a walk over the length
    /// prefixes (AVCC) or one byte scan for start codes (Annex B); nothing is decoded unless a
    /// snapshot was asked for lately.
    pub(crate) fn observe(&self, unit: &MediaUnit) {
        match unit {
            MediaUnit::ParameterSets(ps) => *lock(&self.inner.parameter_sets) = Some(ps.clone()),
            MediaUnit::Video(au) if is_idr(au) => {
                let parameter_sets = lock(&self.inner.parameter_sets).clone();
                {
                    let mut latest = lock(&self.inner.latest);
                    let generation = latest.as_ref().map_or(1, |l| l.generation + 1);
                    *latest = Some(LatestKeyframe {
                        generation,
                        parameter_sets,
                        au: au.clone(),
                    });
                }
                if self.inner.in_demand(Instant::now())
                    && let Some(wake) = self.wake.get()
                {
                    let _ = lock(wake).send(());
                }
            }
            MediaUnit::Video(_) | MediaUnit::Audio(_) => {}
        }
    }

    /// Starts the refresh thread (once).
    fn start_thread(&self) {
        self.wake.get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            let inner = self.inner.clone();
            let name = self.name.clone();
            let spawned = std::thread::Builder::new()
                .name("snapshot".into())
                .spawn(move || refresh_loop(&inner, &name, &rx));
            if let Err(e) = spawned {
                tracing::warn!(camera = %self.name, error = %e, "cannot start the snapshot thread");
            }
            Mutex::new(tx)
        });
    }

    /// The JPEG of the latest keyframe at `width`×`height`: from the cache, or scaled and
    /// encoded now (the first request at a new size). The first request after an idle window
    /// ([`RECENT_SIZE_WINDOW`]) decodes the keyframe now; while requests keep coming, new
    /// keyframes are decoded and the sizes asked for re-encoded in the background, so a request
    /// may get the previous keyframe while the next is being decoded.
    pub(crate) fn jpeg(&self, width_px: u32, height_px: u32) -> Result<Arc<[u8]>, SnapshotError> {
        let now = Instant::now();
        let warm = self.inner.in_demand(now);
        *lock(&self.inner.last_request) = Some(now);
        self.start_thread();
        let current = lock(&self.inner.frame)
            .as_ref()
            .map(|f| (f.generation, f.frame.clone()));
        let latest = lock(&self.inner.latest).as_ref().map(|l| l.generation);
        let (generation, frame) = match current {
            Some((g, f)) if warm || Some(g) == latest => (g, f),
            _ => self.inner.decode_latest(&self.name)?,
        };
        {
            let mut cache = lock(&self.inner.cache);
            if let Some(c) = cache.get_mut(&(width_px, height_px))
                && c.generation == generation
            {
                c.last_requested = now;
                return Ok(c.jpeg.clone());
            }
        }
        let jpeg: Arc<[u8]> = encode_snapshot(&frame, width_px, height_px)?.into();
        let mut cache = lock(&self.inner.cache);
        cache.insert(
            (width_px, height_px),
            CachedJpeg {
                generation,
                jpeg: jpeg.clone(),
                last_requested: now,
            },
        );
        evict(&mut cache, now);
        Ok(jpeg)
    }

    /// Keyframe decodes attempted so far.
    #[cfg(test)]
    pub(crate) fn decode_count(&self) -> u64 {
        self.inner.decodes.load(Ordering::Relaxed)
    }
}

/// Whether the access unit's first slice is an IDR slice (ITU-T H.264 Table 7-1).
fn is_idr(au: &VideoAccessUnit) -> bool {
    h264::first_slice_type(&au.data, au.framing) == Some(NalType::IDR)
}

/// Drops sizes not asked for lately and keeps at most [`MAX_CACHED_SIZES`] (latest asked).
fn evict(cache: &mut HashMap<(u32, u32), CachedJpeg>, now: Instant) {
    cache.retain(|_, c| now.duration_since(c.last_requested) <= RECENT_SIZE_WINDOW);
    while cache.len() > MAX_CACHED_SIZES {
        let Some(oldest) = cache
            .iter()
            .min_by_key(|(_, c)| c.last_requested)
            .map(|(k, _)| *k)
        else {
            break;
        };
        cache.remove(&oldest);
    }
}

/// The snapshot thread: while snapshots are asked for, decodes the newest keyframe (at most
/// once per [`MIN_REFRESH`]) and re-encodes the sizes asked for lately; after an idle window
/// it frees the decoder, the frame and the cache.
fn refresh_loop(inner: &Inner, name: &str, wake: &mpsc::Receiver<()>) {
    let mut last_decode: Option<Instant> = None;
    let mut encoded_generation = 0;
    loop {
        match wake.recv_timeout(RECENT_SIZE_WINDOW) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if !inner.in_demand(Instant::now()) {
                    inner.release();
                    encoded_generation = 0;
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if let Some(wait) = last_decode.and_then(|t| MIN_REFRESH.checked_sub(t.elapsed())) {
            std::thread::sleep(wait);
        }
        while wake.try_recv().is_ok() {}
        if !inner.in_demand(Instant::now()) {
            continue;
        }
        last_decode = Some(Instant::now());
        let (generation, frame) = match inner.decode_latest(name) {
            Ok(f) => f,
            Err(_) => continue,
        };
        if generation == encoded_generation {
            continue;
        }
        encoded_generation = generation;
        let sizes: Vec<(u32, u32)> = {
            let mut cache = lock(&inner.cache);
            evict(&mut cache, Instant::now());
            cache
                .iter()
                .filter(|(_, c)| c.generation != generation)
                .map(|(k, _)| *k)
                .collect()
        };
        for (w, h) in sizes {
            match encode_snapshot(&frame, w, h) {
                Ok(jpeg) => {
                    if let Some(c) = lock(&inner.cache).get_mut(&(w, h))
                        && c.generation < generation
                    {
                        c.generation = generation;
                        c.jpeg = jpeg.into();
                    }
                }
                Err(e) => tracing::debug!(camera = %name, error = %e, "snapshot not encoded"),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use recorder::H264Framing;
    use serde_json::json;

    /// `aid` of a camera in accessory mode (its own HAP server).
    const ACCESSORY_MODE_AID: u64 = 1;

    fn state(rtp: bool, camera: bool, event: bool, periodic: bool) -> CameraState {
        CameraState {
            rtp_active: rtp,
            camera_active: camera,
            event_snapshots_active: event,
            periodic_snapshots_active: periodic,
            ..CameraState::default()
        }
    }

    const DENIED: HapStatus = HapStatus::INSUFFICIENT_PRIVILEGES;
    const NOT_NOW: HapStatus = HapStatus::NOT_ALLOWED_IN_CURRENT_STATE;

    #[test]
    fn reason_rules_follow_hap_nodejs_order() {
        let all_on = state(true, true, true, true);
        for reason in [None, Some(0), Some(1)] {
            assert_eq!(check_allowed(&all_on, reason), Ok(()), "{reason:?}");
        }
        // 1. RTP Active = 0 wins over everything, whatever the reason.
        for reason in [None, Some(0), Some(1)] {
            assert_eq!(
                check_allowed(&state(false, true, true, true), reason),
                Err(NOT_NOW)
            );
            assert_eq!(
                check_allowed(&state(false, true, false, false), reason),
                Err(NOT_NOW)
            );
        }
        // 2. HomeKitCameraActive = 0.
        for reason in [None, Some(0), Some(1)] {
            assert_eq!(
                check_allowed(&state(true, false, false, false), reason),
                Err(NOT_NOW)
            );
        }
        // 3. EventSnapshotsActive = 0.
        let no_event = state(true, true, false, true);
        assert_eq!(check_allowed(&no_event, None), Err(DENIED));
        assert_eq!(check_allowed(&no_event, Some(1)), Err(NOT_NOW));
        assert_eq!(check_allowed(&no_event, Some(0)), Ok(()));
        // 4. PeriodicSnapshotsActive = 0.
        let no_periodic = state(true, true, true, false);
        assert_eq!(check_allowed(&no_periodic, None), Err(DENIED));
        assert_eq!(check_allowed(&no_periodic, Some(0)), Err(NOT_NOW));
        assert_eq!(check_allowed(&no_periodic, Some(1)), Ok(()));
        // Both off: every known reason is refused, the event rule first.
        let none = state(true, true, false, false);
        assert_eq!(check_allowed(&none, None), Err(DENIED));
        assert_eq!(check_allowed(&none, Some(1)), Err(NOT_NOW));
        assert_eq!(check_allowed(&none, Some(0)), Err(NOT_NOW));
    }

    #[test]
    fn request_parsing() {
        let ok = json!({"resource-type": "image", "image-width": 640, "image-height": 360});
        assert_eq!(
            parse_request(&ok, ACCESSORY_MODE_AID),
            Ok(Some(SnapshotRequest {
                width_px: 640,
                height_px: 360,
                reason: None
            }))
        );
        let with = json!({"aid": 1, "resource-type": "image", "image-width": 1920,
            "image-height": 1080, "reason": 1});
        assert_eq!(
            parse_request(&with, ACCESSORY_MODE_AID)
                .unwrap()
                .unwrap()
                .reason,
            Some(1)
        );
        // Behind a bridge: the camera's own aid is accepted, 1 (the bridge) is not.
        let bridged = json!({"aid": 3, "resource-type": "image", "image-width": 640,
            "image-height": 360});
        assert!(parse_request(&bridged, 3).unwrap().is_some());
        assert_eq!(parse_request(&bridged, ACCESSORY_MODE_AID), Ok(None));
        assert_eq!(parse_request(&with, 3), Ok(None));
        assert!(
            parse_request(&ok, 3).unwrap().is_some(),
            "no aid: this accessory"
        );
        assert_eq!(
            parse_request(
                &json!({"resource-type": "video", "image-width": 1, "image-height": 1}),
                ACCESSORY_MODE_AID
            ),
            Ok(None)
        );
        assert_eq!(
            parse_request(
                &json!({"aid": 2, "resource-type": "image", "image-width": 1,
                "image-height": 1}),
                ACCESSORY_MODE_AID
            ),
            Ok(None)
        );
        for bad in [
            json!({"resource-type": "image", "image-height": 360}),
            json!({"resource-type": "image", "image-width": 0, "image-height": 360}),
            json!({"resource-type": "image", "image-width": "640", "image-height": 360}),
            json!({"resource-type": "image", "image-width": 640, "image-height": 5000}),
        ] {
            assert_eq!(
                parse_request(&bad, ACCESSORY_MODE_AID),
                Err(HapStatus::INVALID_VALUE_IN_REQUEST),
                "{bad}"
            );
        }
    }

    #[test]
    fn keyframe_needs_an_idr_slice_and_leads_with_parameter_sets() {
        let ps = ParameterSets {
            sps: Bytes::from_static(&[0x67, 0xaa]),
            pps: Bytes::from_static(&[0x68, 0xbb]),
        };
        let au = |data: &'static [u8]| VideoAccessUnit {
            pts_90k: 9000,
            dts_90k: None,
            data: Bytes::from_static(data),
            framing: H264Framing::Avcc {
                length_size_bytes: 2,
            },
        };
        assert!(Keyframe::from_access_unit(Some(&ps), &au(&[0, 2, 0x41, 1])).is_none());
        let k =
            Keyframe::from_access_unit(Some(&ps), &au(&[0, 2, 0x06, 9, 0, 2, 0x65, 1])).unwrap();
        assert_eq!(
            &k.annexb[..],
            &[
                0, 0, 0, 1, 0x67, 0xaa, 0, 0, 0, 1, 0x68, 0xbb, 0, 0, 0, 1, 0x06, 9, 0, 0, 0, 1,
                0x65, 1
            ]
        );
        assert_eq!(k.pts_90k, 9000);
    }

    fn image(w: usize, h: usize, f: impl Fn(usize, usize) -> [u8; 3]) -> Vec<u8> {
        let f = &f;
        (0..h)
            .flat_map(|y| (0..w).flat_map(move |x| f(x, y)))
            .collect()
    }

    #[test]
    fn downscale_averages_each_block() {
        // 4×2 → 2×1: each output pixel is the mean of a 2×2 block.
        let src = image(4, 2, |x, y| {
            [(x * 40 + y * 10) as u8, 200, (x * y * 20) as u8]
        });
        let out = scale_cover_rgb(&src, 4, 2, 2, 1).unwrap();
        let mean = |xs: [usize; 2], c: usize| -> u8 {
            let mut s = 0u32;
            for y in 0..2 {
                for x in xs {
                    s += u32::from(src[(y * 4 + x) * 3 + c]);
                }
            }
            (f64::from(s) / 4.0).round() as u8
        };
        for (i, xs) in [[0, 1], [2, 3]].into_iter().enumerate() {
            for c in 0..3 {
                assert_eq!(out[i * 3 + c], mean(xs, c), "pixel {i} channel {c}");
            }
        }
    }

    #[test]
    fn scaling_keeps_aspect_by_cropping_the_centre() {
        // A 4×2 image whose outer columns are black: covering 2×2 takes the centre 2×2.
        let src = image(4, 2, |x, _| {
            if x == 0 || x == 3 {
                [0; 3]
            } else {
                [250, 120, 30]
            }
        });
        let out = scale_cover_rgb(&src, 4, 2, 2, 2).unwrap();
        assert_eq!(out, image(2, 2, |_, _| [250, 120, 30]));
        // Same for a tall target from a wide 16:9 frame: the size is exact.
        let wide = image(32, 18, |x, y| [(x * 7) as u8, (y * 13) as u8, 5]);
        let out = scale_cover_rgb(&wide, 32, 18, 9, 16).unwrap();
        assert_eq!(out.len(), 9 * 16 * 3);
    }

    #[test]
    fn upscale_and_identity_preserve_flat_colour() {
        let flat = image(3, 5, |_, _| [17, 99, 201]);
        assert_eq!(
            scale_cover_rgb(&flat, 3, 5, 7, 11).unwrap(),
            image(7, 11, |_, _| [17, 99, 201])
        );
        let grad = image(6, 4, |x, y| [(x * 30) as u8, (y * 50) as u8, 9]);
        assert_eq!(scale_cover_rgb(&grad, 6, 4, 6, 4).unwrap(), grad);
        assert!(scale_cover_rgb(&grad, 6, 4, 0, 4).is_none());
        assert!(scale_cover_rgb(&grad[..10], 6, 4, 3, 2).is_none());
    }

    /// The bundled demo clip's first IDR as a self-contained keyframe.
    pub(crate) fn demo_keyframe() -> Keyframe {
        let mut demo = recorder::DemoSource::bundled().unwrap();
        let mut ps = None;
        for _ in 0..1000 {
            match demo.next_unit().1 {
                MediaUnit::ParameterSets(p) => ps = Some(p),
                MediaUnit::Video(au) => {
                    if let Some(k) = Keyframe::from_access_unit(ps.as_ref(), &au) {
                        return k;
                    }
                }
                MediaUnit::Audio(_) => {}
            }
        }
        panic!("no IDR in the demo clip");
    }

    /// (width, height) from the SOF0 segment; also checks SOI first and EOI last.
    pub(crate) fn jpeg_size(jpeg: &[u8]) -> (u16, u16) {
        assert_eq!(&jpeg[..2], &[0xff, 0xd8], "SOI");
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xff, 0xd9], "EOI");
        let mut i = 2;
        while i + 4 <= jpeg.len() {
            assert_eq!(jpeg[i], 0xff, "marker at {i}");
            let marker = jpeg[i + 1];
            let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
            if marker == 0xc0 {
                let h = u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]);
                let w = u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]);
                return (w, h);
            }
            i += 2 + len;
        }
        panic!("no SOF0");
    }

    #[test]
    fn jpeg_from_the_demo_clip_first_idr() {
        let frame = decode_keyframe(&demo_keyframe().annexb).unwrap();
        assert_eq!((frame.width_px, frame.height_px), (1920, 1080));
        // A real picture, not a flat fill.
        let luma: Vec<u8> = frame.rgb.chunks_exact(3).map(|p| p[1]).collect();
        let (lo, hi) = (luma.iter().min().unwrap(), luma.iter().max().unwrap());
        assert!(hi - lo > 100, "flat picture: {lo}..{hi}");

        for (w, h) in [(640, 360), (320, 240), (1920, 1080)] {
            let jpeg = encode_snapshot(&frame, w, h).unwrap();
            assert_eq!(jpeg_size(&jpeg), (w as u16, h as u16));
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("snapshot.jpg");
            std::fs::write(&path, &jpeg).unwrap();
            let out = std::process::Command::new("ffprobe")
                .args([
                    "-v",
                    "error",
                    "-show_entries",
                    "stream=codec_name,width,height",
                ])
                .args(["-of", "csv=p=0"])
                .arg(&path)
                .output()
                .unwrap_or_else(|e| {
                    panic!("ffprobe is needed for this test ({e}); run scripts/test")
                });
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                format!("mjpeg,{w},{h}")
            );
        }
    }

    #[test]
    fn request_decodes_and_caches_per_size() {
        let snapshots = Snapshots::new("test");
        assert_eq!(snapshots.jpeg(640, 360), Err(SnapshotError::NoKeyframe));
        let mut demo = recorder::DemoSource::bundled().unwrap();
        // Parameter sets, then units up to and including the first IDR.
        while lock(&snapshots.inner.latest).is_none() {
            snapshots.observe(&demo.next_unit().1);
        }
        // The first request decodes the keyframe itself.
        let first = snapshots.jpeg(640, 360).unwrap();
        assert_eq!(jpeg_size(&first), (640, 360));
        // Same frame, same size: the cached bytes, not a new encode.
        assert!(Arc::ptr_eq(&first, &snapshots.jpeg(640, 360).unwrap()));
        let small = snapshots.jpeg(320, 180).unwrap();
        assert_eq!(jpeg_size(&small), (320, 180));
        assert_eq!(lock(&snapshots.inner.cache).len(), 2);
    }

    /// Feeds the demo clip until `keyframes` more IDR access units were observed.
    fn feed_keyframes(snapshots: &Snapshots, demo: &mut recorder::DemoSource, keyframes: u64) {
        let generation = || {
            lock(&snapshots.inner.latest)
                .as_ref()
                .map_or(0, |l| l.generation)
        };
        let target = generation() + keyframes;
        while generation() < target {
            snapshots.observe(&demo.next_unit().1);
        }
    }

    #[test]
    fn keyframes_are_decoded_only_when_a_snapshot_is_asked_for() {
        let snapshots = Snapshots::new("test");
        let mut demo = recorder::DemoSource::bundled().unwrap();
        feed_keyframes(&snapshots, &mut demo, 3);
        assert_eq!(snapshots.decode_count(), 0, "decoded without a request");
        assert!(
            snapshots.wake.get().is_none(),
            "thread started without a request"
        );
        assert!(lock(&snapshots.inner.frame).is_none());

        // The first request decodes the latest of the three keyframes, once.
        let jpeg = snapshots.jpeg(640, 360).unwrap();
        assert_eq!(jpeg_size(&jpeg), (640, 360));
        assert_eq!(snapshots.decode_count(), 1);
        assert_eq!(lock(&snapshots.inner.frame).as_ref().unwrap().generation, 3);
        // Another size of the same keyframe: encoded, not decoded again.
        assert_eq!(jpeg_size(&snapshots.jpeg(320, 180).unwrap()), (320, 180));
        assert!(Arc::ptr_eq(&jpeg, &snapshots.jpeg(640, 360).unwrap()));
        assert_eq!(snapshots.decode_count(), 1);

        // Requests keep coming: new keyframes are decoded in the background, at most once each,
        // and the sizes asked for are re-encoded from them.
        feed_keyframes(&snapshots, &mut demo, 2);
        let deadline = Instant::now() + Duration::from_secs(20);
        while lock(&snapshots.inner.cache)
            .values()
            .any(|c| c.generation != 5)
        {
            assert!(
                Instant::now() < deadline,
                "the new keyframe was not re-encoded"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let decodes = snapshots.decode_count();
        assert!(
            (2..=3).contains(&decodes),
            "{decodes} decodes for 3 keyframes"
        );
        let fresh = snapshots.jpeg(640, 360).unwrap();
        assert!(
            !Arc::ptr_eq(&jpeg, &fresh),
            "still the first keyframe's JPEG"
        );
        assert_eq!(jpeg_size(&fresh), (640, 360));
        assert_eq!(snapshots.decode_count(), decodes, "a cache hit decoded");
    }

    #[test]
    fn first_request_after_an_idle_window_decodes_the_latest_keyframe_now() {
        let snapshots = Snapshots::new("test");
        let mut demo = recorder::DemoSource::bundled().unwrap();
        feed_keyframes(&snapshots, &mut demo, 1);
        snapshots.jpeg(640, 360).unwrap();
        assert_eq!(snapshots.decode_count(), 1);
        // Nobody asked for a minute (the clock is moved back instead of waiting).
        let long_ago = Instant::now()
            .checked_sub(RECENT_SIZE_WINDOW + Duration::from_secs(1))
            .unwrap();
        *lock(&snapshots.inner.last_request) = Some(long_ago);
        feed_keyframes(&snapshots, &mut demo, 1);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            snapshots.decode_count(),
            1,
            "decoded in the background while idle"
        );
        // The cached frame is stale: this request decodes the new keyframe itself.
        snapshots.jpeg(640, 360).unwrap();
        assert_eq!(snapshots.decode_count(), 2);
        assert_eq!(lock(&snapshots.inner.frame).as_ref().unwrap().generation, 2);
        // The idle release frees the decoder, the frame and the cache.
        snapshots.inner.release();
        assert!(lock(&snapshots.inner.decoder).is_none());
        assert!(lock(&snapshots.inner.frame).is_none());
        assert!(lock(&snapshots.inner.cache).is_empty());
        assert_eq!(jpeg_size(&snapshots.jpeg(320, 180).unwrap()), (320, 180));
        assert_eq!(snapshots.decode_count(), 3);
    }
}
